//! Configuration from flags and environment variables.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "billing", version, about = "A GraphQL billing server")]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations and serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL); needs no database.
    Schema,
    /// Load a demo catalog built from the seeds' examples.
    Demo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IntrospectionPolicy {
    /// Anyone may introspect the schema.
    All,
    /// Callers with a token (any role) may introspect; anonymous callers may not. The
    /// public contract is `schema.graphql`.
    Authenticated,
    /// Only admin tokens may introspect.
    Admin,
    /// Nobody may introspect.
    Off,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Database URL: sqlite://FILE?mode=rwc (embedded) or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://billing.db?mode=rwc"
    )]
    pub database_url: String,
    /// Address to listen on: HOST:PORT, or :PORT for 127.0.0.1 (port 0 picks a free port).
    #[arg(long, env = "BILLING_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// The admin token; when unset, one is created on a fresh database and printed once.
    #[arg(long, env = "BILLING_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Currency of customers created without one (ISO 4217).
    #[arg(long, env = "BILLING_DEFAULT_CURRENCY", default_value = "USD")]
    pub default_currency: String,
    /// Enable the test clock (`advanceClock`); refused together with --production.
    #[arg(long, env = "BILLING_TEST_CLOCK", value_parser = parse_flag, default_value = "0")]
    pub test_clock: bool,
    /// Marks a production deployment: unsafe settings (the test clock) are refused.
    #[arg(long, env = "BILLING_PRODUCTION", value_parser = parse_flag, default_value = "0")]
    pub production: bool,
    /// Who may introspect the GraphQL schema.
    #[arg(
        long,
        env = "BILLING_INTROSPECTION",
        value_enum,
        default_value = "authenticated"
    )]
    pub introspection: IntrospectionPolicy,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BILLING_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Payment providers to enable, comma-separated (`sandbox`, `stripe`).
    #[arg(
        long,
        env = "BILLING_PROVIDERS",
        default_value = "sandbox",
        value_delimiter = ','
    )]
    pub providers: Vec<String>,
    /// The provider used when a subscription names none.
    #[arg(long, env = "BILLING_DEFAULT_PROVIDER", default_value = "sandbox")]
    pub default_provider: String,
    /// This server's URL as browsers and providers reach it (default: http://<bind address>).
    #[arg(long, env = "BILLING_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The sandbox's webhook signing secret (replicas must share one; random when unset).
    #[arg(long, env = "BILLING_PROVIDER_SANDBOX_SECRET", hide_env_values = true)]
    pub sandbox_secret: Option<String>,
    /// Stripe secret API key.
    #[arg(long, env = "BILLING_PROVIDER_STRIPE_API_KEY", hide_env_values = true)]
    pub stripe_api_key: Option<String>,
    /// Stripe API base (point it at localstripe for tests).
    #[arg(
        long,
        env = "BILLING_PROVIDER_STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Stripe webhook signing secret (`whsec_…`).
    #[arg(
        long,
        env = "BILLING_PROVIDER_STRIPE_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Option<String>,
    /// Stripe publishable key (`pk_…`), which Stripe.js uses on the hosted pages.
    #[arg(long, env = "BILLING_PROVIDER_STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,
    /// Where the hosted pages load Stripe.js from (localstripe serves a fake at
    /// `{localstripe}/js.stripe.com/v3/`).
    #[arg(
        long,
        env = "BILLING_PROVIDER_STRIPE_JS_URL",
        default_value = "https://js.stripe.com/v3/"
    )]
    pub stripe_js_url: String,
    /// Hours a checkout may stay open before its subscription expires.
    #[arg(long, env = "BILLING_CHECKOUT_TTL_HOURS", default_value_t = 23)]
    pub checkout_ttl_hours: u32,
    /// Milliseconds any one payment provider call may take.
    #[arg(long, env = "BILLING_PROVIDER_TIMEOUT_MS", default_value_t = 15_000)]
    pub provider_timeout_ms: u64,
    /// Milliseconds a webhook receiver has to answer one delivery attempt.
    #[arg(long, env = "BILLING_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Days after a failed renewal charge at which it is retried.
    #[arg(
        long,
        env = "BILLING_DUNNING_RETRY_DAYS",
        default_value = "1,3,5",
        value_delimiter = ','
    )]
    pub dunning_retry_days: Vec<u32>,
    /// After the last failed retry: `cancel` the subscription, or leave it `unpaid` (past due).
    #[arg(long, env = "BILLING_DUNNING_FINAL", default_value = "cancel", value_parser = ["cancel", "unpaid"])]
    pub dunning_final: String,
    /// Credit left when a customer's last subscription ends: `refund` it through the
    /// provider, or `keep` it for a later subscription.
    #[arg(long, env = "BILLING_REFUND_CREDIT", default_value = "refund", value_parser = ["refund", "keep"])]
    pub refund_credit: String,
    /// Seconds between runs of the billing clock's jobs.
    #[arg(long, env = "BILLING_JOBS_INTERVAL_SECS", default_value_t = 5)]
    pub jobs_interval_secs: u64,
    /// Milliseconds a websocket may take to send `connection_init` (then: close 4408).
    #[arg(long, env = "BILLING_WS_INIT_TIMEOUT_MS", default_value_t = 5_000)]
    pub ws_init_timeout_ms: u64,
    /// Subscriptions one websocket connection may hold at once.
    #[arg(long, env = "BILLING_WS_MAX_SUBSCRIPTIONS", default_value_t = 32)]
    pub ws_max_subscriptions: usize,
    /// GraphQL requests (and websocket upgrades) one bearer token may make per minute; 0: no limit.
    #[arg(long, env = "BILLING_RATE_LIMIT_PER_TOKEN", default_value_t = 60_000)]
    pub rate_limit_per_token: u32,
    /// GraphQL requests (and websocket upgrades) one client address may make per minute; 0: no limit.
    #[arg(
        long,
        env = "BILLING_RATE_LIMIT_PER_ADDRESS",
        default_value_t = 120_000
    )]
    pub rate_limit_per_address: u32,
    /// The merchant's name, printed on invoices and shown on the hosted pages.
    #[arg(long, env = "BILLING_MERCHANT_NAME", default_value = "Billing")]
    pub merchant_name: String,
    /// The merchant's address on invoices: lines separated by newlines or `;`.
    #[arg(long, env = "BILLING_MERCHANT_ADDRESS")]
    pub merchant_address: Option<String>,
    /// Signs invoice document and portal links (replicas must share one; when unset, a
    /// random one is stored in the database on first start).
    #[arg(long, env = "BILLING_DOCUMENT_SECRET", hide_env_values = true)]
    pub document_secret: Option<String>,
    /// Maximum size of the database connection pool; by default 16 on PostgreSQL, and on
    /// SQLite the number of CPUs, at least 2: one may hold the writer while another reads
    /// (each SQLite connection is a thread of its own and a page cache: more than the CPUs
    /// only adds hand-offs and memory; BENCHMARKS.md compares 4 and 2).
    #[arg(long, env = "BILLING_DB_POOL")]
    pub db_pool: Option<u32>,
    /// Adds `x-sql-statements` (the statements the request ran) to each GraphQL answer
    /// over HTTP: for tests and debugging.
    #[arg(long, env = "BILLING_DEBUG_STATEMENTS", value_parser = parse_flag, default_value = "0")]
    pub debug_statements: bool,
}

/// `HOST:PORT`, or `:PORT` for the loopback address.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("127.0.0.1{s}")
    } else {
        s.to_owned()
    };
    full.parse()
        .map_err(|_| format!("expected HOST:PORT or :PORT (e.g. 127.0.0.1:8080 or :0), got {s:?}"))
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!(
            "expected 1/0, true/false, yes/no or on/off, got {other:?}"
        )),
    }
}

impl Config {
    /// The pool size: as configured, or the engine's default.
    pub fn pool_size(&self) -> u32 {
        self.db_pool.unwrap_or_else(|| {
            if self.database_url.starts_with("postgres") {
                16
            } else {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                u32::try_from(cpus).unwrap_or(u32::MAX).max(2)
            }
        })
    }

    /// Settings for a test server: a given database, a free port, a known admin token.
    pub fn for_tests(database_url: impl Into<String>, admin_token: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: Some(admin_token.into()),
            default_currency: "USD".into(),
            test_clock: true,
            production: false,
            introspection: IntrospectionPolicy::Authenticated,
            max_body_bytes: 1 << 20,
            db_pool: Some(8),
            providers: vec!["sandbox".into()],
            default_provider: "sandbox".into(),
            public_url: None,
            sandbox_secret: Some("whsec_sandbox_test".into()),
            stripe_api_key: None,
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_webhook_secret: None,
            stripe_publishable_key: None,
            stripe_js_url: "https://js.stripe.com/v3/".into(),
            checkout_ttl_hours: 23,
            provider_timeout_ms: 1_000,
            webhook_timeout_ms: 2_000,
            dunning_retry_days: vec![1, 3, 5],
            dunning_final: "cancel".into(),
            refund_credit: "refund".into(),
            jobs_interval_secs: 3600,
            ws_init_timeout_ms: 5_000,
            ws_max_subscriptions: 32,
            rate_limit_per_token: 60_000,
            rate_limit_per_address: 120_000,
            merchant_name: "Example Merchant Ltd".into(),
            merchant_address: Some("1 Harbour Street; 0150 Oslo; Norway".into()),
            document_secret: None,
            debug_statements: true,
        }
    }
}

#[cfg(test)]
mod bind_tests {
    use super::parse_bind;

    #[test]
    fn a_bare_port_listens_on_loopback() {
        assert_eq!(parse_bind(":0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_bind(":8080").unwrap().to_string(), "127.0.0.1:8080");
        assert_eq!(
            parse_bind("0.0.0.0:9000").unwrap().to_string(),
            "0.0.0.0:9000"
        );
        assert!(parse_bind("8080").is_err());
        assert!(parse_bind("localhost").is_err());
    }
}
