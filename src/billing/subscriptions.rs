//! Subscriptions and checkout (CoCoS' flows): select a plan, pay on the provider's page,
//! come back active; update payment details; cancel; change plan.
//!
//! Provider calls never run inside a database transaction: state is written before the
//! call (so a crash leaves a record to reconcile) and after it (with the outcome).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{checkout, customer, subscription};
use providers::{DetailsRequest, PaymentProvider};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::Plan;
use super::checkout::{Closed, OpenCheckout, Which};
use super::codes::{CloseReason, Code, EventKind, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::gateway::within;
use super::idempotency::{Claim, request_hash, scope_of};
use super::invoicing::issue::Billable;
use super::items::{Config, NamedItem, validate_items, write_version};
use super::lifecycle::{self, Current, Trigger};
use super::phase::{PhaseKind, phase_at};

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

pub use super::checkout::Checkout;

#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub provider: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: Option<String>,
    /// Named items; None: the plan's default items.
    pub items: Option<Vec<NamedItem>>,
}

/// Where a plan change's checkout sends the browser, when the change must be paid first.
#[derive(Clone, Debug, Default)]
pub struct PlanChangeUrls {
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// The same key with the same input returns the first result.
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Subscribed {
    pub subscription: Subscription,
    pub checkout: Option<Checkout>,
    /// A change's invoice, when it issued one.
    pub invoice: Option<super::invoicing::Invoice>,
}

pub(crate) fn url(field: &str, v: &str) -> BillingResult<String> {
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

impl Billing {
    pub(crate) async fn subscription_model(&self, id: Uuid) -> BillingResult<subscription::Model> {
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
                "{}|{}|{}|{}|{}|{}",
                input.customer_id,
                input.plan_id,
                provider.name(),
                success_url,
                cancel_url,
                serde_json::to_string(&input.items).unwrap_or_default()
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
            self.finish_idempotency(&scope, key, &result).await?;
        }
        result
    }

    /// Stores a result for its idempotency key, or frees the key after an error.
    pub(crate) async fn finish_idempotency(
        &self,
        scope: &str,
        key: &str,
        result: &BillingResult<Subscribed>,
    ) -> BillingResult<()> {
        match result {
            Ok(out) => {
                let stored = json!({ "subscription": out.subscription.id, "checkout": out.checkout.as_ref().map(|c| c.id), "invoice": out.invoice.as_ref().and_then(|i| i.id) });
                self.complete_idempotency(scope, key, stored.to_string())
                    .await
            }
            Err(_) => self.release_idempotency(scope, key).await,
        }
    }

    pub(crate) async fn replay_subscribed(&self, stored: &str) -> BillingResult<Subscribed> {
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
        let invoice = match v["invoice"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => Some(self.invoice_by_id(id).await?),
            None => None,
        };
        Ok(Subscribed {
            subscription,
            checkout,
            invoice,
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
        let mut customer = self.customer_model(input.customer_id).await?;
        let plan = self.plan_for(who, &customer, input.plan_id).await?;
        let named = input
            .items
            .as_deref()
            .map(|items| validate_items(&self.catalog(), &plan, items))
            .transpose()?;
        let now = self.clock.now();
        // The first subscription sets the customer's billing start.
        let first_start = customer.billing_start.is_none();
        let billing_start = *customer.billing_start.get_or_insert(now);
        let phase = self.phase_now(&plan, Some(billing_start));
        let (total, needs_card) = self.opening_total(&plan, named.as_deref(), &customer, now);
        let due = super::money::round_to_currency(
            super::money::at_least_zero(total - customer.credit_balance.0),
            &customer.currency,
        );
        let activate_now = due.is_zero() && !needs_card;

        let sub_id = Uuid::now_v7();
        let txn = self.db.write().await?;
        one_subscribe_per_customer(&txn, customer.id).await?;
        if first_start {
            customer::ActiveModel {
                id: Set(customer.id),
                billing_start: Set(Some(billing_start)),
                updated_at: Set(now),
                ..Default::default()
            }
            .update(&*txn)
            .await?;
        }
        // A customer can always try again: an unpaid subscription is replaced, not in the way.
        let replaced = self.replace_unpaid(&txn, now, customer.id).await?;
        let current = lifecycle::insert(
            &*txn,
            now,
            subscription::ActiveModel {
                id: Set(sub_id),
                customer_id: Set(customer.id),
                plan_id: Set(plan.id),
                provider: Set(provider.name().to_owned()),
                cancel_at_period_end: Set(false),
                canceled_at: Set(None),
                next_billing_at: Set(super::schedule::NEVER),
                ..Default::default()
            },
            json!({ "planId": plan.id, "status": SubscriptionStatus::Incomplete.code() }),
        )
        .await?;
        write_version(&*txn, sub_id, now, plan.id, named.as_deref()).await?;
        if activate_now {
            lifecycle::apply(
                &*txn,
                now,
                current,
                Trigger::CheckoutPaid,
                phase,
                &self.policy(),
                json!({ "planId": plan.id, "reason": "nothing due" }),
            )
            .await?;
            self.issue_opening(&*txn, now, sub_id, Decimal::ZERO)
                .await?;
        }
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&replaced).await;
        if activate_now {
            let subscription = self.subscription_model(sub_id).await?.try_into()?;
            return Ok(Subscribed {
                subscription,
                checkout: None,
                invoice: None,
            });
        }

        // Outside any transaction: the provider.
        let opened = self
            .open_checkout(OpenCheckout {
                provider,
                customer: &customer,
                subscription_id: sub_id,
                plan_id: None,
                change: None,
                amount: due,
                description: format!("{} — {}", plan.name, customer.name),
                success_url,
                cancel_url,
                idempotency_key: format!("checkout-{sub_id}"),
            })
            .await;
        let checkout = match opened {
            Ok(c) => c,
            Err(e) => {
                // The subscription never became usable: close it so the customer can retry.
                tracing::warn!(subscription = %sub_id, error = %e, "the payment provider could not open a checkout");
                self.close_unpaid(sub_id, CloseReason::Canceled).await?;
                return Err(e);
            }
        };
        let subscription = self.subscription_model(sub_id).await?.try_into()?;
        Ok(Subscribed {
            subscription,
            checkout: Some(checkout),
            invoice: None,
        })
    }

    /// The plan a customer may subscribe to or change to: visible to them (or to the admin
    /// acting for them), not archived, and offered in their currency.
    pub(crate) async fn plan_for(
        &self,
        who: &Principal,
        customer: &customer::Model,
        plan_id: Uuid,
    ) -> BillingResult<Arc<Plan>> {
        let plan = match self
            .visible_plan(&Principal::Customer(customer.id), plan_id)
            .await
        {
            Err(_) if who.is_admin() => self.visible_plan(who, plan_id).await?,
            found => found?,
        };
        if plan.is_archived() {
            return Err(BillingError::PlanArchived(plan.id));
        }
        if !plan.offers_currency(&customer.currency) {
            return Err(BillingError::CurrencyNotOffered {
                plan: plan.name.clone(),
                currency: customer.currency.clone(),
            });
        }
        Ok(plan)
    }

    /// What the opening invoice of a subscription started now would come to (period 0's
    /// advance lines), and whether the plan needs a card at all (any price above zero).
    fn opening_total(
        &self,
        plan: &Arc<Plan>,
        named: Option<&[NamedItem]>,
        customer: &customer::Model,
        now: DateTime<Utc>,
    ) -> (Decimal, bool) {
        let catalog = self.catalog();
        let needs_card = plan.rules.iter().any(|r| r.unit_amount > Decimal::ZERO);
        let config = Config::new(&catalog, now, plan.clone(), named.map(<[_]>::to_vec));
        let billable = Billable::new(&catalog, now, vec![config], customer, Vec::new());
        let subject = billable.subject();
        let lines = subject.boundary(0, None, true);
        (subject.total(&lines), needs_card)
    }

    /// Closes the customer's unpaid `INCOMPLETE` subscriptions (and their checkouts) in
    /// `db`, so that a new one can take their place.
    async fn replace_unpaid(
        &self,
        db: &sea_orm::DatabaseTransaction,
        now: DateTime<Utc>,
        customer_id: Uuid,
    ) -> BillingResult<Closed> {
        let unpaid = subscription::Entity::find()
            .filter(subscription::Column::CustomerId.eq(customer_id))
            .filter(subscription::Column::Status.eq(SubscriptionStatus::Incomplete.code()))
            .all(db)
            .await?;
        let mut closed = Closed::new();
        for s in unpaid {
            closed.extend(
                self.close_unpaid_in(db, now, s.id, CloseReason::Replaced)
                    .await?,
            );
        }
        Ok(closed)
    }

    /// Ends an unpaid subscription and its checkouts (the provider could not open one).
    pub(crate) async fn close_unpaid(
        &self,
        sub_id: Uuid,
        reason: CloseReason,
    ) -> BillingResult<()> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let closed = self.close_unpaid_in(&*txn, now, sub_id, reason).await?;
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&closed).await;
        Ok(())
    }

    /// Cancels now, or at the end of the current billing period.
    pub async fn cancel_subscription(
        &self,
        who: &Principal,
        id: Uuid,
        at_period_end: bool,
    ) -> BillingResult<Subscription> {
        let sub = self.subscription_model(id).await?;
        who.require_customer_access(sub.customer_id)
            .map_err(|_| BillingError::not_found("subscription", id))?;
        let current = Current::try_from(&sub)?;
        if !current.status.is_live() {
            return Err(BillingError::InvalidState(format!(
                "subscription {id} is {} and cannot be canceled",
                current.status.code()
            )));
        }
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let mut closed = Closed::new();
        match sub.started_at.filter(|_| at_period_end) {
            Some(started) => {
                // Recorded as the instant it takes effect; the billing clock carries it out.
                let end = super::phase::period_containing(started, now).2;
                subscription::ActiveModel {
                    id: Set(id),
                    cancel_at_period_end: Set(true),
                    canceled_at: Set(Some(end)),
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
                    EventKind::CancellationScheduled,
                    json!({ "cancelAt": end }),
                )
                .await?;
            }
            None => {
                let moved = lifecycle::apply(
                    &*txn,
                    now,
                    current,
                    Trigger::CancelNow,
                    PhaseKind::Final,
                    &self.policy(),
                    json!({}),
                )
                .await?;
                if moved.is_none() {
                    return Err(BillingError::Conflict(format!(
                        "subscription {id} changed meanwhile; read it again"
                    )));
                }
                // Nothing can be paid for it any more.
                closed = self
                    .close_open(&*txn, now, id, CloseReason::Canceled, Which::All)
                    .await?;
            }
        }
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&closed).await;
        let sub = self.subscription_model(id).await?;
        if !at_period_end {
            // The final invoice at once: arrears up to now, credit for the unused advance part.
            let customer = self.customer_model(sub.customer_id).await?;
            let (_, next) = self.bill_subscription(&sub, &customer, now).await?;
            let _slot = self.db.writer_slot().await;
            subscription::Entity::update_many()
                .col_expr(
                    subscription::Column::NextBillingAt,
                    sea_orm::sea_query::Expr::value(next),
                )
                .filter(subscription::Column::Id.eq(id))
                .exec(self.db.conn())
                .await?;
        }
        Ok(sub.try_into()?)
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
            provider.name(),
            "payment_details_session",
            provider.payment_details_session(DetailsRequest {
                customer_ref,
                return_url,
            }),
        )
        .await?;
        Ok(session.url)
    }
}

/// PostgreSQL: one subscribe of a customer at a time, until its transaction ends (a lock of
/// its own, which only subscribes take, so that it orders nothing against the row locks of
/// payments and the clock). A concurrent subscribe then finds this one's subscription and
/// replaces it, rather than both replacing the same older one and the second meeting the
/// one-live-subscription index (ALREADY_SUBSCRIBED). On SQLite the writer slot serializes
/// every write transaction already.
async fn one_subscribe_per_customer(
    txn: &sea_orm::DatabaseTransaction,
    customer_id: Uuid,
) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    if txn.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    // The id's random half; two customers that share it only wait for each other.
    let (_, random) = customer_id.as_u64_pair();
    let key = random.cast_signed();
    txn.query_one_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [key.into()],
    ))
    .await?;
    Ok(())
}
