use sea_orm::entity::prelude::*;

use crate::Dec;

/// One movement of a customer's credit: positive adds credit, negative uses or refunds it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_entry")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
    pub amount: Dec,
    pub balance_after: Dec,
    pub currency: String,
    /// `INVOICE_CREDIT`, `APPLIED`, `OVERPAYMENT`, `REFUNDED`.
    pub reason: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
