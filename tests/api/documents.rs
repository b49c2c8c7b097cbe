//! Invoice numbers and documents: gapless numbers under concurrent issuing, the hosted
//! page and the PDF behind signed links, tampering refused.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, advance, utc};
use crate::subscriptions::{monthly_plan, pay, subscribe};

const DOCS: &str = "query($c: ID!) { invoices(customerId: $c) { edges { node { id number hostedUrl pdfUrl status total currency } } } }";

pub async fn invoices_of(app: &TestApp, customer: &str) -> Vec<Value> {
    let res = app.admin(DOCS, json!({ "c": customer })).await;
    res.ok()["invoices"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// A customer with an address on a plan with a free trial, then a container by the hour
/// and support by the month; checkout paid (the opening invoice, 5.48); the first boundary
/// invoiced (total 15.10: January's hours, February's support).
pub async fn invoiced_customer(app: &TestApp) -> (String, String, Value) {
    let container = app.create_product("Container", "PACKAGE", None).await;
    let support = app
        .create_product("Priority support", "PACKAGE", None)
        .await;
    let plan = app.create_plan(json!({ "name": "Hourly Pro", "phases": [
        { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "HOUR" },
            { "productId": support, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] },
        { "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0.0125", "interval": "HOUR" },
            { "productId": support, "currency": "USD", "unitAmount": "10", "interval": "MONTH" } ] } ] }))
        .await;
    let customer = app
        .create_customer_with(json!({ "externalId": "lab-7", "name": "Lovelace Lab", "email": "ada@lab.example",
            "address": { "line1": "12 Analytical Row", "city": "London", "postalCode": "N1 9GU", "country": "GB" } }))
        .await;
    let token = app.customer_token(&customer).await;
    let start = utc("2027-01-01T00:00:00Z");
    advance(app, start).await;
    let out = subscribe(app, &token, &customer, &plan).await;
    pay(
        app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    advance(app, start + chrono::TimeDelta::days(31)).await;
    let all = invoices_of(app, &customer).await;
    assert_eq!(all.len(), 2, "{all:?}");
    (customer, token, all[1].clone())
}

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ctype, res.bytes().await.unwrap().to_vec())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The same link with its signature's first character changed.
fn tampered(url: &str) -> String {
    let (head, sig) = url.split_once("sig=").unwrap();
    let first = if sig.starts_with('0') { '1' } else { '0' };
    format!("{head}sig={first}{}", &sig[1..])
}

#[tokio::test]
async fn an_issued_invoice_has_a_number_a_printable_page_and_a_pdf() {
    let app = TestApp::spawn().await;
    let (customer, token, inv) = invoiced_customer(&app).await;
    assert_eq!(inv["number"], "INV-000002");
    assert_eq!(inv["total"], "15.10");
    let hosted = inv["hostedUrl"].as_str().unwrap();
    let pdf_url = inv["pdfUrl"].as_str().unwrap();
    assert!(hosted.starts_with(&format!("{}/documents/invoices/", app.base)));

    // The customer's own key sees the same links.
    let mine = app
        .gql_as(Some(&token), DOCS, json!({ "c": customer }))
        .await;
    assert_eq!(
        mine.ok()["invoices"]["edges"][1]["node"]["hostedUrl"],
        inv["hostedUrl"]
    );

    let (status, ctype, body) = get(hosted).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let page = String::from_utf8(body).unwrap();
    for text in [
        "Example Merchant Ltd",
        "1 Harbour Street",
        "INV-000002",
        "Lovelace Lab",
        "12 Analytical Row",
        "N1 9GU London",
        "Container",
        "Priority support",
        "1 × 0.0125",
        "15.10 USD",
        "PAID",
        "2027-02-01 – 2027-03-01",
        "Hourly Pro",
    ] {
        assert!(page.contains(text), "the page shows {text:?}:\n{page}");
    }

    let (status, ctype, body) = get(pdf_url).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/pdf");
    assert!(body.starts_with(b"%PDF-"), "a PDF");
    // Content streams are not compressed: the text is there as written.
    for text in [
        "(Invoice INV-000002)",
        "(Example Merchant Ltd)",
        "(Lovelace Lab)",
        "(Priority support)",
        "(15.10 USD)",
    ] {
        assert!(contains(&body, text), "the PDF shows {text}");
    }

    // A preview has neither number nor documents.
    let sub = app
        .admin(
            "query($c: ID!) { customer(id: $c) { subscriptions { id } } }",
            json!({ "c": customer }),
        )
        .await;
    let sub = sub.ok()["customer"]["subscriptions"][0]["id"].clone();
    let preview = app
        .admin(
            "query($s: ID!) { invoicePreview(subscriptionId: $s) { number hostedUrl pdfUrl } }",
            json!({ "s": sub }),
        )
        .await;
    assert_eq!(
        preview.ok()["invoicePreview"],
        json!({ "number": null, "hostedUrl": null, "pdfUrl": null })
    );
}

#[tokio::test]
async fn a_tampered_or_missing_signature_shows_nothing() {
    let app = TestApp::spawn().await;
    let (_, _, inv) = invoiced_customer(&app).await;
    let hosted = inv["hostedUrl"].as_str().unwrap();
    let pdf_url = inv["pdfUrl"].as_str().unwrap();
    let id = inv["id"].as_str().unwrap();
    let unsigned = hosted.split_once('?').unwrap().0.to_owned();
    let other_id = hosted.replace(id, &uuid::Uuid::now_v7().to_string());
    for url in [
        tampered(hosted),
        tampered(pdf_url),
        unsigned.clone(),
        format!("{unsigned}?sig="),
        format!("{unsigned}/pdf"),
        // A valid signature is for its own invoice only.
        other_id,
        format!("{}/documents/invoices/not-an-id?sig=00", app.base),
    ] {
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 403, "{url}");
        for secret in ["INV-000002", "Lovelace", "15.10", "Container"] {
            assert!(!contains(&body, secret), "{url} reveals {secret}");
        }
    }
}

/// Free subscriptions (nothing to pay, so no checkout), `n` of them.
async fn free_subscribers(app: &TestApp, n: usize) -> Vec<String> {
    let (plan, _) = monthly_plan(app, "0").await;
    let mut customers = Vec::new();
    for i in 0..n {
        let c = app.create_customer(&format!("free-{i}")).await;
        let out = subscribe(app, ADMIN_TOKEN, &c, &plan).await;
        assert_eq!(out["subscription"]["status"], "ACTIVE");
        customers.push(c);
    }
    customers
}

async fn all_numbers(app: &TestApp, customers: &[String]) -> Vec<String> {
    let mut numbers = Vec::new();
    for c in customers {
        for inv in invoices_of(app, c).await {
            numbers.push(inv["number"].as_str().expect("numbered").to_owned());
        }
    }
    numbers
}

fn assert_gapless(numbers: &[String]) {
    let set: BTreeSet<&str> = numbers.iter().map(String::as_str).collect();
    assert_eq!(set.len(), numbers.len(), "duplicates in {numbers:?}");
    let expected: Vec<String> = (1..=numbers.len()).map(|n| format!("INV-{n:06}")).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|n| !set.contains(n.as_str()))
        .collect();
    let extra: Vec<&&str> = set
        .iter()
        .filter(|n| !expected.iter().any(|e| e == **n))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not 1..{}: missing {missing:?}, beyond {extra:?}",
        numbers.len()
    );
}

#[tokio::test]
async fn numbers_are_gapless_across_many_subscriptions_invoiced_at_once() {
    let app = TestApp::spawn().await;
    let start = app.billing.clock.now();
    let customers = free_subscribers(&app, 15).await;
    // One clock move issues three boundaries for each subscription (after its opening invoice).
    advance(&app, start + chrono::TimeDelta::days(93)).await;
    let numbers = all_numbers(&app, &customers).await;
    assert_eq!(numbers.len(), 60);
    assert_gapless(&numbers);
    // Each subscription's invoices are numbered in issuing order.
    for c in &customers {
        let mine: Vec<String> = invoices_of(&app, c)
            .await
            .iter()
            .map(|i| i["number"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted);
    }
}

/// Two server processes run their billing clocks at once against one PostgreSQL
/// database: each invoice is issued once, and the losing process's transactions give
/// their numbers back.
#[tokio::test]
async fn two_processes_issuing_at_once_leave_no_gaps_on_postgres() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let start = app.billing.clock.now();
    let customers = free_subscribers(&app, 40).await;
    let client = reqwest::Client::new();
    let advance_on = |base: String, to: chrono::DateTime<chrono::Utc>| {
        let client = client.clone();
        async move {
            client
                .post(format!("{base}/graphql"))
                .bearer_auth(ADMIN_TOKEN)
                .json(
                    &json!({ "query": "mutation($t: DateTime!) { advanceClock(to: $t) }",
                               "variables": { "t": to.to_rfc3339() } }),
                )
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for months in 1..=3 {
        let to = start + chrono::TimeDelta::days(31 * months);
        let (a, b) = tokio::join!(
            advance_on(app.base.clone(), to),
            advance_on(replica.base.clone(), to)
        );
        assert!(a.is_success() && b.is_success());
    }
    let numbers = all_numbers(&app, &customers).await;
    assert_eq!(numbers.len(), 160);
    assert_gapless(&numbers);
}

/// Invoices issued before numbering existed are numbered by the migration, in the order
/// they were created; the next one issued continues the series.
#[tokio::test]
async fn the_migration_numbers_existing_invoices_in_issuing_order() {
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database};

    let mut app = TestApp::spawn().await;
    let start = app.billing.clock.now();
    let customers = free_subscribers(&app, 3).await;
    advance(&app, start + chrono::TimeDelta::days(62)).await;
    // Back to before this migration (and whatever came after it), then up again.
    let db = Database::connect(app.database_url()).await.unwrap();
    let all = Migrator::migrations();
    let at = all
        .iter()
        .position(|m| m.name() == "m20261201_000014_invoice_numbers")
        .expect("the numbering migration");
    Migrator::down(&db, Some((all.len() - at) as u32))
        .await
        .unwrap();
    let unnumbered = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM invoice",
        ))
        .await
        .unwrap();
    assert_eq!(unnumbered[0].try_get::<i64>("", "n").unwrap(), 9);
    Migrator::up(&db, None).await.unwrap();
    let numbers: Vec<Option<String>> = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT number FROM invoice ORDER BY created_at, id",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<Option<String>>("", "number").unwrap())
        .collect();
    let expected: Vec<Option<String>> = (1..=9).map(|n| Some(format!("INV-{n:06}"))).collect();
    assert_eq!(numbers, expected);
    app.restart().await;
    // The series continues after the numbered ones.
    advance(&app, start + chrono::TimeDelta::days(93)).await;
    let numbers = all_numbers(&app, &customers).await;
    assert_eq!(numbers.len(), 12);
    assert_gapless(&numbers);
}
