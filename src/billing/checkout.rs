//! Checkouts: opened at a provider for a subscription's first payment or for a plan change
//! that must be paid first, settled by the provider's news (`apply_outcome`), and closed
//! (expired, abandoned, replaced, canceled). A closed checkout takes no payment: its page
//! says so, and money that still arrives for it is refunded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{Dec, checkout, customer, subscription};
use providers::{CheckoutRequest, PaymentOutcome, PaymentProvider};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::codes::{CheckoutStatus, CloseReason, Code, EventKind, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::gateway::within;
use super::lifecycle::{self, Current, Policy, Trigger};
use super::schedule::DUE_NOW;
use super::webhooks::next_check;

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

/// A checkout session to open at a provider.
pub(crate) struct OpenCheckout<'a> {
    pub provider: Arc<dyn PaymentProvider>,
    pub customer: &'a customer::Model,
    pub subscription_id: Uuid,
    /// The plan a change's checkout buys; None for a subscription's first checkout.
    pub plan_id: Option<Uuid>,
    /// The change it buys (plan and items); None for a subscription's first checkout.
    pub change: Option<super::changes::Target>,
    pub amount: Decimal,
    pub description: String,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: String,
}

/// How often a closed checkout's provider is asked whether money still arrived (spaced
/// 1, 2, 4, … minutes, at most an hour apart: about half a day in all).
const CLOSED_CHECKS: i32 = 16;

/// Which of a subscription's open checkouts to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    All,
    /// Only those that buy a plan change.
    PlanChanges,
    Only(Uuid),
}

/// Checkout sessions closed in a transaction, to close at their providers after it commits.
pub(crate) type Closed = Vec<(String, String)>;

impl Billing {
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            final_failure: self.dunning.final_failure,
        }
    }

    /// Opens the session at the provider (outside any transaction), then stores it. If the
    /// subscription stopped waiting for it meanwhile (a newer subscription replaced it, it
    /// was canceled), the session is stored closed and closed at the provider at once.
    pub(crate) async fn open_checkout(&self, r: OpenCheckout<'_>) -> BillingResult<Checkout> {
        let customer_ref = self
            .provider_customer_ref(r.provider.as_ref(), r.customer)
            .await?;
        let session = within(
            self.provider_timeout,
            r.provider.name(),
            "start_checkout",
            r.provider.start_checkout(CheckoutRequest {
                customer_ref,
                subscription_id: r.subscription_id.to_string(),
                amount: r.amount,
                currency: r.customer.currency.clone(),
                description: r.description,
                success_url: r.success_url.clone(),
                cancel_url: r.cancel_url.clone(),
                idempotency_key: r.idempotency_key,
                terms: self
                    .checkout_terms(r.customer, r.subscription_id, r.plan_id)
                    .await?,
            }),
        )
        .await?;
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let txn = self.db.write().await?;
        // Locked (on PostgreSQL; SQLite's writer slot serializes already): a concurrent
        // subscribe that replaces this subscription either commits first, and the session
        // is stored closed, or waits, and then finds the session to close.
        let sub = subscription::Entity::find_by_id(r.subscription_id)
            .lock_exclusive()
            .one(&*txn)
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", r.subscription_id))?;
        let status: SubscriptionStatus = parse(&sub.status)?;
        let mut closed = Closed::new();
        let still_wanted = match r.plan_id {
            None => status == SubscriptionStatus::Incomplete,
            Some(_) => {
                // The newest plan change wins: an older one still open is replaced.
                closed = self
                    .close_open(
                        &*txn,
                        now,
                        r.subscription_id,
                        CloseReason::Replaced,
                        Which::PlanChanges,
                    )
                    .await?;
                status.grants_plan()
            }
        };
        let initial = if still_wanted {
            CheckoutStatus::Open
        } else {
            CheckoutStatus::Replaced
        };
        checkout::ActiveModel {
            id: Set(id),
            subscription_id: Set(r.subscription_id),
            provider: Set(r.provider.name().to_owned()),
            provider_ref: Set(session.provider_ref.clone()),
            url: Set(session.url),
            amount: Set(Dec(r.amount)),
            currency: Set(r.customer.currency.clone()),
            status: Set(initial.code().to_owned()),
            failure_reason: Set(None),
            success_url: Set(r.success_url),
            cancel_url: Set(r.cancel_url),
            expires_at: Set(now + self.checkout_ttl),
            status_checks: Set(0),
            // If the provider's webhook never arrives, the reconciler asks.
            next_check_at: Set(still_wanted.then(|| now + chrono::TimeDelta::minutes(1))),
            created_at: Set(now),
            updated_at: Set(now),
            plan_id: Set(r.plan_id),
            change: Set(r
                .change
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_default())),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        if !still_wanted {
            closed.push((r.provider.name().to_owned(), session.provider_ref));
        }
        self.close_at_providers(&closed).await;
        let m = checkout::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("checkout", id))?;
        Ok(m.try_into()?)
    }

    /// Closes those of a subscription's checkouts that could still be paid (`which`),
    /// conditionally on their status. Returns the sessions to close at their providers once
    /// the transaction commits.
    pub(crate) async fn close_open(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        subscription_id: Uuid,
        reason: CloseReason,
        which: Which,
    ) -> BillingResult<Closed> {
        let mut open = Condition::all()
            .add(checkout::Column::SubscriptionId.eq(subscription_id))
            .add(checkout::Column::Status.is_in(CheckoutStatus::OPEN.map(|s| s.code())));
        open = match which {
            Which::All => open,
            Which::PlanChanges => open.add(checkout::Column::PlanId.is_not_null()),
            Which::Only(id) => open.add(checkout::Column::Id.eq(id)),
        };
        let found = checkout::Entity::find()
            .filter(open.clone())
            .all(db)
            .await?;
        if found.is_empty() {
            return Ok(Closed::new());
        }
        checkout::Entity::update_many()
            .col_expr(
                checkout::Column::Status,
                Expr::value(reason.checkout_status().code()),
            )
            .col_expr(checkout::Column::UpdatedAt, Expr::value(now))
            .filter(open)
            .exec(db)
            .await?;
        for c in &found {
            tracing::info!(checkout = %c.id, subscription = %subscription_id,
                reason = reason.describe(), "checkout closed");
        }
        Ok(found
            .into_iter()
            .map(|c| (c.provider, c.provider_ref))
            .collect())
    }

    /// Closes one checkout in `db`. A subscription's first checkout closing unpaid ends the
    /// subscription (`INCOMPLETE_EXPIRED`) and every other checkout it had open; a
    /// plan-change checkout closes alone and the subscription stays as it is.
    pub(crate) async fn close_checkout_in(
        &self,
        db: &DatabaseTransaction,
        now: DateTime<Utc>,
        c: &checkout::Model,
        reason: CloseReason,
    ) -> BillingResult<Closed> {
        match c.plan_id {
            Some(_) => {
                self.close_open(db, now, c.subscription_id, reason, Which::Only(c.id))
                    .await
            }
            None => {
                self.close_unpaid_in(db, now, c.subscription_id, reason)
                    .await
            }
        }
    }

    /// Ends an unpaid (`INCOMPLETE`) subscription and closes every checkout it has open.
    /// A subscription that is no longer unpaid only has its checkouts closed.
    pub(crate) async fn close_unpaid_in(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        subscription_id: Uuid,
        reason: CloseReason,
    ) -> BillingResult<Closed> {
        let sub = subscription::Entity::find_by_id(subscription_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", subscription_id))?;
        let current = Current::try_from(&sub)?;
        if current.status == SubscriptionStatus::Incomplete {
            lifecycle::apply(
                db,
                now,
                current,
                Trigger::CheckoutClosed(reason),
                super::phase::PhaseKind::Final,
                &self.policy(),
                json!({ "reason": reason.describe() }),
            )
            .await?;
        }
        self.close_open(db, now, subscription_id, reason, Which::All)
            .await
    }

    /// Closes a checkout in a transaction of its own, then at its provider.
    pub(crate) async fn close_checkout(
        &self,
        c: &checkout::Model,
        reason: CloseReason,
    ) -> BillingResult<()> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let closed = self.close_checkout_in(&txn, now, c, reason).await?;
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&closed).await;
        Ok(())
    }

    /// Applies a payment outcome to a checkout. Settled checkouts never move again, so late
    /// or out-of-order news cannot take a subscription backwards; money that arrives for a
    /// closed checkout, or for a subscription that no longer waits for it, is queued for a
    /// refund. Returns whether a refund was queued.
    pub(crate) async fn apply_outcome(
        &self,
        db: &DatabaseTransaction,
        c: checkout::Model,
        outcome: &PaymentOutcome,
    ) -> BillingResult<bool> {
        let status: CheckoutStatus = parse(&c.status)?;
        let now = self.clock.now();
        let paid = matches!(outcome, PaymentOutcome::Succeeded { .. });
        if status.is_closed() {
            // Asked about for a while after closing: a payment in flight may still land.
            let settled = !matches!(
                outcome,
                PaymentOutcome::Pending { .. } | PaymentOutcome::Unknown { .. }
            );
            let stop = settled || c.status_checks >= CLOSED_CHECKS;
            checkout::Entity::update_many()
                .col_expr(
                    checkout::Column::StatusChecks,
                    Expr::value(c.status_checks + 1),
                )
                .col_expr(
                    checkout::Column::NextCheckAt,
                    Expr::value((!stop).then(|| now + next_check(c.status_checks + 1))),
                )
                .filter(checkout::Column::Id.eq(c.id))
                .exec(db)
                .await?;
            if paid {
                tracing::warn!(checkout = %c.id, status = c.status,
                    "a payment arrived for a closed checkout; refunding it");
                return self
                    .queue_refund(
                        db,
                        now,
                        &c,
                        "the checkout was closed before the payment arrived",
                    )
                    .await;
            }
            return Ok(false);
        }
        if status.is_final() {
            return Ok(false);
        }
        let sub = subscription::Entity::find_by_id(c.subscription_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", c.subscription_id))?;
        let sub_status: SubscriptionStatus = parse(&sub.status)?;
        // What the payment is for must still be wanted, or the money goes back.
        let waits = match c.plan_id {
            None => sub_status == SubscriptionStatus::Incomplete,
            Some(_) => sub_status.grants_plan(),
        };
        let (next, reason) = match outcome {
            PaymentOutcome::Succeeded { .. } if !waits => (
                CheckoutStatus::Expired,
                Some("paid after its subscription stopped waiting for it".to_owned()),
            ),
            PaymentOutcome::Succeeded { .. } => (CheckoutStatus::Succeeded, None),
            PaymentOutcome::Pending { .. } => (CheckoutStatus::Pending, None),
            PaymentOutcome::Failed { reason, .. } => (CheckoutStatus::Failed, Some(reason.clone())),
            PaymentOutcome::Unknown { .. } => (CheckoutStatus::Unknown, None),
        };
        // Conditional on the status we read: one writer wins a race, the other changes nothing.
        let moved = checkout::Entity::update_many()
            .col_expr(checkout::Column::Status, Expr::value(next.code()))
            .col_expr(checkout::Column::FailureReason, Expr::value(reason.clone()))
            .col_expr(checkout::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                checkout::Column::StatusChecks,
                Expr::value(c.status_checks + 1),
            )
            .col_expr(
                checkout::Column::NextCheckAt,
                Expr::value((!paid).then(|| now + next_check(c.status_checks + 1))),
            )
            .filter(checkout::Column::Id.eq(c.id))
            .filter(checkout::Column::Status.eq(c.status.as_str()))
            .exec(db)
            .await?;
        if moved.rows_affected == 0 {
            return Ok(false);
        }
        let amount =
            json!({ "checkoutId": c.id, "amount": c.amount.0.to_string(), "currency": c.currency });
        let event = |kind, data| record(db, now, sub.customer_id, Some(sub.id), kind, data);
        match next {
            CheckoutStatus::Expired => {
                tracing::warn!(checkout = %c.id, subscription = %sub.id, status = sub.status,
                    "payment succeeded for a subscription that no longer waits for it; refunding it");
                return self
                    .queue_refund(
                        db,
                        now,
                        &c,
                        "the subscription no longer waited for this payment",
                    )
                    .await;
            }
            CheckoutStatus::Succeeded => {
                tracing::info!(checkout = %c.id, subscription = %sub.id, amount = %c.amount.0,
                    currency = c.currency, "checkout completed");
                event(EventKind::CheckoutCompleted, amount.clone()).await?;
                if !c.amount.0.is_zero() {
                    event(EventKind::PaymentSucceeded, amount.clone()).await?;
                }
                match c.plan_id {
                    None => {
                        self.activate(db, now, &sub).await?;
                        self.issue_opening(db, now, sub.id, c.amount.0).await?;
                    }
                    Some(plan_id) => {
                        // Computed at the instant it was paid; what it took beyond is credit.
                        let target = c
                            .change
                            .as_deref()
                            .and_then(|t| serde_json::from_str(t).ok())
                            .unwrap_or(super::changes::Target {
                                plan_id,
                                items: None,
                            });
                        let applied = self
                            .apply_change(db, now, sub.id, &target, c.amount.0, None, c.id)
                            .await?;
                        if applied.is_none() {
                            return self
                                .queue_refund(
                                    db,
                                    now,
                                    &c,
                                    "the subscription ended before its change was made",
                                )
                                .await;
                        }
                    }
                }
            }
            CheckoutStatus::Failed => {
                tracing::info!(checkout = %c.id, subscription = %sub.id, reason = ?reason, "checkout payment failed");
                let mut data = amount;
                data["reason"] = json!(reason);
                event(EventKind::PaymentFailed, data).await?;
            }
            CheckoutStatus::Pending if status != CheckoutStatus::Pending => {
                event(EventKind::PaymentPending, amount).await?;
            }
            _ => {}
        }
        Ok(false)
    }

    /// A first checkout paid: the subscription goes live in the phase in force now.
    async fn activate(
        &self,
        db: &DatabaseTransaction,
        now: DateTime<Utc>,
        sub: &subscription::Model,
    ) -> BillingResult<()> {
        let current = Current::try_from(sub)?;
        let phase = self
            .phase_in_force(db, sub.plan_id, sub.customer_id)
            .await?;
        lifecycle::apply(
            db,
            now,
            current,
            Trigger::CheckoutPaid,
            phase,
            &self.policy(),
            json!({}),
        )
        .await?;
        Ok(())
    }

    /// Switches a live subscription to `plan_id` and records `PLAN_CHANGED`.
    pub(crate) async fn write_plan_change(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        sub: &subscription::Model,
        plan_id: Uuid,
    ) -> BillingResult<()> {
        subscription::Entity::update_many()
            .col_expr(subscription::Column::PlanId, Expr::value(plan_id))
            // The new plan's phases decide the next boundary.
            .col_expr(subscription::Column::NextBillingAt, Expr::value(DUE_NOW))
            .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
            .filter(subscription::Column::Id.eq(sub.id))
            .exec(db)
            .await?;
        record(
            db,
            now,
            sub.customer_id,
            Some(sub.id),
            EventKind::PlanChanged,
            json!({ "from": sub.plan_id, "to": plan_id }),
        )
        .await?;
        tracing::info!(subscription = %sub.id, from = %sub.plan_id, to = %plan_id, "plan changed");
        Ok(())
    }

    /// The phase a customer is in now on a plan, read inside `db`.
    pub(crate) async fn phase_in_force(
        &self,
        db: &impl ConnectionTrait,
        plan_id: Uuid,
        customer_id: Uuid,
    ) -> BillingResult<super::phase::PhaseKind> {
        let plan = self
            .catalog_with([plan_id])
            .await?
            .plan(plan_id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("plan", plan_id))?;
        let c = customer::Entity::find_by_id(customer_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("customer", customer_id))?;
        Ok(self.phase_now(&plan, c.billing_start))
    }
}
