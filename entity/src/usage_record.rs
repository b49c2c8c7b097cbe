use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    /// The usage this record adds (for counters: the rise since the previous reading).
    pub quantity: Dec,
    /// The counter's raw value, for products with aggregated usage.
    pub reading: Option<Dec>,
    pub at: DateTimeUtc,
    pub idempotency_key: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
