//! Billing events: written in the transaction of the change they describe (an outbox),
//! then announced — across processes through PostgreSQL's LISTEN/NOTIFY — to the process's
//! [`EventHub`], which reads each new event once and fans it out to every websocket
//! subscriber of the process. A subscriber reads the database itself only to catch up from
//! its cursor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::event;
use futures_util::Stream;
use futures_util::stream;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::codes::{Code, EventKind, parse};
use super::error::{BillingError, BillingResult};

pub const NOTIFY_CHANNEL: &str = "billing_events";

/// Events the hub reads per query, and a subscriber per catch-up query.
const PAGE: u64 = 500;
/// Batches a subscriber may fall behind before it catches up from the database instead.
const HUB_CAPACITY: usize = 1024;
/// How long the hub waits for a missing sequence number before it moves past it. On
/// PostgreSQL a transaction can commit event n+1 before another commits event n; a rolled
/// back one leaves a hole for good.
const GAP_WAIT: Duration = Duration::from_secs(2);
/// Re-read the log this often even when no wake-up came (a lost NOTIFY, say).
const SAFETY_POLL: Duration = Duration::from_secs(2);

/// The process's one reader of the event log. Everything up to `published` has been sent
/// to `batches` in order (or given up on, as a hole in the sequence).
pub struct EventHub {
    published: AtomicI64,
    batches: tokio::sync::broadcast::Sender<Arc<[BillingEvent]>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            published: AtomicI64::new(-1),
            batches: tokio::sync::broadcast::channel(HUB_CAPACITY).0,
        }
    }
}

impl EventHub {
    /// The newest sequence number handed to subscribers; -1 until the hub has started.
    pub(crate) fn published(&self) -> i64 {
        self.published.load(Ordering::Acquire)
    }

    /// Batches as the hub publishes them (the webhook dispatcher wakes on them).
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<[BillingEvent]>> {
        self.batches.subscribe()
    }
}

#[derive(Clone, Debug)]
pub struct BillingEvent {
    pub seq: i64,
    pub id: Uuid,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub kind: EventKind,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl TryFrom<event::Model> for BillingEvent {
    type Error = DbErr;
    fn try_from(m: event::Model) -> Result<Self, DbErr> {
        Ok(BillingEvent {
            seq: m.seq,
            id: m.id,
            customer_id: m.customer_id,
            subscription_id: m.subscription_id,
            kind: parse(&m.kind)?,
            data: serde_json::from_str(&m.data).unwrap_or(serde_json::Value::Null),
            at: m.created_at,
        })
    }
}

/// An event to write.
pub struct NewEvent {
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub kind: EventKind,
    pub data: serde_json::Value,
}

/// Rows per multi-row insert (six values each: well under SQLite's 32,766 parameters).
const EVENTS_PER_INSERT: usize = 1000;

/// Writes one event inside the caller's transaction; on PostgreSQL the NOTIFY is
/// delivered when (and only if) that transaction commits.
pub async fn record(
    db: &impl ConnectionTrait,
    at: DateTime<Utc>,
    customer_id: Uuid,
    subscription_id: Option<Uuid>,
    kind: EventKind,
    data: serde_json::Value,
) -> Result<(), DbErr> {
    record_many(
        db,
        at,
        vec![NewEvent {
            customer_id,
            subscription_id,
            kind,
            data,
        }],
    )
    .await
}

/// Writes events, in their order, inside the caller's transaction: multi-row inserts and,
/// on PostgreSQL, one NOTIFY delivered when (and only if) that transaction commits.
pub async fn record_many(
    db: &impl ConnectionTrait,
    at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        event::Entity::insert_many(chunk.iter().map(|e| event::ActiveModel {
            id: Set(Uuid::now_v7()),
            customer_id: Set(e.customer_id),
            subscription_id: Set(e.subscription_id),
            kind: Set(e.kind.code().to_owned()),
            data: Set(e.data.to_string()),
            created_at: Set(at),
            ..Default::default()
        }))
        .exec_without_returning(db)
        .await?;
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .await?;
    }
    Ok(())
}

impl Billing {
    /// Wakes this process's event hub: call after a commit that recorded events.
    pub fn announce_events(&self) {
        let _ = self.events.send(());
    }

    /// Hub lag: from each event's `created_at` (whole seconds, so up to a second too much)
    /// to now. Under the test clock event times are not wall-clock times: nothing is
    /// recorded.
    fn observe_lag(&self, batch: &[BillingEvent]) {
        if self.clock.as_test().is_some() {
            return;
        }
        let now = Utc::now();
        for e in batch {
            let lag = (now - e.at).to_std().unwrap_or_default();
            crate::telemetry::event_published(lag);
        }
    }

    /// Runs this process's event hub: on every wake-up (a local commit, a NOTIFY from
    /// another process, or the safety poll) it reads the new events once, in sequence
    /// order, and publishes them to all of this process's subscribers.
    pub async fn run_event_hub(&self) {
        let mut wake = self.events.subscribe();
        let mut cursor = loop {
            match self.last_event_seq().await {
                Ok(seq) => break seq,
                Err(e) => tracing::warn!(error = %e, "event hub cannot read the log"),
            }
            tokio::time::sleep(SAFETY_POLL).await;
        };
        self.hub.published.store(cursor, Ordering::Release);
        let mut gap_since: Option<Instant> = None;
        loop {
            let mut full_page = false;
            match self.log_after(cursor, i64::MAX, None, PAGE).await {
                Ok(rows) => {
                    full_page = rows.len() as u64 == PAGE;
                    let mut batch = Vec::with_capacity(rows.len());
                    for e in rows {
                        if e.seq != cursor + 1 {
                            let since = *gap_since.get_or_insert_with(Instant::now);
                            if since.elapsed() < GAP_WAIT {
                                full_page = false;
                                break;
                            }
                        }
                        gap_since = None;
                        cursor = e.seq;
                        batch.push(e);
                    }
                    if !batch.is_empty() {
                        // Sent before it is announced as published: a subscriber that sees
                        // the new position finds the batch in its channel, unless it
                        // subscribed after the send and must read the log.
                        let batch: Arc<[BillingEvent]> = batch.into();
                        let _ = self.hub.batches.send(batch.clone());
                        self.hub.published.store(cursor, Ordering::Release);
                        self.observe_lag(&batch);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event hub cannot read the log"),
            }
            if full_page {
                continue;
            }
            let wait = if gap_since.is_some() {
                Duration::from_millis(20)
            } else {
                SAFETY_POLL
            };
            if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) =
                tokio::time::timeout(wait, wake.recv()).await
            {
                return;
            }
        }
    }

    /// The events after `after` that `who` may see (all, or one customer's), live: first
    /// what the log already holds, then what the hub publishes. A subscriber that falls
    /// behind the hub catches up from the database, so it never misses an event.
    pub async fn follow_events(
        self: Arc<Self>,
        who: &Principal,
        customer: Option<Uuid>,
        after: Option<i64>,
    ) -> BillingResult<impl Stream<Item = BillingResult<BillingEvent>> + use<>> {
        let scope = event_scope(who, customer)?;
        // Subscribe before reading any position, so that no batch falls between the two.
        let batches = self.hub.batches.subscribe();
        let cursor = match after {
            Some(c) => c,
            None => self.last_event_seq().await?,
        };
        let follow = Follow {
            billing: self,
            scope,
            cursor,
            batches,
            buffer: VecDeque::new(),
        };
        Ok(stream::unfold(follow, |mut f| async move {
            let next = f.next().await;
            next.map(|e| (e, f))
        }))
    }

    /// The log after `after` up to `until`, oldest first, of one customer or everyone.
    pub(crate) async fn log_after(
        &self,
        after: i64,
        until: i64,
        customer: Option<Uuid>,
        limit: u64,
    ) -> BillingResult<Vec<BillingEvent>> {
        let mut q = event::Entity::find()
            .filter(event::Column::Seq.gt(after))
            .filter(event::Column::Seq.lte(until))
            .order_by_asc(event::Column::Seq)
            .limit(limit);
        if let Some(c) = customer {
            q = q.filter(event::Column::CustomerId.eq(c));
        }
        q.all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| BillingEvent::try_from(m).map_err(BillingError::from))
            .collect()
    }

    /// The events after `after` (a cursor) that the caller may see, oldest first.
    pub async fn events_after(
        &self,
        who: &Principal,
        customer: Option<Uuid>,
        after: i64,
        limit: u64,
    ) -> BillingResult<Vec<BillingEvent>> {
        let scope = event_scope(who, customer)?;
        self.log_after(after, i64::MAX, scope, limit).await
    }

    /// The newest event's cursor (0 when there is none).
    pub async fn last_event_seq(&self) -> BillingResult<i64> {
        Ok(event::Entity::find()
            .order_by_desc(event::Column::Seq)
            .one(self.db.conn())
            .await?
            .map_or(0, |e| e.seq))
    }
}

/// Whose events `who` asked for and may see: `None` is everyone's (admins only).
fn event_scope(who: &Principal, customer: Option<Uuid>) -> BillingResult<Option<Uuid>> {
    match (who, customer) {
        (Principal::Admin, c) => Ok(c),
        (Principal::Customer(own), None) => Ok(Some(*own)),
        (Principal::Customer(_), Some(c)) => {
            who.require_customer_access(c)?;
            Ok(Some(c))
        }
        (Principal::Service, _) => Err(BillingError::Forbidden),
        (Principal::Anonymous, _) => Err(BillingError::Unauthenticated),
    }
}

/// One subscriber's position in the log.
struct Follow {
    billing: Arc<Billing>,
    scope: Option<Uuid>,
    /// Every event up to here has been delivered or was not this subscriber's.
    cursor: i64,
    batches: tokio::sync::broadcast::Receiver<Arc<[BillingEvent]>>,
    buffer: VecDeque<BillingEvent>,
}

impl Follow {
    async fn next(&mut self) -> Option<BillingResult<BillingEvent>> {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            if let Some(e) = self.buffer.pop_front() {
                return Some(Ok(e));
            }
            let published = self.billing.hub.published();
            if self.cursor < published {
                // Behind the hub: a batch may be waiting in the channel...
                match self.batches.try_recv() {
                    Ok(batch) => {
                        if let Err(e) = self.take(&batch).await {
                            return Some(Err(e));
                        }
                        continue;
                    }
                    Err(TryRecvError::Closed) => return None,
                    Err(TryRecvError::Empty | TryRecvError::Lagged(_)) => {}
                }
                // ...or it is not (a resumed cursor, or lagging): catch up from the log.
                if let Err(e) = self.read_log(published).await {
                    return Some(Err(e));
                }
                continue;
            }
            match self.batches.recv().await {
                Ok(batch) => {
                    if let Err(e) = self.take(&batch).await {
                        return Some(Err(e));
                    }
                }
                // Fell behind: the loop catches up from the log.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Queues one page of this subscriber's events in the log after its position, up to
    /// `until`, and moves its position past them (to `until` once the page is not full).
    async fn read_log(&mut self, until: i64) -> BillingResult<()> {
        // Boxed: a subscriber waits far more often than it reads, and an idle one should
        // not hold the size of a query's future.
        let found = Box::pin(self.billing.log_after(self.cursor, until, self.scope, PAGE)).await?;
        self.cursor = match found.last() {
            Some(last) if found.len() as u64 == PAGE => last.seq,
            _ => until,
        };
        self.buffer.extend(found);
        Ok(())
    }

    /// Queues this subscriber's events of a published batch, after any that lie between
    /// its position and the batch (published before it listened, e.g. while the hub was
    /// starting; or a hole in the sequence, which reads nothing).
    async fn take(&mut self, batch: &[BillingEvent]) -> BillingResult<()> {
        if let Some(first) = batch.first() {
            while self.cursor < first.seq - 1 {
                self.read_log(first.seq - 1).await?;
            }
        }
        for e in batch.iter().filter(|e| e.seq > self.cursor) {
            if self.scope.is_none_or(|c| c == e.customer_id) {
                self.buffer.push_back(e.clone());
            }
        }
        if let Some(last) = batch.last() {
            self.cursor = self.cursor.max(last.seq);
        }
        Ok(())
    }
}

/// Parses a client's cursor.
pub fn parse_cursor(cursor: Option<&str>) -> BillingResult<Option<i64>> {
    cursor
        .map(|c| {
            c.trim()
                .parse::<i64>()
                .map_err(|_| BillingError::invalid(format!("after: {c:?} is not an event cursor")))
        })
        .transpose()
}
