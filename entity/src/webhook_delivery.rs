//! One event for one webhook endpoint, sent until the receiver accepts it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_delivery")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_seq: i64,
    pub event_id: Uuid,
    pub event_kind: String,
    pub customer_id: Uuid,
    /// `PENDING`, `SUCCEEDED`, `FAILED`
    pub status: String,
    /// Every attempt ever made.
    pub attempts: i32,
    /// Attempts since the delivery was queued or replayed: the back-off counts these.
    pub round_attempts: i32,
    /// By the billing clock.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// By the wall clock: a process is sending it until then.
    pub lease_until: Option<DateTimeUtc>,
    pub lease_token: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
