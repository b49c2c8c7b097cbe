use sea_orm_migration::sea_orm::{ConnectionTrait, Statement, Value};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Subscriptions with items, prices billed in advance or in arrears, proration and credits.
///
/// - `subscription_version`: what a subscription was configured with (plan and named items)
///   from which instant on; billing reads the configuration in force from it. Existing
///   subscriptions get one version per plan they were on, from their PLAN_CHANGED events.
/// - `plan.recurring_billing`: `IN_ADVANCE` (the default) or `IN_ARREARS`.
/// - Invoices are keyed per subscription (`period-3`, `change-…`, `final`) instead of one
///   per period; they record the credit set against them and the amount left to collect.
///   Invoices issued before this migration keep their lines (PREPAID included) and their
///   key becomes `legacy-<period>`. The period such a subscription is in had nothing billed
///   in advance, so all of its lines are billed at its end (`subscription.legacy_period`).
/// - `credit_entry`: the customer's append-only credit ledger; `customer.credit_balance` is
///   its running balance.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Plan::Table)
                    .add_column(string(Plan::RecurringBilling).default("IN_ADVANCE"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SubscriptionVersion::Table)
                    .col(uuid(SubscriptionVersion::Id).primary_key())
                    .col(uuid(SubscriptionVersion::SubscriptionId))
                    .col(timestamp_with_time_zone(SubscriptionVersion::ValidFrom))
                    .col(uuid(SubscriptionVersion::PlanId))
                    .col(text_null(SubscriptionVersion::Items))
                    .col(timestamp_with_time_zone(SubscriptionVersion::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("subscription_version_sub_idx")
                    .table(SubscriptionVersion::Table)
                    .col(SubscriptionVersion::SubscriptionId)
                    .col(SubscriptionVersion::ValidFrom)
                    .to_owned(),
            )
            .await?;
        for mut col in [
            integer(Subscription::NextBoundary).default(0).to_owned(),
            integer_null(Subscription::LegacyPeriod),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Subscription::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        for mut col in [
            string(Invoice::InvoiceKey).default("").to_owned(),
            string(Invoice::Kind).default("PERIOD").to_owned(),
            text(Invoice::CreditApplied).default("0").to_owned(),
            text(Invoice::AmountDue).default("0").to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Invoice::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(InvoiceLine::Table)
                    .add_column(text_null(InvoiceLine::Tiers))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Checkout::Table)
                    .add_column(text_null(Checkout::Change))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Customer::Table)
                    .add_column(text(Customer::CreditBalance).default("0"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CreditEntry::Table)
                    .col(uuid(CreditEntry::Id).primary_key())
                    .col(uuid(CreditEntry::CustomerId))
                    .col(uuid_null(CreditEntry::SubscriptionId))
                    .col(uuid_null(CreditEntry::InvoiceId))
                    .col(text(CreditEntry::Amount))
                    .col(text(CreditEntry::BalanceAfter))
                    .col(string(CreditEntry::Currency))
                    .col(string(CreditEntry::Reason))
                    .col(timestamp_with_time_zone(CreditEntry::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credit_entry_customer_idx")
                    .table(CreditEntry::Table)
                    .col(CreditEntry::CustomerId)
                    .col(CreditEntry::CreatedAt)
                    .to_owned(),
            )
            .await?;

        // Existing invoices: legacy keys, nothing credited, the whole total to collect.
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE invoice SET invoice_key = 'legacy-' || CAST(period_index AS TEXT), \
             amount_due = total, credit_applied = '0'",
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("invoice_period_uniq")
                    .table(Invoice::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("invoice_key_uniq")
                    .table(Invoice::Table)
                    .col(Invoice::SubscriptionId)
                    .col(Invoice::InvoiceKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Subscriptions that were already billed the old way: the period they are in is
        // billed whole at its end, then the next boundary bills in advance.
        db.execute_unprepared(
            "UPDATE subscription SET \
               legacy_period = (SELECT COUNT(*) FROM invoice i WHERE i.subscription_id = subscription.id), \
               next_boundary = (SELECT COUNT(*) FROM invoice i WHERE i.subscription_id = subscription.id) + 1 \
             WHERE started_at IS NOT NULL",
        )
        .await?;
        backfill_versions(db).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CreditEntry::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SubscriptionVersion::Table).to_owned())
            .await
    }
}

/// One version per plan a subscription was on: its first plan from its start (or creation),
/// then one per PLAN_CHANGED event.
async fn backfill_versions(db: &SchemaManagerConnection<'_>) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let subs = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, plan_id, started_at, created_at FROM subscription",
        ))
        .await?;
    for row in subs {
        let id: uuid::Uuid = row.try_get("", "id")?;
        let plan_id: uuid::Uuid = row.try_get("", "plan_id")?;
        let started: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "started_at")?;
        let created: chrono::DateTime<chrono::Utc> = row.try_get("", "created_at")?;
        let changes = db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm_migration::sea_orm::DatabaseBackend::Postgres => {
                        "SELECT data, created_at FROM event WHERE subscription_id = $1 \
                         AND kind = 'PLAN_CHANGED' ORDER BY seq"
                    }
                    _ => {
                        "SELECT data, created_at FROM event WHERE subscription_id = ? \
                         AND kind = 'PLAN_CHANGED' ORDER BY seq"
                    }
                },
                [Value::from(id)],
            ))
            .await?;
        let mut versions: Vec<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> = Vec::new();
        let plan_of = |data: &str, key: &str| {
            serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v[key].as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()))
        };
        let first = changes
            .first()
            .and_then(|r| r.try_get::<String>("", "data").ok())
            .and_then(|d| plan_of(&d, "from"))
            .unwrap_or(plan_id);
        versions.push((started.unwrap_or(created), first));
        for r in &changes {
            let data: String = r.try_get("", "data")?;
            let at: chrono::DateTime<chrono::Utc> = r.try_get("", "created_at")?;
            if let Some(to) = plan_of(&data, "to") {
                versions.push((at, to));
            }
        }
        for (at, plan) in versions {
            let insert = Query::insert()
                .into_table(SubscriptionVersion::Table)
                .columns([
                    SubscriptionVersion::Id,
                    SubscriptionVersion::SubscriptionId,
                    SubscriptionVersion::ValidFrom,
                    SubscriptionVersion::PlanId,
                    SubscriptionVersion::CreatedAt,
                ])
                .values_panic([
                    uuid::Uuid::now_v7().into(),
                    id.into(),
                    at.into(),
                    plan.into(),
                    at.into(),
                ])
                .to_owned();
            db.execute(&insert).await?;
        }
    }
    Ok(())
}

#[derive(DeriveIden)]
enum Plan {
    Table,
    RecurringBilling,
}

#[derive(DeriveIden)]
enum SubscriptionVersion {
    Table,
    Id,
    SubscriptionId,
    ValidFrom,
    PlanId,
    Items,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Subscription {
    Table,
    NextBoundary,
    LegacyPeriod,
}

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)]
enum Invoice {
    Table,
    SubscriptionId,
    InvoiceKey,
    Kind,
    CreditApplied,
    AmountDue,
}

#[derive(DeriveIden)]
enum InvoiceLine {
    Table,
    Tiers,
}

#[derive(DeriveIden)]
enum Checkout {
    Table,
    Change,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    CreditBalance,
}

#[derive(DeriveIden)]
enum CreditEntry {
    Table,
    Id,
    CustomerId,
    SubscriptionId,
    InvoiceId,
    Amount,
    BalanceAfter,
    Currency,
    Reason,
    CreatedAt,
}
