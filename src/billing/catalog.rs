//! The catalog read model: products, packages and plans with their phases, prices and
//! limits, held in memory as one immutable snapshot.
//!
//! Every read of the catalog (plan pages, price matrices, quotes) is served from the
//! snapshot without a database round trip. Writes go to the database and then replace
//! the snapshot; other processes notice the new `catalog_version` and reload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{package, phase, plan, plan_limit, plan_offer, price, product, setting};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryOrder};
use uuid::Uuid;

use super::codes::{LimitKind, ProductKind, RecurringBilling, parse};
use super::phase::{PhaseDuration, PhaseKind, PhaseSpec};
use super::pricing::{Interval, PriceRule, Resolution, RuleIndex, TierMode, resolve_tiers};

pub const DEFAULT_PLAN_KEY: &str = "default_plan_id";
pub const CATALOG_VERSION_KEY: &str = "catalog_version";

#[derive(Clone, Debug)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub external_id: Option<String>,
    pub kind: ProductKind,
    pub resource: Option<String>,
    pub unit: Decimal,
    pub unit_type: String,
    pub aggregated_usage: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Package {
    pub id: Uuid,
    pub product_id: Uuid,
    pub name: String,
    pub cpu: Decimal,
    pub memory_mb: i64,
    pub included_storage_gb: Decimal,
    pub included_bandwidth_gb: Decimal,
    pub included_backup_storage_gb: Decimal,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Price {
    pub id: Uuid,
    pub phase_id: Uuid,
    pub product_id: Uuid,
    pub currency: String,
    pub region: Option<String>,
    pub max_quantity: Option<Decimal>,
    pub unit_amount: Decimal,
    pub interval: Interval,
}

#[derive(Clone, Debug)]
pub struct Phase {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub kind: PhaseKind,
    pub duration: Option<PhaseDuration>,
    pub prices: Vec<Price>,
}

#[derive(Clone, Debug)]
pub struct PlanLimit {
    pub id: Uuid,
    pub metric: String,
    pub max_value: i64,
    pub kind: LimitKind,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub public: bool,
    pub tier_mode: TierMode,
    pub recurring_billing: RecurringBilling,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In running order: TRIAL, DISCOUNT, FINAL.
    pub phases: Vec<Phase>,
    pub limits: Vec<PlanLimit>,
    /// Customers a non-public plan is offered to.
    pub offered_to: HashSet<Uuid>,
    /// The plan's prices in the pricing engine's shape.
    pub rules: Vec<PriceRule>,
    /// `rules` by phase and product, built with them (see [`Plan::applicable_rules`]).
    rule_index: RuleIndex,
}

impl Plan {
    /// [`pricing::applicable_rules`](super::pricing::applicable_rules) over this plan's
    /// rules, looking only at those of the phase and product.
    pub fn applicable_rules(
        &self,
        phase: PhaseKind,
        product_id: Uuid,
        currency: &str,
        region: Option<&str>,
    ) -> Vec<&PriceRule> {
        self.rule_index
            .applicable(&self.rules, phase, product_id, currency, region)
    }

    /// [`pricing::resolve_price`](super::pricing::resolve_price) over this plan's rules and
    /// tier mode, looking only at the rules of the phase and product.
    pub fn resolve_price(
        &self,
        phase: PhaseKind,
        product_id: Uuid,
        currency: &str,
        region: Option<&str>,
        quantity: Decimal,
    ) -> Resolution {
        let tiers = self.applicable_rules(phase, product_id, currency, region);
        resolve_tiers(&tiers, quantity, self.tier_mode)
    }

    pub fn phase_specs(&self) -> Vec<PhaseSpec> {
        self.phases
            .iter()
            .map(|p| PhaseSpec {
                kind: p.kind,
                duration: p.duration,
            })
            .collect()
    }

    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// Whether a customer (None: an anonymous caller) may see this plan.
    /// A plan is offered in the currencies it has prices in (a plan with no prices at all,
    /// free, in every currency).
    pub fn offers_currency(&self, currency: &str) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|r| r.currency == currency)
    }

    pub fn visible_to(&self, customer: Option<Uuid>) -> bool {
        !self.is_archived()
            && (self.public || customer.is_some_and(|c| self.offered_to.contains(&c)))
    }
}

/// One consistent picture of the whole catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    pub version: String,
    pub products: Vec<Arc<Product>>,
    pub plans: Vec<Arc<Plan>>,
    pub default_plan_id: Option<Uuid>,
    product_index: HashMap<Uuid, usize>,
    plan_index: HashMap<Uuid, usize>,
    packages_by_product: HashMap<Uuid, Vec<Arc<Package>>>,
    package_index: HashMap<Uuid, Arc<Package>>,
}

impl Catalog {
    pub fn product(&self, id: Uuid) -> Option<&Arc<Product>> {
        self.product_index.get(&id).map(|&i| &self.products[i])
    }

    pub fn plan(&self, id: Uuid) -> Option<&Arc<Plan>> {
        self.plan_index.get(&id).map(|&i| &self.plans[i])
    }

    pub fn package(&self, id: Uuid) -> Option<&Arc<Package>> {
        self.package_index.get(&id)
    }

    pub fn packages_of(&self, product_id: Uuid) -> &[Arc<Package>] {
        self.packages_by_product
            .get(&product_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn default_plan(&self) -> Option<&Arc<Plan>> {
        self.default_plan_id.and_then(|id| self.plan(id))
    }

    /// Reads the whole catalog: a fixed number of statements, whatever its size.
    pub async fn load(db: &impl ConnectionTrait) -> Result<Catalog, DbErr> {
        let settings: HashMap<String, String> = setting::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|s| (s.key, s.value))
            .collect();
        let products = product::Entity::find()
            .order_by_asc(product::Column::CreatedAt)
            .order_by_asc(product::Column::Id)
            .all(db)
            .await?;
        let packages = package::Entity::find()
            .order_by_asc(package::Column::CreatedAt)
            .order_by_asc(package::Column::Id)
            .all(db)
            .await?;
        let plans = plan::Entity::find()
            .order_by_asc(plan::Column::CreatedAt)
            .order_by_asc(plan::Column::Id)
            .all(db)
            .await?;
        let limits = plan_limit::Entity::find()
            .order_by_asc(plan_limit::Column::Metric)
            .all(db)
            .await?;
        let phases = phase::Entity::find().all(db).await?;
        let prices = price::Entity::find()
            .order_by_asc(price::Column::Id)
            .all(db)
            .await?;
        let offers = plan_offer::Entity::find().all(db).await?;

        let mut catalog = Catalog {
            version: settings
                .get(CATALOG_VERSION_KEY)
                .cloned()
                .unwrap_or_default(),
            default_plan_id: settings
                .get(DEFAULT_PLAN_KEY)
                .and_then(|v| Uuid::parse_str(v).ok()),
            ..Catalog::default()
        };
        for p in products {
            catalog.product_index.insert(p.id, catalog.products.len());
            catalog.products.push(Arc::new(Product {
                id: p.id,
                name: p.name,
                external_id: p.external_id,
                kind: parse(&p.kind)?,
                resource: p.resource,
                unit: p.unit.0,
                unit_type: p.unit_type,
                aggregated_usage: p.aggregated_usage,
                archived_at: p.archived_at,
                created_at: p.created_at,
            }));
        }
        for p in packages {
            let pkg = Arc::new(Package {
                id: p.id,
                product_id: p.product_id,
                name: p.name,
                cpu: p.cpu.0,
                memory_mb: p.memory_mb,
                included_storage_gb: p.included_storage_gb.0,
                included_bandwidth_gb: p.included_bandwidth_gb.0,
                included_backup_storage_gb: p.included_backup_storage_gb.0,
                archived_at: p.archived_at,
                created_at: p.created_at,
            });
            catalog.package_index.insert(pkg.id, pkg.clone());
            catalog
                .packages_by_product
                .entry(pkg.product_id)
                .or_default()
                .push(pkg);
        }

        let mut prices_by_phase: HashMap<Uuid, Vec<Price>> = HashMap::new();
        for p in prices {
            prices_by_phase.entry(p.phase_id).or_default().push(Price {
                id: p.id,
                phase_id: p.phase_id,
                product_id: p.product_id,
                currency: p.currency,
                region: p.region,
                max_quantity: p.max_quantity.map(|q| q.0),
                unit_amount: p.unit_amount.0,
                interval: parse(&p.interval)?,
            });
        }
        let mut phases_by_plan: HashMap<Uuid, Vec<Phase>> = HashMap::new();
        for p in phases {
            let duration = match (p.duration_count, p.duration_unit.as_deref()) {
                (Some(count), Some(unit)) => Some(PhaseDuration {
                    count: u32::try_from(count).map_err(|_| DbErr::Type("bad duration".into()))?,
                    unit: parse(unit)?,
                }),
                _ => None,
            };
            let mut prices = prices_by_phase.remove(&p.id).unwrap_or_default();
            prices.sort_by(|a, b| {
                (
                    a.product_id,
                    &a.currency,
                    &a.region,
                    a.max_quantity.is_none(),
                    a.max_quantity,
                )
                    .cmp(&(
                        b.product_id,
                        &b.currency,
                        &b.region,
                        b.max_quantity.is_none(),
                        b.max_quantity,
                    ))
            });
            phases_by_plan.entry(p.plan_id).or_default().push(Phase {
                id: p.id,
                plan_id: p.plan_id,
                kind: parse(&p.kind)?,
                duration,
                prices,
            });
        }
        let mut limits_by_plan: HashMap<Uuid, Vec<PlanLimit>> = HashMap::new();
        for l in limits {
            limits_by_plan
                .entry(l.plan_id)
                .or_default()
                .push(PlanLimit {
                    id: l.id,
                    metric: l.metric,
                    max_value: l.max_value,
                    kind: parse(&l.kind)?,
                });
        }
        let mut offers_by_plan: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
        for o in offers {
            offers_by_plan
                .entry(o.plan_id)
                .or_default()
                .insert(o.customer_id);
        }

        for p in plans {
            let mut phases = phases_by_plan.remove(&p.id).unwrap_or_default();
            phases.sort_by_key(|ph| ph.kind);
            let rules = phases
                .iter()
                .flat_map(|ph| {
                    ph.prices.iter().map(|pr| PriceRule {
                        id: pr.id,
                        phase: ph.kind,
                        product_id: pr.product_id,
                        currency: pr.currency.clone(),
                        region: pr.region.clone(),
                        max_quantity: pr.max_quantity,
                        unit_amount: pr.unit_amount,
                        interval: pr.interval,
                    })
                })
                .collect::<Vec<_>>();
            catalog.plan_index.insert(p.id, catalog.plans.len());
            catalog.plans.push(Arc::new(Plan {
                id: p.id,
                name: p.name,
                description: p.description,
                public: p.public,
                tier_mode: parse(&p.tier_mode)?,
                recurring_billing: parse(&p.recurring_billing)?,
                archived_at: p.archived_at,
                created_at: p.created_at,
                updated_at: p.updated_at,
                phases,
                limits: limits_by_plan.remove(&p.id).unwrap_or_default(),
                offered_to: offers_by_plan.remove(&p.id).unwrap_or_default(),
                rule_index: RuleIndex::new(&rules),
                rules,
            }));
        }
        Ok(catalog)
    }
}
