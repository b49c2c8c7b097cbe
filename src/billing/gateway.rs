//! The payment gateway: every call to a provider goes through here, each with the
//! configured timeout, never inside a database transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entity::{customer, provider_customer};
use providers::{CustomerInfo, PaymentOutcome, PaymentProvider, ProviderError, RefundRequest};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::Billing;
use super::error::{BillingError, BillingResult};
use crate::telemetry::{self, CallOutcome};

/// Every provider call gives up after the configured timeout (the outcome is then unknown),
/// and is measured: `billing_provider_call_duration_seconds{provider,call,outcome}`.
pub(crate) async fn within<T: CallOutcome>(
    limit: Duration,
    provider: &'static str,
    call: &'static str,
    fut: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let started = Instant::now();
    let result = tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ProviderError::Timeout));
    telemetry::provider_call(provider, call, &result, started.elapsed());
    result
}

impl Billing {
    pub(crate) fn provider(&self, name: Option<&str>) -> BillingResult<Arc<dyn PaymentProvider>> {
        let name = name.unwrap_or(&self.default_provider);
        self.providers
            .get(name)
            .map_err(|_| BillingError::invalid(format!("unknown payment provider {name:?}")))
    }

    /// The customer's reference at a provider, creating (or refreshing) it there.
    pub(crate) async fn provider_customer_ref(
        &self,
        provider: &dyn PaymentProvider,
        c: &customer::Model,
    ) -> BillingResult<String> {
        let known = provider_customer::Entity::find_by_id((c.id, provider.name().to_owned()))
            .one(self.db.conn())
            .await?;
        if let Some(k) = &known {
            return Ok(k.provider_ref.clone());
        }
        let info = CustomerInfo {
            customer_id: c.id.to_string(),
            provider_ref: None,
            name: c.name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
        };
        let r = within(
            self.provider_timeout,
            provider.name(),
            "upsert_customer",
            provider.upsert_customer(&info),
        )
        .await?;
        // Through the writer like every write (on SQLite a write beside it can break a
        // transaction that read before it).
        let txn = self.db.write().await?;
        let inserted = provider_customer::ActiveModel {
            customer_id: Set(c.id),
            provider: Set(provider.name().to_owned()),
            provider_ref: Set(r.clone()),
        }
        .insert(&*txn)
        .await;
        match inserted {
            Ok(_) => {
                txn.commit().await?;
                Ok(r)
            }
            // A concurrent call stored one first: use that one.
            Err(_) => {
                drop(txn);
                Ok(
                    provider_customer::Entity::find_by_id((c.id, provider.name().to_owned()))
                        .one(self.db.conn())
                        .await?
                        .map_or(r, |k| k.provider_ref),
                )
            }
        }
    }

    /// Keeps the providers' copies of a customer in step with ours.
    pub async fn sync_customer_to_providers(&self, customer_id: Uuid) {
        let Ok(c) = self.customer_model(customer_id).await else {
            return;
        };
        let Ok(refs) = provider_customer::Entity::find()
            .filter(provider_customer::Column::CustomerId.eq(customer_id))
            .all(self.db.conn())
            .await
        else {
            return;
        };
        for r in refs {
            if let Ok(p) = self.providers.get(&r.provider) {
                let info = CustomerInfo {
                    customer_id: c.id.to_string(),
                    provider_ref: Some(r.provider_ref.clone()),
                    name: c.name.clone(),
                    email: c.email.clone(),
                    phone: c.phone.clone(),
                };
                if let Err(e) = within(
                    self.provider_timeout,
                    p.name(),
                    "upsert_customer",
                    p.upsert_customer(&info),
                )
                .await
                {
                    tracing::warn!(provider = r.provider, error = %e, "could not update the provider's customer");
                }
            }
        }
    }

    /// Closes checkout sessions at their providers, so that their pages take no payment.
    /// A provider that cannot be reached is logged: a payment that still arrives for a
    /// closed checkout is refunded.
    pub(crate) async fn close_at_providers(&self, closed: &[(String, String)]) {
        for (name, provider_ref) in closed {
            let Ok(p) = self.providers.get(name) else {
                continue;
            };
            match within(
                self.provider_timeout,
                p.name(),
                "close_checkout",
                p.close_checkout(provider_ref),
            )
            .await
            {
                Ok(()) => tracing::info!(
                    provider = name,
                    checkout = provider_ref,
                    "checkout closed at the provider"
                ),
                Err(e) => tracing::warn!(provider = name, checkout = provider_ref, error = %e,
                    "could not close the checkout at the provider; a late payment will be refunded"),
            }
        }
    }

    /// What became of a payment, as far as its provider says now; no answer is `Unknown`.
    pub(crate) async fn ask_payment_status(
        &self,
        provider: &str,
        provider_ref: &str,
    ) -> PaymentOutcome {
        let unknown = PaymentOutcome::Unknown {
            provider_ref: Some(provider_ref.to_owned()),
        };
        let Ok(p) = self.providers.get(provider) else {
            return unknown;
        };
        within(
            self.provider_timeout,
            p.name(),
            "payment_status",
            p.payment_status(provider_ref),
        )
        .await
        .unwrap_or(unknown)
    }

    /// One refund call; an answer that may not have reached the provider is `Unknown`.
    pub(crate) async fn send_refund(&self, provider: &str, r: RefundRequest) -> PaymentOutcome {
        let unknown = PaymentOutcome::Unknown { provider_ref: None };
        let Ok(p) = self.providers.get(provider) else {
            return unknown;
        };
        match within(self.provider_timeout, p.name(), "refund", p.refund(r)).await {
            Ok(outcome) => outcome,
            Err(ProviderError::Rejected(reason)) => PaymentOutcome::Failed {
                provider_ref: None,
                reason,
            },
            Err(_) => unknown,
        }
    }
}
