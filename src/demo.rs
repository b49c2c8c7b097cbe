//! `billing demo`: a demo catalog built from the seeds' examples.

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::billing::catalog_admin::{
    NewLimit, NewPackage, NewPhase, NewPlan, NewPrice, NewProduct,
};
use crate::billing::codes::{LimitKind, ProductKind};
use crate::billing::phase::{DurationUnit, PhaseDuration, PhaseKind};
use crate::billing::pricing::{Interval, TierMode};
use crate::billing::{Billing, BillingResult, Principal};

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

fn price(
    product: Uuid,
    currency: &str,
    region: Option<&str>,
    max: Option<&str>,
    amount: &str,
    interval: Interval,
) -> NewPrice {
    NewPrice {
        product_id: product,
        currency: currency.into(),
        region: region.map(Into::into),
        max_quantity: max.map(d),
        unit_amount: d(amount),
        interval,
    }
}

/// Loads the demo catalog; running it again on the same database changes nothing.
pub async fn load(billing: &Billing) -> BillingResult<()> {
    let admin = Principal::Admin;
    if billing
        .catalog()
        .products
        .iter()
        .any(|p| p.external_id.as_deref() == Some("demo-container"))
    {
        return Ok(());
    }
    let metered = |name: &str, ext: &str, resource: &str, aggregated: bool| NewProduct {
        name: name.into(),
        external_id: Some(ext.into()),
        kind: ProductKind::MeteredResource,
        resource: Some(resource.into()),
        unit: None,
        unit_type: "GB".into(),
        aggregated_usage: aggregated,
    };
    let container = billing
        .create_product(
            &admin,
            NewProduct {
                name: "Container".into(),
                external_id: Some("demo-container".into()),
                kind: ProductKind::Package,
                resource: None,
                unit: None,
                unit_type: "CORE".into(),
                aggregated_usage: false,
            },
        )
        .await?;
    billing
        .create_package(
            &admin,
            NewPackage {
                product_id: container.id,
                name: "Small container (1 core, 1 GB)".into(),
                cpu: d("1"),
                memory_mb: 1024,
                included_storage_gb: d("10"),
                included_bandwidth_gb: d("100"),
                included_backup_storage_gb: d("5"),
            },
        )
        .await?;
    let bandwidth = billing
        .create_product(
            &admin,
            metered("Bandwidth", "demo-bandwidth", "bandwidth", true),
        )
        .await?;
    let storage = billing
        .create_product(&admin, metered("Storage", "demo-storage", "storage", false))
        .await?;

    let free = NewPlan {
        name: "Free".into(),
        description: "Up to 3 computations, no card needed.".into(),
        public: true,
        tier_mode: TierMode::Volume,
        recurring_billing: Default::default(),
        limits: vec![
            NewLimit {
                metric: "computations".into(),
                max_value: 3,
                kind: LimitKind::Count,
            },
            NewLimit {
                metric: "users".into(),
                max_value: 2,
                kind: LimitKind::Count,
            },
        ],
        phases: vec![NewPhase {
            kind: PhaseKind::Final,
            duration: None,
            prices: ["USD", "EUR"]
                .iter()
                .flat_map(|c| {
                    [
                        price(container.id, c, None, None, "0", Interval::Month),
                        price(bandwidth.id, c, None, None, "0", Interval::Unit),
                        price(storage.id, c, None, None, "0", Interval::Unit),
                    ]
                })
                .collect(),
        }],
        offered_to: vec![],
    };
    let free = billing.create_plan(&admin, free).await?;

    // Final-phase prices; the discount phase takes 20% off, the trial is free.
    let phase_prices = |factor: &str| -> Vec<NewPrice> {
        let f = d(factor);
        let mut out = Vec::new();
        for (currency, region, hourly, bw_small, bw_large, gb) in [
            ("USD", None, "0.0125", "0.09", "0.05", "0.10"),
            ("USD", Some("eu-west"), "0.0140", "0.10", "0.06", "0.12"),
            ("EUR", None, "0.0115", "0.08", "0.045", "0.09"),
            ("EUR", Some("eu-west"), "0.0130", "0.09", "0.05", "0.11"),
        ] {
            let amount = |a: &str| (d(a) * f).normalize().to_string();
            out.push(price(
                container.id,
                currency,
                region,
                None,
                &amount(hourly),
                Interval::Hour,
            ));
            out.push(price(
                bandwidth.id,
                currency,
                region,
                Some("1000"),
                &amount(bw_small),
                Interval::Unit,
            ));
            out.push(price(
                bandwidth.id,
                currency,
                region,
                None,
                &amount(bw_large),
                Interval::Unit,
            ));
            out.push(price(
                storage.id,
                currency,
                region,
                None,
                &amount(gb),
                Interval::Unit,
            ));
        }
        out
    };
    let pro = NewPlan {
        name: "Pro".into(),
        description: "14-day free trial, then 3 months at 20% off.".into(),
        public: true,
        tier_mode: TierMode::Graduated,
        recurring_billing: Default::default(),
        limits: vec![
            NewLimit {
                metric: "computations".into(),
                max_value: 100,
                kind: LimitKind::Count,
            },
            NewLimit {
                metric: "users".into(),
                max_value: 25,
                kind: LimitKind::Count,
            },
        ],
        phases: vec![
            NewPhase {
                kind: PhaseKind::Trial,
                duration: Some(PhaseDuration {
                    count: 14,
                    unit: DurationUnit::Day,
                }),
                prices: phase_prices("0"),
            },
            NewPhase {
                kind: PhaseKind::Discount,
                duration: Some(PhaseDuration {
                    count: 3,
                    unit: DurationUnit::Month,
                }),
                prices: phase_prices("0.8"),
            },
            NewPhase {
                kind: PhaseKind::Final,
                duration: None,
                prices: phase_prices("1"),
            },
        ],
        offered_to: vec![],
    };
    billing.create_plan(&admin, pro).await?;
    billing.set_default_plan(&admin, free.id).await?;
    Ok(())
}
