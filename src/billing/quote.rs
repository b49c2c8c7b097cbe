//! Pricing answers for people: quotes, phase timelines, price matrices and catalog gaps.
//! All of them are read from the catalog snapshot: no database round trip.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::{Plan, Product};
use super::error::{BillingError, BillingResult};
use super::money::round_to_currency;
use super::phase::{
    PhaseKind, PhaseWindow, phase_at, phase_timeline, truncate_to_second, window_at,
};
use super::pricing::{CatalogGap, PriceRule, Resolution, catalog_gaps};
use super::validate;

#[derive(Clone, Debug)]
pub struct QuoteRequest {
    pub plan_id: Uuid,
    pub product_id: Uuid,
    pub currency: String,
    pub region: Option<String>,
    pub quantity: Decimal,
    pub billing_start: Option<DateTime<Utc>>,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub struct Quote {
    pub plan: Arc<Plan>,
    pub product: Arc<Product>,
    pub phase: PhaseKind,
    pub window: Option<PhaseWindow>,
    pub currency: String,
    pub region: Option<String>,
    pub quantity: Decimal,
    pub at: DateTime<Utc>,
    pub resolution: Resolution,
    /// The amount for one interval, rounded to the currency's minor units.
    pub amount_rounded: Decimal,
}

/// One product in one phase of a price matrix: the tiers that apply, in order.
#[derive(Clone, Debug)]
pub struct MatrixRow {
    pub product: Arc<Product>,
    pub phase: PhaseKind,
    pub tiers: Vec<PriceRule>,
}

#[derive(Clone, Debug)]
pub struct PriceMatrix {
    pub plan: Arc<Plan>,
    pub currency: String,
    pub region: Option<String>,
    pub rows: Vec<MatrixRow>,
}

impl Billing {
    /// A plan as the caller may see it: admins see all, others the visible ones only. A
    /// plan just created on another process is found here too.
    pub async fn visible_plan(&self, who: &Principal, id: Uuid) -> BillingResult<Arc<Plan>> {
        self.catalog_with([id])
            .await?
            .plan(id)
            .filter(|p| who.is_admin() || p.visible_to(who.customer_id()))
            .cloned()
            .ok_or_else(|| BillingError::not_found("plan", id))
    }

    pub async fn quote(&self, who: &Principal, req: QuoteRequest) -> BillingResult<Quote> {
        let plan = self.visible_plan(who, req.plan_id).await?;
        let product = self
            .catalog()
            .product(req.product_id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("product", req.product_id))?;
        let currency = validate::currency("currency", &req.currency)?;
        let region = validate::region(req.region.as_deref())?;
        let quantity = validate::quantity("quantity", req.quantity)?;
        let at = truncate_to_second(req.at.unwrap_or_else(|| self.clock.now()));
        // Without a billing start, the customer is assumed to start at the quote's time.
        let start = truncate_to_second(req.billing_start.unwrap_or(at));
        let specs = plan.phase_specs();
        if specs.is_empty() {
            return Err(BillingError::invalid(format!(
                "plan {} has no phases",
                plan.id
            )));
        }
        let phase = specs[phase_at(&specs, Some(start), at).min(specs.len() - 1)].kind;
        let window = window_at(&specs, start, at);
        let resolution =
            plan.resolve_price(phase, product.id, &currency, region.as_deref(), quantity);
        let amount_rounded = round_to_currency(resolution.amount, &currency);
        Ok(Quote {
            plan,
            product,
            phase,
            window,
            currency,
            region,
            quantity,
            at,
            resolution,
            amount_rounded,
        })
    }

    pub async fn phase_timeline(
        &self,
        who: &Principal,
        plan_id: Uuid,
        billing_start: DateTime<Utc>,
    ) -> BillingResult<Vec<PhaseWindow>> {
        let plan = self.visible_plan(who, plan_id).await?;
        Ok(phase_timeline(
            &plan.phase_specs(),
            truncate_to_second(billing_start),
        ))
    }

    pub async fn price_matrix(
        &self,
        who: &Principal,
        plan_id: Uuid,
        currency: &str,
        region: Option<&str>,
    ) -> BillingResult<PriceMatrix> {
        let plan = self.visible_plan(who, plan_id).await?;
        let currency = validate::currency("currency", currency)?;
        let region = validate::region(region)?;
        let catalog = self.catalog();
        let mut rows = Vec::new();
        for product in priced_products(&plan, &catalog.products) {
            for phase in &plan.phases {
                let tiers = plan
                    .applicable_rules(phase.kind, product.id, &currency, region.as_deref())
                    .into_iter()
                    .cloned()
                    .collect();
                rows.push(MatrixRow {
                    product: product.clone(),
                    phase: phase.kind,
                    tiers,
                });
            }
        }
        Ok(PriceMatrix {
            plan,
            currency,
            region,
            rows,
        })
    }

    /// Admin: every currency × region × tier hole of a plan, before a customer hits one.
    pub async fn catalog_gaps(
        &self,
        who: &Principal,
        plan_id: Uuid,
    ) -> BillingResult<Vec<CatalogGap>> {
        who.require_admin()?;
        let plan = self.visible_plan(who, plan_id).await?;
        let catalog = self.catalog();
        let phases: Vec<PhaseKind> = plan.phases.iter().map(|p| p.kind).collect();
        let products: Vec<Uuid> = priced_products(&plan, &catalog.products)
            .map(|p| p.id)
            .collect();
        let currencies: Vec<String> = plan
            .rules
            .iter()
            .map(|r| r.currency.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let regions: Vec<Option<String>> = std::iter::once(None)
            .chain(
                plan.rules
                    .iter()
                    .filter_map(|r| r.region.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(Some),
            )
            .collect();
        Ok(catalog_gaps(
            &plan.rules,
            &phases,
            &products,
            &currencies,
            &regions,
        ))
    }
}

/// The catalog's products that have any price in the plan, in catalog order.
fn priced_products<'a>(
    plan: &'a Plan,
    products: &'a [Arc<Product>],
) -> impl Iterator<Item = &'a Arc<Product>> {
    products
        .iter()
        .filter(move |p| plan.rules.iter().any(|r| r.product_id == p.id))
}
