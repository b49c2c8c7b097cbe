//! Money is never kept for nothing: a payment that arrives for a closed checkout (or for a
//! subscription that no longer waits for it) is queued for a refund in the transaction
//! that learnt of it, sent right after that commits, and resent under the same idempotency
//! key by the billing clock until the provider gives a final answer.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{Dec, checkout, refund, subscription};
use providers::{PaymentOutcome, RefundRequest};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::codes::{Code, EventKind, RefundStatus};
use super::error::{BillingError, BillingResult};
use super::events::record;

/// A payment to give (part of) back.
pub(crate) struct PaymentToRefund {
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub checkout_id: Option<Uuid>,
    pub provider: String,
    pub payment_ref: String,
    pub amount: rust_decimal::Decimal,
    pub currency: String,
}

/// Refunds sent per pass.
const BATCH: u64 = 100;

/// When to ask again about a refund with no final answer: 1, 2, 4, … minutes, at most an hour.
fn retry_after(attempts: i32) -> TimeDelta {
    TimeDelta::minutes(1i64 << attempts.clamp(0, 6)).min(TimeDelta::hours(1))
}

impl Billing {
    /// Queues the refund of a checkout's payment (once per payment, whoever notices it
    /// first). Returns whether there is money to give back.
    pub(crate) async fn queue_refund(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        c: &checkout::Model,
        reason: &str,
    ) -> BillingResult<bool> {
        if c.amount.0.is_zero() {
            return Ok(false); // only a card was saved
        }
        let customer_id = subscription::Entity::find_by_id(c.subscription_id)
            .one(db)
            .await?
            .map(|s| s.customer_id)
            .ok_or_else(|| BillingError::not_found("subscription", c.subscription_id))?;
        self.queue_payment_refund(
            db,
            now,
            PaymentToRefund {
                customer_id,
                subscription_id: Some(c.subscription_id),
                checkout_id: Some(c.id),
                provider: c.provider.clone(),
                payment_ref: c.provider_ref.clone(),
                amount: c.amount.0,
                currency: c.currency.clone(),
            },
            reason,
        )
        .await
    }

    /// Queues the refund of (part of) a payment, once per payment. Returns whether it was
    /// queued (false: that payment has a refund already).
    pub(crate) async fn queue_payment_refund(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        p: PaymentToRefund,
        reason: &str,
    ) -> BillingResult<bool> {
        let inserted = refund::Entity::insert(refund::ActiveModel {
            id: Set(Uuid::now_v7()),
            customer_id: Set(p.customer_id),
            subscription_id: Set(p.subscription_id),
            checkout_id: Set(p.checkout_id),
            provider: Set(p.provider),
            payment_ref: Set(p.payment_ref.clone()),
            amount: Set(Dec(p.amount)),
            currency: Set(p.currency.clone()),
            reason: Set(reason.to_owned()),
            status: Set(RefundStatus::Pending.code().to_owned()),
            provider_ref: Set(None),
            failure_reason: Set(None),
            attempts: Set(0),
            next_attempt_at: Set(Some(now)),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict_do_nothing_on([refund::Column::Provider, refund::Column::PaymentRef])
        .exec(db)
        .await?;
        let queued = matches!(inserted, sea_orm::TryInsertResult::Inserted(_));
        if queued {
            tracing::info!(customer = %p.customer_id, checkout = ?p.checkout_id, payment = p.payment_ref,
                amount = %p.amount, currency = p.currency, reason, "refund queued");
        }
        Ok(queued)
    }

    /// Sends the refunds that are due and records what the provider answered.
    pub async fn send_due_refunds(&self) -> BillingResult<usize> {
        let now = self.clock.now();
        let due = refund::Entity::find()
            .filter(refund::Column::Status.eq(RefundStatus::Pending.code()))
            .filter(refund::Column::NextAttemptAt.lte(now))
            .order_by_asc(refund::Column::Id)
            .limit(BATCH)
            .all(self.db.conn())
            .await?;
        let mut settled = 0;
        for r in due {
            let outcome = self
                .send_refund(
                    &r.provider,
                    RefundRequest {
                        payment_ref: r.payment_ref.clone(),
                        amount: r.amount.0,
                        currency: r.currency.clone(),
                        reason: r.reason.clone(),
                        // The same key on every attempt: the provider refunds once.
                        idempotency_key: format!("refund-{}", r.id),
                    },
                )
                .await;
            if self.settle_refund(&r, outcome).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Records a refund's outcome, conditionally on the attempt it answers. Returns whether
    /// the refund reached a final status.
    async fn settle_refund(
        &self,
        r: &refund::Model,
        outcome: PaymentOutcome,
    ) -> BillingResult<bool> {
        let now = self.clock.now();
        let attempts = r.attempts + 1;
        let data = json!({
            "refundId": r.id, "checkoutId": r.checkout_id, "amount": r.amount.0.to_string(),
            "currency": r.currency, "reason": r.reason,
        });
        let (status, provider_ref, failure, next) = match &outcome {
            PaymentOutcome::Succeeded { provider_ref } => (
                RefundStatus::Succeeded,
                Some(provider_ref.clone()),
                None,
                None,
            ),
            PaymentOutcome::Failed { reason, .. } => {
                (RefundStatus::Failed, None, Some(reason.clone()), None)
            }
            PaymentOutcome::Pending { provider_ref } => (
                RefundStatus::Pending,
                Some(provider_ref.clone()),
                None,
                Some(now + retry_after(attempts)),
            ),
            PaymentOutcome::Unknown { provider_ref } => (
                RefundStatus::Pending,
                provider_ref.clone().or(r.provider_ref.clone()),
                None,
                Some(now + retry_after(attempts)),
            ),
        };
        let txn = self.db.write().await?;
        let moved = refund::Entity::update_many()
            .col_expr(refund::Column::Status, Expr::value(status.code()))
            .col_expr(
                refund::Column::ProviderRef,
                Expr::value(provider_ref.clone()),
            )
            .col_expr(refund::Column::FailureReason, Expr::value(failure.clone()))
            .col_expr(refund::Column::Attempts, Expr::value(attempts))
            .col_expr(refund::Column::NextAttemptAt, Expr::value(next))
            .col_expr(refund::Column::UpdatedAt, Expr::value(now))
            .filter(refund::Column::Id.eq(r.id))
            .filter(refund::Column::Status.eq(RefundStatus::Pending.code()))
            .filter(refund::Column::Attempts.eq(r.attempts))
            .exec(&*txn)
            .await?;
        if moved.rows_affected == 0 {
            return Ok(false); // another process recorded this attempt
        }
        match status {
            RefundStatus::Succeeded => {
                let mut data = data;
                data["providerRef"] = json!(provider_ref);
                record(
                    &*txn,
                    now,
                    r.customer_id,
                    r.subscription_id,
                    EventKind::PaymentRefunded,
                    data,
                )
                .await?;
                tracing::info!(refund = %r.id, checkout = ?r.checkout_id, amount = %r.amount.0,
                    currency = r.currency, "refund succeeded");
            }
            RefundStatus::Failed if r.reason == super::credit::CREDIT_REFUND => {
                // A refund of credit: the customer keeps the credit it could not give back.
                super::credit::move_credit(
                    &*txn,
                    now,
                    super::credit::Move {
                        customer_id: r.customer_id,
                        subscription_id: r.subscription_id,
                        invoice_id: None,
                        amount: r.amount.0,
                        reason: super::credit::CreditReason::RefundFailed,
                    },
                )
                .await?;
                tracing::error!(refund = %r.id, amount = %r.amount.0, currency = r.currency,
                    reason = ?failure, "credit refund refused by the provider; the credit stays with the customer");
            }
            RefundStatus::Failed => tracing::error!(refund = %r.id, checkout = ?r.checkout_id,
                amount = %r.amount.0, currency = r.currency, reason = ?failure,
                "refund refused by the provider: the money must be given back by hand"),
            RefundStatus::Pending => tracing::warn!(refund = %r.id, attempts,
                "refund not settled yet; asking again later"),
        }
        txn.commit().await?;
        self.announce_events();
        Ok(status != RefundStatus::Pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsettled_refunds_are_asked_about_ever_less_often() {
        assert_eq!(retry_after(1), TimeDelta::minutes(2));
        assert_eq!(retry_after(3), TimeDelta::minutes(8));
        assert_eq!(retry_after(40), TimeDelta::hours(1));
    }
}
