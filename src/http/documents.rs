//! Customer-facing documents: an issued invoice's printable page and its PDF, behind
//! signed links. A missing or wrong signature is refused (403) with a page that says
//! nothing about the invoice, whether or not it exists.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::billing::BillingError;
use crate::billing::documents::{PageError, html, pdf};

#[derive(Deserialize)]
pub struct Signed {
    sig: Option<String>,
}

/// Headers every customer-facing page carries: not cached by shared caches, not framed,
/// and the signed address not passed on to other sites.
const PRIVATE: [(header::HeaderName, &str); 3] = [
    (header::CACHE_CONTROL, "private, no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The answer for a page that is not shown.
pub fn refused(e: &PageError) -> Response {
    let (status, title, message) = match e {
        PageError::Refused => (
            StatusCode::FORBIDDEN,
            "Link not valid",
            "This link is not valid. Ask for a new one.",
        ),
        PageError::Expired => (
            StatusCode::GONE,
            "Link expired",
            "This link has expired. Open the page again from the application to get a new one.",
        ),
        PageError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is nothing here."),
        PageError::Billing(BillingError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "Not found", "There is nothing here.")
        }
        PageError::Billing(err)
            if !matches!(err, BillingError::Db(_) | BillingError::Provider(_)) =>
        {
            let message = err.to_string();
            return (
                StatusCode::CONFLICT,
                PRIVATE,
                Html(html::refusal("That could not be done", &message)),
            )
                .into_response();
        }
        PageError::Billing(err) => {
            tracing::error!(error = %err, "customer page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again in a moment.",
            )
        }
    };
    (status, PRIVATE, Html(html::refusal(title, message))).into_response()
}

fn parse_id(id: &str) -> Result<Uuid, PageError> {
    // A malformed id is refused like a bad signature: nothing to learn from the answer.
    Uuid::parse_str(id).map_err(|_| PageError::Refused)
}

pub async fn invoice_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let doc = match parse_id(&id) {
        Ok(id) => state.billing.invoice_document(id, q.sig.as_deref()).await,
        Err(e) => Err(e),
    };
    match doc {
        Ok(doc) => (PRIVATE, Html(html::invoice_page(&doc))).into_response(),
        Err(e) => refused(&e),
    }
}

pub async fn invoice_pdf(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let doc = match parse_id(&id) {
        Ok(id) => state.billing.invoice_document(id, q.sig.as_deref()).await,
        Err(e) => Err(e),
    };
    match doc {
        Ok(doc) => {
            let disposition = format!("inline; filename=\"{}.pdf\"", doc.number);
            (
                PRIVATE,
                [
                    (header::CONTENT_TYPE, "application/pdf".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                pdf::invoice_pdf(&doc),
            )
                .into_response()
        }
        Err(e) => refused(&e),
    }
}
