use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, pay, subscribe};

const INVOICES: &str = "query($c: ID!) { invoices(customerId: $c) { edges { node { id status total currency attempts periodStart periodEnd
    lines { kind phase start end quantity unitAmount amount } } } } }";

/// An RFC 3339 instant of a test.
fn utc(at: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc()
}

async fn advance(app: &TestApp, to: chrono::DateTime<chrono::Utc>) {
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": to.to_rfc3339() }),
    )
    .await
    .ok();
}

async fn sub_status(app: &TestApp, sub: &str) -> String {
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status } }",
            json!({ "s": sub }),
        )
        .await;
    res.ok()["subscription"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The hosted page where the customer replaces the stored card.
async fn details_url(app: &TestApp, token: &str, customer: &str) -> String {
    let res = app
        .gql_as(
            Some(token),
            "mutation($c: ID!) { updatePaymentDetails(customerId: $c, returnUrl: \"https://app.example/s\") { url } }",
            json!({ "c": customer }),
        )
        .await;
    res.ok()["updatePaymentDetails"]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn invoices(app: &TestApp, customer: &str) -> Vec<Value> {
    let res = app.admin(INVOICES, json!({ "c": customer })).await;
    res.ok()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// A plan with a 14-day trial (free) and a final phase at 0.0125 per hour for the
/// container, plus a monthly 10 so that checkout saves a card.
async fn hourly_plan(app: &TestApp) -> String {
    let container = app.create_product("Container", "PACKAGE", None).await;
    let support = app.create_product("Support", "PACKAGE", None).await;
    app.create_plan(json!({ "name": "Hourly", "phases": [
        { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "HOUR" },
            { "productId": support, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] },
        { "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0.0125", "interval": "HOUR" },
            { "productId": support, "currency": "USD", "unitAmount": "10", "interval": "MONTH" } ] } ] }))
        .await
}

/// A customer subscribed to the hourly plan at `start`, checkout paid with a good card.
struct Paying {
    customer: String,
    token: String,
    sub: String,
}

async fn paying_subscriber(app: &TestApp, start: chrono::DateTime<chrono::Utc>) -> Paying {
    let plan = hourly_plan(app).await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    advance(app, start).await;
    let out = subscribe(app, &token, &customer, &plan).await;
    pay(
        app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    Paying {
        customer,
        token,
        sub,
    }
}

#[tokio::test]
async fn a_period_crossing_from_trial_into_final_is_invoiced_in_two_slices_and_collected() {
    let app = TestApp::spawn().await;
    let start = utc("2027-01-01T00:00:00Z");
    let Paying {
        customer,
        token,
        sub,
    } = paying_subscriber(&app, start).await;

    // Halfway through the trial's second week the preview shows the period so far.
    advance(&app, start + chrono::TimeDelta::days(10)).await;
    let preview = app.gql_as(Some(&token), "query($s: ID!) { invoicePreview(subscriptionId: $s) { status total lines { phase amount } } }", json!({ "s": sub })).await;
    assert_eq!(preview.ok()["invoicePreview"]["status"], "DRAFT");
    assert_eq!(preview.ok()["invoicePreview"]["total"], "0.00");

    // Past the period's end (Jan 1 + 1 month = Feb 1): the clock issues and collects.
    advance(&app, start + chrono::TimeDelta::days(31)).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 1);
    let inv = &all[0];
    assert_eq!(inv["status"], "PAID");
    assert_eq!(inv["periodEnd"], "2027-02-01T00:00:00+00:00");
    let phases: Vec<(&str, &str)> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["phase"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    // Trial: Jan 1–15 free. Final: Jan 15 – Feb 1 = 17 days = 408 h × 0.0125 = 5.10,
    // and 10 × 17/31 of the month = 5.483870… → 5.48.
    assert_eq!(
        phases,
        [
            ("TRIAL", "0.00"),
            ("TRIAL", "0.00"),
            ("FINAL", "5.10"),
            ("FINAL", "5.48")
        ]
    );
    assert_eq!(inv["total"], "10.58");

    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PHASE_CHANGED").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds.ends_with(&[
            "INVOICE_ISSUED".into(),
            "PAYMENT_SUCCEEDED".into(),
            "INVOICE_PAID".into()
        ]),
        "{kinds:?}"
    );
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status currentPhase } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "ACTIVE", "currentPhase": "FINAL" })
    );

    // Another customer cannot read these invoices.
    let other = app.create_customer("other").await;
    let other_token = app.customer_token(&other).await;
    app.gql_as(Some(&other_token), INVOICES, json!({ "c": customer }))
        .await
        .expect_code("NOT_FOUND");
}

#[tokio::test]
async fn failed_renewals_go_past_due_retry_and_finally_cancel() {
    let app = TestApp::spawn().await;
    let start = utc("2027-03-01T00:00:00Z");
    let Paying {
        customer,
        token,
        sub,
    } = paying_subscriber(&app, start).await;
    // The customer swaps in a card that will be declined.
    pay(
        &app,
        &details_url(&app, &token, &customer).await,
        "4000000000000002",
    )
    .await;

    let period_end = start + chrono::TimeDelta::days(31);
    advance(&app, period_end).await;
    assert_eq!(sub_status(&app, &sub).await, "PAST_DUE");
    let inv = &invoices(&app, &customer).await[0];
    assert_eq!(
        (inv["status"].as_str(), inv["attempts"].as_i64()),
        (Some("OPEN"), Some(1))
    );

    for (day, want) in [(1, "PAST_DUE"), (3, "PAST_DUE"), (5, "CANCELED")] {
        advance(&app, period_end + chrono::TimeDelta::days(day)).await;
        assert_eq!(sub_status(&app, &sub).await, want, "day {day}");
    }
    let inv = &invoices(&app, &customer).await[0];
    assert_eq!(
        (inv["status"].as_str(), inv["attempts"].as_i64()),
        (Some("UNCOLLECTIBLE"), Some(4))
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PAYMENT_FAILED").count(),
        4,
        "{kinds:?}"
    );
    assert!(
        kinds.ends_with(&[
            "INVOICE_UNCOLLECTIBLE".into(),
            "SUBSCRIPTION_CANCELED".into()
        ]),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_successful_retry_returns_the_subscription_to_active() {
    let app = TestApp::spawn().await;
    let start = utc("2027-05-01T00:00:00Z");
    let Paying {
        customer,
        token,
        sub,
    } = paying_subscriber(&app, start).await;
    let url = details_url(&app, &token, &customer).await;
    pay(&app, &url, "4000000000000002").await;
    let period_end = start + chrono::TimeDelta::days(31);
    advance(&app, period_end).await;
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(res.ok()["subscription"]["status"], "PAST_DUE");

    let url = details_url(&app, &token, &customer).await;
    pay(&app, &url, "4242424242424242").await;
    advance(&app, period_end + chrono::TimeDelta::days(1)).await;
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(res.ok()["subscription"]["status"], "ACTIVE");
    let inv = invoices(&app, &customer).await[0].clone();
    assert_eq!(inv["status"], "PAID");
    let refused = app
        .admin(
            "mutation($i: ID!) { voidInvoice(id: $i) { status } }",
            json!({ "i": inv["id"] }),
        )
        .await;
    refused.expect_code("INVALID_STATE");
}

#[tokio::test]
async fn an_idle_billing_clock_does_not_read_every_subscription() {
    let app = TestApp::spawn().await;
    let (plan, _) = crate::subscriptions::monthly_plan(&app, "0").await;
    let mut now = app.billing.clock.now();
    let mut subscribers = 0;
    let mut idle_tick = Vec::new();
    for wanted in [1, 8] {
        while subscribers < wanted {
            let customer = app.create_customer(&format!("c{subscribers}")).await;
            let token = app.customer_token(&customer).await;
            let out = subscribe(&app, &token, &customer, &plan).await;
            assert_eq!(
                out["subscription"]["status"], "ACTIVE",
                "free plans start at once"
            );
            subscribers += 1;
        }
        // The first tick schedules the new subscriptions; the next one finds nothing due.
        now += chrono::TimeDelta::minutes(1);
        advance(&app, now).await;
        now += chrono::TimeDelta::minutes(1);
        let (res, statements) = app
            .admin_counted(
                "mutation($t: DateTime!) { advanceClock(to: $t) }",
                json!({ "t": now.to_rfc3339() }),
            )
            .await;
        res.ok();
        idle_tick.push(statements);
    }
    eprintln!("idle tick statements: {idle_tick:?}");
    assert!(
        idle_tick[1] < idle_tick[0] + 7,
        "an idle tick with 8 subscriptions cost {} statements, with 1 cost {}",
        idle_tick[1],
        idle_tick[0]
    );
}

#[tokio::test]
async fn the_month_paid_at_checkout_is_not_charged_again() {
    let app = TestApp::spawn().await;
    let (plan, container) = crate::subscriptions::monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let start = utc("2027-05-01T00:00:00Z");
    advance(&app, start).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(out["checkout"]["amount"], "10.00", "one month in advance");
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;

    // Period 0 is what the checkout paid for: the invoice sets it against the charge.
    advance(&app, start + chrono::TimeDelta::days(31)).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "PAID");
    assert_eq!(all[0]["total"], "0.00");
    let lines: Vec<(&str, &str)> = all[0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("RECURRING", "10.00"), ("PREPAID", "-10.00")]);
    let res = app
        .admin(
            "query($c: ID!) { invoices(customerId: $c) { edges { node { lines { productId } } } } }",
            json!({ "c": customer }),
        )
        .await;
    assert_eq!(
        res.ok()["invoices"]["edges"][0]["node"]["lines"][1]["productId"],
        json!(container)
    );

    // Period 1 is charged to the saved card, once.
    advance(&app, start + chrono::TimeDelta::days(62)).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[1]["status"].as_str(), all[1]["total"].as_str()),
        (Some("PAID"), Some("10.00"))
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PAYMENT_SUCCEEDED").count(),
        2,
        "the checkout and period 1: {kinds:?}"
    );
}

#[tokio::test]
async fn a_canceled_subscription_gets_a_final_invoice_up_to_the_cancellation() {
    let app = TestApp::spawn().await;
    let start = utc("2027-01-01T00:00:00Z");
    let Paying {
        customer,
        token,
        sub,
    } = paying_subscriber(&app, start).await;
    // Five days into the final phase (the trial ended on Jan 15), the customer cancels.
    advance(&app, start + chrono::TimeDelta::days(19)).await;
    let res = app
        .gql_as(
            Some(&token),
            "mutation($s: ID!) { cancelSubscription(id: $s) { status } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(res.ok()["cancelSubscription"]["status"], "CANCELED");
    advance(
        &app,
        start + chrono::TimeDelta::days(19) + chrono::TimeDelta::minutes(1),
    )
    .await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 1, "{all:?}");
    let inv = &all[0];
    let lines: Vec<(&str, &str, &str)> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["phase"].as_str().unwrap(),
                l["end"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    // Jan 15–20 = 120 h × 0.0125 = 1.50; 10 × 5/31 of the month = 1.6129… → 1.61.
    assert_eq!(
        lines,
        [
            ("TRIAL", "2027-01-15T00:00:00+00:00", "0.00"),
            ("TRIAL", "2027-01-15T00:00:00+00:00", "0.00"),
            ("FINAL", "2027-01-20T00:00:00+00:00", "1.50"),
            ("FINAL", "2027-01-20T00:00:00+00:00", "1.61")
        ]
    );
    assert_eq!(
        (inv["total"].as_str(), inv["status"].as_str()),
        (Some("3.11"), Some("PAID"))
    );
    // Nothing more is billed, and the subscription stays canceled.
    advance(&app, start + chrono::TimeDelta::days(70)).await;
    assert_eq!(invoices(&app, &customer).await.len(), 1);
    assert_eq!(sub_status(&app, &sub).await, "CANCELED");
}

#[tokio::test]
async fn moving_billing_start_moves_the_next_phase_change() {
    let app = TestApp::spawn().await;
    let start = utc("2027-01-01T00:00:00Z");
    let Paying { customer, sub, .. } = paying_subscriber(&app, start).await;
    // The clock has scheduled its next visit for the trial's end, Jan 15.
    advance(&app, start + chrono::TimeDelta::hours(1)).await;
    // An admin moves billingStart ten days back: the trial now ends on Jan 5.
    app.admin(
        "mutation($c: ID!, $at: DateTime!) { setBillingStart(customerId: $c, at: $at) { billingStart } }",
        json!({ "c": customer, "at": "2026-12-22T00:00:00Z" }),
    )
    .await
    .ok();
    advance(&app, utc("2027-01-06T00:00:00Z")).await;
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status currentPhase } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "ACTIVE", "currentPhase": "FINAL" })
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PHASE_CHANGED").count(),
        1,
        "recorded at the new boundary, not the old one: {kinds:?}"
    );
}
