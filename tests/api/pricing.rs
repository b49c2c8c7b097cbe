use serde_json::{Value, json};

use crate::helpers::{TestApp, three_phase_plan};

const QUOTE: &str = "query($i: QuoteInput!) { quote(input: $i) { phase phaseWindow { kind start end } matched unitAmount amount amountRounded interval rule { id maxQuantity region } tiers { quantity unitAmount amount } } }";

async fn quote(app: &TestApp, input: Value) -> Value {
    app.anon(QUOTE, json!({ "i": input })).await.ok()["quote"].clone()
}

#[tokio::test]
async fn a_trial_started_seven_days_after_billing_start_has_seven_days_left() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app.create_plan(three_phase_plan("Pro", &container)).await;
    let q = quote(
        &app,
        json!({ "planId": plan, "productId": container, "currency": "USD",
                "billingStart": "2026-01-01T00:00:00Z", "at": "2026-01-08T00:00:00Z" }),
    )
    .await;
    assert_eq!(q["phase"], "TRIAL");
    assert_eq!(q["phaseWindow"]["end"], "2026-01-15T00:00:00+00:00");
    assert_eq!(q["amount"], "0");

    // The boundary instant belongs to the next phase, whose price applies from then on.
    let q = quote(
        &app,
        json!({ "planId": plan, "productId": container, "currency": "USD", "quantity": "3",
                "billingStart": "2026-01-01T00:00:00Z", "at": "2026-01-15T00:00:00Z" }),
    )
    .await;
    assert_eq!(q["phase"], "DISCOUNT");
    assert_eq!(q["amount"], "2.4");
    let q = quote(
        &app,
        json!({ "planId": plan, "productId": container, "currency": "USD",
                "billingStart": "2026-01-01T00:00:00Z", "at": "2026-02-15T00:00:00Z" }),
    )
    .await;
    assert_eq!(q["phase"], "FINAL");
    assert_eq!(q["phaseWindow"]["end"], Value::Null);

    let timeline = app
        .anon(
            "query($p: ID!) { phaseTimeline(planId: $p, billingStart: \"2026-01-31T10:00:00Z\") { kind start end } }",
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        timeline.ok()["phaseTimeline"],
        json!([
            { "kind": "TRIAL", "start": "2026-01-31T10:00:00+00:00", "end": "2026-02-14T10:00:00+00:00" },
            { "kind": "DISCOUNT", "start": "2026-02-14T10:00:00+00:00", "end": "2026-03-14T10:00:00+00:00" },
            { "kind": "FINAL", "start": "2026-03-14T10:00:00+00:00", "end": null },
        ])
    );
}

/// Storage priced in USD: region-less tiers up to 10 / 100 / unbounded, and an `eu` region
/// with a single tier up to 50.
async fn tiered(app: &TestApp, mode: &str) -> (String, String) {
    let storage = app
        .create_product("Storage", "METERED_RESOURCE", Some("storage"))
        .await;
    let p = |max: Option<&str>, amount: &str, region: Option<&str>| json!({ "productId": storage, "currency": "USD", "region": region, "maxQuantity": max, "unitAmount": amount, "interval": "UNIT" });
    let plan = app
        .create_plan(json!({ "name": "Tiered", "tierMode": mode, "phases": [{ "kind": "FINAL", "prices": [
            p(Some("10"), "0.5", None), p(Some("100"), "0.3", None), p(None, "0.1", None), p(Some("50"), "0.7", Some("eu")),
        ] }] }))
        .await;
    (plan, storage)
}

#[tokio::test]
async fn volume_tiers_price_the_whole_quantity_at_its_tier() {
    let app = TestApp::spawn().await;
    let (plan, storage) = tiered(&app, "VOLUME").await;
    let q = |qty: &str, region: Option<&str>| json!({ "planId": plan, "productId": storage, "currency": "usd", "quantity": qty, "region": region });
    let at_10 = quote(&app, q("10", None)).await;
    assert_eq!(
        (at_10["unitAmount"].as_str(), at_10["amount"].as_str()),
        (Some("0.5"), Some("5.0"))
    );
    assert_eq!(at_10["rule"]["maxQuantity"], "10");
    let above = quote(&app, q("10.5", None)).await;
    assert_eq!(above["amount"], "3.15");
    let top = quote(&app, q("1000", None)).await;
    assert_eq!(
        (top["amount"].as_str(), top["rule"]["maxQuantity"].is_null()),
        (Some("100.0"), true)
    );
    let zero = quote(&app, q("0", None)).await;
    assert_eq!(
        (zero["matched"].as_bool(), zero["amount"].as_str()),
        (Some(true), Some("0"))
    );

    // A region with rules of its own uses only those: above its top tier is a hole.
    let eu = quote(&app, q("20", Some("eu"))).await;
    assert_eq!(
        (eu["matched"].as_bool(), eu["rule"]["region"].as_str()),
        (Some(true), Some("eu"))
    );
    let hole = quote(&app, q("60", Some("eu"))).await;
    assert_eq!(
        (hole["matched"].as_bool(), hole["amount"].as_str()),
        (Some(false), Some("0"))
    );
    // An unknown region falls back to the region-less rules.
    let other = quote(&app, q("5", Some("us"))).await;
    assert_eq!(other["amount"], "2.5");
    // No rule in that currency: zero, and the answer says so.
    let eur = quote(
        &app,
        json!({ "planId": plan, "productId": storage, "currency": "EUR", "quantity": "5" }),
    )
    .await;
    assert_eq!(
        (eur["matched"].as_bool(), eur["amount"].as_str()),
        (Some(false), Some("0"))
    );
}

#[tokio::test]
async fn graduated_tiers_price_each_unit_at_its_own_tier() {
    let app = TestApp::spawn().await;
    let (plan, storage) = tiered(&app, "GRADUATED").await;
    let q = quote(
        &app,
        json!({ "planId": plan, "productId": storage, "currency": "USD", "quantity": "150" }),
    )
    .await;
    // 10 × 0.5 + 90 × 0.3 + 50 × 0.1 = 5 + 27 + 5
    assert_eq!(
        q["amount"].as_str().map(|a| a.parse::<f64>().unwrap()),
        Some(37.0)
    );
    assert_eq!(q["amountRounded"], "37.00");
    assert_eq!(q["tiers"].as_array().unwrap().len(), 3);
    assert_eq!(q["rule"]["maxQuantity"], Value::Null);
}

#[tokio::test]
async fn quotes_cost_no_database_round_trip() {
    let app = TestApp::spawn().await;
    let (plan, storage) = tiered(&app, "VOLUME").await;
    let input = json!({ "i": { "planId": plan, "productId": storage, "currency": "USD", "quantity": "42" } });
    app.admin(QUOTE, input.clone()).await.ok();
    for _ in 0..5 {
        let (res, statements) = app.admin_counted(QUOTE, input.clone()).await;
        res.ok();
        assert_eq!(statements, 0);
    }
}

#[tokio::test]
async fn price_matrix_and_catalog_gaps_show_every_tier_and_every_hole() {
    let app = TestApp::spawn().await;
    let (plan, storage) = tiered(&app, "VOLUME").await;
    let m = app
        .anon(
            "query($p: ID!) { priceMatrix(planId: $p, currency: \"USD\", region: \"eu\") { currency region rows { product { id } phase matched tiers { maxQuantity unitAmount region } } } }",
            json!({ "p": plan }),
        )
        .await;
    let rows = m.ok()["priceMatrix"]["rows"].clone();
    assert_eq!(rows[0]["product"]["id"], storage.as_str());
    assert_eq!(
        rows[0]["tiers"],
        json!([{ "maxQuantity": "50", "unitAmount": "0.7", "region": "eu" }])
    );
    let m = app
        .anon(
            "query($p: ID!) { priceMatrix(planId: $p, currency: \"USD\") { rows { tiers { maxQuantity } } } }",
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        m.ok()["priceMatrix"]["rows"][0]["tiers"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let gaps = app
        .admin("query($p: ID!) { catalogGaps(planId: $p) { phase currency region aboveQuantity product { name } } }", json!({ "p": plan }))
        .await;
    assert_eq!(
        gaps.ok()["catalogGaps"],
        json!([{ "phase": "FINAL", "currency": "USD", "region": "eu", "aboveQuantity": "50", "product": { "name": "Storage" } }])
    );
    let forbidden = app
        .anon(
            "query($p: ID!) { catalogGaps(planId: $p) { reason } }",
            json!({ "p": plan }),
        )
        .await;
    forbidden.expect_code("UNAUTHENTICATED");
}
