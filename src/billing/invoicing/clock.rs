//! The billing clock's invoicing step: due subscriptions in batches, their phase changes,
//! their boundary and final invoices, then collection.

use chrono::{DateTime, Utc};
use entity::{customer, subscription, subscription_phase};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

use super::super::Billing;
use super::super::codes::{Code, EventKind, SubscriptionStatus, parse};
use super::super::error::{BillingError, BillingResult};
use super::super::events::record;
use super::super::items::versions_of;
use super::super::lifecycle::{self, Current, Trigger};
use super::super::phase::{PhaseKind, PhaseSpec, next_phase_change, phase_at};
use super::{BILLED, CLOCK_BATCH};

impl Billing {
    /// The billing clock's invoicing step: for each live subscription that is due (a
    /// period ended or a phase boundary passed), record phase changes and issue invoices,
    /// then schedule its next visit; then collect what is due. Subscriptions are read in
    /// batches in id order, so a run visits each at most once and its memory stays flat.
    pub async fn run_invoicing(&self) -> BillingResult<usize> {
        let now = self.clock.now();
        let catalog = self.catalog();
        let mut issued = 0;
        let mut after: Option<Uuid> = None;
        loop {
            let mut q = subscription::Entity::find()
                .filter(
                    subscription::Column::Status.is_in(
                        BILLED
                            .iter()
                            .chain([&SubscriptionStatus::Canceled])
                            .map(|s| s.code()),
                    ),
                )
                .filter(subscription::Column::NextBillingAt.lte(now))
                .order_by_asc(subscription::Column::Id)
                .limit(CLOCK_BATCH);
            if let Some(last) = after {
                q = q.filter(subscription::Column::Id.gt(last));
            }
            let due = q.all(self.db.conn()).await?;
            let Some(last) = due.last() else { break };
            after = Some(last.id);
            let customers = self
                .customers_by_id(due.iter().map(|s| s.customer_id))
                .await?;
            let versions = versions_of(self.db.conn(), due.iter().map(|s| s.id)).await?;
            let mut schedule = Vec::with_capacity(due.len());
            for sub in &due {
                let customer = customers
                    .get(&sub.customer_id)
                    .ok_or_else(|| BillingError::not_found("customer", sub.customer_id))?;
                let live = sub.status != SubscriptionStatus::Canceled.code();
                let specs = catalog.plan(sub.plan_id).map(|p| p.phase_specs());
                if live && let Some(specs) = &specs {
                    self.record_phase_changes(sub, customer, specs, now).await?;
                }
                let (n, next) = self
                    .bill_subscription(sub, customer, versions.get(&sub.id), now)
                    .await?;
                issued += n;
                let phase_change = specs
                    .as_deref()
                    .filter(|_| live)
                    .and_then(|s| next_phase_change(s, customer.billing_start, now));
                schedule.push((sub.id, phase_change.map_or(next, |p| Ord::min(p, next))));
            }
            let txn = self.db.write().await?;
            for (id, next) in schedule {
                subscription::Entity::update_many()
                    .col_expr(subscription::Column::NextBillingAt, Expr::value(next))
                    .filter(subscription::Column::Id.eq(id))
                    .exec(&*txn)
                    .await?;
            }
            txn.commit().await?;
        }
        self.collect_due().await?;
        Ok(issued)
    }

    /// The customers of a batch, by id, in one query.
    pub(super) async fn customers_by_id(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> BillingResult<HashMap<Uuid, customer::Model>> {
        Ok(customer::Entity::find()
            .filter(customer::Column::Id.is_in(ids))
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect())
    }

    /// Records one PHASE_CHANGED per crossing, whichever process gets there first.
    async fn record_phase_changes(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        specs: &[PhaseSpec],
        now: DateTime<Utc>,
    ) -> BillingResult<()> {
        let Some(current) = specs
            .get(phase_at(specs, customer.billing_start, now))
            .map(|s| s.kind)
        else {
            return Ok(());
        };
        let txn = self.db.write().await?;
        let known: Vec<PhaseKind> = subscription_phase::Entity::find()
            .filter(subscription_phase::Column::SubscriptionId.eq(sub.id))
            .all(&*txn)
            .await?
            .iter()
            .filter_map(|p| parse(&p.phase).ok())
            .collect();
        let mut latest = known.iter().max().copied();
        if latest.is_none() {
            // The phase the subscription started in: known, but no change to report.
            let started = sub.started_at.unwrap_or(sub.created_at);
            if let Some(first) = specs
                .get(phase_at(specs, customer.billing_start, started))
                .map(|s| s.kind)
            {
                subscription_phase::Entity::insert(subscription_phase::ActiveModel {
                    subscription_id: Set(sub.id),
                    phase: Set(first.code().to_owned()),
                    entered_at: Set(started),
                })
                .on_conflict_do_nothing()
                .exec(&*txn)
                .await?;
                latest = Some(first);
            }
        }
        // Phases only move forward.
        if latest.is_some_and(|l| l >= current) {
            txn.commit().await?;
            return Ok(());
        }
        let inserted = subscription_phase::Entity::insert(subscription_phase::ActiveModel {
            subscription_id: Set(sub.id),
            phase: Set(current.code().to_owned()),
            entered_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec(&*txn)
        .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(_)) && latest.is_some() {
            record(
                &*txn,
                now,
                sub.customer_id,
                Some(sub.id),
                EventKind::PhaseChanged,
                json!({ "from": latest.map(|l| l.code()), "to": current.code() }),
            )
            .await?;
            txn.commit().await?;
            self.announce_events();
        } else {
            txn.commit().await?;
        }
        if sub.status == SubscriptionStatus::Trialing.code() && current != PhaseKind::Trial {
            let txn = self.db.write().await?;
            lifecycle::apply(
                &*txn,
                now,
                Current::try_from(sub)?,
                Trigger::PhaseEntered,
                current,
                &self.policy(),
                json!({ "reason": "trial ended", "phase": current.code() }),
            )
            .await?;
            txn.commit().await?;
            self.announce_events();
        }
        Ok(())
    }
}
