//! The sandbox payment provider's own state (checkouts, saved cards, charges, refunds, their
//! idempotency keys), kept here so that every server process on this database serves it.
//! `body` is the provider's JSON document (amounts inside are decimal strings); `version`
//! grows by one with each change, which is made only from the version read.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sandbox_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub body: String,
    pub version: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
