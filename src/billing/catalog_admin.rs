//! Changes to the catalog: products, packages, plans, phases, prices, limits and offers.
//!
//! Every change runs in one transaction that also checks the whole plan it touches
//! (phase order, tiers, intervals) and stamps a new catalog version; an invalid result is
//! rolled back, so nothing is ever half-written.

use std::sync::Arc;

use entity::{
    Dec, package, phase, plan, plan_limit, plan_offer, price, product, setting, subscription,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::{CATALOG_VERSION_KEY, DEFAULT_PLAN_KEY, Package, Plan, Product};
use super::codes::{Code, LimitKind, ProductKind, RecurringBilling, parse};
use super::error::{BillingError, BillingResult};
use super::phase::{PhaseDuration, PhaseKind, PhaseSpec, validate_phases};
use super::pricing::{Interval, PriceRule, TierMode, validate_tiers};
use super::validate;

#[derive(Clone, Debug)]
pub struct NewProduct {
    pub name: String,
    pub external_id: Option<String>,
    pub kind: ProductKind,
    pub resource: Option<String>,
    pub unit: Option<Decimal>,
    pub unit_type: String,
    pub aggregated_usage: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub resource: Option<String>,
    pub unit: Option<Decimal>,
    pub unit_type: Option<String>,
    pub aggregated_usage: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct NewPackage {
    pub product_id: Uuid,
    pub name: String,
    pub cpu: Decimal,
    pub memory_mb: i64,
    pub included_storage_gb: Decimal,
    pub included_bandwidth_gb: Decimal,
    pub included_backup_storage_gb: Decimal,
}

#[derive(Clone, Debug, Default)]
pub struct PackageChanges {
    pub name: Option<String>,
    pub cpu: Option<Decimal>,
    pub memory_mb: Option<i64>,
    pub included_storage_gb: Option<Decimal>,
    pub included_bandwidth_gb: Option<Decimal>,
    pub included_backup_storage_gb: Option<Decimal>,
}

#[derive(Clone, Debug)]
pub struct NewPrice {
    pub product_id: Uuid,
    pub currency: String,
    pub region: Option<String>,
    pub max_quantity: Option<Decimal>,
    pub unit_amount: Decimal,
    pub interval: Interval,
}

#[derive(Clone, Debug, Default)]
pub struct PriceChanges {
    pub unit_amount: Option<Decimal>,
    /// Some(None) removes the tier bound.
    pub max_quantity: Option<Option<Decimal>>,
}

#[derive(Clone, Debug)]
pub struct NewPhase {
    pub kind: PhaseKind,
    pub duration: Option<PhaseDuration>,
    pub prices: Vec<NewPrice>,
}

#[derive(Clone, Debug)]
pub struct NewLimit {
    pub metric: String,
    pub max_value: i64,
    pub kind: LimitKind,
}

#[derive(Clone, Debug)]
pub struct NewPlan {
    pub name: String,
    pub description: String,
    pub public: bool,
    pub tier_mode: TierMode,
    pub recurring_billing: RecurringBilling,
    pub limits: Vec<NewLimit>,
    pub phases: Vec<NewPhase>,
    pub offered_to: Vec<Uuid>,
}

#[derive(Clone, Debug, Default)]
pub struct PlanChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
    pub tier_mode: Option<TierMode>,
    pub recurring_billing: Option<RecurringBilling>,
}

pub async fn stored_version(db: &impl ConnectionTrait) -> Result<String, DbErr> {
    Ok(setting::Entity::find_by_id(CATALOG_VERSION_KEY.to_owned())
        .one(db)
        .await?
        .map(|s| s.value)
        .unwrap_or_default())
}

async fn put_setting(db: &impl ConnectionTrait, key: &str, value: String) -> Result<(), DbErr> {
    setting::Entity::insert(setting::ActiveModel {
        key: Set(key.to_owned()),
        value: Set(value),
    })
    .on_conflict(
        OnConflict::column(setting::Column::Key)
            .update_column(setting::Column::Value)
            .to_owned(),
    )
    .exec(db)
    .await?;
    Ok(())
}

fn metric_name(metric: &str) -> BillingResult<String> {
    let m = validate::text("limit metric", metric, 64)?;
    if !m
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(BillingError::invalid(format!(
            "limit metric {m:?} may use only letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(m)
}

fn check_limit(l: &NewLimit) -> BillingResult<String> {
    if l.max_value < 0 {
        return Err(BillingError::invalid(format!(
            "limit {} must not be negative",
            l.metric
        )));
    }
    metric_name(&l.metric)
}

fn check_duration(kind: PhaseKind, d: Option<PhaseDuration>) -> BillingResult<()> {
    if let Some(d) = d
        && d.count > 100_000
    {
        return Err(BillingError::invalid(format!(
            "phase {kind} duration is too long"
        )));
    }
    Ok(())
}

impl Billing {
    /// Stamps a new catalog version inside the writing transaction.
    async fn touch_catalog(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        put_setting(db, CATALOG_VERSION_KEY, Uuid::now_v7().to_string()).await
    }

    fn product_of(&self, id: Uuid) -> BillingResult<Arc<Product>> {
        self.catalog()
            .product(id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("product", id))
    }

    fn plan_of(&self, id: Uuid) -> BillingResult<Arc<Plan>> {
        self.catalog()
            .plan(id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("plan", id))
    }

    // ---- products -------------------------------------------------------------------

    pub async fn create_product(
        &self,
        who: &Principal,
        input: NewProduct,
    ) -> BillingResult<Arc<Product>> {
        who.require_admin()?;
        let name = validate::text("name", &input.name, 200)?;
        let external_id = validate::optional_text("externalId", input.external_id.as_deref(), 200)?;
        let resource = validate::optional_text("resource", input.resource.as_deref(), 64)?
            .map(|r| r.to_ascii_lowercase());
        if input.kind == ProductKind::MeteredResource && resource.is_none() {
            return Err(BillingError::invalid(
                "a METERED_RESOURCE product needs its resource (bandwidth, storage, …)",
            ));
        }
        if input.kind == ProductKind::Package && resource.is_some() {
            return Err(BillingError::invalid(
                "resource applies only to METERED_RESOURCE products",
            ));
        }
        if input.aggregated_usage && input.kind != ProductKind::MeteredResource {
            return Err(BillingError::invalid(
                "aggregatedUsage applies only to METERED_RESOURCE products",
            ));
        }
        let unit = input.unit.unwrap_or(Decimal::ONE);
        if unit <= Decimal::ZERO {
            return Err(BillingError::invalid("unit must be positive"));
        }
        validate::quantity("unit", unit)?;
        let unit_type = validate::text("unitType", &input.unit_type, 16)?.to_ascii_uppercase();
        if let Some(ext) = &external_id
            && self
                .catalog()
                .products
                .iter()
                .any(|p| p.external_id.as_ref() == Some(ext))
        {
            return Err(BillingError::Conflict(format!(
                "a product with externalId {ext:?} already exists"
            )));
        }
        let id = Uuid::now_v7();
        let txn = self.db.write().await?;
        product::ActiveModel {
            id: Set(id),
            name: Set(name),
            external_id: Set(external_id),
            kind: Set(input.kind.code().to_owned()),
            resource: Set(resource),
            unit: Set(Dec(unit)),
            unit_type: Set(unit_type),
            aggregated_usage: Set(input.aggregated_usage),
            archived_at: Set(None),
            created_at: Set(self.clock.now()),
        }
        .insert(&*txn)
        .await
        .map_err(unique_conflict(
            "a product with this externalId already exists",
        ))?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.product_of(id)
    }

    pub async fn update_product(
        &self,
        who: &Principal,
        id: Uuid,
        changes: ProductChanges,
    ) -> BillingResult<Arc<Product>> {
        who.require_admin()?;
        let current = self.product_of(id)?;
        let txn = self.db.write().await?;
        let mut am = product::ActiveModel {
            id: Set(id),
            ..Default::default()
        };
        if let Some(name) = changes.name {
            am.name = Set(validate::text("name", &name, 200)?);
        }
        if let Some(ext) = changes.external_id {
            am.external_id = Set(validate::optional_text("externalId", Some(&ext), 200)?);
        }
        if let Some(resource) = changes.resource {
            if current.kind != ProductKind::MeteredResource {
                return Err(BillingError::invalid(
                    "resource applies only to METERED_RESOURCE products",
                ));
            }
            am.resource = Set(Some(
                validate::text("resource", &resource, 64)?.to_ascii_lowercase(),
            ));
        }
        if let Some(unit) = changes.unit {
            if unit <= Decimal::ZERO {
                return Err(BillingError::invalid("unit must be positive"));
            }
            am.unit = Set(Dec(validate::quantity("unit", unit)?));
        }
        if let Some(unit_type) = changes.unit_type {
            am.unit_type = Set(validate::text("unitType", &unit_type, 16)?.to_ascii_uppercase());
        }
        if let Some(agg) = changes.aggregated_usage {
            if agg && current.kind != ProductKind::MeteredResource {
                return Err(BillingError::invalid(
                    "aggregatedUsage applies only to METERED_RESOURCE products",
                ));
            }
            am.aggregated_usage = Set(agg);
        }
        am.update(&*txn).await.map_err(unique_conflict(
            "a product with this externalId already exists",
        ))?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.product_of(id)
    }

    /// Archived products accept no new prices or packages; existing prices keep working.
    pub async fn archive_product(&self, who: &Principal, id: Uuid) -> BillingResult<Arc<Product>> {
        who.require_admin()?;
        let current = self.product_of(id)?;
        if current.archived_at.is_some() {
            return Ok(current);
        }
        let txn = self.db.write().await?;
        product::ActiveModel {
            id: Set(id),
            archived_at: Set(Some(self.clock.now())),
            ..Default::default()
        }
        .update(&*txn)
        .await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.product_of(id)
    }

    // ---- packages -------------------------------------------------------------------

    pub async fn create_package(
        &self,
        who: &Principal,
        input: NewPackage,
    ) -> BillingResult<Arc<Package>> {
        who.require_admin()?;
        let product = self.product_of(input.product_id)?;
        if product.kind != ProductKind::Package {
            return Err(BillingError::invalid(format!(
                "product {} is a METERED_RESOURCE; packages belong to PACKAGE products",
                product.id
            )));
        }
        if product.archived_at.is_some() {
            return Err(BillingError::invalid(format!(
                "product {} is archived",
                product.id
            )));
        }
        let name = validate::text("name", &input.name, 200)?;
        let cpu = validate::cpu(input.cpu)?;
        if input.memory_mb <= 0 {
            return Err(BillingError::invalid("memoryMb must be positive"));
        }
        let id = Uuid::now_v7();
        let txn = self.db.write().await?;
        package::ActiveModel {
            id: Set(id),
            product_id: Set(product.id),
            name: Set(name),
            cpu: Set(Dec(cpu)),
            memory_mb: Set(input.memory_mb),
            included_storage_gb: Set(Dec(validate::quantity(
                "includedStorageGb",
                input.included_storage_gb,
            )?)),
            included_bandwidth_gb: Set(Dec(validate::quantity(
                "includedBandwidthGb",
                input.included_bandwidth_gb,
            )?)),
            included_backup_storage_gb: Set(Dec(validate::quantity(
                "includedBackupStorageGb",
                input.included_backup_storage_gb,
            )?)),
            archived_at: Set(None),
            created_at: Set(self.clock.now()),
        }
        .insert(&*txn)
        .await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.package_of(id)
    }

    fn package_of(&self, id: Uuid) -> BillingResult<Arc<Package>> {
        self.catalog()
            .package(id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("package", id))
    }

    pub async fn update_package(
        &self,
        who: &Principal,
        id: Uuid,
        changes: PackageChanges,
    ) -> BillingResult<Arc<Package>> {
        who.require_admin()?;
        self.package_of(id)?;
        let mut am = package::ActiveModel {
            id: Set(id),
            ..Default::default()
        };
        if let Some(name) = changes.name {
            am.name = Set(validate::text("name", &name, 200)?);
        }
        if let Some(cpu) = changes.cpu {
            am.cpu = Set(Dec(validate::cpu(cpu)?));
        }
        if let Some(mem) = changes.memory_mb {
            if mem <= 0 {
                return Err(BillingError::invalid("memoryMb must be positive"));
            }
            am.memory_mb = Set(mem);
        }
        if let Some(v) = changes.included_storage_gb {
            am.included_storage_gb = Set(Dec(validate::quantity("includedStorageGb", v)?));
        }
        if let Some(v) = changes.included_bandwidth_gb {
            am.included_bandwidth_gb = Set(Dec(validate::quantity("includedBandwidthGb", v)?));
        }
        if let Some(v) = changes.included_backup_storage_gb {
            am.included_backup_storage_gb =
                Set(Dec(validate::quantity("includedBackupStorageGb", v)?));
        }
        let txn = self.db.write().await?;
        am.update(&*txn).await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.package_of(id)
    }

    pub async fn archive_package(&self, who: &Principal, id: Uuid) -> BillingResult<Arc<Package>> {
        who.require_admin()?;
        let current = self.package_of(id)?;
        if current.archived_at.is_some() {
            return Ok(current);
        }
        let txn = self.db.write().await?;
        package::ActiveModel {
            id: Set(id),
            archived_at: Set(Some(self.clock.now())),
            ..Default::default()
        }
        .update(&*txn)
        .await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.package_of(id)
    }

    // ---- plans ----------------------------------------------------------------------

    pub async fn create_plan(&self, who: &Principal, input: NewPlan) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let name = validate::text("name", &input.name, 200)?;
        let description = validate::description("description", &input.description)?;
        let specs: Vec<PhaseSpec> = input
            .phases
            .iter()
            .map(|p| PhaseSpec {
                kind: p.kind,
                duration: p.duration,
            })
            .collect();
        validate_phases(&specs).map_err(|e| BillingError::invalid(e.to_string()))?;
        let plan_id = Uuid::now_v7();
        let now = self.clock.now();
        let txn = self.db.write().await?;
        plan::ActiveModel {
            id: Set(plan_id),
            name: Set(name),
            description: Set(description),
            public: Set(input.public),
            tier_mode: Set(input.tier_mode.code().to_owned()),
            recurring_billing: Set(input.recurring_billing.code().to_owned()),
            archived_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        for limit in &input.limits {
            self.write_limit(&*txn, plan_id, limit).await?;
        }
        for phase in &input.phases {
            self.write_phase(&*txn, plan_id, phase).await?;
        }
        for customer in &input.offered_to {
            self.write_offer(&*txn, plan_id, *customer).await?;
        }
        self.check_plan(&*txn, plan_id).await?;
        // The first plan becomes the default, so that there always is one.
        if self.catalog().default_plan_id.is_none() {
            put_setting(&*txn, DEFAULT_PLAN_KEY, plan_id.to_string()).await?;
        }
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.plan_of(plan_id)
    }

    pub async fn update_plan(
        &self,
        who: &Principal,
        id: Uuid,
        changes: PlanChanges,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        self.plan_of(id)?;
        let mut am = plan::ActiveModel {
            id: Set(id),
            updated_at: Set(self.clock.now()),
            ..Default::default()
        };
        if let Some(name) = changes.name {
            am.name = Set(validate::text("name", &name, 200)?);
        }
        if let Some(d) = changes.description {
            am.description = Set(validate::description("description", &d)?);
        }
        if let Some(p) = changes.public {
            am.public = Set(p);
        }
        if let Some(b) = changes.recurring_billing {
            am.recurring_billing = Set(b.code().to_owned());
        }
        if let Some(m) = changes.tier_mode {
            am.tier_mode = Set(m.code().to_owned());
        }
        let txn = self.db.write().await?;
        am.update(&*txn).await?;
        self.finish_plan_write(txn, id).await
    }

    /// Makes `id` the default plan. The default is one stored value, so exactly one plan
    /// is the default at every instant, whatever races with it.
    pub async fn set_default_plan(&self, who: &Principal, id: Uuid) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let plan = self.plan_of(id)?;
        if plan.is_archived() {
            return Err(BillingError::PlanArchived(id));
        }
        let txn = self.db.write().await?;
        // Re-read under the transaction: the plan may have been archived meanwhile.
        let row = plan::Entity::find_by_id(id)
            .one(&*txn)
            .await?
            .ok_or_else(|| BillingError::not_found("plan", id))?;
        if row.archived_at.is_some() {
            return Err(BillingError::PlanArchived(id));
        }
        put_setting(&*txn, DEFAULT_PLAN_KEY, id.to_string()).await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.plan_of(id)
    }

    /// Archived plans accept no new subscriptions; existing ones continue.
    pub async fn archive_plan(&self, who: &Principal, id: Uuid) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let plan = self.plan_of(id)?;
        if plan.is_archived() {
            return Ok(plan);
        }
        let txn = self.db.write().await?;
        let default = setting::Entity::find_by_id(DEFAULT_PLAN_KEY.to_owned())
            .one(&*txn)
            .await?
            .map(|s| s.value);
        if default.as_deref() == Some(id.to_string().as_str()) {
            return Err(BillingError::DefaultPlanArchive);
        }
        let now = self.clock.now();
        plan::ActiveModel {
            id: Set(id),
            archived_at: Set(Some(now)),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(&*txn)
        .await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        self.plan_of(id)
    }

    pub async fn add_phase(
        &self,
        who: &Principal,
        plan_id: Uuid,
        input: NewPhase,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        self.plan_of(plan_id)?;
        let txn = self.db.write().await?;
        self.write_phase(&*txn, plan_id, &input).await?;
        self.finish_plan_write(txn, plan_id).await
    }

    pub async fn update_phase(
        &self,
        who: &Principal,
        phase_id: Uuid,
        duration: Option<PhaseDuration>,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let (plan, phase) = self.phase_of(phase_id)?;
        check_duration(phase.kind, duration)?;
        let am = phase::ActiveModel {
            id: Set(phase_id),
            duration_count: Set(duration.map(|d| d.count as i32)),
            duration_unit: Set(duration.map(|d| d.unit.code().to_owned())),
            ..Default::default()
        };
        let txn = self.db.write().await?;
        am.update(&*txn).await?;
        self.finish_plan_write(txn, plan.id).await
    }

    pub async fn remove_phase(&self, who: &Principal, phase_id: Uuid) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let (plan, _) = self.phase_of(phase_id)?;
        let txn = self.db.write().await?;
        price::Entity::delete_many()
            .filter(price::Column::PhaseId.eq(phase_id))
            .exec(&*txn)
            .await?;
        phase::Entity::delete_by_id(phase_id).exec(&*txn).await?;
        self.finish_plan_write(txn, plan.id).await
    }

    pub async fn add_price(
        &self,
        who: &Principal,
        phase_id: Uuid,
        input: NewPrice,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let (plan, _) = self.phase_of(phase_id)?;
        let txn = self.db.write().await?;
        self.write_price(&*txn, phase_id, &input).await?;
        self.finish_plan_write(txn, plan.id).await
    }

    pub async fn update_price(
        &self,
        who: &Principal,
        price_id: Uuid,
        changes: PriceChanges,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let plan_id = self.plan_of_price(price_id)?;
        let mut am = price::ActiveModel {
            id: Set(price_id),
            ..Default::default()
        };
        if let Some(a) = changes.unit_amount {
            am.unit_amount = Set(Dec(validate::amount("unitAmount", a)?));
        }
        if let Some(q) = changes.max_quantity {
            am.max_quantity = Set(q
                .map(|q| validate::quantity("maxQuantity", q))
                .transpose()?
                .map(Dec));
        }
        let txn = self.db.write().await?;
        am.update(&*txn).await?;
        self.finish_plan_write(txn, plan_id).await
    }

    pub async fn remove_price(&self, who: &Principal, price_id: Uuid) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        let plan_id = self.plan_of_price(price_id)?;
        let txn = self.db.write().await?;
        price::Entity::delete_by_id(price_id).exec(&*txn).await?;
        self.finish_plan_write(txn, plan_id).await
    }

    pub async fn set_plan_limit(
        &self,
        who: &Principal,
        plan_id: Uuid,
        limit: NewLimit,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        self.plan_of(plan_id)?;
        let metric = check_limit(&limit)?;
        let txn = self.db.write().await?;
        plan_limit::Entity::delete_many()
            .filter(plan_limit::Column::PlanId.eq(plan_id))
            .filter(plan_limit::Column::Metric.eq(metric.as_str()))
            .exec(&*txn)
            .await?;
        self.write_limit(&*txn, plan_id, &limit).await?;
        self.finish_plan_write(txn, plan_id).await
    }

    pub async fn remove_plan_limit(
        &self,
        who: &Principal,
        plan_id: Uuid,
        metric: String,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        self.plan_of(plan_id)?;
        let txn = self.db.write().await?;
        plan_limit::Entity::delete_many()
            .filter(plan_limit::Column::PlanId.eq(plan_id))
            .filter(plan_limit::Column::Metric.eq(metric.as_str()))
            .exec(&*txn)
            .await?;
        self.finish_plan_write(txn, plan_id).await
    }

    pub async fn offer_plan(
        &self,
        who: &Principal,
        plan_id: Uuid,
        customer_id: Uuid,
        offered: bool,
    ) -> BillingResult<Arc<Plan>> {
        who.require_admin()?;
        self.plan_of(plan_id)?;
        self.customer_model(customer_id).await?;
        let txn = self.db.write().await?;
        plan_offer::Entity::delete_many()
            .filter(plan_offer::Column::PlanId.eq(plan_id))
            .filter(plan_offer::Column::CustomerId.eq(customer_id))
            .exec(&*txn)
            .await?;
        if offered {
            self.write_offer(&*txn, plan_id, customer_id).await?;
        }
        self.finish_plan_write(txn, plan_id).await
    }

    /// The plan a price belongs to.
    fn plan_of_price(&self, price_id: Uuid) -> BillingResult<Uuid> {
        self.catalog()
            .plans
            .iter()
            .find(|p| p.rules.iter().any(|r| r.id == price_id))
            .map(|p| p.id)
            .ok_or_else(|| BillingError::not_found("price", price_id))
    }

    fn phase_of(&self, phase_id: Uuid) -> BillingResult<(Arc<Plan>, super::catalog::Phase)> {
        let catalog = self.catalog();
        catalog
            .plans
            .iter()
            .find_map(|p| {
                p.phases
                    .iter()
                    .find(|ph| ph.id == phase_id)
                    .map(|ph| (p.clone(), ph.clone()))
            })
            .ok_or_else(|| BillingError::not_found("phase", phase_id))
    }

    /// Finishes one change to a plan: checks the whole plan as the transaction sees it,
    /// stamps it, commits and publishes the new catalog.
    async fn finish_plan_write(
        &self,
        txn: super::db::WriteTxn<'_>,
        plan_id: Uuid,
    ) -> BillingResult<Arc<Plan>> {
        self.check_plan(&*txn, plan_id).await?;
        plan::ActiveModel {
            id: Set(plan_id),
            updated_at: Set(self.clock.now()),
            ..Default::default()
        }
        .update(&*txn)
        .await?;
        self.touch_catalog(&*txn).await?;
        txn.commit().await?;
        self.reload_catalog().await?;
        // After the reload, so that the clock re-reads the phases from the new catalog.
        {
            let _slot = self.db.writer_slot().await;
            super::schedule::reschedule(self.db.conn(), subscription::Column::PlanId.eq(plan_id))
                .await?;
        }
        self.plan_of(plan_id)
    }

    async fn write_limit(
        &self,
        db: &impl ConnectionTrait,
        plan_id: Uuid,
        limit: &NewLimit,
    ) -> BillingResult<()> {
        let metric = check_limit(limit)?;
        plan_limit::ActiveModel {
            id: Set(Uuid::now_v7()),
            plan_id: Set(plan_id),
            metric: Set(metric),
            max_value: Set(limit.max_value),
            kind: Set(limit.kind.code().to_owned()),
        }
        .insert(db)
        .await
        .map_err(unique_conflict(
            "the plan already has a limit on this metric",
        ))?;
        Ok(())
    }

    async fn write_offer(
        &self,
        db: &impl ConnectionTrait,
        plan_id: Uuid,
        customer_id: Uuid,
    ) -> BillingResult<()> {
        plan_offer::ActiveModel {
            plan_id: Set(plan_id),
            customer_id: Set(customer_id),
        }
        .insert(db)
        .await
        .map_err(unique_conflict(
            "the plan is already offered to this customer",
        ))?;
        Ok(())
    }

    async fn write_phase(
        &self,
        db: &impl ConnectionTrait,
        plan_id: Uuid,
        input: &NewPhase,
    ) -> BillingResult<()> {
        check_duration(input.kind, input.duration)?;
        let phase_id = Uuid::now_v7();
        phase::ActiveModel {
            id: Set(phase_id),
            plan_id: Set(plan_id),
            kind: Set(input.kind.code().to_owned()),
            duration_count: Set(input.duration.map(|d| d.count as i32)),
            duration_unit: Set(input.duration.map(|d| d.unit.code().to_owned())),
        }
        .insert(db)
        .await
        .map_err(unique_conflict(format!(
            "the plan already has a {} phase",
            input.kind
        )))?;
        for p in &input.prices {
            self.write_price(db, phase_id, p).await?;
        }
        Ok(())
    }

    async fn write_price(
        &self,
        db: &impl ConnectionTrait,
        phase_id: Uuid,
        input: &NewPrice,
    ) -> BillingResult<()> {
        let product = self.product_of(input.product_id)?;
        if product.archived_at.is_some() {
            return Err(BillingError::invalid(format!(
                "product {} is archived",
                product.id
            )));
        }
        match (product.kind, input.interval) {
            (ProductKind::Package, Interval::Hour | Interval::Month) => {}
            (ProductKind::MeteredResource, Interval::Unit) => {}
            (ProductKind::Package, Interval::Unit) => {
                return Err(BillingError::invalid(format!(
                    "product {:?} is a PACKAGE: its prices are per HOUR or per MONTH",
                    product.name
                )));
            }
            (ProductKind::MeteredResource, _) => {
                return Err(BillingError::invalid(format!(
                    "product {:?} is metered: its prices are per UNIT of recorded usage",
                    product.name
                )));
            }
        }
        price::ActiveModel {
            id: Set(Uuid::now_v7()),
            phase_id: Set(phase_id),
            product_id: Set(product.id),
            currency: Set(validate::currency("currency", &input.currency)?),
            region: Set(validate::region(input.region.as_deref())?),
            max_quantity: Set(input
                .max_quantity
                .map(|q| validate::quantity("maxQuantity", q))
                .transpose()?
                .map(Dec)),
            unit_amount: Set(Dec(validate::amount("unitAmount", input.unit_amount)?)),
            interval: Set(input.interval.code().to_owned()),
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// Checks a plan as the transaction sees it: phases in order, tiers without duplicates.
    async fn check_plan(&self, db: &impl ConnectionTrait, plan_id: Uuid) -> BillingResult<()> {
        let phases = phase::Entity::find()
            .filter(phase::Column::PlanId.eq(plan_id))
            .all(db)
            .await?;
        let mut specs = Vec::with_capacity(phases.len());
        for p in &phases {
            specs.push((
                PhaseSpec {
                    kind: parse(&p.kind)?,
                    duration: match (p.duration_count, p.duration_unit.as_deref()) {
                        (Some(c), Some(u)) => Some(PhaseDuration {
                            count: u32::try_from(c).unwrap_or(0),
                            unit: parse(u)?,
                        }),
                        _ => None,
                    },
                },
                p.id,
            ));
        }
        // Stored rows have no order of their own: check them in running order (input order
        // is checked before anything is written).
        let mut sorted: Vec<PhaseSpec> = specs.iter().map(|(s, _)| *s).collect();
        sorted.sort_by_key(|s| s.kind);
        validate_phases(&sorted).map_err(|e| BillingError::invalid(e.to_string()))?;
        let phase_ids: Vec<Uuid> = phases.iter().map(|p| p.id).collect();
        let prices = price::Entity::find()
            .filter(price::Column::PhaseId.is_in(phase_ids))
            .all(db)
            .await?;
        let mut rules = Vec::with_capacity(prices.len());
        for p in prices {
            let kind = specs
                .iter()
                .find(|(_, id)| *id == p.phase_id)
                .map(|(s, _)| s.kind)
                .unwrap_or(PhaseKind::Final);
            rules.push(PriceRule {
                id: p.id,
                phase: kind,
                product_id: p.product_id,
                currency: p.currency,
                region: p.region,
                max_quantity: p.max_quantity.map(|q| q.0),
                unit_amount: p.unit_amount.0,
                interval: parse(&p.interval)?,
            });
        }
        let mode = plan::Entity::find_by_id(plan_id)
            .one(db)
            .await?
            .map(|p| parse(&p.tier_mode))
            .transpose()?
            .unwrap_or(TierMode::Volume);
        validate_tiers(&rules, mode).map_err(BillingError::invalid)
    }
}

/// Maps a unique-constraint violation to a CONFLICT with a readable message.
pub(crate) fn unique_conflict(msg: impl Into<String>) -> impl FnOnce(DbErr) -> BillingError {
    let msg = msg.into();
    move |e| match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => BillingError::Conflict(msg),
        _ => BillingError::Db(e),
    }
}
