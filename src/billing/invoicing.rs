//! Invoices: each billing period of a subscription turned into lines and a total (by the
//! pure `invoice` module), issued by the billing clock at the period's end, collected
//! through the subscription's provider, and retried on a schedule when payment fails.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use entity::{
    Dec, checkout, customer, event, invoice, invoice_line, subscription, subscription_phase,
};
use futures_util::{StreamExt, stream};
use providers::{ChargeRequest, PaymentOutcome, ProviderError};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Set,
};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::{Catalog, Plan};
use super::codes::{
    CheckoutStatus, Code, EventKind, InvoiceStatus, ProductKind, SubscriptionStatus, parse,
};
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::gateway::within;
use super::invoice::{
    Included, InvoiceDraft, InvoiceInput, Item, LineKind, MeteredProduct, PlanSpan, PlanTerms,
    UsageRecord, apply_prepayment, compute_invoice,
};
use super::lifecycle::{self, Current, Trigger};
use super::phase::{
    PhaseKind, PhaseSpec, billing_period, next_phase_change, period_containing, phase_at,
};
use super::schedule::NEVER;

/// Subscriptions (or invoices) the billing clock reads per query.
const CLOCK_BATCH: u64 = 500;
/// Collection attempts in flight at once.
const COLLECT_CONCURRENCY: usize = 16;
/// The statuses the billing clock invoices and moves through phases; a CANCELED
/// subscription is visited once more for its final invoice.
const BILLED: [SubscriptionStatus; 3] = [
    SubscriptionStatus::Active,
    SubscriptionStatus::Trialing,
    SubscriptionStatus::PastDue,
];

pub use super::lifecycle::FinalFailure;

#[derive(Clone, Debug)]
pub struct Dunning {
    /// Retries after the first failure, as delays from it (e.g. 1, 3 and 5 days).
    pub retries: Vec<TimeDelta>,
    pub final_failure: FinalFailure,
}

impl Default for Dunning {
    fn default() -> Self {
        Dunning {
            retries: vec![TimeDelta::days(1), TimeDelta::days(3), TimeDelta::days(5)],
            final_failure: FinalFailure::Cancel,
        }
    }
}

#[derive(Clone, Debug)]
pub struct InvoiceLine {
    pub kind: LineKind,
    pub product_id: Uuid,
    pub phase: PhaseKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
    pub matched: bool,
    /// Metered lines: the usage recorded in the slice and the part of it included.
    pub usage: Decimal,
    pub included: Decimal,
}

/// One metered product's usage in the current period so far.
#[derive(Clone, Debug)]
pub struct UsageSummary {
    pub product_id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub usage: Decimal,
    pub included: Decimal,
    pub overage: Decimal,
    /// What the overage costs so far (sum of the rounded metered lines).
    pub amount: Decimal,
    pub currency: String,
}

#[derive(Clone, Debug)]
pub struct Invoice {
    /// None for a preview (not stored).
    pub id: Option<Uuid>,
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub currency: String,
    pub total: Decimal,
    pub status: InvoiceStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lines: Vec<InvoiceLine>,
    pub created_at: DateTime<Utc>,
}

fn lines_of(draft: &InvoiceDraft) -> Vec<InvoiceLine> {
    draft
        .lines
        .iter()
        .map(|l| InvoiceLine {
            kind: l.kind,
            product_id: l.product_id,
            phase: l.phase,
            start: l.start,
            end: l.end,
            quantity: l.quantity,
            unit_amount: l.unit_amount,
            amount: l.amount,
            matched: l.matched,
            usage: l.usage,
            included: l.included,
        })
        .collect()
}

impl Billing {
    /// The plans a subscription was on, oldest first, from its PLAN_CHANGED events.
    async fn plan_history(
        &self,
        sub: &subscription::Model,
        catalog: &Catalog,
    ) -> BillingResult<Vec<(DateTime<Utc>, Arc<Plan>)>> {
        let changes = event::Entity::find()
            .filter(event::Column::SubscriptionId.eq(sub.id))
            .filter(event::Column::Kind.eq(EventKind::PlanChanged.code()))
            .order_by_asc(event::Column::Seq)
            .all(self.db.conn())
            .await?;
        let plan = |id: &str| {
            Uuid::parse_str(id)
                .ok()
                .and_then(|id| catalog.plan(id).cloned())
        };
        let start = sub.started_at.unwrap_or(sub.created_at);
        let first = changes
            .first()
            .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
            .and_then(|d| d["from"].as_str().and_then(plan))
            .or_else(|| catalog.plan(sub.plan_id).cloned())
            .ok_or_else(|| BillingError::not_found("plan", sub.plan_id))?;
        let mut history = vec![(start, first)];
        for e in changes {
            let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
            if let Some(p) = data["to"].as_str().and_then(plan) {
                history.push((e.created_at, p));
            }
        }
        Ok(history)
    }

    /// Computes period `k` of a subscription, charged up to `until` (None: the whole period).
    async fn compute(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        k: u32,
        until: Option<DateTime<Utc>>,
    ) -> BillingResult<(InvoiceDraft, DateTime<Utc>, DateTime<Utc>, String)> {
        let started = sub.started_at.ok_or_else(|| {
            BillingError::InvalidState(format!("subscription {} has not started", sub.id))
        })?;
        let (period_start, period_end) = billing_period(started, k);
        let catalog = self.catalog();
        let history = self.plan_history(sub, &catalog).await?;
        let specs: Vec<_> = history.iter().map(|(_, p)| p.phase_specs()).collect();
        let plans: Vec<PlanSpan<'_>> = history
            .iter()
            .zip(&specs)
            .map(|((from, p), phases)| PlanSpan {
                from: *from,
                terms: PlanTerms {
                    phases,
                    rules: &p.rules,
                    tier_mode: p.tier_mode,
                },
            })
            .collect();
        let priced = |id: Uuid| {
            history
                .iter()
                .any(|(_, p)| p.rules.iter().any(|r| r.product_id == id))
        };
        // Default items: every PACKAGE product priced in the plan, quantity 1, with its
        // (first) package's included amounts.
        let items: Vec<Item> = catalog
            .products
            .iter()
            .filter(|p| p.kind == ProductKind::Package && priced(p.id))
            .map(|p| {
                let included = catalog
                    .packages_of(p.id)
                    .iter()
                    .find(|pkg| pkg.archived_at.is_none())
                    .map(|pkg| Included {
                        storage_gb: pkg.included_storage_gb,
                        bandwidth_gb: pkg.included_bandwidth_gb,
                        backup_storage_gb: pkg.included_backup_storage_gb,
                    })
                    .unwrap_or_default();
                Item {
                    product_id: p.id,
                    quantity: Decimal::ONE,
                    included,
                }
            })
            .collect();
        let metered: Vec<MeteredProduct> = catalog
            .products
            .iter()
            .filter(|p| p.kind == ProductKind::MeteredResource && priced(p.id))
            .map(|p| MeteredProduct {
                product_id: p.id,
                resource: p.resource.clone().unwrap_or_default(),
            })
            .collect();
        let usage: Vec<UsageRecord> = self
            .usage_between(sub.id, period_start, period_end)
            .await?
            .into_iter()
            .map(|u| UsageRecord {
                product_id: u.product_id,
                at: u.at,
                quantity: u.quantity,
            })
            .collect();
        let mut draft = compute_invoice(&InvoiceInput {
            period_start,
            period_end,
            charge_from: None,
            charge_until: until,
            billing_start: customer.billing_start,
            plans,
            items: &items,
            metered: &metered,
            usage: &usage,
            currency: &customer.currency,
            region: customer.region.as_deref(),
        });
        let prepaid = self.prepayment_left(sub.id, period_start).await?;
        apply_prepayment(&mut draft, prepaid);
        Ok((draft, period_start, period_end, customer.currency.clone()))
    }

    /// What the subscription paid in advance (its successful checkouts) and earlier
    /// invoices, those of periods before `before`, have not yet set against charges.
    async fn prepayment_left(
        &self,
        subscription_id: Uuid,
        before: DateTime<Utc>,
    ) -> BillingResult<Decimal> {
        let paid: Decimal = checkout::Entity::find()
            .filter(checkout::Column::SubscriptionId.eq(subscription_id))
            .filter(checkout::Column::Status.eq(CheckoutStatus::Succeeded.code()))
            .all(self.db.conn())
            .await?
            .iter()
            .map(|c| c.amount.0)
            .sum();
        if paid <= Decimal::ZERO {
            return Ok(Decimal::ZERO);
        }
        let earlier = invoice::Entity::find()
            .select_only()
            .column(invoice::Column::Id)
            .filter(invoice::Column::SubscriptionId.eq(subscription_id))
            .filter(invoice::Column::PeriodStart.lt(before))
            .into_query();
        let used: Decimal = invoice_line::Entity::find()
            .filter(invoice_line::Column::InvoiceId.in_subquery(earlier))
            .filter(invoice_line::Column::Kind.eq("PREPAID"))
            .all(self.db.conn())
            .await?
            .iter()
            .map(|l| -l.amount.0)
            .sum();
        Ok((paid - used).max(Decimal::ZERO))
    }

    /// The invoice so far for the current period (not stored).
    pub async fn invoice_preview(
        &self,
        who: &Principal,
        subscription_id: Uuid,
    ) -> BillingResult<Invoice> {
        let sub = self.subscription(who, subscription_id).await?;
        let model = subscription::Entity::find_by_id(sub.id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", sub.id))?;
        let now = self.clock.now();
        let started = model.started_at.ok_or_else(|| {
            BillingError::InvalidState("the subscription has not started yet".into())
        })?;
        let (k, _, _) = period_containing(started, now);
        let customer = self.customer_model(model.customer_id).await?;
        let (draft, start, end, currency) = self.compute(&model, &customer, k, Some(now)).await?;
        Ok(Invoice {
            id: None,
            subscription_id: sub.id,
            customer_id: sub.customer_id,
            period_start: start,
            period_end: end,
            currency,
            total: draft.total,
            status: InvoiceStatus::Draft,
            attempts: 0,
            next_attempt_at: None,
            lines: lines_of(&draft),
            created_at: now,
        })
    }

    /// Per metered product: usage in the current period so far, the included amount used,
    /// the overage and its price so far.
    pub async fn usage_summary(
        &self,
        who: &Principal,
        subscription_id: Uuid,
    ) -> BillingResult<Vec<UsageSummary>> {
        let preview = self.invoice_preview(who, subscription_id).await?;
        let mut out: Vec<UsageSummary> = Vec::new();
        for l in preview.lines.iter().filter(|l| l.kind == LineKind::Metered) {
            let at = match out.iter().position(|u| u.product_id == l.product_id) {
                Some(i) => i,
                None => {
                    out.push(UsageSummary {
                        product_id: l.product_id,
                        period_start: preview.period_start,
                        period_end: preview.period_end,
                        usage: Decimal::ZERO,
                        included: Decimal::ZERO,
                        overage: Decimal::ZERO,
                        amount: Decimal::ZERO,
                        currency: preview.currency.clone(),
                    });
                    out.len() - 1
                }
            };
            let entry = &mut out[at];
            entry.usage += l.usage;
            entry.included += l.included;
            entry.overage += l.quantity;
            entry.amount += l.amount;
        }
        Ok(out)
    }

    pub async fn invoices(
        &self,
        who: &Principal,
        customer_id: Uuid,
        first: u64,
        after: Option<&str>,
    ) -> BillingResult<(Vec<Invoice>, bool)> {
        who.require_customer_access(customer_id)?;
        let mut q = invoice::Entity::find()
            .filter(invoice::Column::CustomerId.eq(customer_id))
            .order_by_asc(invoice::Column::PeriodStart)
            .order_by_asc(invoice::Column::Id)
            .limit(first + 1);
        if let Some(a) = after {
            let id = Uuid::parse_str(a)
                .map_err(|_| BillingError::invalid("after: not an invoice cursor"))?;
            let anchor = invoice::Entity::find_by_id(id)
                .one(self.db.conn())
                .await?
                .ok_or_else(|| BillingError::invalid("after: not an invoice cursor"))?;
            q = q.filter(
                invoice::Column::PeriodStart.gt(anchor.period_start).or(
                    invoice::Column::PeriodStart
                        .eq(anchor.period_start)
                        .and(invoice::Column::Id.gt(id)),
                ),
            );
        }
        let rows = q.all(self.db.conn()).await?;
        let more = rows.len() as u64 > first;
        let ids: Vec<Uuid> = rows.iter().take(first as usize).map(|r| r.id).collect();
        let mut lines = invoice_line::Entity::find()
            .filter(invoice_line::Column::InvoiceId.is_in(ids))
            .order_by_asc(invoice_line::Column::Position)
            .all(self.db.conn())
            .await?;
        let mut out = Vec::new();
        for r in rows.into_iter().take(first as usize) {
            let mine: Vec<invoice_line::Model> =
                lines.extract_if(.., |l| l.invoice_id == r.id).collect();
            out.push(stored(r, mine)?);
        }
        Ok((out, more))
    }

    /// Admin: voids an open invoice (it will not be collected).
    pub async fn void_invoice(&self, who: &Principal, id: Uuid) -> BillingResult<Invoice> {
        who.require_admin()?;
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let moved = invoice::Entity::update_many()
            .col_expr(
                invoice::Column::Status,
                Expr::value(InvoiceStatus::Void.code()),
            )
            .col_expr(
                invoice::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
            .filter(invoice::Column::Id.eq(id))
            .filter(invoice::Column::Status.eq(InvoiceStatus::Open.code()))
            .exec(&*txn)
            .await?;
        let row = invoice::Entity::find_by_id(id)
            .one(&*txn)
            .await?
            .ok_or_else(|| BillingError::not_found("invoice", id))?;
        if moved.rows_affected == 0 {
            return Err(BillingError::InvalidState(format!(
                "invoice {id} is {} and cannot be voided",
                row.status
            )));
        }
        txn.commit().await?;
        let lines = invoice_line::Entity::find()
            .filter(invoice_line::Column::InvoiceId.eq(id))
            .order_by_asc(invoice_line::Column::Position)
            .all(self.db.conn())
            .await?;
        stored(row, lines)
    }

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
            // Invoices already issued, per subscription: one grouped query for the batch.
            let issued_counts: HashMap<Uuid, u32> = invoice::Entity::find()
                .select_only()
                .column(invoice::Column::SubscriptionId)
                .column_as(invoice::Column::Id.count(), "issued")
                .filter(invoice::Column::SubscriptionId.is_in(due.iter().map(|s| s.id)))
                .group_by(invoice::Column::SubscriptionId)
                .into_tuple::<(Uuid, i64)>()
                .all(self.db.conn())
                .await?
                .into_iter()
                .map(|(id, n)| (id, u32::try_from(n).unwrap_or(0)))
                .collect();
            let mut schedule = Vec::with_capacity(due.len());
            for sub in &due {
                let customer = customers
                    .get(&sub.customer_id)
                    .ok_or_else(|| BillingError::not_found("customer", sub.customer_id))?;
                if sub.status == SubscriptionStatus::Canceled.code() {
                    let done = issued_counts.get(&sub.id).copied().unwrap_or(0);
                    issued += self.issue_final(sub, customer, done).await?;
                    schedule.push((sub.id, NEVER));
                    continue;
                }
                let specs = catalog.plan(sub.plan_id).map(|p| p.phase_specs());
                if let Some(specs) = &specs {
                    self.record_phase_changes(sub, customer, specs, now).await?;
                }
                let Some(started) = sub.started_at else {
                    // Live without a start cannot be billed; look again tomorrow.
                    schedule.push((sub.id, now + TimeDelta::days(1)));
                    continue;
                };
                let (current, _, period_end) = period_containing(started, now);
                let done = issued_counts.get(&sub.id).copied().unwrap_or(0);
                for k in done..current {
                    if self.issue(sub, customer, k, None).await? {
                        issued += 1;
                    }
                }
                let phase_change = specs
                    .as_deref()
                    .and_then(|s| next_phase_change(s, customer.billing_start, now));
                schedule.push((
                    sub.id,
                    phase_change.map_or(period_end, |p| Ord::min(p, period_end)),
                ));
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
    async fn customers_by_id(
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

    /// A canceled subscription's last invoices: every period not yet invoiced up to the
    /// cancellation, the last one charged up to that instant. Returns how many it issued.
    async fn issue_final(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        done: u32,
    ) -> BillingResult<usize> {
        let (Some(started), Some(ended)) = (sub.started_at, sub.canceled_at) else {
            return Ok(0); // never went live: nothing to bill
        };
        if ended <= started {
            return Ok(0);
        }
        // The period holding the last second of service (a cancellation at a period's end
        // closes that period, not the next).
        let (last, _, last_end) = period_containing(started, ended - TimeDelta::seconds(1));
        let mut issued = 0;
        for k in done..=last {
            let until = (k == last && ended < last_end).then_some(ended);
            if self.issue(sub, customer, k, until).await? {
                issued += 1;
            }
        }
        Ok(issued)
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

    /// Issues period `k`'s invoice, charged up to `until` (None: the whole period); once:
    /// a unique index guards it.
    async fn issue(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        k: u32,
        until: Option<DateTime<Utc>>,
    ) -> BillingResult<bool> {
        let (draft, start, end, currency) = self.compute(sub, customer, k, until).await?;
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let status = if draft.total.is_zero() {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Open
        };
        let txn = self.db.write().await?;
        let number = super::documents::number::next_number(&*txn).await?;
        let inserted = invoice::Entity::insert(invoice::ActiveModel {
            number: Set(Some(number.clone())),
            id: Set(id),
            subscription_id: Set(sub.id),
            customer_id: Set(sub.customer_id),
            period_index: Set(k as i32),
            period_start: Set(start),
            period_end: Set(end),
            currency: Set(currency.clone()),
            total: Set(Dec(draft.total)),
            status: Set(status.code().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set((status == InvoiceStatus::Open).then_some(now)),
            payment_ref: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec(&*txn)
        .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(_)) {
            return Ok(false);
        }
        let lines = draft
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| invoice_line::ActiveModel {
                id: Set(Uuid::now_v7()),
                invoice_id: Set(id),
                position: Set(i as i32),
                kind: Set(match l.kind {
                    LineKind::Recurring => "RECURRING",
                    LineKind::Metered => "METERED",
                    LineKind::Prepaid => "PREPAID",
                }
                .to_owned()),
                product_id: Set(l.product_id),
                phase: Set(l.phase.code().to_owned()),
                start: Set(l.start),
                end: Set(l.end),
                quantity: Set(Dec(l.quantity)),
                unit_amount: Set(Dec(l.unit_amount)),
                amount: Set(Dec(l.amount)),
                matched: Set(l.matched),
            });
        let lines: Vec<_> = lines.collect();
        if !lines.is_empty() {
            invoice_line::Entity::insert_many(lines)
                .exec_without_returning(&*txn)
                .await?;
        }
        let data = json!({ "invoiceId": id, "total": draft.total.to_string(), "currency": currency, "periodStart": start, "periodEnd": end });
        record(
            &*txn,
            now,
            sub.customer_id,
            Some(sub.id),
            EventKind::InvoiceIssued,
            data.clone(),
        )
        .await?;
        if status == InvoiceStatus::Paid {
            record(
                &*txn,
                now,
                sub.customer_id,
                Some(sub.id),
                EventKind::InvoicePaid,
                data,
            )
            .await?;
        }
        txn.commit().await?;
        tracing::info!(invoice = %id, number, subscription = %sub.id, total = %draft.total, currency, "invoice issued");
        self.announce_events();
        Ok(true)
    }

    /// Charges open invoices whose attempt is due, a few at a time (provider calls are
    /// slow; settling is quick). A charge whose outcome never arrived is asked about, or
    /// sent again under the same idempotency key: never charged twice.
    async fn collect_due(&self) -> BillingResult<()> {
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
                        amount: inv.total.0,
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
        let data = json!({ "invoiceId": inv.id, "total": inv.total.0.to_string(), "currency": inv.currency });
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
                tracing::info!(invoice = %inv.id, amount = %inv.total.0, currency = inv.currency, "invoice paid");
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

fn stored(r: invoice::Model, lines: Vec<invoice_line::Model>) -> BillingResult<Invoice> {
    Ok(Invoice {
        id: Some(r.id),
        subscription_id: r.subscription_id,
        customer_id: r.customer_id,
        period_start: r.period_start,
        period_end: r.period_end,
        currency: r.currency,
        total: r.total.0,
        status: parse(&r.status)?,
        attempts: r.attempts,
        next_attempt_at: r.next_attempt_at,
        lines: lines
            .into_iter()
            .map(|l| {
                Ok(InvoiceLine {
                    kind: match l.kind.as_str() {
                        "METERED" => LineKind::Metered,
                        "PREPAID" => LineKind::Prepaid,
                        _ => LineKind::Recurring,
                    },
                    product_id: l.product_id,
                    phase: parse(&l.phase)?,
                    start: l.start,
                    end: l.end,
                    quantity: l.quantity.0,
                    unit_amount: l.unit_amount.0,
                    amount: l.amount.0,
                    matched: l.matched,
                    usage: Decimal::ZERO,
                    included: Decimal::ZERO,
                })
            })
            .collect::<BillingResult<_>>()?,
        created_at: r.created_at,
    })
}
