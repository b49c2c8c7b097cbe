//! The Stripe page against localstripe, whose fake Stripe.js (`/js.stripe.com/v3/`) the
//! page loads: its card element is five plain inputs (placeholders `number`, `exp_month`,
//! `exp_year` — two digits —, `cvc`, `postal_code`) where real Stripe.js has an iframe.
//!
//! Needs localstripe (`LOCALSTRIPE_URL`): under CI a missing one fails the test; elsewhere
//! the test says so and passes.

use crate::flows::{SUCCESS_PATH, event_kinds, monthly_plan, status, subscribe, trial_plan};
use crate::harness::{Browser, Landing};
use crate::helpers::TestApp;

const WEBHOOK_SECRET: &str = "whsec_localstripe_browser";

/// A server whose stripe provider talks to localstripe and whose pages load localstripe's
/// Stripe.js; localstripe's webhooks come back to it.
async fn stripe_app(name: &str) -> Option<TestApp> {
    let Ok(api) = std::env::var("LOCALSTRIPE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run localstripe and set LOCALSTRIPE_URL"
        );
        eprintln!("{name}: LOCALSTRIPE_URL is not set; skipped");
        return None;
    };
    let api = api.trim_end_matches('/').to_owned();
    let app = TestApp::spawn_with(
        |c| {
            c.providers = vec!["sandbox".into(), "stripe".into()];
            c.stripe_api_key = Some("sk_test_localstripe".into());
            c.stripe_api_base = api.clone();
            c.stripe_webhook_secret = Some(WEBHOOK_SECRET.into());
            c.stripe_publishable_key = Some("pk_test_localstripe".into());
            c.stripe_js_url = format!("{api}/js.stripe.com/v3/");
            c.provider_timeout_ms = 10_000;
        },
        Vec::new(),
    )
    .await;
    let hook = app
        .client
        .post(format!("{api}/_config/webhooks/billing-browser-{name}"))
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

/// Types a card into localstripe's fake card element and presses the page's button.
async fn pay_with(browser: &Browser, number: &str, button: &str) {
    for (field, value) in [
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "42424"),
    ] {
        browser
            .fill(&format!("#card-element input[placeholder={field}]"), value)
            .await;
    }
    browser.click_button(button).await;
}

#[tokio::test]
async fn a_card_paid_on_the_stripe_page_lands_on_success_active() {
    let Some(app) = stripe_app("pay").await else {
        return;
    };
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "12.50").await;
    let customer = app.create_customer("browser-stripe-pay").await;
    let sub = subscribe(&app, &customer, &plan, "stripe", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    let text = browser.wait_for_text("Pay 12.50 USD").await;
    assert!(text.contains("Payments by Stripe"), "{text}");
    assert_eq!(
        browser.element("#terms").await.text().await.unwrap(),
        "Paying Example Merchant Ltd · Plan: Monthly · 12.50 USD per month"
    );
    // localstripe's card element is mounted: Stripe.js loaded from the configured URL.
    browser
        .element("#card-element input[placeholder=number]")
        .await;
    pay_with(&browser, "4242424242424242", "Pay 12.50 USD").await;
    assert_eq!(
        browser.wait_for_url(&landing.url(SUCCESS_PATH)).await,
        landing.url(SUCCESS_PATH)
    );
    browser
        .wait_for_text(&format!("Landed on {SUCCESS_PATH}"))
        .await;
    // Active when the browser arrives: the page reported before redirecting.
    assert_eq!(status(&app, &sub.subscription).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
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
    browser.close().await;
}

#[tokio::test]
async fn a_declined_card_is_explained_on_the_stripe_page_then_a_good_card_pays() {
    let Some(app) = stripe_app("decline").await else {
        return;
    };
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "30").await;
    let customer = app.create_customer("browser-stripe-decline").await;
    let sub = subscribe(&app, &customer, &plan, "stripe", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    pay_with(&browser, "4000000000000002", "Pay 30.00 USD").await;
    let text = browser
        .wait_for_text("Your card was declined. Try another card.")
        .await;
    assert!(browser.url().await.starts_with(&app.base), "{text}");
    assert_eq!(status(&app, &sub.subscription).await, "INCOMPLETE");
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(kinds, ["SUBSCRIPTION_CREATED", "PAYMENT_FAILED"]);

    // The page offers a fresh card form.
    pay_with(&browser, "4242424242424242", "Pay 30.00 USD").await;
    browser.wait_for_url(&landing.url(SUCCESS_PATH)).await;
    assert_eq!(status(&app, &sub.subscription).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
    assert!(
        kinds.contains(&"SUBSCRIPTION_ACTIVATED".to_owned()),
        "{kinds:?}"
    );
    browser.close().await;
}

#[tokio::test]
async fn a_trial_saved_on_the_stripe_page_is_trialing_when_the_browser_is_back() {
    let Some(app) = stripe_app("trial").await else {
        return;
    };
    let landing = Landing::start().await;
    let plan = trial_plan(&app).await;
    let customer = app.create_customer("browser-stripe-trial").await;
    let sub = subscribe(&app, &customer, &plan, "stripe", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    browser
        .wait_for_text("Nothing is charged today: your card is saved for later payments.")
        .await;
    let terms = browser.element("#terms").await.text().await.unwrap();
    assert!(
        terms.contains("Plan: Trial · Free for 14 days, then 0.80 USD per hour"),
        "{terms}"
    );
    pay_with(&browser, "4242424242424242", "Save card").await;
    browser.wait_for_url(&landing.url(SUCCESS_PATH)).await;
    // localstripe sends no setup_intent webhook: only the page's report can do this.
    assert_eq!(status(&app, &sub.subscription).await, "TRIALING");
    browser.close().await;
}
