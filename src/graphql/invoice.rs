//! Invoices and the invoice preview.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::enums::{CreditReason, InvoiceKind, InvoiceStatus, PhaseKind};
use super::error::{GqlResult, uuid};
use super::scalars::Decimal;
use crate::billing::invoice::LineKind;
use crate::billing::invoicing::{Invoice as InvoiceModel, InvoiceLine as LineModel};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "LineKind")]
pub enum InvoiceLineKind {
    /// A package item's price over a slice of the period.
    Recurring,
    /// Usage beyond the included amounts, over a slice of the period.
    Metered,
    /// Invoices issued before advance billing: paid at checkout and set against a product's
    /// recurring lines (negative).
    Prepaid,
    /// A change mid-period: the unused part of an advance line already billed (negative),
    /// or the new configuration's advance line for the rest of the period (positive).
    Proration,
}

/// One tier of a graduated line: its units, their unit price and what they cost on this
/// line (unrounded; the line's amount is their sum, rounded).
#[derive(SimpleObject)]
pub struct LineTier {
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
}

/// One movement of a customer's credit.
#[derive(SimpleObject)]
pub struct CreditEntry {
    pub id: ID,
    /// Positive adds credit, negative uses or gives it back.
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub currency: String,
    pub reason: CreditReason,
    pub subscription_id: Option<ID>,
    pub invoice_id: Option<ID>,
    pub created_at: DateTime<Utc>,
}

impl From<crate::billing::credit::CreditEntry> for CreditEntry {
    fn from(e: crate::billing::credit::CreditEntry) -> Self {
        CreditEntry {
            id: ID(e.id.to_string()),
            amount: e.amount.into(),
            balance_after: e.balance_after.into(),
            currency: e.currency,
            reason: e.reason.into(),
            subscription_id: e.subscription_id.map(|s| ID(s.to_string())),
            invoice_id: e.invoice_id.map(|s| ID(s.to_string())),
            created_at: e.created_at,
        }
    }
}

/// A product as an invoice line names it.
#[derive(SimpleObject)]
pub struct LineProduct {
    pub id: ID,
    pub name: String,
}

#[derive(SimpleObject)]
pub struct InvoiceLine {
    pub kind: InvoiceLineKind,
    pub product_id: ID,
    /// The product the line is for (None if it was deleted since).
    pub product: Option<LineProduct>,
    /// Graduated lines: the tiers that priced its units (empty for one tier).
    pub tiers: Vec<LineTier>,
    /// The phase in force during the slice.
    pub phase: PhaseKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    /// Rounded to the currency's minor units, half away from zero.
    pub amount: Decimal,
    /// False when (part of) the quantity found no price and was charged zero.
    pub matched: bool,
}

impl InvoiceLine {
    fn new(l: LineModel, catalog: &crate::billing::catalog::Catalog) -> Self {
        InvoiceLine {
            kind: l.kind.into(),
            product_id: ID(l.product_id.to_string()),
            product: catalog.product(l.product_id).map(|p| LineProduct {
                id: ID(p.id.to_string()),
                name: p.name.clone(),
            }),
            tiers: l
                .tiers
                .iter()
                .map(|t| LineTier {
                    quantity: t.quantity.into(),
                    unit_amount: t.unit_amount.into(),
                    amount: t.amount.into(),
                })
                .collect(),
            phase: l.phase.into(),
            start: l.start,
            end: l.end,
            quantity: l.quantity.into(),
            unit_amount: l.unit_amount.into(),
            amount: l.amount.into(),
            matched: l.matched,
        }
    }
}

pub struct Invoice(pub InvoiceModel);

#[Object]
impl Invoice {
    /// None for a preview.
    async fn id(&self) -> Option<ID> {
        self.0.id.map(|i| ID(i.to_string()))
    }
    async fn subscription_id(&self) -> ID {
        ID(self.0.subscription_id.to_string())
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    async fn period_start(&self) -> DateTime<Utc> {
        self.0.period_start
    }
    async fn period_end(&self) -> DateTime<Utc> {
        self.0.period_end
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn kind(&self) -> InvoiceKind {
        self.0.kind.into()
    }
    /// The sum of the rounded lines; negative when it credits more than it charges (that
    /// part becomes the customer's credit).
    async fn total(&self) -> Decimal {
        self.0.total.into()
    }
    /// Credit balance set against the total.
    async fn credit_applied(&self) -> Decimal {
        self.0.credit_applied.into()
    }
    /// What the payment method is asked for: the total less credit and less what a
    /// checkout paid up front.
    async fn amount_due(&self) -> Decimal {
        self.0.amount_due.into()
    }
    async fn status(&self) -> InvoiceStatus {
        self.0.status.into()
    }
    /// Failed collection attempts so far.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<InvoiceLine>> {
        let catalog = ctx.billing()?.catalog();
        Ok(self
            .0
            .lines
            .iter()
            .cloned()
            .map(|l| InvoiceLine::new(l, &catalog))
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Gapless per installation once issued: `INV-000042`. None for a preview.
    async fn number(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let Some(id) = self.0.id else {
            return Ok(None);
        };
        Ok(ctx
            .data::<super::loaders::Loaders>()?
            .invoice_numbers()
            .load_one(id)
            .await?
            .flatten())
    }
    /// An HTML page the customer can open and print (an unguessable signed link). None for
    /// a preview.
    async fn hosted_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let billing = ctx.billing()?;
        Ok(self.0.id.map(|id| billing.documents.invoice_url(id)))
    }
    /// The same invoice as PDF (signed like `hostedUrl`). None for a preview.
    async fn pdf_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let billing = ctx.billing()?;
        Ok(self.0.id.map(|id| billing.documents.invoice_pdf_url(id)))
    }
}

/// A metered product's usage in the current billing period so far.
#[derive(SimpleObject)]
pub struct UsageSummary {
    pub product_id: ID,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub usage: Decimal,
    /// The part of the usage covered by the package's included amount.
    pub included: Decimal,
    pub overage: Decimal,
    /// What the overage costs so far, in `currency`.
    pub amount: Decimal,
    pub currency: String,
}

#[derive(Default)]
pub struct InvoiceQuery;

#[Object]
impl InvoiceQuery {
    /// A customer's invoices, oldest period first.
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Invoice, EmptyFields, EmptyFields>> {
        let first = u64::try_from(first.unwrap_or(20).clamp(1, 100)).unwrap_or(20);
        let (invoices, more) = ctx
            .billing()?
            .invoices(
                &ctx.principal(),
                uuid("customerId", &customer_id)?,
                first,
                after.as_deref(),
            )
            .await
            .gql()?;
        let mut conn = Connection::new(after.is_some(), more);
        conn.edges.extend(invoices.into_iter().map(|i| {
            let cursor = i.id.map(|id| id.to_string()).unwrap_or_default();
            Edge::new(cursor, Invoice(i))
        }));
        Ok(conn)
    }

    /// Usage, included amounts, overage and its price so far, per metered product.
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
    ) -> async_graphql::Result<Vec<UsageSummary>> {
        let rows = ctx
            .billing()?
            .usage_summary(&ctx.principal(), uuid("subscriptionId", &subscription_id)?)
            .await
            .gql()?;
        Ok(rows
            .into_iter()
            .map(|u| UsageSummary {
                product_id: ID(u.product_id.to_string()),
                period_start: u.period_start,
                period_end: u.period_end,
                usage: u.usage.into(),
                included: u.included.into(),
                overage: u.overage.into(),
                amount: u.amount.into(),
                currency: u.currency,
            })
            .collect())
    }

    /// What a change would cost now, as an invoice that is not stored: give `planId` or
    /// `items`.
    async fn change_preview(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        plan_id: Option<ID>,
        items: Option<Vec<super::subscription::SubscriptionItemInput>>,
    ) -> async_graphql::Result<Invoice> {
        let spec = super::subscription::change_spec(plan_id, items)?;
        let i = ctx
            .billing()?
            .change_preview(
                &ctx.principal(),
                uuid("subscriptionId", &subscription_id)?,
                spec,
            )
            .await
            .gql()?;
        Ok(Invoice(i))
    }

    /// The next period boundary's invoice as it stands now (not stored): the current
    /// period's arrears so far and the next period's advance lines.
    async fn invoice_preview(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
    ) -> async_graphql::Result<Invoice> {
        let i = ctx
            .billing()?
            .invoice_preview(&ctx.principal(), uuid("subscriptionId", &subscription_id)?)
            .await
            .gql()?;
        Ok(Invoice(i))
    }
}

#[derive(Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// Admin: voids an open invoice; it is not collected.
    async fn void_invoice(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Invoice> {
        let i = ctx
            .billing()?
            .void_invoice(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(Invoice(i))
    }
}
