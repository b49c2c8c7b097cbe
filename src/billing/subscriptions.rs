//! Subscriptions and checkout (CoCoS' flows): select a plan, pay on the provider's page,
//! come back active; update payment details; cancel; change plan.
//!
//! Provider calls never run inside a database transaction: state is written before the
//! call (so a crash leaves a record to reconcile) and after it (with the outcome).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{Dec, checkout, customer, provider_customer, subscription};
use providers::{CheckoutRequest, CustomerInfo, DetailsRequest, PaymentProvider, ProviderError};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::Plan;
use super::codes::{CheckoutStatus, Code, EventKind, ProductKind, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::idempotency::{Claim, request_hash, scope_of};
use super::money::round_to_currency;
use super::phase::{PhaseKind, phase_at};
use super::pricing::{Interval, resolve_price};

#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub provider: String,
    pub status: SubscriptionStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<subscription::Model> for Subscription {
    type Error = sea_orm::DbErr;
    fn try_from(m: subscription::Model) -> Result<Self, Self::Error> {
        Ok(Subscription {
            id: m.id,
            customer_id: m.customer_id,
            plan_id: m.plan_id,
            provider: m.provider,
            status: parse(&m.status)?,
            started_at: m.started_at,
            cancel_at_period_end: m.cancel_at_period_end,
            canceled_at: m.canceled_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Checkout {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub provider: String,
    pub provider_ref: String,
    pub url: String,
    pub amount: Decimal,
    pub currency: String,
    pub status: CheckoutStatus,
    pub failure_reason: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<checkout::Model> for Checkout {
    type Error = sea_orm::DbErr;
    fn try_from(m: checkout::Model) -> Result<Self, Self::Error> {
        Ok(Checkout {
            id: m.id,
            subscription_id: m.subscription_id,
            provider: m.provider,
            provider_ref: m.provider_ref,
            url: m.url,
            amount: m.amount.0,
            currency: m.currency,
            status: parse(&m.status)?,
            failure_reason: m.failure_reason,
            success_url: m.success_url,
            cancel_url: m.cancel_url,
            expires_at: m.expires_at,
            created_at: m.created_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub provider: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Subscribed {
    pub subscription: Subscription,
    pub checkout: Option<Checkout>,
}

fn url(field: &str, v: &str) -> BillingResult<String> {
    let v = v.trim();
    let ok =
        (v.starts_with("https://") || v.starts_with("http://")) && v.len() <= 2000 && v.len() > 8;
    if ok && !v.contains(char::is_whitespace) {
        Ok(v.to_owned())
    } else {
        Err(BillingError::invalid(format!(
            "{field} must be an absolute http(s) URL"
        )))
    }
}

/// What the first checkout takes: one month in advance of the default items' monthly
/// prices in the phase in force now (hourly prices are billed in arrears), and whether a
/// card is needed at all (any price of the plan above zero).
pub fn amount_due_now(
    plan: &Plan,
    package_products: &[Uuid],
    currency: &str,
    region: Option<&str>,
    phase: PhaseKind,
) -> (Decimal, bool) {
    let needs_card = plan.rules.iter().any(|r| r.unit_amount > Decimal::ZERO);
    let due: Decimal = package_products
        .iter()
        .map(|&product| {
            resolve_price(
                &plan.rules,
                phase,
                product,
                currency,
                region,
                Decimal::ONE,
                plan.tier_mode,
            )
        })
        .filter(|r| r.interval == Some(Interval::Month))
        .map(|r| round_to_currency(r.amount, currency))
        .sum();
    (round_to_currency(due, currency), needs_card)
}

/// Every provider call gives up after the configured timeout (the outcome is then unknown).
pub(crate) async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(ProviderError::Timeout))
}

impl Billing {
    fn provider(&self, name: Option<&str>) -> BillingResult<Arc<dyn PaymentProvider>> {
        let name = name.unwrap_or(&self.default_provider);
        self.providers
            .get(name)
            .map_err(|_| BillingError::invalid(format!("unknown payment provider {name:?}")))
    }

    async fn subscription_model(&self, id: Uuid) -> BillingResult<subscription::Model> {
        subscription::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", id))
    }

    /// A subscription the caller may see.
    pub async fn subscription(&self, who: &Principal, id: Uuid) -> BillingResult<Subscription> {
        let m = self.subscription_model(id).await?;
        who.require_customer_access(m.customer_id)
            .map_err(|_| BillingError::not_found("subscription", id))?;
        Ok(m.try_into()?)
    }

    /// Subscriptions of many customers at once (for DataLoaders), newest first.
    pub async fn subscriptions_of_customers(
        &self,
        ids: &[Uuid],
    ) -> BillingResult<Vec<Subscription>> {
        subscription::Entity::find()
            .filter(subscription::Column::CustomerId.is_in(ids.iter().copied()))
            .order_by_desc(subscription::Column::CreatedAt)
            .order_by_desc(subscription::Column::Id)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| Subscription::try_from(m).map_err(BillingError::from))
            .collect()
    }

    /// The latest checkout of each of many subscriptions (for DataLoaders).
    pub async fn checkouts_of_subscriptions(&self, ids: &[Uuid]) -> BillingResult<Vec<Checkout>> {
        checkout::Entity::find()
            .filter(checkout::Column::SubscriptionId.is_in(ids.iter().copied()))
            .order_by_asc(checkout::Column::CreatedAt)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| Checkout::try_from(m).map_err(BillingError::from))
            .collect()
    }

    /// The phase a customer is in now on a plan, from their billing start.
    pub fn phase_now(&self, plan: &Plan, billing_start: Option<DateTime<Utc>>) -> PhaseKind {
        let specs = plan.phase_specs();
        let now = self.clock.now();
        specs
            .get(phase_at(&specs, billing_start, now))
            .map_or(PhaseKind::Final, |s| s.kind)
    }

    pub async fn create_subscription(
        &self,
        who: &Principal,
        input: NewSubscription,
    ) -> BillingResult<Subscribed> {
        who.require_customer_access(input.customer_id)?;
        let success_url = url("successUrl", &input.success_url)?;
        let cancel_url = url("cancelUrl", &input.cancel_url)?;
        let provider = self.provider(input.provider.as_deref())?;
        let scope = scope_of(who);
        if let Some(key) = &input.idempotency_key {
            let canonical = format!(
                "{}|{}|{}|{}|{}",
                input.customer_id,
                input.plan_id,
                provider.name(),
                success_url,
                cancel_url
            );
            match self
                .claim_idempotency(&scope, key, "createSubscription", &request_hash(&canonical))
                .await?
            {
                Claim::Fresh => {}
                Claim::Replay(stored) => return self.replay_subscribed(&stored).await,
            }
        }
        let result = self
            .subscribe(who, &input, provider, success_url, cancel_url)
            .await;
        if let Some(key) = &input.idempotency_key {
            match &result {
                Ok(out) => {
                    let stored = json!({ "subscription": out.subscription.id, "checkout": out.checkout.as_ref().map(|c| c.id) });
                    self.complete_idempotency(&scope, key, stored.to_string())
                        .await?;
                }
                Err(_) => self.release_idempotency(&scope, key).await?,
            }
        }
        result
    }

    async fn replay_subscribed(&self, stored: &str) -> BillingResult<Subscribed> {
        let v: serde_json::Value = serde_json::from_str(stored).unwrap_or_default();
        let sub_id = v["subscription"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| {
                BillingError::InvalidState("stored idempotent result is unreadable".into())
            })?;
        let subscription: Subscription = self.subscription_model(sub_id).await?.try_into()?;
        let checkout = match v["checkout"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => checkout::Entity::find_by_id(id)
                .one(self.db.conn())
                .await?
                .map(Checkout::try_from)
                .transpose()?,
            None => None,
        };
        Ok(Subscribed {
            subscription,
            checkout,
        })
    }

    async fn subscribe(
        &self,
        who: &Principal,
        input: &NewSubscription,
        provider: Arc<dyn PaymentProvider>,
        success_url: String,
        cancel_url: String,
    ) -> BillingResult<Subscribed> {
        let customer = self.customer_model(input.customer_id).await?;
        let plan = self
            .visible_plan(&Principal::Customer(customer.id), input.plan_id)
            .or_else(|e| {
                if who.is_admin() {
                    self.visible_plan(who, input.plan_id)
                } else {
                    Err(e)
                }
            })?;
        if plan.is_archived() {
            return Err(BillingError::PlanArchived(plan.id));
        }
        let now = self.clock.now();
        // The first subscription sets the customer's billing start.
        let billing_start = customer.billing_start.unwrap_or(now);
        let phase = self.phase_now(&plan, Some(billing_start));
        let catalog = self.catalog();
        let packages: Vec<Uuid> = catalog
            .products
            .iter()
            .filter(|p| {
                p.kind == ProductKind::Package && plan.rules.iter().any(|r| r.product_id == p.id)
            })
            .map(|p| p.id)
            .collect();
        let (due, needs_card) = amount_due_now(
            &plan,
            &packages,
            &customer.currency,
            customer.region.as_deref(),
            phase,
        );
        let live = if phase == PhaseKind::Trial {
            SubscriptionStatus::Trialing
        } else {
            SubscriptionStatus::Active
        };
        let activate_now = due.is_zero() && !needs_card;

        let sub_id = Uuid::now_v7();
        let txn = self.db.write().await?;
        if customer.billing_start.is_none() {
            customer::ActiveModel {
                id: Set(customer.id),
                billing_start: Set(Some(billing_start)),
                updated_at: Set(now),
                ..Default::default()
            }
            .update(&*txn)
            .await?;
        }
        let status = if activate_now {
            live
        } else {
            SubscriptionStatus::Incomplete
        };
        subscription::ActiveModel {
            id: Set(sub_id),
            customer_id: Set(customer.id),
            plan_id: Set(plan.id),
            provider: Set(provider.name().to_owned()),
            status: Set(status.code().to_owned()),
            started_at: Set(activate_now.then_some(now)),
            cancel_at_period_end: Set(false),
            canceled_at: Set(None),
            next_billing_at: Set(super::invoicing::DUE_NOW),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => BillingError::AlreadySubscribed,
            _ => BillingError::Db(e),
        })?;
        let data = json!({ "planId": plan.id, "status": status.code() });
        record(
            &*txn,
            now,
            customer.id,
            Some(sub_id),
            EventKind::SubscriptionCreated,
            data.clone(),
        )
        .await?;
        if activate_now {
            record(
                &*txn,
                now,
                customer.id,
                Some(sub_id),
                EventKind::SubscriptionActivated,
                data,
            )
            .await?;
        }
        txn.commit().await?;
        self.announce_events();
        if activate_now {
            let subscription = self.subscription_model(sub_id).await?.try_into()?;
            return Ok(Subscribed {
                subscription,
                checkout: None,
            });
        }

        // Outside any transaction: the provider.
        let started = async {
            let customer_ref = self
                .provider_customer_ref(provider.as_ref(), &customer)
                .await?;
            within(
                self.provider_timeout,
                provider.start_checkout(CheckoutRequest {
                    customer_ref,
                    subscription_id: sub_id.to_string(),
                    amount: due,
                    currency: customer.currency.clone(),
                    description: format!("{} — {}", plan.name, customer.name),
                    success_url: success_url.clone(),
                    cancel_url: cancel_url.clone(),
                    idempotency_key: format!("checkout-{sub_id}"),
                }),
            )
            .await
            .map_err(BillingError::from)
        }
        .await;
        let session = match started {
            Ok(s) => s,
            Err(e) => {
                // The subscription never became usable: close it so the customer can retry.
                self.expire_subscription(sub_id, "the payment provider could not start a checkout")
                    .await?;
                return Err(e);
            }
        };
        let checkout_id = Uuid::now_v7();
        let txn = self.db.write().await?;
        checkout::ActiveModel {
            id: Set(checkout_id),
            subscription_id: Set(sub_id),
            provider: Set(provider.name().to_owned()),
            provider_ref: Set(session.provider_ref),
            url: Set(session.url),
            amount: Set(Dec(due)),
            currency: Set(customer.currency.clone()),
            status: Set(CheckoutStatus::Open.code().to_owned()),
            failure_reason: Set(None),
            success_url: Set(success_url),
            cancel_url: Set(cancel_url),
            expires_at: Set(now + self.checkout_ttl),
            status_checks: Set(0),
            // If the provider's webhook never arrives, the reconciler asks.
            next_check_at: Set(Some(now + chrono::TimeDelta::minutes(1))),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        let subscription = self.subscription_model(sub_id).await?.try_into()?;
        let checkout = checkout::Entity::find_by_id(checkout_id)
            .one(self.db.conn())
            .await?
            .map(Checkout::try_from)
            .transpose()?;
        Ok(Subscribed {
            subscription,
            checkout,
        })
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
        let r = within(self.provider_timeout, provider.upsert_customer(&info)).await?;
        let inserted = provider_customer::ActiveModel {
            customer_id: Set(c.id),
            provider: Set(provider.name().to_owned()),
            provider_ref: Set(r.clone()),
        }
        .insert(self.db.conn())
        .await;
        match inserted {
            Ok(_) => Ok(r),
            // A concurrent call stored one first: use that one.
            Err(_) => Ok(
                provider_customer::Entity::find_by_id((c.id, provider.name().to_owned()))
                    .one(self.db.conn())
                    .await?
                    .map_or(r, |k| k.provider_ref),
            ),
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
                if let Err(e) = within(self.provider_timeout, p.upsert_customer(&info)).await {
                    tracing::warn!(provider = r.provider, error = %e, "could not update the provider's customer");
                }
            }
        }
    }

    pub(crate) async fn expire_subscription(
        &self,
        sub_id: Uuid,
        reason: &str,
    ) -> BillingResult<()> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        // Conditional: of several processes racing here, one expires it and records the event.
        let moved = subscription::Entity::update_many()
            .col_expr(
                subscription::Column::Status,
                Expr::value(SubscriptionStatus::IncompleteExpired.code()),
            )
            .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
            .filter(subscription::Column::Id.eq(sub_id))
            .filter(subscription::Column::Status.eq(SubscriptionStatus::Incomplete.code()))
            .exec(&*txn)
            .await?;
        // Its open checkouts end either way, so the clock does not visit them again.
        checkout::Entity::update_many()
            .col_expr(
                checkout::Column::Status,
                Expr::value(CheckoutStatus::Expired.code()),
            )
            .col_expr(checkout::Column::UpdatedAt, Expr::value(now))
            .filter(checkout::Column::SubscriptionId.eq(sub_id))
            .filter(checkout::Column::Status.ne(CheckoutStatus::Succeeded.code()))
            .exec(&*txn)
            .await?;
        if moved.rows_affected == 0 {
            // Already closed (canceled, or expired by another process).
            txn.commit().await?;
            return Ok(());
        }
        let customer_id = subscription::Entity::find_by_id(sub_id)
            .one(&*txn)
            .await?
            .map(|s| s.customer_id)
            .ok_or_else(|| BillingError::not_found("subscription", sub_id))?;
        record(
            &*txn,
            now,
            customer_id,
            Some(sub_id),
            EventKind::SubscriptionExpired,
            json!({ "reason": reason }),
        )
        .await?;
        txn.commit().await?;
        self.announce_events();
        Ok(())
    }

    /// Cancels now, or at the end of the current billing period.
    pub async fn cancel_subscription(
        &self,
        who: &Principal,
        id: Uuid,
        at_period_end: bool,
    ) -> BillingResult<Subscription> {
        let sub = self.subscription(who, id).await?;
        if !sub.status.is_live() {
            return Err(BillingError::InvalidState(format!(
                "subscription {id} is {} and cannot be canceled",
                sub.status.code()
            )));
        }
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let now_or_later = at_period_end && sub.started_at.is_some();
        let mut am = subscription::ActiveModel {
            id: Set(id),
            updated_at: Set(now),
            ..Default::default()
        };
        let period_end = sub
            .started_at
            .map(|s| super::phase::period_containing(s, now).2);
        if now_or_later {
            // Recorded as the instant it takes effect; the billing clock carries it out.
            am.cancel_at_period_end = Set(true);
            am.canceled_at = Set(period_end);
        } else {
            am.status = Set(SubscriptionStatus::Canceled.code().to_owned());
            am.canceled_at = Set(Some(now));
            // Its final invoice, up to now, is issued at the billing clock's next tick.
            am.next_billing_at = Set(super::invoicing::DUE_NOW);
        }
        am.update(&*txn).await?;
        if sub.status == SubscriptionStatus::Incomplete && !now_or_later {
            checkout::Entity::update_many()
                .col_expr(
                    checkout::Column::Status,
                    Expr::value(CheckoutStatus::Expired.code()),
                )
                .filter(checkout::Column::SubscriptionId.eq(id))
                .filter(checkout::Column::Status.ne(CheckoutStatus::Succeeded.code()))
                .exec(&*txn)
                .await?;
        }
        let kind = if now_or_later {
            EventKind::CancellationScheduled
        } else {
            EventKind::SubscriptionCanceled
        };
        let data = match period_end {
            Some(end) if now_or_later => json!({ "cancelAt": end }),
            _ => json!({}),
        };
        record(&*txn, now, sub.customer_id, Some(id), kind, data).await?;
        txn.commit().await?;
        self.announce_events();
        Ok(self.subscription_model(id).await?.try_into()?)
    }

    /// Moves a subscription to another plan; phase timing stays anchored on billing start.
    pub async fn change_plan(
        &self,
        who: &Principal,
        id: Uuid,
        plan_id: Uuid,
    ) -> BillingResult<Subscription> {
        let sub = self.subscription(who, id).await?;
        if !sub.status.is_live() {
            return Err(BillingError::InvalidState(format!(
                "subscription {id} is {} and cannot change plan",
                sub.status.code()
            )));
        }
        let plan = self
            .visible_plan(&Principal::Customer(sub.customer_id), plan_id)
            .or_else(|e| {
                if who.is_admin() {
                    self.visible_plan(who, plan_id)
                } else {
                    Err(e)
                }
            })?;
        if plan.is_archived() {
            return Err(BillingError::PlanArchived(plan_id));
        }
        if plan.id == sub.plan_id {
            return Err(BillingError::invalid(
                "the subscription is already on this plan",
            ));
        }
        // Refused rather than scheduled: the caller releases what does not fit, then retries.
        self.check_limits_fit(sub.customer_id, &plan).await?;
        let now = self.clock.now();
        let txn = self.db.write().await?;
        subscription::ActiveModel {
            id: Set(id),
            plan_id: Set(plan.id),
            // The new plan's phases decide the next boundary.
            next_billing_at: Set(super::invoicing::DUE_NOW),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(&*txn)
        .await?;
        record(
            &*txn,
            now,
            sub.customer_id,
            Some(id),
            EventKind::PlanChanged,
            json!({ "from": sub.plan_id, "to": plan.id }),
        )
        .await?;
        txn.commit().await?;
        self.announce_events();
        Ok(self.subscription_model(id).await?.try_into()?)
    }

    /// A provider-hosted page where the customer replaces the stored payment method.
    pub async fn update_payment_details(
        &self,
        who: &Principal,
        customer_id: Uuid,
        return_url: &str,
    ) -> BillingResult<String> {
        who.require_customer_access(customer_id)?;
        let return_url = url("returnUrl", return_url)?;
        let customer = self.customer_model(customer_id).await?;
        let latest = subscription::Entity::find()
            .filter(subscription::Column::CustomerId.eq(customer_id))
            .order_by_desc(subscription::Column::CreatedAt)
            .one(self.db.conn())
            .await?;
        let provider = self.provider(latest.as_ref().map(|s| s.provider.as_str()))?;
        let customer_ref = self
            .provider_customer_ref(provider.as_ref(), &customer)
            .await?;
        let session = within(
            self.provider_timeout,
            provider.payment_details_session(DetailsRequest {
                customer_ref,
                return_url,
            }),
        )
        .await?;
        Ok(session.url)
    }

    pub(crate) async fn customer_by_provider_ref(
        &self,
        db: &impl ConnectionTrait,
        provider: &str,
        r: &str,
    ) -> BillingResult<Option<Uuid>> {
        Ok(provider_customer::Entity::find()
            .filter(provider_customer::Column::Provider.eq(provider))
            .filter(provider_customer::Column::ProviderRef.eq(r))
            .one(db)
            .await?
            .map(|m| m.customer_id))
    }

    pub(crate) async fn live_status_for(
        &self,
        plan: &Plan,
        customer_id: Uuid,
        db: &impl ConnectionTrait,
    ) -> BillingResult<SubscriptionStatus> {
        let c = customer::Entity::find_by_id(customer_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("customer", customer_id))?;
        Ok(
            if self.phase_now(plan, c.billing_start) == PhaseKind::Trial {
                SubscriptionStatus::Trialing
            } else {
                SubscriptionStatus::Active
            },
        )
    }
}
