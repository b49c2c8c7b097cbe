use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice_line")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub position: i32,
    /// `RECURRING` or `METERED`
    pub kind: String,
    pub product_id: Uuid,
    pub phase: String,
    pub start: DateTimeUtc,
    pub end: DateTimeUtc,
    pub quantity: Dec,
    pub unit_amount: Dec,
    /// Rounded to the currency's minor units.
    pub amount: Dec,
    pub matched: bool,
    /// Graduated lines: the tiers that priced units, as JSON `[{quantity, unitAmount, amount}]`.
    pub tiers: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
