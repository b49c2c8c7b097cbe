use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscription")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub provider: String,
    /// `INCOMPLETE`, `INCOMPLETE_EXPIRED`, `ACTIVE`, `TRIALING`, `PAST_DUE`, `CANCELED`
    pub status: String,
    /// When it went live (ACTIVE or TRIALING): billing periods are anchored here.
    pub started_at: Option<DateTimeUtc>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTimeUtc>,
    /// When the billing clock must next look at it (a period end or a phase boundary);
    /// the epoch means "as soon as it can".
    pub next_billing_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The next period boundary to invoice (0: the checkout's invoice).
    pub next_boundary: i32,
    /// Billed before advance billing existed: this period's lines are all billed at its end.
    pub legacy_period: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
