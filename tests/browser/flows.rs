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
