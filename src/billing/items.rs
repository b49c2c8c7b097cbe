//! A subscription's items and its configurations in time.
//!
//! - Named items: PACKAGE products priced in the plan, each optionally with one of its
//!   packages, quantity > 0 (up to 6 decimals). A package brings its included storage,
//!   bandwidth and backup storage, times the quantity.
//! - Default items (nothing named): every PACKAGE product with any price in the plan,
//!   quantity 1 and no package, so they include nothing. They follow the plan: after a plan
//!   change, the new plan's.
//! - A version is a configuration (plan and named items) from an instant on; billing reads
//!   the one in force from the `subscription_version` rows, oldest first.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::subscription_version;
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalog::{Catalog, Plan};
use super::codes::{ProductKind, RecurringBilling};
use super::error::{BillingError, BillingResult};
use super::invoice::{Included, Item, PlanSpan, PlanTerms};
use super::phase::PhaseSpec;
use super::validate;

/// Items a subscription may name at once.
pub const MAX_ITEMS: usize = 100;

/// One item as named by the subscriber (and stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedItem {
    pub product_id: Uuid,
    pub package_id: Option<Uuid>,
    pub quantity: Decimal,
}

/// An item in force, named or default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionItem {
    pub product_id: Uuid,
    pub package_id: Option<Uuid>,
    pub quantity: Decimal,
}

/// Checks named items against the plan and the catalog: PACKAGE products priced in the plan,
/// packages of their product (not archived), quantities above zero with at most 6 decimals,
/// each product and package named once.
pub fn validate_items(
    catalog: &Catalog,
    plan: &Plan,
    items: &[NamedItem],
) -> BillingResult<Vec<NamedItem>> {
    if items.is_empty() {
        return Err(BillingError::invalid(
            "items: name at least one item, or leave items out for the plan's default items",
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(BillingError::invalid(format!(
            "items: at most {MAX_ITEMS} items"
        )));
    }
    let mut out: Vec<NamedItem> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("items[{i}]");
        let product = catalog
            .product(item.product_id)
            .ok_or_else(|| BillingError::invalid(format!("{field}.productId: no such product")))?;
        if product.kind != ProductKind::Package {
            return Err(BillingError::invalid(format!(
                "{field}.productId: {} is a metered product; only PACKAGE products are items",
                product.name
            )));
        }
        if !plan.rules.iter().any(|r| r.product_id == product.id) {
            return Err(BillingError::invalid(format!(
                "{field}.productId: {} has no price in plan {}",
                product.name, plan.name
            )));
        }
        if let Some(package_id) = item.package_id {
            let belongs = catalog
                .packages_of(product.id)
                .iter()
                .any(|p| p.id == package_id && p.archived_at.is_none());
            if !belongs {
                return Err(BillingError::invalid(format!(
                    "{field}.packageId: not a package of {}",
                    product.name
                )));
            }
        }
        let quantity = validate::quantity(&format!("{field}.quantity"), item.quantity)?;
        if quantity <= Decimal::ZERO {
            return Err(BillingError::invalid(format!(
                "{field}.quantity must be above zero"
            )));
        }
        if out
            .iter()
            .any(|o| o.product_id == item.product_id && o.package_id == item.package_id)
        {
            return Err(BillingError::invalid(format!(
                "{field}: the same product and package are named twice; give one quantity"
            )));
        }
        out.push(NamedItem {
            product_id: item.product_id,
            package_id: item.package_id,
            quantity: quantity.normalize(),
        });
    }
    Ok(out)
}

/// The items in force: the named ones, or the plan's default items.
pub fn items_in_force(
    catalog: &Catalog,
    plan: &Plan,
    named: Option<&[NamedItem]>,
) -> Vec<SubscriptionItem> {
    match named {
        Some(named) => named
            .iter()
            .map(|n| SubscriptionItem {
                product_id: n.product_id,
                package_id: n.package_id,
                quantity: n.quantity,
            })
            .collect(),
        None => catalog
            .products
            .iter()
            .filter(|p| {
                p.kind == ProductKind::Package && plan.rules.iter().any(|r| r.product_id == p.id)
            })
            .map(|p| SubscriptionItem {
                product_id: p.id,
                package_id: None,
                quantity: Decimal::ONE,
            })
            .collect(),
    }
}

/// The items as the invoice arithmetic takes them: included amounts times the quantity.
pub fn billing_items(catalog: &Catalog, items: &[SubscriptionItem]) -> Vec<Item> {
    items
        .iter()
        .map(|i| {
            let included = i
                .package_id
                .and_then(|id| {
                    catalog
                        .packages_of(i.product_id)
                        .iter()
                        .find(|p| p.id == id)
                        .cloned()
                })
                .map(|p| Included {
                    storage_gb: p.included_storage_gb.saturating_mul(i.quantity),
                    bandwidth_gb: p.included_bandwidth_gb.saturating_mul(i.quantity),
                    backup_storage_gb: p.included_backup_storage_gb.saturating_mul(i.quantity),
                })
                .unwrap_or_default();
            Item {
                product_id: i.product_id,
                quantity: i.quantity,
                included,
            }
        })
        .collect()
}

/// A stored configuration from `from` on.
#[derive(Clone, Debug)]
pub struct Version {
    pub from: DateTime<Utc>,
    pub plan_id: Uuid,
    pub items: Option<Vec<NamedItem>>,
}

impl Version {
    fn from_model(m: subscription_version::Model) -> BillingResult<Version> {
        let items = m
            .items
            .as_deref()
            .map(serde_json::from_str::<Vec<NamedItem>>)
            .transpose()
            .map_err(|e| {
                BillingError::InvalidState(format!("stored items of {} unreadable: {e}", m.id))
            })?;
        Ok(Version {
            from: m.valid_from,
            plan_id: m.plan_id,
            items,
        })
    }
}

/// The versions of many subscriptions, oldest first, in one query.
pub async fn versions_of(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> BillingResult<HashMap<Uuid, Vec<Version>>> {
    let mut out: HashMap<Uuid, Vec<Version>> = HashMap::new();
    for m in subscription_version::Entity::find()
        .filter(subscription_version::Column::SubscriptionId.is_in(ids))
        .order_by_asc(subscription_version::Column::ValidFrom)
        .order_by_asc(subscription_version::Column::Id)
        .all(db)
        .await?
    {
        out.entry(m.subscription_id)
            .or_default()
            .push(Version::from_model(m)?);
    }
    Ok(out)
}

/// Records a configuration in force from `from` on.
pub async fn write_version(
    db: &impl ConnectionTrait,
    subscription_id: Uuid,
    from: DateTime<Utc>,
    plan_id: Uuid,
    items: Option<&[NamedItem]>,
) -> BillingResult<()> {
    let items = items
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| BillingError::InvalidState(format!("items: {e}")))?;
    subscription_version::Entity::insert(subscription_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        subscription_id: Set(subscription_id),
        valid_from: Set(from),
        plan_id: Set(plan_id),
        items: Set(items),
        created_at: Set(from),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

impl super::Billing {
    /// The items in force of many subscriptions (for DataLoaders): their latest version's.
    pub async fn items_of_subscriptions(
        &self,
        ids: &[Uuid],
    ) -> BillingResult<HashMap<Uuid, Vec<SubscriptionItem>>> {
        let versions = versions_of(self.db.conn(), ids.iter().copied()).await?;
        let catalog = self
            .catalog_with(
                versions
                    .values()
                    .filter_map(|l| l.last())
                    .map(|v| v.plan_id),
            )
            .await?;
        let mut out = HashMap::new();
        for (id, list) in versions {
            let Some(latest) = list.last() else { continue };
            let Some(plan) = catalog.plan(latest.plan_id) else {
                continue;
            };
            out.insert(id, items_in_force(&catalog, plan, latest.items.as_deref()));
        }
        Ok(out)
    }
}

/// A configuration with everything the invoice arithmetic borrows from it.
#[derive(Clone, Debug)]
pub struct Config {
    pub from: DateTime<Utc>,
    pub plan: Arc<Plan>,
    pub named: Option<Vec<NamedItem>>,
    pub specs: Vec<PhaseSpec>,
    pub items: Vec<Item>,
}

impl Config {
    pub fn new(
        catalog: &Catalog,
        from: DateTime<Utc>,
        plan: Arc<Plan>,
        named: Option<Vec<NamedItem>>,
    ) -> Config {
        let items = billing_items(catalog, &items_in_force(catalog, &plan, named.as_deref()));
        Config {
            from,
            specs: plan.phase_specs(),
            plan,
            named,
            items,
        }
    }

    /// The configurations of a subscription's versions (those whose plan still exists).
    pub fn of_versions(catalog: &Catalog, versions: &[Version]) -> Vec<Config> {
        versions
            .iter()
            .filter_map(|v| {
                let plan = catalog.plan(v.plan_id)?.clone();
                Some(Config::new(catalog, v.from, plan, v.items.clone()))
            })
            .collect()
    }

    pub fn span(&self) -> PlanSpan<'_> {
        PlanSpan {
            from: self.from,
            terms: PlanTerms {
                phases: &self.specs,
                rules: &self.plan.rules,
                tier_mode: self.plan.tier_mode,
            },
            items: Some(&self.items),
            advance: self.plan.recurring_billing == RecurringBilling::InAdvance,
        }
    }
}
