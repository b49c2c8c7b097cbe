//! The built-in **sandbox** provider: hosts its own checkout and payment-details pages,
//! accepts test card numbers and reports results through signed webhooks, exactly like a
//! real provider would, so that the whole flow works on a machine with nothing else
//! running.
//!
//! Its state (checkout sessions, saved cards, payment-details sessions, charges, refunds and
//! the idempotency keys that name them) lives in a [`SandboxStore`]: the server gives it a
//! table in its own database, so a restart, or another replica on the same database, serves
//! the same pages. Every change is a compare-and-set on one record, so two processes racing
//! on one checkout (paid twice, paid while being closed) get exactly one winner.
//! [`MemoryStore`] keeps the same records in process memory, for tests.
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
//!   `POST /checkout/{id}/settle` (form field `success=true|false`),
//!   `POST /checkout/{id}/abandon` (the page's cancel button);
//! - `GET /payment-details/{token}`, `POST /payment-details/{token}`.
//!
//! A checkout closed by [`PaymentProvider::close_checkout`] (expired or replaced) or
//! abandoned by the customer takes no card: its page says so and links to the cancel URL.
//! A pending payment already in flight is not stopped by closing: settling it can still
//! take the money, and the server refunds it. [`PaymentProvider::refund`] gives back money
//! a checkout or charge actually took, never more than it took.
//!
//! Webhook events are POSTed to [`SandboxConfig::webhook_url`] as JSON ([`SandboxEvent`])
//! with a [`SIGNATURE_HEADER`] made by [`signature::sign`], and are delivered (awaited, with
//! a 5 s timeout) *before* the browser is redirected. A failed delivery is logged and the
//! browser still moves on: the server's reconciler asks `payment_status` later.

mod charges;
mod pages;
mod store;

pub use store::{MemoryStore, RecordKind, SandboxStore, StoreError, Versioned};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{
    ChargeRequest, CheckoutRequest, CheckoutSession, CheckoutTerms, CustomerInfo, DetailsRequest,
    HostedSession, PaymentOutcome, PaymentProvider, ProviderError, ProviderEvent,
    ProviderEventKind, ProviderRef, RefundRequest, signature,
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
    /// The customer left through the page's cancel button (object: the session id).
    pub const CHECKOUT_ABANDONED: &str = "checkout.abandoned";
    pub const CHARGE_SUCCEEDED: &str = "charge.succeeded";
    pub const CHARGE_FAILED: &str = "charge.failed";
    /// Object: the refund id.
    pub const REFUND_SUCCEEDED: &str = "refund.succeeded";
    pub const PAYMENT_METHOD_UPDATED: &str = "payment_method.updated";
}

const DECLINED: &str = "card declined";
const NO_PAYMENT_METHOD: &str = "no payment method";
const NOT_A_TEST_CARD: &str = "That is not a sandbox card number: use a test card, \
                               such as 4242 4242 4242 4242.";
const NOT_CHARGED: &str = "This checkout is closed: your card was not charged.";
/// How often one change is retried when other writers keep moving the record.
const CAS_ATTEMPTS: usize = 20;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// The checkout session, charge, refund or (for `payment_method.updated`) customer ref.
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
        let succeeded = || {
            Some(PaymentOutcome::Succeeded {
                provider_ref: object.clone(),
            })
        };
        let (kind, outcome) = match self.kind.as_str() {
            event_type::CHECKOUT_SUCCEEDED => (ProviderEventKind::Checkout, succeeded()),
            event_type::CHECKOUT_FAILED => (ProviderEventKind::Checkout, Some(failed())),
            event_type::CHECKOUT_PENDING => (
                ProviderEventKind::Checkout,
                Some(PaymentOutcome::Pending {
                    provider_ref: object.clone(),
                }),
            ),
            event_type::CHECKOUT_ABANDONED => (ProviderEventKind::CheckoutAbandoned, None),
            event_type::CHARGE_SUCCEEDED => (ProviderEventKind::Charge, succeeded()),
            event_type::CHARGE_FAILED => (ProviderEventKind::Charge, Some(failed())),
            event_type::REFUND_SUCCEEDED => (ProviderEventKind::Refund, succeeded()),
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

// ----- records (JSON in the store; amounts are decimal strings) ---------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Status {
    /// A checkout nobody has paid yet.
    Open,
    Pending,
    Succeeded,
    Failed {
        reason: String,
    },
}

impl Status {
    fn failed(reason: &str) -> Status {
        Status::Failed {
            reason: reason.to_string(),
        }
    }

    fn outcome(&self, provider_ref: &str) -> PaymentOutcome {
        match self {
            Status::Open | Status::Pending => PaymentOutcome::Pending {
                provider_ref: provider_ref.to_string(),
            },
            Status::Succeeded => PaymentOutcome::Succeeded {
                provider_ref: provider_ref.to_string(),
            },
            Status::Failed { reason } => PaymentOutcome::Failed {
                provider_ref: Some(provider_ref.to_string()),
                reason: reason.clone(),
            },
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CustomerRecord {
    card: Option<TestCard>,
}

/// Who closed a checkout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ClosedBy {
    /// The customer, with the page's cancel button.
    Customer,
    /// The merchant ([`PaymentProvider::close_checkout`]: expired or replaced).
    Merchant,
}

/// Money given back from a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RefundEntry {
    id: String,
    amount: Decimal,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckoutRecord {
    customer_ref: ProviderRef,
    amount: Decimal,
    currency: String,
    description: String,
    success_url: String,
    cancel_url: String,
    status: Status,
    /// The card of a pending attempt, saved when it settles successfully.
    pending_card: Option<TestCard>,
    #[serde(default)]
    closed_by: Option<ClosedBy>,
    #[serde(default)]
    refunds: Vec<RefundEntry>,
    #[serde(default)]
    terms: CheckoutTerms,
}

impl CheckoutRecord {
    fn view<'a>(&'a self, id: &'a str) -> pages::CheckoutView<'a> {
        pages::CheckoutView {
            id,
            description: &self.description,
            terms: &self.terms,
            amount: self.amount,
            currency: &self.currency,
            cancel_url: &self.cancel_url,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DetailsRecord {
    customer_ref: ProviderRef,
    return_url: String,
    done: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChargeRecord {
    customer_ref: ProviderRef,
    amount: Decimal,
    currency: String,
    status: Status,
    #[serde(default)]
    refunds: Vec<RefundEntry>,
}

/// What an idempotency key stands for: the id its first use created, and whom it was used
/// for (the customer of a charge, the payment of a refund).
#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    id: String,
    #[serde(default)]
    owner: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefundRecord {
    payment_ref: ProviderRef,
    amount: Decimal,
    currency: String,
    reason: String,
}

/// A payment that money can be refunded from.
trait Refundable {
    fn status(&self) -> &Status;
    fn taken(&self) -> (Decimal, &str);
    fn refunds(&mut self) -> &mut Vec<RefundEntry>;
}

impl Refundable for CheckoutRecord {
    fn status(&self) -> &Status {
        &self.status
    }
    fn taken(&self) -> (Decimal, &str) {
        (self.amount, &self.currency)
    }
    fn refunds(&mut self) -> &mut Vec<RefundEntry> {
        &mut self.refunds
    }
}

impl Refundable for ChargeRecord {
    fn status(&self) -> &Status {
        &self.status
    }
    fn taken(&self) -> (Decimal, &str) {
        (self.amount, &self.currency)
    }
    fn refunds(&mut self) -> &mut Vec<RefundEntry> {
        &mut self.refunds
    }
}

/// Adds refund `id` of `amount` to a payment: `Ok(true)` when added, `Ok(false)` when it is
/// there already (a retry: nothing is given twice), `Err(reason)` when it may not be given.
fn add_refund(
    payment: &mut impl Refundable,
    id: &str,
    amount: Decimal,
    currency: &str,
) -> Result<bool, String> {
    if payment.refunds().iter().any(|r| r.id == id) {
        return Ok(false);
    }
    match payment.status() {
        Status::Succeeded => {}
        Status::Open => return Err("the payment has not been made".into()),
        Status::Pending => return Err("the payment is still pending".into()),
        Status::Failed { reason } => {
            return Err(format!("the payment failed ({reason}): no money was taken"));
        }
    }
    let (taken, paid_currency) = payment.taken();
    let paid_currency = paid_currency.to_owned();
    if !paid_currency.eq_ignore_ascii_case(currency) {
        return Err(format!(
            "the payment was made in {}, not {}",
            paid_currency.to_uppercase(),
            currency.to_uppercase()
        ));
    }
    if taken.is_zero() {
        return Err("the payment took no money (it only saved a card)".into());
    }
    let refunded: Decimal = payment.refunds().iter().map(|r| r.amount).sum();
    let left = taken - refunded;
    if amount > left {
        return Err(format!(
            "a refund of {} is more than the {} left of the {} paid",
            pages::format_amount(amount, &paid_currency),
            pages::format_amount(left, &paid_currency),
            pages::format_amount(taken, &paid_currency),
        ));
    }
    payment.refunds().push(RefundEntry {
        id: id.to_owned(),
        amount,
    });
    Ok(true)
}

/// A refund just added is saved; a retry or a refusal leaves the payment as it was.
fn refund_edit(added: Result<bool, String>) -> Edit<Result<bool, String>> {
    match added {
        Ok(true) => Edit::Save(Ok(true)),
        other => Edit::Keep(other),
    }
}

/// What a read-modify-write decided: leave the record as it was, or save the change.
enum Edit<R> {
    Keep(R),
    Save(R),
}

struct Inner {
    config: SandboxConfig,
    http: reqwest::Client,
    store: Arc<dyn SandboxStore>,
}

/// An event to send once the store's record is written.
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

/// The sandbox payment provider. Cheap to clone: clones share one store.
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

/// The store failed: nothing is known to have been decided, so this is never `Rejected`
/// (which a caller may read as "the payment failed").
fn store_failed(e: StoreError) -> ProviderError {
    ProviderError::Unreachable(e.to_string())
}

fn unknown_payment(provider_ref: &str) -> ProviderError {
    ProviderError::Rejected(format!("unknown sandbox payment {provider_ref:?}"))
}

impl SandboxProvider {
    /// A sandbox that keeps its state in `store` (the server's database; [`MemoryStore`] in
    /// tests).
    pub fn new(mut config: SandboxConfig, store: Arc<dyn SandboxStore>) -> Self {
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
                store,
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
            .route("/checkout/{id}/abandon", post(checkout_abandon))
            .route(
                "/payment-details/{token}",
                get(details_page).post(details_submit),
            )
            .with_state(self.inner.clone())
    }

    /// Ends a pending checkout session or charge (made with the `…0077` card): it succeeds
    /// or fails ("card declined"), and the matching webhook event is delivered before this
    /// returns. A closed checkout's pending payment can still succeed (the money was in
    /// flight). Anything not pending is left as it is and its current outcome returned.
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
    fn checkout_url(&self, id: &str) -> String {
        format!("{}{MOUNT}/checkout/{id}", self.config.public_base_url)
    }

    async fn load<T: DeserializeOwned>(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<(T, i64)>, ProviderError> {
        let Some(found) = self.store.get(kind, id).await.map_err(store_failed)? else {
            return Ok(None);
        };
        let record = serde_json::from_value(found.value).map_err(|e| {
            ProviderError::BadResponse(format!("sandbox {} {id:?}: {e}", kind.as_str()))
        })?;
        Ok(Some((record, found.version)))
    }

    /// Creates a record; `false` when one with this id exists (it is left alone).
    async fn create<T: Serialize>(
        &self,
        kind: RecordKind,
        id: &str,
        record: &T,
    ) -> Result<bool, ProviderError> {
        let value = encode(kind, record)?;
        self.store
            .insert(kind, id, &value)
            .await
            .map_err(store_failed)
    }

    /// Reads a record, lets `edit` decide, and saves the change only if nobody changed the
    /// record meanwhile; otherwise reads it again and lets `edit` decide anew. Returns what
    /// `edit` answered and the record as it stands, or `None` when there is no such record.
    async fn modify<T, R>(
        &self,
        kind: RecordKind,
        id: &str,
        mut edit: impl FnMut(&mut T) -> Edit<R> + Send,
    ) -> Result<Option<(R, T)>, ProviderError>
    where
        T: Serialize + DeserializeOwned + Send,
        R: Send,
    {
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut record, version)) = self.load::<T>(kind, id).await? else {
                return Ok(None);
            };
            match edit(&mut record) {
                Edit::Keep(r) => return Ok(Some((r, record))),
                Edit::Save(r) => {
                    let value = encode(kind, &record)?;
                    let saved = self
                        .store
                        .update(kind, id, &value, version)
                        .await
                        .map_err(store_failed)?;
                    if saved {
                        return Ok(Some((r, record)));
                    }
                }
            }
        }
        Err(ProviderError::Unreachable(format!(
            "sandbox {} {id:?}: too many concurrent changes",
            kind.as_str()
        )))
    }

    /// The id an idempotency key stands for: the first caller's `fresh` id, whoever asks.
    async fn claim(
        &self,
        kind: RecordKind,
        key: &str,
        fresh: String,
        owner: &str,
    ) -> Result<KeyRecord, ProviderError> {
        if let Some((known, _)) = self.load::<KeyRecord>(kind, key).await? {
            return Ok(known);
        }
        let mine = KeyRecord {
            id: fresh,
            owner: owner.to_owned(),
        };
        if self.create(kind, key, &mine).await? {
            return Ok(mine);
        }
        // Another caller claimed it first: theirs it is.
        match self.load::<KeyRecord>(kind, key).await? {
            Some((known, _)) => Ok(known),
            None => Err(ProviderError::Unreachable(format!(
                "sandbox {}: key {key:?} vanished",
                kind.as_str()
            ))),
        }
    }

    async fn ensure_customer(&self, customer_ref: &str) -> Result<(), ProviderError> {
        self.create(
            RecordKind::Customer,
            customer_ref,
            &CustomerRecord::default(),
        )
        .await
        .map(|_| ())
    }

    async fn card_of(&self, customer_ref: &str) -> Result<Option<TestCard>, ProviderError> {
        Ok(self
            .load::<CustomerRecord>(RecordKind::Customer, customer_ref)
            .await?
            .and_then(|(c, _)| c.card))
    }

    async fn save_card(&self, customer_ref: &str, card: TestCard) -> Result<(), ProviderError> {
        for _ in 0..CAS_ATTEMPTS {
            let saved = self
                .modify(
                    RecordKind::Customer,
                    customer_ref,
                    |c: &mut CustomerRecord| {
                        c.card = Some(card);
                        Edit::Save(())
                    },
                )
                .await?;
            if saved.is_some() {
                return Ok(());
            }
            let record = CustomerRecord { card: Some(card) };
            if self
                .create(RecordKind::Customer, customer_ref, &record)
                .await?
            {
                return Ok(());
            }
        }
        Err(ProviderError::Unreachable(format!(
            "sandbox customer {customer_ref:?}: too many concurrent changes"
        )))
    }

    /// Saves a card after the payment that took it was recorded; a failure here is logged,
    /// as the payment itself stands.
    async fn keep_card(&self, customer_ref: &str, card: TestCard) {
        if let Err(e) = self.save_card(customer_ref, card).await {
            tracing::warn!(customer = customer_ref, error = %e, "sandbox: could not save the card");
        }
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

    /// Settles a pending checkout; `None` when there is no such checkout.
    async fn settle_checkout(
        &self,
        id: &str,
        success: bool,
    ) -> Result<Option<(PaymentOutcome, CheckoutRecord)>, ProviderError> {
        let settled = self
            .modify(RecordKind::Checkout, id, |c: &mut CheckoutRecord| {
                if c.status != Status::Pending {
                    return Edit::Keep(false);
                }
                // Closing does not stop money already in flight.
                c.status = if success {
                    Status::Succeeded
                } else {
                    Status::failed(DECLINED)
                };
                Edit::Save(true)
            })
            .await?;
        let Some((moved, checkout)) = settled else {
            return Ok(None);
        };
        if moved {
            if success {
                if let Some(card) = checkout.pending_card {
                    self.keep_card(&checkout.customer_ref, card).await;
                }
                self.emit(Outgoing::new(event_type::CHECKOUT_SUCCEEDED, id, None))
                    .await;
            } else {
                self.emit(Outgoing::new(
                    event_type::CHECKOUT_FAILED,
                    id,
                    Some(DECLINED),
                ))
                .await;
            }
        }
        Ok(Some((checkout.status.outcome(id), checkout)))
    }

    async fn settle(
        &self,
        provider_ref: &str,
        success: bool,
    ) -> Result<PaymentOutcome, ProviderError> {
        if let Some((outcome, _)) = self.settle_checkout(provider_ref, success).await? {
            return Ok(outcome);
        }
        let settled = self
            .modify(RecordKind::Charge, provider_ref, |c: &mut ChargeRecord| {
                if c.status != Status::Pending {
                    return Edit::Keep(false);
                }
                c.status = if success {
                    Status::Succeeded
                } else {
                    Status::failed(DECLINED)
                };
                Edit::Save(true)
            })
            .await?;
        let Some((moved, charge)) = settled else {
            return Err(unknown_payment(provider_ref));
        };
        if moved {
            let event = if success {
                Outgoing::new(event_type::CHARGE_SUCCEEDED, provider_ref, None)
            } else {
                Outgoing::new(event_type::CHARGE_FAILED, provider_ref, Some(DECLINED))
            };
            self.emit(event).await;
        }
        Ok(charge.status.outcome(provider_ref))
    }

    /// Takes a refund from the payment `r.payment_ref` (a checkout or a charge); `None` when
    /// neither exists.
    async fn take_refund(
        &self,
        r: &RefundRequest,
        refund_id: &str,
    ) -> Result<Option<Result<bool, String>>, ProviderError> {
        let from_checkout = self
            .modify(
                RecordKind::Checkout,
                &r.payment_ref,
                |c: &mut CheckoutRecord| {
                    refund_edit(add_refund(c, refund_id, r.amount, &r.currency))
                },
            )
            .await?;
        if let Some((taken, _)) = from_checkout {
            return Ok(Some(taken));
        }
        let from_charge = self
            .modify(
                RecordKind::Charge,
                &r.payment_ref,
                |c: &mut ChargeRecord| refund_edit(add_refund(c, refund_id, r.amount, &r.currency)),
            )
            .await?;
        Ok(from_charge.map(|(taken, _)| taken))
    }
}

fn encode<T: Serialize>(kind: RecordKind, record: &T) -> Result<serde_json::Value, ProviderError> {
    serde_json::to_value(record).map_err(|e| {
        ProviderError::BadResponse(format!("sandbox {}: cannot encode: {e}", kind.as_str()))
    })
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
        // A ref the store does not hold (say, from before the sandbox kept state) is
        // simply recreated.
        self.inner.ensure_customer(&provider_ref).await?;
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
        let key = self
            .inner
            .claim(
                RecordKind::CheckoutKey,
                &r.idempotency_key,
                new_id("cs"),
                &r.customer_ref,
            )
            .await?;
        self.inner.ensure_customer(&r.customer_ref).await?;
        // Whoever claimed the key creates the session; if it exists, this is a retry.
        let session = CheckoutRecord {
            customer_ref: r.customer_ref,
            amount: r.amount,
            currency: r.currency,
            description: r.description,
            success_url: r.success_url,
            cancel_url: r.cancel_url,
            status: Status::Open,
            pending_card: None,
            closed_by: None,
            refunds: Vec::new(),
            terms: r.terms,
        };
        self.inner
            .create(RecordKind::Checkout, &key.id, &session)
            .await?;
        Ok(CheckoutSession {
            url: self.inner.checkout_url(&key.id),
            provider_ref: key.id,
        })
    }

    async fn payment_details_session(
        &self,
        r: DetailsRequest,
    ) -> Result<HostedSession, ProviderError> {
        require(&r.customer_ref, "customer ref")?;
        require(&r.return_url, "return URL")?;
        let token = new_id("pd");
        self.inner.ensure_customer(&r.customer_ref).await?;
        let session = DetailsRecord {
            customer_ref: r.customer_ref,
            return_url: r.return_url,
            done: false,
        };
        self.inner
            .create(RecordKind::PaymentDetails, &token, &session)
            .await?;
        Ok(HostedSession {
            url: format!(
                "{}{MOUNT}/payment-details/{token}",
                self.inner.config.public_base_url
            ),
        })
    }

    async fn charge(&self, r: ChargeRequest) -> Result<PaymentOutcome, ProviderError> {
        let mut answers = self.inner.charge_many(std::slice::from_ref(&r)).await;
        answers
            .pop()
            .unwrap_or_else(|| Err(unknown_payment(&r.idempotency_key)))
    }

    /// A batch costs the store about as much as one charge: three statements when every
    /// key is new (claim the keys, read the cards, store the charges).
    async fn charge_many(
        &self,
        requests: Vec<ChargeRequest>,
    ) -> Vec<Result<PaymentOutcome, ProviderError>> {
        self.inner.charge_many(&requests).await
    }

    fn charges_in_batches(&self) -> bool {
        true
    }

    async fn payment_status(&self, provider_ref: &str) -> Result<PaymentOutcome, ProviderError> {
        if let Some((checkout, _)) = self
            .inner
            .load::<CheckoutRecord>(RecordKind::Checkout, provider_ref)
            .await?
        {
            return Ok(checkout.status.outcome(provider_ref));
        }
        if let Some((charge, _)) = self
            .inner
            .load::<ChargeRecord>(RecordKind::Charge, provider_ref)
            .await?
        {
            return Ok(charge.status.outcome(provider_ref));
        }
        if self
            .inner
            .load::<RefundRecord>(RecordKind::Refund, provider_ref)
            .await?
            .is_some()
        {
            return Ok(PaymentOutcome::Succeeded {
                provider_ref: provider_ref.to_owned(),
            });
        }
        Err(unknown_payment(provider_ref))
    }

    /// Refunds take effect at once: `Succeeded { provider_ref: "sbx_re_…" }`, then a
    /// `refund.succeeded` event. Only money a payment took (and not yet gave back) is
    /// refunded; anything else is `Rejected` with the reason, and changes nothing.
    async fn refund(&self, r: RefundRequest) -> Result<PaymentOutcome, ProviderError> {
        require(&r.payment_ref, "payment ref")?;
        require(&r.idempotency_key, "idempotency key")?;
        require(&r.currency, "currency")?;
        if r.amount <= Decimal::ZERO {
            return Err(ProviderError::Rejected(
                "a refund's amount must be more than zero".into(),
            ));
        }
        let key = self
            .inner
            .claim(
                RecordKind::RefundKey,
                &r.idempotency_key,
                new_id("re"),
                &r.payment_ref,
            )
            .await?;
        if key.owner != r.payment_ref {
            return Err(ProviderError::Rejected(
                "idempotency key already used for another payment".into(),
            ));
        }
        let fresh = match self.inner.take_refund(&r, &key.id).await? {
            None => return Err(unknown_payment(&r.payment_ref)),
            Some(Err(reason)) => {
                return Err(ProviderError::Rejected(format!(
                    "cannot refund {}: {reason}",
                    r.payment_ref
                )));
            }
            Some(Ok(fresh)) => fresh,
        };
        // The payment's record is what counts; this one answers `payment_status(refund id)`.
        let record = RefundRecord {
            payment_ref: r.payment_ref,
            amount: r.amount,
            currency: r.currency,
            reason: r.reason,
        };
        self.inner
            .create(RecordKind::Refund, &key.id, &record)
            .await?;
        if fresh {
            self.inner
                .emit(Outgoing::new(event_type::REFUND_SUCCEEDED, &key.id, None))
                .await;
        }
        Ok(PaymentOutcome::Succeeded {
            provider_ref: key.id,
        })
    }

    /// Marks the session closed: its page says so and takes no card. A pending payment
    /// already made on it can still settle. A settled, closed or unknown session is left
    /// as it is (an unknown one takes no payment either).
    async fn close_checkout(&self, provider_ref: &str) -> Result<(), ProviderError> {
        self.inner
            .modify(
                RecordKind::Checkout,
                provider_ref,
                |c: &mut CheckoutRecord| {
                    if c.status == Status::Succeeded || c.closed_by.is_some() {
                        return Edit::Keep(());
                    }
                    c.closed_by = Some(ClosedBy::Merchant);
                    Edit::Save(())
                },
            )
            .await?;
        Ok(())
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

/// The store could not be reached: a page that asks to try again (and logs why).
fn unavailable(e: &ProviderError) -> Response {
    tracing::error!(error = %e, "sandbox: a page could not read or write its state");
    page(StatusCode::SERVICE_UNAVAILABLE, pages::unavailable())
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

/// The page of a closed checkout (410 Gone); `notice` is shown as an alert.
fn closed_page(id: &str, checkout: &CheckoutRecord, notice: Option<&str>) -> Response {
    let html = pages::checkout_closed(
        &checkout.view(id),
        checkout.status == Status::Pending,
        notice,
    );
    page(StatusCode::GONE, html)
}

async fn checkout_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    let checkout = match inner
        .load::<CheckoutRecord>(RecordKind::Checkout, &id)
        .await
    {
        Ok(Some((checkout, _))) => checkout,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    let view = checkout.view(&id);
    let html = match &checkout.status {
        Status::Succeeded => pages::checkout_done(&view, &checkout.success_url),
        _ if checkout.closed_by.is_some() => return closed_page(&id, &checkout, None),
        Status::Open => pages::checkout(&view, "", None),
        Status::Failed { reason } => pages::checkout(&view, "", Some(&failed_message(reason))),
        Status::Pending => pages::checkout_pending(&view),
    };
    page(StatusCode::OK, html)
}

/// What a card posted to a checkout did.
enum Submitted {
    AlreadyPaid,
    Closed,
    StillPending,
    NotACard,
    Paid,
    Declined,
    NowPending,
}

async fn checkout_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let card = TestCard::parse(&form.card_number);
    let decided = inner
        .modify(RecordKind::Checkout, &id, |c: &mut CheckoutRecord| {
            match (&c.status, c.closed_by, card) {
                // Paid already (a second click, a replayed form): charge nothing again.
                (Status::Succeeded, _, _) => Edit::Keep(Submitted::AlreadyPaid),
                (_, Some(_), _) => Edit::Keep(Submitted::Closed),
                (Status::Pending, _, _) => Edit::Keep(Submitted::StillPending),
                (_, _, None) => Edit::Keep(Submitted::NotACard),
                (_, _, Some(TestCard::Succeeds)) => {
                    c.status = Status::Succeeded;
                    Edit::Save(Submitted::Paid)
                }
                (_, _, Some(TestCard::Declined)) => {
                    c.status = Status::failed(DECLINED);
                    Edit::Save(Submitted::Declined)
                }
                (_, _, Some(TestCard::Pending)) => {
                    c.status = Status::Pending;
                    c.pending_card = Some(TestCard::Pending);
                    Edit::Save(Submitted::NowPending)
                }
            }
        })
        .await;
    let (submitted, checkout) = match decided {
        Ok(Some(decided)) => decided,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    let view = checkout.view(&id);
    match submitted {
        Submitted::AlreadyPaid => see_other(&checkout.success_url),
        Submitted::Closed => closed_page(&id, &checkout, Some(NOT_CHARGED)),
        Submitted::StillPending => page(StatusCode::OK, pages::checkout_pending(&view)),
        Submitted::NotACard => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::checkout(&view, &form.card_number, Some(NOT_A_TEST_CARD)),
        ),
        Submitted::Paid => {
            inner
                .keep_card(&checkout.customer_ref, TestCard::Succeeds)
                .await;
            inner
                .emit(Outgoing::new(event_type::CHECKOUT_SUCCEEDED, &id, None))
                .await;
            see_other(&checkout.success_url)
        }
        Submitted::Declined => {
            inner
                .emit(Outgoing::new(
                    event_type::CHECKOUT_FAILED,
                    &id,
                    Some(DECLINED),
                ))
                .await;
            page(
                StatusCode::PAYMENT_REQUIRED,
                pages::checkout(&view, &form.card_number, Some(&failed_message(DECLINED))),
            )
        }
        Submitted::NowPending => {
            inner
                .emit(Outgoing::new(event_type::CHECKOUT_PENDING, &id, None))
                .await;
            page(StatusCode::OK, pages::checkout_pending(&view))
        }
    }
}

async fn checkout_settle(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<SettleForm>,
) -> Response {
    match inner.settle_checkout(&id, form.success).await {
        Ok(Some((PaymentOutcome::Succeeded { .. }, checkout))) => see_other(&checkout.success_url),
        // Failed (the page shows why, with the card form), never attempted, or closed.
        Ok(Some(_)) => see_other(&inner.checkout_url(&id)),
        Ok(None) => not_found(),
        Err(e) => unavailable(&e),
    }
}

/// The page's cancel button: closes the session, tells the server (before the browser
/// moves on), then goes to the cancel URL. A paid session goes to its success URL.
async fn checkout_abandon(State(inner): AppState, Path(id): Path<String>) -> Response {
    let decided = inner
        .modify(RecordKind::Checkout, &id, |c: &mut CheckoutRecord| {
            match (&c.status, c.closed_by) {
                (Status::Succeeded, _) => Edit::Keep(None),
                // Told again only if the customer closed it (a retry after a lost delivery).
                (_, Some(by)) => Edit::Keep(Some(by == ClosedBy::Customer)),
                (_, None) => {
                    c.closed_by = Some(ClosedBy::Customer);
                    Edit::Save(Some(true))
                }
            }
        })
        .await;
    let (announce, checkout) = match decided {
        Ok(Some(decided)) => decided,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    match announce {
        None => see_other(&checkout.success_url),
        Some(announce) => {
            if announce {
                inner
                    .emit(Outgoing::new(event_type::CHECKOUT_ABANDONED, &id, None))
                    .await;
            }
            see_other(&checkout.cancel_url)
        }
    }
}

async fn details_page(State(inner): AppState, Path(token): Path<String>) -> Response {
    let session = match inner
        .load::<DetailsRecord>(RecordKind::PaymentDetails, &token)
        .await
    {
        Ok(Some((session, _))) => session,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    if session.done {
        return page(
            StatusCode::OK,
            pages::payment_details_done(&session.return_url),
        );
    }
    let current = match inner.card_of(&session.customer_ref).await {
        Ok(card) => card.map(TestCard::label),
        Err(e) => return unavailable(&e),
    };
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
    let session = match inner
        .load::<DetailsRecord>(RecordKind::PaymentDetails, &token)
        .await
    {
        Ok(Some((session, _))) => session,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    // The link is used up: posting again just goes back.
    if session.done {
        return see_other(&session.return_url);
    }
    let Some(card) = TestCard::parse(&form.card_number) else {
        let current = match inner.card_of(&session.customer_ref).await {
            Ok(card) => card.map(TestCard::label),
            Err(e) => return unavailable(&e),
        };
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
    // pending, which is how renewals that fail or hang are tried out. The card first, then
    // the link is used up, so a failure in between leaves a link that still works.
    if let Err(e) = inner.save_card(&session.customer_ref, card).await {
        return unavailable(&e);
    }
    let used = inner
        .modify(
            RecordKind::PaymentDetails,
            &token,
            |s: &mut DetailsRecord| {
                if s.done {
                    return Edit::Keep(false);
                }
                s.done = true;
                Edit::Save(true)
            },
        )
        .await;
    match used {
        // Of two racing submissions, the one that used the link up tells the server.
        Ok(Some((true, _))) => {
            inner
                .emit(Outgoing::new(
                    event_type::PAYMENT_METHOD_UPDATED,
                    &session.customer_ref,
                    None,
                ))
                .await;
            see_other(&session.return_url)
        }
        Ok(_) => see_other(&session.return_url),
        Err(e) => unavailable(&e),
    }
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
