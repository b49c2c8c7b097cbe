//! Metrics and the request log line. One Prometheus recorder per process (`metrics` with
//! `metrics-exporter-prometheus`, without a listener of its own): `GET /metrics` renders it
//! after the lines that belong to one server (its SQL statements, its open websockets),
//! so that several servers in one process (the tests) each report their own.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use providers::{CheckoutSession, HostedSession, PaymentOutcome, ProviderError};

pub const GRAPHQL_REQUEST_DURATION: &str = "billing_graphql_request_duration_seconds";
pub const PROVIDER_CALL_DURATION: &str = "billing_provider_call_duration_seconds";
pub const CLOCK_RUN_DURATION: &str = "billing_clock_run_duration_seconds";
pub const CLOCK_ITEMS: &str = "billing_clock_items_total";
pub const EVENT_HUB_LAG: &str = "billing_event_hub_lag_seconds";

/// Distinct operation names kept as labels; later new names are counted as `other`.
const MAX_OPERATION_NAMES: usize = 200;
/// Longer operation names are counted as `other`.
const MAX_OPERATION_NAME_LEN: usize = 64;
/// How often the recorder's histograms are drained when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle). `None` when
/// another recorder was installed first, by a program embedding this one.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match build() {
            Ok(handle) => {
                describe();
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(UPKEEP_EVERY);
                            upkeep.run_upkeep();
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "metrics upkeep thread not started");
                }
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics reports only the server's own lines");
                None
            }
        })
        .as_ref()
}

/// The process's recorder, when installed.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

fn build() -> Result<PrometheusHandle, BuildError> {
    const FAST: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const CALLS: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    const RUNS: &[f64] = &[
        0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    ];
    // Event times are whole seconds: finer buckets would say nothing.
    const LAG: &[f64] = &[1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(GRAPHQL_REQUEST_DURATION.into()), FAST)?
        .set_buckets_for_metric(Matcher::Full(PROVIDER_CALL_DURATION.into()), CALLS)?
        .set_buckets_for_metric(Matcher::Full(CLOCK_RUN_DURATION.into()), RUNS)?
        .set_buckets_for_metric(Matcher::Full(EVENT_HUB_LAG.into()), LAG)?
        .install_recorder()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_histogram!(
        GRAPHQL_REQUEST_DURATION,
        Unit::Seconds,
        "GraphQL operations over HTTP and websockets (not subscriptions), by operation name and outcome (ok or the first error's code)."
    );
    describe_histogram!(
        PROVIDER_CALL_DURATION,
        Unit::Seconds,
        "Payment provider calls, by provider, call and outcome."
    );
    describe_histogram!(
        CLOCK_RUN_DURATION,
        Unit::Seconds,
        "Runs of the billing clock's jobs, by outcome (ok or error)."
    );
    describe_counter!(CLOCK_ITEMS, "Items the billing clock processed, by kind.");
    describe_histogram!(
        EVENT_HUB_LAG,
        Unit::Seconds,
        "From an event's created_at (whole seconds) to its publication by this process's hub; not recorded under the test clock."
    );
}

/// The label for an operation name: `anonymous`, the name, or `other` past the limits (the
/// names come from clients).
pub fn operation_label(name: Option<&str>) -> String {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Some(name) = name else {
        return "anonymous".to_owned();
    };
    if name.len() > MAX_OPERATION_NAME_LEN {
        return "other".to_owned();
    }
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() >= MAX_OPERATION_NAMES {
        return "other".to_owned();
    }
    seen.insert(name.to_owned());
    name.to_owned()
}

/// One GraphQL request: the latency histogram and the request log line.
pub fn graphql_request(
    operation: Option<&str>,
    outcome: &str,
    latency: Duration,
    http_status: Option<u16>,
) {
    let operation = operation_label(operation);
    metrics::histogram!(
        GRAPHQL_REQUEST_DURATION,
        "operation" => operation.clone(),
        "outcome" => outcome.to_owned()
    )
    .record(latency);
    let latency_ms = (latency.as_secs_f64() * 10_000.0).round() / 10.0;
    match http_status {
        Some(status) => tracing::info!(
            target: "billing::http",
            operation,
            outcome,
            status,
            latency_ms,
            "graphql request"
        ),
        None => tracing::info!(
            target: "billing::http",
            operation,
            outcome,
            latency_ms,
            "graphql request"
        ),
    }
}

/// What a provider's answer was, as a label.
pub trait CallOutcome {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl CallOutcome for String {}
impl CallOutcome for () {}
impl CallOutcome for CheckoutSession {}
impl CallOutcome for HostedSession {}
/// A batch of charges: each answer is counted where it settles the invoice.
impl CallOutcome for Vec<Result<PaymentOutcome, ProviderError>> {}
impl CallOutcome for PaymentOutcome {
    fn outcome(&self) -> &'static str {
        match self {
            PaymentOutcome::Succeeded { .. } => "succeeded",
            PaymentOutcome::Pending { .. } => "pending",
            PaymentOutcome::Failed { .. } => "failed",
            PaymentOutcome::Unknown { .. } => "unknown",
        }
    }
}

fn error_outcome(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Rejected(_) => "rejected",
        ProviderError::Timeout => "timeout",
        ProviderError::Unreachable(_) => "unreachable",
        ProviderError::BadResponse(_) => "bad_response",
        ProviderError::BadSignature => "bad_signature",
        ProviderError::Config(_) => "config",
    }
}

/// One provider call's latency and outcome.
pub fn provider_call<T: CallOutcome>(
    provider: &'static str,
    call: &'static str,
    result: &Result<T, ProviderError>,
    latency: Duration,
) {
    let outcome = match result {
        Ok(v) => v.outcome(),
        Err(e) => error_outcome(e),
    };
    metrics::histogram!(
        PROVIDER_CALL_DURATION,
        "provider" => provider,
        "call" => call,
        "outcome" => outcome
    )
    .record(latency);
}

/// One run of the billing clock.
pub fn clock_run(report: Option<&crate::billing::jobs::JobReport>, latency: Duration) {
    let outcome = if report.is_some() { "ok" } else { "error" };
    metrics::histogram!(CLOCK_RUN_DURATION, "outcome" => outcome).record(latency);
    let r = report.copied().unwrap_or_default();
    for (kind, n) in [
        ("expired", r.expired),
        ("reconciled", r.reconciled),
        ("canceled", r.canceled),
        ("invoiced", r.invoiced),
        ("refunded", r.refunded),
    ] {
        metrics::counter!(CLOCK_ITEMS, "kind" => kind).increment(n as u64);
    }
}

/// An event published by the hub, `lag` after it was recorded.
pub fn event_published(lag: Duration) {
    metrics::histogram!(EVENT_HUB_LAG).record(lag);
}
