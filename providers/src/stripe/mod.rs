//! The **stripe** provider: customers, PaymentIntents and SetupIntents through Stripe's
//! REST API (form-encoded requests, Bearer key, pinned API version), webhooks in the
//! `Stripe-Signature` scheme. The API base is configurable, so tests run it against
//! `localstripe` on 127.0.0.1. Wire types and status mappings are in [`transformers`].
//!
//! - `start_checkout` creates a PaymentIntent (amount > 0) or a SetupIntent (amount 0)
//!   and returns our own hosted page for it, `{public_base_url}/providers/stripe/checkout/{id}`.
//!   The success and cancel URLs ride in the intent's metadata, so the page needs no state
//!   of its own.
//! - `payment_details_session` creates a SetupIntent and returns
//!   `{public_base_url}/providers/stripe/payment-details/{seti_id}`; the return URL rides in
//!   metadata too (never in the query string, which anyone could change into an open
//!   redirect).
//! - A card saved by either page is attached to the customer and, once the payment or
//!   setup went through, becomes the customer's `invoice_settings.default_payment_method`,
//!   which `charge` uses off-session.
//! - `charge` creates and confirms an off-session PaymentIntent (`metadata[kind]=charge`).
//!   A timeout or broken connection after the request was sent, a 5xx, 409 or 429 is
//!   [`PaymentOutcome::Unknown`]; a card error (402) is `Failed`; a connection that could
//!   not be opened is `Err(ProviderError::Unreachable)`, as nothing reached Stripe.
//!
//! The hosted pages take raw card numbers and create PaymentMethods from them on the server.
//! That only works in Stripe's test mode (and on localstripe): production would render
//! Stripe.js Elements with the publishable key, so that card data never touches our server,
//! and confirm the intent in the browser with the intent's client secret.

mod pages;
pub mod transformers;

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use self::transformers::{
    self as wire, Customer, EventObject, Intent, IntentKind, PaymentIntent, PaymentIntentStatus,
    SetupIntent, SetupIntentStatus,
};
use crate::{
    ChargeRequest, CheckoutRequest, CheckoutSession, CustomerInfo, DetailsRequest, HostedSession,
    PaymentOutcome, PaymentProvider, ProviderError, ProviderEvent, ProviderEventKind, ProviderRef,
    signature,
};

/// The provider's configuration key.
pub const NAME: &str = "stripe";
/// Where the server mounts [`PaymentProvider::routes`].
pub const MOUNT: &str = "/providers/stripe";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The webhook signature header (`t=…,v1=…`, see [`signature`]).
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// The API version we speak, pinned so that an account's default cannot change answers.
pub const API_VERSION: &str = "2024-06-20";

#[derive(Clone)]
pub struct StripeConfig {
    /// A secret key, `sk_test_…` or `sk_live_…`.
    pub api_key: String,
    /// `https://api.stripe.com`, or localstripe's address in tests.
    pub api_base: String,
    /// The endpoint's signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Our server's public URL, for the hosted pages' addresses.
    pub public_base_url: String,
    /// For every call to Stripe.
    pub timeout: Duration,
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            api_key: String::new(),
            api_base: DEFAULT_API_BASE.to_owned(),
            webhook_secret: String::new(),
            public_base_url: String::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_key", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("webhook_secret", &"<redacted>")
            .field("public_base_url", &self.public_base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct StripeProvider {
    inner: Arc<Inner>,
}

struct Inner {
    api: Api,
    public_base_url: String,
    webhook_secret: String,
}

impl StripeProvider {
    pub fn new(config: StripeConfig) -> Result<Self, ProviderError> {
        let bad = |what: &str| Err(ProviderError::Config(format!("stripe: {what}")));
        if config.api_key.trim().is_empty() {
            return bad("the API key is empty");
        }
        if config.webhook_secret.is_empty() {
            return bad("the webhook secret is empty");
        }
        for (name, url) in [
            ("api_base", &config.api_base),
            ("public_base_url", &config.public_base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad(&format!("{name} {url:?} is not an http(s) URL"));
            }
        }
        if config.timeout.is_zero() {
            return bad("the timeout is zero");
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("billing-providers/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config(format!("stripe: HTTP client: {e}")))?;
        Ok(StripeProvider {
            inner: Arc::new(Inner {
                api: Api {
                    http,
                    base: config.api_base.trim_end_matches('/').to_owned(),
                    key: config.api_key,
                },
                public_base_url: config.public_base_url.trim_end_matches('/').to_owned(),
                webhook_secret: config.webhook_secret,
            }),
        })
    }
}

// --- HTTP -----------------------------------------------------------------------------------

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// How a call to Stripe went wrong. What it means for money depends on the call.
#[derive(Debug)]
enum CallError {
    /// Nothing reached Stripe (connection refused, DNS, TLS, a request we could not build).
    NotSent(String),
    /// No complete answer in time: Stripe may or may not have acted on the request.
    Timeout,
    /// The connection broke after the request went out: the same.
    Lost(String),
    /// Stripe answered with an error status.
    Status {
        status: StatusCode,
        error: wire::ApiError,
    },
    /// A success status with a body we could not read: Stripe acted on the request.
    Decode(String),
}

impl CallError {
    fn from_send(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            CallError::Timeout
        } else if e.is_connect() || e.is_builder() {
            CallError::NotSent(describe(&e))
        } else {
            CallError::Lost(describe(&e))
        }
    }

    fn from_body(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            CallError::Timeout
        } else {
            CallError::Lost(describe(&e))
        }
    }

    fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotSent(m) => write!(f, "could not reach Stripe: {m}"),
            CallError::Timeout => write!(f, "Stripe did not answer in time"),
            CallError::Lost(m) => write!(f, "the connection to Stripe broke: {m}"),
            CallError::Status { status, error } => {
                write!(f, "Stripe answered {status}: {}", error.reason())
            }
            CallError::Decode(m) => write!(f, "Stripe's answer could not be read: {m}"),
        }
    }
}

/// For calls that move no money: every failure is an error for the caller to retry.
impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NotSent(m) => ProviderError::Unreachable(m),
            CallError::Timeout => ProviderError::Timeout,
            e @ CallError::Lost(_) => ProviderError::Unreachable(e.to_string()),
            CallError::Status { status, error }
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                ProviderError::Unreachable(format!("Stripe answered {status}: {}", error.reason()))
            }
            CallError::Status { status, error } => {
                ProviderError::Rejected(format!("{status}: {}", error.reason()))
            }
            CallError::Decode(m) => ProviderError::BadResponse(m),
        }
    }
}

/// An error with its chain of causes ("error sending request: … : connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A POST without fields (`/confirm`, `/cancel`).
const NO_FIELDS: [(&str, &str); 0] = [];

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize + ?Sized>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, CallError> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    async fn post<T: DeserializeOwned, F: Serialize + ?Sized>(
        &self,
        path: &str,
        form: &F,
        idempotency_key: Option<&str>,
    ) -> Result<T, CallError> {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let response = request
            .bearer_auth(&self.key)
            .header("Stripe-Version", API_VERSION)
            .send()
            .await
            .map_err(CallError::from_send)?;
        let status = response.status();
        let body = response.bytes().await.map_err(CallError::from_body)?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| CallError::Decode(e.to_string()))
        } else {
            let error = serde_json::from_slice::<wire::ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| wire::ApiError {
                    message: Some(String::from_utf8_lossy(&body).chars().take(200).collect()),
                    ..Default::default()
                });
            Err(CallError::Status { status, error })
        }
    }

    async fn retrieve_intent(&self, id: &str) -> Result<Intent, CallError> {
        if id.starts_with("seti_") {
            self.get(&format!("/v1/setup_intents/{id}"))
                .await
                .map(Intent::Setup)
        } else {
            self.get(&format!("/v1/payment_intents/{id}"))
                .await
                .map(Intent::Payment)
        }
    }
}

/// Refuses anything but a Stripe id with one of `prefixes`: ids go into URL paths.
fn stripe_id<'a>(id: &'a str, prefixes: &[&str]) -> Result<&'a str, ProviderError> {
    let ok = prefixes.iter().any(|p| id.starts_with(p))
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(ProviderError::Rejected(format!(
            "{id:?} is not a Stripe {} id",
            prefixes.join("/")
        )))
    }
}

fn money(amount: rust_decimal::Decimal, currency: &str) -> Result<(i64, String), ProviderError> {
    let currency = wire::currency_code(currency).map_err(ProviderError::Rejected)?;
    let minor = wire::to_minor_units(amount, &currency).map_err(ProviderError::Rejected)?;
    Ok((minor, currency))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// --- the provider ---------------------------------------------------------------------------

impl Inner {
    fn page_url(&self, section: &str, id: &str) -> String {
        format!("{}{MOUNT}/{section}/{id}", self.public_base_url)
    }

    async fn create_customer(&self, c: &CustomerInfo) -> Result<ProviderRef, ProviderError> {
        // A retry of the same creation (say, after a lost answer) finds the customer made
        // the first time instead of making another; changed details make a new key, since
        // Stripe refuses a key reused with other parameters.
        let mut hash = Sha256::new();
        for part in [
            c.customer_id.as_str(),
            &c.name,
            &c.email,
            c.phone.as_deref().unwrap_or(""),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest: String = hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("customer-{digest}");
        let form = wire::CustomerForm {
            name: &c.name,
            email: &c.email,
            phone: c.phone.as_deref(),
            customer_id: &c.customer_id,
        };
        let customer: Customer = self.api.post("/v1/customers", &form, Some(&key)).await?;
        Ok(customer.id)
    }

    /// The card `charge` uses: the customer's default, else the newest attached card.
    async fn default_payment_method(&self, customer: &str) -> Result<Option<String>, CallError> {
        let c: Customer = self.api.get(&format!("/v1/customers/{customer}")).await?;
        if let Some(pm) = c.default_payment_method() {
            return Ok(Some(pm.to_owned()));
        }
        let query = wire::ListPaymentMethodsQuery {
            customer,
            kind: "card",
            limit: 1,
        };
        let list: wire::List<wire::PaymentMethod> =
            self.api.get_query("/v1/payment_methods", &query).await?;
        Ok(list.data.into_iter().next().map(|pm| pm.id))
    }
}

/// What a sent charge request came to. Only a definite answer is `Failed`.
fn charge_outcome(
    result: Result<PaymentIntent, CallError>,
) -> Result<PaymentOutcome, ProviderError> {
    match result {
        Ok(pi) => Ok(PaymentOutcome::from(&pi)),
        Err(CallError::NotSent(m)) => Err(ProviderError::Unreachable(m)),
        Err(CallError::Timeout | CallError::Lost(_) | CallError::Decode(_)) => {
            Ok(PaymentOutcome::Unknown { provider_ref: None })
        }
        Err(CallError::Status { status, error }) if status == StatusCode::PAYMENT_REQUIRED => {
            Ok(PaymentOutcome::Failed {
                reason: error.reason(),
                provider_ref: error.payment_intent.map(|pi| pi.id),
            })
        }
        // A server error, a request with the same key still in flight, rate limiting:
        // whether anything was charged is not known; a retry with the same idempotency key
        // tells.
        Err(CallError::Status { status, .. })
            if status.is_server_error()
                || status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS =>
        {
            Ok(PaymentOutcome::Unknown { provider_ref: None })
        }
        Err(e) => Err(e.into()),
    }
}

/// Turns a verified event into ours.
fn provider_event(event: wire::Event) -> Result<ProviderEvent, ProviderError> {
    let wire::Event { id, kind, data } = event;
    let object_id = data
        .object
        .get("id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let object: EventObject = serde_json::from_value(data.object)
        .map_err(|e| ProviderError::BadResponse(format!("stripe event {id}: {e}")))?;
    let other = |object_ref: String| (ProviderEventKind::Other(kind.clone()), object_ref, None);
    let (event_kind, object_ref, outcome) = match object {
        EventObject::PaymentIntent(pi) if kind.starts_with("payment_intent.") => {
            let event_kind = match pi.metadata.kind() {
                IntentKind::Charge => ProviderEventKind::Charge,
                IntentKind::Checkout | IntentKind::PaymentDetails | IntentKind::Other => {
                    ProviderEventKind::Checkout
                }
            };
            let outcome = PaymentOutcome::from(&pi);
            (event_kind, pi.id, Some(outcome))
        }
        EventObject::SetupIntent(si) if kind.starts_with("setup_intent.") => {
            match si.metadata.kind() {
                // The new default is announced by `customer.updated`.
                IntentKind::PaymentDetails => other(si.id),
                IntentKind::Checkout | IntentKind::Charge | IntentKind::Other => {
                    let outcome = PaymentOutcome::from(&si);
                    (ProviderEventKind::Checkout, si.id, Some(outcome))
                }
            }
        }
        // Our pages make a card the default only once it went through, so the default
        // changing is what counts, not a card being attached. Stripe says what changed in
        // `previous_attributes`; localstripe does not, so any update may be the one.
        EventObject::Customer(c)
            if kind == "customer.updated"
                && data
                    .previous_attributes
                    .as_ref()
                    .is_none_or(|prev| prev.get("invoice_settings").is_some()) =>
        {
            (ProviderEventKind::PaymentMethodUpdated, c.id, None)
        }
        EventObject::PaymentIntent(_)
        | EventObject::SetupIntent(_)
        | EventObject::PaymentMethod(_)
        | EventObject::Customer(_)
        | EventObject::Other => other(object_id),
    };
    Ok(ProviderEvent {
        id,
        kind: event_kind,
        object_ref,
        outcome,
    })
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn upsert_customer(&self, c: &CustomerInfo) -> Result<ProviderRef, ProviderError> {
        let inner = &self.inner;
        let Some(existing) = &c.provider_ref else {
            return inner.create_customer(c).await;
        };
        let id = stripe_id(existing, &["cus_"])?;
        let form = wire::CustomerForm {
            name: &c.name,
            email: &c.email,
            // An empty value clears a phone number that was removed.
            phone: Some(c.phone.as_deref().unwrap_or("")),
            customer_id: &c.customer_id,
        };
        match inner
            .api
            .post::<Customer, _>(&format!("/v1/customers/{id}"), &form, None)
            .await
        {
            Ok(customer) => Ok(customer.id),
            // Deleted on Stripe's side, or made with other keys: start afresh.
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => inner.create_customer(c).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn start_checkout(&self, r: CheckoutRequest) -> Result<CheckoutSession, ProviderError> {
        let inner = &self.inner;
        let customer = stripe_id(&r.customer_ref, &["cus_"])?;
        let (amount, currency) = money(r.amount, &r.currency)?;
        let key = Some(r.idempotency_key.as_str());
        let id = if amount > 0 {
            let form = wire::CheckoutIntentForm {
                amount,
                currency: &currency,
                customer,
                payment_method_types: "card",
                setup_future_usage: "off_session",
                kind: IntentKind::Checkout.as_str(),
                subscription_id: &r.subscription_id,
                description: &r.description,
                success_url: &r.success_url,
                cancel_url: &r.cancel_url,
            };
            let pi: PaymentIntent = inner.api.post("/v1/payment_intents", &form, key).await?;
            pi.id
        } else {
            let form = wire::SetupIntentForm {
                customer,
                usage: "off_session",
                payment_method_types: "card",
                kind: IntentKind::Checkout.as_str(),
                subscription_id: Some(&r.subscription_id),
                description: Some(&r.description),
                success_url: Some(&r.success_url),
                cancel_url: Some(&r.cancel_url),
                return_url: None,
            };
            let si: SetupIntent = inner.api.post("/v1/setup_intents", &form, key).await?;
            si.id
        };
        Ok(CheckoutSession {
            url: inner.page_url("checkout", &id),
            provider_ref: id,
        })
    }

    async fn payment_details_session(
        &self,
        r: DetailsRequest,
    ) -> Result<HostedSession, ProviderError> {
        let inner = &self.inner;
        let customer = stripe_id(&r.customer_ref, &["cus_"])?;
        let form = wire::SetupIntentForm {
            customer,
            usage: "off_session",
            payment_method_types: "card",
            kind: IntentKind::PaymentDetails.as_str(),
            subscription_id: None,
            description: None,
            success_url: None,
            cancel_url: None,
            return_url: Some(&r.return_url),
        };
        // Moves no money: a duplicate SetupIntent is harmless and expires unused.
        let si: SetupIntent = inner.api.post("/v1/setup_intents", &form, None).await?;
        Ok(HostedSession {
            url: inner.page_url("payment-details", &si.id),
        })
    }

    async fn charge(&self, r: ChargeRequest) -> Result<PaymentOutcome, ProviderError> {
        let inner = &self.inner;
        let customer = stripe_id(&r.customer_ref, &["cus_"])?;
        let (amount, currency) = money(r.amount, &r.currency)?;
        if amount == 0 {
            return Err(ProviderError::Rejected("nothing to charge".to_owned()));
        }
        // Looking the card up moves no money: its failures are plain errors.
        let Some(payment_method) = inner.default_payment_method(customer).await? else {
            return Ok(PaymentOutcome::Failed {
                provider_ref: None,
                reason: "the customer has no saved card".to_owned(),
            });
        };
        let form = wire::ChargeIntentForm {
            amount,
            currency: &currency,
            customer,
            payment_method: &payment_method,
            payment_method_types: "card",
            confirm: true,
            off_session: true,
            kind: IntentKind::Charge.as_str(),
            description: &r.description,
        };
        charge_outcome(
            inner
                .api
                .post("/v1/payment_intents", &form, Some(&r.idempotency_key))
                .await,
        )
    }

    async fn payment_status(&self, provider_ref: &str) -> Result<PaymentOutcome, ProviderError> {
        let id = stripe_id(provider_ref, &["pi_", "seti_"])?;
        let intent = self.inner.api.retrieve_intent(id).await?;
        Ok(intent.outcome())
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
        signature::verify(&self.inner.webhook_secret, header, body, unix_now())?;
        let event: wire::Event = serde_json::from_slice(body)
            .map_err(|e| ProviderError::BadResponse(format!("stripe event: {e}")))?;
        Ok(vec![provider_event(event)?])
    }

    fn routes(&self) -> Option<Router> {
        Some(
            Router::new()
                .route("/checkout/{id}", get(checkout_page).post(checkout_submit))
                .route("/checkout/{id}/cancel", post(checkout_cancel))
                .route(
                    "/payment-details/{id}",
                    get(details_page).post(details_submit),
                )
                .with_state(self.inner.clone()),
        )
    }
}

// --- hosted pages ---------------------------------------------------------------------------

type AppState = State<Arc<Inner>>;

/// Where a hosted page's intent stands, for the page.
enum Stage {
    /// Waiting for a card; `error` says why the last one did not go through.
    Open {
        error: Option<String>,
    },
    /// Paid, saved, or in Stripe's hands (processing, bank authentication): nothing more
    /// to do here.
    Done,
    Canceled,
}

fn stage(intent: &Intent) -> Stage {
    match intent {
        Intent::Payment(pi) => match pi.status {
            PaymentIntentStatus::RequiresPaymentMethod => Stage::Open {
                error: pi.last_payment_error.as_ref().map(|e| e.reason()),
            },
            PaymentIntentStatus::RequiresConfirmation => Stage::Open { error: None },
            PaymentIntentStatus::Canceled => Stage::Canceled,
            PaymentIntentStatus::Succeeded
            | PaymentIntentStatus::Processing
            | PaymentIntentStatus::RequiresCapture
            | PaymentIntentStatus::RequiresAction
            | PaymentIntentStatus::Unknown => Stage::Done,
        },
        Intent::Setup(si) => match si.status {
            SetupIntentStatus::RequiresPaymentMethod => Stage::Open {
                error: si.last_setup_error.as_ref().map(|e| e.reason()),
            },
            SetupIntentStatus::RequiresConfirmation => Stage::Open { error: None },
            SetupIntentStatus::Canceled => Stage::Canceled,
            SetupIntentStatus::Succeeded
            | SetupIntentStatus::Processing
            | SetupIntentStatus::RequiresAction
            | SetupIntentStatus::Unknown => Stage::Done,
        },
    }
}

/// The hosted page's form fields.
#[derive(Debug, Default, Deserialize)]
struct CardForm {
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    expiry: String,
    #[serde(default)]
    cvc: String,
}

struct Card {
    number: String,
    exp_month: u32,
    exp_year: u32,
    cvc: String,
}

impl Card {
    fn parse(form: &CardForm) -> Result<Card, &'static str> {
        let number: String = form
            .card_number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Enter the card number, as printed on the card.");
        }
        const BAD_EXPIRY: &str = "Enter the expiry date as MM / YY.";
        let groups: Vec<&str> = form
            .expiry
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .collect();
        let (month, year) = match groups.as_slice() {
            [m, y] => (*m, *y),
            [my] if my.len() == 4 || my.len() == 6 => my.split_at(2),
            _ => return Err(BAD_EXPIRY),
        };
        let (Ok(exp_month), Ok(mut exp_year)) = (month.parse::<u32>(), year.parse::<u32>()) else {
            return Err(BAD_EXPIRY);
        };
        if exp_year < 100 {
            exp_year += 2000;
        }
        if !(1..=12).contains(&exp_month) || !(2000..=2100).contains(&exp_year) {
            return Err(BAD_EXPIRY);
        }
        let cvc = form.cvc.trim();
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err("Enter the 3- or 4-digit security code.");
        }
        Ok(Card {
            number,
            exp_month,
            exp_year,
            cvc: cvc.to_owned(),
        })
    }
}

/// Why a card did not go through on a hosted page.
enum PayError {
    /// The card was refused (declined, invalid): the form is shown again with `0`.
    Card(String),
    /// Stripe could not be asked, or answered oddly: try again later.
    Unavailable(String),
}

impl Inner {
    /// The intent behind a hosted page, if it is one of ours of `kind`.
    async fn page_intent(&self, id: &str, kind: IntentKind) -> Result<Intent, Response> {
        if stripe_id(id, &["pi_", "seti_"]).is_err() {
            return Err(not_found());
        }
        match self.api.retrieve_intent(id).await {
            Ok(intent) if intent.metadata().kind() == kind => Ok(intent),
            Ok(_) => Err(not_found()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Err(not_found()),
            Err(e) => {
                tracing::warn!(intent = id, error = %e, "stripe: could not load a hosted page");
                Err(unavailable())
            }
        }
    }

    /// Saves `card` for the intent's customer and pays (or confirms the setup of) the
    /// intent with it; on success the card becomes the customer's default. Returns the
    /// intent as it now stands.
    async fn pay(&self, intent: &Intent, card: &Card) -> Result<Intent, PayError> {
        let card_error = |e: CallError| match e {
            CallError::Status { status, error } if status.is_client_error() => {
                PayError::Card(error.reason())
            }
            e => PayError::Unavailable(e.to_string()),
        };
        let customer = intent
            .customer()
            .ok_or_else(|| PayError::Unavailable("the intent has no customer".to_owned()))?;
        // Raw card data: test mode and localstripe only (see the module's docs).
        let form = wire::CardPaymentMethodForm {
            kind: "card",
            number: &card.number,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: &card.cvc,
        };
        let pm: wire::PaymentMethod = self
            .api
            .post("/v1/payment_methods", &form, None)
            .await
            .map_err(card_error)?;
        // Attaching first checks the card (a declined card is refused here) and keeps it
        // for off-session charges, on Stripe and localstripe alike.
        let _: wire::PaymentMethod = self
            .api
            .post(
                &format!("/v1/payment_methods/{}/attach", pm.id),
                &wire::AttachForm { customer },
                None,
            )
            .await
            .map_err(card_error)?;
        let key = format!("confirm-{}-{}", intent.id(), pm.id);
        let confirmed = match intent {
            Intent::Payment(pi) => {
                let form = wire::IntentPaymentMethodForm {
                    payment_method: &pm.id,
                };
                let path = format!("/v1/payment_intents/{}", pi.id);
                match self.api.post::<PaymentIntent, _>(&path, &form, None).await {
                    Ok(_) => self
                        .api
                        .post(&format!("{path}/confirm"), &NO_FIELDS, Some(&key))
                        .await
                        .map(Intent::Payment),
                    Err(e) => Err(e),
                }
            }
            Intent::Setup(si) => {
                let form = wire::ConfirmSetupForm {
                    payment_method: &pm.id,
                };
                self.api
                    .post(
                        &format!("/v1/setup_intents/{}/confirm", si.id),
                        &form,
                        Some(&key),
                    )
                    .await
                    .map(Intent::Setup)
            }
        };
        let now = match confirmed {
            Ok(intent) => intent,
            Err(CallError::Status { status, error }) if status == StatusCode::PAYMENT_REQUIRED => {
                return Err(PayError::Card(error.reason()));
            }
            // Anything else: see where the intent stands (a double submission finds it
            // paid already).
            Err(e) => match self.api.retrieve_intent(intent.id()).await {
                Ok(now) if matches!(stage(&now), Stage::Done) => now,
                _ => return Err(PayError::Unavailable(e.to_string())),
            },
        };
        if matches!(stage(&now), Stage::Done) {
            let form = wire::DefaultPaymentMethodForm {
                payment_method: &pm.id,
            };
            if let Err(e) = self
                .api
                .post::<Customer, _>(&format!("/v1/customers/{customer}"), &form, None)
                .await
            {
                // The card stays attached, and `charge` falls back to attached cards.
                tracing::warn!(customer, payment_method = pm.id, error = %e,
                    "stripe: could not make the new card the default");
            }
        }
        Ok(now)
    }
}

/// Where a page sends the browser: when done, and when leaving without paying.
struct Links {
    done: String,
    back: String,
}

fn links(intent: &Intent, kind: IntentKind) -> Option<Links> {
    let meta = intent.metadata();
    let (done, back) = match kind {
        IntentKind::PaymentDetails => {
            let r = meta.get(wire::meta::RETURN_URL)?;
            (r, r)
        }
        IntentKind::Checkout | IntentKind::Charge | IntentKind::Other => (
            meta.get(wire::meta::SUCCESS_URL)?,
            meta.get(wire::meta::CANCEL_URL)?,
        ),
    };
    Some(Links {
        done: done.to_owned(),
        back: back.to_owned(),
    })
}

fn render_form(
    intent: &Intent,
    kind: IntentKind,
    card_number: &str,
    error: Option<&str>,
) -> String {
    let id = intent.id();
    let back = links(intent, kind).map(|l| l.back).unwrap_or_default();
    let cancel_action = format!("{id}/cancel");
    let description = intent
        .metadata()
        .get(wire::meta::DESCRIPTION)
        .filter(|d| !d.is_empty());
    let amount = match intent {
        Intent::Payment(pi) => Some(format!(
            "{} {}",
            wire::from_minor_units(pi.amount, &pi.currency),
            pi.currency.to_ascii_uppercase()
        )),
        Intent::Setup(_) => None,
    };
    let button = match &amount {
        Some(a) => format!("Pay {a}"),
        None => "Save card".to_owned(),
    };
    let view = match kind {
        IntentKind::PaymentDetails => pages::FormView {
            title: "Update payment details",
            heading: "Update your payment details",
            amount: None,
            note: Some("The new card replaces the one on file. Nothing is charged now."),
            action: id,
            button: &button,
            leave: pages::Leave::Link {
                href: &back,
                label: "Keep my current card",
            },
        },
        IntentKind::Checkout | IntentKind::Charge | IntentKind::Other => pages::FormView {
            title: "Checkout",
            heading: description.unwrap_or("Payment"),
            amount: amount.as_deref(),
            note: amount
                .is_none()
                .then_some("Nothing is charged today: your card is saved for later payments."),
            action: id,
            button: &button,
            leave: pages::Leave::Post {
                action: &cancel_action,
                label: "Cancel and go back",
            },
        },
    };
    pages::card_form(&view, card_number, error)
}

fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(LOCATION, location);
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => page(
            StatusCode::OK,
            pages::message("Done", "You can close this page.", true, None, ""),
        ),
    }
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::message(
            "Not found",
            "This payment page does not exist, or has expired.",
            false,
            None,
            "",
        ),
    )
}

fn unavailable() -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        pages::message(
            "Try again in a moment",
            "The payment service did not answer. Nothing has been charged; reload this page \
             to try again.",
            false,
            None,
            "",
        ),
    )
}

async fn show(inner: &Inner, id: &str, kind: IntentKind) -> Response {
    let intent = match inner.page_intent(id, kind).await {
        Ok(intent) => intent,
        Err(response) => return response,
    };
    let Some(links) = links(&intent, kind) else {
        return not_found();
    };
    let (done_title, done_text) = match (&intent, kind) {
        (_, IntentKind::PaymentDetails) => ("Card saved", "Your new card is saved."),
        (Intent::Setup(_), _) => ("Card saved", "Your card is saved."),
        (Intent::Payment(_), _) => ("Payment received", "Thank you: your payment went through."),
    };
    match stage(&intent) {
        Stage::Open { error } => page(
            StatusCode::OK,
            render_form(&intent, kind, "", error.as_deref()),
        ),
        Stage::Done => page(
            StatusCode::OK,
            pages::message(done_title, done_text, true, Some(&links.done), "Continue"),
        ),
        Stage::Canceled => page(
            StatusCode::OK,
            pages::message(
                "No longer open",
                "This payment page was cancelled.",
                false,
                Some(&links.back),
                "Go back",
            ),
        ),
    }
}

async fn submit(inner: &Inner, id: &str, kind: IntentKind, form: &CardForm) -> Response {
    let intent = match inner.page_intent(id, kind).await {
        Ok(intent) => intent,
        Err(response) => return response,
    };
    let Some(links) = links(&intent, kind) else {
        return not_found();
    };
    match stage(&intent) {
        // Paid already (a second click, a resubmitted form): charge nothing again.
        Stage::Done => return see_other(&links.done),
        Stage::Canceled => return see_other(&links.back),
        Stage::Open { .. } => {}
    }
    let card = match Card::parse(form) {
        Ok(card) => card,
        Err(message) => {
            let html = render_form(&intent, kind, &form.card_number, Some(message));
            return page(StatusCode::UNPROCESSABLE_ENTITY, html);
        }
    };
    match inner.pay(&intent, &card).await {
        Ok(now) => match stage(&now) {
            Stage::Done => see_other(&links.done),
            Stage::Canceled => see_other(&links.back),
            Stage::Open { error } => {
                let message = error.unwrap_or_else(|| "The card was not accepted.".to_owned());
                let html = render_form(&now, kind, &form.card_number, Some(&message));
                page(StatusCode::PAYMENT_REQUIRED, html)
            }
        },
        Err(PayError::Card(reason)) => {
            let message = format!("{reason} Try another card.");
            let html = render_form(&intent, kind, &form.card_number, Some(&message));
            page(StatusCode::PAYMENT_REQUIRED, html)
        }
        Err(PayError::Unavailable(reason)) => {
            tracing::warn!(intent = id, error = %reason, "stripe: a hosted page could not pay");
            let html = render_form(
                &intent,
                kind,
                &form.card_number,
                Some("The payment service did not answer. Try again in a moment."),
            );
            page(StatusCode::BAD_GATEWAY, html)
        }
    }
}

async fn checkout_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    show(&inner, &id, IntentKind::Checkout).await
}

async fn checkout_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    submit(&inner, &id, IntentKind::Checkout, &form).await
}

async fn checkout_cancel(State(inner): AppState, Path(id): Path<String>) -> Response {
    let intent = match inner.page_intent(&id, IntentKind::Checkout).await {
        Ok(intent) => intent,
        Err(response) => return response,
    };
    let Some(links) = links(&intent, IntentKind::Checkout) else {
        return not_found();
    };
    match stage(&intent) {
        Stage::Done => see_other(&links.done),
        Stage::Canceled => see_other(&links.back),
        Stage::Open { .. } => {
            let path = match &intent {
                Intent::Payment(_) => format!("/v1/payment_intents/{id}/cancel"),
                Intent::Setup(_) => format!("/v1/setup_intents/{id}/cancel"),
            };
            let result = inner
                .api
                .post::<serde_json::Value, _>(&path, &NO_FIELDS, None)
                .await;
            if let Err(e) = result {
                // The intent stays open; the server's own expiry settles the checkout.
                tracing::warn!(intent = id, error = %e, "stripe: could not cancel a checkout");
            }
            see_other(&links.back)
        }
    }
}

async fn details_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    show(&inner, &id, IntentKind::PaymentDetails).await
}

async fn details_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    submit(&inner, &id, IntentKind::PaymentDetails, &form).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> StripeProvider {
        StripeProvider::new(StripeConfig {
            api_key: "sk_test_x".into(),
            webhook_secret: "whsec_test".into(),
            public_base_url: "http://127.0.0.1:1/".into(),
            ..Default::default()
        })
        .unwrap()
    }

    fn signed(body: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = signature::sign("whsec_test", unix_now(), body.as_bytes());
        headers.insert("Stripe-Signature", value.parse().unwrap());
        headers
    }

    fn event(kind: &str, object: serde_json::Value) -> String {
        serde_json::json!({"id": "evt_1", "object": "event", "type": kind,
            "data": {"object": object}})
        .to_string()
    }

    fn one(p: &StripeProvider, body: &str) -> ProviderEvent {
        let mut events = p.verify_webhook(&signed(body), body.as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn config_is_checked_and_secrets_stay_out_of_debug_output() {
        assert!(StripeProvider::new(StripeConfig::default()).is_err());
        let config = StripeConfig {
            api_key: "sk_test_secret".into(),
            webhook_secret: "whsec_secret".into(),
            public_base_url: "ftp://x".into(),
            ..Default::default()
        };
        assert!(!format!("{config:?}").contains("secret\""));
        assert!(StripeProvider::new(config).is_err());
        assert_eq!(
            provider().inner.page_url("checkout", "pi_1"),
            "http://127.0.0.1:1/providers/stripe/checkout/pi_1"
        );
    }

    #[test]
    fn webhook_events_map_to_ours() {
        let p = provider();
        let pi = |status: &str, kind: &str| {
            serde_json::json!({"object": "payment_intent", "id": "pi_1", "status": status,
                "amount": 1250, "currency": "usd", "metadata": {"kind": kind}})
        };
        let e = one(
            &p,
            &event("payment_intent.succeeded", pi("succeeded", "checkout")),
        );
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.kind, ProviderEventKind::Checkout);
        assert_eq!(e.object_ref, "pi_1");
        assert_eq!(
            e.outcome,
            Some(PaymentOutcome::Succeeded {
                provider_ref: "pi_1".into()
            })
        );
        let e = one(
            &p,
            &event("payment_intent.processing", pi("processing", "charge")),
        );
        assert_eq!(e.kind, ProviderEventKind::Charge);
        assert!(matches!(e.outcome, Some(PaymentOutcome::Pending { .. })));

        let seti = serde_json::json!({"object": "setup_intent", "id": "seti_1",
            "status": "succeeded", "customer": "cus_1", "metadata": {"kind": "checkout"}});
        let e = one(&p, &event("setup_intent.succeeded", seti));
        assert_eq!(
            (e.kind, e.object_ref.as_str()),
            (ProviderEventKind::Checkout, "seti_1")
        );

        let customer = serde_json::json!({"object": "customer", "id": "cus_1"});
        let e = one(&p, &event("customer.updated", customer.clone()));
        assert_eq!(
            (e.kind, e.object_ref.as_str()),
            (ProviderEventKind::PaymentMethodUpdated, "cus_1")
        );
        let body = serde_json::json!({"id": "evt_2", "type": "customer.updated",
            "data": {"object": customer, "previous_attributes": {"email": "old@x"}}})
        .to_string();
        assert_eq!(
            one(&p, &body).kind,
            ProviderEventKind::Other("customer.updated".into())
        );

        let e = one(
            &p,
            &event(
                "invoice.paid",
                serde_json::json!({"object": "invoice", "id": "in_1"}),
            ),
        );
        assert_eq!(
            (e.kind, e.object_ref.as_str()),
            (ProviderEventKind::Other("invoice.paid".into()), "in_1")
        );
    }

    #[test]
    fn webhooks_without_a_valid_signature_are_refused() {
        let p = provider();
        let body = event("payment_intent.succeeded", serde_json::json!({}));
        assert!(matches!(
            p.verify_webhook(&HeaderMap::new(), body.as_bytes()),
            Err(ProviderError::BadSignature)
        ));
        let headers = signed(&body);
        let tampered = body.replace("succeeded", "canceled");
        assert!(matches!(
            p.verify_webhook(&headers, tampered.as_bytes()),
            Err(ProviderError::BadSignature)
        ));
    }

    #[test]
    fn charge_answers_map_to_outcomes() {
        assert!(matches!(
            charge_outcome(Err(CallError::Timeout)),
            Ok(PaymentOutcome::Unknown { provider_ref: None })
        ));
        assert!(matches!(
            charge_outcome(Err(CallError::Lost("reset".into()))),
            Ok(PaymentOutcome::Unknown { .. })
        ));
        assert!(matches!(
            charge_outcome(Err(CallError::NotSent("refused".into()))),
            Err(ProviderError::Unreachable(_))
        ));
        let status = |s: StatusCode| CallError::Status {
            status: s,
            error: wire::ApiError {
                message: Some("Your card was declined.".into()),
                payment_intent: Some(wire::IdOnly { id: "pi_9".into() }),
                ..Default::default()
            },
        };
        assert_eq!(
            charge_outcome(Err(status(StatusCode::PAYMENT_REQUIRED))).unwrap(),
            PaymentOutcome::Failed {
                provider_ref: Some("pi_9".into()),
                reason: "Your card was declined.".into()
            }
        );
        for s in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::CONFLICT,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(
                matches!(
                    charge_outcome(Err(status(s))),
                    Ok(PaymentOutcome::Unknown { .. })
                ),
                "{s}"
            );
        }
        assert!(matches!(
            charge_outcome(Err(status(StatusCode::BAD_REQUEST))),
            Err(ProviderError::Rejected(_))
        ));
    }

    #[test]
    fn ids_that_would_leave_the_path_are_refused() {
        assert!(stripe_id("pi_abc123", &["pi_"]).is_ok());
        assert!(stripe_id("pi_abc/../../v1/customers", &["pi_"]).is_err());
        assert!(stripe_id("pi_a?x=1", &["pi_"]).is_err());
        assert!(stripe_id("cus_1", &["pi_", "seti_"]).is_err());
    }

    #[test]
    fn card_fields_are_read_leniently() {
        let form = |n: &str, e: &str, c: &str| CardForm {
            card_number: n.into(),
            expiry: e.into(),
            cvc: c.into(),
        };
        let card = Card::parse(&form("4242 4242 4242 4242", "12 / 34", "123")).unwrap();
        assert_eq!(
            (card.number.as_str(), card.exp_month, card.exp_year),
            ("4242424242424242", 12, 2034)
        );
        let card = Card::parse(&form("4242-4242-4242-4242", "0630", "1234")).unwrap();
        assert_eq!((card.exp_month, card.exp_year), (6, 2030));
        assert!(Card::parse(&form("4242", "12/34", "123")).is_err());
        assert!(Card::parse(&form("4242424242424242", "13/34", "123")).is_err());
        assert!(Card::parse(&form("4242424242424242", "12/34", "12")).is_err());
    }
}
