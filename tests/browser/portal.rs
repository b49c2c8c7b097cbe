//! The customer portal in a real browser: what the customer sees, cancel at period end
//! pressed and recorded; and what the checkout page says about the plan.

use serde_json::json;

use crate::flows::{invoiced, subscribe};
use crate::harness::{Browser, Landing};
use crate::helpers::TestApp;

#[tokio::test]
async fn the_customer_opens_the_portal_sees_their_billing_and_cancels_at_period_end() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let (customer, sub, inv) = invoiced(&app, &landing).await;
    let token = app.customer_token(&customer).await;
    let res = app
        .gql_as(
            Some(&token),
            "mutation($c: ID!, $r: String!) { createPortalSession(customerId: $c, returnUrl: $r) { url } }",
            json!({ "c": customer, "r": landing.url("/account") }),
        )
        .await;
    let url = res.ok()["createPortalSession"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let browser = Browser::start().await;

    browser.open(&url).await;
    let text = browser.wait_for_text("Billing for Hopper Labs").await;
    for seen in [
        "Example Merchant Ltd",
        "Monthly",
        "Regular price",
        "Next invoice",
        inv["number"].as_str().unwrap(),
        "Update payment method",
    ] {
        assert!(text.contains(seen), "the portal shows {seen:?}:\n{text}");
    }
    assert_eq!(
        browser.element("#plan").await.text().await.unwrap(),
        "Monthly"
    );
    // The invoice's document opens from the portal.
    let href = browser
        .element("#invoices a")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, inv["hostedUrl"].as_str().unwrap());

    browser.click_button("Cancel at period end").await;
    browser
        .wait_for_text("will be canceled at the end of the current billing period")
        .await;
    let text = browser
        .wait_for_text("Cancels at the end of the period")
        .await;
    assert!(!text.contains("Cancel at period end"), "{text}");
    let res = app
        .admin(
            "query($s: ID!) { subscription(id: $s) { status cancelAtPeriodEnd } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "ACTIVE", "cancelAtPeriodEnd": true })
    );

    // Back to the application.
    browser.click("#return").await;
    browser.wait_for_url(&landing.url("/account")).await;
    browser.close().await;
}

#[tokio::test]
async fn the_checkout_page_says_who_sells_which_plan_and_what_follows_the_trial() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let price = |amount: &str| json!([{ "productId": container, "currency": "USD", "unitAmount": amount, "interval": "MONTH" }]);
    let plan = app
        .create_plan(json!({ "name": "Pro", "phases": [
            { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": price("0") },
            { "kind": "FINAL", "prices": price("12.50") } ] }))
        .await;
    let customer = app.create_customer("browser-terms").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    let text = browser.wait_for_text("Free for 14 days").await;
    assert_eq!(
        browser.element("#merchant").await.text().await.unwrap(),
        "Paying Example Merchant Ltd"
    );
    assert_eq!(
        browser.element("#plan").await.text().await.unwrap(),
        "Plan: Pro"
    );
    assert_eq!(
        browser.element("#terms").await.text().await.unwrap(),
        "Free for 14 days, then 12.50 USD per month"
    );
    assert!(text.contains("per month"), "{text}");
    browser.close().await;
}
