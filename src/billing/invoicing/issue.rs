//! Issuing invoices: the opening invoice (boundary 0, collected by the checkout), one per
//! later period boundary, one per change mid-period and a final one after a cancel now.
//! Which lines go on which invoice is `billed`'s business; this module loads what it needs,
//! stores the invoice with its credit, and records the events, once per key whatever the
//! number of processes.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{Dec, customer, invoice, invoice_line, subscription};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::super::Billing;
use super::super::billed::Subject;
use super::super::catalog::Catalog;
use super::super::codes::{
    Code, EventKind, InvoiceKind, InvoiceStatus, ProductKind, SubscriptionStatus, parse,
};
use super::super::credit::{self, CreditReason, Move};
use super::super::error::{BillingError, BillingResult};
use super::super::events::record;
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
    let total = total_of(&inv.lines, &inv.currency);
    let balance = credit::balance(db, inv.customer_id).await?;
    let zero = Decimal::new(0, total.scale());
    // (credit to add, credit to use, amount left to collect)
    let (added, used, due) = if total < Decimal::ZERO {
        (-total, zero, zero)
    } else {
        let rest = total - inv.paid;
        if rest < Decimal::ZERO {
            (-rest, zero, zero)
        } else {
            let used = balance.min(rest);
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
    let id = Uuid::now_v7();
    let inserted = invoice::Entity::insert(invoice::ActiveModel {
        id: Set(id),
        subscription_id: Set(inv.subscription_id),
        customer_id: Set(inv.customer_id),
        period_index: Set(i32::try_from(inv.period_index).unwrap_or(i32::MAX)),
        period_start: Set(inv.period.0),
        period_end: Set(inv.period.1),
        currency: Set(inv.currency.clone()),
        total: Set(Dec(total)),
        status: Set(status.code().to_owned()),
        attempts: Set(0),
        next_attempt_at: Set((status == InvoiceStatus::Open).then_some(now)),
        payment_ref: Set(inv.payment_ref.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        invoice_key: Set(inv.key.clone()),
        kind: Set(inv.kind.code().to_owned()),
        credit_applied: Set(Dec(used)),
        amount_due: Set(Dec(due)),
        number: Set(None),
    })
    .on_conflict_do_nothing_on([invoice::Column::SubscriptionId, invoice::Column::InvoiceKey])
    .exec(db)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(_)) {
        return Ok(None);
    }
    // Numbered only once it is certain to be issued: a number is never taken for nothing.
    let number = super::super::documents::number::next_number(db).await?;
    invoice::Entity::update_many()
        .col_expr(invoice::Column::Number, Expr::value(number.clone()))
        .filter(invoice::Column::Id.eq(id))
        .exec(db)
        .await?;
    let lines: Vec<_> = inv
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| invoice_line::ActiveModel {
            id: Set(Uuid::now_v7()),
            invoice_id: Set(id),
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
        .collect();
    if !lines.is_empty() {
        invoice_line::Entity::insert_many(lines)
            .exec_without_returning(db)
            .await?;
    }
    let credit_move = |amount: Decimal, reason| Move {
        customer_id: inv.customer_id,
        subscription_id: Some(inv.subscription_id),
        invoice_id: Some(id),
        amount,
        reason,
    };
    if added > Decimal::ZERO {
        let reason = if total < Decimal::ZERO {
            CreditReason::InvoiceCredit
        } else {
            CreditReason::Overpayment
        };
        credit::move_credit(db, now, credit_move(added, reason)).await?;
    }
    if used > Decimal::ZERO {
        credit::move_credit(db, now, credit_move(-used, CreditReason::Applied)).await?;
    }
    let data = json!({
        "invoiceId": id, "number": number, "kind": inv.kind.code(), "total": total.to_string(),
        "creditApplied": used.to_string(), "amountDue": due.to_string(), "currency": inv.currency,
        "periodStart": inv.period.0, "periodEnd": inv.period.1,
    });
    let event = |kind, data| {
        record(
            db,
            now,
            inv.customer_id,
            Some(inv.subscription_id),
            kind,
            data,
        )
    };
    event(EventKind::InvoiceIssued, data.clone()).await?;
    if status == InvoiceStatus::Paid {
        event(EventKind::InvoicePaid, data).await?;
    }
    tracing::info!(invoice = %id, number, subscription = %inv.subscription_id, key = inv.key,
        total = %total, credit_applied = %used, amount_due = %due, currency = inv.currency,
        "invoice issued");
    Ok(Some(Issued { id }))
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
        versions: Option<&Vec<Version>>,
        usage: (DateTime<Utc>, DateTime<Utc>),
    ) -> BillingResult<Billable> {
        let started = sub.started_at.ok_or_else(|| {
            BillingError::InvalidState(format!("subscription {} has not started", sub.id))
        })?;
        let catalog = self.catalog();
        let loaded;
        let versions = match versions {
            Some(v) => Some(v),
            None => {
                loaded = versions_of(self.db.conn(), [sub.id]).await?;
                loaded.get(&sub.id)
            }
        };
        let configs = self.configs_of(&catalog, sub, versions)?;
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
        versions: Option<&Vec<Version>>,
        now: DateTime<Utc>,
    ) -> BillingResult<(usize, DateTime<Utc>)> {
        let status: SubscriptionStatus = parse(&sub.status)?;
        let Some(started) = sub.started_at else {
            // Never went live: nothing to bill. Live without a start: look again tomorrow.
            let next = if status.is_live() {
                now + TimeDelta::days(1)
            } else {
                NEVER
            };
            return Ok((0, next));
        };
        let end = (status == SubscriptionStatus::Canceled)
            .then_some(sub.canceled_at)
            .flatten();
        let mut issued = 0;
        let mut b = u32::try_from(sub.next_boundary).unwrap_or(0);
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
            let billable = self.billable(sub, customer, versions, (from, pe)).await?;
            let lines = billable.subject().boundary(b, billable.legacy, !closes);
            let period = if closes { (from, ps) } else { (ps, pe) };
            let txn = self.db.write().await?;
            // One process issues a boundary: the one that moves the marker.
            let moved = subscription::Entity::update_many()
                .col_expr(
                    subscription::Column::NextBoundary,
                    Expr::value(i32::try_from(b + 1).unwrap_or(i32::MAX)),
                )
                .filter(subscription::Column::Id.eq(sub.id))
                .filter(subscription::Column::NextBoundary.eq(i32::try_from(b).unwrap_or(i32::MAX)))
                .exec(&*txn)
                .await?;
            if moved.rows_affected == 0 {
                break;
            }
            let done = insert_invoice(
                &*txn,
                now,
                NewInvoice {
                    subscription_id: sub.id,
                    customer_id: sub.customer_id,
                    key: format!("period-{b}"),
                    kind: InvoiceKind::Period,
                    period_index: b,
                    period,
                    currency: customer.currency.clone(),
                    lines,
                    paid: Decimal::ZERO,
                    payment_ref: None,
                },
            )
            .await?;
            if closes {
                self.refund_credit_if_done(&*txn, now, sub.customer_id)
                    .await?;
            }
            txn.commit().await?;
            self.announce_events();
            issued += usize::from(done.is_some());
            b += 1;
            if closes {
                return Ok((issued, NEVER));
            }
        }
        let Some(end) = end else {
            return Ok((issued, billing_period(started, b).0));
        };
        // Ended inside a period (cancel now): its final invoice, once all boundaries before
        // the end are issued.
        let (j, ps, _) = period_containing(started, end);
        if end > ps && b == j + 1 {
            let billable = self.billable(sub, customer, versions, (ps, end)).await?;
            let lines = billable.subject().cancel_now(end, billable.legacy);
            let txn = self.db.write().await?;
            let done = insert_invoice(
                &*txn,
                now,
                NewInvoice {
                    subscription_id: sub.id,
                    customer_id: sub.customer_id,
                    key: "final".to_owned(),
                    kind: InvoiceKind::Final,
                    period_index: j,
                    period: (ps, end),
                    currency: customer.currency.clone(),
                    lines,
                    paid: Decimal::ZERO,
                    payment_ref: None,
                },
            )
            .await?;
            if done.is_some() {
                self.refund_credit_if_done(&*txn, now, sub.customer_id)
                    .await?;
            }
            txn.commit().await?;
            self.announce_events();
            issued += usize::from(done.is_some());
        }
        Ok((issued, NEVER))
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
