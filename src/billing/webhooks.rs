//! Provider news in: signed webhooks and the reconciler's status questions both end in
//! `apply_outcome`, which moves a checkout (and its subscription) only forward.

use axum::http::HeaderMap;
use chrono::TimeDelta;
use entity::{checkout, provider_event, subscription};
use providers::{PaymentOutcome, ProviderEvent, ProviderEventKind};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;

use super::Billing;
use super::codes::{CheckoutStatus, Code, EventKind, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::events::record;

/// The reconciler's spacing: 1, 2, 4, … minutes, at most an hour.
pub fn next_check(checks: i32) -> TimeDelta {
    TimeDelta::minutes(1i64 << checks.clamp(0, 6)).min(TimeDelta::hours(1))
}

impl Billing {
    /// A webhook delivery: verified by its provider, stored once per event id, applied.
    /// Returns how many events were new.
    pub async fn handle_webhook(
        &self,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> BillingResult<usize> {
        let p = self
            .providers
            .get(provider)
            .map_err(|_| BillingError::not_found("payment provider", provider))?;
        let events = p.verify_webhook(headers, body)?;
        self.apply_provider_events(p.name(), events).await
    }

    /// Verified provider events (from a webhook, or handed over by a provider's own page),
    /// each stored once by its id and applied. Returns how many were new.
    pub async fn apply_provider_events(
        &self,
        provider: &str,
        events: Vec<ProviderEvent>,
    ) -> BillingResult<usize> {
        let mut fresh = 0;
        for ev in events {
            if self.apply_provider_event(provider, ev).await? {
                fresh += 1;
            }
        }
        Ok(fresh)
    }

    async fn apply_provider_event(&self, provider: &str, ev: ProviderEvent) -> BillingResult<bool> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let first_time = provider_event::ActiveModel {
            provider: Set(provider.to_owned()),
            event_id: Set(ev.id.clone()),
            received_at: Set(now),
        }
        .insert(&*txn)
        .await;
        match first_time {
            Ok(_) => {}
            // Delivered before: nothing changes.
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        match (&ev.kind, &ev.outcome) {
            (ProviderEventKind::Checkout, Some(outcome)) => {
                let found = checkout::Entity::find()
                    .filter(checkout::Column::Provider.eq(provider))
                    .filter(checkout::Column::ProviderRef.eq(ev.object_ref.as_str()))
                    .one(&*txn)
                    .await?;
                match found {
                    Some(c) => self.apply_outcome(&txn, c, outcome).await?,
                    None => tracing::warn!(
                        provider,
                        object = ev.object_ref,
                        "webhook for an unknown checkout"
                    ),
                }
            }
            (ProviderEventKind::PaymentMethodUpdated, _) => {
                if let Some(customer) = self
                    .customer_by_provider_ref(&*txn, provider, &ev.object_ref)
                    .await?
                {
                    record(
                        &*txn,
                        now,
                        customer,
                        None,
                        EventKind::PaymentDetailsUpdated,
                        json!({ "provider": provider }),
                    )
                    .await?;
                }
            }
            _ => {}
        }
        txn.commit().await?;
        self.announce_events();
        Ok(true)
    }

    /// Applies a payment outcome to a checkout. Settled checkouts never move again, so late
    /// or out-of-order news cannot take a subscription backwards.
    pub(crate) async fn apply_outcome(
        &self,
        db: &sea_orm::DatabaseTransaction,
        c: checkout::Model,
        outcome: &PaymentOutcome,
    ) -> BillingResult<()> {
        let status: CheckoutStatus = parse(&c.status)?;
        if status.is_final() {
            return Ok(());
        }
        let now = self.clock.now();
        let (next, reason) = match outcome {
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
                Expr::value(
                    (!matches!(next, CheckoutStatus::Succeeded))
                        .then(|| now + next_check(c.status_checks + 1)),
                ),
            )
            .filter(checkout::Column::Id.eq(c.id))
            .filter(checkout::Column::Status.eq(c.status.as_str()))
            .exec(db)
            .await?;
        if moved.rows_affected == 0 {
            return Ok(());
        }
        let sub = subscription::Entity::find_by_id(c.subscription_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", c.subscription_id))?;
        let amount =
            json!({ "checkoutId": c.id, "amount": c.amount.0.to_string(), "currency": c.currency });
        match next {
            CheckoutStatus::Succeeded => {
                record(
                    db,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::CheckoutCompleted,
                    amount.clone(),
                )
                .await?;
                if !c.amount.0.is_zero() {
                    record(
                        db,
                        now,
                        sub.customer_id,
                        Some(sub.id),
                        EventKind::PaymentSucceeded,
                        amount.clone(),
                    )
                    .await?;
                }
                if parse::<SubscriptionStatus>(&sub.status)? == SubscriptionStatus::Incomplete {
                    let plan = self
                        .catalog()
                        .plan(sub.plan_id)
                        .cloned()
                        .ok_or_else(|| BillingError::not_found("plan", sub.plan_id))?;
                    let live = self.live_status_for(&plan, sub.customer_id, db).await?;
                    subscription::ActiveModel {
                        id: Set(sub.id),
                        status: Set(live.code().to_owned()),
                        started_at: Set(Some(now)),
                        updated_at: Set(now),
                        ..Default::default()
                    }
                    .update(db)
                    .await?;
                    record(
                        db,
                        now,
                        sub.customer_id,
                        Some(sub.id),
                        EventKind::SubscriptionActivated,
                        json!({ "status": live.code() }),
                    )
                    .await?;
                } else {
                    tracing::warn!(subscription = %sub.id, status = sub.status, "payment succeeded for a subscription that is no longer waiting for it");
                }
            }
            CheckoutStatus::Failed => {
                let mut data = amount;
                data["reason"] = json!(reason);
                record(
                    db,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::PaymentFailed,
                    data,
                )
                .await?;
            }
            CheckoutStatus::Pending if status != CheckoutStatus::Pending => {
                record(
                    db,
                    now,
                    sub.customer_id,
                    Some(sub.id),
                    EventKind::PaymentPending,
                    amount,
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
