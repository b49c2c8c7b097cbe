//! The customer portal: who may open a session, what its page shows, expiry and
//! tampering, cancel at period end (twice), the payment-method link; and what the
//! checkout page says about the plan.

use serde_json::json;

use crate::documents::invoiced_customer;
use crate::helpers::{ADMIN_TOKEN, TestApp};
use crate::subscriptions::{event_kinds, subscribe};

const PORTAL: &str =
    "mutation($c: ID!, $r: String!) { createPortalSession(customerId: $c, returnUrl: $r) { url } }";
const RETURN: &str = "https://app.example/settings?tab=billing";

async fn portal_url(app: &TestApp, token: &str, customer: &str) -> String {
    let res = app
        .gql_as(Some(token), PORTAL, json!({ "c": customer, "r": RETURN }))
        .await;
    res.ok()["createPortalSession"]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let res = browser().get(url).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `url` with its `name` parameter replaced by `value`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{q}")
}

fn param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn cancel_url(portal: &str) -> String {
    let (base, query) = portal.split_once('?').unwrap();
    format!("{base}/cancel?{query}")
}

#[tokio::test]
async fn the_portal_shows_plan_phase_next_invoice_invoices_and_payment_method() {
    let app = TestApp::spawn().await;
    let (customer, token, inv) = invoiced_customer(&app).await;
    let url = portal_url(&app, &token, &customer).await;
    assert!(
        url.starts_with(&format!("{}/portal/{customer}?", app.base)),
        "{url}"
    );
    let (status, page) = get(&url).await;
    assert_eq!(status, 200);
    for seen in [
        "Example Merchant Ltd",
        "Lovelace Lab",
        "Hourly Pro",
        "Regular price",
        "ACTIVE",
        "Next invoice",
        "so far for 2027-02-01 – 2027-03-01",
        "INV-000002",
        "15.10 USD",
        "Update payment method",
        "Cancel at period end",
    ] {
        assert!(page.contains(seen), "the portal shows {seen:?}:\n{page}");
    }
    // Its invoice links are the invoice's signed documents; the way back is returnUrl.
    let hosted = inv["hostedUrl"].as_str().unwrap();
    assert!(page.contains(&format!("href=\"{hosted}\"")), "{page}");
    assert!(page.contains("href=\"https://app.example/settings?tab=billing\""));

    // The payment-method link goes to the provider's page, which comes back here.
    let (base, query) = url.split_once('?').unwrap();
    let res = browser()
        .get(format!("{base}/payment-method?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let to = res.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}/providers/sandbox/", app.base)),
        "{to}"
    );
}

#[tokio::test]
async fn portal_sessions_are_for_admins_and_the_customer_itself() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer("c").await;
    let other = app.create_customer("other").await;
    let other_token = app.customer_token(&other).await;
    let service = app.service_token("backend").await;
    let vars = json!({ "c": customer, "r": RETURN });
    assert!(
        app.admin(PORTAL, vars.clone()).await.ok()["createPortalSession"]["url"]
            .as_str()
            .is_some()
    );
    let own = app.customer_token(&customer).await;
    assert!(
        app.gql_as(Some(&own), PORTAL, vars.clone()).await.ok()["createPortalSession"]["url"]
            .is_string()
    );
    app.gql_as(Some(&other_token), PORTAL, vars.clone())
        .await
        .expect_code("NOT_FOUND");
    app.gql_as(Some(&service), PORTAL, vars.clone())
        .await
        .expect_code("FORBIDDEN");
    app.anon(PORTAL, vars).await.expect_code("UNAUTHENTICATED");
    app.admin(
        PORTAL,
        json!({ "c": uuid::Uuid::now_v7().to_string(), "r": RETURN }),
    )
    .await
    .expect_code("NOT_FOUND");
    for bad in ["javascript:alert(1)", "/relative", "https://a b.example"] {
        app.gql_as(Some(&own), PORTAL, json!({ "c": customer, "r": bad }))
            .await
            .expect_code("BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_tampered_or_expired_portal_link_shows_nothing() {
    let app = TestApp::spawn().await;
    let customer = app
        .create_customer_with(
            json!({ "externalId": "p", "name": "Secretive Co", "email": "s@co.example" }),
        )
        .await;
    let url = portal_url(&app, ADMIN_TOKEN, &customer).await;
    assert_eq!(get(&url).await.0, 200);
    let sig = param(&url, "sig");
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    let exp: i64 = param(&url, "exp").parse().unwrap();
    let other = app.create_customer("other").await;
    for forged in [
        with_param(&url, "sig", &flipped),
        with_param(&url, "sig", ""),
        with_param(&url, "ret", "https://evil.example/"),
        with_param(&url, "exp", &(exp + 86_400).to_string()),
        url.replace(&customer, &other),
        url.split_once('?').unwrap().0.to_owned(),
    ] {
        let (status, page) = get(&forged).await;
        assert_eq!(status, 403, "{forged}");
        assert!(!page.contains("Secretive"), "{page}");
    }
    // A forged cancel changes nothing either.
    let res = browser()
        .post(cancel_url(&with_param(&url, "sig", &flipped)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    // An hour later the link has expired.
    let later = app.billing.clock.now() + chrono::TimeDelta::minutes(61);
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": later.to_rfc3339() }),
    )
    .await
    .ok();
    let (status, page) = get(&url).await;
    assert_eq!(status, 410);
    assert!(page.contains("This link has expired"), "{page}");
    assert!(!page.contains("Secretive"), "{page}");
    // A forged link stays forged, expired or not.
    assert_eq!(get(&with_param(&url, "sig", &flipped)).await.0, 403);
}

#[tokio::test]
async fn cancel_at_period_end_from_the_portal_is_recorded_once() {
    let app = TestApp::spawn().await;
    let (plan, _) = crate::subscriptions::monthly_plan(&app, "0").await;
    let customer = app.create_customer("c").await;
    let out = subscribe(&app, ADMIN_TOKEN, &customer, &plan).await;
    let sub = out["subscription"]["id"].as_str().unwrap().to_owned();
    let url = portal_url(&app, ADMIN_TOKEN, &customer).await;

    let res = browser().post(cancel_url(&url)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.contains("notice=canceled"), "{back}");
    let (status, page) = get(&back).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("will be canceled at the end of the current billing period"),
        "{page}"
    );
    assert!(page.contains("Cancels at the end of the period"), "{page}");
    assert!(!page.contains("Cancel at period end</button>"), "{page}");
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

    // Pressed again (a resubmitted form): nothing more happens.
    let res = browser().post(cancel_url(&url)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .contains("notice=already")
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "CANCELLATION_SCHEDULED")
            .count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_checkout_page_shows_merchant_plan_price_per_month_and_the_trial() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let price = |amount: &str| json!([{ "productId": container, "currency": "USD", "unitAmount": amount, "interval": "MONTH" }]);
    let trial = app
        .create_plan(json!({ "name": "Pro", "phases": [
            { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": price("0") },
            { "kind": "FINAL", "prices": price("12.50") } ] }))
        .await;
    let plain = app
        .create_plan(
            json!({ "name": "Basic", "phases": [{ "kind": "FINAL", "prices": price("12.50") }] }),
        )
        .await;
    for (plan, name, terms) in [
        (&trial, "Pro", "Free for 14 days, then 12.50 USD per month"),
        (&plain, "Basic", "12.50 USD per month"),
    ] {
        let customer = app.create_customer(&format!("buyer-{name}")).await;
        let out = subscribe(&app, ADMIN_TOKEN, &customer, plan).await;
        let (status, page) = get(out["checkout"]["url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        for seen in [
            "Paying <strong>Example Merchant Ltd</strong>",
            &format!("Plan: <strong>{name}</strong>"),
            terms,
        ] {
            assert!(page.contains(seen), "the checkout shows {seen:?}:\n{page}");
        }
    }
}
