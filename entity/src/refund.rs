use sea_orm::entity::prelude::*;

use crate::Dec;

/// Money given back: a payment that arrived for a closed checkout.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refund")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub checkout_id: Option<Uuid>,
    pub provider: String,
    /// The payment given back (a checkout session's or a charge's provider ref).
    pub payment_ref: String,
    pub amount: Dec,
    pub currency: String,
    pub reason: String,
    /// `PENDING` (to send or settling), `SUCCEEDED`, `FAILED`
    pub status: String,
    pub provider_ref: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
