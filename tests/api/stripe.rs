//! The whole flow through the stripe provider, against localstripe (a fake Stripe server):
//! customer, PaymentIntent, confirmation with a test card on our hosted page,
//! localstripe's signed webhook, activation.

use serde_json::json;

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, monthly_plan, pay};

const WEBHOOK_SECRET: &str = "whsec_localstripe_test";

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

async fn subscribe_with_stripe(app: &TestApp, customer: &str, plan: &str) -> serde_json::Value {
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
    let sub = out["subscription"]["id"].as_str().unwrap();
    assert_eq!(wait_for_status(&app, sub, "ACTIVE").await, "ACTIVE");
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
            "SUBSCRIPTION_ACTIVATED"
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
async fn a_declined_card_through_stripe_leaves_the_subscription_incomplete() {
    let Some(app) = stripe_app("decline").await else {
        return;
    };
    let (plan, _) = monthly_plan(&app, "30").await;
    let customer = app.create_customer("stripe-declined").await;
    let out = subscribe_with_stripe(&app, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap();
    let declined = pay(&app, url, "4000000000000341").await;
    assert!(
        !declined.status().is_redirection(),
        "no redirect to success on a decline"
    );
    let sub = out["subscription"]["id"].as_str().unwrap();
    let mut kinds = Vec::new();
    for _ in 0..50 {
        kinds = event_kinds(&app, &customer).await;
        if kinds.contains(&"PAYMENT_FAILED".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(kinds.contains(&"PAYMENT_FAILED".to_owned()), "{kinds:?}");
    assert_eq!(wait_for_status(&app, sub, "INCOMPLETE").await, "INCOMPLETE");
}
