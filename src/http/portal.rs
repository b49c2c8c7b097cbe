//! The customer portal's pages. The signed link is the session: every page and form
//! carries it, and each request checks it (403 forged, 410 expired) before anything is
//! read or changed.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use super::documents::refused;
use crate::billing::documents::{PageError, html};
use crate::billing::portal::{CancelOutcome, PortalLink};

#[derive(Deserialize)]
pub struct Signed {
    exp: Option<i64>,
    ret: Option<String>,
    sig: Option<String>,
    notice: Option<String>,
}

const PRIVATE: [(header::HeaderName, &str); 3] = [
    (header::CACHE_CONTROL, "private, no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

fn link(id: &str, q: &Signed) -> Result<PortalLink, PageError> {
    match (Uuid::parse_str(id), q.exp, &q.ret) {
        (Ok(customer_id), Some(expires), Some(ret)) => Ok(PortalLink {
            customer_id,
            expires,
            return_url: ret.clone(),
        }),
        _ => Err(PageError::Refused),
    }
}

fn query(l: &PortalLink, sig: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("exp", &l.expires.to_string())
        .append_pair("ret", &l.return_url)
        .append_pair("sig", sig)
        .finish()
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, PRIVATE, [(header::LOCATION, to)]).into_response()
}

pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let l = match link(&id, &q) {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    match state.billing.portal_view(&l, q.sig.as_deref()).await {
        Ok(view) => {
            let notice = q.notice.as_deref().and_then(html::portal_notice);
            let body = html::portal_page(
                &view,
                l.customer_id,
                &query(&l, q.sig.as_deref().unwrap_or_default()),
                notice,
            );
            (PRIVATE, Html(body)).into_response()
        }
        Err(e) => refused(&e),
    }
}

/// "Cancel at period end": then back to the portal, which says what happened (pressing
/// it twice changes nothing more).
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let l = match link(&id, &q) {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    match state.billing.portal_cancel(&l, q.sig.as_deref()).await {
        Ok(outcome) => {
            let notice = match outcome {
                CancelOutcome::Scheduled => "canceled",
                CancelOutcome::AlreadyScheduled => "already",
            };
            let back = format!("{}&notice={notice}", state.billing.portal_url(&l));
            see_other(&back)
        }
        Err(e) => refused(&e),
    }
}

/// Sends the browser to the provider's page for a new card; it comes back to the portal.
pub async fn payment_method(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Signed>,
) -> Response {
    let l = match link(&id, &q) {
        Ok(l) => l,
        Err(e) => return refused(&e),
    };
    match state
        .billing
        .portal_payment_details(&l, q.sig.as_deref())
        .await
    {
        Ok(url) => see_other(&url),
        Err(e) => refused(&e),
    }
}
