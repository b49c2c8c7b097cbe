//! Issuing invoices: the opening invoice (boundary 0, collected by the checkout), one per
//! later period boundary, one per change mid-period and a final one after a cancel now.
//! Which lines go on which invoice is `billed`'s business; this module loads what it needs,
//! stores the invoice with its credit, and records the events, once per key whatever the
//! number of processes.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{Dec, customer, invoice, invoice_line, subscription, usage_record};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::super::Billing;
use super::super::billed::Subject;
use super::super::catalog::Catalog;
use super::super::codes::{
    Code, EventKind, InvoiceKind, InvoiceStatus, ProductKind, SubscriptionStatus, parse,
};
use super::super::credit::{self, CreditReason, Move};
use super::super::db::per_row;
use super::super::documents::number;
use super::super::error::{BillingError, BillingResult};
use super::super::events::{NewEvent, record_many};
use super::super::invoice::{Line, MeteredProduct, UsageRecord, total_of};
use super::super::items::{Config, Version, versions_of};
use super::super::money::round_to_currency;
use super::super::phase::{billing_period, period_containing};
use super::super::schedule::NEVER;

/// What billing a subscription needs, owned (the invoice arithmetic borrows from it).
pub(crate) struct Billable {
    pub started: DateTime<Utc>,
    pub legacy: Option<u32>,
    pub configs: Vec<Config>,
    pub metered: Vec<MeteredProduct>,
    pub usage: Vec<UsageRecord>,
    pub currency: String,
    pub region: Option<String>,
    pub billing_start: Option<DateTime<Utc>>,
}

impl Billable {
    pub fn new(
        catalog: &Catalog,
        started: DateTime<Utc>,
        configs: Vec<Config>,
        customer: &customer::Model,
        usage: Vec<UsageRecord>,
    ) -> Billable {
        Billable {
            started,
            legacy: None,
            configs,
            metered: metered_products(catalog),
            usage,
            currency: customer.currency.clone(),
            region: customer.region.clone(),
            billing_start: customer.billing_start,
        }
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            started: self.started,
            configs: self.configs.iter().map(Config::span).collect(),
            billing_start: self.billing_start,
            metered: &self.metered,
            usage: &self.usage,
            currency: &self.currency,
            region: self.region.as_deref(),
        }
    }
}

/// Every metered product: one with usage gets its line even when no rule prices it.
pub(crate) fn metered_products(catalog: &Catalog) -> Vec<MeteredProduct> {
    catalog
        .products
        .iter()
        .filter(|p| p.kind == ProductKind::MeteredResource)
        .map(|p| MeteredProduct {
            product_id: p.id,
            resource: p.resource.clone().unwrap_or_default(),
        })
        .collect()
}

/// An invoice to store.
pub(crate) struct NewInvoice {
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub key: String,
    pub kind: InvoiceKind,
    pub period_index: u32,
    pub period: (DateTime<Utc>, DateTime<Utc>),
    pub currency: String,
    pub lines: Vec<Line>,
    /// Already paid for it (a checkout, or a charge made before it was issued), and the
    /// payment's reference when no checkout holds it.
    pub paid: Decimal,
    pub payment_ref: Option<String>,
}

/// What an issued invoice came to.
#[derive(Clone, Debug)]
pub(crate) struct Issued {
    pub id: Uuid,
}

/// Stores an invoice once per key with its lines, sets credit against it (or turns a
/// negative total into credit, or an overpayment), and records INVOICE_ISSUED (and
/// INVOICE_PAID when nothing is left to collect). `None` when the key exists already.
pub(crate) async fn insert_invoice(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    inv: NewInvoice,
) -> BillingResult<Option<Issued>> {
    Ok(insert_invoices(db, now, vec![inv]).await?.pop().flatten())
}

/// Invoice rows, lines and events per multi-row insert (thirteen values a line: well under
/// SQLite's 32,766 parameters).
const ROWS_PER_INSERT: usize = 1000;

/// [`insert_invoice`] for many invoices in the caller's transaction, in a few statements
/// whatever their number: the customers' credit balances in one read, the invoices in one
/// insert that skips the keys stored already (another process issued them), their numbers
/// in one move of the counter and one update, their lines and events in multi-row inserts.
/// Only credit moves cost statements per invoice. Returns, per invoice in order, what was
/// issued (`None`: its key existed).
pub(crate) async fn insert_invoices(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    invs: Vec<NewInvoice>,
) -> BillingResult<Vec<Option<Issued>>> {
    if invs.is_empty() {
        return Ok(Vec::new());
    }
    let mut balances: HashMap<Uuid, Decimal> = customer::Entity::find()
        .select_only()
        .column(customer::Column::Id)
        .column(customer::Column::CreditBalance)
        .filter(customer::Column::Id.is_in(invs.iter().map(|i| i.customer_id)))
        .into_tuple::<(Uuid, Dec)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(id, b)| (id, b.0))
        .collect();
    let planned: Vec<Planned> = invs
        .into_iter()
        .map(|inv| {
            let balance = balances.entry(inv.customer_id).or_default();
            let p = Planned::new(inv, *balance);
            *balance += p.added - p.used;
            p
        })
        .collect();
    let mut stored: HashSet<Uuid> = HashSet::new();
    for chunk in planned.chunks(ROWS_PER_INSERT) {
        let inserted = invoice::Entity::insert_many(chunk.iter().map(|p| p.row(now)))
            .on_conflict_do_nothing_on([
                invoice::Column::SubscriptionId,
                invoice::Column::InvoiceKey,
            ])
            .exec_with_returning_keys(db)
            .await?;
        if let sea_orm::TryInsertResult::Inserted(ids) = inserted {
            stored.extend(ids);
        }
    }
    let issued: Vec<&Planned> = planned.iter().filter(|p| stored.contains(&p.id)).collect();
    // Numbered only once certain to be issued, in issuing order: none is taken for nothing.
    let numbers = number::next_numbers(db, issued.len()).await?;
    if let Some(number) = per_row(
        invoice::Column::Id,
        issued
            .iter()
            .zip(&numbers)
            .map(|(p, n)| (p.id, Expr::value(n.clone()))),
    ) {
        invoice::Entity::update_many()
            .col_expr(invoice::Column::Number, number)
            .filter(invoice::Column::Id.is_in(issued.iter().map(|p| p.id)))
            .exec(db)
            .await?;
    }
    let lines: Vec<invoice_line::ActiveModel> = issued.iter().flat_map(|p| p.line_rows()).collect();
    for chunk in lines.chunks(ROWS_PER_INSERT) {
        invoice_line::Entity::insert_many(chunk.iter().cloned())
            .exec_without_returning(db)
            .await?;
    }
    let mut events = Vec::with_capacity(issued.len() * 2);
    for (p, number) in issued.iter().zip(&numbers) {
        let inv = &p.inv;
        let credit_move = |amount: Decimal, reason| Move {
            customer_id: inv.customer_id,
            subscription_id: Some(inv.subscription_id),
            invoice_id: Some(p.id),
            amount,
            reason,
        };
        if p.added > Decimal::ZERO {
            let reason = if p.total < Decimal::ZERO {
                CreditReason::InvoiceCredit
            } else {
                CreditReason::Overpayment
            };
            credit::move_credit(db, now, credit_move(p.added, reason)).await?;
        }
        if p.used > Decimal::ZERO {
            credit::move_credit(db, now, credit_move(-p.used, CreditReason::Applied)).await?;
        }
        let data = json!({
            "invoiceId": p.id, "number": number, "kind": inv.kind.code(),
            "total": p.total.to_string(), "creditApplied": p.used.to_string(),
            "amountDue": p.due.to_string(), "currency": inv.currency,
            "periodStart": inv.period.0, "periodEnd": inv.period.1,
        });
        let event = |kind, data| NewEvent {
            customer_id: inv.customer_id,
            subscription_id: Some(inv.subscription_id),
            kind,
            data,
        };
        if p.status == InvoiceStatus::Paid {
            events.push(event(EventKind::InvoiceIssued, data.clone()));
            events.push(event(EventKind::InvoicePaid, data));
        } else {
            events.push(event(EventKind::InvoiceIssued, data));
        }
        tracing::info!(invoice = %p.id, number, subscription = %inv.subscription_id,
            key = inv.key, total = %p.total, credit_applied = %p.used, amount_due = %p.due,
            currency = inv.currency, "invoice issued");
    }
    record_many(db, now, events).await?;
    Ok(planned
        .iter()
        .map(|p| stored.contains(&p.id).then_some(Issued { id: p.id }))
        .collect())
}

/// An invoice with what its credit and payment leave to collect.
struct Planned {
    id: Uuid,
    inv: NewInvoice,
    total: Decimal,
    /// Credit it adds (a negative total, an overpayment), credit it uses, what is due.
    added: Decimal,
    used: Decimal,
    due: Decimal,
    status: InvoiceStatus,
}

impl Planned {
    /// With `balance` the customer's credit before it.
    fn new(inv: NewInvoice, balance: Decimal) -> Planned {
        let total = total_of(&inv.lines, &inv.currency);
        let zero = Decimal::new(0, total.scale());
        let (added, used, due) = if total < Decimal::ZERO {
            (-total, zero, zero)
        } else {
            let rest = total - inv.paid;
            if rest < Decimal::ZERO {
                (-rest, zero, zero)
            } else {
                let used = balance.max(Decimal::ZERO).min(rest);
                (zero, used, rest - used)
            }
        };
        let scaled = |d: Decimal| round_to_currency(d, &inv.currency);
        let (added, used, due) = (scaled(added), scaled(used), scaled(due));
        let status = if due.is_zero() {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Open
        };
        Planned {
            id: Uuid::now_v7(),
            inv,
            total,
            added,
            used,
            due,
            status,
        }
    }

    fn row(&self, now: DateTime<Utc>) -> invoice::ActiveModel {
        let inv = &self.inv;
        invoice::ActiveModel {
            id: Set(self.id),
            subscription_id: Set(inv.subscription_id),
            customer_id: Set(inv.customer_id),
            period_index: Set(i32::try_from(inv.period_index).unwrap_or(i32::MAX)),
            period_start: Set(inv.period.0),
            period_end: Set(inv.period.1),
            currency: Set(inv.currency.clone()),
            total: Set(Dec(self.total)),
            status: Set(self.status.code().to_owned()),
            attempts: Set(0),
            next_attempt_at: Set((self.status == InvoiceStatus::Open).then_some(now)),
            payment_ref: Set(inv.payment_ref.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            invoice_key: Set(inv.key.clone()),
            kind: Set(inv.kind.code().to_owned()),
            credit_applied: Set(Dec(self.used)),
            amount_due: Set(Dec(self.due)),
            number: Set(None),
        }
    }

    fn line_rows(&self) -> impl Iterator<Item = invoice_line::ActiveModel> + '_ {
        self.inv
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| invoice_line::ActiveModel {
                id: Set(Uuid::now_v7()),
                invoice_id: Set(self.id),
                position: Set(i as i32),
                kind: Set(l.kind.code().to_owned()),
                product_id: Set(l.product_id),
                phase: Set(l.phase.code().to_owned()),
                start: Set(l.start),
                end: Set(l.end),
                quantity: Set(Dec(l.quantity)),
                unit_amount: Set(Dec(l.unit_amount)),
                amount: Set(Dec(l.amount)),
                matched: Set(l.matched),
                tiers: Set((l.tiers.len() > 1).then(|| tiers_json(l))),
            })
    }
}

fn tiers_json(l: &Line) -> String {
    serde_json::Value::Array(
        l.tiers
            .iter()
            .map(|t| {
                json!({ "quantity": t.quantity.to_string(), "unitAmount": t.unit_amount.to_string(),
                        "amount": t.amount.to_string() })
            })
            .collect(),
    )
    .to_string()
}

impl Billing {
    /// The configurations of a subscription, oldest first; its plan from its start when no
    /// version is stored.
    pub(crate) fn configs_of(
        &self,
        catalog: &Catalog,
        sub: &subscription::Model,
        versions: Option<&Vec<Version>>,
    ) -> BillingResult<Vec<Config>> {
        let configs = versions.map_or_else(Vec::new, |v| Config::of_versions(catalog, v));
        if !configs.is_empty() {
            return Ok(configs);
        }
        let plan = catalog
            .plan(sub.plan_id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("plan", sub.plan_id))?;
        Ok(vec![Config::new(
            catalog,
            sub.started_at.unwrap_or(sub.created_at),
            plan,
            None,
        )])
    }

    /// The usage of a subscription in `[from, to)` as the invoice arithmetic takes it.
    pub(crate) async fn usage_records(
        &self,
        sub: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BillingResult<Vec<UsageRecord>> {
        Ok(self
            .usage_between(sub, from, to)
            .await?
            .into_iter()
            .map(|u| UsageRecord {
                product_id: u.product_id,
                at: u.at,
                quantity: u.quantity,
            })
            .collect())
    }

    /// Everything to bill `sub` with, usage from `from` to `to`.
    pub(crate) async fn billable(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        usage: (DateTime<Utc>, DateTime<Utc>),
    ) -> BillingResult<Billable> {
        let started = sub.started_at.ok_or_else(|| {
            BillingError::InvalidState(format!("subscription {} has not started", sub.id))
        })?;
        let catalog = self.catalog();
        let versions = versions_of(self.db.conn(), [sub.id]).await?;
        let configs = self.configs_of(&catalog, sub, versions.get(&sub.id))?;
        let usage = self.usage_records(sub.id, usage.0, usage.1).await?;
        let mut b = Billable::new(&catalog, started, configs, customer, usage);
        b.legacy = sub.legacy_period.and_then(|p| u32::try_from(p).ok());
        Ok(b)
    }

    /// Issues what is due for one subscription up to `now`: every period boundary passed
    /// (an ended subscription: up to its end, then its final invoice). Returns how many it
    /// issued and when to look at it again.
    pub(crate) async fn bill_subscription(
        &self,
        sub: &subscription::Model,
        customer: &customer::Model,
        now: DateTime<Utc>,
    ) -> BillingResult<(usize, DateTime<Utc>)> {
        let versions = versions_of(self.db.conn(), [sub.id]).await?;
        let versions = versions.get(&sub.id);
        let done = self
            .bill_subscriptions(
                &[Due {
                    sub,
                    customer,
                    versions,
                }],
                now,
            )
            .await?;
        Ok(done.into_iter().next().unwrap_or((0, NEVER)))
    }

    /// [`Self::bill_subscription`] for a batch, in a few statements whatever its size: the
    /// usage of every subscription's windows in one read, then one transaction with every
    /// invoice (see [`insert_invoices`]) and the boundary markers in one update. A key
    /// stored already (another process issued it) is skipped: each invoice is issued once.
    /// Returns, per subscription in order, how many it issued and when to look again.
    pub(crate) async fn bill_subscriptions(
        &self,
        due: &[Due<'_>],
        now: DateTime<Utc>,
    ) -> BillingResult<Vec<(usize, DateTime<Utc>)>> {
        let catalog = self.catalog();
        let plans: Vec<Steps> = due
            .iter()
            .map(|d| Steps::of(d.sub, now))
            .collect::<BillingResult<_>>()?;
        let mut usage = usage_of(
            self.db.conn(),
            due.iter()
                .zip(&plans)
                .filter_map(|(d, p)| p.window.map(|w| (d.sub.id, w))),
        )
        .await?;
        let mut invoices = Vec::new();
        // Per invoice: which subscription (index in `due`) and whether it ends it.
        let mut owners = Vec::new();
        for (i, (d, steps)) in due.iter().zip(&plans).enumerate() {
            let Some(started) = d.sub.started_at else {
                continue;
            };
            if steps.boundaries.is_empty() && steps.last.is_none() {
                continue;
            }
            let configs = self.configs_of(&catalog, d.sub, d.versions)?;
            let mut billable = Billable::new(
                &catalog,
                started,
                configs,
                d.customer,
                usage.remove(&d.sub.id).unwrap_or_default(),
            );
            billable.legacy = d.sub.legacy_period.and_then(|p| u32::try_from(p).ok());
            let all_usage = std::mem::take(&mut billable.usage);
            let within = |from: DateTime<Utc>, to: DateTime<Utc>| -> Vec<UsageRecord> {
                all_usage
                    .iter()
                    .filter(|u| u.at >= from && u.at < to)
                    .cloned()
                    .collect()
            };
            for step in &steps.boundaries {
                billable.usage = within(step.from, step.period_end);
                let lines = billable
                    .subject()
                    .boundary(step.index, billable.legacy, !step.closes);
                let period = if step.closes {
                    (step.from, step.period_start)
                } else {
                    (step.period_start, step.period_end)
                };
                invoices.push(NewInvoice {
                    subscription_id: d.sub.id,
                    customer_id: d.sub.customer_id,
                    key: format!("period-{}", step.index),
                    kind: InvoiceKind::Period,
                    period_index: step.index,
                    period,
                    currency: d.customer.currency.clone(),
                    lines,
                    paid: Decimal::ZERO,
                    payment_ref: None,
                });
                owners.push((i, step.closes));
            }
            // Ended inside a period (cancel now): its final invoice.
            if let Some((j, ps, end)) = steps.last {
                billable.usage = within(ps, end);
                let lines = billable.subject().cancel_now(end, billable.legacy);
                invoices.push(NewInvoice {
                    subscription_id: d.sub.id,
                    customer_id: d.sub.customer_id,
                    key: "final".to_owned(),
                    kind: InvoiceKind::Final,
                    period_index: j,
                    period: (ps, end),
                    currency: d.customer.currency.clone(),
                    lines,
                    paid: Decimal::ZERO,
                    payment_ref: None,
                });
                owners.push((i, true));
            }
        }
        let mut issued = vec![0; due.len()];
        if !invoices.is_empty() {
            let txn = self.db.write().await?;
            let stored = insert_invoices(&*txn, now, invoices).await?;
            let mut ended = Vec::new();
            for ((i, ends), stored) in owners.into_iter().zip(stored) {
                if stored.is_some() {
                    issued[i] += 1;
                    if ends && !ended.contains(&due[i].sub.customer_id) {
                        ended.push(due[i].sub.customer_id);
                    }
                }
            }
            for customer_id in ended {
                self.refund_credit_if_done(&*txn, now, customer_id).await?;
            }
            move_markers(
                &*txn,
                due.iter()
                    .zip(&plans)
                    .filter_map(|(d, p)| p.marker.map(|m| (d.sub.id, m))),
            )
            .await?;
            txn.commit().await?;
            self.announce_events();
        }
        Ok(issued
            .into_iter()
            .zip(plans)
            .map(|(n, p)| (n, p.next))
            .collect())
    }

    /// The opening invoice (boundary 0) of a subscription that just went live, paid with
    /// `paid` by its checkout (what it leaves, the saved card pays). Runs in the transaction
    /// that activated it.
    pub(crate) async fn issue_opening(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        sub_id: Uuid,
        paid: Decimal,
    ) -> BillingResult<()> {
        let sub = subscription::Entity::find_by_id(sub_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("subscription", sub_id))?;
        let customer = customer::Entity::find_by_id(sub.customer_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("customer", sub.customer_id))?;
        let started = sub.started_at.unwrap_or(now);
        let catalog = self.catalog();
        let versions = versions_of(db, [sub.id]).await?;
        let configs = self.configs_of(&catalog, &sub, versions.get(&sub.id))?;
        let billable = Billable::new(&catalog, started, configs, &customer, Vec::new());
        let lines = billable.subject().boundary(0, None, true);
        let moved = subscription::Entity::update_many()
            .col_expr(subscription::Column::NextBoundary, Expr::value(1))
            .filter(subscription::Column::Id.eq(sub.id))
            .filter(subscription::Column::NextBoundary.eq(0))
            .exec(db)
            .await?;
        if moved.rows_affected == 0 {
            return Ok(());
        }
        insert_invoice(
            db,
            now,
            NewInvoice {
                subscription_id: sub.id,
                customer_id: sub.customer_id,
                key: "period-0".to_owned(),
                kind: InvoiceKind::Period,
                period_index: 0,
                period: billing_period(started, 0),
                currency: customer.currency.clone(),
                lines,
                paid,
                payment_ref: None,
            },
        )
        .await?;
        Ok(())
    }
}

/// A subscription to bill, with its customer and stored configurations.
pub(crate) struct Due<'a> {
    pub sub: &'a subscription::Model,
    pub customer: &'a customer::Model,
    pub versions: Option<&'a Vec<Version>>,
}

/// A period boundary to invoice: the arrears of the period before it (from `from`) and
/// the advance lines of the period it opens, unless the subscription ends there.
struct Boundary {
    index: u32,
    from: DateTime<Utc>,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    closes: bool,
}

/// What is due for one subscription up to now, worked out before anything is read.
struct Steps {
    boundaries: Vec<Boundary>,
    /// The final invoice of a subscription ended inside a period: (period, its start, the end).
    last: Option<(u32, DateTime<Utc>, DateTime<Utc>)>,
    /// The usage all of them read.
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The boundary marker once they are issued.
    marker: Option<u32>,
    /// When to look again.
    next: DateTime<Utc>,
}

impl Steps {
    fn of(sub: &subscription::Model, now: DateTime<Utc>) -> BillingResult<Steps> {
        let status: SubscriptionStatus = parse(&sub.status)?;
        let mut steps = Steps {
            boundaries: Vec::new(),
            last: None,
            window: None,
            marker: None,
            next: NEVER,
        };
        let Some(started) = sub.started_at else {
            // Never went live: nothing to bill. Live without a start: look again tomorrow.
            if status.is_live() {
                steps.next = now + TimeDelta::days(1);
            }
            return Ok(steps);
        };
        let end = (status == SubscriptionStatus::Canceled)
            .then_some(sub.canceled_at)
            .flatten();
        let mut b = u32::try_from(sub.next_boundary).unwrap_or(0);
        let mut closed = false;
        loop {
            let (ps, pe) = billing_period(started, b);
            if ps > now || end.is_some_and(|e| ps > e) {
                break;
            }
            let closes = end == Some(ps);
            let from = if b == 0 {
                ps
            } else {
                billing_period(started, b - 1).0
            };
            steps.boundaries.push(Boundary {
                index: b,
                from,
                period_start: ps,
                period_end: pe,
                closes,
            });
            b += 1;
            if closes {
                closed = true;
                break;
            }
        }
        if !steps.boundaries.is_empty() {
            steps.marker = Some(b);
        }
        match end {
            None => steps.next = billing_period(started, b).0,
            Some(end) if !closed => {
                // The final invoice, once every boundary before the end is issued.
                let (j, ps, _) = period_containing(started, end);
                if end > ps && b == j + 1 {
                    steps.last = Some((j, ps, end));
                }
            }
            Some(_) => {}
        }
        let spans = steps
            .boundaries
            .iter()
            .map(|s| (s.from, s.period_end))
            .chain(steps.last.map(|(_, ps, end)| (ps, end)));
        steps.window = spans.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        Ok(steps)
    }
}

/// Subscriptions' usage in their windows, in one read per 500 subscriptions, oldest first.
async fn usage_of(
    db: &impl ConnectionTrait,
    windows: impl Iterator<Item = (Uuid, (DateTime<Utc>, DateTime<Utc>))>,
) -> BillingResult<HashMap<Uuid, Vec<UsageRecord>>> {
    let windows: Vec<_> = windows.collect();
    let mut usage: HashMap<Uuid, Vec<UsageRecord>> = HashMap::new();
    for chunk in windows.chunks(500) {
        let mut any = Condition::any();
        for (sub, (from, to)) in chunk {
            any = any.add(
                Condition::all()
                    .add(usage_record::Column::SubscriptionId.eq(*sub))
                    .add(usage_record::Column::At.gte(*from))
                    .add(usage_record::Column::At.lt(*to)),
            );
        }
        for u in usage_record::Entity::find()
            .filter(any)
            .order_by_asc(usage_record::Column::At)
            .all(db)
            .await?
        {
            usage
                .entry(u.subscription_id)
                .or_default()
                .push(UsageRecord {
                    product_id: u.product_id,
                    at: u.at,
                    quantity: u.quantity.0,
                });
        }
    }
    Ok(usage)
}

/// Moves boundary markers forward (never back: another process may be ahead), in one
/// update.
async fn move_markers(
    db: &impl ConnectionTrait,
    markers: impl Iterator<Item = (Uuid, u32)>,
) -> BillingResult<()> {
    let markers: Vec<(Uuid, i32)> = markers
        .map(|(id, m)| (id, i32::try_from(m).unwrap_or(i32::MAX)))
        .collect();
    let forward = |m: i32| -> Expr {
        Expr::case(subscription::Column::NextBoundary.lt(m), Expr::value(m))
            .finally(Expr::col(subscription::Column::NextBoundary))
            .into()
    };
    let Some(value) = per_row(
        subscription::Column::Id,
        markers.iter().map(|(id, m)| (*id, forward(*m))),
    ) else {
        return Ok(());
    };
    subscription::Entity::update_many()
        .col_expr(subscription::Column::NextBoundary, value)
        .filter(subscription::Column::Id.is_in(markers.iter().map(|(id, _)| *id)))
        .exec(db)
        .await?;
    Ok(())
}
