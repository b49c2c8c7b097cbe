//! The clock as the API sees it.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::error::GqlResult;
use crate::billing::BillingError;
use crate::billing::clock_run::{self, ClockRun};

#[derive(Default)]
pub struct ClockQuery;

#[Object]
impl ClockQuery {
    /// The server's current time (the test clock's, when enabled).
    async fn now(&self, ctx: &Context<'_>) -> async_graphql::Result<DateTime<Utc>> {
        Ok(ctx.billing()?.clock.now())
    }

    /// Admin: the latest run of the billing clock that `advanceClock` started in this
    /// process (null before the first). Poll it after `advanceClock(wait: false)`.
    async fn clock_run(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ClockRunView>> {
        let run = ctx.billing()?.clock_run(&ctx.principal()).gql()?;
        Ok(run.map(ClockRunView::from))
    }
}

/// A run of the billing clock after a move of the test clock.
#[derive(SimpleObject)]
#[graphql(name = "ClockRun")]
pub struct ClockRunView {
    /// The time the clock was moved to.
    to: DateTime<Utc>,
    /// True until the jobs have finished.
    running: bool,
    /// Wall-clock times of the run.
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    /// Invoices issued by the run, once finished.
    invoices_issued: Option<i32>,
    /// Why the run failed: the error's code and message. The next tick or move runs the
    /// jobs again.
    error_code: Option<String>,
    error: Option<String>,
}

impl From<ClockRun> for ClockRunView {
    fn from(r: ClockRun) -> Self {
        ClockRunView {
            to: r.to,
            running: r.running(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            invoices_issued: r
                .report
                .map(|r| i32::try_from(r.invoiced).unwrap_or(i32::MAX)),
            error_code: r.error.as_ref().map(|(code, _)| (*code).to_owned()),
            error: r.error.map(|(_, message)| message),
        }
    }
}

#[derive(Default)]
pub struct ClockMutation;

#[Object]
impl ClockMutation {
    /// Admin, test clock only: moves time forward to `to`, then runs every job of the
    /// billing clock as if that time had passed, in the background. With `wait` (the
    /// default) the answer comes once the jobs are done (an error if they failed); with
    /// `wait: false` at once, and `clockRun` tells when they are.
    async fn advance_clock(
        &self,
        ctx: &Context<'_>,
        to: DateTime<Utc>,
        #[graphql(default = true)] wait: bool,
    ) -> async_graphql::Result<DateTime<Utc>> {
        let (now, run) = ctx.billing()?.advance_clock(&ctx.principal(), to).gql()?;
        if wait
            && let Some(done) = clock_run::finished(run).await
            && let Some((code, message)) = done.error
        {
            return Err(BillingError::ClockRunFailed { code, message }).gql();
        }
        Ok(now)
    }
}
