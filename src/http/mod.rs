//! HTTP transport: GraphQL over POST, GraphiQL, health and metrics.

pub mod documents;
pub mod graphiql;
pub mod portal;
pub mod rate;
pub mod ws;
pub mod ws_events;

use std::sync::Arc;
use std::time::Instant;

use async_graphql::ParseRequestError;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::http::WebSocketProtocols;
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensions, Request, Response, ServerError};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{Path, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::limit::RequestBodyLimitLayer;

use crate::billing::{Billing, BillingError, Principal};
use crate::config::IntrospectionPolicy;
use crate::graphql::loaders::request_loaders;
use crate::graphql::{BillingSchema, MAX_BATCH};
use crate::telemetry;

#[derive(Clone)]
pub struct AppState {
    pub schema: BillingSchema,
    pub billing: Arc<Billing>,
    pub introspection: IntrospectionPolicy,
    /// Answer each GraphQL request with its statement count (`x-sql-statements`).
    pub debug_statements: bool,
    pub ws_limits: ws::WsLimits,
    pub sockets: Arc<ws::OpenSockets>,
    /// `billingEvents` payloads, rendered once per selection set.
    pub event_frames: Arc<ws_events::EventFrames>,
    /// Becomes true when the server starts shutting down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

pub fn router(state: AppState, max_body_bytes: usize, limits: Arc<rate::RateLimits>) -> Router {
    let limited = axum::middleware::from_fn_with_state(limits, rate::limit);
    let mut app = Router::new()
        .route(
            "/graphql",
            get(graphiql::page)
                .post(graphql)
                .route_layer(limited.clone()),
        )
        .route("/graphql/ws", get(websocket).route_layer(limited))
        .route("/graphql/assets/{name}", get(graphiql::asset))
        .route("/providers/{name}/webhook", post(webhook))
        .route("/documents/invoices/{id}", get(documents::invoice_page))
        .route("/documents/invoices/{id}/pdf", get(documents::invoice_pdf))
        .route("/portal/{id}", get(portal::page))
        .route("/portal/{id}/cancel", post(portal::cancel))
        .route("/portal/{id}/payment-method", get(portal::payment_method))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    // Each provider's hosted pages, under /providers/{name}.
    for name in state.billing.providers.names() {
        if let Ok(p) = state.billing.providers.get(name)
            && let Some(routes) = p.routes()
        {
            app = app.nest(&format!("/providers/{name}"), routes);
        }
    }
    app.layer(RequestBodyLimitLayer::new(max_body_bytes))
}

/// Signed provider events: a bad signature is refused (400) and writes nothing.
async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    match state.billing.handle_webhook(&name, &headers, &body).await {
        Ok(fresh) => Json(serde_json::json!({ "received": true, "new": fresh })).into_response(),
        Err(BillingError::NotFound { .. }) => {
            tracing::warn!(
                provider = name,
                reason = "unknown provider",
                "webhook refused"
            );
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e @ BillingError::Db(_)) => {
            tracing::error!(error = %e, provider = name, "webhook not processed");
            // The provider will deliver it again.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            let reason = match &e {
                BillingError::Provider(providers::ProviderError::BadSignature) => "bad signature",
                BillingError::Provider(providers::ProviderError::BadResponse(_)) => "malformed",
                _ => "refused by its provider",
            };
            tracing::warn!(error = %e, provider = name, reason, "webhook refused");
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

/// GraphQL over websockets (graphql-transport-ws). The token comes in the
/// `connection_init` payload, as `{"Authorization": "Bearer …"}` or `{"token": "…"}`.
async fn websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        });
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must name graphql-transport-ws",
        )
            .into_response();
    };
    upgrade
        // graphql-transport-ws messages from a client are small; the default 128 KiB read
        // buffer would be most of an idle subscriber's memory. Larger messages still fit:
        // the buffer grows for them.
        .read_buffer_size(WS_READ_BUFFER)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| ws::serve_apart(state, protocol, socket))
}

/// A websocket's initial read buffer.
const WS_READ_BUFFER: usize = 4 * 1024;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub(crate) fn error_response(status: StatusCode, err: &BillingError) -> axum::response::Response {
    let gql = err.extend();
    let server_error = ServerError::new(gql.message.clone(), None);
    let mut response = Response::from_errors(vec![ServerError {
        extensions: gql.extensions,
        ..server_error
    }]);
    response.data = async_graphql::Value::Null;
    (status, Json(response)).into_response()
}

/// Adds what each request needs: the caller, fresh loaders, the introspection policy.
pub fn prepare(state: &AppState, principal: Principal, mut request: Request) -> Request {
    let allowed = match state.introspection {
        IntrospectionPolicy::All => true,
        IntrospectionPolicy::Authenticated => principal != Principal::Anonymous,
        IntrospectionPolicy::Admin => principal.is_admin(),
        IntrospectionPolicy::Off => false,
    };
    if !allowed {
        request = request.disable_introspection();
    }
    request.data.insert(principal);
    request_loaders(&state.billing, &mut request.data);
    request
}

/// The header that carries a request's SQL statements, with `BILLING_DEBUG_STATEMENTS`.
pub const STATEMENTS_HEADER: &str = "x-sql-statements";
/// The header that carries the statements a provider ran in the request to keep its own
/// records (the sandbox's state), not counted in [`STATEMENTS_HEADER`].
pub const PROVIDER_STATEMENTS_HEADER: &str = "x-sql-statements-provider";

async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> axum::response::Response {
    if !state.debug_statements {
        return serve_graphql(state, headers, req).await;
    }
    let counter = Arc::new(crate::billing::db::Statements::default());
    let mut response =
        crate::billing::db::count_statements(counter.clone(), serve_graphql(state, headers, req))
            .await;
    let count = |n: &std::sync::atomic::AtomicU64| {
        axum::http::HeaderValue::from(n.load(std::sync::atomic::Ordering::Relaxed))
    };
    let headers = response.headers_mut();
    headers.insert(STATEMENTS_HEADER, count(&counter.ours));
    headers.insert(PROVIDER_STATEMENTS_HEADER, count(&counter.provider));
    response
}

async fn serve_graphql(
    state: AppState,
    headers: HeaderMap,
    req: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> axum::response::Response {
    let started = Instant::now();
    // Refused before any operation runs: measured and logged here (the schema's extension
    // does it for the rest).
    let refused = |operation: Option<&str>, status: StatusCode, e: &BillingError| {
        let response = error_response(status, e);
        telemetry::graphql_request(
            operation,
            e.code(),
            started.elapsed(),
            Some(status.as_u16()),
        );
        response
    };
    let req = match req {
        Ok(req) => req,
        Err(GraphQLRejection(ParseRequestError::PayloadTooLarge)) => {
            let e = BillingError::invalid("the request body is too large");
            return refused(None, StatusCode::PAYLOAD_TOO_LARGE, &e);
        }
        Err(GraphQLRejection(e)) => {
            let e = BillingError::invalid(format!(
                "the body is not a GraphQL request (JSON with a \"query\"): {e}"
            ));
            return refused(None, StatusCode::BAD_REQUEST, &e);
        }
    };
    let req = req.into_inner();
    let named = match &req {
        BatchRequest::Single(r) => r.operation_name.clone(),
        BatchRequest::Batch(_) => Some("batch".to_owned()),
    };
    let principal = match state.billing.authenticate(bearer(&headers)).await {
        Ok(p) => p,
        Err(e @ BillingError::Db(_)) => {
            return refused(named.as_deref(), StatusCode::INTERNAL_SERVER_ERROR, &e);
        }
        Err(e) => return refused(named.as_deref(), StatusCode::UNAUTHORIZED, &e),
    };
    let batch = match req {
        BatchRequest::Single(r) => BatchRequest::Single(prepare(&state, principal, r)),
        BatchRequest::Batch(rs) if rs.len() > MAX_BATCH => {
            let e =
                BillingError::invalid(format!("a batch may hold at most {MAX_BATCH} operations"));
            return refused(named.as_deref(), StatusCode::BAD_REQUEST, &e);
        }
        BatchRequest::Batch(rs) => BatchRequest::Batch(
            rs.into_iter()
                .map(|r| prepare(&state, principal, r))
                .collect(),
        ),
    };
    let mut response = state.schema.execute_batch(batch).await;
    match &mut response {
        BatchResponse::Single(r) => with_codes(r),
        BatchResponse::Batch(rs) => rs.iter_mut().for_each(with_codes),
    }
    GraphQLResponse(response).into_response()
}

/// Gives every error a code: the domain's and the query limits' carry theirs; the rest
/// come from validating the document, before anything ran.
fn with_codes(response: &mut Response) {
    for err in &mut response.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "BAD_USER_INPUT");
        }
    }
}

async fn health(State(state): State<AppState>) -> axum::response::Response {
    match state.billing.db.conn().ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "database unavailable" })),
            )
                .into_response()
        }
    }
}

/// Prometheus text format: this server's own lines, then the process's recorder.
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let mut text = format!(
        "# HELP billing_sql_statements_total SQL statements executed since start-up.\n\
         # TYPE billing_sql_statements_total counter\n\
         billing_sql_statements_total {}\n\
         # HELP billing_websocket_connections Open websocket connections.\n\
         # TYPE billing_websocket_connections gauge\n\
         billing_websocket_connections {}\n\
         # HELP billing_event_renders_total Executions of a subscription's selection set for an event (one per event and distinct subscribe payload).\n\
         # TYPE billing_event_renders_total counter\n\
         billing_event_renders_total {}\n",
        state.billing.db.statement_count(),
        state.sockets.count(),
        state.event_frames.renders(),
    );
    if let Some(handle) = telemetry::handle() {
        text.push_str(&handle.render());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
