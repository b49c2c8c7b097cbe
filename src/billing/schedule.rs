//! The billing clock's schedule: each subscription says when the clock next needs to visit
//! it (`subscription.next_billing_at`: a period end or a phase boundary), so that a tick
//! reads only what is due.

use chrono::{DateTime, Utc};
use entity::subscription;
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// "As soon as it can": the billing clock's next visit to a subscription whose schedule
/// changed (the column's default, so new subscriptions are picked up at once).
pub const DUE_NOW: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

/// The billing clock has nothing more to do for a subscription (it ended and its last
/// invoice is issued). A plain date: on SQLite times compare as text.
pub const NEVER: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t, // 9999-12-31T23:59:59Z
    None => DateTime::<Utc>::UNIX_EPOCH,
};

/// Asks the billing clock to look again, at its next tick, at the subscriptions matching
/// `filter`: their phase windows moved (billing start or plan phases changed).
pub(crate) async fn reschedule(
    db: &impl ConnectionTrait,
    filter: impl IntoCondition,
) -> Result<(), DbErr> {
    subscription::Entity::update_many()
        .col_expr(subscription::Column::NextBillingAt, Expr::value(DUE_NOW))
        .filter(filter)
        .exec(db)
        .await?;
    Ok(())
}
