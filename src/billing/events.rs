//! Billing events: written in the transaction of the change they describe (an outbox),
//! then announced to websocket subscribers — across processes through PostgreSQL's
//! LISTEN/NOTIFY.

use chrono::{DateTime, Utc};
use entity::event;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::codes::{Code, EventKind, parse};
use super::error::{BillingError, BillingResult};

pub const NOTIFY_CHANNEL: &str = "billing_events";

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
    event::ActiveModel {
        id: Set(Uuid::now_v7()),
        customer_id: Set(customer_id),
        subscription_id: Set(subscription_id),
        kind: Set(kind.code().to_owned()),
        data: Set(data.to_string()),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(db)
    .await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .await?;
    }
    Ok(())
}

impl Billing {
    /// Wakes this process's subscribers: call after a commit that recorded events.
    pub fn announce_events(&self) {
        let _ = self.events.send(());
    }

    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.events.subscribe()
    }

    /// The events after `after` (a cursor) that the caller may see, oldest first.
    pub async fn events_after(
        &self,
        who: &Principal,
        customer: Option<Uuid>,
        after: i64,
        limit: u64,
    ) -> BillingResult<Vec<BillingEvent>> {
        let customer = match (who, customer) {
            (Principal::Admin, c) => c,
            (Principal::Customer(own), None) => Some(*own),
            (Principal::Customer(_), Some(c)) => {
                who.require_customer_access(c)?;
                Some(c)
            }
            (Principal::Anonymous, _) => return Err(BillingError::Unauthenticated),
        };
        let mut q = event::Entity::find()
            .filter(event::Column::Seq.gt(after))
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

    /// The newest event's cursor (0 when there is none).
    pub async fn last_event_seq(&self) -> BillingResult<i64> {
        Ok(event::Entity::find()
            .order_by_desc(event::Column::Seq)
            .one(self.db.conn())
            .await?
            .map_or(0, |e| e.seq))
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
