//! Where a project's backend hears about billing events (Standard Webhooks).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoint")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub url: String,
    /// Comma-separated event kind codes; NULL is every kind.
    pub event_kinds: Option<String>,
    /// The `whsec_…` signing secret, kept in clear: signing needs it.
    pub secret: String,
    pub enabled: bool,
    /// The last event sequence number fanned out to this endpoint (or skipped).
    pub cursor: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
