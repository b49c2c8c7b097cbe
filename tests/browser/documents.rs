//! The hosted invoice page, as the customer opens it from the link they were sent.

use crate::flows::invoiced;
use crate::harness::{Browser, Landing};
use crate::helpers::TestApp;

#[tokio::test]
async fn the_customer_opens_the_printable_invoice_page() {
    let app = TestApp::spawn().await;
    let landing = Landing::start().await;
    let (_, _, inv) = invoiced(&app, &landing).await;
    let number = inv["number"].as_str().unwrap();
    assert_eq!(number, "INV-000002");
    let browser = Browser::start().await;

    browser.open(inv["hostedUrl"].as_str().unwrap()).await;
    let text = browser.wait_for_text(&format!("Invoice {number}")).await;
    for seen in [
        "Example Merchant Ltd",
        "1 Harbour Street",
        "Hopper Labs",
        "7 Compiler Lane",
        "Container",
        "12.50 USD",
        "subscription, regular price",
        "PAID",
    ] {
        assert!(text.contains(seen), "the page shows {seen:?}:\n{text}");
    }
    assert_eq!(
        browser.element("#total").await.text().await.unwrap(),
        format!("{} USD", inv["total"].as_str().unwrap())
    );
    // Its PDF link is the signed one.
    let href = browser
        .element("a[href*='/pdf?sig=']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, inv["pdfUrl"].as_str().unwrap());

    // The same link with another signature shows nothing of the invoice.
    let url = inv["hostedUrl"].as_str().unwrap();
    let forged = format!(
        "{}sig={}",
        url.split_once("sig=").unwrap().0,
        "ab".repeat(32)
    );
    browser.open(&forged).await;
    let text = browser.wait_for_text("This link is not valid").await;
    assert!(!text.contains(number) && !text.contains("Hopper"), "{text}");
    browser.close().await;
}
