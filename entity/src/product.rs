use sea_orm::entity::prelude::*;

use crate::Dec;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "product")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    #[sea_orm(unique)]
    pub external_id: Option<String>,
    /// `PACKAGE` or `METERED_RESOURCE`
    pub kind: String,
    /// bandwidth, storage, backup_storage, … (metered products only)
    pub resource: Option<String>,
    pub unit: Dec,
    /// `CORE`, `MB`, `GB`, …
    pub unit_type: String,
    pub aggregated_usage: bool,
    pub archived_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
