//! Items, billing in advance or in arrears, changes mid-period and credit, through the real
//! server with the test clock.

use serde_json::{Value, json};

use crate::helpers::{TestApp, advance, utc};
use crate::subscriptions::{event_kinds, pay, subscribe_input};

const GOOD_CARD: &str = "4242424242424242";

/// A container product with packages Small (100 GB bandwidth) and Large (500 GB), and a
/// bandwidth meter.
struct Catalog {
    container: String,
    small: String,
    large: String,
    bandwidth: String,
}

async fn catalog(app: &TestApp) -> Catalog {
    let container = app.create_product("Container", "PACKAGE", None).await;
    let package = |name: &str, gb: &str| {
        let container = container.clone();
        let (name, gb) = (name.to_owned(), gb.to_owned());
        async move {
            app.admin(
                "mutation($p: ID!, $n: String!, $g: Decimal!) { createPackage(input: { productId: $p, name: $n, cpu: \"1\", memoryMb: 1024, includedBandwidthGb: $g }) { id } }",
                json!({ "p": container, "n": name, "g": gb }),
            )
            .await
            .ok()["createPackage"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let small = package("Small", "100").await;
    let large = package("Large", "500").await;
    let bandwidth = app
        .create_product("Bandwidth", "METERED_RESOURCE", Some("bandwidth"))
        .await;
    Catalog {
        container,
        small,
        large,
        bandwidth,
    }
}

/// A plan at `monthly` per container per month and 0.10 per GB of bandwidth.
async fn plan(app: &TestApp, c: &Catalog, name: &str, monthly: &str, timing: &str) -> String {
    app.create_plan(json!({ "name": name, "recurringBilling": timing, "phases": [{ "kind": "FINAL", "prices": [
        { "productId": c.container, "currency": "USD", "unitAmount": monthly, "interval": "MONTH" },
        { "productId": c.bandwidth, "currency": "USD", "unitAmount": "0.10", "interval": "UNIT" } ] }] }))
        .await
}

const SUBSCRIBE: &str = "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) {
    subscription { id status items { productName packageName quantity } } checkout { url amount } } }";

const CHANGE: &str = "subscription { id plan { name } items { packageName quantity } }
    invoice { kind status total amountDue creditApplied lines { kind amount start end quantity } }
    checkout { url amount }";

/// Subscribes with `items` and pays the checkout with a good card.
async fn subscribed(
    app: &TestApp,
    customer: &str,
    plan: &str,
    items: Value,
) -> (String, String, Value) {
    let token = app.customer_token(customer).await;
    let mut input = subscribe_input(customer, plan, None);
    input["i"]["items"] = items;
    let res = app.gql_as(Some(&token), SUBSCRIBE, input).await;
    let out = res.ok()["createSubscription"].clone();
    if let Some(url) = out["checkout"]["url"].as_str() {
        pay(app, url, GOOD_CARD).await;
    }
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    (token, sub, out)
}

async fn invoices(app: &TestApp, customer: &str) -> Vec<Value> {
    let res = app
        .admin(
            "query($c: ID!) { invoices(customerId: $c, first: 100) { edges { node { kind status total amountDue creditApplied periodStart
               lines { kind amount quantity start end product { name } tiers { quantity unitAmount amount } } } } } }",
            json!({ "c": customer }),
        )
        .await;
    res.ok()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn credit(app: &TestApp, customer: &str) -> Value {
    app.admin(
        "query($c: ID!) { customer(id: $c) { creditBalance creditEntries { amount balanceAfter reason } } }",
        json!({ "c": customer }),
    )
    .await
    .ok()["customer"]
        .clone()
}

fn kinds_and_amounts(invoice: &Value) -> Vec<(String, String)> {
    invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn items_name_packages_and_quantities_and_bad_items_change_nothing() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let pro = plan(&app, &c, "Pro", "10", "IN_ADVANCE").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;

    let try_items = |items: Value| {
        let mut input = subscribe_input(&customer, &pro, None);
        input["i"]["items"] = items;
        app.gql_as(Some(&token), SUBSCRIBE, input)
    };
    let other = app.create_product("Other", "PACKAGE", None).await;
    for bad in [
        json!([{ "productId": c.bandwidth, "quantity": "1" }]),
        json!([{ "productId": other, "quantity": "1" }]),
        json!([{ "productId": c.container, "packageId": c.bandwidth, "quantity": "1" }]),
        json!([{ "productId": c.container, "quantity": "0" }]),
        json!([{ "productId": c.container, "quantity": "1.0000001" }]),
        json!([{ "productId": c.container, "packageId": c.small, "quantity": "1" },
               { "productId": c.container, "packageId": c.small, "quantity": "2" }]),
        json!([]),
    ] {
        try_items(bad.clone()).await.expect_code("BAD_USER_INPUT");
    }
    assert!(
        event_kinds(&app, &customer).await.is_empty(),
        "nothing written"
    );

    // Two Small containers and one Large: 3 × 10 a month at checkout.
    let res = try_items(json!([
        { "productId": c.container, "packageId": c.small, "quantity": "2" },
        { "productId": c.container, "packageId": c.large, "quantity": "1" },
    ]))
    .await;
    let out = &res.ok()["createSubscription"];
    assert_eq!(
        out["subscription"]["items"],
        json!([
            { "productName": "Container", "packageName": "Small", "quantity": "2" },
            { "productName": "Container", "packageName": "Large", "quantity": "1" },
        ])
    );
    assert_eq!(out["checkout"]["amount"], "30.00");
    pay(&app, out["checkout"]["url"].as_str().unwrap(), GOOD_CARD).await;

    // 2 × 100 + 500 GB included: 800 GB used, 100 billed at 0.10.
    let backend = app.service_token("backend").await;
    let sub = out["subscription"]["id"].as_str().unwrap();
    app.gql_as(
        Some(&backend),
        "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id } }",
        json!({ "i": { "subscriptionId": sub, "productId": c.bandwidth, "quantity": "800" } }),
    )
    .await
    .ok();
    advance(&app, app.billing.clock.now() + chrono::TimeDelta::hours(1)).await;
    let summary = app
        .gql_as(
            Some(&token),
            "query($s: ID!) { usageSummary(subscriptionId: $s) { included overage amount } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        summary.ok()["usageSummary"],
        json!([{ "included": "700", "overage": "100", "amount": "10.00" }])
    );

    // Without items: the plan's default items, quantity 1, no package.
    let plain = app.create_customer("plain").await;
    let (_, sub, out) = subscribed(&app, &plain, &pro, Value::Null).await;
    assert_eq!(
        out["subscription"]["items"],
        json!([{ "productName": "Container", "packageName": null, "quantity": "1" }])
    );
    assert_eq!(out["checkout"]["amount"], "10.00");
    assert!(!sub.is_empty());
}

#[tokio::test]
async fn an_upgrade_mid_period_is_prorated_and_charged_to_the_saved_card() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let basic = plan(&app, &c, "Basic", "10", "IN_ADVANCE").await;
    let pro = plan(&app, &c, "Pro", "30", "IN_ADVANCE").await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-04-01T00:00:00Z");
    advance(&app, start).await;
    let (token, sub, _) = subscribed(&app, &customer, &basic, Value::Null).await;

    // A third into April (30 days): credit 10 × 20/30, charge 30 × 20/30.
    advance(&app, start + chrono::TimeDelta::days(10)).await;
    let preview = app
        .gql_as(Some(&token), "query($s: ID!, $p: ID) { changePreview(subscriptionId: $s, planId: $p) { kind status total lines { kind amount } } }", json!({ "s": sub, "p": pro }))
        .await;
    assert_eq!(
        preview.ok()["changePreview"],
        json!({ "kind": "CHANGE", "status": "DRAFT", "total": "13.33", "lines": [
            { "kind": "PRORATION", "amount": "-6.67" }, { "kind": "PRORATION", "amount": "20.00" } ] })
    );
    let res = app
        .gql_as(
            Some(&token),
            &format!("mutation($s: ID!, $p: ID!) {{ changePlan(subscriptionId: $s, planId: $p, idempotencyKey: \"up-1\") {{ {CHANGE} }} }}"),
            json!({ "s": sub, "p": pro }),
        )
        .await;
    let out = res.ok()["changePlan"].clone();
    assert_eq!(out["subscription"]["plan"]["name"], "Pro");
    assert!(out["checkout"].is_null(), "the saved card paid it");
    assert_eq!(
        (
            out["invoice"]["kind"].as_str(),
            out["invoice"]["status"].as_str(),
            out["invoice"]["total"].as_str()
        ),
        (Some("CHANGE"), Some("PAID"), Some("13.33"))
    );
    assert_eq!(
        kinds_and_amounts(&out["invoice"]),
        [
            ("PRORATION".into(), "-6.67".into()),
            ("PRORATION".into(), "20.00".into())
        ]
    );
    // The same key replays the same answer, and changes nothing more.
    let again = app
        .gql_as(
            Some(&token),
            &format!("mutation($s: ID!, $p: ID!) {{ changePlan(subscriptionId: $s, planId: $p, idempotencyKey: \"up-1\") {{ {CHANGE} }} }}"),
            json!({ "s": sub, "p": pro }),
        )
        .await;
    assert_eq!(again.ok()["changePlan"]["invoice"], out["invoice"]);
    assert_eq!(invoices(&app, &customer).await.len(), 2);

    // May is billed at Pro's price, in advance.
    advance(&app, utc("2027-05-01T00:00:00Z")).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 3);
    assert_eq!(
        (all[2]["total"].as_str(), all[2]["status"].as_str()),
        (Some("30.00"), Some("PAID"))
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PLAN_CHANGED").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_downgrade_becomes_credit_that_the_next_invoice_uses_first() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let pro = plan(&app, &c, "Pro", "30", "IN_ADVANCE").await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-04-01T00:00:00Z");
    advance(&app, start).await;
    let (token, sub, _) = subscribed(
        &app,
        &customer,
        &pro,
        json!([{ "productId": c.container, "packageId": c.large, "quantity": "3" }]),
    )
    .await;

    // Halfway through April: 3 → 1 container. Credit 90 × 15/30, charge 30 × 15/30.
    advance(&app, start + chrono::TimeDelta::days(15)).await;
    let res = app
        .gql_as(
            Some(&token),
            &format!("mutation($s: ID!, $i: [SubscriptionItemInput!]!) {{ updateSubscriptionItems(subscriptionId: $s, items: $i) {{ {CHANGE} }} }}"),
            json!({ "s": sub, "i": [{ "productId": c.container, "packageId": c.large, "quantity": "1" }] }),
        )
        .await;
    let out = res.ok()["updateSubscriptionItems"].clone();
    assert_eq!(
        out["subscription"]["items"],
        json!([{ "packageName": "Large", "quantity": "1" }])
    );
    assert_eq!(
        (
            out["invoice"]["total"].as_str(),
            out["invoice"]["status"].as_str(),
            out["invoice"]["amountDue"].as_str()
        ),
        (Some("-30.00"), Some("PAID"), Some("0.00"))
    );
    assert_eq!(
        credit(&app, &customer).await,
        json!({ "creditBalance": "30.00", "creditEntries": [
            { "amount": "30.00", "balanceAfter": "30.00", "reason": "INVOICE_CREDIT" } ] })
    );
    assert!(
        event_kinds(&app, &customer)
            .await
            .contains(&"ITEMS_CHANGED".to_owned())
    );

    // May 1: one container in advance, 30.00, paid from the credit.
    advance(&app, utc("2027-05-01T00:00:00Z")).await;
    let all = invoices(&app, &customer).await;
    let may = all.last().unwrap();
    assert_eq!(
        (
            may["total"].as_str(),
            may["creditApplied"].as_str(),
            may["amountDue"].as_str(),
            may["status"].as_str()
        ),
        (Some("30.00"), Some("30.00"), Some("0.00"), Some("PAID"))
    );
    assert_eq!(credit(&app, &customer).await["creditBalance"], "0.00");
}

#[tokio::test]
async fn a_change_that_must_be_paid_waits_for_its_checkout_and_is_computed_when_paid() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let pro = plan(&app, &c, "Pro", "30", "IN_ADVANCE").await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-04-01T00:00:00Z");
    advance(&app, start).await;
    let token = app.customer_token(&customer).await;
    // A plan without prices is live at once, and no card is saved.
    let nothing = app
        .create_plan(json!({ "name": "Nothing", "phases": [{ "kind": "FINAL", "prices": [] }] }))
        .await;
    let res = app
        .gql_as(
            Some(&token),
            SUBSCRIBE,
            subscribe_input(&customer, &nothing, None),
        )
        .await;
    let sub = res.ok()["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(res.ok()["createSubscription"]["checkout"].is_null());

    advance(&app, start + chrono::TimeDelta::days(10)).await;
    let vars = json!({ "s": sub, "p": pro, "ok": "https://app.example/ok", "no": "https://app.example/no" });
    let res = app
        .gql_as(
            Some(&token),
            &format!("mutation($s: ID!, $p: ID!, $ok: String, $no: String) {{ changePlan(subscriptionId: $s, planId: $p, successUrl: $ok, cancelUrl: $no) {{ {CHANGE} }} }}"),
            vars,
        )
        .await;
    let out = res.ok()["changePlan"].clone();
    assert_eq!(out["subscription"]["plan"]["name"], "Nothing", "not yet");
    assert!(out["invoice"].is_null());
    assert_eq!(out["checkout"]["amount"], "20.00", "30 × 20/30");

    // Paid 12 hours later: the change is made then, for 19.5 days (19.50); 0.50 is credit.
    advance(&app, start + chrono::TimeDelta::hours(10 * 24 + 12)).await;
    pay(&app, out["checkout"]["url"].as_str().unwrap(), GOOD_CARD).await;
    let all = invoices(&app, &customer).await;
    let change = all.last().unwrap();
    assert_eq!(
        (
            change["kind"].as_str(),
            change["total"].as_str(),
            change["status"].as_str()
        ),
        (Some("CHANGE"), Some("19.50"), Some("PAID"))
    );
    assert_eq!(
        credit(&app, &customer).await,
        json!({ "creditBalance": "0.50", "creditEntries": [
            { "amount": "0.50", "balanceAfter": "0.50", "reason": "OVERPAYMENT" } ] })
    );
    let now = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { plan { name } } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(now.ok()["subscription"]["plan"]["name"], "Pro");
}

#[tokio::test]
async fn a_plan_billed_in_arrears_takes_nothing_at_checkout_and_bills_the_month_at_its_end() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let later = plan(&app, &c, "Later", "12.50", "IN_ARREARS").await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-01-01T00:00:00Z");
    advance(&app, start).await;
    let (_, _, out) = subscribed(&app, &customer, &later, Value::Null).await;
    assert_eq!(out["checkout"]["amount"], "0.00", "only the card is saved");
    advance(&app, utc("2027-02-01T00:00:00Z")).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["total"], "0.00");
    assert_eq!(
        (all[1]["total"].as_str(), all[1]["status"].as_str()),
        (Some("12.50"), Some("PAID"))
    );
    let plans = app
        .admin(
            "query($p: ID!) { plan(id: $p) { recurringBilling } }",
            json!({ "p": later }),
        )
        .await;
    assert_eq!(plans.ok()["plan"]["recurringBilling"], "IN_ARREARS");
}

#[tokio::test]
async fn a_cancel_now_refunds_the_unused_part_unless_credit_is_kept() {
    for keep in [false, true] {
        let app = TestApp::spawn_with(
            |c| {
                if keep {
                    c.refund_credit = "keep".into();
                }
            },
            Vec::new(),
        )
        .await;
        let c = catalog(&app).await;
        let pro = plan(&app, &c, "Pro", "12.50", "IN_ADVANCE").await;
        let customer = app.create_customer("c").await;
        let start = utc("2027-01-01T00:00:00Z");
        advance(&app, start).await;
        let (token, sub, _) = subscribed(&app, &customer, &pro, Value::Null).await;
        // Ten days into January (31 days): 12.50 × 21/31 = 8.467… unused.
        advance(&app, start + chrono::TimeDelta::days(10)).await;
        app.gql_as(
            Some(&token),
            "mutation($s: ID!) { cancelSubscription(id: $s) { status } }",
            json!({ "s": sub }),
        )
        .await
        .ok();
        let all = invoices(&app, &customer).await;
        let last = all.last().unwrap();
        assert_eq!(
            (last["kind"].as_str(), last["total"].as_str()),
            (Some("FINAL"), Some("-8.47"))
        );
        advance(&app, start + chrono::TimeDelta::days(11)).await;
        let kinds = event_kinds(&app, &customer).await;
        let refunded = kinds.iter().filter(|k| *k == "PAYMENT_REFUNDED").count();
        let balance = credit(&app, &customer).await["creditBalance"].clone();
        if keep {
            assert_eq!((refunded, balance), (0, json!("8.47")));
        } else {
            assert_eq!((refunded, balance), (1, json!("0.00")));
        }
    }
}

#[tokio::test]
async fn catalogs_may_mix_intervals_except_within_a_graduated_ladder() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let mixed = app
        .admin(
            "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
            json!({ "i": { "name": "Mixed", "phases": [{ "kind": "FINAL", "prices": [
                { "productId": c.container, "currency": "USD", "unitAmount": "10", "interval": "MONTH" },
                { "productId": c.container, "currency": "EUR", "unitAmount": "0.02", "interval": "HOUR" },
                { "productId": c.container, "currency": "USD", "region": "eu-west", "unitAmount": "0.01", "interval": "HOUR", "maxQuantity": "5" },
                { "productId": c.container, "currency": "USD", "region": "eu-west", "unitAmount": "9", "interval": "MONTH" } ] }] } }),
        )
        .await;
    assert!(mixed.ok()["createPlan"]["id"].is_string());
    let graduated = app
        .admin(
            "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
            json!({ "i": { "name": "Ladder", "tierMode": "GRADUATED", "phases": [{ "kind": "FINAL", "prices": [
                { "productId": c.container, "currency": "USD", "unitAmount": "0.01", "interval": "HOUR", "maxQuantity": "5" },
                { "productId": c.container, "currency": "USD", "unitAmount": "9", "interval": "MONTH" } ] }] } }),
        )
        .await;
    graduated.expect_code("BAD_USER_INPUT");
}

#[tokio::test]
async fn graduated_lines_show_their_tiers_and_unpriced_usage_still_gets_a_line() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let unpriced = app
        .create_product("Backups", "METERED_RESOURCE", Some("backup_storage"))
        .await;
    let ladder = app
        .create_plan(json!({ "name": "Ladder", "tierMode": "GRADUATED", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": c.container, "currency": "USD", "unitAmount": "1", "interval": "MONTH" },
            { "productId": c.bandwidth, "currency": "USD", "unitAmount": "0.05", "interval": "UNIT", "maxQuantity": "1000" },
            { "productId": c.bandwidth, "currency": "USD", "unitAmount": "0.04", "interval": "UNIT" } ] }] }))
        .await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-01-01T00:00:00Z");
    advance(&app, start).await;
    let (_, sub, _) = subscribed(&app, &customer, &ladder, Value::Null).await;
    let backend = app.service_token("backend").await;
    for (product, q) in [(&c.bandwidth, "1420.5"), (&unpriced, "7")] {
        app.gql_as(
            Some(&backend),
            "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id } }",
            json!({ "i": { "subscriptionId": sub, "productId": product, "quantity": q } }),
        )
        .await
        .ok();
    }
    advance(&app, utc("2027-02-01T00:00:00Z")).await;
    let all = invoices(&app, &customer).await;
    let lines = all[1]["lines"].as_array().unwrap();
    let bandwidth = lines
        .iter()
        .find(|l| l["product"]["name"] == "Bandwidth")
        .unwrap();
    // 1000 × 0.05 + 420.5 × 0.04 = 50 + 16.82.
    assert_eq!(bandwidth["amount"], "66.82");
    assert_eq!(
        bandwidth["tiers"],
        json!([
            { "quantity": "1000", "unitAmount": "0.05", "amount": "50.00" },
            { "quantity": "420.5", "unitAmount": "0.04", "amount": "16.820" },
        ])
    );
    let backups = lines
        .iter()
        .find(|l| l["product"]["name"] == "Backups")
        .unwrap();
    assert_eq!(
        (backups["amount"].as_str(), backups["quantity"].as_str()),
        (Some("0.00"), Some("7"))
    );
}

#[tokio::test]
async fn a_plan_with_a_longer_trial_puts_the_subscription_back_in_its_trial() {
    let app = TestApp::spawn().await;
    let c = catalog(&app).await;
    let plain = plan(&app, &c, "Plain", "0", "IN_ADVANCE").await;
    let trial = app
        .create_plan(json!({ "name": "Trial", "phases": [
            { "kind": "TRIAL", "duration": { "count": 60, "unit": "DAY" }, "prices": [
                { "productId": c.container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] },
            { "kind": "FINAL", "prices": [
                { "productId": c.container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] } ] }))
        .await;
    let customer = app.create_customer("c").await;
    let start = utc("2027-01-01T00:00:00Z");
    advance(&app, start).await;
    let (token, sub, _) = subscribed(&app, &customer, &plain, Value::Null).await;
    advance(&app, start + chrono::TimeDelta::days(10)).await;
    app.gql_as(
        Some(&token),
        "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { subscription { id } } }",
        json!({ "s": sub, "p": trial }),
    )
    .await
    .ok();
    assert_eq!(current_phase(&app, &sub).await, "TRIAL");
    // The trial's 60 days count from the billing start (Jan 1): it ends on Mar 2.
    advance(&app, utc("2027-03-03T00:00:00Z")).await;
    assert_eq!(current_phase(&app, &sub).await, "FINAL");
    let changes: Vec<Value> = app
        .admin(
            "query($c: ID) { billingEvents(customerId: $c) { kind data } }",
            json!({ "c": customer }),
        )
        .await
        .ok()["billingEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "PHASE_CHANGED")
        .map(|e| json!([e["data"]["from"], e["data"]["to"]]))
        .collect();
    assert_eq!(
        changes,
        [json!(["FINAL", "TRIAL"]), json!(["TRIAL", "FINAL"])]
    );
}

async fn current_phase(app: &TestApp, sub: &str) -> Value {
    app.admin(
        "query($s: ID!) { subscription(id: $s) { currentPhase } }",
        json!({ "s": sub }),
    )
    .await
    .ok()["subscription"]["currentPhase"]
        .clone()
}
