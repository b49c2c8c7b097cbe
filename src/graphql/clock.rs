//! The clock as the API sees it.

use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::GqlResult;
use crate::billing::BillingError;

#[derive(Default)]
pub struct ClockQuery;

#[Object]
impl ClockQuery {
    /// The server's current time (the test clock's, when enabled).
    async fn now(&self, ctx: &Context<'_>) -> async_graphql::Result<DateTime<Utc>> {
        Ok(ctx.billing()?.clock.now())
    }
}

#[derive(Default)]
pub struct ClockMutation;

#[Object]
impl ClockMutation {
    /// Admin, test clock only: moves time forward to `to`.
    async fn advance_clock(
        &self,
        ctx: &Context<'_>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<DateTime<Utc>> {
        ctx.principal().require_admin().gql()?;
        let to = crate::billing::validate::instant("to", to).gql()?;
        let billing = ctx.billing()?;
        let clock = billing
            .clock
            .as_test()
            .ok_or(BillingError::TestClockDisabled)
            .gql()?;
        let now = clock
            .advance_to(to)
            .map_err(|now| BillingError::ClockBackwards(now.to_rfc3339()))
            .gql()?;
        // Every job runs as if that time had passed.
        billing.run_clock().await.gql()?;
        Ok(now)
    }
}
