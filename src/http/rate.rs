//! Request rate limits per bearer token and per client address (GCRA, from `governor`):
//! over the limit, 429 with `Retry-After` and a GraphQL error coded `RATE_LIMITED`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::billing::BillingError;
use crate::billing::access::hash_token;

/// Keys kept before idle ones are forgotten.
const RETAIN: usize = 10_000;

pub struct RateLimits {
    per_token: Option<DefaultKeyedRateLimiter<String>>,
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Requests per minute (each also the burst); 0 turns a limit off.
    pub fn new(token_per_minute: u32, address_per_minute: u32) -> Arc<Self> {
        fn limiter<K: Clone + std::hash::Hash + Eq>(n: u32) -> Option<DefaultKeyedRateLimiter<K>> {
            NonZeroU32::new(n).map(|n| RateLimiter::hashmap(Quota::per_minute(n)))
        }
        Arc::new(RateLimits {
            per_token: limiter(token_per_minute),
            per_address: limiter(address_per_minute),
            clock: DefaultClock::default(),
        })
    }

    /// Seconds to wait, when this request is over a limit.
    fn refuse(&self, token: Option<&str>, address: Option<IpAddr>) -> Option<u64> {
        let now = self.clock.now();
        let wait = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        if let (Some(l), Some(a)) = (&self.per_address, address) {
            if l.len() > RETAIN {
                l.retain_recent();
            }
            if let Err(not_until) = l.check_key(&a) {
                return Some(wait(not_until.wait_time_from(now)).max(1));
            }
        }
        if let (Some(l), Some(t)) = (&self.per_token, token) {
            if l.len() > RETAIN {
                l.retain_recent();
            }
            if let Err(not_until) = l.check_key(&hash_token(t)) {
                return Some(wait(not_until.wait_time_from(now)).max(1));
            }
        }
        None
    }
}

pub async fn limit(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let token = super::bearer(request.headers());
    if let Some(seconds) = limits.refuse(token, address) {
        let e = BillingError::RateLimited(format!("too many requests; try again in {seconds} s"));
        let mut response = super::error_response(StatusCode::TOO_MANY_REQUESTS, &e);
        if request.method() == axum::http::Method::POST {
            // A GraphQL request over HTTP, refused before its body was read.
            crate::telemetry::graphql_request(
                None,
                "RATE_LIMITED",
                started.elapsed(),
                Some(StatusCode::TOO_MANY_REQUESTS.as_u16()),
            );
        }
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    next.run(request).await.into_response()
}
