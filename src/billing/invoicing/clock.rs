//! The billing clock's invoicing step: due subscriptions in batches, their phase changes,
//! their boundary and final invoices, then collection.

use chrono::{DateTime, Utc};
use entity::{customer, subscription, subscription_phase};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::super::Billing;
use super::super::codes::{Code, EventKind, SubscriptionStatus, parse};
use super::super::db::{self, per_row};
use super::super::error::{BillingError, BillingResult};
use super::super::events::{NewEvent, record_many};
use super::super::items::versions_of;
use super::super::lifecycle::{self, Current, Trigger};
use super::super::phase::{PhaseKind, PhaseSpec, next_phase_change, phase_at};
use super::issue::Due;
use super::{BILLED, CLOCK_BATCH};

impl Billing {
    /// The billing clock's invoicing step: for each live subscription that is due (a
    /// period ended or a phase boundary passed), record phase changes and issue invoices,
    /// then schedule its next visit; then collect what is due. Subscriptions are read in
    /// batches in id order, so a run visits each at most once and its memory stays flat.
    pub async fn run_invoicing(&self) -> BillingResult<usize> {
        let now = self.clock.now();
        let mut issued = 0;
        // Status by status, each in (due time, id) order from its index: one range read
        // per batch. A subscription moved to a later status with its visit still due is
        // met again there, further on: each visit moves it forward.
        for status in BILLED.iter().chain([&SubscriptionStatus::Canceled]) {
            let mut after: Option<(DateTime<Utc>, Uuid)> = None;
            loop {
                let due = due_subscriptions(*status, now, after)
                    .all(self.db.conn())
                    .await?;
                let Some(last) = due.last() else { break };
                after = Some((last.next_billing_at, last.id));
                issued += self.invoice_batch(&due, now).await?;
            }
        }
        self.collect_due().await?;
        Ok(issued)
    }

    /// One batch of due subscriptions: their phase changes, their invoices, their next
    /// visits. Returns the invoices issued.
    async fn invoice_batch(
        &self,
        due: &[subscription::Model],
        now: DateTime<Utc>,
    ) -> BillingResult<usize> {
        // Plans created on another process since our refresh are known before billing.
        let catalog = self.catalog_with(due.iter().map(|s| s.plan_id)).await?;
        let customers = self
            .customers_by_id(due.iter().map(|s| s.customer_id))
            .await?;
        let versions = versions_of(self.db.conn(), due.iter().map(|s| s.id)).await?;
        let batch: Vec<Due<'_>> = due
            .iter()
            .map(|sub| {
                Ok(Due {
                    sub,
                    customer: customers
                        .get(&sub.customer_id)
                        .ok_or_else(|| BillingError::not_found("customer", sub.customer_id))?,
                    versions: versions.get(&sub.id),
                })
            })
            .collect::<BillingResult<_>>()?;
        // Phases of the live ones, with their specs. A live subscription's plan is never
        // skipped: without it, its phase change would go unrecorded.
        let specs: Vec<Option<Vec<PhaseSpec>>> = batch
            .iter()
            .map(|d| {
                if d.sub.status == SubscriptionStatus::Canceled.code() {
                    return Ok(None);
                }
                let plan = catalog
                    .plan(d.sub.plan_id)
                    .ok_or_else(|| BillingError::not_found("plan", d.sub.plan_id))?;
                Ok(Some(plan.phase_specs()))
            })
            .collect::<BillingResult<_>>()?;
        self.record_phase_changes(&batch, &specs, now).await?;
        let billed = self.bill_subscriptions(&batch, now).await?;
        let mut issued = 0;
        let mut schedule = Vec::with_capacity(batch.len());
        for ((d, specs), (n, next)) in batch.iter().zip(&specs).zip(billed) {
            issued += n;
            let phase_change = specs
                .as_deref()
                .and_then(|s| next_phase_change(s, d.customer.billing_start, now));
            schedule.push((d.sub.id, phase_change.map_or(next, |p| Ord::min(p, next))));
        }
        let txn = self.db.write().await?;
        schedule_visits(&*txn, schedule).await?;
        txn.commit().await?;
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

    /// Records the phases a batch of subscriptions entered, one PHASE_CHANGED per
    /// crossing whichever process gets there first, and moves those whose trial ended to
    /// their live status: one read, then one transaction of multi-row writes. `specs` holds,
    /// per subscription, its plan's phases when it is live.
    async fn record_phase_changes(
        &self,
        batch: &[Due<'_>],
        specs: &[Option<Vec<PhaseSpec>>],
        now: DateTime<Utc>,
    ) -> BillingResult<()> {
        let mut known: HashMap<Uuid, Vec<PhaseKind>> = HashMap::new();
        for p in subscription_phase::Entity::find()
            .filter(
                subscription_phase::Column::SubscriptionId.is_in(batch.iter().map(|d| d.sub.id)),
            )
            .all(self.db.conn())
            .await?
        {
            known
                .entry(p.subscription_id)
                .or_default()
                .push(parse(&p.phase)?);
        }
        let mut rows = Vec::new();
        // The crossings to report, if their row is the one that gets written.
        let mut crossings = Vec::new();
        let mut trials_ended = Vec::new();
        for (d, specs) in batch.iter().zip(specs) {
            let Some(specs) = specs else { continue };
            let (sub, start) = (d.sub, d.customer.billing_start);
            let Some(current) = specs.get(phase_at(specs, start, now)).map(|s| s.kind) else {
                continue;
            };
            let mut latest = known.get(&sub.id).and_then(|k| k.iter().max().copied());
            if latest.is_none() {
                // The phase the subscription started in: known, but no change to report.
                let started = sub.started_at.unwrap_or(sub.created_at);
                if let Some(first) = specs.get(phase_at(specs, start, started)).map(|s| s.kind) {
                    rows.push(phase_row(sub.id, first, started));
                    latest = Some(first);
                }
            }
            // Phases only move forward.
            if let Some(from) = latest.filter(|l| *l < current) {
                rows.push(phase_row(sub.id, current, now));
                crossings.push((sub, from, current));
            }
            if sub.status == SubscriptionStatus::Trialing.code() && current != PhaseKind::Trial {
                trials_ended.push((
                    Current::try_from(sub)?,
                    current,
                    json!({ "reason": "trial ended", "phase": current.code() }),
                ));
            }
        }
        if rows.is_empty() && trials_ended.is_empty() {
            return Ok(());
        }
        let txn = self.db.write().await?;
        let written: HashSet<(Uuid, String)> = if rows.is_empty() {
            HashSet::new()
        } else {
            match subscription_phase::Entity::insert_many(rows)
                .on_conflict_do_nothing()
                .exec_with_returning_keys(&*txn)
                .await?
            {
                sea_orm::TryInsertResult::Inserted(keys) => keys.into_iter().collect(),
                _ => HashSet::new(),
            }
        };
        let events = crossings
            .into_iter()
            .filter(|(sub, _, to)| written.contains(&(sub.id, to.code().to_owned())))
            .map(|(sub, from, to)| NewEvent {
                customer_id: sub.customer_id,
                subscription_id: Some(sub.id),
                kind: EventKind::PhaseChanged,
                data: json!({ "from": from.code(), "to": to.code() }),
            })
            .collect();
        record_many(&*txn, now, events).await?;
        lifecycle::apply_many(
            &*txn,
            now,
            Trigger::PhaseEntered,
            &self.policy(),
            trials_ended,
        )
        .await?;
        txn.commit().await?;
        self.announce_events();
        Ok(())
    }
}

/// The next batch of subscriptions in `status` whose visit is due at `now`, after the last
/// one read: a range of `subscription_clock_scan_idx`.
pub(super) fn due_subscriptions(
    status: SubscriptionStatus,
    now: DateTime<Utc>,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Select<subscription::Entity> {
    let q = subscription::Entity::find()
        .filter(subscription::Column::Status.eq(status.code()))
        .filter(subscription::Column::NextBillingAt.lte(now))
        .order_by_asc(subscription::Column::NextBillingAt)
        .order_by_asc(subscription::Column::Id)
        .limit(CLOCK_BATCH);
    match after {
        Some((at, id)) => q.filter(db::after(
            (subscription::Column::NextBillingAt, at.into()),
            (subscription::Column::Id, id.into()),
        )),
        None => q,
    }
}

fn phase_row(sub: Uuid, phase: PhaseKind, at: DateTime<Utc>) -> subscription_phase::ActiveModel {
    subscription_phase::ActiveModel {
        subscription_id: Set(sub),
        phase: Set(phase.code().to_owned()),
        entered_at: Set(at),
    }
}

/// Sets when the clock visits each subscription next, in one update.
async fn schedule_visits(
    db: &impl ConnectionTrait,
    visits: Vec<(Uuid, DateTime<Utc>)>,
) -> BillingResult<()> {
    let Some(value) = per_row(
        subscription::Column::Id,
        visits.iter().map(|(id, at)| (*id, Expr::value(*at))),
    ) else {
        return Ok(());
    };
    subscription::Entity::update_many()
        .col_expr(subscription::Column::NextBillingAt, value)
        .filter(subscription::Column::Id.is_in(visits.iter().map(|(id, _)| *id)))
        .exec(db)
        .await?;
    Ok(())
}
