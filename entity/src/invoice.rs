use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    /// Billing period k of the subscription.
    pub period_index: i32,
    pub period_start: DateTimeUtc,
    pub period_end: DateTimeUtc,
    pub currency: String,
    pub total: Dec,
    /// `DRAFT`, `OPEN`, `PAID`, `VOID`, `UNCOLLECTIBLE`
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub payment_ref: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Unique per subscription: `period-<k>`, `change-<id>`, `final`, `legacy-<k>`.
    pub invoice_key: String,
    /// `PERIOD`, `CHANGE` or `FINAL`.
    pub kind: String,
    /// Credit balance set against the total.
    pub credit_applied: Dec,
    /// What is left to collect: the total less the credit applied (never below zero).
    pub amount_due: Dec,
    /// `INV-000042`: gapless per installation, assigned when the invoice is issued.
    #[sea_orm(unique)]
    pub number: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
