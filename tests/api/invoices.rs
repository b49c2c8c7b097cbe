use serde_json::{Value, json};

use crate::helpers::{TestApp, advance, utc};
use crate::subscriptions::{event_kinds, pay, subscribe};

const INVOICES: &str = "query($c: ID!) { invoices(customerId: $c) { edges { node { id kind status total amountDue creditApplied currency attempts periodStart periodEnd
    lines { kind phase start end quantity unitAmount amount } } } } }";

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
    let sub = crate::subscriptions::subscribe_and_pay(app, &token, &customer, &plan).await;
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

    // The checkout paid the opening invoice: period 0's monthly support in advance, free
    // in the trial (Jan 1–15), then 10 × 17/31 of the month = 5.483870… → 5.48.
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0]["kind"].as_str(),
            all[0]["status"].as_str(),
            all[0]["total"].as_str(),
            all[0]["amountDue"].as_str()
        ),
        (Some("PERIOD"), Some("PAID"), Some("5.48"), Some("0.00"))
    );

    // Halfway through the trial's second week the preview shows the next invoice so far:
    // the container's hours (free so far) and February's support in advance.
    advance(&app, start + chrono::TimeDelta::days(10)).await;
    let preview = app.gql_as(Some(&token), "query($s: ID!) { invoicePreview(subscriptionId: $s) { status total lines { phase amount } } }", json!({ "s": sub })).await;
    assert_eq!(preview.ok()["invoicePreview"]["status"], "DRAFT");
    assert_eq!(preview.ok()["invoicePreview"]["total"], "10.00");

    // At the period's end (Jan 1 + 1 month = Feb 1) the clock issues and collects the
    // boundary invoice: January's hours in arrears, February's support in advance.
    advance(&app, start + chrono::TimeDelta::days(31)).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 2);
    let inv = &all[1];
    assert_eq!(inv["status"], "PAID");
    assert_eq!(inv["periodStart"], "2027-02-01T00:00:00+00:00");
    let phases: Vec<(&str, &str, &str)> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["phase"].as_str().unwrap(),
                l["start"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    // Final: Jan 15 – Feb 1 = 17 days = 408 h × 0.0125 = 5.10.
    assert_eq!(
        phases,
        [
            ("TRIAL", "2027-01-01T00:00:00+00:00", "0.00"),
            ("FINAL", "2027-01-15T00:00:00+00:00", "5.10"),
            ("FINAL", "2027-02-01T00:00:00+00:00", "10.00")
        ]
    );
    assert_eq!(inv["total"], "15.10");

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
    // [0] is the opening invoice, paid at checkout; [1] the first renewal.
    let inv = &invoices(&app, &customer).await[1];
    assert_eq!(
        (inv["status"].as_str(), inv["attempts"].as_i64()),
        (Some("OPEN"), Some(1))
    );

    for (day, want) in [(1, "PAST_DUE"), (3, "PAST_DUE"), (5, "CANCELED")] {
        advance(&app, period_end + chrono::TimeDelta::days(day)).await;
        assert_eq!(sub_status(&app, &sub).await, want, "day {day}");
    }
    let inv = &invoices(&app, &customer).await[1];
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
    let inv = invoices(&app, &customer).await[1].clone();
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
async fn the_checkout_pays_the_first_month_and_each_later_month_is_billed_at_its_start() {
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

    // The opening invoice is period 0's advance line, paid by the checkout.
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        (
            all[0]["status"].as_str(),
            all[0]["total"].as_str(),
            all[0]["amountDue"].as_str()
        ),
        (Some("PAID"), Some("10.00"), Some("0.00"))
    );
    let lines: Vec<(&str, &str, &str)> = all[0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap(),
                l["start"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [("RECURRING", "2027-05-01T00:00:00+00:00", "10.00")]);
    let res = app
        .admin(
            "query($c: ID!) { invoices(customerId: $c) { edges { node { lines { productId product { name } } } } } }",
            json!({ "c": customer }),
        )
        .await;
    assert_eq!(
        res.ok()["invoices"]["edges"][0]["node"]["lines"][0],
        json!({ "productId": container, "product": { "name": "Container" } })
    );

    // June is billed on June 1, to the saved card, once; July on July 1.
    advance(&app, start + chrono::TimeDelta::days(31)).await;
    let all = invoices(&app, &customer).await;
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[1]["status"].as_str(),
            all[1]["total"].as_str(),
            all[1]["periodStart"].as_str()
        ),
        (
            Some("PAID"),
            Some("10.00"),
            Some("2027-06-01T00:00:00+00:00")
        )
    );
    advance(&app, start + chrono::TimeDelta::days(61)).await;
    assert_eq!(invoices(&app, &customer).await.len(), 3);
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PAYMENT_SUCCEEDED").count(),
        3,
        "the checkout, June and July: {kinds:?}"
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
    assert_eq!(all.len(), 2, "{all:?}");
    let inv = &all[1];
    let lines: Vec<(&str, &str, &str, &str)> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap(),
                l["phase"].as_str().unwrap(),
                l["end"].as_str().unwrap(),
                l["amount"].as_str().unwrap(),
            )
        })
        .collect();
    // The container's hours in arrears up to the instant: Jan 15–20 = 120 h × 0.0125 =
    // 1.50. The support paid in advance to Feb 1 is credited for Jan 20 – Feb 1:
    // 10 × 12/31 = 3.870967… → −3.87.
    assert_eq!(
        lines,
        [
            ("RECURRING", "TRIAL", "2027-01-15T00:00:00+00:00", "0.00"),
            ("RECURRING", "FINAL", "2027-01-20T00:00:00+00:00", "1.50"),
            ("PRORATION", "FINAL", "2027-02-01T00:00:00+00:00", "-3.87")
        ]
    );
    assert_eq!(
        (
            inv["kind"].as_str(),
            inv["total"].as_str(),
            inv["status"].as_str()
        ),
        (Some("FINAL"), Some("-2.37"), Some("PAID"))
    );
    // The negative total became credit, and the last subscription's end refunds it.
    let credit = app
        .admin(
            "query($c: ID!) { customer(id: $c) { creditBalance creditEntries { amount balanceAfter reason } } }",
            json!({ "c": customer }),
        )
        .await;
    assert_eq!(
        credit.ok()["customer"],
        json!({ "creditBalance": "0.00", "creditEntries": [
            { "amount": "2.37", "balanceAfter": "2.37", "reason": "INVOICE_CREDIT" },
            { "amount": "-2.37", "balanceAfter": "0.00", "reason": "REFUNDED" },
        ] })
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PAYMENT_REFUNDED").count(),
        1,
        "{kinds:?}"
    );
    // Nothing more is billed, and the subscription stays canceled.
    advance(&app, start + chrono::TimeDelta::days(70)).await;
    assert_eq!(invoices(&app, &customer).await.len(), 2);
    assert_eq!(sub_status(&app, &sub).await, "CANCELED");
}

#[tokio::test]
async fn a_boundary_costs_a_few_statements_per_subscription() {
    // The billing clock works in batches: the trial's end, the boundary invoice, the
    // charge to the saved card and its settlement cost a few statements per batch, so 25
    // more subscriptions cost at most 2 statements each, the sandbox's own records of its
    // charges included (it takes the batch's charges together).
    let app = TestApp::spawn().await;
    let plan = hourly_plan(&app).await;
    let mut now = utc("2027-01-01T00:00:00Z");
    advance(&app, now).await;
    let mut cost = Vec::new();
    let mut subs = Vec::new();
    for (round, wanted) in [5, 25].into_iter().enumerate() {
        for n in 0..wanted {
            let customer = app.create_customer(&format!("c{round}-{n}")).await;
            let token = app.customer_token(&customer).await;
            let sub = crate::subscriptions::subscribe_and_pay(&app, &token, &customer, &plan).await;
            subs.push((customer, sub, round));
        }
        // The first tick meets the new ones; then one run ends their trials and bills
        // and collects their first boundary.
        now += chrono::TimeDelta::hours(1);
        advance(&app, now).await;
        now += chrono::TimeDelta::days(32);
        // The test clock runs the billing clock inside this request: its own statements.
        let (res, ours, provider) = app
            .counted_with_provider(
                Some(crate::helpers::ADMIN_TOKEN),
                "mutation($t: DateTime!) { advanceClock(to: $t) }",
                json!({ "t": now.to_rfc3339() }),
            )
            .await;
        res.ok();
        eprintln!("{wanted} subscriptions: {ours} statements, and {provider} of the sandbox");
        cost.push((wanted, ours + provider));
    }
    eprintln!("boundary runs (subscriptions, statements with the sandbox's): {cost:?}");
    for (customer, sub, round) in &subs {
        assert_eq!(sub_status(&app, sub).await, "ACTIVE");
        // The opening invoice (the checkout's) and one per boundary since, all paid.
        let periods: Vec<Value> = invoices(&app, customer)
            .await
            .into_iter()
            .filter(|i| i["kind"] == "PERIOD")
            .collect();
        assert_eq!(periods.len(), 3 - round, "{periods:?}");
        assert!(periods.iter().all(|i| i["status"] == "PAID"), "{periods:?}");
    }
    let ((few, small), (many, large)) = (cost[0], cost[1]);
    assert!(
        large <= small + 2 * (many - few) as u64,
        "{many} subscriptions cost {large} statements, {few} cost {small}"
    );
}

const CLOCK_RUN: &str = "{ clockRun { to running startedAt finishedAt invoicesIssued errorCode } }";

#[tokio::test]
async fn a_clock_move_runs_in_the_background_and_can_be_polled() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.admin(CLOCK_RUN, json!({})).await.ok()["clockRun"],
        Value::Null
    );
    let (plan, _) = crate::subscriptions::monthly_plan(&app, "0").await;
    let start = utc("2027-01-01T00:00:00Z");
    advance(&app, start).await;
    // A move that waits answers once its run is done.
    let run = app.admin(CLOCK_RUN, json!({})).await.ok()["clockRun"].clone();
    assert_eq!(run["to"], "2027-01-01T00:00:00+00:00");
    assert_eq!(run["running"], false);
    assert_eq!(run["invoicesIssued"], 0);
    assert_eq!(run["errorCode"], Value::Null);
    let mut customers = Vec::new();
    for n in 0..6 {
        let customer = app.create_customer(&format!("c{n}")).await;
        let token = app.customer_token(&customer).await;
        subscribe(&app, &token, &customer, &plan).await;
        customers.push(customer);
    }
    advance(&app, start + chrono::TimeDelta::hours(1)).await;

    // One that does not wait answers with the new time at once; the run is polled.
    let to = start + chrono::TimeDelta::days(32);
    let moved = app
        .admin(
            "mutation($t: DateTime!) { advanceClock(to: $t, wait: false) }",
            json!({ "t": to.to_rfc3339() }),
        )
        .await;
    assert_eq!(moved.ok()["advanceClock"], "2027-02-02T00:00:00+00:00");
    let done = loop {
        let run = app.admin(CLOCK_RUN, json!({})).await.ok()["clockRun"].clone();
        assert_eq!(run["to"], "2027-02-02T00:00:00+00:00");
        if run["running"] == false {
            break run;
        }
        assert_eq!(run["finishedAt"], Value::Null);
        assert_eq!(run["invoicesIssued"], Value::Null);
        tokio::task::yield_now().await;
    };
    assert_eq!(done["invoicesIssued"], 6, "{done}");
    assert_eq!(done["errorCode"], Value::Null);
    assert!(done["finishedAt"].is_string());
    for customer in &customers {
        let periods = invoices(&app, customer).await;
        assert_eq!(periods.len(), 2, "{periods:?}");
    }
    // Only admins see runs.
    let customer = app.customer_token(&customers[0]).await;
    app.gql_as(Some(&customer), CLOCK_RUN, json!({}))
        .await
        .expect_code("FORBIDDEN");

    // The answer never waits for the run: with the clock's runs held (as at shutdown),
    // the move still answers and its run shows as running.
    let held = TestApp::spawn().await;
    held.billing.hold_clock().await;
    let moved = held
        .admin(
            "mutation { advanceClock(to: \"2030-01-01T00:00:00Z\", wait: false) }",
            json!({}),
        )
        .await;
    assert_eq!(moved.ok()["advanceClock"], "2030-01-01T00:00:00+00:00");
    let run = held.admin(CLOCK_RUN, json!({})).await.ok()["clockRun"].clone();
    assert_eq!(run["running"], true, "{run}");
    assert_eq!(run["finishedAt"], Value::Null);
}
