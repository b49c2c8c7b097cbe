//! A payment provider that misbehaves on demand, to prove that every failure path ends in
//! the right local state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use providers::{
    ChargeRequest, CheckoutRequest, CheckoutSession, CustomerInfo, DetailsRequest, HostedSession,
    PaymentOutcome, PaymentProvider, ProviderError, ProviderEvent, ProviderRef,
};
use serde_json::json;

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, monthly_plan, subscribe_input};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Works,
    Declines,
    Hangs,
    Garbage,
    Refuses,
}

struct Chaos {
    mode: Mutex<Mode>,
    status: Mutex<PaymentOutcome>,
    checkouts: AtomicUsize,
    /// The idempotency key of every charge request, in order.
    charges: Mutex<Vec<String>>,
}

impl Chaos {
    fn new() -> Arc<Chaos> {
        Arc::new(Chaos {
            mode: Mutex::new(Mode::Works),
            status: Mutex::new(PaymentOutcome::Unknown { provider_ref: None }),
            checkouts: AtomicUsize::new(0),
            charges: Mutex::new(Vec::new()),
        })
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    async fn behave(&self) -> Result<(), ProviderError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Works => Ok(()),
            Mode::Declines => Err(ProviderError::Rejected("card declined".into())),
            Mode::Hangs => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            }
            Mode::Garbage => Err(ProviderError::BadResponse("<html>502</html>".into())),
            Mode::Refuses => Err(ProviderError::Unreachable("connection refused".into())),
        }
    }
}

#[async_trait::async_trait]
impl PaymentProvider for Chaos {
    fn name(&self) -> &'static str {
        "chaos"
    }
    async fn upsert_customer(&self, c: &CustomerInfo) -> Result<ProviderRef, ProviderError> {
        Ok(format!("chaos_cus_{}", c.customer_id))
    }
    async fn start_checkout(&self, r: CheckoutRequest) -> Result<CheckoutSession, ProviderError> {
        self.checkouts.fetch_add(1, Ordering::SeqCst);
        self.behave().await?;
        Ok(CheckoutSession {
            provider_ref: format!("chaos_cs_{}", r.subscription_id),
            url: format!("https://chaos.example/checkout/{}", r.subscription_id),
        })
    }
    async fn payment_details_session(
        &self,
        _: DetailsRequest,
    ) -> Result<HostedSession, ProviderError> {
        self.behave().await?;
        Ok(HostedSession {
            url: "https://chaos.example/details".into(),
        })
    }
    async fn charge(&self, r: ChargeRequest) -> Result<PaymentOutcome, ProviderError> {
        self.charges.lock().unwrap().push(r.idempotency_key);
        self.behave().await?;
        Ok(self.status.lock().unwrap().clone())
    }
    async fn payment_status(&self, _: &str) -> Result<PaymentOutcome, ProviderError> {
        self.behave().await?;
        Ok(self.status.lock().unwrap().clone())
    }
    fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, ProviderError> {
        Err(ProviderError::BadSignature)
    }
}

const SUBSCRIBE: &str = "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id status } checkout { url status } } }";

async fn chaos_app() -> (TestApp, Arc<Chaos>) {
    let chaos = Chaos::new();
    let app = TestApp::spawn_with(
        |c| c.default_provider = "sandbox".into(),
        vec![chaos.clone()],
    )
    .await;
    (app, chaos)
}

fn with_provider(mut input: serde_json::Value) -> serde_json::Value {
    input["i"]["provider"] = json!("chaos");
    input
}

/// A customer with a subscription to a 10/month plan through the chaos provider (its
/// checkout open): (customer, subscription).
async fn chaos_subscriber(app: &TestApp) -> (String, String) {
    let (plan, _) = monthly_plan(app, "10").await;
    let customer = app.create_customer("c").await;
    let out = app
        .admin(
            SUBSCRIBE,
            with_provider(subscribe_input(&customer, &plan, None)),
        )
        .await;
    let sub = out.ok()["createSubscription"]["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (customer, sub)
}

async fn statuses(app: &TestApp, customer: &str) -> Vec<String> {
    let res = app
        .admin(
            "query($c: ID!) { customer(id: $c) { subscriptions { status } } }",
            json!({ "c": customer }),
        )
        .await;
    res.ok()["customer"]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_provider_failure_leaves_a_closed_subscription_and_allows_a_retry() {
    let (app, chaos) = chaos_app().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    for (i, mode) in [Mode::Declines, Mode::Hangs, Mode::Garbage, Mode::Refuses]
        .into_iter()
        .enumerate()
    {
        chaos.set(mode);
        let started = std::time::Instant::now();
        let res = app
            .admin(
                SUBSCRIBE,
                with_provider(subscribe_input(&customer, &plan, None)),
            )
            .await;
        assert_eq!(
            res.error_code(),
            Some("PAYMENT_PROVIDER_ERROR"),
            "{mode:?}: {}",
            res.body
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode:?} is cut off by the provider timeout"
        );
        let all = statuses(&app, &customer).await;
        assert_eq!(all.len(), i + 1);
        assert!(
            all.iter().all(|s| s == "INCOMPLETE_EXPIRED"),
            "{mode:?}: {all:?}"
        );
    }
    chaos.set(Mode::Works);
    let res = app
        .admin(
            SUBSCRIBE,
            with_provider(subscribe_input(&customer, &plan, None)),
        )
        .await;
    assert_eq!(
        res.ok()["createSubscription"]["subscription"]["status"],
        "INCOMPLETE"
    );
}

#[tokio::test]
async fn fifty_calls_with_one_key_make_one_provider_call() {
    let (app, chaos) = chaos_app().await;
    let app = Arc::new(app);
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (app, customer, plan) = (app.clone(), customer.clone(), plan.clone());
        tasks.spawn(async move {
            app.admin(
                SUBSCRIBE,
                with_provider(subscribe_input(&customer, &plan, Some("once"))),
            )
            .await
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().ok();
    }
    assert_eq!(chaos.checkouts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_outcome_is_reconciled_by_asking_the_provider_later() {
    let (app, chaos) = chaos_app().await;
    let (customer, sub) = chaos_subscriber(&app).await;
    let advance = |minutes: i64| {
        let to = (app.billing.clock.now() + chrono::TimeDelta::minutes(minutes)).to_rfc3339();
        let app = &app;
        async move {
            app.admin(
                "mutation($t: DateTime!) { advanceClock(to: $t) }",
                json!({ "t": to }),
            )
            .await
            .ok();
        }
    };
    // The provider does not know yet (or says garbage): nothing changes, it is asked again later.
    advance(2).await;
    chaos.set(Mode::Garbage);
    advance(5).await;
    chaos.set(Mode::Works);
    *chaos.status.lock().unwrap() = PaymentOutcome::Pending {
        provider_ref: "x".into(),
    };
    advance(10).await;
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status checkout { status } } }",
            json!({ "id": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "INCOMPLETE", "checkout": { "status": "OPEN" } })
    );

    *chaos.status.lock().unwrap() = PaymentOutcome::Succeeded {
        provider_ref: "x".into(),
    };
    advance(60).await;
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status checkout { status } } }",
            json!({ "id": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "ACTIVE", "checkout": { "status": "SUCCEEDED" } })
    );
    assert_eq!(
        event_kinds(&app, &customer).await,
        [
            "SUBSCRIPTION_CREATED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );
}

async fn advance_minutes(app: &TestApp, minutes: i64) {
    let to = app.billing.clock.now() + chrono::TimeDelta::minutes(minutes);
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": to.to_rfc3339() }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn an_invoice_charge_with_an_unknown_outcome_is_resent_under_its_key_and_paid_once() {
    let (app, chaos) = chaos_app().await;
    let (customer, sub) = chaos_subscriber(&app).await;
    *chaos.status.lock().unwrap() = PaymentOutcome::Succeeded {
        provider_ref: "chaos_first".into(),
    };
    advance_minutes(&app, 2).await;
    let invoice_and_status = || async {
        let res = app
            .admin(
                "query($s: ID!, $c: ID!) { subscription(id: $s) { status }
                   invoices(customerId: $c) { edges { node { status total attempts } } } }",
                json!({ "s": sub, "c": customer }),
            )
            .await;
        res.ok().clone()
    };
    assert_eq!(
        invoice_and_status().await["subscription"]["status"],
        "ACTIVE"
    );

    // The first month was paid at checkout (the opening invoice). The renewal charge: the provider cannot be
    // reached, then answers garbage. Neither says whether money moved, so the invoice
    // stays open and nothing is marked failed.
    chaos.set(Mode::Refuses);
    advance_minutes(&app, 35 * 24 * 60).await;
    chaos.set(Mode::Garbage);
    advance_minutes(&app, 11).await;
    let seen = invoice_and_status().await;
    assert_eq!(seen["subscription"]["status"], "ACTIVE");
    assert_eq!(
        seen["invoices"]["edges"][0]["node"],
        json!({ "status": "PAID", "total": "10.00", "attempts": 0 })
    );
    assert_eq!(
        seen["invoices"]["edges"][1]["node"],
        json!({ "status": "OPEN", "total": "10.00", "attempts": 0 })
    );

    // When it answers, the same attempt goes out again under the same idempotency key.
    chaos.set(Mode::Works);
    *chaos.status.lock().unwrap() = PaymentOutcome::Succeeded {
        provider_ref: "chaos_renewal".into(),
    };
    advance_minutes(&app, 11).await;
    let seen = invoice_and_status().await;
    assert_eq!(
        seen["invoices"]["edges"][1]["node"],
        json!({ "status": "PAID", "total": "10.00", "attempts": 0 })
    );
    let keys = chaos.charges.lock().unwrap().clone();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k == &keys[0] && k.ends_with("-attempt-1")),
        "one charge, sent three times: {keys:?}"
    );
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PAYMENT_SUCCEEDED").count(),
        2,
        "checkout and renewal: {kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k == "PAYMENT_FAILED"), "{kinds:?}");
}
