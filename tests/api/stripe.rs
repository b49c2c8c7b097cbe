//! The whole flow through the stripe provider, against localstripe (a fake Stripe server):
//! customer, PaymentIntent, the card confirmed with Stripe (as Stripe.js does in the
//! browser; no card reaches our server), the page's report, localstripe's signed webhook,
//! activation.

use serde_json::{Value, json};

use crate::helpers::{TestApp, three_phase_plan};
use crate::subscriptions::{event_kinds, monthly_plan};

const WEBHOOK_SECRET: &str = "whsec_localstripe_test";
const PUBLISHABLE_KEY: &str = "pk_test_localstripe";

/// What a customer does on the Stripe page, as the browser would: Stripe.js (here, what
/// localstripe's fake does) confirms the page's SetupIntent with the card at Stripe; then
/// the page posts only that intent's id to our server.
async fn pay(app: &TestApp, url: &str, card: &str) -> reqwest::Response {
    let api = std::env::var("LOCALSTRIPE_URL").unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert!(url.starts_with(&app.base), "{url} is served by this server");
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let value_of = |marker: &str| {
        let start = html
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {html}"))
            + marker.len();
        html[start..].split('"').next().unwrap().to_owned()
    };
    let secret = value_of("data-secret=\"");
    let intent = value_of("name=\"intent\" value=\"");
    let number: String = card.chars().filter(char::is_ascii_digit).collect();
    let body = json!({
        "key": PUBLISHABLE_KEY, "use_stripe_sdk": true, "client_secret": secret,
        "payment_method_data": {"type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"}},
    });
    let confirmed = browser
        .post(format!("{api}/v1/setup_intents/{intent}/confirm"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let message = if confirmed.status().is_success() {
        String::new()
    } else {
        let answer: Value = confirmed.json().await.unwrap();
        answer["error"]["message"]
            .as_str()
            .unwrap_or("failed")
            .to_owned()
    };
    browser
        .post(url)
        .form(&[("intent", intent.as_str()), ("message", message.as_str())])
        .send()
        .await
        .unwrap()
}

/// A server with the stripe provider pointed at localstripe, and localstripe's webhooks
/// pointed at the server. None (skipped) without localstripe, except in CI.
async fn stripe_app(name: &str) -> Option<TestApp> {
    let Ok(api) = std::env::var("LOCALSTRIPE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run localstripe and set LOCALSTRIPE_URL"
        );
        eprintln!("{name}: LOCALSTRIPE_URL is not set; skipped");
        return None;
    };
    let app = TestApp::spawn_with(
        |c| {
            c.providers = vec!["sandbox".into(), "stripe".into()];
            c.stripe_api_key = Some("sk_test_localstripe".into());
            c.stripe_api_base = api.clone();
            c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
            c.stripe_publishable_key = Some(PUBLISHABLE_KEY.into());
            c.stripe_js_url = format!("{api}/js.stripe.com/v3/");
            c.provider_timeout_ms = 10_000;
        },
        Vec::new(),
    )
    .await;
    let hook = app
        .client
        .post(format!("{api}/_config/webhooks/billing-server-{name}"))
        .form(&[
            ("url", format!("{}/providers/stripe/webhook", app.base)),
            ("secret", WEBHOOK_SECRET.into()),
        ])
        .send()
        .await
        .expect("localstripe answers");
    assert!(hook.status().is_success());
    Some(app)
}

async fn subscribe_with_stripe(app: &TestApp, customer: &str, plan: &str) -> Value {
    let res = app
        .admin(
            "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id status } checkout { url amount provider } } }",
            json!({ "i": { "customerId": customer, "planId": plan, "provider": "stripe",
                           "successUrl": "https://app.example/ok", "cancelUrl": "https://app.example/no" } }),
        )
        .await;
    res.ok()["createSubscription"].clone()
}

async fn wait_for_status(app: &TestApp, sub: &str, want: &str) -> String {
    // localstripe delivers its webhook right after the confirmation; give it a moment.
    let mut last = String::new();
    for _ in 0..50 {
        let res = app
            .admin(
                "query($id: ID!) { subscription(id: $id) { status } }",
                json!({ "id": sub }),
            )
            .await;
        last = res.ok()["subscription"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if last == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn a_card_payment_through_stripe_activates_the_subscription() {
    let Some(app) = stripe_app("pay").await else {
        return;
    };
    let (plan, _) = monthly_plan(&app, "12.50").await;
    let customer = app.create_customer("stripe-project").await;
    let out = subscribe_with_stripe(&app, &customer, &plan).await;
    assert_eq!(out["checkout"]["provider"], "stripe");
    assert_eq!(out["checkout"]["amount"], "12.50");
    let url = out["checkout"]["url"].as_str().unwrap();
    assert!(url.contains("/providers/stripe/checkout/pi_"), "{url}");

    let done = pay(&app, url, "4242424242424242").await;
    assert_eq!(done.status().as_u16(), 303);
    assert_eq!(done.headers()["location"], "https://app.example/ok");
    // The page reported the payment before it redirected: active at once, no webhook needed.
    let sub = out["subscription"]["id"].as_str().unwrap();
    assert_eq!(status(&app, sub).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
    // Saving the card at checkout also reports PAYMENT_DETAILS_UPDATED, in whatever order
    // localstripe sends its webhooks; the checkout's own events come in this order.
    let checkout: Vec<&String> = kinds
        .iter()
        .filter(|k| *k != "PAYMENT_DETAILS_UPDATED")
        .collect();
    assert_eq!(
        checkout,
        [
            "SUBSCRIPTION_CREATED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ],
        "{kinds:?}"
    );

    // The payment details page replaces the default card: one more PAYMENT_DETAILS_UPDATED.
    let updates = |kinds: &[String]| {
        kinds
            .iter()
            .filter(|k| *k == "PAYMENT_DETAILS_UPDATED")
            .count()
    };
    let before = updates(&kinds);
    let res = app
        .admin("mutation($c: ID!) { updatePaymentDetails(customerId: $c, returnUrl: \"https://app.example/settings\") { url } }", json!({ "c": customer }))
        .await;
    let details = res.ok()["updatePaymentDetails"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let saved = pay(&app, &details, "5555555555554444").await;
    assert_eq!(saved.status().as_u16(), 303);
    let mut updated = false;
    for _ in 0..50 {
        if updates(&event_kinds(&app, &customer).await) > before {
            updated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(updated, "{:?}", event_kinds(&app, &customer).await);
}

#[tokio::test]
async fn a_declined_card_through_stripe_is_reported_at_once_then_a_good_card_activates() {
    let Some(app) = stripe_app("decline").await else {
        return;
    };
    let (plan, _) = monthly_plan(&app, "30").await;
    let customer = app.create_customer("stripe-declined").await;
    let out = subscribe_with_stripe(&app, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap();
    let declined = pay(&app, url, "4000000000000002").await;
    assert_eq!(declined.status().as_u16(), 402, "no redirect on a decline");
    let html = declined.text().await.unwrap();
    assert!(html.contains("Your card was declined."), "{html}");
    let sub = out["subscription"]["id"].as_str().unwrap();
    // Recorded before the page answered.
    let kinds = event_kinds(&app, &customer).await;
    assert!(kinds.contains(&"PAYMENT_FAILED".to_owned()), "{kinds:?}");
    assert_eq!(status(&app, sub).await, "INCOMPLETE");

    let paid = pay(&app, url, "4242424242424242").await;
    assert_eq!(paid.status().as_u16(), 303);
    assert_eq!(paid.headers()["location"], "https://app.example/ok");
    assert_eq!(status(&app, sub).await, "ACTIVE");

    // A card declined when charged (saved fine): failed too, from the page and the webhook.
    let customer = app.create_customer("stripe-declined-later").await;
    let out = subscribe_with_stripe(&app, &customer, &plan).await;
    let declined = pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4000000000000341",
    )
    .await;
    assert_eq!(declined.status().as_u16(), 402);
    let kinds = event_kinds(&app, &customer).await;
    assert!(kinds.contains(&"PAYMENT_FAILED".to_owned()), "{kinds:?}");
    let sub = out["subscription"]["id"].as_str().unwrap();
    assert_eq!(wait_for_status(&app, sub, "INCOMPLETE").await, "INCOMPLETE");
}

#[tokio::test]
async fn a_trial_checkout_through_stripe_is_trialing_when_the_browser_is_back() {
    let Some(app) = stripe_app("trial").await else {
        return;
    };
    let product = app.create_product("Container", "PACKAGE", None).await;
    let plan = app.create_plan(three_phase_plan("Trial", &product)).await;
    let customer = app.create_customer("stripe-trial").await;
    let out = subscribe_with_stripe(&app, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap();
    assert!(url.contains("/providers/stripe/checkout/seti_"), "{url}");
    let saved = pay(&app, url, "4242424242424242").await;
    assert_eq!(saved.status().as_u16(), 303);
    assert_eq!(saved.headers()["location"], "https://app.example/ok");
    // localstripe sends no setup_intent webhook: this is the page's report, not a poll.
    let sub = out["subscription"]["id"].as_str().unwrap();
    assert_eq!(status(&app, sub).await, "TRIALING");
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
