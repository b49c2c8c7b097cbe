//! The built-in **sandbox** provider: hosts its own checkout and payment-details pages,
//! accepts test card numbers and reports results through signed webhooks, exactly like a
//! real provider would, so that the whole flow works on a machine with nothing else
//! running. All state lives in memory: a restart forgets sessions, cards and charges
//! (customer refs the server still holds are recreated on the next call that names them).
//!
//! Test cards (spaces and dashes ignored; expiry and CVC are ignored):
//!
//! | number                | checkout and off-session charge                     |
//! |-----------------------|-----------------------------------------------------|
//! | `4242 4242 4242 4242` | succeeds                                            |
//! | `4000 0000 0000 0002` | declined ("card declined")                          |
//! | `4000 0000 0000 0077` | pending until [`SandboxProvider::settle`]d          |
//!
//! A successful checkout saves its card for later charges. The payment-details page saves
//! any of the three, so that renewals which are declined or hang can be tried out.
//!
//! Hosted pages ([`SandboxProvider::router`], mounted at [`MOUNT`]):
//!
//! - `GET /checkout/{id}`, `POST /checkout/{id}` (form field `card_number`),
//!   `POST /checkout/{id}/settle` (form field `success=true|false`);
//! - `GET /payment-details/{token}`, `POST /payment-details/{token}`.
//!
//! Webhook events are POSTed to [`SandboxConfig::webhook_url`] as JSON ([`SandboxEvent`])
//! with a [`SIGNATURE_HEADER`] made by [`signature::sign`], and are delivered (awaited, with
//! a 5 s timeout) *before* the browser is redirected. A failed delivery is logged and the
//! browser still moves on: the server's reconciler asks `payment_status` later.

mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{
    ChargeRequest, CheckoutRequest, CheckoutSession, CustomerInfo, DetailsRequest, HostedSession,
    PaymentOutcome, PaymentProvider, ProviderError, ProviderEvent, ProviderEventKind, ProviderRef,
    signature,
};

/// The provider's configuration key.
pub const NAME: &str = "sandbox";
/// Where the server mounts [`SandboxProvider::router`].
pub const MOUNT: &str = "/providers/sandbox";
/// The webhook signature header (`t=…,v1=…`, see [`signature`]).
pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";
/// How long one webhook delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Webhook event types.
pub mod event_type {
    pub const CHECKOUT_SUCCEEDED: &str = "checkout.succeeded";
    pub const CHECKOUT_FAILED: &str = "checkout.failed";
    pub const CHECKOUT_PENDING: &str = "checkout.pending";
    pub const CHARGE_SUCCEEDED: &str = "charge.succeeded";
    pub const CHARGE_FAILED: &str = "charge.failed";
    pub const PAYMENT_METHOD_UPDATED: &str = "payment_method.updated";
}

const DECLINED: &str = "card declined";
const NO_PAYMENT_METHOD: &str = "no payment method";
const NOT_A_TEST_CARD: &str = "That is not a sandbox card number: use a test card, \
                               such as 4242 4242 4242 4242.";

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Our server's public URL, e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub public_base_url: String,
    pub webhook_secret: String,
    /// Where signed events are POSTed: normally `{public_base_url}/providers/sandbox/webhook`.
    pub webhook_url: String,
}

impl SandboxConfig {
    /// The usual configuration: events go to `{public_base_url}/providers/sandbox/webhook`.
    pub fn new(public_base_url: impl Into<String>, webhook_secret: impl Into<String>) -> Self {
        let public_base_url = public_base_url.into().trim_end_matches('/').to_string();
        let webhook_url = format!("{public_base_url}{MOUNT}/webhook");
        SandboxConfig {
            public_base_url,
            webhook_secret: webhook_secret.into(),
            webhook_url,
        }
    }
}

/// The sandbox's test cards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestCard {
    /// `4242 4242 4242 4242`
    Succeeds,
    /// `4000 0000 0000 0002`
    Declined,
    /// `4000 0000 0000 0077`
    Pending,
}

impl TestCard {
    /// The test card a typed number means, ignoring spaces and dashes.
    pub fn parse(number: &str) -> Option<TestCard> {
        let digits: String = number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        match digits.as_str() {
            "4242424242424242" => Some(TestCard::Succeeds),
            "4000000000000002" => Some(TestCard::Declined),
            "4000000000000077" => Some(TestCard::Pending),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            TestCard::Succeeds => "Visa ending in 4242",
            TestCard::Declined => "Visa ending in 0002",
            TestCard::Pending => "Visa ending in 0077",
        }
    }
}

/// The JSON body of a sandbox webhook event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxEvent {
    /// `sbx_evt_…`, unique per event.
    pub id: String,
    /// One of [`event_type`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The checkout session, charge or (for `payment_method.updated`) customer ref.
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SandboxEvent {
    /// What the event means to the server.
    pub fn to_provider_event(&self) -> ProviderEvent {
        let object = self.object.clone();
        let failed = || PaymentOutcome::Failed {
            provider_ref: Some(object.clone()),
            reason: self
                .reason
                .clone()
                .unwrap_or_else(|| "payment failed".to_string()),
        };
        let (kind, outcome) = match self.kind.as_str() {
            event_type::CHECKOUT_SUCCEEDED => (
                ProviderEventKind::Checkout,
                Some(PaymentOutcome::Succeeded {
                    provider_ref: object.clone(),
                }),
            ),
            event_type::CHECKOUT_FAILED => (ProviderEventKind::Checkout, Some(failed())),
            event_type::CHECKOUT_PENDING => (
                ProviderEventKind::Checkout,
                Some(PaymentOutcome::Pending {
                    provider_ref: object.clone(),
                }),
            ),
            event_type::CHARGE_SUCCEEDED => (
                ProviderEventKind::Charge,
                Some(PaymentOutcome::Succeeded {
                    provider_ref: object.clone(),
                }),
            ),
            event_type::CHARGE_FAILED => (ProviderEventKind::Charge, Some(failed())),
            event_type::PAYMENT_METHOD_UPDATED => (ProviderEventKind::PaymentMethodUpdated, None),
            other => (ProviderEventKind::Other(other.to_string()), None),
        };
        ProviderEvent {
            id: self.id.clone(),
            kind,
            object_ref: object,
            outcome,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    /// A checkout nobody has paid yet.
    Open,
    Pending,
    Succeeded,
    Failed(String),
}

impl Status {
    fn outcome(&self, provider_ref: &str) -> PaymentOutcome {
        match self {
            Status::Open | Status::Pending => PaymentOutcome::Pending {
                provider_ref: provider_ref.to_string(),
            },
            Status::Succeeded => PaymentOutcome::Succeeded {
                provider_ref: provider_ref.to_string(),
            },
            Status::Failed(reason) => PaymentOutcome::Failed {
                provider_ref: Some(provider_ref.to_string()),
                reason: reason.clone(),
            },
        }
    }
}

#[derive(Default)]
struct Customer {
    card: Option<TestCard>,
}

struct Checkout {
    customer_ref: ProviderRef,
    amount: Decimal,
    currency: String,
    description: String,
    success_url: String,
    cancel_url: String,
    status: Status,
    /// The card of a pending attempt, saved when it settles successfully.
    pending_card: Option<TestCard>,
}

impl Checkout {
    fn view<'a>(&'a self, id: &'a str) -> pages::CheckoutView<'a> {
        pages::CheckoutView {
            id,
            description: &self.description,
            amount: self.amount,
            currency: &self.currency,
            cancel_url: &self.cancel_url,
        }
    }
}

struct DetailsSession {
    customer_ref: ProviderRef,
    return_url: String,
    done: bool,
}

struct Charge {
    customer_ref: ProviderRef,
    status: Status,
}

#[derive(Default)]
struct Store {
    customers: HashMap<ProviderRef, Customer>,
    checkouts: HashMap<String, Checkout>,
    /// Idempotency key → checkout session id.
    checkout_keys: HashMap<String, String>,
    details: HashMap<String, DetailsSession>,
    charges: HashMap<String, Charge>,
    /// Idempotency key → charge id.
    charge_keys: HashMap<String, String>,
}

struct Inner {
    config: SandboxConfig,
    http: reqwest::Client,
    store: Mutex<Store>,
}

/// An event to send once the store's lock is released.
struct Outgoing {
    kind: &'static str,
    object: String,
    reason: Option<String>,
}

impl Outgoing {
    fn new(kind: &'static str, object: &str, reason: Option<&str>) -> Self {
        Outgoing {
            kind,
            object: object.to_string(),
            reason: reason.map(str::to_string),
        }
    }
}

/// The sandbox payment provider. Cheap to clone: clones share one in-memory state.
#[derive(Clone)]
pub struct SandboxProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SandboxProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxProvider")
            .field("public_base_url", &self.inner.config.public_base_url)
            .field("webhook_url", &self.inner.config.webhook_url)
            .finish_non_exhaustive()
    }
}

fn new_id(kind: &str) -> String {
    format!("sbx_{kind}_{}", uuid::Uuid::new_v4().simple())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn require(value: &str, what: &str) -> Result<(), ProviderError> {
    if value.trim().is_empty() {
        Err(ProviderError::Rejected(format!("{what} is required")))
    } else {
        Ok(())
    }
}

impl SandboxProvider {
    pub fn new(mut config: SandboxConfig) -> Self {
        config.public_base_url = config.public_base_url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        SandboxProvider {
            inner: Arc::new(Inner {
                config,
                http,
                store: Mutex::new(Store::default()),
            }),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The hosted pages, with paths relative to [`MOUNT`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/checkout/{id}", get(checkout_page).post(checkout_submit))
            .route("/checkout/{id}/settle", post(checkout_settle))
            .route(
                "/payment-details/{token}",
                get(details_page).post(details_submit),
            )
            .with_state(self.inner.clone())
    }

    /// Ends a pending checkout session or charge (made with the `…0077` card): it succeeds
    /// or fails ("card declined"), and the matching webhook event is delivered before this
    /// returns. Anything not pending is left as it is and its current outcome returned.
    /// An unknown ref is `Rejected`.
    pub async fn settle(
        &self,
        provider_ref: &str,
        success: bool,
    ) -> Result<PaymentOutcome, ProviderError> {
        self.inner.settle(provider_ref, success).await
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkout_url(&self, id: &str) -> String {
        format!("{}{MOUNT}/checkout/{id}", self.config.public_base_url)
    }

    /// Signs and POSTs one event; `true` when the receiver answered 2xx.
    async fn emit(&self, event: Outgoing) -> bool {
        let event = SandboxEvent {
            id: new_id("evt"),
            kind: event.kind.to_string(),
            object: event.object,
            reason: event.reason,
        };
        let body = match serde_json::to_vec(&event) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "sandbox: could not encode a webhook event");
                return false;
            }
        };
        let header = signature::sign(&self.config.webhook_secret, unix_now(), &body);
        let sent = self
            .http
            .post(&self.config.webhook_url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, header)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(event = %event.id, kind = %event.kind, object = %event.object,
                    "sandbox: webhook event delivered");
                true
            }
            Ok(response) => {
                tracing::warn!(event = %event.id, kind = %event.kind, object = %event.object,
                    status = %response.status(), url = %self.config.webhook_url,
                    "sandbox: webhook receiver refused the event; the reconciler will catch up");
                false
            }
            Err(e) => {
                tracing::warn!(event = %event.id, kind = %event.kind, object = %event.object,
                    error = %e, url = %self.config.webhook_url,
                    "sandbox: webhook delivery failed; the reconciler will catch up");
                false
            }
        }
    }

    async fn settle(
        &self,
        provider_ref: &str,
        success: bool,
    ) -> Result<PaymentOutcome, ProviderError> {
        let (outcome, event) = {
            let mut store = self.lock();
            let store = &mut *store;
            if let Some(checkout) = store.checkouts.get_mut(provider_ref) {
                let mut event = None;
                if checkout.status == Status::Pending {
                    if success {
                        checkout.status = Status::Succeeded;
                        if let Some(card) = checkout.pending_card {
                            store
                                .customers
                                .entry(checkout.customer_ref.clone())
                                .or_default()
                                .card = Some(card);
                        }
                        event = Some(Outgoing::new(
                            event_type::CHECKOUT_SUCCEEDED,
                            provider_ref,
                            None,
                        ));
                    } else {
                        checkout.status = Status::Failed(DECLINED.to_string());
                        event = Some(Outgoing::new(
                            event_type::CHECKOUT_FAILED,
                            provider_ref,
                            Some(DECLINED),
                        ));
                    }
                    checkout.pending_card = None;
                }
                (checkout.status.outcome(provider_ref), event)
            } else if let Some(charge) = store.charges.get_mut(provider_ref) {
                let mut event = None;
                if charge.status == Status::Pending {
                    if success {
                        charge.status = Status::Succeeded;
                        event = Some(Outgoing::new(
                            event_type::CHARGE_SUCCEEDED,
                            provider_ref,
                            None,
                        ));
                    } else {
                        charge.status = Status::Failed(DECLINED.to_string());
                        event = Some(Outgoing::new(
                            event_type::CHARGE_FAILED,
                            provider_ref,
                            Some(DECLINED),
                        ));
                    }
                }
                (charge.status.outcome(provider_ref), event)
            } else {
                return Err(ProviderError::Rejected(format!(
                    "unknown sandbox payment {provider_ref:?}"
                )));
            }
        };
        if let Some(event) = event {
            self.emit(event).await;
        }
        Ok(outcome)
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_customer(&self, c: &CustomerInfo) -> Result<ProviderRef, ProviderError> {
        let provider_ref = c
            .provider_ref
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| new_id("cus"));
        // A ref the sandbox forgot (it keeps nothing across restarts) is simply recreated.
        self.inner
            .lock()
            .customers
            .entry(provider_ref.clone())
            .or_default();
        Ok(provider_ref)
    }

    async fn start_checkout(&self, r: CheckoutRequest) -> Result<CheckoutSession, ProviderError> {
        require(&r.customer_ref, "customer ref")?;
        require(&r.idempotency_key, "idempotency key")?;
        require(&r.currency, "currency")?;
        require(&r.success_url, "success URL")?;
        require(&r.cancel_url, "cancel URL")?;
        if r.amount.is_sign_negative() && !r.amount.is_zero() {
            return Err(ProviderError::Rejected(
                "amount must not be negative".into(),
            ));
        }
        let mut store = self.inner.lock();
        let id = match store.checkout_keys.get(&r.idempotency_key) {
            Some(id) => id.clone(),
            None => {
                let id = new_id("cs");
                store.customers.entry(r.customer_ref.clone()).or_default();
                store.checkouts.insert(
                    id.clone(),
                    Checkout {
                        customer_ref: r.customer_ref,
                        amount: r.amount,
                        currency: r.currency,
                        description: r.description,
                        success_url: r.success_url,
                        cancel_url: r.cancel_url,
                        status: Status::Open,
                        pending_card: None,
                    },
                );
                store.checkout_keys.insert(r.idempotency_key, id.clone());
                id
            }
        };
        Ok(CheckoutSession {
            url: self.inner.checkout_url(&id),
            provider_ref: id,
        })
    }

    async fn payment_details_session(
        &self,
        r: DetailsRequest,
    ) -> Result<HostedSession, ProviderError> {
        require(&r.customer_ref, "customer ref")?;
        require(&r.return_url, "return URL")?;
        let token = new_id("pd");
        let mut store = self.inner.lock();
        store.customers.entry(r.customer_ref.clone()).or_default();
        store.details.insert(
            token.clone(),
            DetailsSession {
                customer_ref: r.customer_ref,
                return_url: r.return_url,
                done: false,
            },
        );
        Ok(HostedSession {
            url: format!(
                "{}{MOUNT}/payment-details/{token}",
                self.inner.config.public_base_url
            ),
        })
    }

    async fn charge(&self, r: ChargeRequest) -> Result<PaymentOutcome, ProviderError> {
        require(&r.customer_ref, "customer ref")?;
        require(&r.idempotency_key, "idempotency key")?;
        require(&r.currency, "currency")?;
        if r.amount.is_sign_negative() && !r.amount.is_zero() {
            return Err(ProviderError::Rejected(
                "amount must not be negative".into(),
            ));
        }
        let mut store = self.inner.lock();
        if let Some(id) = store.charge_keys.get(&r.idempotency_key) {
            let charge = &store.charges[id];
            if charge.customer_ref != r.customer_ref {
                return Err(ProviderError::Rejected(
                    "idempotency key already used for another customer".into(),
                ));
            }
            return Ok(charge.status.outcome(id));
        }
        let card = store.customers.get(&r.customer_ref).and_then(|c| c.card);
        let status = match card {
            None => Status::Failed(NO_PAYMENT_METHOD.to_string()),
            Some(TestCard::Succeeds) => Status::Succeeded,
            Some(TestCard::Declined) => Status::Failed(DECLINED.to_string()),
            Some(TestCard::Pending) => Status::Pending,
        };
        let id = new_id("ch");
        let outcome = status.outcome(&id);
        store.charges.insert(
            id.clone(),
            Charge {
                customer_ref: r.customer_ref,
                status,
            },
        );
        store.charge_keys.insert(r.idempotency_key, id);
        Ok(outcome)
    }

    async fn payment_status(&self, provider_ref: &str) -> Result<PaymentOutcome, ProviderError> {
        let store = self.inner.lock();
        if let Some(checkout) = store.checkouts.get(provider_ref) {
            Ok(checkout.status.outcome(provider_ref))
        } else if let Some(charge) = store.charges.get(provider_ref) {
            Ok(charge.status.outcome(provider_ref))
        } else {
            Err(ProviderError::Rejected(format!(
                "unknown sandbox payment {provider_ref:?}"
            )))
        }
    }

    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<ProviderEvent>, ProviderError> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(ProviderError::BadSignature)?;
        signature::verify(&self.inner.config.webhook_secret, header, body, unix_now())?;
        let event: SandboxEvent = serde_json::from_slice(body)
            .map_err(|e| ProviderError::BadResponse(format!("sandbox event: {e}")))?;
        Ok(vec![event.to_provider_event()])
    }

    fn routes(&self) -> Option<Router> {
        Some(self.router())
    }
}

// ----- hosted pages ------------------------------------------------------------------------

type AppState = State<Arc<Inner>>;

#[derive(Deserialize)]
struct CardForm {
    #[serde(default)]
    card_number: String,
}

#[derive(Deserialize)]
struct SettleForm {
    success: bool,
}

fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(body),
    )
        .into_response()
}

fn not_found() -> Response {
    page(StatusCode::NOT_FOUND, pages::not_found())
}

/// A 303 to `url`; a URL that cannot be a header gets a page with a link instead.
fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (LOCATION, location),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => page(StatusCode::OK, pages::continue_to(url)),
    }
}

fn failed_message(reason: &str) -> String {
    format!("Payment failed: {reason}. Try another card.")
}

async fn checkout_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    let store = inner.lock();
    let Some(checkout) = store.checkouts.get(&id) else {
        return not_found();
    };
    let view = checkout.view(&id);
    let html = match &checkout.status {
        Status::Open => pages::checkout(&view, "", None),
        Status::Failed(reason) => pages::checkout(&view, "", Some(&failed_message(reason))),
        Status::Pending => pages::checkout_pending(&view),
        Status::Succeeded => pages::checkout_done(&view, &checkout.success_url),
    };
    page(StatusCode::OK, html)
}

async fn checkout_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let card = TestCard::parse(&form.card_number);
    // Decide under the lock; deliver the event after releasing it.
    let (event, response) = {
        let mut store = inner.lock();
        let store = &mut *store;
        let Some(checkout) = store.checkouts.get_mut(&id) else {
            return not_found();
        };
        match checkout.status {
            // Paid already (a second click, a resubmitted form): charge nothing again.
            Status::Succeeded => return see_other(&checkout.success_url),
            Status::Pending => {
                return page(StatusCode::OK, pages::checkout_pending(&checkout.view(&id)));
            }
            Status::Open | Status::Failed(_) => {}
        }
        match card {
            None => {
                let html = pages::checkout(
                    &checkout.view(&id),
                    &form.card_number,
                    Some(NOT_A_TEST_CARD),
                );
                return page(StatusCode::UNPROCESSABLE_ENTITY, html);
            }
            Some(TestCard::Succeeds) => {
                checkout.status = Status::Succeeded;
                store
                    .customers
                    .entry(checkout.customer_ref.clone())
                    .or_default()
                    .card = Some(TestCard::Succeeds);
                (
                    Outgoing::new(event_type::CHECKOUT_SUCCEEDED, &id, None),
                    Ok(checkout.success_url.clone()),
                )
            }
            Some(TestCard::Declined) => {
                checkout.status = Status::Failed(DECLINED.to_string());
                let html = pages::checkout(
                    &checkout.view(&id),
                    &form.card_number,
                    Some(&failed_message(DECLINED)),
                );
                (
                    Outgoing::new(event_type::CHECKOUT_FAILED, &id, Some(DECLINED)),
                    Err(page(StatusCode::PAYMENT_REQUIRED, html)),
                )
            }
            Some(TestCard::Pending) => {
                checkout.status = Status::Pending;
                checkout.pending_card = Some(TestCard::Pending);
                let html = pages::checkout_pending(&checkout.view(&id));
                (
                    Outgoing::new(event_type::CHECKOUT_PENDING, &id, None),
                    Err(page(StatusCode::OK, html)),
                )
            }
        }
    };
    inner.emit(event).await;
    match response {
        Ok(url) => see_other(&url),
        Err(page) => page,
    }
}

async fn checkout_settle(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<SettleForm>,
) -> Response {
    let success_url = match inner.lock().checkouts.get(&id) {
        Some(checkout) => checkout.success_url.clone(),
        None => return not_found(),
    };
    match inner.settle(&id, form.success).await {
        Ok(PaymentOutcome::Succeeded { .. }) => see_other(&success_url),
        // Failed (the page shows why, with the card form) or never attempted.
        Ok(_) => see_other(&inner.checkout_url(&id)),
        Err(_) => not_found(),
    }
}

async fn details_page(State(inner): AppState, Path(token): Path<String>) -> Response {
    let store = inner.lock();
    let Some(session) = store.details.get(&token) else {
        return not_found();
    };
    if session.done {
        return page(
            StatusCode::OK,
            pages::payment_details_done(&session.return_url),
        );
    }
    let current = store
        .customers
        .get(&session.customer_ref)
        .and_then(|c| c.card)
        .map(TestCard::label);
    page(
        StatusCode::OK,
        pages::payment_details(&token, current, &session.return_url, "", None),
    )
}

async fn details_submit(
    State(inner): AppState,
    Path(token): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let card = TestCard::parse(&form.card_number);
    let (event, return_url) = {
        let mut store = inner.lock();
        let store = &mut *store;
        let Some(session) = store.details.get_mut(&token) else {
            return not_found();
        };
        if session.done {
            return see_other(&session.return_url);
        }
        let current = store
            .customers
            .get(&session.customer_ref)
            .and_then(|c| c.card)
            .map(TestCard::label);
        let Some(card) = card else {
            return page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::payment_details(
                    &token,
                    current,
                    &session.return_url,
                    &form.card_number,
                    Some(NOT_A_TEST_CARD),
                ),
            );
        };
        // Every test card is saved here: later charges to it succeed, are declined or stay
        // pending, which is how renewals that fail or hang are tried out.
        session.done = true;
        store
            .customers
            .entry(session.customer_ref.clone())
            .or_default()
            .card = Some(card);
        (
            Outgoing::new(
                event_type::PAYMENT_METHOD_UPDATED,
                &session.customer_ref,
                None,
            ),
            session.return_url.clone(),
        )
    };
    inner.emit(event).await;
    see_other(&return_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_ignore_spaces_and_dashes() {
        assert_eq!(
            TestCard::parse("4242 4242 4242 4242"),
            Some(TestCard::Succeeds)
        );
        assert_eq!(
            TestCard::parse(" 4242424242424242 "),
            Some(TestCard::Succeeds)
        );
        assert_eq!(
            TestCard::parse("4000-0000-0000-0002"),
            Some(TestCard::Declined)
        );
        assert_eq!(TestCard::parse("4000000000000077"), Some(TestCard::Pending));
        assert_eq!(TestCard::parse("4111 1111 1111 1111"), None);
        assert_eq!(TestCard::parse(""), None);
    }

    #[test]
    fn event_types_map_to_kinds_and_outcomes() {
        let event = |kind: &str, reason: Option<&str>| SandboxEvent {
            id: "sbx_evt_1".into(),
            kind: kind.into(),
            object: "obj".into(),
            reason: reason.map(str::to_string),
        };
        let e = event(event_type::CHECKOUT_SUCCEEDED, None).to_provider_event();
        assert_eq!(e.kind, ProviderEventKind::Checkout);
        assert_eq!(
            e.outcome,
            Some(PaymentOutcome::Succeeded {
                provider_ref: "obj".into()
            })
        );
        let e = event(event_type::CHARGE_FAILED, Some("card declined")).to_provider_event();
        assert_eq!(e.kind, ProviderEventKind::Charge);
        assert_eq!(
            e.outcome,
            Some(PaymentOutcome::Failed {
                provider_ref: Some("obj".into()),
                reason: "card declined".into()
            })
        );
        let e = event(event_type::CHECKOUT_PENDING, None).to_provider_event();
        assert_eq!(
            e.outcome,
            Some(PaymentOutcome::Pending {
                provider_ref: "obj".into()
            })
        );
        let e = event(event_type::PAYMENT_METHOD_UPDATED, None).to_provider_event();
        assert_eq!(e.kind, ProviderEventKind::PaymentMethodUpdated);
        assert_eq!(e.outcome, None);
        let e = event("customer.deleted", None).to_provider_event();
        assert_eq!(e.kind, ProviderEventKind::Other("customer.deleted".into()));
        assert_eq!(e.id, "sbx_evt_1");
        assert_eq!(e.object_ref, "obj");
    }

    #[test]
    fn events_serialize_without_an_absent_reason() {
        let e = SandboxEvent {
            id: "sbx_evt_1".into(),
            kind: event_type::CHECKOUT_SUCCEEDED.into(),
            object: "sbx_cs_1".into(),
            reason: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"id":"sbx_evt_1","type":"checkout.succeeded","object":"sbx_cs_1"}"#
        );
    }

    #[test]
    fn config_new_derives_the_webhook_url() {
        let c = SandboxConfig::new("http://127.0.0.1:8080/", "s");
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(
            c.webhook_url,
            "http://127.0.0.1:8080/providers/sandbox/webhook"
        );
    }
}
