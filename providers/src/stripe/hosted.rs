//! The hosted checkout and payment-details pages, and what our server does when Stripe.js
//! reports back. See the module docs of [`super`] for the flow; no card data passes here.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::header::{CACHE_CONTROL, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::transformers::{
    self as wire, Customer, Intent, IntentKind, PaymentIntent, PaymentIntentStatus, SetupIntent,
    SetupIntentStatus,
};
use super::{CallError, Inner, NAME, NO_FIELDS, pages, stripe_id};
use crate::{PaymentOutcome, ProviderError, ProviderEvent, ProviderEventKind};

type AppState = State<Arc<Inner>>;

/// Where a hosted page's intent stands, for the page.
pub(super) enum Stage {
    /// Waiting for a card; `error` says why the last one did not go through.
    Open { error: Option<String> },
    /// Our server paid with the collected card and the bank wants the customer to confirm
    /// (3-D Secure): Stripe.js does that with `confirmCardPayment`.
    Authenticate,
    /// Paid, saved, or in Stripe's hands (processing): nothing more to do here.
    Done,
    /// Cancelled: the checkout expired, was abandoned or replaced. It takes no payment.
    Closed,
}

pub(super) fn stage(intent: &Intent) -> Stage {
    match intent {
        Intent::Payment(pi) => match pi.status {
            PaymentIntentStatus::RequiresPaymentMethod => Stage::Open {
                error: pi.last_payment_error.as_ref().map(|e| e.reason()),
            },
            PaymentIntentStatus::RequiresConfirmation => Stage::Open { error: None },
            PaymentIntentStatus::RequiresAction => Stage::Authenticate,
            PaymentIntentStatus::Canceled => Stage::Closed,
            PaymentIntentStatus::Succeeded
            | PaymentIntentStatus::Processing
            | PaymentIntentStatus::RequiresCapture
            | PaymentIntentStatus::Unknown => Stage::Done,
        },
        Intent::Setup(si) => match si.status {
            SetupIntentStatus::RequiresPaymentMethod => Stage::Open {
                error: si.last_setup_error.as_ref().map(|e| e.reason()),
            },
            // Stripe.js finishes these in the browser; a new card starts over.
            SetupIntentStatus::RequiresConfirmation | SetupIntentStatus::RequiresAction => {
                Stage::Open { error: None }
            }
            SetupIntentStatus::Canceled => Stage::Closed,
            SetupIntentStatus::Succeeded
            | SetupIntentStatus::Processing
            | SetupIntentStatus::Unknown => Stage::Done,
        },
    }
}

/// What a page posts once Stripe.js has confirmed (or failed to confirm) an intent: that
/// intent's id and, when it failed, Stripe.js's message for the customer. No card data:
/// Stripe.js sent that to Stripe.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Confirmation {
    #[serde(default)]
    intent: String,
    #[serde(default)]
    message: String,
}

/// Why a posted confirmation could not be used.
enum Refusal {
    /// Not this page's intent, nor the card SetupIntent this page made.
    Foreign,
    /// Stripe could not be asked; nothing was paid.
    Unavailable(String),
    /// The payment was sent and its answer lost: whether money moved is not known yet.
    Unsure(String),
}

/// A card collected by a checkout's SetupIntent, as far as it got.
enum Collected {
    /// Saved; the PaymentIntent was then confirmed with it and now stands so.
    Paid(Box<PaymentIntent>),
    /// Stripe refused the card while saving it (`reason`), or the browser gave up before.
    Refused { reason: Option<String> },
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

    /// Cancels an open intent. A cancelled or settled one stays as it is.
    pub(super) async fn cancel_intent(&self, id: &str) -> Result<(), ProviderError> {
        let intent = self.api.retrieve_intent(id).await?;
        if matches!(stage(&intent), Stage::Done | Stage::Closed) {
            return Ok(());
        }
        let path = match intent {
            Intent::Payment(_) => format!("/v1/payment_intents/{id}/cancel"),
            Intent::Setup(_) => format!("/v1/setup_intents/{id}/cancel"),
        };
        match self
            .api
            .post::<serde_json::Value, _>(&path, &NO_FIELDS, None)
            .await
        {
            Ok(_) => Ok(()),
            // Settled or cancelled meanwhile (Stripe refuses to cancel those): fine.
            Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
                match stage(&self.api.retrieve_intent(id).await?) {
                    Stage::Done | Stage::Closed => Ok(()),
                    Stage::Open { .. } | Stage::Authenticate => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A SetupIntent for the browser to save the card that will pay `pi`.
    async fn card_setup(&self, pi: &PaymentIntent) -> Result<SetupIntent, String> {
        let customer = pi
            .customer
            .as_deref()
            .ok_or_else(|| format!("{} has no customer", pi.id))?;
        let form = wire::SetupIntentForm {
            customer,
            usage: "off_session",
            payment_method_types: "card",
            kind: IntentKind::CheckoutCard.as_str(),
            subscription_id: pi.metadata.get(wire::meta::SUBSCRIPTION_ID),
            description: None,
            success_url: None,
            cancel_url: None,
            return_url: None,
            payment_intent: Some(&pi.id),
            terms: None,
        };
        // Moves no money: one per page view, and an unused one is harmless.
        self.api
            .post("/v1/setup_intents", &form, None)
            .await
            .map_err(|e| e.to_string())
    }

    /// Pays `pi` with the card saved by `seti_id`, if that is the SetupIntent this page made
    /// for `pi`. The PaymentIntent is read back afterwards: it, not the answer to confirm,
    /// says where the payment stands.
    async fn pay_with_card(&self, pi: &PaymentIntent, seti_id: &str) -> Result<Collected, Refusal> {
        let Ok(seti_id) = stripe_id(seti_id, &["seti_"]) else {
            return Err(Refusal::Foreign);
        };
        let si: SetupIntent = match self.api.get(&format!("/v1/setup_intents/{seti_id}")).await {
            Ok(si) => si,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Err(Refusal::Foreign),
            Err(e) => return Err(Refusal::Unavailable(e.to_string())),
        };
        let ours = si.metadata.kind() == IntentKind::CheckoutCard
            && si.metadata.get(wire::meta::PAYMENT_INTENT) == Some(pi.id.as_str())
            && si.customer.is_some()
            && si.customer == pi.customer;
        if !ours {
            return Err(Refusal::Foreign);
        }
        let payment_method = match (si.status, si.payment_method.as_deref()) {
            (SetupIntentStatus::Succeeded, Some(pm)) if !pm.is_empty() => pm.to_owned(),
            // Declined while saving: Stripe keeps the error (localstripe cancels the intent).
            (SetupIntentStatus::Canceled, _) => {
                return Ok(Collected::Refused {
                    reason: Some(
                        si.last_setup_error
                            .as_ref()
                            .map_or_else(|| "Your card was declined.".to_owned(), |e| e.reason()),
                    ),
                });
            }
            _ => {
                return Ok(Collected::Refused {
                    reason: si.last_setup_error.as_ref().map(|e| e.reason()),
                });
            }
        };
        let customer = si.customer.as_deref().unwrap_or_default();
        self.ensure_attached(&payment_method, customer)
            .await
            .map_err(|e| match e {
                AttachError::Foreign => Refusal::Foreign,
                AttachError::Call(e) => Refusal::Unavailable(e.to_string()),
            })?;
        let path = format!("/v1/payment_intents/{}", pi.id);
        let form = wire::IntentPaymentMethodForm {
            payment_method: &payment_method,
        };
        if let Err(e) = self.api.post::<PaymentIntent, _>(&path, &form, None).await {
            return Err(Refusal::Unavailable(e.to_string()));
        }
        let key = format!("confirm-{}-{payment_method}", pi.id);
        let confirmed = self
            .api
            .post::<PaymentIntent, _>(&format!("{path}/confirm"), &NO_FIELDS, Some(&key))
            .await;
        match self.api.get::<PaymentIntent>(&path).await {
            Ok(now) => Ok(Collected::Paid(Box::new(now))),
            Err(e) => match confirmed {
                Ok(now) => Ok(Collected::Paid(Box::new(now))),
                // A decline, or a confirmation refused before anything was tried.
                Err(CallError::Status { status, .. }) if status.is_client_error() => {
                    Err(Refusal::Unavailable(e.to_string()))
                }
                Err(_) => Err(Refusal::Unsure(e.to_string())),
            },
        }
    }

    /// Attaches a card saved in the browser to the customer (Stripe does so already when the
    /// SetupIntent has a customer; localstripe does not). A card of another customer is not
    /// taken.
    async fn ensure_attached(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<(), AttachError> {
        let pm: wire::PaymentMethod = self
            .api
            .get(&format!("/v1/payment_methods/{payment_method}"))
            .await
            .map_err(AttachError::Call)?;
        match pm.customer.as_deref() {
            Some(c) if c == customer => Ok(()),
            Some(_) => Err(AttachError::Foreign),
            None => self
                .api
                .post::<wire::PaymentMethod, _>(
                    &format!("/v1/payment_methods/{payment_method}/attach"),
                    &wire::AttachForm { customer },
                    None,
                )
                .await
                .map(|_| ())
                .map_err(AttachError::Call),
        }
    }

    /// Makes a card that went through the customer's default for later charges (once: a
    /// replayed post changes nothing).
    async fn make_default(&self, intent: &Intent) {
        let (Some(customer), Some(payment_method)) = (intent.customer(), intent.payment_method())
        else {
            return;
        };
        match self
            .api
            .get::<Customer>(&format!("/v1/customers/{customer}"))
            .await
        {
            Ok(c) if c.default_payment_method() == Some(payment_method) => return,
            _ => {}
        }
        if let Err(e) = self.ensure_attached(payment_method, customer).await {
            let e = match e {
                AttachError::Foreign => "the card belongs to another customer".to_owned(),
                AttachError::Call(e) => e.to_string(),
            };
            tracing::warn!(customer, payment_method, error = %e, "stripe: could not keep the card");
            return;
        }
        let form = wire::DefaultPaymentMethodForm { payment_method };
        if let Err(e) = self
            .api
            .post::<Customer, _>(&format!("/v1/customers/{customer}"), &form, None)
            .await
        {
            // The card stays attached, and `charge` falls back to attached cards.
            tracing::warn!(customer, payment_method, error = %e,
                "stripe: could not make the new card the default");
        }
    }

    /// Hands events to the server at once. Without a sink (or when it fails) the webhook
    /// and the server's reconciler still tell it later.
    async fn deliver(&self, events: Vec<ProviderEvent>) {
        if events.is_empty() {
            return;
        }
        let Some(sink) = self.sink.get() else {
            tracing::debug!("stripe: no event sink set; the webhook will tell the server");
            return;
        };
        if let Err(e) = sink.deliver(NAME, events).await {
            tracing::warn!(error = %e, "stripe: the server did not take a page's events");
        }
    }

    /// Reports where a checkout's intent stands, when that is news: paid, in Stripe's hands,
    /// or failed. Ids are derived from the intent's state, so a replayed post reports nothing
    /// twice.
    async fn report_checkout(&self, kind: IntentKind, intent: &Intent) {
        if kind != IntentKind::Checkout {
            return;
        }
        let id = intent.id();
        let outcome = intent.outcome();
        let event_id = match (&outcome, intent) {
            (PaymentOutcome::Succeeded { .. }, _) => format!("page:{id}:succeeded"),
            (PaymentOutcome::Failed { reason, .. }, Intent::Payment(pi))
                if pi.status == PaymentIntentStatus::RequiresPaymentMethod =>
            {
                let attempt = pi
                    .last_payment_error
                    .as_ref()
                    .and_then(|e| e.charge.clone())
                    .unwrap_or_else(|| short_hash(reason));
                format!("page:{id}:failed:{attempt}")
            }
            (PaymentOutcome::Failed { reason, .. }, Intent::Setup(si))
                if si.status == SetupIntentStatus::RequiresPaymentMethod =>
            {
                format!("page:{id}:failed:{}", short_hash(reason))
            }
            (PaymentOutcome::Pending { .. }, Intent::Payment(pi))
                if pi.status == PaymentIntentStatus::Processing =>
            {
                format!("page:{id}:processing")
            }
            _ => return,
        };
        self.deliver(vec![ProviderEvent {
            id: event_id,
            kind: ProviderEventKind::Checkout,
            object_ref: id.to_owned(),
            outcome: Some(outcome),
        }])
        .await;
    }
}

enum AttachError {
    Foreign,
    Call(CallError),
}

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        IntentKind::Checkout
        | IntentKind::Charge
        | IntentKind::CheckoutCard
        | IntentKind::Other => (
            meta.get(wire::meta::SUCCESS_URL)?,
            meta.get(wire::meta::CANCEL_URL)?,
        ),
    };
    Some(Links {
        done: done.to_owned(),
        back: back.to_owned(),
    })
}

/// The page with Stripe.js's card element (or, for `Stage::Authenticate`, the bank's
/// confirmation). A paying checkout first gets a SetupIntent of its own for the card.
async fn render(
    inner: &Inner,
    intent: &Intent,
    kind: IntentKind,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let id = intent.id();
    let authenticate = matches!(stage(intent), Stage::Authenticate);
    let card_setup = match intent {
        Intent::Payment(pi) if !authenticate => match inner.card_setup(pi).await {
            Ok(si) => Some(si),
            Err(e) => {
                tracing::warn!(intent = id, error = %e, "stripe: could not open a card form");
                return unavailable();
            }
        },
        _ => None,
    };
    // The intent Stripe.js confirms, and its client secret.
    let (confirm_id, secret) = match &card_setup {
        Some(si) => (si.id.as_str(), si.client_secret.as_deref()),
        None => (id, intent.client_secret()),
    };
    let Some(secret) = secret else {
        tracing::warn!(
            intent = confirm_id,
            "stripe: the intent came without a client secret"
        );
        return unavailable();
    };
    let back = links(intent, kind).map(|l| l.back).unwrap_or_default();
    let cancel_action = format!("{id}/cancel");
    let description = intent
        .metadata()
        .get(wire::meta::DESCRIPTION)
        .filter(|d| !d.is_empty());
    let terms = intent
        .metadata()
        .get(wire::meta::TERMS)
        .filter(|t| !t.is_empty());
    let amount = match intent {
        Intent::Payment(pi) => Some(format!(
            "{} {}",
            wire::from_minor_units(pi.amount, &pi.currency),
            pi.currency.to_ascii_uppercase()
        )),
        Intent::Setup(_) => None,
    };
    let button = match (&amount, authenticate) {
        (_, true) => "Confirm with my bank".to_owned(),
        (Some(a), false) => format!("Pay {a}"),
        (None, false) => "Save card".to_owned(),
    };
    let stripe = pages::StripeJs {
        js_url: &inner.js_url,
        publishable_key: &inner.publishable_key,
        client_secret: secret,
        intent: confirm_id,
        mode: if authenticate {
            pages::Mode::Authenticate
        } else {
            pages::Mode::Setup
        },
        test_mode: inner.publishable_key.starts_with("pk_test_"),
    };
    let view = match kind {
        IntentKind::PaymentDetails => pages::FormView {
            title: "Update payment details",
            heading: "Update your payment details",
            amount: None,
            terms: None,
            note: Some("The new card replaces the one on file. Nothing is charged now."),
            action: id,
            button: &button,
            leave: pages::Leave::Link {
                href: &back,
                label: "Keep my current card",
            },
        },
        IntentKind::Checkout
        | IntentKind::Charge
        | IntentKind::CheckoutCard
        | IntentKind::Other => pages::FormView {
            title: "Checkout",
            heading: description.unwrap_or("Payment"),
            amount: amount.as_deref(),
            terms,
            note: if authenticate {
                Some("Your bank asks you to confirm this payment.")
            } else if amount.is_none() {
                Some("Nothing is charged today: your card is saved for later payments.")
            } else {
                None
            },
            action: id,
            button: &button,
            leave: pages::Leave::Post {
                action: &cancel_action,
                label: "Cancel and go back",
            },
        },
    };
    page(status, pages::payment_form(&view, &stripe, error))
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

fn unsure(done: &str) -> Response {
    page(
        StatusCode::BAD_GATEWAY,
        pages::message(
            "Checking your payment",
            "The payment service did not confirm your payment in time. Do not pay again: we \
             will know in a few minutes whether it went through.",
            false,
            Some(done),
            "Continue",
        ),
    )
}

fn closed(kind: IntentKind, back: &str) -> Response {
    let (title, text) = match kind {
        IntentKind::PaymentDetails => (
            "This page is closed",
            "This payment-details page is no longer open. Your card on file is unchanged.",
        ),
        _ => (
            "This checkout is closed",
            "This checkout is no longer open: it expired, was cancelled, or a newer one \
             replaced it. Nothing has been charged.",
        ),
    };
    page(
        StatusCode::OK,
        pages::message(title, text, false, Some(back), "Go back"),
    )
}

fn foreign(page_id: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        pages::message(
            "Not this payment",
            "What was sent does not belong to this payment page, so nothing was done. \
             Nothing has been charged.",
            false,
            Some(page_id),
            "Back to the payment page",
        ),
    )
}

fn done_page(intent: &Intent, kind: IntentKind, done: &str) -> Response {
    let (title, text) = match (intent, kind) {
        (_, IntentKind::PaymentDetails) => ("Card saved", "Your new card is saved."),
        (Intent::Setup(_), _) => ("Card saved", "Your card is saved."),
        (Intent::Payment(_), _) => ("Payment received", "Thank you: your payment went through."),
    };
    page(
        StatusCode::OK,
        pages::message(title, text, true, Some(done), "Continue"),
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
    match stage(&intent) {
        Stage::Open { error } => {
            render(inner, &intent, kind, error.as_deref(), StatusCode::OK).await
        }
        Stage::Authenticate => render(inner, &intent, kind, None, StatusCode::OK).await,
        Stage::Done => {
            // Reported again in case the first report was lost; applied once by its id.
            inner.report_checkout(kind, &intent).await;
            done_page(&intent, kind, &links.done)
        }
        Stage::Closed => closed(kind, &links.back),
    }
}

/// After Stripe.js: look the intent up at once, tell the server, then send the browser on.
async fn submit(inner: &Inner, id: &str, kind: IntentKind, form: &Confirmation) -> Response {
    let intent = match inner.page_intent(id, kind).await {
        Ok(intent) => intent,
        Err(response) => return response,
    };
    let Some(links) = links(&intent, kind) else {
        return not_found();
    };
    match stage(&intent) {
        // Saved by Stripe.js just now, or paid already (a second click, a replayed post):
        // nothing is paid again.
        Stage::Done => {
            inner.make_default(&intent).await;
            inner.report_checkout(kind, &intent).await;
            return see_other(&links.done);
        }
        Stage::Closed => return closed(kind, &links.back),
        Stage::Open { .. } | Stage::Authenticate => {}
    }
    let browser_message = Some(form.message.trim())
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(300).collect::<String>());
    // This page's own intent, confirmed by Stripe.js (a SetupIntent, or a payment the bank
    // wanted confirmed), is as retrieved above; else it is the card this page collected.
    let now = if form.intent == id {
        intent
    } else {
        match &intent {
            Intent::Payment(pi) => match inner.pay_with_card(pi, &form.intent).await {
                Ok(Collected::Paid(now)) => Intent::Payment(*now),
                Ok(Collected::Refused { reason }) => {
                    let shown = browser_message
                        .or_else(|| reason.clone())
                        .unwrap_or_else(|| "The card was not accepted.".to_owned());
                    if let Some(reason) = reason {
                        // Declined while being saved: a failed payment for the checkout.
                        inner
                            .deliver(vec![ProviderEvent {
                                id: format!("page:{}:declined", form.intent),
                                kind: ProviderEventKind::Checkout,
                                object_ref: pi.id.clone(),
                                outcome: Some(PaymentOutcome::Failed {
                                    provider_ref: Some(pi.id.clone()),
                                    reason,
                                }),
                            }])
                            .await;
                    }
                    let message = format!("{shown} Try another card.");
                    return render(
                        inner,
                        &intent,
                        kind,
                        Some(&message),
                        StatusCode::PAYMENT_REQUIRED,
                    )
                    .await;
                }
                Err(Refusal::Foreign) => return foreign(id),
                Err(Refusal::Unavailable(e)) => {
                    tracing::warn!(intent = id, error = %e, "stripe: a hosted page could not pay");
                    return unavailable();
                }
                Err(Refusal::Unsure(e)) => {
                    tracing::warn!(intent = id, error = %e, "stripe: a payment's answer was lost");
                    return unsure(&links.done);
                }
            },
            Intent::Setup(_) => return foreign(id),
        }
    };
    if matches!(stage(&now), Stage::Done) {
        inner.make_default(&now).await;
    }
    inner.report_checkout(kind, &now).await;
    match stage(&now) {
        Stage::Done => see_other(&links.done),
        Stage::Closed => closed(kind, &links.back),
        Stage::Authenticate => render(inner, &now, kind, None, StatusCode::OK).await,
        Stage::Open { error } => {
            let declined = error.is_some();
            let message = error
                .or(browser_message)
                .unwrap_or_else(|| "The card was not accepted.".to_owned());
            let message = format!("{message} Try another card.");
            let status = if declined {
                StatusCode::PAYMENT_REQUIRED
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            render(inner, &now, kind, Some(&message), status).await
        }
    }
}

pub(super) async fn checkout_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    show(&inner, &id, IntentKind::Checkout).await
}

pub(super) async fn checkout_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<Confirmation>,
) -> Response {
    submit(&inner, &id, IntentKind::Checkout, &form).await
}

/// The page's cancel button: the intent is cancelled and the server told, before the
/// browser reaches `cancel_url`.
pub(super) async fn checkout_cancel(State(inner): AppState, Path(id): Path<String>) -> Response {
    let intent = match inner.page_intent(&id, IntentKind::Checkout).await {
        Ok(intent) => intent,
        Err(response) => return response,
    };
    let Some(links) = links(&intent, IntentKind::Checkout) else {
        return not_found();
    };
    if matches!(stage(&intent), Stage::Done) {
        return see_other(&links.done);
    }
    if let Err(e) = inner.cancel_intent(&id).await {
        // The server closes the checkout on the report below, and closing cancels again.
        tracing::warn!(intent = id, error = %e, "stripe: could not cancel a checkout");
    }
    inner
        .deliver(vec![ProviderEvent {
            id: format!("page:{id}:abandoned"),
            kind: ProviderEventKind::CheckoutAbandoned,
            object_ref: id.clone(),
            outcome: None,
        }])
        .await;
    see_other(&links.back)
}

pub(super) async fn details_page(State(inner): AppState, Path(id): Path<String>) -> Response {
    show(&inner, &id, IntentKind::PaymentDetails).await
}

pub(super) async fn details_submit(
    State(inner): AppState,
    Path(id): Path<String>,
    Form(form): Form<Confirmation>,
) -> Response {
    submit(&inner, &id, IntentKind::PaymentDetails, &form).await
}
