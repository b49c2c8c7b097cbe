//! The GraphQL steps around a checkout: a plan, a subscription whose checkout returns to the
//! landing app, and the stored state to assert.

use serde_json::json;

use crate::harness::Landing;
use crate::helpers::TestApp;

/// Where a checkout sends the browser: `/paid` on success, `/plans` when left.
pub const SUCCESS_PATH: &str = "/paid";
pub const CANCEL_PATH: &str = "/plans";

/// A plan at `monthly` USD a month; returns its id.
pub async fn monthly_plan(app: &TestApp, monthly: &str) -> String {
    let product = app.create_product("Container", "PACKAGE", None).await;
    app.create_plan(json!({ "name": "Monthly", "phases": [{ "kind": "FINAL", "prices": [
        { "productId": product, "currency": "USD", "unitAmount": monthly, "interval": "MONTH" } ] }] }))
        .await
}

/// A plan that starts with a free 14-day trial.
pub async fn trial_plan(app: &TestApp) -> String {
    let product = app.create_product("Container", "PACKAGE", None).await;
    app.create_plan(crate::helpers::three_phase_plan("Trial", &product))
        .await
}

pub struct Subscribed {
    pub subscription: String,
    pub checkout_url: String,
}

/// `createSubscription` with `provider`, returning to `landing`.
pub async fn subscribe(
    app: &TestApp,
    customer: &str,
    plan: &str,
    provider: &str,
    landing: &Landing,
) -> Subscribed {
    let res = app
        .admin(
            "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id status } checkout { url provider } } }",
            json!({ "i": { "customerId": customer, "planId": plan, "provider": provider,
                           "successUrl": landing.url(SUCCESS_PATH), "cancelUrl": landing.url(CANCEL_PATH) } }),
        )
        .await;
    let out = &res.ok()["createSubscription"];
    assert_eq!(out["subscription"]["status"], "INCOMPLETE", "{out}");
    assert_eq!(out["checkout"]["provider"], provider, "{out}");
    Subscribed {
        subscription: out["subscription"]["id"].as_str().unwrap().to_owned(),
        checkout_url: out["checkout"]["url"].as_str().unwrap().to_owned(),
    }
}

/// `updatePaymentDetails`: the hosted page's address.
pub async fn payment_details_url(app: &TestApp, customer: &str, return_url: &str) -> String {
    let res = app
        .admin(
            "mutation($c: ID!, $r: String!) { updatePaymentDetails(customerId: $c, returnUrl: $r) { url } }",
            json!({ "c": customer, "r": return_url }),
        )
        .await;
    res.ok()["updatePaymentDetails"]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn status(app: &TestApp, subscription: &str) -> String {
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status } }",
            json!({ "id": subscription }),
        )
        .await;
    res.ok()["subscription"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The customer's events, oldest first.
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

/// Pays a sandbox checkout the way its form does (set-up for tests about later pages).
pub async fn pay_by_form(url: &str, card: &str) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .post(url)
        .form(&[("card_number", card), ("expiry", "12/34"), ("cvc", "123")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "paid: {}", res.status());
}

pub async fn advance_clock(app: &TestApp, to: chrono::DateTime<chrono::Utc>) {
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": to.to_rfc3339() }),
    )
    .await
    .ok();
}

/// A customer on a 12.50 USD monthly plan, paid, with its first renewal invoiced and
/// collected a month later. Returns (customer, subscription, the invoice's documents).
pub async fn invoiced(app: &TestApp, landing: &Landing) -> (String, String, serde_json::Value) {
    let plan = monthly_plan(app, "12.50").await;
    let customer = app
        .create_customer_with(json!({ "externalId": "browser-invoice", "name": "Hopper Labs",
            "email": "grace@hopper.example",
            "address": { "line1": "7 Compiler Lane", "city": "Arlington", "postalCode": "22201", "country": "US" } }))
        .await;
    let start = app.billing.clock.now();
    let sub = subscribe(app, &customer, &plan, "sandbox", landing).await;
    pay_by_form(&sub.checkout_url, "4242424242424242").await;
    advance_clock(app, start + chrono::TimeDelta::days(32)).await;
    let res = app
        .admin(
            "query($c: ID!) { invoices(customerId: $c) { edges { node { number hostedUrl pdfUrl total status } } } }",
            json!({ "c": customer }),
        )
        .await;
    // The latest: the boundary invoice (the opening one was paid by the checkout).
    let inv = res.ok()["invoices"]["edges"]
        .as_array()
        .and_then(|e| e.last())
        .map(|e| e["node"].clone())
        .unwrap_or_default();
    assert_eq!(inv["status"], "PAID", "{inv}");
    (customer, sub.subscription, inv)
}
