//! End-to-end API benchmark: the real release server binary on a fresh SQLite file, loaded
//! by `wrk` in its own process (installed with apt-get when missing), next to two
//! reference servers in their own processes: a hand-written axum + sqlx endpoint
//! (`examples/bench_raw_baseline.rs`) and a naive async-graphql + SeaORM server
//! (`examples/bench_naive_graphql.rs`). With two or more CPUs the servers run on CPU 0 and
//! wrk on CPU 1 (`taskset`), every server with `TOKIO_WORKER_THREADS=1`.
//!
//! Run with `cargo bench --bench api`. See BENCHMARKS.md.
//!
//! Environment:
//! - `BENCH_SECONDS`: measured seconds per workload (default 10), after a 2 s warm-up.
//! - `BENCH_CUSTOMERS`: customers to seed (default 10000).
//! - `BENCH_ONLY`: a comma-separated subset of the workloads `customer,raw,naive,quote,
//!   typename,catalog` (default all).
//! - `BILLING_BIN`: the server binary (default: the one `cargo bench` built for this bench).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::*;

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

fn main() -> AnyResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
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

    let customer_ids = create_customers(client, server, customers, |i| {
        json!({
            "externalId": format!("bench-customer-{i}"),
            "name": format!("Bench Customer {i}"),
            "email": format!("customer{i}@bench.example.com"),
            "currency": CURRENCIES[i % 2],
            "region": REGIONS[i % 2],
        })
    })
    .await?;
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

// ---- the reference servers, each in its own process ----------------------------------

/// A reference server (an example binary) on the seeded SQLite file, killed when dropped.
struct Reference {
    child: std::process::Child,
    base: String,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reference {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `examples/<name>.rs` (built by [`build_examples`]) on a free port, pinned like
/// the server, and waits until it accepts connections.
async fn start_reference(name: &str, db_file: &Path, cpu: Option<usize>) -> AnyResult<Reference> {
    let bin = target_dir().join("release").join("examples").join(name);
    let port = free_port()?;
    let child = pinned_command(&bin, cpu)
        .arg(db_file)
        .arg(format!("127.0.0.1:{port}"))
        .env("TOKIO_WORKER_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut reference = Reference {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = reference.child.try_wait()? {
            return Err(format!("{name} exited with {status}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} not listening after 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reference.child.try_wait()?;
    Ok(reference)
}

/// The two reference examples, built with the profile `cargo bench` used for this bench
/// (`cargo build --profile bench --example …`): cargo bench builds the server binary but not
/// examples. It reuses everything `cargo bench` compiled, so it only compiles (or, when they
/// are current, checks) the two examples.
fn build_examples() -> AnyResult<()> {
    nested_cargo(&[
        "build",
        "--profile",
        "bench",
        "--example",
        RAW,
        "--example",
        NAIVE,
    ])
}

const RAW: &str = "bench_raw_baseline";
const NAIVE: &str = "bench_naive_graphql";

// ---- wrk: the load generator, in its own process --------------------------------------

/// wrk on PATH, installed with apt-get (Debian package `wrk`) when missing.
fn ensure_wrk() -> AnyResult<()> {
    let present = || {
        Command::new("wrk")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if present() {
        return Ok(());
    }
    eprintln!("wrk is missing: installing the Debian package");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .status()
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "wrk"])?;
    if present() {
        Ok(())
    } else {
        Err("wrk could not be installed (apt-get install wrk)".into())
    }
}

struct WrkRun {
    requests: u64,
    elapsed: Duration,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    bytes: u64,
}

/// Runs wrk for `duration` with [`CONCURRENCY`] keep-alive connections against `base`,
/// each request a random line of `requests` (see benches/wrk/requests.lua).
fn run_wrk(
    base: &str,
    requests: &Path,
    auth: Option<&str>,
    duration: Duration,
    cpu: Option<usize>,
) -> AnyResult<WrkRun> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/wrk/requests.lua");
    let out = pinned_command(Path::new("wrk"), cpu)
        .args(["-t1", &format!("-c{CONCURRENCY}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script)
        .arg(base)
        .env("BENCH_WRK_FILE", requests)
        .env("BENCH_WRK_AUTH", auth.unwrap_or(""))
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("WRK_RESULT "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result ({}):\n{text}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(WrkRun {
        requests: field("requests"),
        elapsed: Duration::from_micros(field("duration_us")),
        errors: field("bad") + field("connect") + field("read") + field("write") + field("timeout"),
        p50_ms: field("p50_us") as f64 / 1000.0,
        p99_ms: field("p99_us") as f64 / 1000.0,
        bytes: field("bytes"),
    })
}

/// One workload's requests, one a line, in a file wrk's script reads.
fn request_file(dir: &Path, name: &str, lines: impl Iterator<Item = String>) -> AnyResult<PathBuf> {
    let path = dir.join(format!("{name}.requests"));
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

fn graphql_lines(bodies: impl Iterator<Item = Value>) -> impl Iterator<Item = String> {
    bodies.map(|b| format!("POST /graphql {b}"))
}

/// What one workload measured.
struct Measured {
    name: &'static str,
    /// Which process served it: "this server" or a reference's name.
    served_by: &'static str,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    kib_per_response: f64,
    /// SQL statements per request (this server only: its counter at /metrics).
    sql_per_request: Option<f64>,
    cpu_us: Option<f64>,
    peak_rss_mib: Option<f64>,
}

struct Target<'a> {
    served_by: &'static str,
    base: &'a str,
    pid: u32,
    /// Some(server) when it is this server (statements are counted).
    server: Option<&'a Server>,
}

async fn measure_wrk(
    client: &reqwest::Client,
    name: &'static str,
    target: &Target<'_>,
    requests: &Path,
    auth: Option<&str>,
    duration: Duration,
    load_cpu: Option<usize>,
) -> AnyResult<Measured> {
    eprintln!("{name}: warm-up {} s", WARM_UP.as_secs());
    let warm = run_wrk(target.base, requests, auth, WARM_UP, load_cpu)?;
    if warm.errors > 0 {
        eprintln!("{name}: {} errors during warm-up", warm.errors);
    }
    let rss_reset = reset_peak_rss(target.pid);
    let statements = match target.server {
        Some(s) => Some(sql_statements(client, &s.base).await?),
        None => None,
    };
    let cpu_before = cpu_time(target.pid);
    eprintln!("{name}: measuring {} s", duration.as_secs());
    let run = run_wrk(target.base, requests, auth, duration, load_cpu)?;
    let cpu_after = cpu_time(target.pid);
    let statements = match (target.server, statements) {
        (Some(s), Some(before)) => Some(sql_statements(client, &s.base).await? - before),
        _ => None,
    };
    let n = run.requests.max(1) as f64;
    Ok(Measured {
        name,
        served_by: target.served_by,
        rps: run.requests as f64 / run.elapsed.as_secs_f64().max(1e-9),
        p50_ms: run.p50_ms,
        p99_ms: run.p99_ms,
        requests: run.requests,
        errors: run.errors,
        // wrk counts headers too: about 100 bytes a response.
        kib_per_response: run.bytes as f64 / n / 1024.0,
        sql_per_request: statements.map(|s| s as f64 / n),
        cpu_us: cpu_before
            .zip(cpu_after)
            .map(|(b, a)| a.saturating_sub(b).as_secs_f64() * 1e6 / n),
        peak_rss_mib: proc_status_kib(target.pid, "VmHWM")
            .filter(|_| rss_reset)
            .map(|k| k as f64 / 1024.0),
    })
}

// ---- sanity checks: each workload answers what it should, before it is timed ----------

async fn check_workloads(
    client: &reqwest::Client,
    server: &Server,
    raw: &Reference,
    naive: &Reference,
    seeded: &Seeded,
) -> AnyResult<()> {
    let id = &seeded.customers[seeded.customers.len() / 2];
    let d = gql_one(client, server, CUSTOMER_QUERY, json!({ "id": id })).await?;
    let graphql_customer = d["customer"].clone();
    if graphql_customer["id"] != json!(id) {
        return Err(format!("customer query answered {d}").into());
    }
    let raw_answer: Value = client
        .get(format!("{}/customer/{id}", raw.base))
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
    let naive_answer: Value = client
        .post(format!("{}/graphql", naive.base))
        .json(&json!({ "query": CUSTOMER_QUERY, "variables": { "id": id } }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if naive_answer["data"]["customer"] != graphql_customer {
        return Err(format!(
            "the naive stack answered {naive_answer}, this server answered {graphql_customer}"
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
    let d = gql_one(client, server, TYPENAME_QUERY, json!({})).await?;
    if d["__typename"] != json!("QueryRoot") {
        return Err(format!("{{ __typename }} answered {d}").into());
    }
    Ok(())
}

const TYPENAME_QUERY: &str = "{ __typename }";

/// The CPUs to pin the server (and the references) and wrk to: 0 and 1 when there are
/// two or more and `taskset` works; otherwise nothing is pinned.
fn pinning() -> (Option<usize>, Option<usize>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if cpus >= 2 && taskset {
        (Some(0), Some(1))
    } else {
        (None, None)
    }
}

/// Whether `BENCH_ONLY` (a comma-separated subset of customer, raw, naive, quote, typename,
/// catalog) names this workload; every workload when it is unset.
fn wanted(workload: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|w| w.trim() == workload),
        Err(_) => true,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

async fn run() -> AnyResult<()> {
    let seconds = env_number("BENCH_SECONDS", 10)?.max(1);
    let customers = usize::try_from(env_number("BENCH_CUSTOMERS", 10_000)?.max(1))?;
    let duration = Duration::from_secs(seconds);
    ensure_wrk()?;
    build_examples()?;
    let bin = server_binary()?;
    let (server_cpu, load_cpu) = pinning();
    // Read before this process is pinned to one CPU.
    let machine = machine();
    // This process only seeds and reads /proc: keep it off the server's CPU as well.
    if let Some(cpu) = load_cpu {
        let _ = Command::new("taskset")
            .args([
                "-a",
                "-p",
                "-c",
                &cpu.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .timeout(Duration::from_secs(30))
        .build()?;

    let mut server = start_server_on(
        &bin,
        &[
            ("TOKIO_WORKER_THREADS", "1".to_owned()),
            // 32 connections make far more than the default 60,000 requests a minute.
            ("BILLING_RATE_LIMIT_PER_TOKEN", "0".to_owned()),
            ("BILLING_RATE_LIMIT_PER_ADDRESS", "0".to_owned()),
        ],
        server_cpu,
    )?;
    wait_healthy(&client, &mut server).await?;
    let server = Arc::new(server);
    let seeded = seed(&client, &server, customers).await?;
    let raw = start_reference(RAW, &server.db_file, server_cpu).await?;
    let naive = start_reference(NAIVE, &server.db_file, server_cpu).await?;
    check_workloads(&client, &server, &raw, &naive, &seeded).await?;
    let load_before = load_average();

    let dir = &server.dir;
    let auth = format!("Bearer {}", server.token);
    let this = Target {
        served_by: "this server",
        base: &server.base,
        pid: server.pid(),
        server: Some(&server),
    };
    let customer_bodies = || {
        graphql_lines(
            seeded
                .customers
                .iter()
                .map(|id| json!({ "query": CUSTOMER_QUERY, "variables": { "id": id } })),
        )
    };
    let customer_file = request_file(dir, "customer", customer_bodies())?;
    let raw_file = request_file(
        dir,
        "raw",
        seeded
            .customers
            .iter()
            .map(|id| format!("GET /customer/{id}")),
    )?;
    let mut quotes = Vec::new();
    for plan in &seeded.plans {
        for product in &seeded.products {
            quotes.push(json!({
                "query": QUOTE_QUERY,
                "variables": { "plan": plan, "product": product },
            }));
        }
    }
    let quote_file = request_file(dir, "quote", graphql_lines(quotes.into_iter()))?;
    let typename_file = request_file(
        dir,
        "typename",
        graphql_lines(std::iter::once(json!({ "query": TYPENAME_QUERY }))),
    )?;
    let catalog_file = request_file(
        dir,
        "catalog",
        graphql_lines(std::iter::once(json!({ "query": CATALOG_QUERY }))),
    )?;

    let mut rows = Vec::new();
    let m = |name, target, file, auth| {
        measure_wrk(&client, name, target, file, auth, duration, load_cpu)
    };
    if wanted("customer") {
        rows.push(m(CUSTOMER, &this, &customer_file, Some(&auth)).await?);
    }
    let raw_target = Target {
        served_by: RAW,
        base: &raw.base,
        pid: raw.pid(),
        server: None,
    };
    if wanted("raw") {
        rows.push(m(CUSTOMER_RAW, &raw_target, &raw_file, None).await?);
    }
    let naive_target = Target {
        served_by: NAIVE,
        base: &naive.base,
        pid: naive.pid(),
        server: None,
    };
    if wanted("naive") {
        rows.push(m(CUSTOMER_NAIVE, &naive_target, &customer_file, None).await?);
    }
    if wanted("quote") {
        rows.push(m(QUOTE, &this, &quote_file, Some(&auth)).await?);
    }
    if wanted("typename") {
        rows.push(m(TYPENAME, &this, &typename_file, Some(&auth)).await?);
    }
    if wanted("catalog") {
        rows.push(m(CATALOG, &this, &catalog_file, Some(&auth)).await?);
    }
    let load_after = load_average();

    drop(raw);
    drop(naive);
    print_report(
        &machine,
        &rows,
        seconds,
        customers,
        (server_cpu, load_cpu),
        (&load_before, &load_after),
    );
    Ok(())
}

const CUSTOMER: &str = "customer(id) over GraphQL";
const CUSTOMER_RAW: &str = "customer by id, raw axum+sqlx";
const CUSTOMER_NAIVE: &str = "customer(id), naive async-graphql+SeaORM";
const QUOTE: &str = "quote (no DB)";
const TYPENAME: &str = "{ __typename }";
const CATALOG: &str = "nested catalog (1.5 MiB answer)";

fn print_report(
    machine: &str,
    rows: &[Measured],
    seconds: u64,
    customers: usize,
    (server_cpu, load_cpu): (Option<usize>, Option<usize>),
    (load_before, load_after): (&str, &str),
) {
    let pin = |c: Option<usize>| c.map_or("not pinned".to_owned(), |c| format!("CPU {c}"));
    println!();
    println!("machine: {machine}");
    println!(
        "wrk -t1 -c{CONCURRENCY} ({}), servers with TOKIO_WORKER_THREADS=1 ({}), {seconds} s per workload after a {} s warm-up, {customers} customers",
        pin(load_cpu),
        pin(server_cpu),
        WARM_UP.as_secs()
    );
    println!(
        "load average (1, 5, 15 min) before the workloads: {load_before}; after: {load_after}"
    );
    println!();
    println!(
        "| workload | served by | requests/s | p50 ms | p99 ms | requests | errors | KiB/response | SQL/request | CPU µs/request | peak RSS MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("—".to_owned(), |v| format!("{v:.digits$}"));
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.2} | {} | {} | {} |",
            r.name,
            r.served_by,
            r.rps,
            r.p50_ms,
            r.p99_ms,
            r.requests,
            r.errors,
            r.kib_per_response,
            opt(r.sql_per_request, 4),
            opt(r.cpu_us, 0),
            opt(r.peak_rss_mib, 1),
        );
    }
    let row = |name: &str| rows.iter().find(|r| r.name == name);
    println!();
    println!(
        "| workload | this server req/s | CPU µs/request | reference | reference req/s | reference CPU µs/request | ratio | goal |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---|");
    for (ours, theirs, label, goal) in [
        (CUSTOMER, CUSTOMER_RAW, "raw axum+sqlx", 0.6),
        (CUSTOMER, CUSTOMER_NAIVE, "naive async-graphql+SeaORM", 1.0),
        (QUOTE, TYPENAME, "`{ __typename }` on this server", 0.5),
    ] {
        if let (Some(a), Some(b)) = (row(ours), row(theirs)) {
            let ratio = a.rps / b.rps;
            println!(
                "| {ours} | {:.0} | {} | {label} | {:.0} | {} | {ratio:.2} | ≥ {goal} {} |",
                a.rps,
                opt(a.cpu_us, 0),
                b.rps,
                opt(b.cpu_us, 0),
                if ratio >= goal { "met" } else { "NOT met" }
            );
        }
    }
    let peak = [CUSTOMER, QUOTE, TYPENAME]
        .iter()
        .filter_map(|n| row(n).and_then(|r| r.peak_rss_mib))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let reference_peak = [CUSTOMER_RAW, CUSTOMER_NAIVE]
        .iter()
        .filter_map(|n| row(n).and_then(|r| r.peak_rss_mib))
        .map(|v| format!("{v:.1}"))
        .collect::<Vec<_>>()
        .join(" / ");
    if let Some(peak) = peak {
        println!(
            "| peak RSS (VmHWM) under the customer, quote and __typename loads | {peak:.1} MiB | | raw / naive | {reference_peak} MiB | | | ≤ 64 MiB {} |",
            if peak <= 64.0 { "met" } else { "NOT met" }
        );
    }
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        println!();
        println!("WARNING: {errors} requests failed (non-200, GraphQL errors or socket errors)");
    }
}
