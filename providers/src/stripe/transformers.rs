//! Stripe's wire types: the form bodies we send, the JSON objects we read back, and the
//! exhaustive mappings from Stripe's statuses to ours. No I/O here; the flow lives in
//! `mod.rs`.
//!
//! Requests are `application/x-www-form-urlencoded` with Stripe's bracketed keys
//! (`metadata[subscription_id]`), written as serde renames so each request is one plain
//! struct. Responses deserialize only the fields we use; everything else is ignored, and a
//! status we do not know becomes `Unknown`, which maps to *pending* (ask again later),
//! never to *failed*.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use crate::PaymentOutcome;

// --- money ----------------------------------------------------------------------------------

/// Digits after the decimal point in a currency's smallest unit, as Stripe counts them.
pub fn currency_exponent(currency: &str) -> u32 {
    match currency.to_ascii_uppercase().as_str() {
        // Stripe's zero-decimal currencies.
        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        // Three-decimal currencies (ISO 4217).
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A currency code as Stripe wants it (`usd`), or why it is not one.
pub fn currency_code(currency: &str) -> Result<String, String> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(currency.to_ascii_lowercase())
    } else {
        Err(format!("{currency:?} is not a three-letter currency code"))
    }
}

/// `12.50 USD` → `1250`; `500 JPY` → `500`; `1.234 KWD` → `1234`. Refuses negative amounts
/// and amounts finer than the currency's smallest unit (never rounds money).
pub fn to_minor_units(amount: Decimal, currency: &str) -> Result<i64, String> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(format!("negative amount {amount}"));
    }
    let exponent = currency_exponent(currency);
    let scaled = Decimal::from(10i64.pow(exponent))
        .checked_mul(amount)
        .ok_or_else(|| format!("amount {amount} is too large"))?;
    if !scaled.fract().is_zero() {
        return Err(format!(
            "amount {amount} has more than {exponent} decimals, the most {} allows",
            currency.to_ascii_uppercase()
        ));
    }
    scaled
        .trunc()
        .to_i64()
        .ok_or_else(|| format!("amount {amount} is too large"))
}

/// `1250`, `usd` → `12.50`.
pub fn from_minor_units(amount: i64, currency: &str) -> Decimal {
    Decimal::new(amount, currency_exponent(currency))
}

// --- metadata -------------------------------------------------------------------------------

/// Metadata keys we set on Stripe objects.
pub mod meta {
    pub const KIND: &str = "kind";
    pub const CUSTOMER_ID: &str = "customer_id";
    pub const SUBSCRIPTION_ID: &str = "subscription_id";
    pub const DESCRIPTION: &str = "description";
    /// Merchant, plan and what follows the first payment, as the page shows them.
    pub const TERMS: &str = "terms";
    pub const SUCCESS_URL: &str = "success_url";
    pub const CANCEL_URL: &str = "cancel_url";
    pub const RETURN_URL: &str = "return_url";
    /// On a checkout's card-collecting SetupIntent: the PaymentIntent it pays.
    pub const PAYMENT_INTENT: &str = "payment_intent";
    /// On a refund: why we gave the money back.
    pub const REASON: &str = "reason";
}

/// What we created an intent for (`metadata[kind]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentKind {
    /// The first payment (PaymentIntent) or card setup (SetupIntent) of a hosted checkout.
    Checkout,
    /// An off-session PaymentIntent made by `charge`.
    Charge,
    /// A SetupIntent behind a payment-details page.
    PaymentDetails,
    /// A SetupIntent a checkout page confirms in the browser to collect the card that then
    /// pays the checkout's PaymentIntent (`metadata[payment_intent]`).
    CheckoutCard,
    /// Not ours, or made before we tagged intents.
    Other,
}

impl IntentKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            IntentKind::Checkout => "checkout",
            IntentKind::Charge => "charge",
            IntentKind::PaymentDetails => "payment_details",
            IntentKind::CheckoutCard => "checkout_card",
            IntentKind::Other => "other",
        }
    }

    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("checkout") => IntentKind::Checkout,
            Some("charge") => IntentKind::Charge,
            Some("payment_details") => IntentKind::PaymentDetails,
            Some("checkout_card") => IntentKind::CheckoutCard,
            _ => IntentKind::Other,
        }
    }
}

/// Stripe metadata: string values; a missing or `null` map is empty.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Metadata(Option<HashMap<String, String>>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    pub fn kind(&self) -> IntentKind {
        IntentKind::parse(self.get(meta::KIND))
    }
}

// --- requests -------------------------------------------------------------------------------

/// `POST /v1/customers` and `POST /v1/customers/{id}`.
#[derive(Debug, Serialize)]
pub struct CustomerForm<'a> {
    pub name: &'a str,
    pub email: &'a str,
    /// On update, `Some("")` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<&'a str>,
    #[serde(rename = "metadata[customer_id]")]
    pub customer_id: &'a str,
}

/// `POST /v1/customers/{id}` making a payment method the default for later charges.
#[derive(Debug, Serialize)]
pub struct DefaultPaymentMethodForm<'a> {
    #[serde(rename = "invoice_settings[default_payment_method]")]
    pub payment_method: &'a str,
}

/// `POST /v1/payment_intents` for a hosted checkout's first payment. Confirmed later by the
/// hosted page.
///
/// The description travels in metadata and `setup_future_usage` in
/// `payment_method_options[card]`: both work on Stripe, and localstripe refuses the
/// top-level `description` and `setup_future_usage` parameters.
#[derive(Debug, Serialize)]
pub struct CheckoutIntentForm<'a> {
    pub amount: i64,
    pub currency: &'a str,
    pub customer: &'a str,
    #[serde(rename = "payment_method_types[]")]
    pub payment_method_types: &'static str,
    #[serde(rename = "payment_method_options[card][setup_future_usage]")]
    pub setup_future_usage: &'static str,
    #[serde(rename = "metadata[kind]")]
    pub kind: &'static str,
    #[serde(rename = "metadata[subscription_id]")]
    pub subscription_id: &'a str,
    #[serde(rename = "metadata[description]")]
    pub description: &'a str,
    #[serde(rename = "metadata[success_url]")]
    pub success_url: &'a str,
    #[serde(rename = "metadata[cancel_url]")]
    pub cancel_url: &'a str,
    #[serde(rename = "metadata[terms]", skip_serializing_if = "Option::is_none")]
    pub terms: Option<&'a str>,
}

/// `POST /v1/setup_intents`: a zero-amount checkout, a payment-details page, or the card
/// collection of a paying checkout.
#[derive(Debug, Serialize)]
pub struct SetupIntentForm<'a> {
    pub customer: &'a str,
    pub usage: &'static str,
    #[serde(rename = "payment_method_types[]")]
    pub payment_method_types: &'static str,
    #[serde(rename = "metadata[kind]")]
    pub kind: &'static str,
    #[serde(
        rename = "metadata[subscription_id]",
        skip_serializing_if = "Option::is_none"
    )]
    pub subscription_id: Option<&'a str>,
    #[serde(
        rename = "metadata[description]",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<&'a str>,
    #[serde(
        rename = "metadata[success_url]",
        skip_serializing_if = "Option::is_none"
    )]
    pub success_url: Option<&'a str>,
    #[serde(
        rename = "metadata[cancel_url]",
        skip_serializing_if = "Option::is_none"
    )]
    pub cancel_url: Option<&'a str>,
    #[serde(
        rename = "metadata[return_url]",
        skip_serializing_if = "Option::is_none"
    )]
    pub return_url: Option<&'a str>,
    #[serde(
        rename = "metadata[payment_intent]",
        skip_serializing_if = "Option::is_none"
    )]
    pub payment_intent: Option<&'a str>,
    #[serde(rename = "metadata[terms]", skip_serializing_if = "Option::is_none")]
    pub terms: Option<&'a str>,
}

/// `POST /v1/payment_intents`, confirmed at once and off-session: a charge of the card on
/// file.
#[derive(Debug, Serialize)]
pub struct ChargeIntentForm<'a> {
    pub amount: i64,
    pub currency: &'a str,
    pub customer: &'a str,
    pub payment_method: &'a str,
    /// Cards only: also spares the `return_url` that confirming with automatic payment
    /// methods would need.
    #[serde(rename = "payment_method_types[]")]
    pub payment_method_types: &'static str,
    pub confirm: bool,
    pub off_session: bool,
    #[serde(rename = "metadata[kind]")]
    pub kind: &'static str,
    #[serde(rename = "metadata[description]")]
    pub description: &'a str,
}

/// `POST /v1/payment_methods/{id}/attach`.
#[derive(Debug, Serialize)]
pub struct AttachForm<'a> {
    pub customer: &'a str,
}

/// `POST /v1/payment_intents/{id}`: sets the card a checkout page collected before our
/// server confirms the payment. (Stripe also takes it on `/confirm`; localstripe does not.)
#[derive(Debug, Serialize)]
pub struct IntentPaymentMethodForm<'a> {
    pub payment_method: &'a str,
}

/// `POST /v1/refunds`: gives back (part of) what a PaymentIntent took.
///
/// Stripe's own `reason` takes only a few fixed words; ours travels in metadata.
#[derive(Debug, Serialize)]
pub struct RefundForm<'a> {
    pub payment_intent: &'a str,
    pub amount: i64,
    #[serde(rename = "metadata[kind]")]
    pub kind: &'static str,
    #[serde(rename = "metadata[reason]")]
    pub reason: &'a str,
}

/// `GET /v1/payment_methods?customer=…&type=card&limit=1`.
#[derive(Debug, Serialize)]
pub struct ListPaymentMethodsQuery<'a> {
    pub customer: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub limit: u32,
}

// --- responses ------------------------------------------------------------------------------

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    pub id: String,
    #[serde(default)]
    pub invoice_settings: Option<InvoiceSettings>,
}

impl Customer {
    pub fn default_payment_method(&self) -> Option<&str> {
        self.invoice_settings
            .as_ref()?
            .default_payment_method
            .as_deref()
            .filter(|s| !s.is_empty())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InvoiceSettings {
    #[serde(default)]
    pub default_payment_method: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    #[serde(default)]
    pub customer: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

/// Why the last attempt failed (`last_payment_error`, `last_setup_error`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LastError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// The failed attempt's charge, when there was one.
    #[serde(default)]
    pub charge: Option<String>,
}

impl LastError {
    pub fn reason(&self) -> String {
        self.message
            .clone()
            .or_else(|| self.decline_code.clone())
            .or_else(|| self.code.clone())
            .unwrap_or_else(|| "payment failed".to_owned())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: PaymentIntentStatus,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
    /// What Stripe.js needs to confirm the intent in the browser; never logged.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub last_payment_error: Option<LastError>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetupIntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    Canceled,
    Succeeded,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SetupIntent {
    pub id: String,
    pub status: SetupIntentStatus,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub last_setup_error: Option<LastError>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
}

/// What a hosted page's intent is: a payment or a card setup.
#[derive(Clone, Debug)]
pub enum Intent {
    Payment(PaymentIntent),
    Setup(SetupIntent),
}

impl Intent {
    pub fn id(&self) -> &str {
        match self {
            Intent::Payment(pi) => &pi.id,
            Intent::Setup(si) => &si.id,
        }
    }

    pub fn customer(&self) -> Option<&str> {
        match self {
            Intent::Payment(pi) => pi.customer.as_deref(),
            Intent::Setup(si) => si.customer.as_deref(),
        }
    }

    pub fn metadata(&self) -> &Metadata {
        match self {
            Intent::Payment(pi) => &pi.metadata,
            Intent::Setup(si) => &si.metadata,
        }
    }

    pub fn client_secret(&self) -> Option<&str> {
        match self {
            Intent::Payment(pi) => pi.client_secret.as_deref(),
            Intent::Setup(si) => si.client_secret.as_deref(),
        }
    }

    pub fn payment_method(&self) -> Option<&str> {
        match self {
            Intent::Payment(pi) => pi.payment_method.as_deref(),
            Intent::Setup(si) => si.payment_method.as_deref(),
        }
        .filter(|pm| !pm.is_empty())
    }

    pub fn outcome(&self) -> PaymentOutcome {
        match self {
            Intent::Payment(pi) => pi.into(),
            Intent::Setup(si) => si.into(),
        }
    }
}

/// Stripe's error body: `{"error": {"type": …, "code": …, "message": …}}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ApiError,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ApiError {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    /// Set on card errors from PaymentIntent calls.
    #[serde(default)]
    pub payment_intent: Option<IdOnly>,
}

impl ApiError {
    pub fn reason(&self) -> String {
        self.message
            .clone()
            .or_else(|| self.decline_code.clone())
            .or_else(|| self.code.clone())
            .or_else(|| self.kind.clone())
            .unwrap_or_else(|| "no reason given".to_owned())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct IdOnly {
    pub id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Canceled,
    #[serde(other)]
    Unknown,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Refund {
    pub id: String,
    pub status: RefundStatus,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

// --- webhooks -------------------------------------------------------------------------------

/// A webhook event. `data.object` is decoded by its `object` field into [`EventObject`].
#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
    /// On `*.updated` events (Stripe sends it; localstripe does not).
    #[serde(default)]
    pub previous_attributes: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "object", rename_all = "snake_case")]
pub enum EventObject {
    PaymentIntent(PaymentIntent),
    SetupIntent(SetupIntent),
    PaymentMethod(PaymentMethod),
    Customer(Customer),
    Refund(Refund),
    #[serde(other)]
    Other,
}

// --- statuses → outcomes --------------------------------------------------------------------

impl From<&PaymentIntent> for PaymentOutcome {
    fn from(pi: &PaymentIntent) -> Self {
        let provider_ref = pi.id.clone();
        match pi.status {
            PaymentIntentStatus::Succeeded => PaymentOutcome::Succeeded { provider_ref },
            PaymentIntentStatus::Processing
            | PaymentIntentStatus::RequiresAction
            | PaymentIntentStatus::RequiresConfirmation
            | PaymentIntentStatus::RequiresCapture
            // A status we do not know yet: ask again later.
            | PaymentIntentStatus::Unknown => PaymentOutcome::Pending { provider_ref },
            // Back to "requires a payment method" after an attempt failed: failed. Without
            // an error it is a checkout nobody has paid yet: still pending.
            PaymentIntentStatus::RequiresPaymentMethod => match &pi.last_payment_error {
                Some(e) => PaymentOutcome::Failed {
                    provider_ref: Some(provider_ref),
                    reason: e.reason(),
                },
                None => PaymentOutcome::Pending { provider_ref },
            },
            PaymentIntentStatus::Canceled => PaymentOutcome::Failed {
                provider_ref: Some(provider_ref),
                reason: canceled_reason(pi.cancellation_reason.as_deref()),
            },
        }
    }
}

impl From<&SetupIntent> for PaymentOutcome {
    fn from(si: &SetupIntent) -> Self {
        let provider_ref = si.id.clone();
        match si.status {
            SetupIntentStatus::Succeeded => PaymentOutcome::Succeeded { provider_ref },
            SetupIntentStatus::Processing
            | SetupIntentStatus::RequiresAction
            | SetupIntentStatus::RequiresConfirmation
            | SetupIntentStatus::Unknown => PaymentOutcome::Pending { provider_ref },
            SetupIntentStatus::RequiresPaymentMethod => match &si.last_setup_error {
                Some(e) => PaymentOutcome::Failed {
                    provider_ref: Some(provider_ref),
                    reason: e.reason(),
                },
                None => PaymentOutcome::Pending { provider_ref },
            },
            SetupIntentStatus::Canceled => PaymentOutcome::Failed {
                provider_ref: Some(provider_ref),
                reason: canceled_reason(si.cancellation_reason.as_deref()),
            },
        }
    }
}

impl From<&Refund> for PaymentOutcome {
    fn from(r: &Refund) -> Self {
        let provider_ref = r.id.clone();
        match r.status {
            RefundStatus::Succeeded => PaymentOutcome::Succeeded { provider_ref },
            RefundStatus::Pending | RefundStatus::RequiresAction | RefundStatus::Unknown => {
                PaymentOutcome::Pending { provider_ref }
            }
            RefundStatus::Failed | RefundStatus::Canceled => PaymentOutcome::Failed {
                provider_ref: Some(provider_ref),
                reason: r
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| "the refund did not go through".to_owned()),
            },
        }
    }
}

fn canceled_reason(reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("canceled ({r})"),
        None => "canceled".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn amounts_use_the_currency_exponent_and_never_round() {
        assert_eq!(to_minor_units(dec!(12.50), "USD"), Ok(1250));
        assert_eq!(to_minor_units(dec!(12.5), "eur"), Ok(1250));
        assert_eq!(to_minor_units(dec!(500), "JPY"), Ok(500));
        assert_eq!(to_minor_units(dec!(1.234), "KWD"), Ok(1234));
        assert_eq!(to_minor_units(dec!(0), "usd"), Ok(0));
        assert!(to_minor_units(dec!(1.5), "JPY").is_err());
        assert!(to_minor_units(dec!(0.001), "USD").is_err());
        assert!(to_minor_units(dec!(-1), "USD").is_err());
        assert_eq!(from_minor_units(1250, "usd"), dec!(12.50));
        assert_eq!(from_minor_units(1234, "bhd"), dec!(1.234));
        assert_eq!(from_minor_units(500, "jpy"), dec!(500));
        assert_eq!(currency_code("EUR").as_deref(), Ok("eur"));
        assert!(currency_code("EURO").is_err());
        assert!(currency_code("e/r").is_err());
    }

    #[test]
    fn forms_use_stripes_bracketed_keys() {
        let form = SetupIntentForm {
            customer: "cus_1",
            usage: "off_session",
            payment_method_types: "card",
            kind: IntentKind::PaymentDetails.as_str(),
            subscription_id: None,
            description: None,
            success_url: None,
            cancel_url: None,
            return_url: Some("https://x/y?a=1&b=2"),
            payment_intent: None,
            terms: None,
        };
        let request = reqwest::Client::new()
            .post("http://127.0.0.1/")
            .form(&form)
            .build()
            .unwrap();
        let body = std::str::from_utf8(request.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(
            body,
            "customer=cus_1&usage=off_session&payment_method_types%5B%5D=card&\
             metadata%5Bkind%5D=payment_details&\
             metadata%5Breturn_url%5D=https%3A%2F%2Fx%2Fy%3Fa%3D1%26b%3D2"
        );
    }

    fn pi(status: &str, error: Option<&str>) -> PaymentIntent {
        let mut v = serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "status": status,
            "amount": 100, "currency": "usd", "metadata": null,
        });
        if let Some(e) = error {
            v["last_payment_error"] = serde_json::json!({"message": e});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn payment_intent_statuses_map_exhaustively_and_unknown_is_never_failed() {
        let ok = |p: &str| PaymentOutcome::Succeeded {
            provider_ref: p.into(),
        };
        let pending = |p: &str| PaymentOutcome::Pending {
            provider_ref: p.into(),
        };
        assert_eq!(PaymentOutcome::from(&pi("succeeded", None)), ok("pi_1"));
        for s in [
            "processing",
            "requires_action",
            "requires_confirmation",
            "requires_capture",
            "some_status_from_the_future",
            "requires_payment_method",
        ] {
            assert_eq!(PaymentOutcome::from(&pi(s, None)), pending("pi_1"), "{s}");
        }
        assert_eq!(
            PaymentOutcome::from(&pi(
                "requires_payment_method",
                Some("Your card was declined.")
            )),
            PaymentOutcome::Failed {
                provider_ref: Some("pi_1".into()),
                reason: "Your card was declined.".into()
            }
        );
        assert!(matches!(
            PaymentOutcome::from(&pi("canceled", None)),
            PaymentOutcome::Failed { .. }
        ));
    }

    #[test]
    fn event_objects_are_told_apart_by_their_object_field() {
        let v = serde_json::json!({"object": "customer", "id": "cus_1",
            "invoice_settings": {"default_payment_method": "pm_1"}});
        match serde_json::from_value::<EventObject>(v).unwrap() {
            EventObject::Customer(c) => assert_eq!(c.default_payment_method(), Some("pm_1")),
            other => panic!("{other:?}"),
        }
        let v = serde_json::json!({"object": "invoice", "id": "in_1"});
        assert!(matches!(
            serde_json::from_value::<EventObject>(v).unwrap(),
            EventObject::Other
        ));
    }
}
