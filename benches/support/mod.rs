//! What the benchmarks share: the release server as a subprocess on a fresh SQLite file,
//! GraphQL over HTTP, a closed-loop load generator with latency percentiles, and readings
//! of the server's CPU time and peak memory from /proc.
#![allow(dead_code)] // each bench uses its own part

use std::error::Error;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

pub type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

pub const CONCURRENCY: usize = 32;
/// The baseline server's runtime threads, told apart by name to count their CPU time.
pub const RAW_THREAD_NAME: &str = "raw-baseline";
pub const WARM_UP: Duration = Duration::from_secs(2);

// ---- the server under test ------------------------------------------------------------

/// The server subprocess and its scratch directory: killed and removed when dropped,
/// also on an early error or a panic.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub base: String,
    pub token: String,
    pub db_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The server binary: `BILLING_BIN`, or the one `cargo bench` built with this bench (the
/// `bench` profile, which is the release profile, in `<target>/release/billing`): cargo
/// builds a package's binaries for its benches, so it is always current.
pub fn server_binary() -> AnyResult<PathBuf> {
    if let Some(bin) = std::env::var_os("BILLING_BIN") {
        let bin = PathBuf::from(bin);
        if let Some(newer) = newer_source(&bin) {
            eprintln!(
                "warning: BILLING_BIN {} is older than {}",
                bin.display(),
                newer.display()
            );
        }
        return Ok(bin);
    }
    Ok(PathBuf::from(env!("CARGO_BIN_EXE_billing")))
}

/// `cargo <args>` in this workspace, from inside a bench that cargo runs. Without the
/// variables cargo sets for the bench itself: build scripts watch some of them (ring's
/// reruns when `CARGO_PKG_NAME` or `CARGO_MANIFEST_DIR` changes), so a nested build that
/// inherited them would rebuild ring and everything above it, this crate included, and the
/// next `cargo bench` would rebuild it all again.
pub fn nested_cargo(args: &[&str]) -> AnyResult<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            )
        {
            command.env_remove(name);
        }
    }
    let status = command.status()?;
    if !status.success() {
        return Err(format!("cargo {} failed", args.join(" ")).into());
    }
    Ok(())
}

/// A source file changed after the binary was built, if any.
pub fn newer_source(bin: &Path) -> Option<PathBuf> {
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

pub fn free_port() -> AnyResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

/// Starts the server on a free port with a fresh SQLite file, plus `env`.
pub fn start_server(bin: &Path, env: &[(&str, String)]) -> AnyResult<Server> {
    start_server_on(bin, env, None)
}

/// A command for `program`, pinned to one CPU with `taskset` when `cpu` is given.
pub fn pinned_command(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// [`start_server`], pinned to `cpu` when given (`taskset` execs the server: same pid).
pub fn start_server_on(
    bin: &Path,
    env: &[(&str, String)],
    cpu: Option<usize>,
) -> AnyResult<Server> {
    let suffix = unique_suffix();
    let dir = std::env::temp_dir().join(format!("billing-bench-{suffix}"));
    std::fs::create_dir_all(&dir)?;
    let db_file = dir.join("bench.db");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let port = free_port()?;
    // Configured admin tokens must be at least 32 characters.
    let token = format!("bk_admin_bench_{suffix}_0123456789abcdef");
    let spawned = pinned_command(bin, cpu)
        .env("BILLING_BIND", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db_file.display()),
        )
        .env("BILLING_ADMIN_TOKEN", &token)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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

pub async fn wait_healthy(client: &reqwest::Client, server: &mut Server) -> AnyResult<()> {
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

pub async fn sql_statements(client: &reqwest::Client, base: &str) -> AnyResult<u64> {
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
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    proc_status_file_kib(&format!("/proc/{pid}/status"), field)
}

/// CPU time (user + system) the process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime of a /proc stat line.
pub fn stat_cpu_time(stat: &str) -> Option<Duration> {
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
pub fn raw_server_cpu_time() -> Option<Duration> {
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

pub fn clock_ticks_per_second() -> u64 {
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
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---- GraphQL over HTTP ----------------------------------------------------------------

pub async fn gql(client: &reqwest::Client, server: &Server, body: &Value) -> AnyResult<Value> {
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
pub async fn gql_one(
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

pub fn data_of(mut v: Value) -> AnyResult<Value> {
    if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
        return Err(format!("GraphQL errors: {errors}").into());
    }
    match v.get_mut("data").map(Value::take) {
        Some(d) if !d.is_null() => Ok(d),
        _ => Err(format!("no data in {v}").into()),
    }
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> AnyResult<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string at {pointer} in {v}").into())
}

// ---- load generation ------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), one per task.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

pub type MakeRequest = dyn Fn(&reqwest::Client, &mut Rng) -> reqwest::RequestBuilder + Send + Sync;

/// A response counts as good when it has `data` and no `errors`. Scanning with
/// `IgnoredAny` reads the whole body without building it.
#[derive(Deserialize)]
pub struct Envelope {
    pub data: Option<IgnoredAny>,
    #[serde(default)]
    pub errors: Option<Vec<IgnoredAny>>,
}

pub fn good_body(body: &[u8]) -> bool {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => e.data.is_some() && e.errors.is_none_or(|e| e.is_empty()),
        Err(_) => false,
    }
}

pub struct Run {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    pub body_bytes: u64,
}

pub async fn drive(client: &reqwest::Client, make: &Arc<MakeRequest>, duration: Duration) -> Run {
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

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

pub struct Row {
    pub name: &'static str,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub statements: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    /// False when the peak could not be reset before the workload (peak since start-up).
    pub rss_reset: bool,
    pub mean_body_bytes: f64,
    /// The server's CPU time per request (user + system), in microseconds.
    pub server_cpu_us: Option<f64>,
}

pub struct Workload<'a> {
    pub name: &'static str,
    pub make: Arc<MakeRequest>,
    /// Some(server) when the server under test serves it (SQL and RSS are measured).
    pub server: Option<&'a Server>,
}

pub async fn measure(
    client: &reqwest::Client,
    w: Workload<'_>,
    duration: Duration,
) -> AnyResult<Row> {
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
pub struct GqlTarget {
    pub url: String,
    pub auth: String,
}

impl GqlTarget {
    pub fn of(server: &Server) -> Self {
        GqlTarget {
            url: format!("{}/graphql", server.base),
            auth: format!("Bearer {}", server.token),
        }
    }

    pub fn post(&self, client: &reqwest::Client, body: String) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }
}

// ---- the run --------------------------------------------------------------------------

pub fn env_number(name: &str, default: u64) -> AnyResult<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a whole number").into()),
        Err(_) => Ok(default),
    }
}

pub fn machine() -> String {
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

pub fn proc_status_file_kib(file: &str, field: &str) -> Option<u64> {
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

/// The workloads' figures as a Markdown table.
pub fn print_rows(rows: &[Row]) {
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
}

/// `n` customers over GraphQL, ten `createCustomer` operations per request and sixteen
/// requests at a time; `input(i)` is the i-th customer's `CreateCustomerInput`.
pub async fn create_customers(
    client: &reqwest::Client,
    server: &Arc<Server>,
    n: usize,
    input: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> AnyResult<Vec<String>> {
    const QUERY: &str =
        "mutation($input: CreateCustomerInput!){ createCustomer(input:$input){ id } }";
    let batches: Vec<std::ops::Range<usize>> =
        (0..n).step_by(10).map(|s| s..(s + 10).min(n)).collect();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let input = Arc::new(input);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, server, queue, input) =
            (client.clone(), server.clone(), queue.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or_default();
                let Some(range) = next else { break };
                let ops: Vec<Value> = range
                    .map(|i| json!({ "query": QUERY, "variables": { "input": input(i) } }))
                    .collect();
                let Value::Array(answers) = gql(&client, &server, &Value::Array(ops)).await? else {
                    return Err("a batch did not answer a list".into());
                };
                for a in answers {
                    ids.push(str_at(&data_of(a)?, "/createCustomer/id")?.to_owned());
                }
            }
            AnyResult::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}
