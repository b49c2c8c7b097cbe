//! Outbound webhooks, as the Standard Webhooks specification has them: each endpoint has a
//! `whsec_` secret; every event of the outbox (after its commit, as the event hub publishes
//! it) becomes one delivery per endpoint that wants its kind; deliveries are signed
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), sent
//! one at a time per endpoint and customer in event order, retried with exponential back-off
//! for a day, and every attempt is recorded.
//!
//! Any number of processes may share the database: a delivery is sent only by the process
//! that claimed it (a conditional update that takes a lease), and a fan-out that two
//! processes make at once inserts each delivery once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use entity::{event, webhook_attempt, webhook_delivery, webhook_endpoint};
use hmac::{Hmac, Mac};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::codes::{Code, EventKind, WebhookDeliveryStatus, parse};
use super::error::{BillingError, BillingResult};
use super::events::BillingEvent;
use super::validate;

/// Attempts per delivery (per replay) before it is given up on as `FAILED`: with the
/// schedule of [`retry_after`] the last one is made about 24 h 16 min after the first.
pub const MAX_ATTEMPTS: i32 = 15;
const FIRST_RETRY_SECS: i64 = 30;
const MAX_RETRY_SECS: i64 = 4 * 3600;
/// Requests in flight per process: a receiver that hangs holds one until its timeout.
const CONCURRENT_SENDS: usize = 16;
/// Deliveries claimed per pass.
const CLAIM_BATCH: u64 = 100;
/// Events fanned out per transaction.
const FAN_OUT_PAGE: u64 = 500;
/// A claim outlives the request's timeout by this much; then another process may send it.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
const MAX_URL: usize = 2048;
const SECRET_PREFIX: &str = "whsec_";

/// The wait after the `failures`-th failed attempt: 30 s, doubling, at most 4 h.
pub fn retry_after(failures: i32) -> TimeDelta {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    TimeDelta::seconds((FIRST_RETRY_SECS << doublings).min(MAX_RETRY_SECS))
}

/// The process's webhook sender: its HTTP client, its wake-up and its bound on requests.
pub struct Dispatcher {
    client: reqwest::Client,
    timeout: Duration,
    wake: Notify,
    sends: Arc<Semaphore>,
    /// Whether any endpoint existed at the last look: without one, clock ticks cost no query.
    endpoints_seen: AtomicBool,
}

impl Dispatcher {
    pub fn new(timeout: Duration) -> Result<Self, DbErr> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("billing-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DbErr::Custom(format!("webhook HTTP client: {e}")))?;
        Ok(Self {
            client,
            timeout,
            wake: Notify::new(),
            sends: Arc::new(Semaphore::new(CONCURRENT_SENDS)),
            endpoints_seen: AtomicBool::new(false),
        })
    }
}

#[derive(Clone, Debug)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    /// None: every kind, also kinds added later.
    pub event_kinds: Option<Vec<EventKind>>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<webhook_endpoint::Model> for WebhookEndpoint {
    type Error = DbErr;
    fn try_from(m: webhook_endpoint::Model) -> Result<Self, DbErr> {
        let event_kinds = m
            .event_kinds
            .as_deref()
            .map(|k| k.split(',').map(parse).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        Ok(WebhookEndpoint {
            id: m.id,
            url: m.url,
            event_kinds,
            enabled: m.enabled,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

pub struct NewWebhookEndpoint {
    pub url: String,
    /// None: every kind. An empty list is refused.
    pub event_kinds: Option<Vec<EventKind>>,
}

/// A new endpoint and its signing secret: the only time the secret is shown.
pub struct IssuedEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

#[derive(Clone, Debug)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_seq: i64,
    pub event_kind: EventKind,
    pub customer_id: Uuid,
    pub status: WebhookDeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Oldest first.
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Clone, Debug)]
pub struct WebhookAttempt {
    pub number: i32,
    pub at: DateTime<Utc>,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl From<webhook_attempt::Model> for WebhookAttempt {
    fn from(m: webhook_attempt::Model) -> Self {
        WebhookAttempt {
            number: m.number,
            at: m.at,
            http_status: m.http_status,
            error: m.error,
            duration_ms: m.duration_ms,
        }
    }
}

fn delivery_of(
    m: webhook_delivery::Model,
    attempts: Vec<WebhookAttempt>,
) -> Result<WebhookDelivery, DbErr> {
    Ok(WebhookDelivery {
        id: m.id,
        endpoint_id: m.endpoint_id,
        event_id: m.event_id,
        event_seq: m.event_seq,
        event_kind: parse(&m.event_kind)?,
        customer_id: m.customer_id,
        status: parse(&m.status)?,
        attempt_count: m.attempts,
        next_attempt_at: m.next_attempt_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
        attempts,
    })
}

pub struct DeliveryPage {
    pub deliveries: Vec<WebhookDelivery>,
    pub has_next: bool,
}

/// An endpoint URL: absolute, http or https, with a host and no credentials.
pub fn endpoint_url(value: &str) -> BillingResult<String> {
    let v = validate::text("url", value, MAX_URL)?;
    let parsed = reqwest::Url::parse(&v)
        .map_err(|e| BillingError::invalid(format!("url: {v:?} is not an absolute URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BillingError::invalid(format!(
            "url: {v:?} must be an http or https URL"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BillingError::invalid(format!("url: {v:?} names no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(BillingError::invalid(
            "url must not carry a user name or password",
        ));
    }
    Ok(parsed.to_string())
}

/// The kinds an endpoint asks for, each once; `[]` is refused (leave it out for all).
fn wanted_kinds(kinds: Option<Vec<EventKind>>) -> BillingResult<Option<Vec<EventKind>>> {
    let Some(kinds) = kinds else { return Ok(None) };
    if kinds.is_empty() {
        return Err(BillingError::invalid(
            "eventKinds must name at least one kind; leave it out to receive every kind",
        ));
    }
    let mut seen = HashSet::new();
    Ok(Some(
        kinds.into_iter().filter(|k| seen.insert(*k)).collect(),
    ))
}

fn wants(endpoint: &webhook_endpoint::Model, kind: EventKind) -> bool {
    endpoint
        .event_kinds
        .as_deref()
        .is_none_or(|k| k.split(',').any(|c| c == kind.code()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    // The OS random source failing is unrecoverable for issuing secrets.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded
/// part of the secret after `whsec_`. None for a secret that is not one of ours.
pub fn signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The body of an event's webhook: the same bytes on every attempt.
pub fn payload(e: &BillingEvent) -> String {
    serde_json::json!({
        "type": e.kind.code(),
        "timestamp": e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "data": {
            "id": e.id,
            "cursor": e.seq.to_string(),
            "customerId": e.customer_id,
            "subscriptionId": e.subscription_id,
            "details": e.data,
        },
    })
    .to_string()
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    }
}

impl Billing {
    /// Admin: a new endpoint; it receives the events recorded from now on.
    pub async fn create_webhook_endpoint(
        &self,
        who: &Principal,
        input: NewWebhookEndpoint,
    ) -> BillingResult<IssuedEndpoint> {
        who.require_admin()?;
        let url = endpoint_url(&input.url)?;
        let kinds = wanted_kinds(input.event_kinds)?;
        let now = self.clock.now();
        let secret = new_secret();
        let cursor = self.last_event_seq().await?;
        let txn = self.db.write().await?;
        let m = webhook_endpoint::ActiveModel {
            id: Set(Uuid::now_v7()),
            url: Set(url),
            event_kinds: Set(
                kinds.map(|k| k.iter().map(|k| k.code()).collect::<Vec<_>>().join(","))
            ),
            secret: Set(secret.clone()),
            enabled: Set(true),
            cursor: Set(cursor),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        self.outbox.endpoints_seen.store(true, Ordering::Relaxed);
        tracing::info!(endpoint = %m.id, url = m.url, "webhook endpoint created");
        Ok(IssuedEndpoint {
            endpoint: m.try_into()?,
            secret,
        })
    }

    /// Admin: every endpoint, oldest first (never their secrets).
    pub async fn webhook_endpoints(&self, who: &Principal) -> BillingResult<Vec<WebhookEndpoint>> {
        who.require_admin()?;
        webhook_endpoint::Entity::find()
            .order_by_asc(webhook_endpoint::Column::CreatedAt)
            .order_by_asc(webhook_endpoint::Column::Id)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| WebhookEndpoint::try_from(m).map_err(BillingError::from))
            .collect()
    }

    async fn webhook_endpoint(&self, id: Uuid) -> BillingResult<webhook_endpoint::Model> {
        webhook_endpoint::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("webhook endpoint", id))
    }

    /// Admin: a disabled endpoint is sent nothing (its queued deliveries wait) and gets no
    /// deliveries for the events recorded while it is disabled; enabling resumes its queue.
    pub async fn set_webhook_endpoint_enabled(
        &self,
        who: &Principal,
        id: Uuid,
        enabled: bool,
    ) -> BillingResult<WebhookEndpoint> {
        who.require_admin()?;
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let moved = webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::Enabled, Expr::value(enabled))
            .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_endpoint::Column::Id.eq(id))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        if moved.rows_affected == 0 {
            return Err(BillingError::not_found("webhook endpoint", id));
        }
        tracing::info!(endpoint = %id, enabled, "webhook endpoint changed");
        if enabled {
            self.outbox.wake.notify_one();
        }
        Ok(self.webhook_endpoint(id).await?.try_into()?)
    }

    /// Admin: removes an endpoint with its deliveries and their attempts.
    pub async fn delete_webhook_endpoint(&self, who: &Principal, id: Uuid) -> BillingResult<()> {
        who.require_admin()?;
        let txn = self.db.write().await?;
        let gone = webhook_endpoint::Entity::delete_by_id(id)
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        if gone.rows_affected == 0 {
            return Err(BillingError::not_found("webhook endpoint", id));
        }
        tracing::info!(endpoint = %id, "webhook endpoint deleted");
        Ok(())
    }

    /// Admin: an endpoint's deliveries, newest event first, each with its attempts.
    pub async fn webhook_deliveries(
        &self,
        who: &Principal,
        endpoint_id: Uuid,
        first: usize,
        after: Option<&str>,
    ) -> BillingResult<DeliveryPage> {
        who.require_admin()?;
        if first > 100 {
            return Err(BillingError::invalid("first must be at most 100"));
        }
        self.webhook_endpoint(endpoint_id).await?;
        let mut q = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
            .order_by_desc(webhook_delivery::Column::EventSeq)
            .limit(first as u64 + 1);
        if let Some(cursor) = after {
            let seq: i64 = cursor.trim().parse().map_err(|_| {
                BillingError::invalid(format!("after: {cursor:?} is not a cursor from this list"))
            })?;
            q = q.filter(webhook_delivery::Column::EventSeq.lt(seq));
        }
        let mut rows = q.all(self.db.conn()).await?;
        let has_next = rows.len() > first;
        rows.truncate(first);
        let deliveries = self.with_attempts(rows).await?;
        Ok(DeliveryPage {
            deliveries,
            has_next,
        })
    }

    async fn with_attempts(
        &self,
        rows: Vec<webhook_delivery::Model>,
    ) -> BillingResult<Vec<WebhookDelivery>> {
        let mut attempts: HashMap<Uuid, Vec<WebhookAttempt>> = HashMap::new();
        if !rows.is_empty() {
            for a in webhook_attempt::Entity::find()
                .filter(webhook_attempt::Column::DeliveryId.is_in(rows.iter().map(|d| d.id)))
                .order_by_asc(webhook_attempt::Column::Number)
                .all(self.db.conn())
                .await?
            {
                attempts.entry(a.delivery_id).or_default().push(a.into());
            }
        }
        rows.into_iter()
            .map(|d| {
                let mut a = attempts.remove(&d.id).unwrap_or_default();
                // One recorded after the row was read waits for the next read.
                a.retain(|a| a.number <= d.attempts);
                delivery_of(d, a).map_err(BillingError::from)
            })
            .collect()
    }

    /// Admin: queues a delivery again, whatever became of it, with a fresh set of attempts.
    /// It takes its place in its customer's order: later deliveries of the same customer
    /// to the endpoint wait until it is accepted or given up on.
    pub async fn replay_webhook_delivery(
        &self,
        who: &Principal,
        id: Uuid,
    ) -> BillingResult<WebhookDelivery> {
        who.require_admin()?;
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let moved = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::Status,
                Expr::value(WebhookDeliveryStatus::Pending.code()),
            )
            .col_expr(webhook_delivery::Column::RoundAttempts, Expr::value(0))
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now))
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.eq(id))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        if moved.rows_affected == 0 {
            return Err(BillingError::not_found("webhook delivery", id));
        }
        tracing::info!(delivery = %id, "webhook delivery replayed");
        self.outbox.wake.notify_one();
        let row = webhook_delivery::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("webhook delivery", id))?;
        let mut out = self.with_attempts(vec![row]).await?;
        out.pop()
            .ok_or_else(|| BillingError::not_found("webhook delivery", id))
    }

    /// The billing clock moved: retries may be due.
    pub(crate) fn wake_webhooks(&self) {
        if self.outbox.endpoints_seen.load(Ordering::Relaxed) {
            self.outbox.wake.notify_one();
        }
    }

    /// Runs this process's webhook dispatcher: after each batch the event hub publishes,
    /// each billing clock run and each finished request, it fans new events out into
    /// deliveries and sends those that are due.
    pub async fn run_webhooks(self: Arc<Self>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut published = self.hub.subscribe();
        loop {
            match self.fan_out_webhooks().await {
                Ok(endpoints) => {
                    if let Err(e) = self.clone().send_due_webhooks(endpoints).await {
                        tracing::warn!(error = %e, "webhook deliveries could not be sent");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook fan-out failed"),
            }
            tokio::select! {
                r = published.recv() => if let Err(RecvError::Closed) = r { return },
                () = self.outbox.wake.notified() => {}
            }
        }
    }

    /// Turns the events the hub has published (so committed, in sequence order) into
    /// deliveries, and moves each endpoint's cursor past them. Returns the endpoints.
    async fn fan_out_webhooks(&self) -> BillingResult<Vec<webhook_endpoint::Model>> {
        loop {
            let endpoints = webhook_endpoint::Entity::find().all(self.db.conn()).await?;
            self.outbox
                .endpoints_seen
                .store(!endpoints.is_empty(), Ordering::Relaxed);
            let watermark = self.hub.published();
            let behind: Vec<&webhook_endpoint::Model> =
                endpoints.iter().filter(|e| e.cursor < watermark).collect();
            let Some(from) = behind.iter().map(|e| e.cursor).min() else {
                return Ok(endpoints);
            };
            let events = self.log_after(from, watermark, None, FAN_OUT_PAGE).await?;
            let full = events.len() as u64 == FAN_OUT_PAGE;
            let upto = match events.last() {
                Some(last) if full => last.seq,
                _ => watermark,
            };
            let now = self.clock.now();
            let txn = self.db.write().await?;
            for ep in &behind {
                let rows: Vec<webhook_delivery::ActiveModel> = events
                    .iter()
                    .filter(|e| ep.enabled && e.seq > ep.cursor && e.seq <= upto)
                    .filter(|e| wants(ep, e.kind))
                    .map(|e| webhook_delivery::ActiveModel {
                        id: Set(Uuid::now_v7()),
                        endpoint_id: Set(ep.id),
                        event_seq: Set(e.seq),
                        event_id: Set(e.id),
                        event_kind: Set(e.kind.code().to_owned()),
                        customer_id: Set(e.customer_id),
                        status: Set(WebhookDeliveryStatus::Pending.code().to_owned()),
                        attempts: Set(0),
                        round_attempts: Set(0),
                        next_attempt_at: Set(Some(now)),
                        lease_until: Set(None),
                        lease_token: Set(None),
                        created_at: Set(now),
                        updated_at: Set(now),
                    })
                    .collect();
                if !rows.is_empty() {
                    // Another process may fan out the same events: each delivery once.
                    webhook_delivery::Entity::insert_many(rows)
                        .on_conflict_do_nothing_on([
                            webhook_delivery::Column::EndpointId,
                            webhook_delivery::Column::EventSeq,
                        ])
                        .exec(&*txn)
                        .await?;
                }
                webhook_endpoint::Entity::update_many()
                    .col_expr(webhook_endpoint::Column::Cursor, Expr::value(upto))
                    .filter(webhook_endpoint::Column::Id.eq(ep.id))
                    .filter(webhook_endpoint::Column::Cursor.eq(ep.cursor))
                    .exec(&*txn)
                    .await?;
            }
            txn.commit().await?;
            if !full {
                return Ok(endpoints);
            }
        }
    }

    /// Claims and sends the deliveries that are due and first in their endpoint's queue for
    /// their customer; each request runs on its own task, at most [`CONCURRENT_SENDS`] at once.
    async fn send_due_webhooks(
        self: Arc<Self>,
        endpoints: Vec<webhook_endpoint::Model>,
    ) -> BillingResult<()> {
        let enabled: HashMap<Uuid, webhook_endpoint::Model> = endpoints
            .into_iter()
            .filter(|e| e.enabled)
            .map(|e| (e.id, e))
            .collect();
        if enabled.is_empty() {
            return Ok(());
        }
        let pending = WebhookDeliveryStatus::Pending.code();
        // The head of each queue: the earliest pending delivery per endpoint and customer.
        // Only a head is ever claimed, so a customer's deliveries go out one at a time.
        let heads: HashSet<(Uuid, i64)> = webhook_delivery::Entity::find()
            .select_only()
            .column(webhook_delivery::Column::EndpointId)
            .column_as(webhook_delivery::Column::EventSeq.min(), "head")
            .filter(webhook_delivery::Column::Status.eq(pending))
            .filter(webhook_delivery::Column::EndpointId.is_in(enabled.keys().copied()))
            .group_by(webhook_delivery::Column::EndpointId)
            .group_by(webhook_delivery::Column::CustomerId)
            .into_tuple::<(Uuid, i64)>()
            .all(self.db.conn())
            .await?
            .into_iter()
            .collect();
        if heads.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let wall = Utc::now();
        let mut seqs: Vec<i64> = heads.iter().map(|h| h.1).collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.truncate(1000);
        let due: Vec<webhook_delivery::Model> = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(pending))
            .filter(webhook_delivery::Column::EventSeq.is_in(seqs))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
            .filter(unleased(wall))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .order_by_asc(webhook_delivery::Column::EventSeq)
            .limit(CLAIM_BATCH)
            .all(self.db.conn())
            .await?
            .into_iter()
            .filter(|d| heads.contains(&(d.endpoint_id, d.event_seq)))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let events: HashMap<i64, BillingEvent> = event::Entity::find()
            .filter(event::Column::Seq.is_in(due.iter().map(|d| d.event_seq)))
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| BillingEvent::try_from(m).map(|e| (e.seq, e)))
            .collect::<Result<_, _>>()?;
        for d in due {
            let (Some(endpoint), Some(event)) =
                (enabled.get(&d.endpoint_id), events.get(&d.event_seq))
            else {
                continue;
            };
            let Ok(permit) = self.outbox.sends.clone().acquire_owned().await else {
                return Ok(());
            };
            let Some(lease) = self.claim_delivery(&d).await? else {
                continue; // another process has it
            };
            let billing = self.clone();
            let (endpoint, event) = (endpoint.clone(), event.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = billing.attempt_delivery(&d, &endpoint, &event, lease).await {
                    tracing::warn!(error = %e, delivery = %d.id, "webhook attempt not recorded");
                }
                // The next delivery of this customer may go now.
                billing.outbox.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Takes the delivery for this process until the lease runs out; None when another
    /// process holds it or it moved meanwhile.
    async fn claim_delivery(&self, d: &webhook_delivery::Model) -> BillingResult<Option<Uuid>> {
        let lease = Uuid::new_v4();
        let wall = Utc::now();
        let until = wall
            + TimeDelta::from_std(self.outbox.timeout + LEASE_MARGIN)
                .unwrap_or(TimeDelta::minutes(5));
        let txn = self.db.write().await?;
        let claimed = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(until))
            .col_expr(webhook_delivery::Column::LeaseToken, Expr::value(lease))
            .filter(webhook_delivery::Column::Id.eq(d.id))
            .filter(webhook_delivery::Column::Status.eq(WebhookDeliveryStatus::Pending.code()))
            .filter(webhook_delivery::Column::Attempts.eq(d.attempts))
            .filter(unleased(wall))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok((claimed.rows_affected == 1).then_some(lease))
    }

    /// One signed request, then its outcome, recorded if the lease is still ours.
    async fn attempt_delivery(
        &self,
        d: &webhook_delivery::Model,
        endpoint: &webhook_endpoint::Model,
        event: &BillingEvent,
        lease: Uuid,
    ) -> BillingResult<()> {
        let at = self.clock.now();
        let body = payload(event);
        let msg_id = event.id.to_string();
        // The receiver checks this against its own clock: the wall clock's, even under
        // the test clock.
        let timestamp = Utc::now().timestamp();
        let signed = signature(&endpoint.secret, &msg_id, timestamp, body.as_bytes())
            .ok_or_else(|| DbErr::Custom(format!("endpoint {} has a bad secret", endpoint.id)))?;
        let started = Instant::now();
        let sent = self
            .outbox
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .body(body)
            .send()
            .await;
        let duration = started.elapsed();
        let (http_status, error) = match sent {
            Ok(res) => (Some(i32::from(res.status().as_u16())), None),
            Err(e) => (None, Some(describe(&e, self.outbox.timeout))),
        };
        let accepted = http_status.is_some_and(|s| (200..300).contains(&s));
        let round = d.round_attempts + 1;
        let now = self.clock.now();
        let (status, next) = if accepted {
            (WebhookDeliveryStatus::Succeeded, None)
        } else if round >= MAX_ATTEMPTS {
            (WebhookDeliveryStatus::Failed, None)
        } else {
            (
                WebhookDeliveryStatus::Pending,
                Some(now + retry_after(round)),
            )
        };
        let txn = self.db.write().await?;
        let moved = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(status.code()))
            .col_expr(
                webhook_delivery::Column::Attempts,
                Expr::value(d.attempts + 1),
            )
            .col_expr(webhook_delivery::Column::RoundAttempts, Expr::value(round))
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                webhook_delivery::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                webhook_delivery::Column::LeaseToken,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(webhook_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(webhook_delivery::Column::Id.eq(d.id))
            .filter(webhook_delivery::Column::LeaseToken.eq(lease))
            .exec(&*txn)
            .await?;
        if moved.rows_affected == 1 {
            webhook_attempt::ActiveModel {
                id: Set(Uuid::now_v7()),
                delivery_id: Set(d.id),
                number: Set(d.attempts + 1),
                at: Set(at),
                http_status: Set(http_status),
                error: Set(error.clone()),
                duration_ms: Set(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
            }
            .insert(&*txn)
            .await?;
        }
        txn.commit().await?;
        match status {
            WebhookDeliveryStatus::Succeeded => tracing::debug!(delivery = %d.id,
                endpoint = %endpoint.id, event = %event.id, http_status, "webhook delivered"),
            WebhookDeliveryStatus::Pending => tracing::warn!(delivery = %d.id,
                endpoint = %endpoint.id, event = %event.id, http_status, error, attempt = round,
                next_attempt_at = ?next, "webhook delivery failed; retrying"),
            WebhookDeliveryStatus::Failed => tracing::error!(delivery = %d.id,
                endpoint = %endpoint.id, event = %event.id, http_status, error, attempts = round,
                "webhook delivery given up"),
        }
        Ok(())
    }
}

/// No process is sending it (never claimed, or its lease ran out).
fn unleased(wall: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(webhook_delivery::Column::LeaseUntil.is_null())
        .add(webhook_delivery::Column::LeaseUntil.lt(wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_30_seconds_and_span_a_day() {
        assert_eq!(retry_after(1), TimeDelta::seconds(30));
        assert_eq!(retry_after(2), TimeDelta::minutes(1));
        assert_eq!(retry_after(9), TimeDelta::seconds(30 << 8));
        assert_eq!(retry_after(14), TimeDelta::hours(4));
        assert_eq!(retry_after(100), TimeDelta::hours(4));
        let span: TimeDelta = (1..MAX_ATTEMPTS).map(retry_after).sum();
        assert!(span >= TimeDelta::hours(24), "{span}");
        assert!(span < TimeDelta::hours(25), "{span}");
    }

    #[test]
    fn signatures_match_the_specification_example() {
        // The example of the Standard Webhooks reference libraries' tests.
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(signature("sk_nope", "m", 1, b""), None);
    }

    #[test]
    fn endpoint_urls_are_absolute_http() {
        assert_eq!(
            endpoint_url(" https://example.com/hooks ").unwrap(),
            "https://example.com/hooks"
        );
        for bad in [
            "",
            "/hooks",
            "example.com/hooks",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "javascript:alert(1)",
            "http://",
        ] {
            assert_eq!(
                endpoint_url(bad).map_err(|e| e.code()),
                Err("BAD_USER_INPUT"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_kinds_is_every_kind_and_an_empty_list_is_refused() {
        assert_eq!(wanted_kinds(None).unwrap(), None);
        assert!(wanted_kinds(Some(vec![])).is_err());
        assert_eq!(
            wanted_kinds(Some(vec![EventKind::InvoicePaid, EventKind::InvoicePaid])).unwrap(),
            Some(vec![EventKind::InvoicePaid])
        );
    }
}
