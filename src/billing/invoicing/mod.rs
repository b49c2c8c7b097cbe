//! Invoices: the lines of a subscription's periods (the pure `invoice` arithmetic), put on
//! invoices by when they are billed (`billed`): the opening invoice collected by the
//! checkout, one per period boundary, one per change mid-period and a final one. Rooms:
//! `issue` (storing an invoice with its credit), `clock` (the billing clock's run),
//! `collect` (charging open invoices, dunning). This file holds the read side.

mod clock;
mod collect;
pub(crate) mod issue;
#[cfg(test)]
mod tests;

use chrono::{DateTime, TimeDelta, Utc};
use entity::{invoice, invoice_line, subscription};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::codes::{Code, InvoiceKind, InvoiceStatus, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::invoice::{Line, LineKind};
use super::phase::{PhaseKind, period_containing};
use super::pricing::TierCharge;

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
    /// Graduated lines: the tiers that priced units (amounts for this line, unrounded).
    pub tiers: Vec<LineTier>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineTier {
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
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
    pub kind: InvoiceKind,
    pub total: Decimal,
    /// Credit balance set against the total.
    pub credit_applied: Decimal,
    /// What the payment method is asked for: the total less credit and less what a
    /// checkout paid up front.
    pub amount_due: Decimal,
    pub status: InvoiceStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lines: Vec<InvoiceLine>,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn lines_of(lines: &[Line]) -> Vec<InvoiceLine> {
    lines
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
            tiers: tiers_of(&l.tiers),
        })
        .collect()
}

fn tiers_of(tiers: &[TierCharge]) -> Vec<LineTier> {
    if tiers.len() < 2 {
        return Vec::new();
    }
    tiers
        .iter()
        .map(|t| LineTier {
            quantity: t.quantity,
            unit_amount: t.unit_amount,
            amount: t.amount,
        })
        .collect()
}

impl Billing {
    /// The next boundary invoice as it stands now (not stored): the current period's
    /// arrears so far, and the next period's advance lines under the configuration in force
    /// (none when the subscription ends at the period's end).
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
        let (k, start, end) = period_containing(started, now);
        let customer = self.customer_model(model.customer_id).await?;
        let billable = self.billable(&model, &customer, (start, end)).await?;
        let subject = billable.subject();
        let mut lines = subject.arrears_so_far(k, now, billable.legacy);
        let status: SubscriptionStatus = parse(&model.status)?;
        if status.grants_plan() && !model.cancel_at_period_end {
            lines.extend(subject.advance_of(k + 1));
        }
        Ok(self.draft_invoice(
            &model,
            &customer.currency,
            InvoiceKind::Period,
            (start, end),
            lines,
            now,
        ))
    }

    /// An invoice that is not stored (a preview).
    pub(crate) fn draft_invoice(
        &self,
        sub: &subscription::Model,
        currency: &str,
        kind: InvoiceKind,
        period: (DateTime<Utc>, DateTime<Utc>),
        lines: Vec<Line>,
        now: DateTime<Utc>,
    ) -> Invoice {
        let total = super::invoice::total_of(&lines, currency);
        Invoice {
            id: None,
            subscription_id: sub.id,
            customer_id: sub.customer_id,
            period_start: period.0,
            period_end: period.1,
            currency: currency.to_owned(),
            kind,
            total,
            credit_applied: Decimal::ZERO,
            amount_due: super::money::at_least_zero(total),
            status: InvoiceStatus::Draft,
            attempts: 0,
            next_attempt_at: None,
            lines: lines_of(&lines),
            created_at: now,
        }
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

    /// One stored invoice (no access check: for results already authorized).
    pub(crate) async fn invoice_by_id(&self, id: Uuid) -> BillingResult<Invoice> {
        let row = invoice::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("invoice", id))?;
        let lines = invoice_line::Entity::find()
            .filter(invoice_line::Column::InvoiceId.eq(id))
            .order_by_asc(invoice_line::Column::Position)
            .all(self.db.conn())
            .await?;
        stored(row, lines)
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
}

fn stored(r: invoice::Model, lines: Vec<invoice_line::Model>) -> BillingResult<Invoice> {
    Ok(Invoice {
        id: Some(r.id),
        subscription_id: r.subscription_id,
        customer_id: r.customer_id,
        period_start: r.period_start,
        period_end: r.period_end,
        currency: r.currency,
        kind: parse(&r.kind)?,
        total: r.total.0,
        credit_applied: r.credit_applied.0,
        amount_due: r.amount_due.0,
        status: parse(&r.status)?,
        attempts: r.attempts,
        next_attempt_at: r.next_attempt_at,
        lines: lines
            .into_iter()
            .map(|l| {
                Ok(InvoiceLine {
                    kind: parse::<LineKind>(&l.kind)?,
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
                    tiers: l
                        .tiers
                        .as_deref()
                        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(t).ok())
                        .unwrap_or_default()
                        .iter()
                        .map(|t| {
                            let d = |k: &str| {
                                t[k].as_str()
                                    .and_then(|v| v.parse::<Decimal>().ok())
                                    .unwrap_or_default()
                            };
                            LineTier {
                                quantity: d("quantity"),
                                unit_amount: d("unitAmount"),
                                amount: d("amount"),
                            }
                        })
                        .collect(),
                })
            })
            .collect::<BillingResult<_>>()?,
        created_at: r.created_at,
    })
}
