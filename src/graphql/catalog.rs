//! Catalog types, queries and mutations: products, packages, plans, phases, prices,
//! quotes and price matrices. Everything here reads one catalog snapshot per object, so
//! nested fields cost no SQL at all.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::enums::{
    DurationUnit, LimitKind, PhaseKind, PriceInterval, ProductKind, RecurringBilling, TierMode,
};
use super::error::{GqlResult, uuid};
use super::scalars::Decimal;
use crate::billing::catalog::{
    Catalog, Package as PackageModel, Plan as PlanModel, Product as ProductModel,
};
use crate::billing::catalog_admin::{
    NewLimit, NewPackage, NewPhase, NewPlan, NewPrice, NewProduct, PackageChanges, PlanChanges,
    PriceChanges, ProductChanges,
};
use crate::billing::{BillingError, phase, pricing, quote};

// ---- output types ---------------------------------------------------------------------

pub struct Product(pub Arc<ProductModel>, pub Arc<Catalog>);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The billing integration's identifier for this product.
    async fn external_id(&self) -> Option<&str> {
        self.0.external_id.as_deref()
    }
    async fn kind(&self) -> ProductKind {
        self.0.kind.into()
    }
    /// bandwidth, storage, backup_storage, … (metered products only)
    async fn resource(&self) -> Option<&str> {
        self.0.resource.as_deref()
    }
    async fn unit(&self) -> Decimal {
        self.0.unit.into()
    }
    /// `CORE`, `MB`, `GB`, …
    async fn unit_type(&self) -> &str {
        &self.0.unit_type
    }
    /// Readings are a running counter: usage is the rise since the previous reading.
    async fn aggregated_usage(&self) -> bool {
        self.0.aggregated_usage
    }
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn packages(&self) -> Vec<Package> {
        self.1
            .packages_of(self.0.id)
            .iter()
            .map(|p| Package(p.clone(), self.1.clone()))
            .collect()
    }
}

pub struct Package(pub Arc<PackageModel>, pub Arc<Catalog>);

#[Object]
impl Package {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn product(&self) -> Option<Product> {
        self.1
            .product(self.0.product_id)
            .map(|p| Product(p.clone(), self.1.clone()))
    }
    /// CPU cores, in steps of 0.25.
    async fn cpu(&self) -> Decimal {
        self.0.cpu.into()
    }
    async fn memory_mb(&self) -> i64 {
        self.0.memory_mb
    }
    async fn included_storage_gb(&self) -> Decimal {
        self.0.included_storage_gb.into()
    }
    async fn included_bandwidth_gb(&self) -> Decimal {
        self.0.included_bandwidth_gb.into()
    }
    async fn included_backup_storage_gb(&self) -> Decimal {
        self.0.included_backup_storage_gb.into()
    }
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Clone)]
pub struct Plan(pub Arc<PlanModel>, pub Arc<Catalog>);

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Public plans are listed to everyone; others only to the customers they are offered to.
    async fn public(&self) -> bool {
        self.0.public
    }
    async fn recurring_billing(&self) -> RecurringBilling {
        self.0.recurring_billing.into()
    }

    async fn tier_mode(&self) -> TierMode {
        self.0.tier_mode.into()
    }
    async fn is_default(&self) -> bool {
        self.1.default_plan_id == Some(self.0.id)
    }
    async fn archived(&self) -> bool {
        self.0.is_archived()
    }
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn limits(&self) -> Vec<PlanLimit> {
        self.0
            .limits
            .iter()
            .map(|l| PlanLimit {
                metric: l.metric.clone(),
                max: l.max_value,
                kind: l.kind.into(),
            })
            .collect()
    }
    /// Phases in running order: TRIAL, DISCOUNT, FINAL.
    async fn phases(&self) -> Vec<Phase> {
        (0..self.0.phases.len())
            .map(|i| Phase {
                plan: self.clone(),
                index: i,
            })
            .collect()
    }
    /// Admin: the customers a non-public plan is offered to.
    async fn offered_to(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ID>> {
        ctx.principal().require_admin().gql()?;
        let mut ids: Vec<String> = self.0.offered_to.iter().map(|c| c.to_string()).collect();
        ids.sort();
        Ok(ids.into_iter().map(ID).collect())
    }
}

#[derive(SimpleObject)]
pub struct PlanLimit {
    /// What is limited, e.g. `computations` or `users`.
    pub metric: String,
    pub max: i64,
    pub kind: LimitKind,
}

#[derive(SimpleObject)]
pub struct PhaseDuration {
    pub count: i32,
    pub unit: DurationUnit,
}

impl From<phase::PhaseDuration> for PhaseDuration {
    fn from(d: phase::PhaseDuration) -> Self {
        PhaseDuration {
            count: i32::try_from(d.count).unwrap_or(i32::MAX),
            unit: d.unit.into(),
        }
    }
}

pub struct Phase {
    plan: Plan,
    index: usize,
}

impl Phase {
    fn model(&self) -> &crate::billing::catalog::Phase {
        &self.plan.0.phases[self.index]
    }
}

#[Object]
impl Phase {
    async fn id(&self) -> ID {
        ID(self.model().id.to_string())
    }
    async fn kind(&self) -> PhaseKind {
        self.model().kind.into()
    }
    /// How long the phase lasts at most; none for FINAL, which runs forever.
    async fn duration(&self) -> Option<PhaseDuration> {
        self.model().duration.map(Into::into)
    }
    /// The phase's prices, optionally only those in one currency (and as resolved for a region).
    async fn prices(&self, currency: Option<String>, region: Option<String>) -> Vec<Price> {
        let phase = self.model();
        let wanted = currency.map(|c| c.trim().to_ascii_uppercase());
        (0..phase.prices.len())
            .filter(|&i| {
                let p = &phase.prices[i];
                let Some(c) = &wanted else { return true };
                if &p.currency != c {
                    return false;
                }
                // A region with its own rules uses only those; otherwise the region-less ones.
                let regional = region.as_ref().is_some_and(|r| {
                    phase.prices.iter().any(|q| {
                        q.product_id == p.product_id
                            && &q.currency == c
                            && q.region.as_ref() == Some(r)
                    })
                });
                if regional {
                    p.region == region
                } else {
                    p.region.is_none()
                }
            })
            .map(|i| Price {
                plan: self.plan.clone(),
                phase: self.index,
                index: i,
            })
            .collect()
    }
}

pub struct Price {
    plan: Plan,
    phase: usize,
    index: usize,
}

impl Price {
    fn model(&self) -> &crate::billing::catalog::Price {
        &self.plan.0.phases[self.phase].prices[self.index]
    }

    /// The catalog object for a price rule of this plan.
    fn of_rule(plan: &Plan, rule_id: uuid::Uuid) -> Option<Price> {
        plan.0.phases.iter().enumerate().find_map(|(pi, ph)| {
            ph.prices
                .iter()
                .position(|p| p.id == rule_id)
                .map(|i| Price {
                    plan: plan.clone(),
                    phase: pi,
                    index: i,
                })
        })
    }
}

#[Object]
impl Price {
    async fn id(&self) -> ID {
        ID(self.model().id.to_string())
    }
    async fn phase(&self) -> PhaseKind {
        self.plan.0.phases[self.phase].kind.into()
    }
    async fn product(&self) -> Option<Product> {
        let cat = &self.plan.1;
        cat.product(self.model().product_id)
            .map(|p| Product(p.clone(), cat.clone()))
    }
    async fn currency(&self) -> &str {
        &self.model().currency
    }
    /// None: any region without rules of its own.
    async fn region(&self) -> Option<&str> {
        self.model().region.as_deref()
    }
    /// The tier's upper bound; none for the unbounded tier.
    async fn max_quantity(&self) -> Option<Decimal> {
        self.model().max_quantity.map(Into::into)
    }
    async fn unit_amount(&self) -> Decimal {
        self.model().unit_amount.into()
    }
    async fn interval(&self) -> PriceInterval {
        self.model().interval.into()
    }
}

#[derive(SimpleObject)]
pub struct PhaseWindow {
    pub kind: PhaseKind,
    pub start: DateTime<Utc>,
    /// None: the window lasts forever.
    pub end: Option<DateTime<Utc>>,
}

impl From<phase::PhaseWindow> for PhaseWindow {
    fn from(w: phase::PhaseWindow) -> Self {
        PhaseWindow {
            kind: w.kind.into(),
            start: w.start,
            end: w.end,
        }
    }
}

pub struct TierCharge {
    plan: Plan,
    charge: pricing::TierCharge,
}

#[Object]
impl TierCharge {
    async fn rule(&self) -> Option<Price> {
        Price::of_rule(&self.plan, self.charge.rule_id)
    }
    async fn quantity(&self) -> Decimal {
        self.charge.quantity.into()
    }
    async fn unit_amount(&self) -> Decimal {
        self.charge.unit_amount.into()
    }
    async fn amount(&self) -> Decimal {
        self.charge.amount.into()
    }
}

pub struct Quote(quote::Quote, Plan);

#[Object]
impl Quote {
    async fn plan(&self) -> &Plan {
        &self.1
    }
    async fn product(&self) -> Product {
        Product(self.0.product.clone(), self.1.1.clone())
    }
    /// The phase in force at `at` for a customer starting at `billingStart`.
    async fn phase(&self) -> PhaseKind {
        self.0.phase.into()
    }
    async fn phase_window(&self) -> Option<PhaseWindow> {
        self.0.window.map(Into::into)
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn region(&self) -> Option<&str> {
        self.0.region.as_deref()
    }
    async fn quantity(&self) -> Decimal {
        self.0.quantity.into()
    }
    /// False when (part of) the quantity has no price rule and defaulted to zero.
    async fn matched(&self) -> bool {
        self.0.resolution.matched
    }
    /// The unit price of the tier the quantity falls in.
    async fn unit_amount(&self) -> Decimal {
        self.0.resolution.unit_amount.into()
    }
    /// The price of the whole quantity for one interval, unrounded.
    async fn amount(&self) -> Decimal {
        self.0.resolution.amount.into()
    }
    /// `amount` rounded to the currency's minor units, half away from zero.
    async fn amount_rounded(&self) -> Decimal {
        self.0.amount_rounded.into()
    }
    async fn interval(&self) -> Option<PriceInterval> {
        self.0.resolution.interval.map(Into::into)
    }
    /// The rule that matched (the tier the quantity falls in).
    async fn rule(&self) -> Option<Price> {
        self.0
            .resolution
            .rule
            .as_ref()
            .and_then(|r| Price::of_rule(&self.1, r.id))
    }
    /// How the amount is made up: one tier (volume) or each tier touched (graduated).
    async fn tiers(&self) -> Vec<TierCharge> {
        self.0
            .resolution
            .tiers
            .iter()
            .map(|t| TierCharge {
                plan: self.1.clone(),
                charge: t.clone(),
            })
            .collect()
    }
}

pub struct PriceMatrixRow {
    plan: Plan,
    row: quote::MatrixRow,
}

#[Object]
impl PriceMatrixRow {
    async fn product(&self) -> Product {
        Product(self.row.product.clone(), self.plan.1.clone())
    }
    async fn phase(&self) -> PhaseKind {
        self.row.phase.into()
    }
    /// False when no rule prices this product in this phase, currency and region.
    async fn matched(&self) -> bool {
        !self.row.tiers.is_empty()
    }
    /// The tiers in order of their maximum quantity, the unbounded one last.
    async fn tiers(&self) -> Vec<Price> {
        self.row
            .tiers
            .iter()
            .filter_map(|r| Price::of_rule(&self.plan, r.id))
            .collect()
    }
}

pub struct PriceMatrix(quote::PriceMatrix, Plan);

#[Object]
impl PriceMatrix {
    async fn plan(&self) -> &Plan {
        &self.1
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn region(&self) -> Option<&str> {
        self.0.region.as_deref()
    }
    async fn rows(&self) -> Vec<PriceMatrixRow> {
        self.0
            .rows
            .iter()
            .map(|r| PriceMatrixRow {
                plan: self.1.clone(),
                row: r.clone(),
            })
            .collect()
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CatalogGap {
    pub phase: PhaseKind,
    #[graphql(skip)]
    pub product_id: uuid::Uuid,
    pub currency: String,
    /// None: customers without a region.
    pub region: Option<String>,
    /// None: nothing prices this combination; otherwise quantities above this are unpriced.
    pub above_quantity: Option<Decimal>,
    pub reason: String,
    #[graphql(skip)]
    pub catalog: Arc<Catalog>,
}

#[ComplexObject]
impl CatalogGap {
    async fn product(&self) -> Option<Product> {
        self.catalog
            .product(self.product_id)
            .map(|p| Product(p.clone(), self.catalog.clone()))
    }
}

// ---- queries --------------------------------------------------------------------------

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// The catalog's products (archived ones only for admins who ask).
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_archived: bool,
    ) -> async_graphql::Result<Vec<Product>> {
        let cat = ctx.billing()?.catalog();
        let all = include_archived && ctx.principal().is_admin();
        Ok(cat
            .products
            .iter()
            .filter(|p| all || p.archived_at.is_none())
            .map(|p| Product(p.clone(), cat.clone()))
            .collect())
    }

    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = uuid("id", &id)?;
        let cat = ctx.billing()?.catalog();
        Ok(cat.product(id).map(|p| Product(p.clone(), cat.clone())))
    }

    /// The plans the caller may see: admins all, customers the public ones and those offered
    /// to them, anonymous callers the public ones.
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_archived: bool,
    ) -> async_graphql::Result<Vec<Plan>> {
        let cat = ctx.billing()?.catalog();
        let who = ctx.principal();
        Ok(cat
            .plans
            .iter()
            .filter(|p| {
                if who.is_admin() {
                    include_archived || !p.is_archived()
                } else {
                    p.visible_to(who.customer_id())
                }
            })
            .map(|p| Plan(p.clone(), cat.clone()))
            .collect())
    }

    async fn plan(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Plan>> {
        let id = uuid("id", &id)?;
        let billing = ctx.billing()?;
        match billing.visible_plan(&ctx.principal(), id).await {
            Ok(p) => Ok(Some(Plan(p, billing.catalog()))),
            Err(BillingError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).gql(),
        }
    }

    async fn default_plan(&self, ctx: &Context<'_>) -> async_graphql::Result<Plan> {
        let cat = ctx.billing()?.catalog();
        cat.default_plan()
            .map(|p| Plan(p.clone(), cat.clone()))
            .ok_or_else(|| BillingError::not_found("default plan", "(none yet: create a plan)"))
            .gql()
    }

    /// What a quantity of a product costs on a plan, in a currency and region, at a time.
    async fn quote(&self, ctx: &Context<'_>, input: QuoteInput) -> async_graphql::Result<Quote> {
        let billing = ctx.billing()?;
        let req = quote::QuoteRequest {
            plan_id: uuid("planId", &input.plan_id)?,
            product_id: uuid("productId", &input.product_id)?,
            currency: input.currency,
            region: input.region,
            quantity: input
                .quantity
                .map(|q| q.0)
                .unwrap_or(rust_decimal::Decimal::ONE),
            billing_start: input.billing_start,
            at: input.at,
        };
        let q = billing.quote(&ctx.principal(), req).await.gql()?;
        let plan = Plan(q.plan.clone(), billing.catalog());
        Ok(Quote(q, plan))
    }

    /// A plan's phase windows for a customer whose billing starts at `billingStart`.
    async fn phase_timeline(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        billing_start: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<PhaseWindow>> {
        let id = uuid("planId", &plan_id)?;
        let windows = ctx
            .billing()?
            .phase_timeline(&ctx.principal(), id, billing_start)
            .await
            .gql()?;
        Ok(windows.into_iter().map(Into::into).collect())
    }

    /// Every product, phase and tier of a plan in one currency and region, for order forms.
    async fn price_matrix(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        currency: String,
        region: Option<String>,
    ) -> async_graphql::Result<PriceMatrix> {
        let id = uuid("planId", &plan_id)?;
        let billing = ctx.billing()?;
        let m = billing
            .price_matrix(&ctx.principal(), id, &currency, region.as_deref())
            .await
            .gql()?;
        let plan = Plan(m.plan.clone(), billing.catalog());
        Ok(PriceMatrix(m, plan))
    }

    /// Admin: every currency × region × tier combination of a plan that has no price.
    async fn catalog_gaps(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
    ) -> async_graphql::Result<Vec<CatalogGap>> {
        let id = uuid("planId", &plan_id)?;
        let billing = ctx.billing()?;
        let gaps = billing.catalog_gaps(&ctx.principal(), id).await.gql()?;
        let cat = billing.catalog();
        Ok(gaps
            .into_iter()
            .map(|g| CatalogGap {
                phase: g.phase.into(),
                product_id: g.product_id,
                currency: g.currency,
                region: g.region,
                above_quantity: g.above_quantity.map(Into::into),
                reason: g.reason,
                catalog: cat.clone(),
            })
            .collect())
    }
}

// ---- inputs ---------------------------------------------------------------------------

#[derive(InputObject)]
pub struct QuoteInput {
    pub plan_id: ID,
    pub product_id: ID,
    pub currency: String,
    pub region: Option<String>,
    /// Defaults to 1.
    pub quantity: Option<Decimal>,
    /// The customer's billing start; defaults to `at` (a customer starting now).
    pub billing_start: Option<DateTime<Utc>>,
    /// The instant to price at; defaults to now.
    pub at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct CreateProductInput {
    pub name: String,
    pub external_id: Option<String>,
    pub kind: ProductKind,
    pub resource: Option<String>,
    /// Defaults to 1.
    pub unit: Option<Decimal>,
    pub unit_type: String,
    #[graphql(default = false)]
    pub aggregated_usage: bool,
}

#[derive(InputObject)]
pub struct UpdateProductInput {
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub resource: Option<String>,
    pub unit: Option<Decimal>,
    pub unit_type: Option<String>,
    pub aggregated_usage: Option<bool>,
}

#[derive(InputObject)]
pub struct CreatePackageInput {
    pub product_id: ID,
    pub name: String,
    /// CPU cores, a multiple of 0.25.
    pub cpu: Decimal,
    pub memory_mb: i64,
    pub included_storage_gb: Option<Decimal>,
    pub included_bandwidth_gb: Option<Decimal>,
    pub included_backup_storage_gb: Option<Decimal>,
}

#[derive(InputObject)]
pub struct UpdatePackageInput {
    pub name: Option<String>,
    pub cpu: Option<Decimal>,
    pub memory_mb: Option<i64>,
    pub included_storage_gb: Option<Decimal>,
    pub included_bandwidth_gb: Option<Decimal>,
    pub included_backup_storage_gb: Option<Decimal>,
}

#[derive(InputObject)]
pub struct PlanLimitInput {
    pub metric: String,
    pub max: i64,
    #[graphql(default_with = "LimitKind::Count")]
    pub kind: LimitKind,
}

#[derive(InputObject)]
pub struct PhaseDurationInput {
    pub count: i32,
    pub unit: DurationUnit,
}

#[derive(InputObject)]
pub struct PriceInput {
    pub product_id: ID,
    pub currency: String,
    pub region: Option<String>,
    pub max_quantity: Option<Decimal>,
    pub unit_amount: Decimal,
    pub interval: PriceInterval,
}

#[derive(InputObject)]
pub struct PhaseInput {
    pub kind: PhaseKind,
    /// Required for TRIAL and DISCOUNT; FINAL has none.
    pub duration: Option<PhaseDurationInput>,
    #[graphql(default)]
    pub prices: Vec<PriceInput>,
}

#[derive(InputObject)]
pub struct CreatePlanInput {
    pub name: String,
    #[graphql(default)]
    pub description: String,
    #[graphql(default = true)]
    pub public: bool,
    #[graphql(default_with = "TierMode::Volume")]
    pub tier_mode: TierMode,
    /// When MONTH prices are billed; default IN_ADVANCE.
    #[graphql(default_with = "RecurringBilling::InAdvance")]
    pub recurring_billing: RecurringBilling,
    #[graphql(default)]
    pub limits: Vec<PlanLimitInput>,
    pub phases: Vec<PhaseInput>,
    /// Customers a non-public plan is offered to.
    #[graphql(default)]
    pub offered_to: Vec<ID>,
}

#[derive(InputObject)]
pub struct UpdatePlanInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
    pub tier_mode: Option<TierMode>,
    pub recurring_billing: Option<RecurringBilling>,
}

#[derive(InputObject)]
pub struct UpdatePriceInput {
    pub unit_amount: Option<Decimal>,
    pub max_quantity: Option<Decimal>,
    /// Makes the tier unbounded.
    #[graphql(default = false)]
    pub clear_max_quantity: bool,
}

fn duration(d: Option<PhaseDurationInput>) -> async_graphql::Result<Option<phase::PhaseDuration>> {
    d.map(|d| {
        let count = u32::try_from(d.count)
            .map_err(|_| BillingError::invalid("a phase duration must be at least 1"))
            .gql()?;
        Ok(phase::PhaseDuration {
            count,
            unit: d.unit.into(),
        })
    })
    .transpose()
}

fn price(p: PriceInput) -> async_graphql::Result<NewPrice> {
    Ok(NewPrice {
        product_id: uuid("productId", &p.product_id)?,
        currency: p.currency,
        region: p.region,
        max_quantity: p.max_quantity.map(|q| q.0),
        unit_amount: p.unit_amount.0,
        interval: p.interval.into(),
    })
}

fn phase_input(p: PhaseInput) -> async_graphql::Result<NewPhase> {
    Ok(NewPhase {
        kind: p.kind.into(),
        duration: duration(p.duration)?,
        prices: p.prices.into_iter().map(price).collect::<Result<_, _>>()?,
    })
}

fn limit(l: PlanLimitInput) -> NewLimit {
    NewLimit {
        metric: l.metric,
        max_value: l.max,
        kind: l.kind.into(),
    }
}

// ---- mutations ------------------------------------------------------------------------

#[derive(Default)]
pub struct CatalogMutation;

fn plan_out(ctx: &Context<'_>, p: Arc<PlanModel>) -> async_graphql::Result<Plan> {
    Ok(Plan(p, ctx.billing()?.catalog()))
}

#[Object]
impl CatalogMutation {
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<Product> {
        let billing = ctx.billing()?;
        let p = billing
            .create_product(
                &ctx.principal(),
                NewProduct {
                    name: input.name,
                    external_id: input.external_id,
                    kind: input.kind.into(),
                    resource: input.resource,
                    unit: input.unit.map(|u| u.0),
                    unit_type: input.unit_type,
                    aggregated_usage: input.aggregated_usage,
                },
            )
            .await
            .gql()?;
        Ok(Product(p, billing.catalog()))
    }

    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<Product> {
        let billing = ctx.billing()?;
        let changes = ProductChanges {
            name: input.name,
            external_id: input.external_id,
            resource: input.resource,
            unit: input.unit.map(|u| u.0),
            unit_type: input.unit_type,
            aggregated_usage: input.aggregated_usage,
        };
        let p = billing
            .update_product(&ctx.principal(), uuid("id", &id)?, changes)
            .await
            .gql()?;
        Ok(Product(p, billing.catalog()))
    }

    async fn archive_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Product> {
        let billing = ctx.billing()?;
        let p = billing
            .archive_product(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(Product(p, billing.catalog()))
    }

    async fn create_package(
        &self,
        ctx: &Context<'_>,
        input: CreatePackageInput,
    ) -> async_graphql::Result<Package> {
        let billing = ctx.billing()?;
        let zero = rust_decimal::Decimal::ZERO;
        let p = billing
            .create_package(
                &ctx.principal(),
                NewPackage {
                    product_id: uuid("productId", &input.product_id)?,
                    name: input.name,
                    cpu: input.cpu.0,
                    memory_mb: input.memory_mb,
                    included_storage_gb: input.included_storage_gb.map_or(zero, |d| d.0),
                    included_bandwidth_gb: input.included_bandwidth_gb.map_or(zero, |d| d.0),
                    included_backup_storage_gb: input
                        .included_backup_storage_gb
                        .map_or(zero, |d| d.0),
                },
            )
            .await
            .gql()?;
        Ok(Package(p, billing.catalog()))
    }

    async fn update_package(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePackageInput,
    ) -> async_graphql::Result<Package> {
        let billing = ctx.billing()?;
        let changes = PackageChanges {
            name: input.name,
            cpu: input.cpu.map(|d| d.0),
            memory_mb: input.memory_mb,
            included_storage_gb: input.included_storage_gb.map(|d| d.0),
            included_bandwidth_gb: input.included_bandwidth_gb.map(|d| d.0),
            included_backup_storage_gb: input.included_backup_storage_gb.map(|d| d.0),
        };
        let p = billing
            .update_package(&ctx.principal(), uuid("id", &id)?, changes)
            .await
            .gql()?;
        Ok(Package(p, billing.catalog()))
    }

    async fn archive_package(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Package> {
        let billing = ctx.billing()?;
        let p = billing
            .archive_package(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(Package(p, billing.catalog()))
    }

    /// Creates a plan with its limits, phases and prices in one step.
    async fn create_plan(
        &self,
        ctx: &Context<'_>,
        input: CreatePlanInput,
    ) -> async_graphql::Result<Plan> {
        let new = NewPlan {
            name: input.name,
            description: input.description,
            public: input.public,
            tier_mode: input.tier_mode.into(),
            recurring_billing: input.recurring_billing.into(),
            limits: input.limits.into_iter().map(limit).collect(),
            phases: input
                .phases
                .into_iter()
                .map(phase_input)
                .collect::<Result<_, _>>()?,
            offered_to: input
                .offered_to
                .iter()
                .map(|id| uuid("offeredTo", id))
                .collect::<Result<_, _>>()?,
        };
        let p = ctx
            .billing()?
            .create_plan(&ctx.principal(), new)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn update_plan(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePlanInput,
    ) -> async_graphql::Result<Plan> {
        let changes = PlanChanges {
            name: input.name,
            description: input.description,
            public: input.public,
            tier_mode: input.tier_mode.map(Into::into),
            recurring_billing: input.recurring_billing.map(Into::into),
        };
        let p = ctx
            .billing()?
            .update_plan(&ctx.principal(), uuid("id", &id)?, changes)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    /// Makes a plan the default; exactly one plan is the default at all times.
    async fn set_default_plan(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .set_default_plan(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    /// Archived plans accept no new subscriptions; existing ones continue.
    async fn archive_plan(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .archive_plan(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn add_phase(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        input: PhaseInput,
    ) -> async_graphql::Result<Plan> {
        let input = phase_input(input)?;
        let p = ctx
            .billing()?
            .add_phase(&ctx.principal(), uuid("planId", &plan_id)?, input)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn update_phase(
        &self,
        ctx: &Context<'_>,
        id: ID,
        duration: Option<PhaseDurationInput>,
    ) -> async_graphql::Result<Plan> {
        let d = self::duration(duration)?;
        let p = ctx
            .billing()?
            .update_phase(&ctx.principal(), uuid("id", &id)?, d)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn remove_phase(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .remove_phase(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn add_price(
        &self,
        ctx: &Context<'_>,
        phase_id: ID,
        input: PriceInput,
    ) -> async_graphql::Result<Plan> {
        let input = price(input)?;
        let p = ctx
            .billing()?
            .add_price(&ctx.principal(), uuid("phaseId", &phase_id)?, input)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn update_price(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePriceInput,
    ) -> async_graphql::Result<Plan> {
        let changes = PriceChanges {
            unit_amount: input.unit_amount.map(|a| a.0),
            max_quantity: if input.clear_max_quantity {
                Some(None)
            } else {
                input.max_quantity.map(|q| Some(q.0))
            },
        };
        let p = ctx
            .billing()?
            .update_price(&ctx.principal(), uuid("id", &id)?, changes)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn remove_price(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .remove_price(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    /// Sets (or replaces) one limit of a plan.
    async fn set_plan_limit(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        input: PlanLimitInput,
    ) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .set_plan_limit(&ctx.principal(), uuid("planId", &plan_id)?, limit(input))
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn remove_plan_limit(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        metric: String,
    ) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .remove_plan_limit(&ctx.principal(), uuid("planId", &plan_id)?, metric)
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    /// Offers a (non-public) plan to one customer.
    async fn offer_plan(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        customer_id: ID,
    ) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .offer_plan(
                &ctx.principal(),
                uuid("planId", &plan_id)?,
                uuid("customerId", &customer_id)?,
                true,
            )
            .await
            .gql()?;
        plan_out(ctx, p)
    }

    async fn withdraw_plan_offer(
        &self,
        ctx: &Context<'_>,
        plan_id: ID,
        customer_id: ID,
    ) -> async_graphql::Result<Plan> {
        let p = ctx
            .billing()?
            .offer_plan(
                &ctx.principal(),
                uuid("planId", &plan_id)?,
                uuid("customerId", &customer_id)?,
                false,
            )
            .await
            .gql()?;
        plan_out(ctx, p)
    }
}
