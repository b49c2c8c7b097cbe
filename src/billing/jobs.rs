//! The billing clock's jobs: expire abandoned checkouts, reconcile unsettled payments,
//! carry out cancellations at period end, send refunds, forget old idempotency keys. They run every few
//! seconds, and at once when an admin moves the test clock.

use entity::{checkout, subscription};
use providers::PaymentOutcome;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::Billing;
use super::checkout::Which;
use super::codes::{CheckoutStatus, CloseReason, Code, SubscriptionStatus};
use super::error::BillingResult;
use super::lifecycle::{self, Current, Trigger};
use super::phase::PhaseKind;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobReport {
    pub expired: usize,
    pub reconciled: usize,
    pub canceled: usize,
    pub invoiced: usize,
    pub refunded: usize,
}

impl Billing {
    pub async fn run_jobs(&self) -> BillingResult<JobReport> {
        let mut report = JobReport::default();
        let now = self.clock.now();

        // Checkouts not completed in time (every status but the final ones).
        let stale = checkout::Entity::find()
            .filter(checkout::Column::Status.is_in(CheckoutStatus::OPEN.map(|s| s.code())))
            .filter(checkout::Column::ExpiresAt.lte(now))
            .all(self.db.conn())
            .await?;
        for c in stale {
            self.close_checkout(&c, CloseReason::Expired).await?;
            report.expired += 1;
        }

        // Payments whose outcome we have not heard: ask the provider, spaced out. Closed
        // checkouts are asked too for a while: money that still arrives is refunded.
        let unsettled = checkout::Entity::find()
            .filter(checkout::Column::NextCheckAt.lte(now))
            .filter(checkout::Column::Status.is_in([
                CheckoutStatus::Open.code(),
                CheckoutStatus::Pending.code(),
                CheckoutStatus::Unknown.code(),
                CheckoutStatus::Expired.code(),
                CheckoutStatus::Abandoned.code(),
                CheckoutStatus::Replaced.code(),
            ]))
            .all(self.db.conn())
            .await?;
        for c in unsettled {
            let outcome = self.ask_payment_status(&c.provider, &c.provider_ref).await;
            // An open checkout the customer has not used yet is not news.
            let waiting = c.status == CheckoutStatus::Open.code()
                && matches!(
                    outcome,
                    PaymentOutcome::Pending { .. } | PaymentOutcome::Unknown { .. }
                );
            let txn = self.db.write().await?;
            if waiting {
                checkout::Entity::update_many()
                    .col_expr(
                        checkout::Column::StatusChecks,
                        Expr::value(c.status_checks + 1),
                    )
                    .col_expr(
                        checkout::Column::NextCheckAt,
                        Expr::value(now + super::webhooks::next_check(c.status_checks + 1)),
                    )
                    .filter(checkout::Column::Id.eq(c.id))
                    .exec(&*txn)
                    .await?;
            } else {
                // A refund it queues is sent by send_due_refunds below.
                self.apply_outcome(&txn, c, &outcome).await?;
                report.reconciled += 1;
            }
            txn.commit().await?;
        }

        // Cancellations scheduled for the end of a period that has ended.
        let due = subscription::Entity::find()
            .filter(subscription::Column::CancelAtPeriodEnd.eq(true))
            .filter(subscription::Column::CanceledAt.lte(now))
            .filter(subscription::Column::Status.is_in([
                SubscriptionStatus::Active.code(),
                SubscriptionStatus::Trialing.code(),
                SubscriptionStatus::PastDue.code(),
            ]))
            .all(self.db.conn())
            .await?;
        for s in due {
            let txn = self.db.write().await?;
            let moved = lifecycle::apply(
                &*txn,
                now,
                Current::try_from(&s)?,
                Trigger::CancellationDue,
                PhaseKind::Final,
                &self.policy(),
                json!({ "atPeriodEnd": true }),
            )
            .await?;
            // A plan change still waiting for its payment can no longer be paid.
            let closed = match moved {
                Some(_) => {
                    self.close_open(&*txn, now, s.id, CloseReason::Canceled, Which::All)
                        .await?
                }
                None => Vec::new(),
            };
            txn.commit().await?;
            self.close_at_providers(&closed).await;
            if moved.is_some() {
                report.canceled += 1;
            }
        }
        report.refunded = self.send_due_refunds().await?;
        report.invoiced = self.run_invoicing().await?;
        if report != JobReport::default() {
            self.announce_events();
        }
        // Webhook retries fall due by this clock too.
        self.wake_webhooks();
        self.purge_idempotency_keys().await?;
        Ok(report)
    }
}
