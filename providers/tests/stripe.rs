//! The stripe provider against `localstripe` (a stateful fake Stripe from PyPI) and against
//! small misbehaving servers of our own, all on 127.0.0.1.
//!
//! The localstripe tests read its address from `LOCALSTRIPE_URL` (`localstripe --port 8420`
//! then `LOCALSTRIPE_URL=http://127.0.0.1:8420`). Without it they fail under CI (`CI` set)
//! and are skipped, with a notice, elsewhere. The timeout and error-mapping tests need
//! nothing and always run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use providers::stripe::{MOUNT, StripeConfig, StripeProvider};
use providers::{
    ChargeRequest, CheckoutRequest, CustomerInfo, DetailsRequest, PaymentOutcome, PaymentProvider,
    ProviderError, ProviderEvent, ProviderEventKind,
};
use rust_decimal::Decimal;
use rust_decimal::dec;
use serde_json::{Value, json};

const API_KEY: &str = "sk_test_billing_providers";

/// localstripe's address, or `None` (after a notice) when the tests should be skipped.
fn localstripe() -> Option<String> {
    match std::env::var("LOCALSTRIPE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "LOCALSTRIPE_URL is not set: under CI the stripe provider must be tested \
                 against localstripe (.ci/run starts it on 127.0.0.1:8420)"
            );
            eprintln!(
                "skipping: LOCALSTRIPE_URL is not set (pip install localstripe; \
                 localstripe --port 8420; LOCALSTRIPE_URL=http://127.0.0.1:8420 cargo test)"
            );
            None
        }
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

type Deliveries = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// The provider's pages served on 127.0.0.1 as the server mounts them, plus an endpoint
/// collecting localstripe's webhook deliveries.
struct Harness {
    api: String,
    public: String,
    provider: Arc<StripeProvider>,
    deliveries: Deliveries,
    /// A browser that does not follow redirects, so that tests see them.
    browser: reqwest::Client,
}

async fn collect(
    State(deliveries): State<Deliveries>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    deliveries.lock().unwrap().push((headers, body));
    StatusCode::OK
}

impl Harness {
    /// `hook` names this test's webhook registration in localstripe (registrations are
    /// global and outlive us: a fixed name per test replaces the last run's).
    async fn start(api: &str, hook: &str) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = format!("http://{}", listener.local_addr().unwrap());
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let provider = Arc::new(
            StripeProvider::new(StripeConfig {
                api_key: API_KEY.into(),
                api_base: api.into(),
                webhook_secret: secret.clone(),
                public_base_url: public.clone(),
                timeout: Duration::from_secs(10),
            })
            .unwrap(),
        );
        let deliveries = Deliveries::default();
        let app = Router::new()
            .route("/hooks", post(collect))
            .with_state(deliveries.clone())
            .nest(MOUNT, provider.routes().expect("stripe has hosted pages"));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let hooks_url = format!("{public}/hooks");
        let response = browser
            .post(format!("{api}/_config/webhooks/billing-providers-{hook}"))
            .form(&[("url", hooks_url.as_str()), ("secret", secret.as_str())])
            .send()
            .await
            .expect("localstripe answers");
        assert!(response.status().is_success(), "{response:?}");
        Harness {
            api: api.to_owned(),
            public,
            provider,
            deliveries,
            browser,
        }
    }

    /// A Stripe object, read straight from localstripe.
    async fn stripe_get(&self, path: &str) -> Value {
        let response = self
            .browser
            .get(format!("{}{path}", self.api))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "GET {path}: {response:?}");
        response.json().await.unwrap()
    }

    async fn customer(&self) -> String {
        let info = CustomerInfo {
            customer_id: unique("cust"),
            provider_ref: None,
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            phone: None,
        };
        self.provider.upsert_customer(&info).await.unwrap()
    }

    fn checkout(&self, customer: &str, amount: Decimal, currency: &str) -> CheckoutRequest {
        CheckoutRequest {
            customer_ref: customer.to_owned(),
            subscription_id: unique("sub"),
            amount,
            currency: currency.into(),
            description: "Pro plan, monthly".into(),
            success_url: "https://app.example/billing/success?x=1&y=2".into(),
            cancel_url: "https://app.example/billing/cancel".into(),
            idempotency_key: unique("checkout"),
        }
    }

    async fn page(&self, url: &str) -> (StatusCode, String) {
        let response = self.browser.get(url).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Submits a hosted page's card form; returns the status, the redirect (if any) and
    /// the page.
    async fn pay(&self, url: &str, card: &str) -> (StatusCode, Option<String>, String) {
        let response = self
            .browser
            .post(url)
            .form(&[("card_number", card), ("expiry", "12 / 34"), ("cvc", "123")])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    }

    /// The first delivered, verified webhook event that `wanted` accepts, with its raw
    /// delivery.
    async fn event(
        &self,
        wanted: impl Fn(&ProviderEvent) -> bool,
    ) -> (ProviderEvent, HeaderMap, Bytes) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let deliveries = self.deliveries.lock().unwrap().clone();
            for (headers, body) in deliveries {
                let events = self
                    .provider
                    .verify_webhook(&headers, &body)
                    .expect("localstripe's deliveries verify");
                if let Some(e) = events.into_iter().find(&wanted) {
                    return (e, headers, body);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no such webhook event arrived; got {} deliveries",
                self.deliveries.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn succeeded(r: &str) -> PaymentOutcome {
    PaymentOutcome::Succeeded {
        provider_ref: r.to_owned(),
    }
}

#[tokio::test]
async fn customers_are_created_then_updated() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "customers").await;
    let mut info = CustomerInfo {
        customer_id: unique("cust"),
        provider_ref: None,
        name: "Ada".into(),
        email: "ada@example.com".into(),
        phone: Some("+44 20 7946 0000".into()),
    };
    let id = h.provider.upsert_customer(&info).await.unwrap();
    assert!(id.starts_with("cus_"), "{id}");
    let stored = h.stripe_get(&format!("/v1/customers/{id}")).await;
    assert_eq!(stored["name"], "Ada");
    assert_eq!(stored["phone"], "+44 20 7946 0000");
    assert_eq!(stored["metadata"]["customer_id"], info.customer_id.as_str());

    info.provider_ref = Some(id.clone());
    info.name = "Ada Lovelace".into();
    info.email = "lovelace@example.com".into();
    info.phone = None;
    assert_eq!(h.provider.upsert_customer(&info).await.unwrap(), id);
    let stored = h.stripe_get(&format!("/v1/customers/{id}")).await;
    assert_eq!(stored["name"], "Ada Lovelace");
    assert_eq!(stored["email"], "lovelace@example.com");
    assert_eq!(stored["phone"], "");

    // A ref Stripe no longer knows: the customer is made again.
    info.provider_ref = Some("cus_gone0000000000".into());
    let again = h.provider.upsert_customer(&info).await.unwrap();
    assert!(again.starts_with("cus_") && again != id, "{again}");
}

#[tokio::test]
async fn a_checkout_paid_on_the_hosted_page_succeeds_and_is_reported_by_a_signed_webhook() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "checkout").await;
    let customer = h.customer().await;
    let request = h.checkout(&customer, dec!(12.50), "USD");
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let pi = session.provider_ref.clone();
    assert!(pi.starts_with("pi_"), "{pi}");
    assert_eq!(
        session.url,
        format!("{}/providers/stripe/checkout/{pi}", h.public)
    );
    let stored = h.stripe_get(&format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(stored["amount"], 1250);
    assert_eq!(stored["currency"], "usd");
    assert_eq!(stored["customer"], customer.as_str());
    assert_eq!(
        stored["metadata"]["subscription_id"],
        request.subscription_id.as_str()
    );
    // Nobody has paid yet: pending, not failed.
    assert_eq!(
        h.provider.payment_status(&pi).await.unwrap(),
        PaymentOutcome::Pending {
            provider_ref: pi.clone()
        }
    );

    let (status, html) = h.page(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("12.50 USD"), "{html}");
    assert!(html.contains("Pro plan, monthly"), "{html}");

    let (status, location, _) = h.pay(&session.url, "4242 4242 4242 4242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    assert_eq!(
        h.provider.payment_status(&pi).await.unwrap(),
        succeeded(&pi)
    );

    // The card is kept as the customer's default for later charges.
    let stored = h.stripe_get(&format!("/v1/customers/{customer}")).await;
    let default = stored["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(default.starts_with("pm_"), "{stored}");

    // Submitting again (a second click) charges nothing more and moves on.
    let (status, location, _) = h.pay(&session.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    let (_, html) = h.page(&session.url).await;
    assert!(html.contains("Payment received"), "{html}");

    // localstripe's signed webhook.
    let (event, headers, body) = h
        .event(|e| e.object_ref == pi && e.outcome == Some(succeeded(&pi)))
        .await;
    assert_eq!(event.kind, ProviderEventKind::Checkout);
    assert!(event.id.starts_with("evt_"), "{event:?}");
    let tampered = String::from_utf8(body.to_vec())
        .unwrap()
        .replace("1250", "1");
    assert!(matches!(
        h.provider.verify_webhook(&headers, tampered.as_bytes()),
        Err(ProviderError::BadSignature)
    ));
    assert!(matches!(
        h.provider.verify_webhook(&HeaderMap::new(), &body),
        Err(ProviderError::BadSignature)
    ));
}

#[tokio::test]
async fn declined_cards_fail_and_a_cancelled_checkout_fails() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "declined").await;
    let customer = h.customer().await;
    let request = h.checkout(&customer, dec!(20), "eur");
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let pi = session.provider_ref.clone();

    // 4000 0000 0000 0002: localstripe (like Stripe) declines it when it is attached to
    // the customer, before the payment is tried: the page says so and stays open for
    // another card, and the checkout is still pending.
    let (status, location, html) = h.pay(&session.url, "4000000000000002").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(location, None);
    assert!(html.contains("declined"), "{html}");
    assert!(
        html.contains("value=\"4000000000000002\""),
        "the number is kept"
    );
    assert!(matches!(
        h.provider.payment_status(&pi).await.unwrap(),
        PaymentOutcome::Pending { .. }
    ));

    // 4000 0000 0000 0341 is attached fine and declined when charged: the payment fails.
    let (status, _, html) = h.pay(&session.url, "4000 0000 0000 0341").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(html.contains("declined"), "{html}");
    match h.provider.payment_status(&pi).await.unwrap() {
        PaymentOutcome::Failed {
            provider_ref,
            reason,
        } => {
            assert_eq!(provider_ref.as_deref(), Some(pi.as_str()));
            assert!(reason.contains("declined"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (event, _, _) = h
        .event(|e| e.object_ref == pi && matches!(e.outcome, Some(PaymentOutcome::Failed { .. })))
        .await;
    assert_eq!(event.kind, ProviderEventKind::Checkout);

    // Leaving a checkout cancels it: the browser goes to cancel_url and the checkout fails.
    let session = h
        .provider
        .start_checkout(h.checkout(&customer, dec!(5), "usd"))
        .await
        .unwrap();
    let response = h
        .browser
        .post(format!("{}/cancel", session.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        request.cancel_url
    );
    assert!(matches!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        PaymentOutcome::Failed { .. }
    ));
    let (_, html) = h.page(&session.url).await;
    assert!(html.contains("cancelled"), "{html}");

    // Pages for ids that are not ours, or not ids at all.
    let (status, _) = h
        .page(&format!(
            "{}/providers/stripe/checkout/pi_nonexistent",
            h.public
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .page(&format!(
            "{}/providers/stripe/checkout/pi_x%2F..%2Fcustomers",
            h.public
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_free_checkout_saves_the_card_with_a_setup_intent() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "setup").await;
    let customer = h.customer().await;
    let request = h.checkout(&customer, Decimal::ZERO, "usd");
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let seti = session.provider_ref.clone();
    assert!(seti.starts_with("seti_"), "{seti}");
    let (status, html) = h.page(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Save card"), "{html}");

    let (status, location, _) = h.pay(&session.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    assert_eq!(
        h.provider.payment_status(&seti).await.unwrap(),
        succeeded(&seti)
    );
    let stored = h.stripe_get(&format!("/v1/setup_intents/{seti}")).await;
    let saved = stored["payment_method"].as_str().unwrap().to_owned();
    let stored = h.stripe_get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(stored["invoice_settings"]["default_payment_method"], saved);
}

#[tokio::test]
async fn new_payment_details_become_the_default_and_are_charged_off_session() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "details").await;
    let customer = h.customer().await;
    let charge = |amount: Decimal, currency: &str| ChargeRequest {
        customer_ref: customer.clone(),
        amount,
        currency: currency.into(),
        description: "Renewal".into(),
        idempotency_key: unique("charge"),
    };

    // No card yet: nothing can be charged.
    match h.provider.charge(charge(dec!(9.99), "eur")).await.unwrap() {
        PaymentOutcome::Failed {
            provider_ref: None,
            reason,
        } => assert!(reason.contains("no saved card"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let return_url = "https://app.example/settings/billing";
    let session = h
        .provider
        .payment_details_session(DetailsRequest {
            customer_ref: customer.clone(),
            return_url: return_url.into(),
        })
        .await
        .unwrap();
    let prefix = format!("{}/providers/stripe/payment-details/seti_", h.public);
    assert!(session.url.starts_with(&prefix), "{}", session.url);
    let seti = session.url.rsplit('/').next().unwrap().to_owned();
    let (status, html) = h.page(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Update your payment details"), "{html}");
    assert!(html.contains(return_url), "{html}");

    let (status, location, _) = h.pay(&session.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(return_url));
    let stored = h.stripe_get(&format!("/v1/setup_intents/{seti}")).await;
    let saved = stored["payment_method"].as_str().unwrap().to_owned();
    let stored = h.stripe_get(&format!("/v1/customers/{customer}")).await;
    assert_eq!(stored["invoice_settings"]["default_payment_method"], saved);
    let (event, _, _) = h
        .event(|e| e.object_ref == customer && e.kind == ProviderEventKind::PaymentMethodUpdated)
        .await;
    assert_eq!(event.outcome, None);

    // Off-session charges of the new default.
    let request = charge(dec!(9.99), "EUR");
    let outcome = h.provider.charge(request.clone()).await.unwrap();
    let PaymentOutcome::Succeeded { provider_ref: pi } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        h.provider.payment_status(&pi).await.unwrap(),
        succeeded(&pi)
    );
    let stored = h.stripe_get(&format!("/v1/payment_intents/{pi}")).await;
    assert_eq!(stored["amount"], 999);
    assert_eq!(stored["payment_method"], saved.as_str());
    assert_eq!(stored["metadata"]["kind"], "charge");
    let (event, _, _) = h
        .event(|e| e.object_ref == pi && e.outcome == Some(succeeded(&pi)))
        .await;
    assert_eq!(event.kind, ProviderEventKind::Charge);

    for (amount, currency, minor) in [(dec!(500), "JPY", 500), (dec!(1.234), "KWD", 1234)] {
        let outcome = h.provider.charge(charge(amount, currency)).await.unwrap();
        let PaymentOutcome::Succeeded { provider_ref } = outcome else {
            panic!("{outcome:?}")
        };
        let stored = h
            .stripe_get(&format!("/v1/payment_intents/{provider_ref}"))
            .await;
        assert_eq!(stored["amount"], minor, "{currency}");
    }
    assert!(matches!(
        h.provider.charge(charge(dec!(1.5), "JPY")).await,
        Err(ProviderError::Rejected(_))
    ));

    // A card that is saved fine and declined when charged: the charge fails.
    let session = h
        .provider
        .payment_details_session(DetailsRequest {
            customer_ref: customer.clone(),
            return_url: return_url.into(),
        })
        .await
        .unwrap();
    let (status, _, _) = h.pay(&session.url, "4000000000000341").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    match h.provider.charge(charge(dec!(9.99), "eur")).await.unwrap() {
        PaymentOutcome::Failed { reason, .. } => assert!(reason.contains("declined"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

// --- without localstripe ----------------------------------------------------------------------

fn provider_at(api_base: &str, timeout: Duration) -> StripeProvider {
    StripeProvider::new(StripeConfig {
        api_key: API_KEY.into(),
        api_base: api_base.into(),
        webhook_secret: "whsec_test".into(),
        public_base_url: "http://127.0.0.1:9".into(),
        timeout,
    })
    .unwrap()
}

fn charge_of(customer: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        customer_ref: customer.into(),
        amount: dec!(10),
        currency: "usd".into(),
        description: "Renewal".into(),
        idempotency_key: key.into(),
    }
}

/// A server that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_provider_that_never_answers_times_out() {
    let p = provider_at(&black_hole().await, Duration::from_millis(300));
    let started = Instant::now();
    assert!(matches!(
        p.payment_status("pi_123").await,
        Err(ProviderError::Timeout)
    ));
    // The card lookup before a charge moves no money: a plain timeout.
    assert!(matches!(
        p.charge(charge_of("cus_1", "k")).await,
        Err(ProviderError::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Stripe as far as `charge` needs it: customers have a default card, and creating a
/// PaymentIntent hangs, fails or declines depending on the customer.
async fn fake_stripe(keys: Arc<Mutex<Vec<String>>>) -> String {
    async fn customer(Path(id): Path<String>) -> Response {
        json_response(
            StatusCode::OK,
            json!({"id": id, "object": "customer",
                "invoice_settings": {"default_payment_method": "pm_fake"}}),
        )
    }
    async fn create_intent(
        State(keys): State<Arc<Mutex<Vec<String>>>>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        if let Some(key) = headers.get("idempotency-key") {
            keys.lock().unwrap().push(key.to_str().unwrap().to_owned());
        }
        assert_eq!(form["payment_method"], "pm_fake");
        assert_eq!(form["off_session"], "true");
        match form["customer"].as_str() {
            "cus_hang" => std::future::pending().await,
            "cus_500" => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"type": "api_error", "message": "boom"}}),
            ),
            _ => json_response(
                StatusCode::PAYMENT_REQUIRED,
                json!({"error": {"type": "card_error", "code": "card_declined",
                    "message": "Your card was declined.",
                    "payment_intent": {"id": "pi_declined", "object": "payment_intent"}}}),
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/customers/{id}", get(customer))
        .route("/v1/payment_intents", post(create_intent))
        .with_state(keys);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_charge_whose_answer_is_lost_is_unknown_never_failed() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let p = provider_at(&fake_stripe(keys.clone()).await, Duration::from_millis(500));

    // Sent, then no answer: the money may have moved.
    assert_eq!(
        p.charge(charge_of("cus_hang", "key-hang")).await.unwrap(),
        PaymentOutcome::Unknown { provider_ref: None }
    );
    assert_eq!(
        p.charge(charge_of("cus_500", "key-500")).await.unwrap(),
        PaymentOutcome::Unknown { provider_ref: None }
    );
    // A definite decline fails, with the intent Stripe made.
    assert_eq!(
        p.charge(charge_of("cus_402", "key-402")).await.unwrap(),
        PaymentOutcome::Failed {
            provider_ref: Some("pi_declined".into()),
            reason: "Your card was declined.".into()
        }
    );
    assert_eq!(
        *keys.lock().unwrap(),
        ["key-hang", "key-500", "key-402"],
        "every charge carries its idempotency key"
    );
}

#[tokio::test]
async fn a_provider_nobody_listens_at_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = provider_at(&url, Duration::from_secs(2));
    assert!(matches!(
        p.charge(charge_of("cus_1", "k")).await,
        Err(ProviderError::Unreachable(_))
    ));
    assert!(matches!(
        p.payment_status("seti_1").await,
        Err(ProviderError::Unreachable(_))
    ));
}
