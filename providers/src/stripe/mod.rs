//! The **stripe** provider: customers, PaymentIntents, SetupIntents and refunds through
//! Stripe's REST API (form-encoded requests, Bearer key, pinned API version), webhooks in the
//! `Stripe-Signature` scheme. The API base is configurable, so tests run it against
//! `localstripe` on 127.0.0.1. Wire types and status mappings are in [`transformers`], the
//! hosted pages in `hosted`.
//!
//! - `start_checkout` creates a PaymentIntent (amount > 0) or a SetupIntent (amount 0)
//!   and returns our own hosted page for it, `{public_base_url}/providers/stripe/checkout/{id}`.
//!   The success and cancel URLs ride in the intent's metadata, so the page needs no state
//!   of its own.
//! - `payment_details_session` creates a SetupIntent and returns
//!   `{public_base_url}/providers/stripe/payment-details/{seti_id}`; the return URL rides in
//!   metadata too (never in the query string, which anyone could change into an open
//!   redirect).
//! - **No card reaches our server.** The pages load Stripe.js (from `js_url`) with the
//!   publishable key and mount its card element; the browser confirms a SetupIntent with
//!   `confirmCardSetup` and its client secret, so the card goes straight to Stripe. A
//!   paying checkout's page makes a SetupIntent of its own for that (`metadata[kind] =
//!   checkout_card`, `metadata[payment_intent]`); our server then pays the PaymentIntent with
//!   the saved card, and when the bank wants 3-D Secure the page runs `confirmCardPayment`
//!   with the PaymentIntent's client secret. (This order also works with localstripe's fake
//!   Stripe.js, whose `confirmCardPayment` only authenticates.) The form posts back nothing
//!   but the id of the intent that Stripe.js confirmed.
//! - On that post our server retrieves the intent at once and hands the outcome to the
//!   server's [`EventSink`] before it redirects: a paid checkout is active before the
//!   browser reaches `success_url`, and a decline is shown on the page and reported as a
//!   failed payment. An intent id that is not this page's (or its card SetupIntent's) changes
//!   nothing.
//! - A card saved by either page is attached to the customer and, once the payment or
//!   setup went through, becomes the customer's `invoice_settings.default_payment_method`,
//!   which `charge` uses off-session.
//! - `close_checkout` cancels the intent; its page then says the checkout is closed. The
//!   page's cancel button cancels it too and reports [`ProviderEventKind::CheckoutAbandoned`].
//! - `charge` creates and confirms an off-session PaymentIntent (`metadata[kind]=charge`);
//!   `refund` refunds a PaymentIntent. A timeout or broken connection after the request was
//!   sent, a 5xx, 409 or 429 is [`PaymentOutcome::Unknown`]; a card error (402) is `Failed`;
//!   a connection that could not be opened is `Err(ProviderError::Unreachable)`, as nothing
//!   reached Stripe.

mod hosted;
mod pages;
pub mod transformers;

use std::error::Error as _;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use self::transformers::{
    self as wire, Customer, EventObject, Intent, IntentKind, PaymentIntent, PaymentIntentStatus,
    SetupIntent, SetupIntentStatus,
};
use crate::{
    ChargeRequest, CheckoutRequest, CheckoutSession, CustomerInfo, DetailsRequest, EventSink,
    HostedSession, PaymentOutcome, PaymentProvider, ProviderError, ProviderEvent,
    ProviderEventKind, ProviderRef, RefundRequest, signature,
};

/// The provider's configuration key.
pub const NAME: &str = "stripe";
/// Where the server mounts [`PaymentProvider::routes`].
pub const MOUNT: &str = "/providers/stripe";
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// Stripe.js, which the hosted pages load (tests point it at localstripe's fake,
/// `{localstripe}/js.stripe.com/v3/`).
pub const DEFAULT_JS_URL: &str = "https://js.stripe.com/v3/";
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
    /// The publishable key (`pk_test_…` or `pk_live_…`) Stripe.js runs with in the browser.
    pub publishable_key: String,
    /// Where the pages load Stripe.js from.
    pub js_url: String,
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
            publishable_key: String::new(),
            js_url: DEFAULT_JS_URL.to_owned(),
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
            .field("publishable_key", &self.publishable_key)
            .field("js_url", &self.js_url)
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
    publishable_key: String,
    js_url: String,
    /// Where the pages report what they learnt; set once the server exists.
    sink: OnceLock<Arc<dyn EventSink>>,
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
        if !config.publishable_key.trim().starts_with("pk_") {
            return bad("the publishable key must start with pk_");
        }
        for (name, url) in [
            ("api_base", &config.api_base),
            ("public_base_url", &config.public_base_url),
            ("js_url", &config.js_url),
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
                publishable_key: config.publishable_key.trim().to_owned(),
                js_url: config.js_url,
                sink: OnceLock::new(),
            }),
        })
    }

    /// Hands the pages the server's sink, once the server exists (it is built after its
    /// providers). A second call changes nothing.
    pub fn set_event_sink(&self, sink: Arc<dyn EventSink>) {
        if self.inner.sink.set(sink).is_err() {
            tracing::warn!("stripe: the event sink was already set");
        }
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
    money_outcome(result, |pi| PaymentOutcome::from(&pi))
}

/// What a sent refund request came to, like a charge.
fn refund_outcome(
    result: Result<wire::Refund, CallError>,
) -> Result<PaymentOutcome, ProviderError> {
    money_outcome(result, |r| PaymentOutcome::from(&r))
}

/// The answer to a request that moves money. Only a definite answer is `Failed`; one that
/// may have been acted on is `Unknown`.
fn money_outcome<T>(
    result: Result<T, CallError>,
    outcome: impl FnOnce(T) -> PaymentOutcome,
) -> Result<PaymentOutcome, ProviderError> {
    match result {
        Ok(answer) => Ok(outcome(answer)),
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
        // whether any money moved is not known; a retry with the same idempotency key tells.
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
        // We cancel intents ourselves when a checkout closes, and the server closes a checkout
        // on its own clock: a canceled intent is no failed payment.
        EventObject::PaymentIntent(pi) if pi.status == PaymentIntentStatus::Canceled => {
            other(pi.id)
        }
        EventObject::SetupIntent(si) if si.status == SetupIntentStatus::Canceled => other(si.id),
        EventObject::PaymentIntent(pi) if kind.starts_with("payment_intent.") => {
            let event_kind = match pi.metadata.kind() {
                IntentKind::Charge => ProviderEventKind::Charge,
                IntentKind::Checkout
                | IntentKind::PaymentDetails
                | IntentKind::CheckoutCard
                | IntentKind::Other => ProviderEventKind::Checkout,
            };
            let outcome = PaymentOutcome::from(&pi);
            (event_kind, pi.id, Some(outcome))
        }
        EventObject::SetupIntent(si) if kind.starts_with("setup_intent.") => {
            match si.metadata.kind() {
                // The new default is announced by `customer.updated`; a card collected for a
                // paying checkout is news only once the PaymentIntent settles.
                IntentKind::PaymentDetails | IntentKind::CheckoutCard => other(si.id),
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
        EventObject::Refund(r)
            if kind.starts_with("refund.") || kind == "charge.refund.updated" =>
        {
            let outcome = PaymentOutcome::from(&r);
            (ProviderEventKind::Refund, r.id, Some(outcome))
        }
        EventObject::PaymentIntent(_)
        | EventObject::SetupIntent(_)
        | EventObject::PaymentMethod(_)
        | EventObject::Customer(_)
        | EventObject::Refund(_)
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
        let terms = crate::pages::terms_line(&r.terms);
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
                terms: terms.as_deref(),
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
                payment_intent: None,
                terms: terms.as_deref(),
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
            payment_intent: None,
            terms: None,
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

    async fn refund(&self, r: RefundRequest) -> Result<PaymentOutcome, ProviderError> {
        let id = stripe_id(&r.payment_ref, &["pi_"]).map_err(|_| {
            ProviderError::Rejected(format!(
                "{:?} is no Stripe payment: only a PaymentIntent took money",
                r.payment_ref
            ))
        })?;
        let (amount, _) = money(r.amount, &r.currency)?;
        if amount == 0 {
            return Err(ProviderError::Rejected("nothing to refund".to_owned()));
        }
        let form = wire::RefundForm {
            payment_intent: id,
            amount,
            kind: "refund",
            reason: &r.reason,
        };
        refund_outcome(
            self.inner
                .api
                .post("/v1/refunds", &form, Some(&r.idempotency_key))
                .await,
        )
    }

    async fn close_checkout(&self, provider_ref: &str) -> Result<(), ProviderError> {
        let id = stripe_id(provider_ref, &["pi_", "seti_"])?;
        self.inner.cancel_intent(id).await
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
                .route(
                    "/checkout/{id}",
                    get(hosted::checkout_page).post(hosted::checkout_submit),
                )
                .route("/checkout/{id}/cancel", post(hosted::checkout_cancel))
                .route(
                    "/payment-details/{id}",
                    get(hosted::details_page).post(hosted::details_submit),
                )
                .with_state(self.inner.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> StripeProvider {
        StripeProvider::new(StripeConfig {
            api_key: "sk_test_x".into(),
            webhook_secret: "whsec_test".into(),
            publishable_key: "pk_test_x".into(),
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
    fn refund_answers_map_like_charges() {
        let refund = |status: &str| -> wire::Refund {
            serde_json::from_value(serde_json::json!({"id": "re_1", "object": "refund",
                "status": status, "payment_intent": "pi_1"}))
            .unwrap()
        };
        assert_eq!(
            refund_outcome(Ok(refund("succeeded"))).unwrap(),
            PaymentOutcome::Succeeded {
                provider_ref: "re_1".into()
            }
        );
        assert!(matches!(
            refund_outcome(Ok(refund("pending"))),
            Ok(PaymentOutcome::Pending { .. })
        ));
        assert!(matches!(
            refund_outcome(Ok(refund("failed"))),
            Ok(PaymentOutcome::Failed { .. })
        ));
        assert!(matches!(
            refund_outcome(Err(CallError::Timeout)),
            Ok(PaymentOutcome::Unknown { provider_ref: None })
        ));
        let status = |s: StatusCode| CallError::Status {
            status: s,
            error: wire::ApiError {
                message: Some("Charge pi_1 has already been refunded.".into()),
                ..Default::default()
            },
        };
        assert!(matches!(
            refund_outcome(Err(status(StatusCode::BAD_GATEWAY))),
            Ok(PaymentOutcome::Unknown { .. })
        ));
        assert!(matches!(
            refund_outcome(Err(status(StatusCode::BAD_REQUEST))),
            Err(ProviderError::Rejected(_))
        ));
    }

    #[test]
    fn canceled_intents_and_refunds_map_to_ours() {
        let p = provider();
        // We cancel intents when checkouts close: that is no failed payment.
        let canceled = serde_json::json!({"object": "payment_intent", "id": "pi_1",
            "status": "canceled", "amount": 100, "currency": "usd",
            "metadata": {"kind": "checkout"}});
        let e = one(&p, &event("payment_intent.canceled", canceled));
        assert_eq!(
            e.kind,
            ProviderEventKind::Other("payment_intent.canceled".into())
        );
        assert_eq!(e.outcome, None);
        // A declined payment is a failed checkout.
        let failed = serde_json::json!({"object": "payment_intent", "id": "pi_2",
            "status": "requires_payment_method", "amount": 100, "currency": "usd",
            "metadata": {"kind": "checkout"},
            "last_payment_error": {"code": "card_declined", "charge": "ch_1",
                "message": "Your card was declined."}});
        let e = one(&p, &event("payment_intent.payment_failed", failed));
        assert_eq!(e.kind, ProviderEventKind::Checkout);
        assert!(matches!(e.outcome, Some(PaymentOutcome::Failed { .. })));
        // A card collected for a paying checkout is not the checkout's news.
        let card = serde_json::json!({"object": "setup_intent", "id": "seti_1",
            "status": "succeeded", "metadata": {"kind": "checkout_card"}});
        let e = one(&p, &event("setup_intent.succeeded", card));
        assert_eq!(e.outcome, None);
        let refund = serde_json::json!({"object": "refund", "id": "re_1",
            "status": "succeeded", "payment_intent": "pi_1"});
        let e = one(&p, &event("refund.updated", refund));
        assert_eq!(
            (e.kind, e.object_ref.as_str()),
            (ProviderEventKind::Refund, "re_1")
        );
        assert!(matches!(e.outcome, Some(PaymentOutcome::Succeeded { .. })));
    }
}
