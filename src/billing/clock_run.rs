//! Runs of the billing clock that a move of the test clock starts. A move over many
//! subscriptions takes long, so it never runs inside the request that asked for it: it
//! runs in its own task, and the caller waits for it or polls it (`clockRun`). Runs take
//! turns with the background tick ([`Billing::run_clock`]); the latest run started covers
//! every earlier move, since it runs at the latest time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::Billing;
use super::access::Principal;
use super::error::{BillingError, BillingResult};
use super::jobs::JobReport;

/// A run of the billing clock after a move of the test clock.
#[derive(Clone, Debug)]
pub struct ClockRun {
    /// Which run of this process (they count up from 1).
    pub id: u64,
    /// The time the clock was moved to.
    pub to: DateTime<Utc>,
    /// Wall-clock times of the run.
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the jobs did, once finished without error.
    pub report: Option<JobReport>,
    /// Why it failed, as (code, message) (the next tick, or the next move, runs the jobs
    /// again).
    pub error: Option<(&'static str, String)>,
}

impl ClockRun {
    pub fn running(&self) -> bool {
        self.finished_at.is_none()
    }
}

/// The latest run of this process.
pub(crate) struct ClockRuns {
    latest: watch::Sender<Option<ClockRun>>,
    started: AtomicU64,
}

impl Default for ClockRuns {
    fn default() -> Self {
        ClockRuns {
            latest: watch::channel(None).0,
            started: AtomicU64::new(0),
        }
    }
}

impl Billing {
    /// Admin, test clock only: moves time forward to `to` and starts the billing clock's
    /// jobs at that time in their own task. Returns the new time and a receiver that sees
    /// the run finish.
    pub fn advance_clock(
        self: &Arc<Self>,
        who: &Principal,
        to: DateTime<Utc>,
    ) -> BillingResult<(DateTime<Utc>, watch::Receiver<Option<ClockRun>>)> {
        who.require_admin()?;
        let to = super::validate::instant("to", to)?;
        let clock = self
            .clock
            .as_test()
            .ok_or(BillingError::TestClockDisabled)?;
        let now = clock
            .advance_to(to)
            .map_err(|now| BillingError::ClockBackwards(now.to_rfc3339()))?;
        let started = ClockRun {
            id: self.clock_runs.started.fetch_add(1, Ordering::Relaxed) + 1,
            to: now,
            started_at: Utc::now(),
            finished_at: None,
            report: None,
            error: None,
        };
        let runs = &self.clock_runs.latest;
        runs.send_replace(Some(started.clone()));
        // Subscribed before the task starts, so the caller cannot miss its end.
        let receiver = runs.subscribe();
        let billing = Arc::clone(self);
        // A counted request (BILLING_DEBUG_STATEMENTS) counts the run it started.
        super::db::spawn_counted(async move {
            let result = billing.run_clock().await;
            let finished = ClockRun {
                finished_at: Some(Utc::now()),
                report: result.as_ref().ok().copied(),
                error: result.as_ref().err().map(|e| (e.code(), e.to_string())),
                ..started
            };
            if let Err(e) = &result {
                tracing::error!(to = %finished.to, error = %e, "billing clock run failed");
            }
            // A later move's run replaced it: that one is the latest.
            billing.clock_runs.latest.send_if_modified(|latest| {
                let ours = latest.as_ref().is_some_and(|l| l.id == finished.id);
                if ours {
                    *latest = Some(finished.clone());
                }
                ours
            });
        });
        Ok((now, receiver))
    }

    /// Admin: the latest run a move of the test clock started in this process.
    pub fn clock_run(&self, who: &Principal) -> BillingResult<Option<ClockRun>> {
        who.require_admin()?;
        Ok(self.clock_runs.latest.borrow().clone())
    }
}

/// Waits until the run the receiver watches (or a later one) has finished.
pub async fn finished(mut runs: watch::Receiver<Option<ClockRun>>) -> Option<ClockRun> {
    runs.wait_for(|r| r.as_ref().is_some_and(|r| !r.running()))
        .await
        .ok()
        .and_then(|r| r.clone())
}
