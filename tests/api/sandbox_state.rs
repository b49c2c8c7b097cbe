//! The sandbox provider keeps its sessions, cards and pending payments in the server's
//! database: a restarted server, or another process on the same database, serves and takes
//! the payments that an earlier or other one started.

use entity::provider_event;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp};
use crate::subscriptions::{event_kinds, monthly_plan, pay, subscribe};

const SUCCESS_URL: &str = "https://app.example/projects?paid=1";

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A subscription's status, asked of the server at `base`.
async fn status_at(base: &str, sub: &str) -> String {
    let res: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({ "query": "query($id: ID!) { subscription(id: $id) { status } }",
                       "variables": { "id": sub } }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["data"]["subscription"]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

/// A checkout and its subscription, for a new customer on a 10 USD plan.
async fn checkout(app: &TestApp, plan: &str, who: &str) -> (String, String, String) {
    let customer = app.create_customer(who).await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(app, &token, &customer, plan).await;
    (
        customer,
        out["subscription"]["id"].as_str().unwrap().to_owned(),
        out["checkout"]["url"].as_str().unwrap().to_owned(),
    )
}

async fn assert_gone(base: &str) {
    assert!(
        browser()
            .get(format!("{base}/health"))
            .send()
            .await
            .is_err(),
        "the old process still answers"
    );
}

#[tokio::test]
async fn a_checkout_started_before_a_restart_is_served_and_paid_after_it() {
    let mut app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let (_, sub, url) = checkout(&app, &plan, "c1").await;
    let old = app.base.clone();

    app.restart().await;
    assert_gone(&old).await;
    // The configured public URL would not change; here the port does.
    let url = url.replace(&old, &app.base);
    let paid = pay(&app, &url, "4242 4242 4242 4242").await;
    assert_eq!(paid.status().as_u16(), 303);
    assert_eq!(paid.headers()["location"], SUCCESS_URL);
    assert_eq!(status_at(&app.base, &sub).await, "ACTIVE");
    // A replayed form changes nothing.
    let again = browser()
        .post(&url)
        .form(&[("card_number", "4242424242424242")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 303);
    assert_eq!(provider_events(&app).await, 1);
}

#[tokio::test]
async fn a_pending_payment_and_a_payment_details_link_survive_a_restart() {
    let mut app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let (customer, sub, url) = checkout(&app, &plan, "c1").await;
    let pending = pay(&app, &url, "4000 0000 0000 0077").await;
    assert_eq!(pending.status().as_u16(), 200);
    assert!(pending.text().await.unwrap().contains("Payment pending"));
    let details = app
        .admin(
            "mutation($c: ID!) { updatePaymentDetails(customerId: $c, returnUrl: \"https://app.example/s\") { url } }",
            json!({ "c": customer }),
        )
        .await;
    let details = details.ok()["updatePaymentDetails"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = app.base.clone();

    app.restart().await;
    assert_gone(&old).await;
    let url = url.replace(&old, &app.base);
    let page = browser().get(&url).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Payment pending"));
    // The bank approves the payment in flight, on the new process.
    let settled = browser()
        .post(format!("{url}/settle"))
        .form(&[("success", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(settled.status().as_u16(), 303);
    assert_eq!(settled.headers()["location"], SUCCESS_URL);
    assert_eq!(status_at(&app.base, &sub).await, "ACTIVE");
    let kinds = event_kinds(&app, &customer).await;
    assert!(
        kinds.contains(&"PAYMENT_PENDING".to_owned())
            && kinds.contains(&"SUBSCRIPTION_ACTIVATED".to_owned()),
        "{kinds:?}"
    );
    // The card that payment saved, and the link made before the restart, are both there.
    let page = browser()
        .get(details.replace(&old, &app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Your current card: Visa ending in 0077")
    );
}

/// Two live processes on one database (on PostgreSQL, a replica; on SQLite, a second
/// process on the same file, so that this runs, and can fail, on both engines): the
/// checkout made through one is served and paid by the other, and both paying it at once
/// takes the money once.
#[tokio::test]
async fn a_checkout_created_on_one_process_is_paid_on_another() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let other = app.another_process().await;
    let (_, sub, url) = checkout(&app, &plan, "c1").await;
    let there = url.replace(&app.base, &other.base);
    let page = browser().get(&there).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("10.00 USD"));

    let submit = |url: String| async move {
        browser()
            .post(url)
            .form(&[("card_number", "4242424242424242")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let (here, there) = tokio::join!(submit(url.clone()), submit(there));
    assert_eq!((here, there), (303, 303));
    assert_eq!(status_at(&app.base, &sub).await, "ACTIVE");
    assert_eq!(status_at(&other.base, &sub).await, "ACTIVE");
    // One payment: one `checkout.succeeded` reached the server, whichever process took it.
    assert_eq!(provider_events(&app).await, 1);
}

async fn provider_events(app: &TestApp) -> u64 {
    provider_event::Entity::find()
        .count(app.billing.db.conn())
        .await
        .unwrap()
}
