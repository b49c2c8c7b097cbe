use sea_orm::entity::prelude::*;

/// A subscription's configuration from `valid_from` on (until the next version).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscription_version")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub valid_from: DateTimeUtc,
    pub plan_id: Uuid,
    /// Named items as JSON `[{productId, packageId, quantity}]`; None: the plan's default items.
    pub items: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
