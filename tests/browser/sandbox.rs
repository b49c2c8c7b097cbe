//! The sandbox's own pages, as a customer uses them: pay, be declined then pay, wait on a
//! pending payment and approve it, replace the card on file.

use crate::flows::{
    CANCEL_PATH, SUCCESS_PATH, event_kinds, monthly_plan, payment_details_url, status, subscribe,
};
use crate::harness::{Browser, Landing};
use crate::helpers::TestApp;

/// Types a card into the sandbox's form and submits it.
async fn pay_with(browser: &Browser, card: &str) {
    browser.fill("#card_number", card).await;
    browser.fill("#expiry", "12 / 34").await;
    browser.fill("#cvc", "123").await;
    browser.click("button[type=submit]").await;
}

#[tokio::test]
async fn a_customer_pays_on_the_sandbox_page_and_lands_on_success_active() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "12.50").await;
    let customer = app.create_customer("browser-sandbox-pay").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    let text = browser.wait_for_text("Pay 12.50").await;
    assert!(text.contains("12.50"), "{text}");
    pay_with(&browser, "4242 4242 4242 4242").await;
    assert_eq!(
        browser.wait_for_url(&landing.url(SUCCESS_PATH)).await,
        landing.url(SUCCESS_PATH)
    );
    browser
        .wait_for_text(&format!("Landed on {SUCCESS_PATH}"))
        .await;
    assert_eq!(status(&app, &sub.subscription).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds,
        [
            "SUBSCRIPTION_CREATED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
    browser.close().await;
}

#[tokio::test]
async fn a_declined_card_is_explained_on_the_sandbox_page_then_another_card_pays() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "20").await;
    let customer = app.create_customer("browser-sandbox-decline").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    pay_with(&browser, "4000 0000 0000 0002").await;
    let text = browser
        .wait_for_text("Payment failed: card declined. Try another card.")
        .await;
    assert!(browser.url().await.starts_with(&app.base), "{text}");
    assert_eq!(status(&app, &sub.subscription).await, "INCOMPLETE");
    assert!(
        event_kinds(&app, &customer)
            .await
            .contains(&"PAYMENT_FAILED".to_owned())
    );

    pay_with(&browser, "4242 4242 4242 4242").await;
    browser.wait_for_url(&landing.url(SUCCESS_PATH)).await;
    assert_eq!(status(&app, &sub.subscription).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds,
        [
            "SUBSCRIPTION_CREATED",
            "PAYMENT_FAILED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
    browser.close().await;
}

#[tokio::test]
async fn a_pending_payment_waits_on_the_sandbox_page_until_it_is_approved() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "9").await;
    let customer = app.create_customer("browser-sandbox-pending").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    pay_with(&browser, "4000 0000 0000 0077").await;
    let text = browser.wait_for_text("Payment pending.").await;
    assert!(text.contains("Approve the payment"), "{text}");
    assert!(text.contains("Decline the payment"), "{text}");
    assert_eq!(status(&app, &sub.subscription).await, "INCOMPLETE");
    assert!(
        event_kinds(&app, &customer)
            .await
            .contains(&"PAYMENT_PENDING".to_owned())
    );

    browser.click_button("Approve the payment").await;
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
async fn the_card_on_file_is_replaced_on_the_sandbox_payment_details_page() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "5").await;
    let customer = app.create_customer("browser-sandbox-details").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;
    browser.open(&sub.checkout_url).await;
    pay_with(&browser, "4242 4242 4242 4242").await;
    browser.wait_for_url(&landing.url(SUCCESS_PATH)).await;

    let url = payment_details_url(&app, &customer, &landing.url(CANCEL_PATH)).await;
    browser.open(&url).await;
    let text = browser.wait_for_text("Update your payment details").await;
    assert!(
        text.contains("Your current card: Visa ending in 4242"),
        "{text}"
    );
    pay_with(&browser, "4000 0000 0000 0077").await;
    browser.wait_for_url(&landing.url(CANCEL_PATH)).await;
    let kinds = event_kinds(&app, &customer).await;
    assert!(
        kinds.contains(&"PAYMENT_DETAILS_UPDATED".to_owned()),
        "{kinds:?}"
    );
    // The page is used up: opening it again says the card is saved.
    browser.open(&url).await;
    browser.wait_for_text("Your card has been saved.").await;
    browser.close().await;
}

#[tokio::test]
async fn the_cancel_link_closes_the_checkout_and_lands_on_the_cancel_url() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "10").await;
    let customer = app.create_customer("browser-sandbox-abandon").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let browser = Browser::start().await;

    browser.open(&sub.checkout_url).await;
    browser.wait_for_text("Pay 10.00").await;
    browser.click_button("Cancel and go back").await;
    browser.wait_for_url(&landing.url(CANCEL_PATH)).await;
    browser
        .wait_for_text(&format!("Landed on {CANCEL_PATH}"))
        .await;
    // Closed before the browser got back: the customer may choose again at once.
    assert_eq!(status(&app, &sub.subscription).await, "INCOMPLETE_EXPIRED");
    assert_eq!(
        event_kinds(&app, &customer).await,
        ["SUBSCRIPTION_CREATED", "SUBSCRIPTION_EXPIRED"]
    );
    // Back on the old page (history, a bookmark): it says it is closed and takes no card.
    browser.open(&sub.checkout_url).await;
    browser.wait_for_text("This checkout is closed.").await;
    let again = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    assert_ne!(again.subscription, sub.subscription);
    browser.close().await;
}

#[tokio::test]
async fn an_expired_checkout_page_says_so_and_leads_back() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let plan = monthly_plan(&app, "10").await;
    let customer = app.create_customer("browser-sandbox-expired").await;
    let sub = subscribe(&app, &customer, &plan, "sandbox", &landing).await;
    let later = (app.billing.clock.now() + chrono::TimeDelta::hours(24)).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        serde_json::json!({ "t": later }),
    )
    .await
    .ok();
    assert_eq!(status(&app, &sub.subscription).await, "INCOMPLETE_EXPIRED");
    let browser = Browser::start().await;

    // Opened late: no card form, a plain notice and the way back.
    browser.open(&sub.checkout_url).await;
    let text = browser.wait_for_text("This checkout is closed.").await;
    assert!(!text.contains("Pay 10.00"), "{text}");
    browser.click("a[href]").await;
    browser.wait_for_url(&landing.url(CANCEL_PATH)).await;
    assert_eq!(
        event_kinds(&app, &customer).await,
        ["SUBSCRIPTION_CREATED", "SUBSCRIPTION_EXPIRED"]
    );
    browser.close().await;
}
