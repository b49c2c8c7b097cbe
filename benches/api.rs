//! End-to-end API benchmark: the real release server binary on a fresh SQLite file,
//! driven over HTTP from this process, next to a hand-written axum + sqlx baseline.
//!
//! Run with `cargo build --release && cargo bench --bench api`. See BENCHMARKS.md.
//!
//! Environment:
//! - `BENCH_SECONDS`: measured seconds per workload (default 10), after a 2 s warm-up.
//! - `BENCH_CUSTOMERS`: customers to seed (default 10000).
//! - `BILLING_BIN`: the server binary (default `<target>/release/billing`).

use std::error::Error;
use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm::sqlx::SqlitePool;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use uuid::Uuid;

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const CONCURRENCY: usize = 32;
/// The baseline server's runtime threads, told apart by name to count their CPU time.
const RAW_THREAD_NAME: &str = "raw-baseline";
const SEED_CONCURRENCY: usize = 16;
const SEED_BATCH: usize = 10;
const WARM_UP: Duration = Duration::from_secs(2);
const PRODUCTS: usize = 10;
const PLANS: usize = 20;
const CURRENCIES: [&str; 2] = ["USD", "EUR"];
const REGIONS: [&str; 2] = ["us-east", "eu-west"];
const TIERS: [Option<&str>; 3] = [Some("10"), Some("100"), None];

const CUSTOMER_QUERY: &str =
    "query($id: ID!){ customer(id:$id){ id externalId name email currency } }";
const CATALOG_QUERY: &str = "{ plans { id name phases { kind prices { id currency region \
     maxQuantity unitAmount interval product { id name } } } } }";
const QUOTE_QUERY: &str = "query($plan: ID!, $product: ID!){ quote(input:{planId:$plan, \
     productId:$product, currency:\"USD\", region:\"us-east\", quantity:\"42\"}) \
     { matched unitAmount amount phase } }";

/// id, external_id, name, email, currency
type CustomerRow = (Uuid, String, String, String, String);

fn main() -> AnyResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

// ---- the server under test ------------------------------------------------------------

/// The server subprocess and its scratch directory: killed and removed when dropped,
/// also on an early error or a panic.
struct Server {
    child: Child,
    dir: PathBuf,
    base: String,
    token: String,
    db_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The release binary; built once (`cargo build --release --bin billing`) when missing.
fn server_binary() -> AnyResult<PathBuf> {
    if let Some(bin) = std::env::var_os("BILLING_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let bin = target_dir().join("release").join("billing");
    if !bin.exists() {
        eprintln!(
            "{} is missing: running cargo build --release --bin billing",
            bin.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "billing"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()?;
        if !status.success() {
            return Err("cargo build --release --bin billing failed".into());
        }
    } else if let Some(newer) = newer_source(&bin) {
        eprintln!(
            "warning: {} is newer than {}; run `cargo build --release` to measure current code",
            newer.display(),
            bin.display()
        );
    }
    Ok(bin)
}

/// A source file changed after the binary was built, if any.
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack: Vec<PathBuf> = ["src", "entity/src", "migration/src", "providers/src"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.metadata().and_then(|m| m.modified()).ok()? > built {
                return Some(path);
            }
        }
    }
    None
}

fn free_port() -> AnyResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

fn start_server(bin: &Path) -> AnyResult<Server> {
    let suffix = unique_suffix();
    let dir = std::env::temp_dir().join(format!("billing-bench-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let db_file = dir.join("bench.db");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let port = free_port()?;
    let token = format!("bk_admin_bench_{suffix}");
    let spawned = Command::new(bin)
        .env("BILLING_BIND", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db_file.display()),
        )
        .env("BILLING_ADMIN_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("cannot start {}: {e}", bin.display()).into());
        }
    };
    Ok(Server {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
        token,
        db_file,
    })
}

async fn wait_healthy(client: &reqwest::Client, server: &mut Server) -> AnyResult<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait()? {
            return Err(format!("server exited with {status}:\n{}", server.log_tail()).into());
        }
        if let Ok(r) = client.get(format!("{}/health", server.base)).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("server not healthy after 30 s:\n{}", server.log_tail()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sql_statements(client: &reqwest::Client, base: &str) -> AnyResult<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("billing_sql_statements_total "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no billing_sql_statements_total in /metrics:\n{text}").into())
}

/// A field of /proc/<pid>/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_status_file_kib(&format!("/proc/{pid}/status"), field)
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of a /proc stat line.
fn stat_cpu_time(stat: &str) -> Option<Duration> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// CPU time of this process's baseline-server threads: its runtime's and sqlx's.
fn raw_server_cpu_time() -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(RAW_THREAD_NAME) || comm.starts_with("sqlx-sqlite") {
            let stat = task.path().join("stat");
            total += stat_cpu_time(&std::fs::read_to_string(stat).ok()?)?;
        }
    }
    Some(total)
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Resets the process's peak RSS (Linux ≥ 4.0), so that VmHWM covers one workload only.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---- GraphQL over HTTP ----------------------------------------------------------------

async fn gql(client: &reqwest::Client, server: &Server, body: &Value) -> AnyResult<Value> {
    let resp = client
        .post(format!("{}/graphql", server.base))
        .bearer_auth(&server.token)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let value: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {value}").into());
    }
    Ok(value)
}

/// One operation: its `data`, or its errors as the error.
async fn gql_one(
    client: &reqwest::Client,
    server: &Server,
    query: &str,
    variables: Value,
) -> AnyResult<Value> {
    let v = gql(
        client,
        server,
        &json!({ "query": query, "variables": variables }),
    )
    .await?;
    data_of(v)
}

fn data_of(mut v: Value) -> AnyResult<Value> {
    if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
        return Err(format!("GraphQL errors: {errors}").into());
    }
    match v.get_mut("data").map(Value::take) {
        Some(d) if !d.is_null() => Ok(d),
        _ => Err(format!("no data in {v}").into()),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> AnyResult<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string at {pointer} in {v}").into())
}

// ---- seeding --------------------------------------------------------------------------

struct Seeded {
    products: Vec<String>,
    plans: Vec<String>,
    customers: Vec<String>,
}

async fn seed(
    client: &reqwest::Client,
    server: &Arc<Server>,
    customers: usize,
) -> AnyResult<Seeded> {
    let started = Instant::now();
    let mut products = Vec::with_capacity(PRODUCTS);
    for i in 0..PRODUCTS {
        let d = gql_one(
            client,
            server,
            "mutation($input: CreateProductInput!){ createProduct(input:$input){ id } }",
            json!({ "input": {
                "name": format!("Bench package {i}"),
                "kind": "PACKAGE",
                "unitType": "INSTANCE",
            }}),
        )
        .await?;
        products.push(str_at(&d, "/createProduct/id")?.to_owned());
    }

    let mut plans = Vec::with_capacity(PLANS);
    let phases = [
        ("TRIAL", Some(json!({ "count": 14, "unit": "DAY" }))),
        ("DISCOUNT", Some(json!({ "count": 1, "unit": "MONTH" }))),
        ("FINAL", None),
    ];
    for plan in 0..PLANS {
        let phase_inputs: Vec<Value> = phases
            .iter()
            .enumerate()
            .map(|(pi, (kind, duration))| {
                let mut prices = Vec::new();
                for (product_index, product) in products.iter().enumerate() {
                    for currency in CURRENCIES {
                        for region in REGIONS {
                            for (tier, max) in TIERS.iter().enumerate() {
                                // Cheaper in later phases and higher tiers; exact decimals.
                                let cents = 100 + 10 * product_index + plan - 5 * tier - 20 * pi;
                                prices.push(json!({
                                    "productId": product,
                                    "currency": currency,
                                    "region": region,
                                    "maxQuantity": max,
                                    "unitAmount": format!("{}.{:02}", cents / 100, cents % 100),
                                    "interval": "HOUR",
                                }));
                            }
                        }
                    }
                }
                json!({ "kind": kind, "duration": duration, "prices": prices })
            })
            .collect();
        let d = gql_one(
            client,
            server,
            "mutation($input: CreatePlanInput!){ createPlan(input:$input){ id } }",
            json!({ "input": { "name": format!("Bench plan {plan}"), "phases": phase_inputs } }),
        )
        .await?;
        plans.push(str_at(&d, "/createPlan/id")?.to_owned());
    }
    let catalog_done = started.elapsed();

    // Customers: batches of SEED_BATCH operations per request, SEED_CONCURRENCY requests at once.
    let batches: Vec<std::ops::Range<usize>> = (0..customers)
        .step_by(SEED_BATCH)
        .map(|s| s..(s + SEED_BATCH).min(customers))
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let mut tasks = Vec::new();
    for _ in 0..SEED_CONCURRENCY {
        let (client, server, queue) = (client.clone(), server.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or_default();
                let Some(range) = next else { break };
                let ops: Vec<Value> = range
                    .map(|i| {
                        json!({
                            "query": "mutation($input: CreateCustomerInput!){ createCustomer(input:$input){ id } }",
                            "variables": { "input": {
                                "externalId": format!("bench-customer-{i}"),
                                "name": format!("Bench Customer {i}"),
                                "email": format!("customer{i}@bench.example.com"),
                                "currency": CURRENCIES[i % 2],
                                "region": REGIONS[i % 2],
                            }},
                        })
                    })
                    .collect();
                let answers = gql(&client, &server, &Value::Array(ops)).await?;
                let Value::Array(answers) = answers else {
                    return Err(format!("a batch answered {answers}").into());
                };
                for a in answers {
                    let d = data_of(a)?;
                    ids.push(str_at(&d, "/createCustomer/id")?.to_owned());
                }
            }
            AnyResult::Ok(ids)
        }));
    }
    let mut customer_ids = Vec::with_capacity(customers);
    for t in tasks {
        customer_ids.extend(t.await??);
    }
    println!(
        "seeded {PRODUCTS} products, {PLANS} plans ({} prices) in {:.1} s, {} customers in {:.1} s",
        PLANS * 3 * PRODUCTS * CURRENCIES.len() * REGIONS.len() * TIERS.len(),
        catalog_done.as_secs_f64(),
        customer_ids.len(),
        (started.elapsed() - catalog_done).as_secs_f64(),
    );
    Ok(Seeded {
        products,
        plans,
        customers: customer_ids,
    })
}

// ---- the raw axum + sqlx baseline -----------------------------------------------------

async fn raw_customer(State(pool): State<SqlitePool>, UrlPath(id): UrlPath<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let row: Result<Option<CustomerRow>, _> = sea_orm::sqlx::query_as(
        "SELECT id, external_id, name, email, currency FROM customer WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some((id, external_id, name, email, currency))) => Json(json!({
            "data": { "customer": {
                "id": id.to_string(),
                "externalId": external_id,
                "name": name,
                "email": email,
                "currency": currency,
            }}
        }))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The baseline server on its own runtime and threads, as a separate process would have.
struct RawServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_raw_server(db_file: &Path) -> AnyResult<RawServer> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let options = SqliteConnectOptions::new()
        .filename(db_file)
        .read_only(true);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name(RAW_THREAD_NAME.to_owned())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .thread_name(RAW_THREAD_NAME)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let pool = match SqlitePoolOptions::new()
                    .max_connections(16)
                    .connect_with(options)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let app = axum::Router::new()
                    .route("/customer/{id}", get(raw_customer))
                    .with_state(pool.clone());
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = axum::serve(listener, app).into_future() => {},
                    _ = stopped => {},
                }
                pool.close().await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(RawServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }),
        Ok(Err(e)) => Err(format!("raw baseline failed to start: {e}").into()),
        Err(_) => Err("raw baseline thread died".into()),
    }
}

// ---- load generation ------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), one per task.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

type MakeRequest = dyn Fn(&reqwest::Client, &mut Rng) -> reqwest::RequestBuilder + Send + Sync;

/// A response counts as good when it has `data` and no `errors`. Scanning with
/// `IgnoredAny` reads the whole body without building it.
#[derive(Deserialize)]
struct Envelope {
    data: Option<IgnoredAny>,
    #[serde(default)]
    errors: Option<Vec<IgnoredAny>>,
}

fn good_body(body: &[u8]) -> bool {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => e.data.is_some() && e.errors.is_none_or(|e| e.is_empty()),
        Err(_) => false,
    }
}

struct Run {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    body_bytes: u64,
}

async fn drive(client: &reqwest::Client, make: &Arc<MakeRequest>, duration: Duration) -> Run {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for t in 0..CONCURRENCY {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(t as u64 + 1);
            let mut latencies = Vec::with_capacity(1 << 14);
            let mut errors = 0u64;
            let mut bytes = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let ok = match make(&client, &mut rng).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => match r.bytes().await {
                        Ok(b) => {
                            bytes += b.len() as u64;
                            good_body(&b)
                        }
                        Err(_) => false,
                    },
                    Ok(_) | Err(_) => false,
                };
                let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                latencies.push(us);
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors, bytes)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut body_bytes = 0;
    for t in tasks {
        if let Ok((l, e, b)) = t.await {
            latencies_us.extend(l);
            errors += e;
            body_bytes += b;
        } else {
            errors += 1;
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Run {
        requests: latencies_us.len() as u64,
        errors,
        elapsed,
        latencies_us,
        body_bytes,
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

struct Row {
    name: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    statements: Option<u64>,
    peak_rss_kib: Option<u64>,
    /// False when the peak could not be reset before the workload (peak since start-up).
    rss_reset: bool,
    mean_body_bytes: f64,
    /// The server's CPU time per request (user + system), in microseconds.
    server_cpu_us: Option<f64>,
}

struct Workload<'a> {
    name: &'static str,
    make: Arc<MakeRequest>,
    /// Some(server) when the server under test serves it (SQL and RSS are measured).
    server: Option<&'a Server>,
}

async fn measure(client: &reqwest::Client, w: Workload<'_>, duration: Duration) -> AnyResult<Row> {
    eprintln!("{}: warm-up {} s", w.name, WARM_UP.as_secs());
    let warm = drive(client, &w.make, WARM_UP).await;
    if warm.errors > 0 {
        eprintln!("{}: {} errors during warm-up", w.name, warm.errors);
    }
    let rss_reset = w.server.is_some_and(|s| reset_peak_rss(s.pid()));
    let before = match w.server {
        Some(s) => Some(sql_statements(client, &s.base).await?),
        None => None,
    };
    let server_cpu = || match w.server {
        Some(s) => cpu_time(s.pid()),
        None => raw_server_cpu_time(),
    };
    let cpu_before = server_cpu();
    eprintln!("{}: measuring {} s", w.name, duration.as_secs_f64());
    let run = drive(client, &w.make, duration).await;
    let cpu_after = server_cpu();
    let (statements, peak_rss_kib) = match w.server {
        Some(s) => {
            let after = sql_statements(client, &s.base).await?;
            (before.map(|b| after - b), proc_status_kib(s.pid(), "VmHWM"))
        }
        None => (None, None),
    };
    Ok(Row {
        name: w.name,
        rps: run.requests as f64 / run.elapsed.as_secs_f64(),
        p50_ms: percentile(&run.latencies_us, 50.0),
        p99_ms: percentile(&run.latencies_us, 99.0),
        requests: run.requests,
        errors: run.errors,
        statements,
        peak_rss_kib,
        rss_reset,
        mean_body_bytes: run.body_bytes as f64 / run.requests.max(1) as f64,
        server_cpu_us: cpu_before
            .zip(cpu_after)
            .map(|(b, a)| a.saturating_sub(b).as_secs_f64() * 1e6 / run.requests.max(1) as f64),
    })
}

/// Where and as whom the load's GraphQL requests go.
#[derive(Clone)]
struct GqlTarget {
    url: String,
    auth: String,
}

impl GqlTarget {
    fn of(server: &Server) -> Self {
        GqlTarget {
            url: format!("{}/graphql", server.base),
            auth: format!("Bearer {}", server.token),
        }
    }

    fn post(&self, client: &reqwest::Client, body: String) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }
}

// ---- sanity checks: each workload answers what it should, before it is timed ----------

async fn check_workloads(
    client: &reqwest::Client,
    server: &Server,
    raw: &RawServer,
    seeded: &Seeded,
) -> AnyResult<()> {
    let id = &seeded.customers[seeded.customers.len() / 2];
    let d = gql_one(client, server, CUSTOMER_QUERY, json!({ "id": id })).await?;
    let graphql_customer = d["customer"].clone();
    if graphql_customer["id"] != json!(id) {
        return Err(format!("customer query answered {d}").into());
    }
    let raw_answer: Value = client
        .get(format!("http://{}/customer/{id}", raw.addr))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if raw_answer["data"]["customer"] != graphql_customer {
        return Err(format!(
            "the baseline answered {raw_answer}, GraphQL answered {graphql_customer}"
        )
        .into());
    }

    let d = gql_one(client, server, CATALOG_QUERY, json!({})).await?;
    let plans = d["plans"].as_array().map_or(0, Vec::len);
    let prices: usize = d["plans"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["phases"].as_array().into_iter().flatten())
        .map(|ph| ph["prices"].as_array().map_or(0, Vec::len))
        .sum();
    let expected = PLANS * 3 * PRODUCTS * CURRENCIES.len() * REGIONS.len() * TIERS.len();
    if plans != PLANS || prices != expected {
        return Err(format!(
            "catalog has {plans} plans, {prices} prices; expected {PLANS}, {expected}"
        )
        .into());
    }

    let d = gql_one(
        client,
        server,
        QUOTE_QUERY,
        json!({ "plan": seeded.plans[0], "product": seeded.products[0] }),
    )
    .await?;
    // Plan 0, product 0, TRIAL phase (the customer starts now), tier ≤ 100: 1.00 − 0.05.
    if d["quote"]["matched"] != json!(true)
        || d["quote"]["phase"] != json!("TRIAL")
        || d["quote"]["unitAmount"]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            != Some(0.95)
    {
        return Err(format!("quote answered {d}").into());
    }
    Ok(())
}

// ---- the run --------------------------------------------------------------------------

fn env_number(name: &str, default: u64) -> AnyResult<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole number").into()),
        Err(_) => Ok(default),
    }
}

async fn run() -> AnyResult<()> {
    let seconds = env_number("BENCH_SECONDS", 10)?.max(1);
    let customers = usize::try_from(env_number("BENCH_CUSTOMERS", 10_000)?.max(1))?;
    let duration = Duration::from_secs(seconds);
    let bin = server_binary()?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .timeout(Duration::from_secs(30))
        .build()?;

    let mut server = start_server(&bin)?;
    wait_healthy(&client, &mut server).await?;
    let server = Arc::new(server);
    let seeded = seed(&client, &server, customers).await?;
    let raw = start_raw_server(&server.db_file)?;
    check_workloads(&client, &server, &raw, &seeded).await?;

    let customer_ids = Arc::new(seeded.customers.clone());
    let (plan_ids, product_ids) = (
        Arc::new(seeded.plans.clone()),
        Arc::new(seeded.products.clone()),
    );

    let mut rows = Vec::new();

    // (a) one customer by id over GraphQL.
    let target = GqlTarget::of(&server);
    let ids = customer_ids.clone();
    let make: Arc<MakeRequest> = Arc::new(move |client, rng| {
        let id = &ids[rng.below(ids.len())];
        let body = json!({ "query": CUSTOMER_QUERY, "variables": { "id": id } }).to_string();
        target.post(client, body)
    });
    rows.push(
        measure(
            &client,
            Workload {
                name: "customer by id (GraphQL)",
                make,
                server: Some(&server),
            },
            duration,
        )
        .await?,
    );

    // (d) the same read, hand-written: axum + sqlx on the same SQLite file.
    let ids = customer_ids.clone();
    let raw_base = format!("http://{}/customer/", raw.addr);
    let make: Arc<MakeRequest> = Arc::new(move |client, rng| {
        let id = &ids[rng.below(ids.len())];
        client.get(format!("{raw_base}{id}"))
    });
    rows.push(
        measure(
            &client,
            Workload {
                name: "customer by id (raw axum+sqlx)",
                make,
                server: None,
            },
            duration,
        )
        .await?,
    );

    // (b) the whole nested catalog.
    let target = GqlTarget::of(&server);
    let body = json!({ "query": CATALOG_QUERY }).to_string();
    let make: Arc<MakeRequest> = Arc::new(move |client, _| target.post(client, body.clone()));
    rows.push(
        measure(
            &client,
            Workload {
                name: "nested catalog (GraphQL)",
                make,
                server: Some(&server),
            },
            duration,
        )
        .await?,
    );

    // (c) a quote for a random plan and product.
    let target = GqlTarget::of(&server);
    let make: Arc<MakeRequest> = Arc::new(move |client, rng| {
        let plan = &plan_ids[rng.below(plan_ids.len())];
        let product = &product_ids[rng.below(product_ids.len())];
        let body = json!({
            "query": QUOTE_QUERY,
            "variables": { "plan": plan, "product": product },
        })
        .to_string();
        target.post(client, body)
    });
    rows.push(
        measure(
            &client,
            Workload {
                name: "quote (GraphQL)",
                make,
                server: Some(&server),
            },
            duration,
        )
        .await?,
    );

    drop(raw);
    print_report(&rows, seconds, customers);
    Ok(())
}

/// CPU model, logical CPUs and memory, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib =
        proc_status_file_kib("/proc/meminfo", "MemTotal").unwrap_or(0) as f64 / (1024.0 * 1024.0);
    format!("{model}, {cpus} logical CPUs, {mem_gib:.1} GiB RAM")
}

fn proc_status_file_kib(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

fn print_report(rows: &[Row], seconds: u64, customers: usize) {
    println!();
    println!("machine: {}", machine());
    println!(
        "{CONCURRENCY} connections, {seconds} s per workload after a {} s warm-up, {customers} customers",
        WARM_UP.as_secs()
    );
    println!();
    println!(
        "| workload | requests/s | p50 ms | p99 ms | requests | errors | KiB/response | SQL statements | SQL/request | server CPU µs/request | server peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut peak_not_reset = false;
    for r in rows {
        let (stmts, per_request) = match r.statements {
            Some(s) => (
                s.to_string(),
                format!("{:.4}", s as f64 / r.requests.max(1) as f64),
            ),
            None => ("—".to_owned(), "1 (by construction)".to_owned()),
        };
        let rss = match r.peak_rss_kib {
            Some(k) if r.rss_reset => format!("{:.1}", k as f64 / 1024.0),
            Some(k) => {
                peak_not_reset = true;
                format!("{:.1}*", k as f64 / 1024.0)
            }
            None => "—".to_owned(),
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.2} | {} | {} | {} | {} |",
            r.name,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.requests,
            r.errors,
            r.mean_body_bytes / 1024.0,
            stmts,
            per_request,
            r.server_cpu_us
                .map_or("—".to_owned(), |c| format!("{c:.0}")),
            rss
        );
    }
    if peak_not_reset {
        println!("\n* peak since server start-up (resetting VmHWM was refused)");
    }
    let graphql = rows.iter().find(|r| r.name == "customer by id (GraphQL)");
    let raw = rows
        .iter()
        .find(|r| r.name == "customer by id (raw axum+sqlx)");
    if let (Some(g), Some(r)) = (graphql, raw) {
        println!();
        println!(
            "customer GraphQL / raw axum+SQL throughput: {:.1}% (target ≥ 60%)",
            100.0 * g.rps / r.rps
        );
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!("WARNING: {errors} requests failed (non-200 or GraphQL errors)");
    }
}
