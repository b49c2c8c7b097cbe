use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `ADMIN`, `SERVICE` or `CUSTOMER`
    pub role: String,
    pub customer_id: Option<Uuid>,
    /// SHA-256 of the token, hex; the token itself is shown once and never stored.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// A generated token's first characters, so a person can tell keys apart (empty for
    /// configured tokens, whose text is never stored).
    pub prefix: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// What a service key is for (None for other keys).
    pub name: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
