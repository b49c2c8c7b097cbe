//! The stripe provider against `localstripe` (a stateful fake Stripe from PyPI) and against
//! small misbehaving servers of our own, all on 127.0.0.1.
//!
//! No card reaches our server: where a browser would run Stripe.js, these tests do what
//! localstripe's fake Stripe.js does (confirm the page's SetupIntent at localstripe with the
//! publishable key and the client secret), then post the intent id to our page.
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
    ChargeRequest, CheckoutRequest, CustomerInfo, DetailsRequest, EventSink, PaymentOutcome,
    PaymentProvider, ProviderError, ProviderEvent, ProviderEventKind, RefundRequest,
};
use rust_decimal::Decimal;
use rust_decimal::dec;
use serde_json::{Value, json};

const API_KEY: &str = "sk_test_billing_providers";
const PUBLISHABLE_KEY: &str = "pk_test_billing_providers";

/// What the pages handed the server, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<ProviderEvent>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn deliver(
        &self,
        provider: &'static str,
        events: Vec<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        assert_eq!(provider, "stripe");
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
}

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
    /// What the pages reported at once.
    sink: Arc<Recorder>,
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
                publishable_key: PUBLISHABLE_KEY.into(),
                js_url: format!("{api}/js.stripe.com/v3/"),
                public_base_url: public.clone(),
                timeout: Duration::from_secs(10),
            })
            .unwrap(),
        );
        let sink = Arc::new(Recorder::default());
        provider.set_event_sink(sink.clone());
        let deliveries = Deliveries::default();
        // localstripe keeps every registration, also those of tests that have ended,
        // and delivers each event to all of them. Ports are reused, so a path of our
        // own keeps another registration's deliveries (signed with its secret) out.
        let hooks_path = format!("/hooks/{}", uuid::Uuid::new_v4().simple());
        let app = Router::new()
            .route(&hooks_path, post(collect))
            .with_state(deliveries.clone())
            .nest(MOUNT, provider.routes().expect("stripe has hosted pages"));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let hooks_url = format!("{public}{hooks_path}");
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
            sink,
            browser,
        }
    }

    /// The events the pages reported at once, so far.
    fn reported(&self) -> Vec<ProviderEvent> {
        self.sink.0.lock().unwrap().clone()
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
            terms: Default::default(),
        }
    }

    async fn page(&self, url: &str) -> (StatusCode, String) {
        let response = self.browser.get(url).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// What a customer does on a hosted page, as the browser would do it: Stripe.js (here,
    /// what localstripe's fake does) sends the card to Stripe and confirms the page's
    /// SetupIntent; then the page posts that intent's id to us. Returns our answer's status,
    /// redirect (if any) and page.
    async fn pay(&self, url: &str, card: &str) -> (StatusCode, Option<String>, String) {
        let (status, html) = self.page(url).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let secret = attribute(&html, "data-secret");
        let intent = field(&html, "intent");
        let message = self.stripe_js_confirm_setup(&intent, &secret, card).await;
        self.post_intent(url, &intent, message.as_deref().unwrap_or(""))
            .await
    }

    /// localstripe's `confirmCardSetup`: the card goes to Stripe with the publishable key.
    /// Returns Stripe.js's error message, if any.
    async fn stripe_js_confirm_setup(
        &self,
        seti: &str,
        secret: &str,
        card: &str,
    ) -> Option<String> {
        let number: String = card.chars().filter(char::is_ascii_digit).collect();
        let body = json!({
            "key": PUBLISHABLE_KEY, "use_stripe_sdk": true, "client_secret": secret,
            "payment_method_data": {"type": "card",
                "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                "billing_details": {"address": {"postal_code": "42424"}}},
        });
        let response = self
            .browser
            .post(format!("{}/v1/setup_intents/{seti}/confirm", self.api))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let ok = response.status().is_success();
        let answer: Value = response.json().await.unwrap();
        (!ok).then(|| {
            answer["error"]["message"]
                .as_str()
                .unwrap_or("failed")
                .to_owned()
        })
    }

    /// The page's form post: the confirmed intent's id and Stripe.js's message.
    async fn post_intent(
        &self,
        url: &str,
        intent: &str,
        message: &str,
    ) -> (StatusCode, Option<String>, String) {
        let response = self
            .browser
            .post(url)
            .form(&[("intent", intent), ("message", message)])
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

/// An attribute's value in a page (ids and secrets need no unescaping).
fn attribute(html: &str, name: &str) -> String {
    let start = html
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + name.len()
        + 2;
    html[start..].split('"').next().unwrap().to_owned()
}

/// A hidden field's value.
fn field(html: &str, name: &str) -> String {
    let start = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("field {name} in {html}"))
        + name.len()
        + 15;
    html[start..].split('"').next().unwrap().to_owned()
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
async fn a_checkout_paid_on_the_hosted_page_is_reported_at_once_and_by_a_signed_webhook() {
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

    // The page runs Stripe.js with the publishable key; it has no card field of its own.
    let (status, html) = h.page(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("12.50 USD"), "{html}");
    assert!(html.contains("Pro plan, monthly"), "{html}");
    assert!(
        html.contains(&format!("<script src=\"{api}/js.stripe.com/v3/\">")),
        "{html}"
    );
    assert_eq!(attribute(&html, "data-key"), PUBLISHABLE_KEY);
    assert!(!html.contains("card_number"), "{html}");
    // The card is collected by a SetupIntent of the page's own, tied to this payment.
    let seti = field(&html, "intent");
    let stored = h.stripe_get(&format!("/v1/setup_intents/{seti}")).await;
    assert_eq!(stored["metadata"]["kind"], "checkout_card");
    assert_eq!(stored["metadata"]["payment_intent"], pi.as_str());

    let (status, location, _) = h.pay(&session.url, "4242 4242 4242 4242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    assert_eq!(
        h.provider.payment_status(&pi).await.unwrap(),
        succeeded(&pi)
    );
    // Reported before the redirect.
    let reported = h.reported();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].kind, ProviderEventKind::Checkout);
    assert_eq!(reported[0].object_ref, pi);
    assert_eq!(reported[0].outcome, Some(succeeded(&pi)));

    // The card is kept as the customer's default for later charges.
    let stored = h.stripe_get(&format!("/v1/customers/{customer}")).await;
    let default = stored["invoice_settings"]["default_payment_method"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(default.starts_with("pm_"), "{stored}");

    // Posting again (a second click, a replay) pays nothing more and reports the same event.
    let (status, location, _) = h.post_intent(&session.url, &seti, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    assert!(h.reported().iter().all(|e| e.id == reported[0].id));
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

    // The money can be given back, once per idempotency key.
    let refund = RefundRequest {
        payment_ref: pi.clone(),
        amount: dec!(12.50),
        currency: "USD".into(),
        reason: "checkout closed before the payment arrived".into(),
        idempotency_key: unique("refund"),
    };
    let outcome = h.provider.refund(refund.clone()).await.unwrap();
    let PaymentOutcome::Succeeded { provider_ref: re } = outcome else {
        panic!("{outcome:?}")
    };
    let stored = h.stripe_get(&format!("/v1/refunds/{re}")).await;
    assert_eq!(stored["amount"], 1250);
    assert_eq!(stored["metadata"]["reason"], refund.reason.as_str());
    // Not a payment of ours, or nothing that took money: refused, nothing moves.
    for payment_ref in ["seti_1", "cus_1", "pi_x/../../v1/customers"] {
        let r = RefundRequest {
            payment_ref: payment_ref.into(),
            ..refund.clone()
        };
        assert!(
            matches!(h.provider.refund(r).await, Err(ProviderError::Rejected(_))),
            "{payment_ref}"
        );
    }
}

#[tokio::test]
async fn declined_cards_are_shown_and_reported_then_a_good_card_pays() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "declined").await;
    let customer = h.customer().await;
    let request = h.checkout(&customer, dec!(20), "eur");
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let pi = session.provider_ref.clone();

    // 4000 0000 0000 0002 is declined while Stripe saves it: the page says so, the server
    // hears of a failed payment, and the page takes another card.
    let (status, location, html) = h.pay(&session.url, "4000000000000002").await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(location, None);
    assert!(html.contains("Your card was declined."), "{html}");
    assert!(
        html.contains("data-secret=\"seti_"),
        "a new card form: {html}"
    );
    let failed = |e: &ProviderEvent| {
        e.object_ref == pi && matches!(e.outcome, Some(PaymentOutcome::Failed { .. }))
    };
    assert_eq!(h.reported().iter().filter(|e| failed(e)).count(), 1);
    assert!(matches!(
        h.provider.payment_status(&pi).await.unwrap(),
        PaymentOutcome::Pending { .. }
    ));

    // Then a good card pays.
    let (status, location, _) = h.pay(&session.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    let last = h.reported().pop().unwrap();
    assert_eq!(last.outcome, Some(succeeded(&pi)));

    // 4000 0000 0000 0341 is saved fine and declined when charged: the payment fails.
    // (Stripe then takes another card for the same intent; localstripe cannot retry a
    // PaymentIntent whose charge failed, so this one ends here.)
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let pi = session.provider_ref.clone();
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
    let failed = |e: &ProviderEvent| {
        e.object_ref == pi && matches!(e.outcome, Some(PaymentOutcome::Failed { .. }))
    };
    assert_eq!(h.reported().iter().filter(|e| failed(e)).count(), 1);
    // localstripe's payment_intent.payment_failed maps to a failed checkout too.
    let (event, _, _) = h.event(failed).await;
    assert_eq!(event.kind, ProviderEventKind::Checkout);
    assert!(event.id.starts_with("evt_"), "{event:?}");
}

#[tokio::test]
async fn forged_intent_ids_change_nothing() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "forged").await;
    let customer = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout(&customer, dec!(7), "usd"))
        .await
        .unwrap();
    // Another customer's card, saved on another checkout's page.
    let other = h.customer().await;
    let theirs = h
        .provider
        .start_checkout(h.checkout(&other, dec!(7), "usd"))
        .await
        .unwrap();
    let (_, html) = h.page(&theirs.url).await;
    let their_seti = field(&html, "intent");
    let secret = attribute(&html, "data-secret");
    assert_eq!(
        h.stripe_js_confirm_setup(&their_seti, &secret, "4242424242424242")
            .await,
        None
    );
    for forged in [
        their_seti.as_str(),
        theirs.provider_ref.as_str(),
        "seti_nonexistent",
        "",
        "pi_x/../../v1/customers",
    ] {
        let (status, location, html) = h.post_intent(&session.url, forged, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{forged}: {html}");
        assert_eq!(location, None);
        assert!(
            html.contains("does not belong to this payment page"),
            "{html}"
        );
    }
    assert!(matches!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        PaymentOutcome::Pending { .. }
    ));
    assert!(matches!(
        h.provider
            .payment_status(&theirs.provider_ref)
            .await
            .unwrap(),
        PaymentOutcome::Pending { .. }
    ));
    assert!(h.reported().is_empty(), "{:?}", h.reported());
}

#[tokio::test]
async fn a_closed_or_abandoned_checkout_takes_no_payment() {
    let Some(api) = localstripe() else { return };
    let h = Harness::start(&api, "closed").await;
    let customer = h.customer().await;
    let request = h.checkout(&customer, dec!(5), "usd");

    // Closed by the server (expired, replaced): the intent is cancelled, idempotently.
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let (_, html) = h.page(&session.url).await;
    let seti = field(&html, "intent");
    let secret = attribute(&html, "data-secret");
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();
    let stored = h
        .stripe_get(&format!("/v1/payment_intents/{}", session.provider_ref))
        .await;
    assert_eq!(stored["status"], "canceled");
    let (status, html) = h.page(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("This checkout is closed"), "{html}");
    assert!(html.contains(&request.cancel_url), "{html}");
    // A card confirmed on the page that was open before pays nothing.
    assert_eq!(
        h.stripe_js_confirm_setup(&seti, &secret, "4242424242424242")
            .await,
        None
    );
    let (status, _, html) = h.post_intent(&session.url, &seti, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("This checkout is closed"), "{html}");
    let stored = h
        .stripe_get(&format!("/v1/payment_intents/{}", session.provider_ref))
        .await;
    assert_eq!(stored["status"], "canceled");

    // A settled one stays settled; a free one (a SetupIntent) closes too.
    let paid = h.provider.start_checkout(request.clone()).await.unwrap();
    h.pay(&paid.url, "4242424242424242").await;
    h.provider.close_checkout(&paid.provider_ref).await.unwrap();
    assert_eq!(
        h.provider.payment_status(&paid.provider_ref).await.unwrap(),
        succeeded(&paid.provider_ref)
    );
    let free = h
        .provider
        .start_checkout(h.checkout(&customer, Decimal::ZERO, "usd"))
        .await
        .unwrap();
    h.provider.close_checkout(&free.provider_ref).await.unwrap();
    assert!(
        h.page(&free.url)
            .await
            .1
            .contains("This checkout is closed")
    );
    assert!(matches!(
        h.provider.close_checkout("cus_1").await,
        Err(ProviderError::Rejected(_))
    ));

    // The page's cancel button: cancelled and reported before the browser leaves.
    let session = h.provider.start_checkout(request.clone()).await.unwrap();
    let before = h.reported().len();
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
    let reported = h.reported();
    assert_eq!(reported.len(), before + 1);
    let abandoned = reported.last().unwrap();
    assert_eq!(abandoned.kind, ProviderEventKind::CheckoutAbandoned);
    assert_eq!(abandoned.object_ref, session.provider_ref);
    let stored = h
        .stripe_get(&format!("/v1/payment_intents/{}", session.provider_ref))
        .await;
    assert_eq!(stored["status"], "canceled");

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
async fn a_free_checkout_saves_the_card_with_a_setup_intent_and_is_reported_at_once() {
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
    assert_eq!(field(&html, "intent"), seti);

    let (status, location, _) = h.pay(&session.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(request.success_url.as_str()));
    assert_eq!(
        h.provider.payment_status(&seti).await.unwrap(),
        succeeded(&seti)
    );
    // localstripe sends no setup_intent webhook: the page's report is what activates.
    let reported = h.reported();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(
        (&reported[0].kind, reported[0].object_ref.as_str()),
        (&ProviderEventKind::Checkout, seti.as_str())
    );
    assert_eq!(reported[0].outcome, Some(succeeded(&seti)));
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
        publishable_key: PUBLISHABLE_KEY.into(),
        public_base_url: "http://127.0.0.1:9".into(),
        timeout,
        ..Default::default()
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
    async fn create_refund(
        State(keys): State<Arc<Mutex<Vec<String>>>>,
        headers: HeaderMap,
        Form(form): Form<HashMap<String, String>>,
    ) -> Response {
        if let Some(key) = headers.get("idempotency-key") {
            keys.lock().unwrap().push(key.to_str().unwrap().to_owned());
        }
        assert_eq!(form["amount"], "1000");
        match form["payment_intent"].as_str() {
            "pi_hang" => std::future::pending().await,
            "pi_500" => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": {"type": "api_error", "message": "boom"}}),
            ),
            _ => json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": {"type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": "Charge has already been refunded."}}),
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/customers/{id}", get(customer))
        .route("/v1/payment_intents", post(create_intent))
        .route("/v1/refunds", post(create_refund))
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
async fn a_refund_whose_answer_is_lost_is_unknown_and_a_refusal_is_an_error() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let p = provider_at(&fake_stripe(keys.clone()).await, Duration::from_millis(500));
    let refund = |pi: &str, key: &str| RefundRequest {
        payment_ref: pi.into(),
        amount: dec!(10),
        currency: "usd".into(),
        reason: "closed".into(),
        idempotency_key: key.into(),
    };
    assert_eq!(
        p.refund(refund("pi_hang", "r-hang")).await.unwrap(),
        PaymentOutcome::Unknown { provider_ref: None }
    );
    assert_eq!(
        p.refund(refund("pi_500", "r-500")).await.unwrap(),
        PaymentOutcome::Unknown { provider_ref: None }
    );
    assert!(matches!(
        p.refund(refund("pi_done", "r-done")).await,
        Err(ProviderError::Rejected(_))
    ));
    assert_eq!(*keys.lock().unwrap(), ["r-hang", "r-500", "r-done"]);
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
