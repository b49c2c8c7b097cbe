//! The billing domain: catalog, pricing, phases, customers and access. Pricing and phase
//! math are pure functions (`pricing`, `phase`, `money`); the rest reads and writes the
//! database through [`Db`] and takes "now" from the [`Clock`](crate::clock::Clock).

pub mod access;
pub mod billed;
pub mod catalog;
pub mod catalog_admin;
pub mod changes;
pub mod checkout;
pub mod clock_run;
pub mod codes;
pub mod credit;
pub mod customers;
pub mod db;
pub mod documents;
pub mod error;
pub mod events;
pub mod gateway;
pub mod idempotency;
pub mod invoice;
pub mod invoicing;
pub mod items;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod money;
pub mod outbound_webhooks;
pub mod phase;
pub mod portal;
pub mod pricing;
pub mod provider_sink;
pub mod quote;
pub mod refunds;
pub mod sandbox_store;
pub mod schedule;
pub mod subscriptions;
pub mod usage;
mod usage_intake;
pub mod validate;
pub mod webhooks;

use std::sync::{Arc, RwLock};

use sea_orm::DbErr;
use tokio::sync::Mutex;
use uuid::Uuid;

pub use access::Principal;
pub use catalog::Catalog;
pub use db::Db;
pub use error::{BillingError, BillingResult};

use crate::clock::SharedClock;

/// The domain service: one per process, shared by every request.
pub struct Billing {
    pub db: Db,
    pub clock: SharedClock,
    pub default_currency: String,
    pub providers: providers::Registry,
    pub default_provider: String,
    /// How long a checkout may stay open before its subscription expires.
    pub checkout_ttl: chrono::TimeDelta,
    /// How long any one provider call may take.
    pub provider_timeout: std::time::Duration,
    pub dunning: invoicing::Dunning,
    /// Refund the credit left when a customer's last subscription ends (else keep it).
    pub refund_credit: bool,
    /// Signed links to invoice documents and the customer portal; the merchant.
    pub documents: documents::Documents,
    catalog: RwLock<Arc<Catalog>>,
    reload: Mutex<()>,
    pub(crate) tokens: access::TokenCache,
    revoked: tokio::sync::broadcast::Sender<uuid::Uuid>,
    /// One run of the billing clock at a time in this process: the test clock's inline
    /// run and the background tick take turns.
    clock_runner: Mutex<()>,
    clock_runs: clock_run::ClockRuns,
    events: tokio::sync::broadcast::Sender<()>,
    hub: events::EventHub,
    outbox: outbound_webhooks::Dispatcher,
    usage_intake: usage_intake::UsageIntake,
}

/// What the domain is made of, besides its database and clock.
pub struct Settings {
    pub default_currency: String,
    pub providers: providers::Registry,
    pub default_provider: String,
    pub checkout_ttl: chrono::TimeDelta,
    pub provider_timeout: std::time::Duration,
    /// How long a webhook receiver has to answer.
    pub webhook_timeout: std::time::Duration,
    pub dunning: invoicing::Dunning,
    pub refund_credit: bool,
    pub documents: documents::Documents,
}

impl Billing {
    pub async fn new(db: Db, clock: SharedClock, settings: Settings) -> Result<Self, DbErr> {
        let catalog = Catalog::load(db.conn()).await?;
        Ok(Self {
            db,
            clock,
            default_currency: settings.default_currency,
            providers: settings.providers,
            default_provider: settings.default_provider,
            checkout_ttl: settings.checkout_ttl,
            provider_timeout: settings.provider_timeout,
            dunning: settings.dunning,
            refund_credit: settings.refund_credit,
            documents: settings.documents,
            catalog: RwLock::new(Arc::new(catalog)),
            reload: Mutex::new(()),
            tokens: access::TokenCache::default(),
            revoked: tokio::sync::broadcast::channel(256).0,
            clock_runner: Mutex::new(()),
            clock_runs: Default::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            hub: events::EventHub::default(),
            outbox: outbound_webhooks::Dispatcher::new(settings.webhook_timeout)?,
            usage_intake: Default::default(),
        })
    }

    /// Runs the billing clock's jobs, after any run already in progress in this process.
    pub async fn run_clock(&self) -> BillingResult<jobs::JobReport> {
        let _one_at_a_time = self.clock_runner.lock().await;
        let started = std::time::Instant::now();
        // Prices and plans changed on another process count from this run on, not from
        // our next periodic refresh.
        self.refresh_catalog_if_changed().await?;
        let report = self.run_jobs().await;
        crate::telemetry::clock_run(report.as_ref().ok(), started.elapsed());
        report
    }

    /// Waits for a clock run in progress, then keeps the clock from running again
    /// (shutdown).
    pub async fn hold_clock(&self) {
        std::mem::forget(self.clock_runner.lock().await);
    }

    /// The current catalog snapshot: cheap to take, consistent for as long as it is held.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current catalog snapshot, first brought up to date if it lacks any of `plans`:
    /// a plan created on another process since our last refresh is known here before it
    /// is used. A plan still missing after that is the caller's `not_found`.
    pub(crate) async fn catalog_with(
        &self,
        plans: impl IntoIterator<Item = Uuid>,
    ) -> BillingResult<Arc<Catalog>> {
        let catalog = self.catalog();
        if plans.into_iter().all(|id| catalog.plan(id).is_some()) {
            return Ok(catalog);
        }
        self.refresh_catalog_if_changed().await?;
        Ok(self.catalog())
    }

    /// Re-reads the catalog from the database and publishes it.
    pub async fn reload_catalog(&self) -> Result<(), DbErr> {
        let _one_at_a_time = self.reload.lock().await;
        let fresh = Arc::new(Catalog::load(self.db.conn()).await?);
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads the catalog if another process changed it since our snapshot.
    pub async fn refresh_catalog_if_changed(&self) -> Result<bool, DbErr> {
        let stored = catalog_admin::stored_version(self.db.conn()).await?;
        if stored != self.catalog().version {
            self.reload_catalog().await?;
            return Ok(true);
        }
        Ok(false)
    }
}
