use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "price")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub phase_id: Uuid,
    pub product_id: Uuid,
    pub currency: String,
    pub region: Option<String>,
    pub max_quantity: Option<Dec>,
    pub unit_amount: Dec,
    /// `HOUR`, `MONTH` or `UNIT`
    pub interval: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
