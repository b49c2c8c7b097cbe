//! Data from before items and advance billing: invoices with PREPAID lines stay readable,
//! and the period a subscription was in is billed whole at its end.

use chrono::{DateTime, TimeDelta, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Alias, Query};
use sea_orm::{ConnectionTrait, Database, Value as DbValue};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, TestDb};

fn insert(table: &str, values: Vec<(&str, DbValue)>) -> sea_orm::sea_query::InsertStatement {
    let mut q = Query::insert();
    q.into_table(Alias::new(table))
        .columns(values.iter().map(|(c, _)| Alias::new(*c)))
        .values_panic(values.into_iter().map(|(_, v)| v.into()));
    q
}

#[tokio::test]
async fn old_prepaid_invoices_stay_readable_and_the_open_period_is_billed_at_its_end() {
    let db = TestDb::new().await;
    let conn = Database::connect(db.url.as_str()).await.unwrap();
    // The schema as it was before this change (migrations 1–11).
    Migrator::up(&conn, Some(11)).await.unwrap();
    let start: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
    let (product, plan, phase, price) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let (customer, sub, invoice) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let t = |d: DateTime<Utc>| DbValue::from(d);
    let s = |v: &str| DbValue::from(v.to_owned());
    for stmt in [
        insert(
            "product",
            vec![
                ("id", product.into()),
                ("name", s("Container")),
                ("external_id", s("container")),
                ("kind", s("PACKAGE")),
                ("resource", DbValue::String(None)),
                ("unit", s("1")),
                ("unit_type", s("CORE")),
                ("aggregated_usage", false.into()),
                ("archived_at", DbValue::ChronoDateTimeUtc(None)),
                ("created_at", t(start)),
            ],
        ),
        insert(
            "plan",
            vec![
                ("id", plan.into()),
                ("name", s("Old")),
                ("description", s("")),
                ("public", true.into()),
                ("tier_mode", s("VOLUME")),
                ("archived_at", DbValue::ChronoDateTimeUtc(None)),
                ("created_at", t(start)),
                ("updated_at", t(start)),
            ],
        ),
        insert(
            "phase",
            vec![
                ("id", phase.into()),
                ("plan_id", plan.into()),
                ("kind", s("FINAL")),
                ("duration_count", DbValue::Int(None)),
                ("duration_unit", DbValue::String(None)),
            ],
        ),
        insert(
            "price",
            vec![
                ("id", price.into()),
                ("phase_id", phase.into()),
                ("product_id", product.into()),
                ("currency", s("USD")),
                ("region", DbValue::String(None)),
                ("max_quantity", DbValue::String(None)),
                ("unit_amount", s("10")),
                ("interval", s("MONTH")),
            ],
        ),
        insert(
            "customer",
            vec![
                ("id", customer.into()),
                ("external_id", s("old-1")),
                ("name", s("Old Customer")),
                ("email", s("old@example.com")),
                ("currency", s("USD")),
                ("billing_start", t(start)),
                ("search_text", s("old customer")),
                ("created_at", t(start)),
                ("updated_at", t(start)),
            ],
        ),
        insert(
            "subscription",
            vec![
                ("id", sub.into()),
                ("customer_id", customer.into()),
                ("plan_id", plan.into()),
                ("provider", s("sandbox")),
                ("status", s("ACTIVE")),
                ("started_at", t(start)),
                ("cancel_at_period_end", false.into()),
                ("canceled_at", DbValue::ChronoDateTimeUtc(None)),
                ("next_billing_at", t(start + TimeDelta::days(59))),
                ("created_at", t(start)),
                ("updated_at", t(start)),
            ],
        ),
        // Period 0 was billed at its end, the checkout's month set against it.
        insert(
            "invoice",
            vec![
                ("id", invoice.into()),
                ("subscription_id", sub.into()),
                ("customer_id", customer.into()),
                ("period_index", 0.into()),
                ("period_start", t(start)),
                ("period_end", t(start + TimeDelta::days(31))),
                ("currency", s("USD")),
                ("total", s("0.00")),
                ("status", s("PAID")),
                ("attempts", 0.into()),
                ("next_attempt_at", DbValue::ChronoDateTimeUtc(None)),
                ("payment_ref", DbValue::String(None)),
                ("created_at", t(start + TimeDelta::days(31))),
                ("updated_at", t(start + TimeDelta::days(31))),
            ],
        ),
        insert(
            "invoice_line",
            vec![
                ("id", Uuid::now_v7().into()),
                ("invoice_id", invoice.into()),
                ("position", 0.into()),
                ("kind", s("RECURRING")),
                ("product_id", product.into()),
                ("phase", s("FINAL")),
                ("start", t(start)),
                ("end", t(start + TimeDelta::days(31))),
                ("quantity", s("1")),
                ("unit_amount", s("10")),
                ("amount", s("10.00")),
                ("matched", true.into()),
            ],
        ),
        insert(
            "invoice_line",
            vec![
                ("id", Uuid::now_v7().into()),
                ("invoice_id", invoice.into()),
                ("position", 1.into()),
                ("kind", s("PREPAID")),
                ("product_id", product.into()),
                ("phase", s("FINAL")),
                ("start", t(start)),
                ("end", t(start + TimeDelta::days(31))),
                ("quantity", s("1")),
                ("unit_amount", s("-10.00")),
                ("amount", s("-10.00")),
                ("matched", true.into()),
            ],
        ),
    ] {
        conn.execute(&stmt).await.unwrap();
    }
    drop(conn);

    // The server migrates the rest of the way on start.
    let app = TestApp::spawn_on(db, |_| {}, Vec::new()).await;
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": start + TimeDelta::days(40) }),
    )
    .await
    .ok();
    const INVOICES: &str = "query($c: ID!) { invoices(customerId: $c) { edges { node { kind total amountDue status periodStart lines { kind amount start } } } } }";
    let res = app.admin(INVOICES, json!({ "c": customer })).await;
    assert_eq!(
        res.ok()["invoices"]["edges"][0]["node"],
        json!({ "kind": "PERIOD", "total": "0.00", "amountDue": "0.00", "status": "PAID", "periodStart": "2027-01-01T00:00:00+00:00",
                "lines": [{ "kind": "RECURRING", "amount": "10.00", "start": "2027-01-01T00:00:00+00:00" },
                          { "kind": "PREPAID", "amount": "-10.00", "start": "2027-01-01T00:00:00+00:00" }] })
    );
    let items = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { items { productName quantity } } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        items.ok()["subscription"]["items"],
        json!([{ "productName": "Container", "quantity": "1" }])
    );

    // March 1 ends February (period 1, never billed in advance): all of it then, and
    // March in advance.
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": "2027-03-01T00:00:00Z" }),
    )
    .await
    .ok();
    let res = app.admin(INVOICES, json!({ "c": customer })).await;
    let edges = res.ok()["invoices"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert_eq!(
        edges[1]["node"]["lines"],
        json!([{ "kind": "RECURRING", "amount": "10.00", "start": "2027-02-01T00:00:00+00:00" },
               { "kind": "RECURRING", "amount": "10.00", "start": "2027-03-01T00:00:00+00:00" }])
    );
    assert_eq!(edges[1]["node"]["total"], "20.00");
}
