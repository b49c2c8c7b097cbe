//! Payment providers behind one trait. This crate knows nothing of the server's database
//! or GraphQL: it speaks in requests and outcomes, and the server records them.
//!
//! Rules every provider keeps (DESIGN "Payment providers"): calls that move money carry an
//! idempotency key; a timeout or broken connection after a request was sent is
//! [`PaymentOutcome::Unknown`], never `Failed`; provider calls never run inside a database
//! transaction.

pub mod pages;
pub mod sandbox;
pub mod signature;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use rust_decimal::Decimal;

/// The provider's identifier for something (a customer, a payment, a session).
pub type ProviderRef = String;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerInfo {
    pub customer_id: String,
    pub provider_ref: Option<ProviderRef>,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
}

/// Takes the first payment (or, when `amount` is zero, only saves a payment method) on a
/// hosted page, then sends the browser to `success_url` (or `cancel_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub customer_ref: ProviderRef,
    /// Our subscription's id, carried in the provider's metadata.
    pub subscription_id: String,
    /// In major units (12.50), exact; zero means "save the card, charge nothing now".
    pub amount: Decimal,
    pub currency: String,
    pub description: String,
    pub success_url: String,
    pub cancel_url: String,
    pub idempotency_key: String,
    /// What the page says about who sells what, and what comes after today's payment.
    pub terms: CheckoutTerms,
}

/// What a checkout page tells the customer besides the amount due now.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckoutTerms {
    /// Who is selling (the merchant's name).
    pub merchant: String,
    /// The plan being bought.
    pub plan: String,
    /// The price with its interval and what happens after a trial: "Free for 14 days,
    /// then 12.50 USD per month".
    pub summary: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutSession {
    pub provider_ref: ProviderRef,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetailsRequest {
    pub customer_ref: ProviderRef,
    pub return_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedSession {
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    pub customer_ref: ProviderRef,
    pub amount: Decimal,
    pub currency: String,
    pub description: String,
    pub idempotency_key: String,
}

/// Gives back money taken by an earlier payment (a checkout or a charge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// The payment's ref: a checkout session's `provider_ref`, or the ref `charge` returned.
    pub payment_ref: ProviderRef,
    /// In major units, exact; at most what the payment took.
    pub amount: Decimal,
    pub currency: String,
    /// Why, for the provider's records ("checkout closed before the payment arrived").
    pub reason: String,
    pub idempotency_key: String,
}

/// What became of a payment. Anything not known to have failed is not `Failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    Succeeded {
        provider_ref: ProviderRef,
    },
    Pending {
        provider_ref: ProviderRef,
    },
    Failed {
        provider_ref: Option<ProviderRef>,
        reason: String,
    },
    Unknown {
        provider_ref: Option<ProviderRef>,
    },
}

/// What a webhook event tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderEventKind {
    /// A checkout session (its `object_ref` is `CheckoutSession::provider_ref`) settled:
    /// `outcome` says how (succeeded, failed, pending).
    Checkout,
    /// An off-session charge (`object_ref` is the ref `charge` returned) settled.
    Charge,
    /// The customer left a checkout through its page's cancel link (`object_ref`: the
    /// checkout session's ref); the server closes it before the browser reaches `cancel_url`.
    CheckoutAbandoned,
    /// A refund settled (`object_ref`: the ref `refund` returned).
    Refund,
    /// The customer's stored payment method was replaced (`object_ref`: the customer ref).
    PaymentMethodUpdated,
    /// Anything else the provider sends; acknowledged and ignored.
    Other(String),
}

/// A verified event from a provider's webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderEvent {
    /// Unique per provider: a duplicate delivery carries the same id.
    pub id: String,
    pub kind: ProviderEventKind,
    pub object_ref: ProviderRef,
    pub outcome: Option<PaymentOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider refused the request: {0}")]
    Rejected(String),
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("could not reach the provider: {0}")]
    Unreachable(String),
    #[error("the provider's answer could not be understood: {0}")]
    BadResponse(String),
    #[error("webhook signature missing or invalid")]
    BadSignature,
    #[error("provider configuration: {0}")]
    Config(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The configuration key, also stored on rows.
    fn name(&self) -> &'static str;
    async fn upsert_customer(&self, c: &CustomerInfo) -> Result<ProviderRef, ProviderError>;
    async fn start_checkout(&self, r: CheckoutRequest) -> Result<CheckoutSession, ProviderError>;
    async fn payment_details_session(
        &self,
        r: DetailsRequest,
    ) -> Result<HostedSession, ProviderError>;
    async fn charge(&self, r: ChargeRequest) -> Result<PaymentOutcome, ProviderError>;
    /// Several charges, answered in the order asked, each exactly as `charge` would answer
    /// it (a key asked twice is one charge). The default sends them one after another; a
    /// provider that takes them together overrides this and [`Self::charges_in_batches`].
    async fn charge_many(
        &self,
        requests: Vec<ChargeRequest>,
    ) -> Vec<Result<PaymentOutcome, ProviderError>> {
        let mut answers = Vec::with_capacity(requests.len());
        for r in requests {
            answers.push(self.charge(r).await);
        }
        answers
    }
    /// Whether [`Self::charge_many`] takes a batch in about the time of one charge: the
    /// caller then sends its charges in batches rather than many single ones at once.
    fn charges_in_batches(&self) -> bool {
        false
    }
    async fn payment_status(&self, provider_ref: &str) -> Result<PaymentOutcome, ProviderError>;
    /// Gives money back. Like `charge`: an answer that may not have reached the provider is
    /// `Unknown`, and the same idempotency key never refunds twice.
    async fn refund(&self, r: RefundRequest) -> Result<PaymentOutcome, ProviderError> {
        let _ = r;
        Err(ProviderError::Rejected(format!(
            "the {} provider cannot refund",
            self.name()
        )))
    }
    /// Closes a checkout session (expired, abandoned or replaced): its page takes no payment
    /// from now on and says so. Closing a closed or settled session changes nothing.
    async fn close_checkout(&self, provider_ref: &str) -> Result<(), ProviderError> {
        let _ = provider_ref;
        Ok(())
    }
    fn verify_webhook(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<ProviderEvent>, ProviderError>;
    /// Hosted pages and webhooks, mounted under `/providers/{name}`.
    fn routes(&self) -> Option<axum::Router> {
        None
    }
}

/// Where a provider's own pages hand the server what they learnt, at once and before the
/// browser moves on (the same events its webhooks carry; each is applied once by its id).
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn deliver(
        &self,
        provider: &'static str,
        events: Vec<ProviderEvent>,
    ) -> Result<(), ProviderError>;
}

/// The configured providers, by name.
#[derive(Clone, Default)]
pub struct Registry {
    providers: HashMap<&'static str, Arc<dyn PaymentProvider>>,
}

impl Registry {
    pub fn register(&mut self, provider: Arc<dyn PaymentProvider>) {
        self.providers.insert(provider.name(), provider);
    }

    /// A provider by name; an unknown name is a configuration error.
    pub fn get(&self, name: &str) -> Result<Arc<dyn PaymentProvider>, ProviderError> {
        self.providers
            .get(name)
            .cloned()
            .ok_or_else(|| ProviderError::Config(format!("unknown payment provider {name:?}")))
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.providers.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

pub mod stripe;
