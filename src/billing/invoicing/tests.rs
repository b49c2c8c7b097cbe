//! The billing clock's batch reads as SQLite plans them on the migrated schema: each batch
//! is one range of an index, never a sort of every due row (which made a run over N due
//! rows read N²/500 of them).

use chrono::Utc;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, QueryTrait, Statement};
use uuid::Uuid;

use super::clock::due_subscriptions;
use super::collect::due_invoices;
use crate::billing::Db;
use crate::billing::codes::SubscriptionStatus;

async fn query_plan(db: &Db, query: Statement) -> String {
    let explain = Statement::from_sql_and_values(
        db.backend(),
        format!("EXPLAIN QUERY PLAN {}", query.sql),
        query.values.map(|v| v.0).unwrap_or_default(),
    );
    db.conn()
        .query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "detail").unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn each_batch_the_clock_reads_is_one_index_range_without_a_sort() {
    let db = Db::connect("sqlite::memory:", 1).await.unwrap();
    Migrator::up(db.conn(), None).await.unwrap();
    let now = Utc::now();
    for (what, index, query) in [
        (
            "due subscriptions",
            "subscription_clock_scan_idx",
            due_subscriptions(SubscriptionStatus::Active, now, Some((now, Uuid::nil())))
                .build(db.backend()),
        ),
        (
            "due invoices",
            "invoice_collection_scan_idx",
            due_invoices(now, Some((Some(now), Uuid::nil()))).build(db.backend()),
        ),
    ] {
        let plan = query_plan(&db, query).await;
        assert!(plan.contains(index), "{what}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{what}: {plan}");
    }
}
