use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "checkout")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub provider: String,
    pub provider_ref: String,
    pub url: String,
    pub amount: Dec,
    pub currency: String,
    /// `OPEN`, `PENDING`, `UNKNOWN`, `SUCCEEDED`, `FAILED`; closed: `EXPIRED`, `ABANDONED`,
    /// `REPLACED`
    pub status: String,
    pub failure_reason: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: DateTimeUtc,
    /// How often the reconciler asked the provider; spaces the next question.
    pub status_checks: i32,
    pub next_check_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// The plan a plan-change checkout buys (None: the subscription's first checkout).
    pub plan_id: Option<Uuid>,
    pub updated_at: DateTimeUtc,
    /// A change that must be paid first (JSON: plan and items it moves to); None otherwise.
    pub change: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
