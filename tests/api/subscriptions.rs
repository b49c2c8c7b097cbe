use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{TestApp, three_phase_plan};

pub const SUBSCRIBE: &str =
    "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) {
    subscription { id status currentPhase startedAt customer { id billingStart } plan { id } }
    checkout { id url status amount currency expiresAt } } }";

/// A plan with one FINAL phase: the container at `monthly` USD per month.
pub async fn monthly_plan(app: &TestApp, monthly: &str) -> (String, String) {
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app
        .create_plan(json!({ "name": "Monthly", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": monthly, "interval": "MONTH" } ] }] }))
        .await;
    (plan, container)
}

pub fn subscribe_input(customer: &str, plan: &str, key: Option<&str>) -> Value {
    json!({ "i": { "customerId": customer, "planId": plan, "successUrl": "https://app.example/projects?paid=1",
                   "cancelUrl": "https://app.example/plans", "idempotencyKey": key } })
}

pub async fn subscribe(app: &TestApp, token: &str, customer: &str, plan: &str) -> Value {
    let res = app
        .gql_as(
            Some(token),
            SUBSCRIBE,
            subscribe_input(customer, plan, None),
        )
        .await;
    res.ok()["createSubscription"].clone()
}

/// [`subscribe`], then the checkout paid with the card that succeeds: the subscription id.
pub async fn subscribe_and_pay(app: &TestApp, token: &str, customer: &str, plan: &str) -> String {
    let out = subscribe(app, token, customer, plan).await;
    pay(
        app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    out["subscription"]["id"].as_str().unwrap().to_owned()
}

/// What a browser does on the sandbox's checkout page: submit a card.
pub async fn pay(app: &TestApp, url: &str, card: &str) -> reqwest::Response {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert!(url.starts_with(&app.base), "{url} is served by this server");
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    browser
        .post(url)
        .form(&[("card_number", card), ("expiry", "12/34"), ("cvc", "123")])
        .send()
        .await
        .unwrap()
}

pub async fn event_kinds(app: &TestApp, customer: &str) -> Vec<String> {
    let res = app
        .admin(
            "query($c: ID) { billingEvents(customerId: $c) { kind } }",
            json!({ "c": customer }),
        )
        .await;
    res.ok()["billingEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn status(app: &TestApp, sub: &str) -> String {
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status } }",
            json!({ "id": sub }),
        )
        .await;
    res.ok()["subscription"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_customer_pays_on_the_checkout_page_and_lands_on_success_active() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("project-1").await;
    let token = app.customer_token(&customer).await;

    let out = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(out["subscription"]["status"], "INCOMPLETE");
    assert_eq!(out["checkout"]["amount"], "10.00");
    assert_eq!(out["checkout"]["status"], "OPEN");
    assert!(
        out["subscription"]["customer"]["billingStart"].is_string(),
        "the first subscription sets billingStart"
    );
    let url = out["checkout"]["url"].as_str().unwrap();
    let page = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(page.contains("10.00"), "the page shows the amount");

    let done = pay(&app, url, "4242 4242 4242 4242").await;
    assert_eq!(done.status().as_u16(), 303);
    assert_eq!(
        done.headers()["location"],
        "https://app.example/projects?paid=1"
    );

    let sub = out["subscription"]["id"].as_str().unwrap();
    let res = app
        .gql_as(
            Some(&token),
            "query($id: ID!) { subscription(id: $id) { status startedAt checkout { status } } }",
            json!({ "id": sub }),
        )
        .await;
    let s = res.ok()["subscription"].clone();
    assert_eq!(
        (s["status"].as_str(), s["checkout"]["status"].as_str()),
        (Some("ACTIVE"), Some("SUCCEEDED"))
    );
    assert!(s["startedAt"].is_string());
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
}

#[tokio::test]
async fn a_trial_plan_saves_the_card_and_starts_trialing() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let mut plan = three_phase_plan("Pro", &container);
    plan["phases"][2]["prices"][0]["interval"] = json!("MONTH");
    let plan = app.create_plan(plan).await;
    let customer = app.create_customer("p").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(
        out["checkout"]["amount"], "0.00",
        "nothing is due in the trial"
    );
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let sub = out["subscription"]["id"].as_str().unwrap();
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status currentPhase } }",
            json!({ "id": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "TRIALING", "currentPhase": "TRIAL" })
    );
    let kinds = event_kinds(&app, &customer).await;
    assert!(
        !kinds.contains(&"PAYMENT_SUCCEEDED".to_owned()),
        "nothing was charged: {kinds:?}"
    );
}

#[tokio::test]
async fn a_free_plan_is_active_at_once_without_checkout() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "0").await;
    let customer = app.create_customer("p").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(out["subscription"]["status"], "ACTIVE");
    assert_eq!(out["checkout"], Value::Null);
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
}

#[tokio::test]
async fn a_declined_card_can_be_retried_and_a_pending_one_settles_later() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "25").await;
    let customer = app.create_customer("p").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap();
    let sub = out["subscription"]["id"].as_str().unwrap();

    let declined = pay(&app, url, "4000000000000002").await;
    assert_eq!(declined.status().as_u16(), 402);
    assert_eq!(status(&app, sub).await, "INCOMPLETE");
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { checkout { status failureReason } } }",
            json!({ "id": sub }),
        )
        .await;
    assert_eq!(res.ok()["subscription"]["checkout"]["status"], "FAILED");

    let pending = pay(&app, url, "4000000000000077").await;
    assert_eq!(pending.status().as_u16(), 200);
    assert_eq!(status(&app, sub).await, "INCOMPLETE");
    let settle = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let settled = settle
        .post(format!("{url}/settle"))
        .form(&[("success", "true")])
        .send()
        .await
        .unwrap();
    assert!(settled.status().is_redirection() || settled.status().is_success());
    assert_eq!(status(&app, sub).await, "ACTIVE");
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "PAYMENT_FAILED",
            "PAYMENT_PENDING",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
}

#[tokio::test]
async fn one_live_subscription_per_customer_even_when_a_hundred_requests_race() {
    // The race is about the database; a provider slowed by a hundred sessions at once must
    // not time out (the tests' usual limit is 1 s).
    let app = Arc::new(TestApp::spawn_with(|c| c.provider_timeout_ms = 20_000, Vec::new()).await);
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("racer").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (app, customer, plan) = (app.clone(), customer.clone(), plan.clone());
        tasks.spawn(async move {
            app.admin(SUBSCRIBE, subscribe_input(&customer, &plan, None))
                .await
        });
    }
    let (mut ok, mut no_checkout) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        let res = res.unwrap();
        match res.error_code() {
            None => ok += 1,
            // Two writers that meet on PostgreSQL: the later one is refused, not doubled.
            Some("ALREADY_SUBSCRIBED") => {}
            // Should the provider still time out, that subscription is closed at once, so
            // the customer can try again.
            Some("PAYMENT_PROVIDER_ERROR") => no_checkout += 1,
            Some(other) => panic!("unexpected {other}: {}", res.body),
        }
    }
    assert!(ok >= 1);
    // An unpaid subscription is replaced by the next try: of all that were created, one
    // is live, and every other one ended with its checkout closed.
    let res = app
        .admin(
            "query($c: ID!) { customer(id: $c) { subscriptions { status checkout { status } } } }",
            json!({ "c": customer }),
        )
        .await;
    let subs = res.ok()["customer"]["subscriptions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(subs.len(), ok + no_checkout, "one subscription per answer");
    let live: Vec<_> = subs
        .iter()
        .filter(|s| s["status"] == "INCOMPLETE")
        .collect();
    assert_eq!(live.len(), 1, "one live subscription: {subs:?}");
    assert_eq!(live[0]["checkout"]["status"], "OPEN");
    for s in subs.iter().filter(|s| s["status"] != "INCOMPLETE") {
        assert_eq!(s["status"], "INCOMPLETE_EXPIRED");
        assert!(
            s["checkout"].is_null() || s["checkout"]["status"] == "REPLACED",
            "{s}"
        );
    }
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_result_and_refuse_other_input() {
    let app = Arc::new(TestApp::spawn().await);
    let (plan, _) = monthly_plan(&app, "10").await;
    let (other_plan, _) = monthly_plan(&app, "20").await;
    let customer = app.create_customer("c").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (app, customer, plan) = (app.clone(), customer.clone(), plan.clone());
        tasks.spawn(async move {
            app.admin(SUBSCRIBE, subscribe_input(&customer, &plan, Some("key-1")))
                .await
        });
    }
    let mut answers = std::collections::HashSet::new();
    while let Some(res) = tasks.join_next().await {
        let res = res.unwrap();
        let out = &res.ok()["createSubscription"];
        answers.insert((
            out["subscription"]["id"].to_string(),
            out["checkout"]["url"].to_string(),
        ));
    }
    assert_eq!(
        answers.len(),
        1,
        "50 calls with one key did the work once: {answers:?}"
    );
    assert_eq!(event_kinds(&app, &customer).await, ["SUBSCRIPTION_CREATED"]);

    let reused = app
        .admin(
            SUBSCRIBE,
            subscribe_input(&customer, &other_plan, Some("key-1")),
        )
        .await;
    reused.expect_code("IDEMPOTENCY_KEY_REUSED");
    // Keys are scoped to the caller: the customer's own key space is separate, so the
    // same key is new work (which replaces the unpaid subscription).
    let token = app.customer_token(&customer).await;
    let own = app
        .gql_as(
            Some(&token),
            SUBSCRIBE,
            subscribe_input(&customer, &plan, Some("key-1")),
        )
        .await;
    let own = &own.ok()["createSubscription"];
    let first = answers
        .iter()
        .next()
        .unwrap()
        .0
        .trim_matches('"')
        .to_owned();
    assert_ne!(own["subscription"]["id"].as_str(), Some(first.as_str()));
    assert_eq!(status(&app, &first).await, "INCOMPLETE_EXPIRED");
}

#[tokio::test]
async fn an_abandoned_checkout_expires_after_23_hours() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let sub = out["subscription"]["id"].as_str().unwrap();
    let now = app.billing.clock.now();
    let almost = (now + chrono::TimeDelta::hours(23) - chrono::TimeDelta::seconds(1)).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": almost }),
    )
    .await
    .ok();
    assert_eq!(status(&app, sub).await, "INCOMPLETE");
    let later = (now + chrono::TimeDelta::hours(23)).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": later }),
    )
    .await
    .ok();
    assert_eq!(status(&app, sub).await, "INCOMPLETE_EXPIRED");
    assert_eq!(
        event_kinds(&app, &customer).await,
        ["SUBSCRIPTION_CREATED", "SUBSCRIPTION_EXPIRED"]
    );
    // The customer may subscribe again.
    let again = subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(again["subscription"]["status"], "INCOMPLETE");
}

#[tokio::test]
async fn subscriptions_are_canceled_now_or_at_period_end_and_change_plan() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "0").await;
    let (bigger, _) = monthly_plan(&app, "0").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let sub = out["subscription"]["id"].as_str().unwrap();

    let changed = app
        .gql_as(Some(&token), "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { subscription { plan { id } } checkout { id } } }", json!({ "s": sub, "p": bigger }))
        .await;
    assert_eq!(
        changed.ok()["changePlan"]["subscription"]["plan"]["id"],
        bigger.as_str()
    );
    assert!(changed.ok()["changePlan"]["checkout"].is_null());
    let same = app
        .gql_as(
            Some(&token),
            "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { subscription { id } } }",
            json!({ "s": sub, "p": bigger }),
        )
        .await;
    same.expect_code("BAD_USER_INPUT");

    let scheduled = app
        .gql_as(Some(&token), "mutation($s: ID!) { cancelSubscription(id: $s, atPeriodEnd: true) { status cancelAtPeriodEnd canceledAt } }", json!({ "s": sub }))
        .await;
    let s = scheduled.ok()["cancelSubscription"].clone();
    assert_eq!(
        (s["status"].as_str(), s["cancelAtPeriodEnd"].as_bool()),
        (Some("ACTIVE"), Some(true))
    );
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": s["canceledAt"] }),
    )
    .await
    .ok();
    assert_eq!(status(&app, sub).await, "CANCELED");
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "SUBSCRIPTION_ACTIVATED",
            // The opening invoice (free: paid at once).
            "INVOICE_ISSUED",
            "INVOICE_PAID",
            "PLAN_CHANGED",
            // The change's invoice: nothing to prorate between two free plans.
            "INVOICE_ISSUED",
            "INVOICE_PAID",
            "CANCELLATION_SCHEDULED",
            "SUBSCRIPTION_CANCELED",
            // The period that ended with the subscription is invoiced (free: paid at once).
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
    let again = app
        .gql_as(
            Some(&token),
            "mutation($s: ID!) { cancelSubscription(id: $s) { id } }",
            json!({ "s": sub }),
        )
        .await;
    again.expect_code("INVALID_STATE");

    // Another customer's subscription is not there for this token.
    let other = app.create_customer("other").await;
    let other_token = app.customer_token(&other).await;
    let theirs = app
        .gql_as(
            Some(&other_token),
            "mutation($s: ID!) { cancelSubscription(id: $s) { id } }",
            json!({ "s": sub }),
        )
        .await;
    theirs.expect_code("NOT_FOUND");
}

#[tokio::test]
async fn payment_details_are_replaced_on_the_hosted_page() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let res = app
        .gql_as(Some(&token), "mutation($c: ID!) { updatePaymentDetails(customerId: $c, returnUrl: \"https://app.example/settings\") { url } }", json!({ "c": customer }))
        .await;
    let url = res.ok()["updatePaymentDetails"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = pay(&app, &url, "4242424242424242").await;
    assert_eq!(done.status().as_u16(), 303);
    assert_eq!(done.headers()["location"], "https://app.example/settings");
    assert_eq!(
        event_kinds(&app, &customer)
            .await
            .last()
            .map(String::as_str),
        Some("PAYMENT_DETAILS_UPDATED")
    );
}
