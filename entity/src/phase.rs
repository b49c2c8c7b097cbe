use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "phase")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub plan_id: Uuid,
    /// `TRIAL`, `DISCOUNT` or `FINAL`
    pub kind: String,
    pub duration_count: Option<i32>,
    /// `HOUR`, `DAY`, `WEEK`, `MONTH` or `YEAR`
    pub duration_unit: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
