//! The sandbox provider end to end: its pages served over HTTP on 127.0.0.1, and a webhook
//! receiver in the same server that verifies each event with `verify_webhook`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use providers::sandbox::{
    MOUNT, MemoryStore, RecordKind, SIGNATURE_HEADER, SandboxConfig, SandboxProvider, SandboxStore,
    StoreError, Versioned,
};
use providers::{
    ChargeRequest, CheckoutRequest, CustomerInfo, DetailsRequest, PaymentOutcome, PaymentProvider,
    ProviderError, ProviderEvent, ProviderEventKind, RefundRequest, signature,
};
use rust_decimal::Decimal;
use rust_decimal::dec;

const SECRET: &str = "whsec_sandbox_test";

#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<ProviderEvent>>>,
    refused: Arc<Mutex<usize>>,
}

#[derive(Clone)]
struct Receiver {
    provider: SandboxProvider,
    received: Received,
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match rx.provider.verify_webhook(&headers, &body) {
        Ok(events) => {
            rx.received.events.lock().unwrap().extend(events);
            StatusCode::OK
        }
        Err(_) => {
            *rx.received.refused.lock().unwrap() += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

struct Harness {
    provider: SandboxProvider,
    base: String,
    http: reqwest::Client,
    received: Received,
}

impl Harness {
    /// The pages nested at `/providers/sandbox`, the receiver at `/providers/sandbox/webhook`
    /// (where `SandboxConfig::new` sends events), all on one ephemeral port.
    async fn start() -> Harness {
        Self::start_on(Arc::new(MemoryStore::default())).await
    }

    /// A sandbox on its own port that keeps its state in `store`: several harnesses on one
    /// store are server processes sharing a database.
    async fn start_on(store: Arc<dyn SandboxStore>) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let provider = SandboxProvider::new(SandboxConfig::new(base.clone(), SECRET), store);
        Self::serve(listener, base, provider)
    }

    fn serve(listener: tokio::net::TcpListener, base: String, provider: SandboxProvider) -> Self {
        let received = Received::default();
        let receiver = Router::new()
            .route(&format!("{MOUNT}/webhook"), post(receive))
            .with_state(Receiver {
                provider: provider.clone(),
                received: received.clone(),
            });
        let app = Router::new()
            .nest(MOUNT, provider.routes().expect("the sandbox has pages"))
            .merge(receiver);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            provider,
            base,
            http,
            received,
        }
    }

    fn events(&self) -> Vec<ProviderEvent> {
        self.received.events.lock().unwrap().clone()
    }

    fn refused(&self) -> usize {
        *self.received.refused.lock().unwrap()
    }

    async fn customer(&self) -> String {
        self.provider
            .upsert_customer(&CustomerInfo {
                customer_id: "c1".into(),
                provider_ref: None,
                name: "Ada".into(),
                email: "ada@example.com".into(),
                phone: None,
            })
            .await
            .unwrap()
    }

    fn checkout_request(&self, customer_ref: &str, amount: Decimal, key: &str) -> CheckoutRequest {
        CheckoutRequest {
            customer_ref: customer_ref.into(),
            subscription_id: "sub_1".into(),
            amount,
            currency: "eur".into(),
            description: "Pro plan <monthly> & more".into(),
            success_url: format!("{}/done?ok=1", self.base),
            cancel_url: format!("{}/cancelled", self.base),
            idempotency_key: key.into(),
            terms: Default::default(),
        }
    }

    async fn get(&self, url: &str) -> (StatusCode, String) {
        let r = self.http.get(url).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// POSTs a form; returns status, Location (if any) and body.
    async fn post_form(&self, url: &str, form: &str) -> (StatusCode, Option<String>, String) {
        let r = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        (status, location, r.text().await.unwrap())
    }
}

fn succeeded(r: &str) -> PaymentOutcome {
    PaymentOutcome::Succeeded {
        provider_ref: r.into(),
    }
}

fn pending(r: &str) -> PaymentOutcome {
    PaymentOutcome::Pending {
        provider_ref: r.into(),
    }
}

fn failed(r: &str, reason: &str) -> PaymentOutcome {
    PaymentOutcome::Failed {
        provider_ref: Some(r.into()),
        reason: reason.into(),
    }
}

fn charge_request(customer_ref: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        customer_ref: customer_ref.into(),
        amount: dec!(9.99),
        currency: "eur".into(),
        description: "Renewal".into(),
        idempotency_key: key.into(),
    }
}

#[tokio::test]
async fn a_good_card_pays_sends_a_verified_event_then_redirects() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    assert!(cus.starts_with("sbx_cus_"));
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(12.5), "k1"))
        .await
        .unwrap();
    assert!(session.provider_ref.starts_with("sbx_cs_"));
    assert_eq!(
        session.url,
        format!(
            "{}/providers/sandbox/checkout/{}",
            h.base, session.provider_ref
        )
    );
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        pending(&session.provider_ref)
    );

    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("12.50 EUR"), "{page}");
    assert!(page.contains("Pro plan &lt;monthly&gt; &amp; more"));
    assert!(!page.contains("<monthly>"));
    assert!(page.contains("name=\"card_number\""));
    assert!(page.contains("<label for=\"card_number\">"));
    // Cancelling is a form that tells the server before the browser leaves.
    assert!(page.contains(&format!("action=\"{}/abandon\"", session.provider_ref)));
    assert!(!page.contains("<script"));

    let (status, location, _) = h
        .post_form(
            &session.url,
            "card_number=4242+4242+4242+4242&expiry=12%2F34&cvc=123",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    // Delivered before the redirect: already here.
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert!(events[0].id.starts_with("sbx_evt_"));
    assert_eq!(events[0].kind, ProviderEventKind::Checkout);
    assert_eq!(events[0].object_ref, session.provider_ref);
    assert_eq!(events[0].outcome, Some(succeeded(&session.provider_ref)));
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        succeeded(&session.provider_ref)
    );

    // Paying again charges nothing and sends nothing; the page says it is done.
    let (status, location, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    assert_eq!(h.events().len(), 1);
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("complete"));

    // The card was saved: an off-session charge succeeds.
    let outcome = h
        .provider
        .charge(charge_request(&cus, "renew-1"))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Succeeded { provider_ref } if provider_ref.starts_with("sbx_ch_"))
    );
}

#[tokio::test]
async fn a_declined_card_shows_402_and_sends_a_failed_event_and_may_be_retried() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(20), "k1"))
        .await
        .unwrap();
    let (status, location, page) = h
        .post_form(&session.url, "card_number=4000+0000+0000+0002")
        .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(location, None);
    assert!(page.contains("card declined"), "{page}");
    assert!(page.contains("role=\"alert\""));
    assert!(page.contains("value=\"4000 0000 0000 0002\""));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, ProviderEventKind::Checkout);
    assert_eq!(
        events[0].outcome,
        Some(failed(&session.provider_ref, "card declined"))
    );
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        failed(&session.provider_ref, "card declined")
    );
    // A declined card is not saved.
    let outcome = h.provider.charge(charge_request(&cus, "c")).await.unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Failed { reason, .. } if reason == "no payment method"),
        "{outcome:?}"
    );

    // The customer tries another card on the same page.
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("card declined"));
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let events = h.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].outcome, Some(succeeded(&session.provider_ref)));
}

#[tokio::test]
async fn a_pending_card_waits_until_settled_on_the_page() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(5), "k1"))
        .await
        .unwrap();
    let (status, location, page) = h
        .post_form(&session.url, "card_number=4000000000000077")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(location, None);
    assert!(page.contains("Payment pending"), "{page}");
    assert!(page.contains(&format!("action=\"{}/settle\"", session.provider_ref)));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Some(pending(&session.provider_ref)));
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        pending(&session.provider_ref)
    );
    // Reloading shows the pending page; paying again changes nothing.
    let (_, page) = h.get(&session.url).await;
    assert!(page.contains("Payment pending"));
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.events().len(), 1);

    let (status, location, _) = h
        .post_form(&format!("{}/settle", session.url), "success=true")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    let events = h.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].kind, ProviderEventKind::Checkout);
    assert_eq!(events[1].outcome, Some(succeeded(&session.provider_ref)));
    assert_ne!(events[0].id, events[1].id);

    // Settling again is harmless.
    let (status, _, _) = h
        .post_form(&format!("{}/settle", session.url), "success=false")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h.events().len(), 2);
    // The pending card was saved: its charges stay pending too.
    let outcome = h.provider.charge(charge_request(&cus, "r1")).await.unwrap();
    assert!(matches!(outcome, PaymentOutcome::Pending { .. }));
}

#[tokio::test]
async fn a_pending_checkout_settled_as_failed_sends_a_failed_event() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(5), "k1"))
        .await
        .unwrap();
    h.post_form(&session.url, "card_number=4000+0000+0000+0077")
        .await;
    let (status, location, _) = h
        .post_form(&format!("{}/settle", session.url), "success=false")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), session.url);
    let events = h.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].outcome,
        Some(failed(&session.provider_ref, "card declined"))
    );
    let (_, page) = h.get(&session.url).await;
    assert!(page.contains("card declined"));
    assert!(page.contains("name=\"card_number\""));

    // The method form of settling, on another session.
    let other = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(5), "k2"))
        .await
        .unwrap();
    h.post_form(&other.url, "card_number=4000000000000077")
        .await;
    let outcome = h.provider.settle(&other.provider_ref, true).await.unwrap();
    assert_eq!(outcome, succeeded(&other.provider_ref));
    assert_eq!(
        h.events().last().unwrap().outcome,
        Some(succeeded(&other.provider_ref))
    );
    assert!(matches!(
        h.provider.settle("sbx_cs_nope", true).await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_session() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let a = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "same"))
        .await
        .unwrap();
    let b = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "same"))
        .await
        .unwrap();
    let c = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "other"))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a.provider_ref, c.provider_ref);
    assert!(matches!(
        h.provider
            .start_checkout(h.checkout_request(&cus, dec!(10), ""))
            .await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn a_zero_amount_checkout_only_saves_the_card() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, Decimal::ZERO, "trial"))
        .await
        .unwrap();
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("nothing is charged today; your card is saved for later payments"));
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.events()[0].outcome,
        Some(succeeded(&session.provider_ref))
    );
}

#[tokio::test]
async fn an_unknown_card_asks_for_a_test_card_and_sends_nothing() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(1), "k"))
        .await
        .unwrap();
    for form in ["card_number=4111+1111+1111+1111", "card_number=", ""] {
        let (status, _, page) = h.post_form(&session.url, form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        assert!(page.contains("use a test card"), "{page}");
    }
    let (_, _, page) = h
        .post_form(&session.url, "card_number=%22%3E%3Cscript%3E")
        .await;
    assert!(!page.contains("<script>"));
    assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;\""));
    assert!(h.events().is_empty());
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        pending(&session.provider_ref)
    );
}

#[tokio::test]
async fn unknown_pages_and_refs_are_not_found() {
    let h = Harness::start().await;
    let (status, page) = h
        .get(&format!(
            "{}/providers/sandbox/checkout/sbx_cs_nope",
            h.base
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("does not exist"));
    let (status, _, _) = h
        .post_form(
            &format!("{}/providers/sandbox/checkout/sbx_cs_nope/settle", h.base),
            "success=true",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for action in ["", "/abandon"] {
        let (status, _, page) = h
            .post_form(
                &format!("{}/providers/sandbox/checkout/sbx_cs_nope{action}", h.base),
                "card_number=4242424242424242",
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
        assert!(page.contains("does not exist"));
    }
    let (status, _) = h
        .get(&format!("{}/providers/sandbox/payment-details/x", h.base))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h.events().is_empty());
    assert!(matches!(
        h.provider.payment_status("sbx_ch_nope").await,
        Err(ProviderError::Rejected(_))
    ));
}

#[tokio::test]
async fn charges_follow_the_saved_card_and_are_idempotent() {
    let h = Harness::start().await;
    let cus = h.customer().await;

    // No card yet.
    let outcome = h.provider.charge(charge_request(&cus, "c0")).await.unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Failed { reason, .. } if reason == "no payment method")
    );
    let outcome = h
        .provider
        .charge(charge_request("sbx_cus_unknown", "c0b"))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Failed { reason, .. } if reason == "no payment method")
    );

    // Save the declining card through the payment-details page.
    save_card(&h, &cus, "4000 0000 0000 0002").await;
    let declined = h.provider.charge(charge_request(&cus, "c1")).await.unwrap();
    let PaymentOutcome::Failed {
        provider_ref: Some(declined_ref),
        reason,
    } = &declined
    else {
        panic!("{declined:?}")
    };
    assert_eq!(reason, "card declined");
    assert_eq!(
        h.provider.payment_status(declined_ref).await.unwrap(),
        declined
    );

    // The pending card: pending, then settled with a webhook.
    save_card(&h, &cus, "4000000000000077").await;
    let outcome = h.provider.charge(charge_request(&cus, "c2")).await.unwrap();
    let PaymentOutcome::Pending { provider_ref } = outcome else {
        panic!("{outcome:?}")
    };
    let before = h.events().len();
    assert_eq!(
        h.provider.settle(&provider_ref, true).await.unwrap(),
        succeeded(&provider_ref)
    );
    let events = h.events();
    assert_eq!(events.len(), before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.kind, ProviderEventKind::Charge);
    assert_eq!(last.object_ref, provider_ref);
    assert_eq!(last.outcome, Some(succeeded(&provider_ref)));
    // The same key: the same charge, now settled; nothing charged twice.
    assert_eq!(
        h.provider.charge(charge_request(&cus, "c2")).await.unwrap(),
        succeeded(&provider_ref)
    );

    // A pending charge that fails.
    let PaymentOutcome::Pending { provider_ref } =
        h.provider.charge(charge_request(&cus, "c3")).await.unwrap()
    else {
        panic!()
    };
    h.provider.settle(&provider_ref, false).await.unwrap();
    assert_eq!(
        h.events().last().unwrap().outcome,
        Some(failed(&provider_ref, "card declined"))
    );

    // The good card.
    save_card(&h, &cus, "4242424242424242").await;
    let first = h.provider.charge(charge_request(&cus, "c4")).await.unwrap();
    let again = h.provider.charge(charge_request(&cus, "c4")).await.unwrap();
    assert!(matches!(first, PaymentOutcome::Succeeded { .. }));
    assert_eq!(first, again);
    let other = h.provider.charge(charge_request(&cus, "c5")).await.unwrap();
    assert_ne!(first, other);
    // The earlier declined key still answers as before.
    assert_eq!(
        h.provider.charge(charge_request(&cus, "c1")).await.unwrap(),
        declined
    );
}

/// Replaces the customer's card on the payment-details page and checks the event.
async fn save_card(h: &Harness, cus: &str, number: &str) {
    let session = h
        .provider
        .payment_details_session(DetailsRequest {
            customer_ref: cus.into(),
            return_url: format!("{}/account", h.base),
        })
        .await
        .unwrap();
    assert!(
        session
            .url
            .starts_with(&format!("{}/providers/sandbox/payment-details/", h.base))
    );
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Update your payment details"));
    let before = h.events().len();
    let (status, location, _) = h
        .post_form(
            &session.url,
            &format!("card_number={}", number.replace(' ', "+")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/account", h.base));
    let events = h.events();
    assert_eq!(events.len(), before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.kind, ProviderEventKind::PaymentMethodUpdated);
    assert_eq!(last.object_ref, cus);
    assert_eq!(last.outcome, None);
    // The link is used up: opening it again says so, posting again just goes back.
    let (_, page) = h.get(&session.url).await;
    assert!(page.contains("saved"));
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h.events().len(), before + 1);
}

#[tokio::test]
async fn the_details_page_refuses_unknown_cards() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .payment_details_session(DetailsRequest {
            customer_ref: cus,
            return_url: format!("{}/account", h.base),
        })
        .await
        .unwrap();
    let (status, _, page) = h.post_form(&session.url, "card_number=1234").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("use a test card"));
    assert!(h.events().is_empty());
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let h = Harness::start().await;
    let body = br#"{"id":"sbx_evt_x","type":"checkout.succeeded","object":"sbx_cs_x"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut headers = HeaderMap::new();

    // Missing.
    assert!(matches!(
        h.provider.verify_webhook(&headers, body),
        Err(ProviderError::BadSignature)
    ));
    // Another secret.
    headers.insert(
        SIGNATURE_HEADER,
        signature::sign("whsec_other", now, body).parse().unwrap(),
    );
    assert!(matches!(
        h.provider.verify_webhook(&headers, body),
        Err(ProviderError::BadSignature)
    ));
    // Too old.
    headers.insert(
        SIGNATURE_HEADER,
        signature::sign(SECRET, now - 3600, body).parse().unwrap(),
    );
    assert!(matches!(
        h.provider.verify_webhook(&headers, body),
        Err(ProviderError::BadSignature)
    ));
    // A tampered body.
    headers.insert(
        SIGNATURE_HEADER,
        signature::sign(SECRET, now, body).parse().unwrap(),
    );
    assert!(matches!(
        h.provider.verify_webhook(&headers, b"{\"id\":\"other\"}"),
        Err(ProviderError::BadSignature)
    ));
    // The right one; and an unknown type is acknowledged as Other.
    let events = h.provider.verify_webhook(&headers, body).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Some(succeeded("sbx_cs_x")));
    let other = br#"{"id":"sbx_evt_y","type":"customer.updated","object":"sbx_cus_x"}"#;
    headers.insert(
        SIGNATURE_HEADER,
        signature::sign(SECRET, now, other).parse().unwrap(),
    );
    let events = h.provider.verify_webhook(&headers, other).unwrap();
    assert_eq!(
        events[0].kind,
        ProviderEventKind::Other("customer.updated".into())
    );

    // Over HTTP, a forged event is refused by the receiver.
    let r = h
        .http
        .post(format!("{}/providers/sandbox/webhook", h.base))
        .header(SIGNATURE_HEADER, signature::sign("forged", now, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.refused(), 1);
    assert!(h.events().is_empty());
}

#[tokio::test]
async fn an_unreachable_webhook_receiver_does_not_block_the_redirect() {
    // A port that nothing listens on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let provider = SandboxProvider::new(
        SandboxConfig {
            public_base_url: base.clone(),
            webhook_secret: SECRET.into(),
            webhook_url: dead_url,
        },
        Arc::new(MemoryStore::default()),
    );
    let h = Harness::serve(listener, base, provider);
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(3), "k"))
        .await
        .unwrap();
    let (status, location, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    // The reconciler's question still gets the answer.
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        succeeded(&session.provider_ref)
    );
}

// ----- closed checkouts, abandon, refunds, shared state -------------------------------------

fn refund_request(payment_ref: &str, amount: Decimal, key: &str) -> RefundRequest {
    RefundRequest {
        payment_ref: payment_ref.into(),
        amount,
        currency: "eur".into(),
        reason: "checkout closed before the payment arrived".into(),
        idempotency_key: key.into(),
    }
}

fn rejected(result: Result<PaymentOutcome, ProviderError>) -> String {
    match result {
        Err(ProviderError::Rejected(reason)) => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_checkout_says_so_and_takes_no_card() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(12.5), "k1"))
        .await
        .unwrap();
    // A declined attempt first: closing still stops the retry.
    h.post_form(&session.url, "card_number=4000000000000002")
        .await;
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();

    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("This checkout is closed"), "{page}");
    assert!(page.contains("expired, was replaced"));
    assert!(page.contains(&format!("href=\"{}/cancelled\"", h.base)));
    assert!(!page.contains("name=\"card_number\""));

    let before = h.events().len();
    for card in ["4242424242424242", "4000000000000077", "4000000000000002"] {
        let (status, location, page) = h
            .post_form(&session.url, &format!("card_number={card}"))
            .await;
        assert_eq!(status, StatusCode::GONE, "{card}");
        assert_eq!(location, None);
        assert!(page.contains("your card was not charged"), "{page}");
        assert!(page.contains(&format!("href=\"{}/cancelled\"", h.base)));
    }
    assert_eq!(h.events().len(), before);
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        failed(&session.provider_ref, "card declined")
    );
    // Nothing was saved: the customer has no card.
    let outcome = h.provider.charge(charge_request(&cus, "c")).await.unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Failed { reason, .. } if reason == "no payment method")
    );
    // Closing again, or closing what does not exist, changes nothing.
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();
    h.provider.close_checkout("sbx_cs_nope").await.unwrap();
    assert_eq!(h.events().len(), before);
}

#[tokio::test]
async fn closing_a_paid_checkout_changes_nothing_and_a_replayed_post_takes_nothing() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "k1"))
        .await
        .unwrap();
    h.post_form(&session.url, "card_number=4242424242424242")
        .await;
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("This payment is complete"));
    let (status, location, _) = h
        .post_form(&session.url, "card_number=4000000000000002")
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    assert_eq!(h.events().len(), 1);
    assert_eq!(
        h.provider
            .payment_status(&session.provider_ref)
            .await
            .unwrap(),
        succeeded(&session.provider_ref)
    );
}

#[tokio::test]
async fn a_pending_payment_in_flight_can_still_succeed_after_the_checkout_closed() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(7), "k1"))
        .await
        .unwrap();
    h.post_form(&session.url, "card_number=4000+0000+0000+0077")
        .await;
    h.provider
        .close_checkout(&session.provider_ref)
        .await
        .unwrap();
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("This checkout is closed"));
    assert!(page.contains("still pending"), "{page}");
    assert!(page.contains(&format!("action=\"{}/settle\"", session.provider_ref)));
    // A new card is refused; the bank's answer to the one in flight is not.
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        h.provider
            .settle(&session.provider_ref, true)
            .await
            .unwrap(),
        succeeded(&session.provider_ref)
    );
    let last = h.events().last().unwrap().clone();
    assert_eq!(last.kind, ProviderEventKind::Checkout);
    assert_eq!(last.outcome, Some(succeeded(&session.provider_ref)));
    // The money moved, so it can be given back.
    let outcome = h
        .provider
        .refund(refund_request(&session.provider_ref, dec!(7), "r1"))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, PaymentOutcome::Succeeded { provider_ref } if provider_ref.starts_with("sbx_re_")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn abandoning_tells_the_server_then_goes_to_the_cancel_url() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "k1"))
        .await
        .unwrap();
    let abandon = format!("{}/abandon", session.url);
    let (status, location, _) = h.post_form(&abandon, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/cancelled", h.base));
    // Delivered before the redirect.
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, ProviderEventKind::CheckoutAbandoned);
    assert_eq!(events[0].object_ref, session.provider_ref);
    assert_eq!(events[0].outcome, None);
    // The session is closed.
    let (status, page) = h.get(&session.url).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(page.contains("This checkout is closed"));
    let (status, _, _) = h
        .post_form(&session.url, "card_number=4242424242424242")
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(h.events().len(), 1);
    // Pressing it again (a lost delivery, a second tab) still goes back.
    let (status, location, _) = h.post_form(&abandon, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/cancelled", h.base));

    // A paid session is not abandoned: it goes to its success URL, and nothing is sent.
    let paid = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "k2"))
        .await
        .unwrap();
    h.post_form(&paid.url, "card_number=4242424242424242").await;
    let before = h.events().len();
    let (status, location, _) = h.post_form(&format!("{}/abandon", paid.url), "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.unwrap(), format!("{}/done?ok=1", h.base));
    assert_eq!(h.events().len(), before);
    assert_eq!(
        h.provider.payment_status(&paid.provider_ref).await.unwrap(),
        succeeded(&paid.provider_ref)
    );
}

#[tokio::test]
async fn refunds_give_back_what_was_taken_once_per_key_and_never_more() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let session = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(12.50), "k1"))
        .await
        .unwrap();
    h.post_form(&session.url, "card_number=4242424242424242")
        .await;
    let before = h.events().len();

    let first = h
        .provider
        .refund(refund_request(&session.provider_ref, dec!(5.25), "r1"))
        .await
        .unwrap();
    let PaymentOutcome::Succeeded {
        provider_ref: refund_id,
    } = &first
    else {
        panic!("{first:?}")
    };
    assert!(refund_id.starts_with("sbx_re_"));
    let events = h.events();
    assert_eq!(events.len(), before + 1);
    assert_eq!(events[before].kind, ProviderEventKind::Refund);
    assert_eq!(events[before].object_ref, *refund_id);
    assert_eq!(events[before].outcome, Some(succeeded(refund_id)));
    assert_eq!(
        h.provider.payment_status(refund_id).await.unwrap(),
        succeeded(refund_id)
    );

    // The same key: the same refund, given once (7.25 is still left to refund).
    let again = h
        .provider
        .refund(refund_request(&session.provider_ref, dec!(5.25), "r1"))
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(h.events().len(), before + 1);
    let reason = rejected(
        h.provider
            .refund(refund_request(&session.provider_ref, dec!(7.26), "r2"))
            .await,
    );
    assert!(
        reason.contains("more than the 7.25 EUR left of the 12.50 EUR paid"),
        "{reason}"
    );
    let rest = h
        .provider
        .refund(refund_request(&session.provider_ref, dec!(7.25), "r3"))
        .await
        .unwrap();
    assert!(
        matches!(&rest, PaymentOutcome::Succeeded { provider_ref } if provider_ref != refund_id)
    );
    let reason = rejected(
        h.provider
            .refund(refund_request(&session.provider_ref, dec!(0.01), "r4"))
            .await,
    );
    assert!(reason.contains("0.00 EUR left"), "{reason}");
    // A retry of an earlier key after the money is all back still answers the same.
    assert_eq!(
        h.provider
            .refund(refund_request(&session.provider_ref, dec!(5.25), "r1"))
            .await
            .unwrap(),
        first
    );
    // A key belongs to one payment.
    let other = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(3), "k2"))
        .await
        .unwrap();
    h.post_form(&other.url, "card_number=4242424242424242")
        .await;
    let reason = rejected(
        h.provider
            .refund(refund_request(&other.provider_ref, dec!(1), "r1"))
            .await,
    );
    assert!(reason.contains("another payment"), "{reason}");
    // Another currency is not what was paid.
    let mut usd = refund_request(&other.provider_ref, dec!(1), "r5");
    usd.currency = "usd".into();
    let reason = rejected(h.provider.refund(usd).await);
    assert!(reason.contains("in EUR, not USD"), "{reason}");
    assert_eq!(h.events().len(), before + 2 + 1); // two refunds, the second checkout
}

#[tokio::test]
async fn refunds_of_unpaid_unknown_or_card_only_payments_are_rejected() {
    let h = Harness::start().await;
    let cus = h.customer().await;
    let open = h
        .provider
        .start_checkout(h.checkout_request(&cus, dec!(10), "open"))
        .await
        .unwrap();
    let reason = rejected(
        h.provider
            .refund(refund_request(&open.provider_ref, dec!(1), "r1"))
            .await,
    );
    assert!(reason.contains("not been made"), "{reason}");
    // Pending, then declined.
    h.post_form(&open.url, "card_number=4000000000000077").await;
    let reason = rejected(
        h.provider
            .refund(refund_request(&open.provider_ref, dec!(1), "r1"))
            .await,
    );
    assert!(reason.contains("pending"), "{reason}");
    h.provider.settle(&open.provider_ref, false).await.unwrap();
    let reason = rejected(
        h.provider
            .refund(refund_request(&open.provider_ref, dec!(1), "r1"))
            .await,
    );
    assert!(reason.contains("failed"), "{reason}");
    // A checkout that only saved a card took nothing.
    let trial = h
        .provider
        .start_checkout(h.checkout_request(&cus, Decimal::ZERO, "trial"))
        .await
        .unwrap();
    h.post_form(&trial.url, "card_number=4242424242424242")
        .await;
    let reason = rejected(
        h.provider
            .refund(refund_request(&trial.provider_ref, dec!(1), "r2"))
            .await,
    );
    assert!(reason.contains("took no money"), "{reason}");
    // Unknown refs, and amounts that are not positive.
    for r in ["sbx_cs_nope", "sbx_ch_nope", "anything"] {
        let reason = rejected(h.provider.refund(refund_request(r, dec!(1), r)).await);
        assert!(reason.contains("unknown sandbox payment"), "{reason}");
    }
    rejected(
        h.provider
            .refund(refund_request(&trial.provider_ref, dec!(0), "r3"))
            .await,
    );
    rejected(
        h.provider
            .refund(refund_request(&trial.provider_ref, dec!(-1), "r3"))
            .await,
    );
    rejected(
        h.provider
            .refund(refund_request(&trial.provider_ref, dec!(1), ""))
            .await,
    );

    // A charge that succeeded (with the card the trial saved) can be refunded, in part.
    let charged = h
        .provider
        .charge(charge_request(&cus, "renew"))
        .await
        .unwrap();
    let PaymentOutcome::Succeeded {
        provider_ref: charge_ref,
    } = charged
    else {
        panic!("{charged:?}")
    };
    let outcome = h
        .provider
        .refund(refund_request(&charge_ref, dec!(9.98), "r4"))
        .await
        .unwrap();
    assert!(matches!(outcome, PaymentOutcome::Succeeded { .. }));
    let reason = rejected(
        h.provider
            .refund(refund_request(&charge_ref, dec!(0.02), "r5"))
            .await,
    );
    assert!(
        reason.contains("0.01 EUR left of the 9.99 EUR paid"),
        "{reason}"
    );
}

#[tokio::test]
async fn another_process_on_the_same_store_serves_and_pays_the_checkout() {
    let store: Arc<dyn SandboxStore> = Arc::new(MemoryStore::default());
    let first = Harness::start_on(store.clone()).await;
    let cus = first.customer().await;
    let session = first
        .provider
        .start_checkout(first.checkout_request(&cus, dec!(4), "k1"))
        .await
        .unwrap();
    drop(first);

    let second = Harness::start_on(store).await;
    let url = format!(
        "{}/providers/sandbox/checkout/{}",
        second.base, session.provider_ref
    );
    let (status, page) = second.get(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("4.00 EUR"));
    let (status, _, _) = second.post_form(&url, "card_number=4242424242424242").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(second.events().len(), 1);
    // The same idempotency key on the second process is the same session; the saved card
    // is there too.
    let again = second
        .provider
        .start_checkout(second.checkout_request(&cus, dec!(4), "k1"))
        .await
        .unwrap();
    assert_eq!(again.provider_ref, session.provider_ref);
    assert!(matches!(
        second
            .provider
            .charge(charge_request(&cus, "c1"))
            .await
            .unwrap(),
        PaymentOutcome::Succeeded { .. }
    ));
}

/// A [`MemoryStore`] that lets other tasks run before each read and write, as a database
/// round trip would (racing requests then interleave between reading a record and saving
/// it), and counts those round trips.
#[derive(Default)]
struct YieldingStore(MemoryStore, std::sync::atomic::AtomicUsize);

impl YieldingStore {
    async fn round_trip(&self) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
    /// The round trips since the last call.
    fn round_trips(&self) -> usize {
        self.1.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl SandboxStore for YieldingStore {
    async fn get(&self, kind: RecordKind, id: &str) -> Result<Option<Versioned>, StoreError> {
        self.round_trip().await;
        self.0.get(kind, id).await
    }
    async fn insert(
        &self,
        kind: RecordKind,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.round_trip().await;
        self.0.insert(kind, id, value).await
    }
    async fn update(
        &self,
        kind: RecordKind,
        id: &str,
        value: &serde_json::Value,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        self.round_trip().await;
        self.0.update(kind, id, value, expected_version).await
    }
    async fn get_many(
        &self,
        kind: RecordKind,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Versioned>, StoreError> {
        self.round_trip().await;
        self.0.get_many(kind, ids).await
    }
    async fn insert_many(
        &self,
        kind: RecordKind,
        records: &[(String, serde_json::Value)],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.round_trip().await;
        self.0.insert_many(kind, records).await
    }
}

#[tokio::test]
async fn two_processes_racing_on_one_checkout_give_one_winner() {
    let store: Arc<dyn SandboxStore> = Arc::new(YieldingStore::default());
    let a = Harness::start_on(store.clone()).await;
    let b = Harness::start_on(store).await;
    let cus = a.customer().await;
    for round in 0..20 {
        let session = a
            .provider
            .start_checkout(a.checkout_request(&cus, dec!(1), &format!("k{round}")))
            .await
            .unwrap();
        let url_b = format!(
            "{}/providers/sandbox/checkout/{}",
            b.base, session.provider_ref
        );
        let form = "card_number=4242424242424242";
        if round % 2 == 0 {
            // Paid twice at once.
            let (x, y) = tokio::join!(a.post_form(&session.url, form), b.post_form(&url_b, form));
            assert_eq!((x.0, y.0), (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER));
        } else {
            // Paid on one while the other closes it: either it was paid, or nothing was.
            let (x, _) = tokio::join!(
                b.post_form(&url_b, form),
                a.provider.close_checkout(&session.provider_ref)
            );
            let status = a
                .provider
                .payment_status(&session.provider_ref)
                .await
                .unwrap();
            match x.0 {
                StatusCode::SEE_OTHER => assert_eq!(status, succeeded(&session.provider_ref)),
                StatusCode::GONE => assert_eq!(status, pending(&session.provider_ref)),
                other => panic!("{other}"),
            }
        }
    }
    let paid: Vec<_> = a
        .events()
        .into_iter()
        .chain(b.events())
        .filter(|e| e.kind == ProviderEventKind::Checkout)
        .collect();
    let mut sessions: Vec<_> = paid.iter().map(|e| e.object_ref.clone()).collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!(sessions.len(), paid.len(), "a session was paid twice");
    assert!(paid.len() >= 10, "every double payment paid once");
}

#[tokio::test]
async fn a_batch_of_charges_answers_each_as_one_charge_would_in_three_store_calls() {
    let store = Arc::new(YieldingStore::default());
    let h = Harness::start_on(store.clone()).await;
    assert!(h.provider.charges_in_batches());
    let mut customers = Vec::new();
    for (n, card) in [
        Some("4242424242424242"),
        Some("4000000000000002"),
        Some("4000000000000077"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let cus = h
            .provider
            .upsert_customer(&CustomerInfo {
                customer_id: format!("batch-{n}"),
                provider_ref: None,
                name: format!("Customer {n}"),
                email: format!("c{n}@example.com"),
                phone: None,
            })
            .await
            .unwrap();
        if let Some(card) = card {
            save_card(&h, &cus, card).await;
        }
        customers.push(cus);
    }
    let [good, declining, pending_card, cardless] = &customers[..] else {
        unreachable!()
    };

    // Four new keys: the keys claimed in one write, the cards read in one, the charges
    // stored in one, whatever the batch's size.
    store.round_trips();
    let batch = vec![
        charge_request(good, "k-good"),
        charge_request(declining, "k-declined"),
        charge_request(pending_card, "k-pending"),
        charge_request(cardless, "k-cardless"),
    ];
    let answers: Vec<PaymentOutcome> = h
        .provider
        .charge_many(batch.clone())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(store.round_trips(), 3);
    let refs: Vec<String> = answers
        .iter()
        .map(|a| match a {
            PaymentOutcome::Succeeded { provider_ref }
            | PaymentOutcome::Pending { provider_ref }
            | PaymentOutcome::Failed {
                provider_ref: Some(provider_ref),
                ..
            } => provider_ref.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            succeeded(&refs[0]),
            failed(&refs[1], "card declined"),
            pending(&refs[2]),
            failed(&refs[3], "no payment method"),
        ]
    );
    for (r, answer) in refs.iter().zip(&answers) {
        assert_eq!(&h.provider.payment_status(r).await.unwrap(), answer);
    }

    // The same keys again, one by one: the same charges, nothing charged twice.
    for (request, answer) in batch.iter().zip(&answers) {
        assert_eq!(&h.provider.charge(request.clone()).await.unwrap(), answer);
    }

    // A batch that repeats a key, reuses another customer's key, and asks what cannot be
    // charged: each answered as calls one after another would be.
    let mut negative = charge_request(good, "k-negative");
    negative.amount = dec!(-1);
    let answers = h
        .provider
        .charge_many(vec![
            charge_request(good, "k-new"),
            charge_request(good, "k-new"),
            charge_request(cardless, "k-good"),
            charge_request(good, ""),
            negative,
            charge_request(good, "k-good"),
        ])
        .await;
    let fresh = answers[0].as_ref().unwrap().clone();
    assert!(
        matches!(fresh, PaymentOutcome::Succeeded { .. }),
        "{fresh:?}"
    );
    assert_eq!(answers[1].as_ref().unwrap(), &fresh);
    assert_eq!(answers[5].as_ref().unwrap(), &succeeded(&refs[0]));
    let reasons: Vec<String> = answers.into_iter().skip(2).take(3).map(rejected).collect();
    assert_eq!(
        reasons,
        [
            "idempotency key already used for another customer",
            "idempotency key is required",
            "amount must not be negative",
        ]
    );
}
