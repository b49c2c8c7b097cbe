//! Collecting issued invoices: each open invoice whose attempt is due is charged through
//! its subscription's provider (its amount due, after credit), and the outcome settles it:
//! paid, retried on the dunning schedule, or uncollectible.

use std::collections::HashMap;

use chrono::TimeDelta;
use entity::{customer, invoice, subscription};
use futures_util::{StreamExt, stream};
use providers::{ChargeRequest, PaymentOutcome, ProviderError};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::super::Billing;
use super::super::codes::{Code, EventKind, InvoiceStatus, SubscriptionStatus};
use super::super::error::BillingResult;
use super::super::events::record;
use super::super::gateway::within;
use super::super::lifecycle::{self, Current, Trigger};
use super::super::phase::PhaseKind;
use super::{BILLED, CLOCK_BATCH, COLLECT_CONCURRENCY, FinalFailure};

impl Billing {
    /// Charges open invoices whose attempt is due, a few at a time (provider calls are
    /// slow; settling is quick). A charge whose outcome never arrived is asked about, or
    /// sent again under the same idempotency key: never charged twice.
    pub(super) async fn collect_due(&self) -> BillingResult<()> {
        let now = self.clock.now();
        let mut after: Option<Uuid> = None;
        loop {
            let mut q = invoice::Entity::find()
                .filter(invoice::Column::Status.eq(InvoiceStatus::Open.code()))
                .filter(invoice::Column::NextAttemptAt.lte(now))
                .order_by_asc(invoice::Column::Id)
                .limit(CLOCK_BATCH);
            if let Some(last) = after {
                q = q.filter(invoice::Column::Id.gt(last));
            }
            let due = q.all(self.db.conn()).await?;
            let Some(last) = due.last() else { break };
            after = Some(last.id);
            let subs: HashMap<Uuid, subscription::Model> = subscription::Entity::find()
                .filter(subscription::Column::Id.is_in(due.iter().map(|i| i.subscription_id)))
                .all(self.db.conn())
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            let customers = self
                .customers_by_id(subs.values().map(|s| s.customer_id))
                .await?;
            let attempts = due.into_iter().filter_map(|inv| {
                let sub = subs.get(&inv.subscription_id)?;
                let customer = customers.get(&sub.customer_id)?;
                Some(async move {
                    let outcome = self.attempt_charge(&inv, sub, customer).await;
                    (inv, sub, outcome)
                })
            });
            let mut attempts = stream::iter(attempts).buffer_unordered(COLLECT_CONCURRENCY);
            while let Some((inv, sub, outcome)) = attempts.next().await {
                self.settle_invoice(inv, sub.clone(), outcome).await?;
            }
        }
        Ok(())
    }

    /// One collection attempt. Errors that leave it unclear whether money moved are
    /// `Unknown`; a refusal is a failure of this attempt.
    async fn attempt_charge(
        &self,
        inv: &invoice::Model,
        sub: &subscription::Model,
        customer: &customer::Model,
    ) -> PaymentOutcome {
        let unknown = || PaymentOutcome::Unknown {
            provider_ref: inv.payment_ref.clone(),
        };
        tracing::info!(invoice = %inv.id, subscription = %sub.id, amount = %inv.amount_due.0,
            currency = inv.currency, attempt = inv.attempts + 1, asking = inv.payment_ref.is_some(),
            "invoice charge attempted");
        let Ok(provider) = self.providers.get(&sub.provider) else {
            return unknown();
        };
        let result = match &inv.payment_ref {
            // A charge was sent and is still unsettled: ask, don't charge twice.
            Some(r) => {
                within(
                    self.provider_timeout,
                    provider.name(),
                    "payment_status",
                    provider.payment_status(r),
                )
                .await
            }
            None => {
                let Ok(customer_ref) = self
                    .provider_customer_ref(provider.as_ref(), customer)
                    .await
                else {
                    return unknown();
                };
                within(
                    self.provider_timeout,
                    provider.name(),
                    "charge",
                    provider.charge(ChargeRequest {
                        customer_ref,
                        amount: inv.amount_due.0,
                        currency: inv.currency.clone(),
                        description: format!(
                            "Invoice {} ({} – {})",
                            inv.id,
                            inv.period_start.date_naive(),
                            inv.period_end.date_naive()
                        ),
                        // Unchanged until the attempt settles, so a resend is the same charge.
                        idempotency_key: format!("invoice-{}-attempt-{}", inv.id, inv.attempts + 1),
                    }),
                )
                .await
            }
        };
        match result {
            Ok(outcome) => outcome,
            Err(ProviderError::Rejected(reason)) if inv.payment_ref.is_none() => {
                PaymentOutcome::Failed {
                    provider_ref: None,
                    reason,
                }
            }
            Err(_) => unknown(),
        }
    }

    async fn settle_invoice(
        &self,
        inv: invoice::Model,
        sub: subscription::Model,
        outcome: PaymentOutcome,
    ) -> BillingResult<()> {
        let now = self.clock.now();
        let data = json!({ "invoiceId": inv.id, "total": inv.total.0.to_string(), "amountDue": inv.amount_due.0.to_string(), "currency": inv.currency });
        let txn = self.db.write().await?;
        let mut am = invoice::ActiveModel {
            id: Set(inv.id),
            updated_at: Set(now),
            ..Default::default()
        };
        let mut trigger: Option<Trigger> = None;
        let current = Current::try_from(&sub)?;
        // A final invoice of an ended subscription is still collected, but the
        // subscription stays as it is.
        let live = BILLED.contains(&current.status);
        match outcome {
            PaymentOutcome::Succeeded { provider_ref } => {
                am.status = Set(InvoiceStatus::Paid.code().to_owned());
                am.payment_ref = Set(Some(provider_ref));
                am.next_attempt_at = Set(None);
                record(
                    &*txn,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::PaymentSucceeded,
                    data.clone(),
                )
                .await?;
                record(
                    &*txn,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::InvoicePaid,
                    data.clone(),
                )
                .await?;
                if live && current.status == SubscriptionStatus::PastDue {
                    trigger = Some(Trigger::RenewalPaid);
                }
                tracing::info!(invoice = %inv.id, subscription = %sub.id, amount = %inv.amount_due.0, currency = inv.currency, "invoice charge succeeded; invoice paid");
            }
            PaymentOutcome::Pending { provider_ref } => {
                am.payment_ref = Set(Some(provider_ref));
                am.next_attempt_at = Set(Some(now + TimeDelta::hours(1)));
                if inv.payment_ref.is_none() {
                    record(
                        &*txn,
                        now,
                        sub.customer_id,
                        Some(sub.id),
                        EventKind::PaymentPending,
                        data.clone(),
                    )
                    .await?;
                }
            }
            PaymentOutcome::Unknown { provider_ref } => {
                // With a reference we ask about it later; without one the same attempt
                // is sent again under its idempotency key, which the provider deduplicates.
                am.payment_ref = Set(provider_ref.or(inv.payment_ref.clone()));
                am.next_attempt_at = Set(Some(now + TimeDelta::minutes(10)));
                tracing::warn!(invoice = %inv.id, "invoice charge outcome unknown; asking again later");
            }
            PaymentOutcome::Failed { reason, .. } => {
                let attempts = inv.attempts + 1;
                am.attempts = Set(attempts);
                am.payment_ref = Set(None);
                let mut failed = data.clone();
                failed["reason"] = json!(reason);
                failed["attempt"] = json!(attempts);
                tracing::info!(invoice = %inv.id, attempt = attempts, reason, "invoice charge failed");
                record(
                    &*txn,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::PaymentFailed,
                    failed,
                )
                .await?;
                match self.dunning.retries.get(attempts as usize - 1) {
                    Some(delay) => {
                        // Counted from the first attempt (the invoice's issue), not from each failure.
                        am.next_attempt_at = Set(Some(Ord::max(inv.created_at + *delay, now)));
                        if live && current.status != SubscriptionStatus::PastDue {
                            trigger = Some(Trigger::RenewalFailed);
                        }
                    }
                    None => {
                        am.status = Set(InvoiceStatus::Uncollectible.code().to_owned());
                        am.next_attempt_at = Set(None);
                        record(
                            &*txn,
                            now,
                            sub.customer_id,
                            Some(sub.id),
                            EventKind::InvoiceUncollectible,
                            data.clone(),
                        )
                        .await?;
                        tracing::warn!(invoice = %inv.id, "invoice uncollectible");
                        // Ended already: nothing more to do to it; past due stays past due
                        // when the policy keeps it.
                        let stays = current.status == SubscriptionStatus::PastDue
                            && self.dunning.final_failure == FinalFailure::Unpaid;
                        if live && !stays {
                            trigger = Some(Trigger::DunningExhausted);
                        }
                    }
                }
            }
        }
        am.update(&*txn).await?;
        if let Some(trigger) = trigger {
            let reason = match trigger {
                Trigger::DunningExhausted => {
                    json!({ "reason": "payment failed", "invoiceId": inv.id })
                }
                _ => data.clone(),
            };
            lifecycle::apply(
                &*txn,
                now,
                current,
                trigger,
                PhaseKind::Final,
                &self.policy(),
                reason,
            )
            .await?;
        }
        txn.commit().await?;
        self.announce_events();
        Ok(())
    }
}
