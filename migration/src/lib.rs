//! Schema migrations: one file per step, never edited once landed.
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_product_table;
mod m20261122_000002_create_plan_tables;
mod m20261122_000003_create_customer_table;
mod m20261122_000004_create_api_key_table;
mod m20261122_000005_create_subscription_tables;
mod m20261122_000006_create_usage_and_invoice_tables;
mod m20261122_000007_create_subscription_phase_table;
mod m20261201_000008_schedule_the_billing_clock;
mod m20261201_000009_sandbox_state;
mod m20261201_000010_checkout_purpose_and_refunds;
mod m20261201_000011_name_service_keys;
mod m20261201_000012_items_timing_and_credits;
mod m20261201_000013_outbound_webhooks;
mod m20261201_000014_invoice_numbers;
mod m20261201_000015_clock_scan_order;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_product_table::Migration),
            Box::new(m20261122_000002_create_plan_tables::Migration),
            Box::new(m20261122_000003_create_customer_table::Migration),
            Box::new(m20261122_000004_create_api_key_table::Migration),
            Box::new(m20261122_000005_create_subscription_tables::Migration),
            Box::new(m20261122_000006_create_usage_and_invoice_tables::Migration),
            Box::new(m20261122_000007_create_subscription_phase_table::Migration),
            Box::new(m20261201_000008_schedule_the_billing_clock::Migration),
            Box::new(m20261201_000009_sandbox_state::Migration),
            Box::new(m20261201_000010_checkout_purpose_and_refunds::Migration),
            Box::new(m20261201_000011_name_service_keys::Migration),
            Box::new(m20261201_000012_items_timing_and_credits::Migration),
            Box::new(m20261201_000013_outbound_webhooks::Migration),
            Box::new(m20261201_000014_invoice_numbers::Migration),
            Box::new(m20261201_000015_clock_scan_order::Migration),
        ]
    }
}
