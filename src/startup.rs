//! Wiring: configuration → database → domain → schema → HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use providers::sandbox::{SandboxConfig, SandboxProvider};
use providers::stripe::{StripeConfig, StripeProvider};
use sea_orm::sqlx::postgres::PgListener;

use crate::billing::access::REVOCATION_CHANNEL;
use crate::billing::documents::{Documents, Merchant};
use crate::billing::events::NOTIFY_CHANNEL;
use crate::billing::provider_sink::BillingSink;
use crate::billing::sandbox_store::DbSandboxStore;
use crate::billing::{Billing, Db, Settings};
use crate::clock::{SharedClock, SystemClock, TestClock};
use crate::config::{Cli, Command, Config};
use crate::graphql;
use crate::http::{self, AppState};

pub type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Configured secrets shorter than this are refused at start-up.
pub const MIN_CONFIGURED_TOKEN: usize = 32;

/// Logs to stdout: `BILLING_LOG_FORMAT=json` for one JSON object a line, else text, with
/// colours only on a terminal. `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = std::env::var("BILLING_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
    };
}

pub async fn run(cli: Cli) -> Result<(), AnyError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Schema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Migrate => {
            let db = Db::connect(&cli.config.database_url, 1).await?;
            Migrator::up(db.conn(), None).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Demo => {
            // Beside a running server on the same database: never its port.
            let mut config = cli.config;
            config.bind.set_port(0);
            let app = Application::build(config).await?;
            crate::demo::load(&app.billing).await?;
            println!("demo catalog loaded");
            Ok(())
        }
        Command::Serve => {
            let app = Application::build(cli.config).await?;
            tracing::info!(addr = %app.addr, "billing server listening");
            app.run_until_stopped().await
        }
    }
}

/// A built server, bound to its port but not yet serving.
pub struct Application {
    pub addr: SocketAddr,
    pub billing: Arc<Billing>,
    listener: TcpListener,
    router: axum::Router,
    database_url: String,
    jobs_interval: Duration,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, AnyError> {
        Self::build_with(config, Vec::new()).await
    }

    /// Builds with extra payment providers beside the configured ones (tests use this).
    pub async fn build_with(
        config: Config,
        extra: Vec<Arc<dyn providers::PaymentProvider>>,
    ) -> Result<Self, AnyError> {
        if let Some(token) = &config.admin_token
            && token.trim().chars().count() < MIN_CONFIGURED_TOKEN
        {
            return Err(format!(
                "BILLING_ADMIN_TOKEN must be at least {MIN_CONFIGURED_TOKEN} characters"
            )
            .into());
        }
        if let Some(secret) = &config.document_secret
            && secret.trim().chars().count() < MIN_CONFIGURED_TOKEN
        {
            return Err(format!(
                "BILLING_DOCUMENT_SECRET must be at least {MIN_CONFIGURED_TOKEN} characters"
            )
            .into());
        }
        if config.test_clock && config.production {
            return Err("the test clock cannot be enabled in a production configuration".into());
        }
        let default_currency = crate::billing::validate::currency(
            "BILLING_DEFAULT_CURRENCY",
            &config.default_currency,
        )
        .map_err(|e| e.to_string())?;
        // Once per process; every server in it renders the same recorder.
        crate::telemetry::install();
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let db = Db::connect(&config.database_url, config.pool_size()).await?;
        Migrator::up(db.conn(), None).await?;
        let (mut registry, stripe) = build_providers(&config, &public_url, &db)?;
        for p in extra {
            registry.register(p);
        }
        let clock: SharedClock = if config.test_clock {
            tracing::warn!("test clock enabled: admins can move time with advanceClock");
            Arc::new(TestClock::new(chrono::Utc::now()))
        } else {
            Arc::new(SystemClock)
        };
        let document_secret =
            Documents::secret(db.conn(), config.document_secret.as_deref()).await?;
        let documents = Documents::new(
            &public_url,
            Merchant::new(&config.merchant_name, config.merchant_address.as_deref()),
            &document_secret,
        );
        let settings = Settings {
            refund_credit: config.refund_credit != "keep",
            documents,
            default_currency,
            providers: registry,
            default_provider: config.default_provider.clone(),
            checkout_ttl: chrono::TimeDelta::hours(i64::from(config.checkout_ttl_hours.max(1))),
            provider_timeout: Duration::from_millis(config.provider_timeout_ms.max(1)),
            webhook_timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
            dunning: crate::billing::invoicing::Dunning {
                retries: config
                    .dunning_retry_days
                    .iter()
                    .map(|d| chrono::TimeDelta::days(i64::from(*d)))
                    .collect(),
                final_failure: if config.dunning_final == "unpaid" {
                    crate::billing::invoicing::FinalFailure::Unpaid
                } else {
                    crate::billing::invoicing::FinalFailure::Cancel
                },
            },
        };
        let billing = Arc::new(Billing::new(db, clock, settings).await?);
        if let Some(stripe) = stripe {
            stripe.set_event_sink(Arc::new(BillingSink::new(&billing)));
        }
        match &config.admin_token {
            Some(token) => billing.ensure_admin_token(token.trim()).await?,
            None => {
                if let Some(token) = billing.bootstrap_admin().await? {
                    // Printed once; only its hash is stored.
                    println!("Created the admin token (shown only this once):\n\n    {token}\n");
                }
            }
        }
        let schema = graphql::schema_builder().data(billing.clone()).finish();
        let (shutdown, stopping) = tokio::sync::watch::channel(false);
        let state = AppState {
            schema,
            billing: billing.clone(),
            introspection: config.introspection,
            debug_statements: config.debug_statements,
            ws_limits: http::ws::WsLimits {
                init_timeout: Duration::from_millis(config.ws_init_timeout_ms.max(1)),
                max_subscriptions: config.ws_max_subscriptions.max(1),
            },
            sockets: Arc::default(),
            event_frames: Arc::default(),
            shutdown: stopping,
        };
        let limits =
            http::rate::RateLimits::new(config.rate_limit_per_token, config.rate_limit_per_address);
        let router = http::router(state, config.max_body_bytes, limits);
        Ok(Self {
            addr,
            billing,
            listener,
            router,
            database_url: config.database_url,
            jobs_interval: Duration::from_secs(config.jobs_interval_secs.max(1)),
            shutdown,
        })
    }

    pub async fn run_until_stopped(self) -> Result<(), AnyError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then shuts down: no new connections, websockets
    /// closed with 1001, in-flight requests and a running clock job finished, all within
    /// [`SHUTDOWN_GRACE`].
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AnyError> {
        let background = [
            tokio::spawn(refresh_catalog(self.billing.clone())),
            tokio::spawn(run_jobs(self.billing.clone(), self.jobs_interval)),
            tokio::spawn({
                let billing = self.billing.clone();
                async move { billing.run_event_hub().await }
            }),
            tokio::spawn(self.billing.clone().run_webhooks()),
            tokio::spawn(
                self.billing
                    .db
                    .clone()
                    .run_checkpoints(crate::billing::db::CHECKPOINT_EVERY),
            ),
            tokio::spawn(listen_for_events(
                self.billing.clone(),
                self.database_url.clone(),
            )),
        ];
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = self.shutdown;
        let signal = async move {
            stop.await;
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
            let _ = stopped_tx.send(());
        };
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let served = tokio::select! {
            served = serve => served.map_err(AnyError::from),
            () = async {
                let _ = stopped.await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!("in-flight requests did not finish in time");
                Ok(())
            }
        };
        // A clock run in progress finishes; none starts after it.
        let clock = self.billing.hold_clock();
        let _ = tokio::time::timeout(Duration::from_secs(2), clock).await;
        for task in background {
            task.abort();
        }
        served
    }
}

/// How long a shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Picks up catalog changes made by other server processes sharing the database.
async fn refresh_catalog(billing: Arc<Billing>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        if let Err(e) = billing.refresh_catalog_if_changed().await {
            tracing::warn!(error = %e, "catalog refresh failed");
        }
    }
}

/// The billing clock: expiry, reconciliation, scheduled cancellations.
async fn run_jobs(billing: Arc<Billing>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = billing.run_clock().await {
            tracing::warn!(error = %e, "billing jobs failed");
        }
    }
}

/// On PostgreSQL, events committed by any replica wake this one's subscribers, and keys
/// revoked on any replica are dropped here too.
async fn listen_for_events(billing: Arc<Billing>, url: String) {
    if !url.starts_with("postgres") {
        return;
    }
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener
                    .listen_all([NOTIFY_CHANNEL, REVOCATION_CHANNEL])
                    .await
                {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    // Whatever was revoked while we were not listening.
                    billing.tokens_may_be_stale();
                    while let Ok(n) = listener.recv().await {
                        if n.channel() == REVOCATION_CHANNEL {
                            match n.payload().parse() {
                                Ok(key) => billing.key_revoked(key),
                                Err(_) => billing.tokens_may_be_stale(),
                            }
                        } else {
                            billing.announce_events();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "event listener could not connect"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The configured payment providers (and the stripe one again, to be handed the server's
/// event sink once the server exists); an unknown name fails start-up.
fn build_providers(
    config: &Config,
    public_url: &str,
    db: &Db,
) -> Result<(providers::Registry, Option<Arc<StripeProvider>>), AnyError> {
    let mut registry = providers::Registry::default();
    let mut stripe_provider = None;
    for name in config
        .providers
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
    {
        match name {
            "sandbox" => {
                let secret = config
                    .sandbox_secret
                    .clone()
                    .unwrap_or_else(|| crate::billing::access::new_token("whsec_sbx_"));
                registry.register(Arc::new(SandboxProvider::new(
                    SandboxConfig::new(public_url, secret),
                    Arc::new(DbSandboxStore::new(db.clone())),
                )));
            }
            "stripe" => {
                let api_key = config
                    .stripe_api_key
                    .clone()
                    .ok_or("the stripe provider needs BILLING_PROVIDER_STRIPE_API_KEY")?;
                let webhook_secret = config
                    .stripe_webhook_secret
                    .clone()
                    .ok_or("the stripe provider needs BILLING_PROVIDER_STRIPE_WEBHOOK_SECRET")?;
                let publishable_key = config
                    .stripe_publishable_key
                    .clone()
                    .ok_or("the stripe provider needs BILLING_PROVIDER_STRIPE_PUBLISHABLE_KEY")?;
                let stripe = Arc::new(StripeProvider::new(StripeConfig {
                    api_key,
                    api_base: config.stripe_api_base.clone(),
                    webhook_secret,
                    publishable_key,
                    js_url: config.stripe_js_url.clone(),
                    public_base_url: public_url.to_owned(),
                    timeout: Duration::from_millis(config.provider_timeout_ms.max(1)),
                })?);
                registry.register(stripe.clone());
                stripe_provider = Some(stripe);
            }
            other => {
                return Err(
                    format!("unknown payment provider {other:?} in BILLING_PROVIDERS").into(),
                );
            }
        }
    }
    if registry.get(&config.default_provider).is_err() {
        return Err(format!(
            "the default provider {:?} is not among the enabled providers {:?}",
            config.default_provider, config.providers
        )
        .into());
    }
    Ok((registry, stripe_provider))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
