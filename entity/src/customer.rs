use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customer")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The project's reference: creating a customer twice with it returns the same customer.
    #[sea_orm(unique)]
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub currency: String,
    pub region: Option<String>,
    pub billing_start: Option<DateTimeUtc>,
    /// Lower-cased name, email and external id, for search.
    pub search_text: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The running balance of the credit ledger (`credit_entry`).
    pub credit_balance: Dec,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
