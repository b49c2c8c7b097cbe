//! The money path: closed checkouts take no money (and what still arrives is refunded), a
//! customer can always try again, unpaid grants nothing, no paid plan without payment,
//! plans are offered in their currencies.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, monthly_plan, pay, subscribe, subscribe_input};

const SUBSCRIBE: &str = "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) {
    subscription { id status } checkout { id url status amount } } }";

const CHANGE: &str = "mutation($s: ID!, $p: ID!, $ok: String, $no: String) {
    changePlan(subscriptionId: $s, planId: $p, successUrl: $ok, cancelUrl: $no) {
        subscription { id status plan { id } } invoice { id } checkout { id url status amount } } }";

async fn subscription(app: &TestApp, id: &str) -> Value {
    app.admin(
        "query($id: ID!) { subscription(id: $id) { status plan { id } checkout { status amount } } }",
        json!({ "id": id }),
    )
    .await
    .ok()["subscription"]
        .clone()
}

/// A closed checkout's page: it says so, links back to the cancel URL, and a card sent to
/// it is refused.
async fn assert_closed(app: &TestApp, url: &str) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 410);
    let text = page.text().await.unwrap();
    assert!(text.contains("closed"), "{text}");
    let refused = browser
        .post(url)
        .form(&[
            ("card_number", "4242424242424242"),
            ("expiry", "12/34"),
            ("cvc", "123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 410);
    let _ = app;
}

async fn advance(app: &TestApp, by: chrono::TimeDelta) {
    let to = (app.billing.clock.now() + by).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": to }),
    )
    .await
    .ok();
}

/// A plan limiting computations to `max`, with its container at `monthly` USD a month.
async fn limited(app: &TestApp, name: &str, monthly: &str, max: i64) -> String {
    let container = app.create_product("Container", "PACKAGE", None).await;
    app.create_plan(json!({ "name": name, "limits": [{ "metric": "computations", "max": max, "kind": "COUNT" }],
        "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": monthly, "interval": "MONTH" } ] }] }))
        .await
}

async fn computations_limit(app: &TestApp, customer: &str) -> i64 {
    app.admin(
        "query($c: ID!) { entitlement(customerId: $c, metric: \"computations\") { limit } }",
        json!({ "c": customer }),
    )
    .await
    .ok()["entitlement"]["limit"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_new_subscription_replaces_an_unpaid_one_and_closes_its_checkout() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let first = subscribe(&app, &token, &customer, &plan).await;
    let first_id = first["subscription"]["id"].as_str().unwrap();
    let first_url = first["checkout"]["url"].as_str().unwrap().to_owned();

    let second = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(second["subscription"]["status"], "INCOMPLETE");
    let old = subscription(&app, first_id).await;
    assert_eq!(old["status"], "INCOMPLETE_EXPIRED");
    assert_eq!(old["checkout"]["status"], "REPLACED");
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "SUBSCRIPTION_EXPIRED",
            "SUBSCRIPTION_CREATED"
        ]
    );
    // The replaced checkout's page says so and takes no card; nothing moves.
    assert_closed(&app, &first_url).await;
    assert_eq!(
        subscription(&app, first_id).await["status"],
        "INCOMPLETE_EXPIRED"
    );

    // The new one is paid as usual; a live subscription is not replaced.
    let paid = pay(
        &app,
        second["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    assert!(paid.status().is_redirection());
    let third = app
        .gql_as(
            Some(&token),
            SUBSCRIBE,
            subscribe_input(&customer, &plan, None),
        )
        .await;
    third.expect_code("ALREADY_SUBSCRIBED");
}

#[tokio::test]
async fn an_unpaid_subscription_grants_nothing() {
    let app = TestApp::spawn().await;
    limited(&app, "Free", "0", 2).await; // the first plan is the default
    let pro = limited(&app, "Pro", "30", 100).await;
    let metered = app
        .admin(
            r#"mutation { createProduct(input: { name: "Bandwidth", kind: METERED_RESOURCE, resource: "bandwidth", unitType: "GB" }) { id } }"#,
            json!({}),
        )
        .await
        .ok()["createProduct"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &pro).await;
    assert_eq!(out["subscription"]["status"], "INCOMPLETE");
    let sub = out["subscription"]["id"].as_str().unwrap();

    // Until it is paid, the default plan's limits apply and no usage is taken.
    assert_eq!(computations_limit(&app, &customer).await, 2);
    let usage = app
        .admin(
            "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id } }",
            json!({ "i": { "subscriptionId": sub, "productId": metered, "quantity": "5", "idempotencyKey": "u1" } }),
        )
        .await;
    usage.expect_code("INVALID_STATE");

    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    assert_eq!(subscription(&app, sub).await["status"], "ACTIVE");
    assert_eq!(computations_limit(&app, &customer).await, 100);
}

#[tokio::test]
async fn a_change_from_a_free_plan_to_a_paid_one_waits_for_its_payment() {
    let app = TestApp::spawn().await;
    let free = limited(&app, "Free", "0", 2).await;
    let pro = limited(&app, "Pro", "30", 100).await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &free).await;
    assert_eq!(out["subscription"]["status"], "ACTIVE");
    let sub = out["subscription"]["id"].as_str().unwrap();

    // Without the URLs its checkout needs, the change is refused and nothing moves.
    let vars = json!({ "s": sub, "p": pro });
    app.gql_as(Some(&token), CHANGE, vars.clone())
        .await
        .expect_code("BAD_USER_INPUT");

    let mut vars = vars;
    vars["ok"] = json!("https://app.example/billing?upgraded=1");
    vars["no"] = json!("https://app.example/billing");
    let changed = app.gql_as(Some(&token), CHANGE, vars).await;
    let changed = &changed.ok()["changePlan"];
    assert_eq!(
        changed["subscription"]["plan"]["id"],
        free.as_str(),
        "not yet"
    );
    assert_eq!(changed["checkout"]["status"], "OPEN");
    assert_eq!(changed["checkout"]["amount"], "30.00");
    assert_eq!(computations_limit(&app, &customer).await, 2);

    let paid = pay(
        &app,
        changed["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    assert!(paid.status().is_redirection());
    assert_eq!(
        paid.headers()["location"],
        "https://app.example/billing?upgraded=1"
    );
    let now = subscription(&app, sub).await;
    assert_eq!(
        (now["status"].as_str(), now["plan"]["id"].as_str()),
        (Some("ACTIVE"), Some(pro.as_str()))
    );
    assert_eq!(computations_limit(&app, &customer).await, 100);
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds[kinds.len() - 5..],
        [
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "PLAN_CHANGED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
    // The change's invoice: the whole first month of Pro, paid by the checkout.
    let invoices = app
        .admin(
            "query($c: ID!) { invoices(customerId: $c) { edges { node { kind total amountDue status lines { kind amount } } } } }",
            json!({ "c": customer }),
        )
        .await;
    let change = invoices.ok()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["node"]
        .clone();
    assert_eq!(
        (
            change["kind"].as_str(),
            change["total"].as_str(),
            change["amountDue"].as_str(),
            change["status"].as_str()
        ),
        (Some("CHANGE"), Some("30.00"), Some("0.00"), Some("PAID"))
    );
}

#[tokio::test]
async fn an_unpaid_plan_change_expires_and_leaves_the_plan_as_it_was() {
    let app = TestApp::spawn().await;
    let free = limited(&app, "Free", "0", 2).await;
    let pro = limited(&app, "Pro", "30", 100).await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let sub = subscribe(&app, &token, &customer, &free).await["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vars = json!({ "s": sub, "p": pro, "ok": "https://app.example/ok", "no": "https://app.example/no" });
    let changed = app.gql_as(Some(&token), CHANGE, vars).await;
    let url = changed.ok()["changePlan"]["checkout"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    advance(&app, chrono::TimeDelta::hours(24)).await;
    let now = subscription(&app, &sub).await;
    assert_eq!(now["status"], "ACTIVE", "the subscription itself goes on");
    assert_eq!(now["plan"]["id"], free.as_str());
    assert_eq!(now["checkout"]["status"], "EXPIRED");
    assert_closed(&app, &url).await;
    assert_eq!(subscription(&app, &sub).await["plan"]["id"], free.as_str());
}

#[tokio::test]
async fn plans_are_offered_only_in_the_currencies_they_have_prices_in() {
    let app = TestApp::spawn().await;
    let (usd_only, _) = monthly_plan(&app, "10").await;
    let euro = app
        .create_customer_with(json!({ "externalId": "eu-1", "name": "Euro GmbH", "email": "a@b.example", "currency": "EUR" }))
        .await;
    let token = app.customer_token(&euro).await;
    let refused = app
        .gql_as(
            Some(&token),
            SUBSCRIBE,
            subscribe_input(&euro, &usd_only, None),
        )
        .await;
    refused.expect_code("CURRENCY_NOT_OFFERED");
    assert!(event_kinds(&app, &euro).await.is_empty(), "nothing written");
    let plans = app
        .gql_as(
            Some(&token),
            "query($c: ID!) { customer(id: $c) { availablePlans { id } } }",
            json!({ "c": euro }),
        )
        .await;
    assert_eq!(plans.ok()["customer"]["availablePlans"], json!([]));
    let usd = app.create_customer("us-1").await;
    let usd_token = app.customer_token(&usd).await;
    let plans = app
        .gql_as(
            Some(&usd_token),
            "query($c: ID!) { customer(id: $c) { availablePlans { id } } }",
            json!({ "c": usd }),
        )
        .await;
    assert_eq!(
        plans.ok()["customer"]["availablePlans"],
        json!([{ "id": usd_only }])
    );
}

#[tokio::test]
async fn a_pending_payment_approved_after_the_checkout_expired_is_refunded() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "25").await;
    let customer = app.create_customer("p").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap().to_owned();
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        pay(&app, &url, "4000000000000077").await.status().as_u16(),
        200
    );
    advance(&app, chrono::TimeDelta::hours(24)).await;
    assert_eq!(
        subscription(&app, &sub).await["status"],
        "INCOMPLETE_EXPIRED"
    );

    // The bank approves it late: the money arrives, and goes straight back.
    let settle = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    settle
        .post(format!("{url}/settle"))
        .form(&[("success", "true")])
        .send()
        .await
        .unwrap();
    let after = subscription(&app, &sub).await;
    assert_eq!(
        after["status"], "INCOMPLETE_EXPIRED",
        "nothing paid is given for a closed checkout"
    );
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "PAYMENT_PENDING",
            "SUBSCRIPTION_EXPIRED",
            "PAYMENT_REFUNDED"
        ]
    );
    let refunded = app
        .admin(
            "query($c: ID) { billingEvents(customerId: $c) { kind data } }",
            json!({ "c": customer }),
        )
        .await;
    let last = refunded.ok()["billingEvents"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["data"]["amount"], "25.00");
    assert_eq!(last["data"]["currency"], "USD");

    // The webhook delivered again (or the reconciler asking) refunds nothing more.
    advance(&app, chrono::TimeDelta::hours(2)).await;
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(kinds.iter().filter(|k| *k == "PAYMENT_REFUNDED").count(), 1);
}

#[tokio::test]
async fn the_end_of_a_trial_is_recorded_as_a_status_change() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app
        .create_plan(json!({ "name": "Trial", "phases": [
            { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": [
                { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] },
            { "kind": "FINAL", "prices": [
                { "productId": container, "currency": "USD", "unitAmount": "10", "interval": "MONTH" } ] } ] }))
        .await;
    let customer = app.create_customer("t").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let sub = out["subscription"]["id"].as_str().unwrap();
    assert_eq!(subscription(&app, sub).await["status"], "TRIALING");
    advance(&app, chrono::TimeDelta::days(15)).await;
    assert_eq!(subscription(&app, sub).await["status"], "ACTIVE");
    let events = app
        .admin(
            "query($c: ID) { billingEvents(customerId: $c) { kind data } }",
            json!({ "c": customer }),
        )
        .await;
    let trial_end: Vec<_> = events.ok()["billingEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "SUBSCRIPTION_ACTIVATED" && e["data"]["from"] == "TRIALING")
        .cloned()
        .collect();
    assert_eq!(trial_end.len(), 1, "{events:?}", events = events.body);
    assert_eq!(trial_end[0]["data"]["status"], "ACTIVE");
}

#[tokio::test]
async fn the_cancel_link_closes_the_checkout_before_the_browser_reaches_the_cancel_url() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("a").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap().to_owned();
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert!(page.contains(&format!("action=\"{id}/abandon\"")), "{page}");
    let left = browser.post(format!("{url}/abandon")).send().await.unwrap();
    assert_eq!(left.status().as_u16(), 303);
    assert_eq!(left.headers()["location"], "https://app.example/plans");
    // By the time the browser is back, the subscription is closed and the page says so.
    let now = subscription(&app, &sub).await;
    assert_eq!(now["status"], "INCOMPLETE_EXPIRED");
    assert_eq!(now["checkout"]["status"], "ABANDONED");
    assert_closed(&app, &url).await;
    assert_eq!(
        event_kinds(&app, &customer).await,
        ["SUBSCRIPTION_CREATED", "SUBSCRIPTION_EXPIRED"]
    );
    // The customer can try again at once.
    let again = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(again["subscription"]["status"], "INCOMPLETE");
}

#[tokio::test]
async fn canceling_an_unpaid_subscription_closes_its_checkout() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("a").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap().to_owned();
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    app.gql_as(
        Some(&token),
        "mutation($s: ID!) { cancelSubscription(id: $s) { status } }",
        json!({ "s": sub }),
    )
    .await
    .ok();
    assert_eq!(subscription(&app, &sub).await["status"], "CANCELED");
    assert_closed(&app, &url).await;
}

#[tokio::test]
async fn a_paid_plan_change_with_an_idempotency_key_opens_one_checkout() {
    let app = TestApp::spawn().await;
    let free = limited(&app, "Free", "0", 2).await;
    let pro = limited(&app, "Pro", "30", 100).await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let sub = subscribe(&app, &token, &customer, &free).await["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    const KEYED: &str = "mutation($s: ID!, $p: ID!, $k: String) {
        changePlan(subscriptionId: $s, planId: $p, idempotencyKey: $k,
                   successUrl: \"https://app.example/ok\", cancelUrl: \"https://app.example/no\") {
            checkout { id url } } }";
    let vars = json!({ "s": sub, "p": pro, "k": "upgrade-1" });
    let first = app.gql_as(Some(&token), KEYED, vars.clone()).await;
    let again = app.gql_as(Some(&token), KEYED, vars).await;
    let first = first.ok()["changePlan"]["checkout"].clone();
    assert_eq!(
        again.ok()["changePlan"]["checkout"],
        first,
        "the retry replays the first answer"
    );
    // The first checkout is still the one to pay: a retry did not replace it.
    assert_eq!(subscription(&app, &sub).await["checkout"]["status"], "OPEN");
    let other = app
        .gql_as(
            Some(&token),
            KEYED,
            json!({ "s": sub, "p": free, "k": "upgrade-1" }),
        )
        .await;
    other.expect_code("IDEMPOTENCY_KEY_REUSED");
}
