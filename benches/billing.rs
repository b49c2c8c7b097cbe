//! Billing benchmarks: the real release server on a fresh SQLite file, driven over HTTP
//! and websockets from this process.
//!
//! - **subscribe + checkout**: `createSubscription`, then the sandbox checkout page's card
//!   form (which delivers the signed webhook before it redirects), 32 flows at once.
//! - **event delivery**: 1,000 websocket subscribers to `billingEvents`; events made at a
//!   steady rate; the time from the mutation to each subscriber's frame.
//! - **recordUsage**: 32 concurrent clients recording usage on live subscriptions.
//! - **invoicing**: 10,000 and 100,000 subscriptions with usage, invoiced and collected by
//!   one move of the test clock: time, statements, peak RSS, and how time grows.
//!
//! Run with `cargo bench --bench billing`. See BENCHMARKS.md.
//!
//! Environment:
//! - `BENCH_ONLY`: a comma-separated subset of `subscribe,events,usage,invoicing`.
//! - `BENCH_SECONDS` (10): measured seconds of the event and recordUsage workloads.
//! - `BENCH_FLOWS` (2000): subscribe + checkout flows.
//! - `BENCH_SUBSCRIBERS` (1000): websocket subscribers.
//! - `BENCH_EVENT_RATE` (20): mutations per second while subscribers listen.
//! - `BENCH_INVOICE_SIZES` (`10000,100000`): subscriptions per invoicing run.
//! - `BENCH_POSTGRES_URL`: a PostgreSQL server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//!   the invoicing runs are then repeated there, each on a fresh database of its own.
//! - `BILLING_BIN`: the server binary (default: the one `cargo bench` built for this bench).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{SinkExt, StreamExt};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sea_orm::sqlx::{self, PgPool, SqlitePool};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use uuid::Uuid;

use support::*;

const SUBSCRIBE: &str = "mutation($i: CreateSubscriptionInput!){ createSubscription(input:$i)\
     { subscription { id status } checkout { url } } }";
const RECORD_USAGE: &str = "mutation($i: RecordUsageInput!){ recordUsage(input:$i){ id } }";

fn main() -> AnyResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

fn wanted(part: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|p| p.trim() == part),
        Err(_) => true,
    }
}

async fn run() -> AnyResult<()> {
    let bin = server_binary()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    println!("machine: {}", machine());
    if wanted("subscribe") || wanted("events") || wanted("usage") {
        let mut server = start_server(&bin, &[])?;
        wait_healthy(&client, &mut server).await?;
        let server = Arc::new(server);
        let parts = async {
            let catalog = paid_catalog(&client, &server).await?;
            let mut live_subscriptions = Vec::new();
            if wanted("subscribe") || wanted("usage") {
                live_subscriptions = subscribe_and_check_out(&client, &server, &catalog).await?;
            }
            if wanted("events") {
                event_delivery(&bin, &client).await?;
            }
            if wanted("usage") {
                record_usage(&client, &server, &catalog, live_subscriptions).await?;
            }
            AnyResult::Ok(())
        };
        if let Err(e) = parts.await {
            // The server's directory goes with it: show why it answered so first.
            eprintln!("server log (tail):\n{}", server.log_tail());
            return Err(e);
        }
    }
    if wanted("invoicing") {
        let sizes = std::env::var("BENCH_INVOICE_SIZES").unwrap_or("10000,100000".into());
        // SQLite, and PostgreSQL too when `BENCH_POSTGRES_URL` names a server.
        let postgres = std::env::var("BENCH_POSTGRES_URL").ok();
        for engine in [None].into_iter().chain(postgres.as_deref().map(Some)) {
            let mut runs = Vec::new();
            for size in sizes
                .split(',')
                .filter_map(|s| s.trim().parse::<usize>().ok())
            {
                runs.push(invoicing(&bin, &client, size, engine).await?);
            }
            print_invoicing(
                &runs,
                if engine.is_some() {
                    "PostgreSQL"
                } else {
                    "SQLite"
                },
            );
        }
    }
    Ok(())
}

// ---- seeding over the API -------------------------------------------------------------

struct PaidCatalog {
    /// 10 a month for the container and 0.01 per GB of bandwidth: checkout takes a card.
    paid_plan: String,
    /// Everything at zero: subscribing activates at once (two events, no checkout).
    free_plan: String,
    bandwidth: String,
}

async fn create(
    client: &reqwest::Client,
    server: &Server,
    query: &str,
    input: Value,
) -> AnyResult<String> {
    let d = gql_one(client, server, query, json!({ "input": input })).await?;
    let field = d
        .as_object()
        .and_then(|o| o.values().next())
        .ok_or("empty answer")?;
    Ok(str_at(field, "/id")?.to_owned())
}

async fn paid_catalog(client: &reqwest::Client, server: &Server) -> AnyResult<PaidCatalog> {
    let product = "mutation($input: CreateProductInput!){ createProduct(input:$input){ id } }";
    let plan = "mutation($input: CreatePlanInput!){ createPlan(input:$input){ id } }";
    let container = create(
        client,
        server,
        product,
        json!({ "name": "Container", "kind": "PACKAGE", "unitType": "CORE" }),
    )
    .await?;
    let bandwidth = create(
        client,
        server,
        product,
        json!({ "name": "Bandwidth", "kind": "METERED_RESOURCE",
        "resource": "bandwidth", "unitType": "GB" }),
    )
    .await?;
    let free_plan = create(client, server, plan, json!({ "name": "Free", "phases": [{ "kind": "FINAL", "prices": [
        { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] }] })).await?;
    let paid_plan = create(client, server, plan, json!({ "name": "Paid", "phases": [{ "kind": "FINAL", "prices": [
        { "productId": container, "currency": "USD", "unitAmount": "10", "interval": "MONTH" },
        { "productId": bandwidth, "currency": "USD", "unitAmount": "0.01", "interval": "UNIT" } ] }] })).await?;
    Ok(PaidCatalog {
        paid_plan,
        free_plan,
        bandwidth,
    })
}

async fn seed_customers(
    client: &reqwest::Client,
    server: &Arc<Server>,
    prefix: &str,
    n: usize,
) -> AnyResult<Vec<String>> {
    let prefix = prefix.to_owned();
    create_customers(client, server, n, move |i| {
        json!({ "externalId": format!("{prefix}-{i}"), "name": format!("Customer {i}"),
                "email": format!("{prefix}{i}@bench.example.com") })
    })
    .await
}

fn subscribe_body(customer: &str, plan: &str) -> Value {
    json!({ "query": SUBSCRIBE, "variables": { "i": { "customerId": customer, "planId": plan,
        "successUrl": "https://app.example/projects?paid=1", "cancelUrl": "https://app.example/plans" } } })
}

// ---- subscribe + checkout -------------------------------------------------------------

/// What a browser does on the sandbox's checkout page: submit the card that succeeds. The
/// page answers 303 to the success URL once the webhook has been delivered.
async fn pay(client: &reqwest::Client, url: &str) -> AnyResult<()> {
    let r = client
        .post(url)
        .form(&[
            ("card_number", "4242 4242 4242 4242"),
            ("expiry", "12/34"),
            ("cvc", "123"),
        ])
        .send()
        .await?;
    match r.headers().get("location").and_then(|l| l.to_str().ok()) {
        Some(l) if r.status().is_redirection() && l.contains("paid=1") => Ok(()),
        _ => Err(format!(
            "checkout answered {} {:?}",
            r.status(),
            r.headers().get("location")
        )
        .into()),
    }
}

async fn subscribe_and_check_out(
    client: &reqwest::Client,
    server: &Arc<Server>,
    catalog: &PaidCatalog,
) -> AnyResult<Vec<String>> {
    let flows = usize::try_from(env_number("BENCH_FLOWS", 2000)?.max(CONCURRENCY as u64))?;
    let customers = seed_customers(client, server, "flow", flows).await?;
    let queue = Arc::new(Mutex::new(customers));
    let statements = sql_statements(client, &server.base).await?;
    let cpu = cpu_time(server.pid());
    reset_peak_rss(server.pid());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, server, queue, plan) = (
            client.clone(),
            server.clone(),
            queue.clone(),
            catalog.paid_plan.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut subscriptions = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or_default();
                let Some(customer) = next else { break };
                let sent = Instant::now();
                let d = data_of(gql(&client, &server, &subscribe_body(&customer, &plan)).await?)?;
                let out = &d["createSubscription"];
                if out["subscription"]["status"] != "INCOMPLETE" {
                    return Err(format!("createSubscription answered {out}").into());
                }
                pay(&client, str_at(out, "/checkout/url")?).await?;
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                subscriptions.push(str_at(out, "/subscription/id")?.to_owned());
            }
            AnyResult::Ok((latencies, subscriptions))
        }));
    }
    let mut latencies = Vec::new();
    let mut subscriptions = Vec::new();
    for t in tasks {
        let (l, s) = t.await??;
        latencies.extend(l);
        subscriptions.extend(s);
    }
    let elapsed = started.elapsed();
    let statements = sql_statements(client, &server.base).await? - statements;
    let cpu = cpu
        .zip(cpu_time(server.pid()))
        .map(|(b, a)| a.saturating_sub(b));
    latencies.sort_unstable();
    // Every flow ended in a live subscription: ask the server, not our own bookkeeping.
    let d = gql_one(
        client,
        server,
        "query($id: ID!){ subscription(id:$id){ status } }",
        json!({ "id": subscriptions[0] }),
    )
    .await?;
    let mut active = usize::from(d["subscription"]["status"] == "ACTIVE");
    for id in subscriptions
        .iter()
        .skip(1)
        .step_by(subscriptions.len() / 50 + 1)
    {
        let d = gql_one(
            client,
            server,
            "query($id: ID!){ subscription(id:$id){ status } }",
            json!({ "id": id }),
        )
        .await?;
        active += usize::from(d["subscription"]["status"] == "ACTIVE");
    }
    let checked = 1 + subscriptions
        .len()
        .saturating_sub(1)
        .div_ceil(subscriptions.len() / 50 + 1);
    println!();
    println!("## subscribe + checkout (sandbox), {CONCURRENCY} flows at a time");
    println!();
    println!(
        "| flows | flows/s | p50 ms | p99 ms | SQL/flow | server CPU ms/flow | server peak RSS MiB | ACTIVE after (sampled) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {active}/{checked} |",
        subscriptions.len(),
        subscriptions.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        statements as f64 / subscriptions.len() as f64,
        cpu.map_or("—".into(), |c| format!(
            "{:.2}",
            c.as_secs_f64() * 1e3 / subscriptions.len() as f64
        )),
        proc_status_kib(server.pid(), "VmHWM")
            .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    println!();
    println!(
        "A flow is `createSubscription` (checkout session at the sandbox) plus the card form's POST, which verifies the card, sends the signed webhook to `/providers/sandbox/webhook`, waits for it to be processed (activation, outbox events) and answers 303 to the success URL."
    );
    Ok(subscriptions)
}

// ---- event delivery to websocket subscribers ------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_subscriber(base: &str, token: &str) -> AnyResult<Ws> {
    let mut req =
        format!("{}/graphql/ws", base.replace("http://", "ws://")).into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }).to_string())).await?;
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("connection_ack") => {}
        other => return Err(format!("no connection_ack: {other:?}").into()),
    }
    let query = "subscription { billingEvents { cursor kind customerId } }";
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }).to_string(),
    ))
    .await?;
    Ok(ws)
}

/// When each measured mutation was sent and answered, by the customer it is about.
type Sent = Arc<Mutex<HashMap<String, (Instant, Instant)>>>;

/// The CPUs for the event part's server and for this process (the load): 0 and 1 when
/// there are two or more and `taskset` works.
fn event_pinning() -> Option<(usize, usize)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = std::process::Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    (cpus >= 2 && taskset).then_some((0, 1))
}

/// Pins every thread of this process to `cpus` (a `taskset` list).
fn pin_self(cpus: &str) {
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Subscribes `customer` to the free plan (active at once: two events): when the request
/// went out, and when its answer came back.
async fn subscribe_free(
    client: &reqwest::Client,
    server: &Server,
    catalog: &PaidCatalog,
    customer: &str,
) -> AnyResult<(Instant, Instant)> {
    let at_send = Instant::now();
    data_of(
        gql(
            client,
            server,
            &subscribe_body(customer, &catalog.free_plan),
        )
        .await?,
    )?;
    Ok((at_send, Instant::now()))
}

/// The event part runs a server of its own, as the read benchmark does: pinned to CPU 0
/// with `TOKIO_WORKER_THREADS=1`, this process (1,000 websocket readers and the
/// mutations) on CPU 1.
async fn event_delivery(bin: &std::path::Path, client: &reqwest::Client) -> AnyResult<()> {
    let pinning = event_pinning();
    let mut server = start_server_on(
        bin,
        &[("TOKIO_WORKER_THREADS", "1".to_owned())],
        pinning.map(|(server, _)| server),
    )?;
    wait_healthy(client, &mut server).await?;
    let server = Arc::new(server);
    if let Some((_, load)) = pinning {
        pin_self(&load.to_string());
    }
    let label = bin.display().to_string();
    let result = event_delivery_on(client, &server, pinning, &label).await;
    if pinning.is_some() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        pin_self(&format!("0-{}", cpus - 1));
    }
    result
}

async fn event_delivery_on(
    client: &reqwest::Client,
    server: &Arc<Server>,
    pinning: Option<(usize, usize)>,
    bin: &str,
) -> AnyResult<()> {
    let catalog = &paid_catalog(client, server).await?;
    let load_before = load_average();
    let subscribers = usize::try_from(env_number("BENCH_SUBSCRIBERS", 1000)?.max(1))?;
    let rate = env_number("BENCH_EVENT_RATE", 20)?.max(1);
    let seconds = env_number("BENCH_SECONDS", 10)?.max(1);
    let ops = usize::try_from(rate * seconds)?;
    // The same mutations with no subscriber first, at the same rate: what the HTTP
    // answers take on this machine now, beside what they take during the fan-out.
    let control_ops = usize::try_from(rate * 2)?;
    let mut customers = seed_customers(client, server, "events", ops + 1 + control_ops).await?;
    let control = customers.split_off(ops + 1);
    let (warm, measured) = customers.split_first().ok_or("no customers")?;
    let mut alone = Vec::with_capacity(control.len());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for customer in &control {
        tick.tick().await;
        let (at_send, at_answer) = subscribe_free(client, server, catalog, customer).await?;
        alone.push(i64::try_from((at_answer - at_send).as_micros()).unwrap_or(i64::MAX));
    }
    alone.sort_unstable();

    let rss_idle = proc_status_kib(server.pid(), "VmRSS");
    eprintln!("events: opening {subscribers} websocket subscribers");
    let mut sockets = Vec::with_capacity(subscribers);
    for chunk in (0..subscribers).collect::<Vec<_>>().chunks(50) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|_| open_subscriber(&server.base, &server.token)),
        )
        .await;
        for ws in opened {
            sockets.push(ws?);
        }
    }
    // Open and subscribed, not yet live: what an idle subscriber holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = proc_status_kib(server.pid(), "VmRSS");
    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let measured_set: Arc<std::collections::HashSet<String>> =
        Arc::new(measured.iter().cloned().collect());
    let (live_tx, mut live_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    let deadline = Arc::new(Mutex::new(None::<Instant>));
    let mut listeners = Vec::with_capacity(subscribers);
    for mut ws in sockets {
        let (measured_set, live_tx, deadline, warm) = (
            measured_set.clone(),
            live_tx.clone(),
            deadline.clone(),
            warm.clone(),
        );
        listeners.push(tokio::spawn(async move {
            // Which measured event arrived when; latencies are worked out once every
            // request's answer is known (a frame may beat its HTTP answer).
            let mut seen: Vec<(String, Instant)> = Vec::new();
            loop {
                let limit = deadline.lock().ok().and_then(|d| *d);
                let next = match limit {
                    Some(at) => {
                        match tokio::time::timeout_at(tokio::time::Instant::from_std(at), ws.next())
                            .await
                        {
                            Ok(n) => n,
                            Err(_) => break,
                        }
                    }
                    None => ws.next().await,
                };
                let Some(Ok(Message::Text(text))) = next else {
                    break;
                };
                let arrived = Instant::now();
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let e = &v["payload"]["data"]["billingEvents"];
                if e["kind"] != "SUBSCRIPTION_CREATED" {
                    continue;
                }
                let Some(customer) = e["customerId"].as_str() else {
                    continue;
                };
                if customer == warm {
                    let _ = live_tx.send(()).await;
                } else if measured_set.contains(customer) {
                    seen.push((customer.to_owned(), arrived));
                    if seen.len() == measured_set.len() {
                        break;
                    }
                }
            }
            seen
        }));
    }
    drop(live_tx);
    // Live once every subscriber has seen the warm-up event.
    data_of(gql(client, server, &subscribe_body(warm, &catalog.free_plan)).await?)?;
    for _ in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(60), live_rx.recv())
            .await?
            .ok_or("a subscriber closed")?;
    }
    eprintln!("events: {subscribers} subscribers live; {ops} mutations at {rate}/s");
    let statements = sql_statements(client, &server.base).await?;
    let cpu = cpu_time(server.pid());
    reset_peak_rss(server.pid());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    for customer in measured {
        tick.tick().await;
        let (at_send, at_answer) = subscribe_free(client, server, catalog, customer).await?;
        sent.lock()
            .map_err(|_| "poisoned")?
            .insert(customer.clone(), (at_send, at_answer));
    }
    let sending = started.elapsed();
    *deadline.lock().map_err(|_| "poisoned")? = Some(Instant::now() + Duration::from_secs(10));
    // From the request being sent, and from its answer, in µs. The commit lies between
    // the two, so they bound commit-to-frame; the second may be negative.
    let micros = |arrived: Instant, from: Instant| match arrived.checked_duration_since(from) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from(from.duration_since(arrived).as_micros()).unwrap_or(i64::MAX),
    };
    let sent = sent.lock().map_err(|_| "poisoned")?.clone();
    let mut from_send = Vec::new();
    let mut from_answer = Vec::new();
    for l in listeners {
        for (customer, arrived) in l.await? {
            let (at_send, at_answer) = sent
                .get(&customer)
                .copied()
                .ok_or("a frame for an unsent request")?;
            from_send.push(micros(arrived, at_send));
            from_answer.push(micros(arrived, at_answer));
        }
    }
    let delivered_in = started.elapsed();
    // Every listener has ended and dropped its socket: what stays after they left.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_left = proc_status_kib(server.pid(), "VmRSS");
    let statements = sql_statements(client, &server.base).await? - statements;
    let cpu = cpu
        .zip(cpu_time(server.pid()))
        .map(|(b, a)| a.saturating_sub(b));
    from_send.sort_unstable();
    from_answer.sort_unstable();
    let expected = ops * subscribers;
    let ms = |v: &[i64], p: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0
    };
    println!();
    println!(
        "## event delivery: {subscribers} websocket subscribers (admin, all events), {ops} mutations at {rate}/s"
    );
    println!();
    println!(
        "server {}, TOKIO_WORKER_THREADS=1, `{}`; load average before {load_before}, after {}",
        match pinning {
            Some((s, l)) => format!("pinned to CPU {s}, this process to CPU {l}"),
            None => "not pinned".to_owned(),
        },
        bin,
        load_average(),
    );
    println!();
    println!(
        "| frames expected | frames received | p50 ms | p99 ms | max ms | p50 ms after the answer | p99 ms after the answer | SQL statements | server CPU s | server peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {expected} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {statements} | {} | {} |",
        from_send.len(),
        ms(&from_send, 50.0),
        ms(&from_send, 99.0),
        ms(&from_send, 100.0),
        ms(&from_answer, 50.0),
        ms(&from_answer, 99.0),
        cpu.map_or("—".into(), |c| format!("{:.2}", c.as_secs_f64())),
        proc_status_kib(server.pid(), "VmHWM")
            .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    let mut answers: Vec<i64> = sent
        .values()
        .map(|(s, a)| i64::try_from(a.duration_since(*s).as_micros()).unwrap_or(i64::MAX))
        .collect();
    answers.sort_unstable();
    println!();
    println!(
        "HTTP answers of the {} mutations meanwhile: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal p99 ≤ 5 ms); frames p99 after the answer {:.2} ms (goal ≤ 10 ms)",
        answers.len(),
        ms(&answers, 50.0),
        ms(&answers, 99.0),
        ms(&answers, 100.0),
        ms(&from_answer, 99.0),
    );
    println!();
    println!(
        "The same mutation with no subscriber, just before ({} at {rate}/s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        alone.len(),
        ms(&alone, 50.0),
        ms(&alone, 99.0),
        ms(&alone, 100.0),
    );
    if let (Some(idle), Some(open), Some(left)) = (rss_idle, rss_open, rss_left) {
        println!();
        println!(
            "RSS: {:.1} MiB before the subscribers, {:.1} MiB with {subscribers} idle subscribers ({:.1} KiB each, goal ≤ 20), {:.1} MiB after they left",
            idle as f64 / 1024.0,
            open as f64 / 1024.0,
            open.saturating_sub(idle) as f64 / subscribers as f64,
            left as f64 / 1024.0,
        );
    }
    println!();
    println!(
        "Latency runs from sending `createSubscription` (free plan: active at once; its commit writes SUBSCRIPTION_CREATED and SUBSCRIPTION_ACTIVATED) to the SUBSCRIPTION_CREATED frame at each subscriber; the commit lies between the request and its answer, so the two columns bound commit-to-frame from above and below. Mutations took {:.1} s to send; all frames were in {:.1} s after the first.",
        sending.as_secs_f64(),
        delivered_in.as_secs_f64()
    );
    Ok(())
}

// ---- recordUsage ----------------------------------------------------------------------

async fn record_usage(
    client: &reqwest::Client,
    server: &Arc<Server>,
    catalog: &PaidCatalog,
    subscriptions: Vec<String>,
) -> AnyResult<()> {
    if subscriptions.is_empty() {
        return Err("recordUsage needs the subscribe workload's live subscriptions".into());
    }
    let seconds = env_number("BENCH_SECONDS", 10)?.max(1);
    let subscriptions = Arc::new(subscriptions);
    let subscriptions_for_batch = subscriptions.clone();
    let target = GqlTarget::of(server);
    let bandwidth = catalog.bandwidth.clone();
    let keys = Arc::new(AtomicU64::new(0));
    let make: Arc<MakeRequest> = Arc::new(move |client, rng| {
        let sub = &subscriptions[rng.below(subscriptions.len())];
        let key = keys.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "query": RECORD_USAGE, "variables": { "i": {
            "subscriptionId": sub, "productId": bandwidth, "quantity": "1.5",
            "idempotencyKey": format!("bench-{key}") } } });
        target.post(client, body.to_string())
    });
    let row = measure(
        client,
        Workload {
            name: "recordUsage (GraphQL)",
            make,
            server: Some(server),
        },
        Duration::from_secs(seconds),
    )
    .await?;
    // recordUsageBatch: 1,000 records a request, each with its own key.
    let subscriptions = subscriptions_for_batch;
    let target = GqlTarget::of(server);
    let bandwidth = catalog.bandwidth.clone();
    let keys = Arc::new(AtomicU64::new(0));
    let make: Arc<MakeRequest> = Arc::new(move |client, rng| {
        let records: Vec<Value> = (0..USAGE_BATCH)
            .map(|_| {
                let sub = &subscriptions[rng.below(subscriptions.len())];
                let key = keys.fetch_add(1, Ordering::Relaxed);
                json!({ "subscriptionId": sub, "productId": bandwidth, "quantity": "1.5",
                        "idempotencyKey": format!("batch-{key}") })
            })
            .collect();
        let body = json!({ "query": RECORD_USAGE_BATCH, "variables": { "r": records } });
        target.post(client, body.to_string())
    });
    let batch_row = measure(
        client,
        Workload {
            name: "recordUsageBatch (GraphQL, 1,000 records a request)",
            make,
            server: Some(server),
        },
        Duration::from_secs(seconds),
    )
    .await?;
    let row_rps = row.rps;
    let batch_records = batch_row.rps * USAGE_BATCH as f64;
    let batch_statements =
        batch_row.statements.unwrap_or(0) as f64 / batch_row.requests.max(1) as f64;
    println!();
    println!(
        "## recordUsage and recordUsageBatch, {CONCURRENCY} concurrent clients, {seconds} s after a {} s warm-up",
        WARM_UP.as_secs()
    );
    println!();
    print_rows(&[row, batch_row]);
    println!();
    println!(
        "recordUsage: {:.0} records/s (goal ≥ 3,000); recordUsageBatch: {:.0} records/s (goal ≥ 10,000), {:.2} statements per batch",
        row_rps, batch_records, batch_statements,
    );
    Ok(())
}

const USAGE_BATCH: usize = 1000;
const RECORD_USAGE_BATCH: &str = "mutation($r: [RecordUsageInput!]!){ recordUsageBatch(input:{ records: $r }){ records { id } } }";

// ---- invoicing ------------------------------------------------------------------------

struct InvoicingRun {
    subscriptions: usize,
    usage_records: usize,
    seed: Duration,
    cards: Duration,
    schedule: Duration,
    schedule_statements: u64,
    month_end: Duration,
    month_end_statements: u64,
    month_end_cpu: Option<Duration>,
    peak_rss_kib: Option<u64>,
    paid: i64,
    other_invoices: i64,
    total: String,
}

/// One invoicing run on a fresh server with the test clock: catalog over the API,
/// customers, live subscriptions and usage written straight into the SQLite file (the API
/// paths that make them are measured above), cards saved through the sandbox's hosted
/// payment-details page, then the clock moved past the period's end.
async fn invoicing(
    bin: &std::path::Path,
    client: &reqwest::Client,
    size: usize,
    postgres: Option<&str>,
) -> AnyResult<InvoicingRun> {
    let mut env = vec![
        ("BILLING_TEST_CLOCK", "1".to_owned()),
        // Only the measured clock moves run the jobs.
        ("BILLING_JOBS_INTERVAL_SECS", "100000000".to_owned()),
    ];
    // On PostgreSQL: a fresh database of its own on that server.
    let pg_url = match postgres {
        Some(admin) => {
            let name = format!("billing_bench_{}", unique_suffix().replace('-', "_"));
            let admin_pool = PgPool::connect(admin).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin_pool)
                .await?;
            admin_pool.close().await;
            let mut url = reqwest::Url::parse(admin)?;
            url.set_path(&name);
            env.push(("DATABASE_URL", url.to_string()));
            Some(url.to_string())
        }
        None => None,
    };
    let mut server = start_server(bin, &env)?;
    wait_healthy(client, &mut server).await?;
    let server = Arc::new(server);
    let long = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let advance = |to: DateTime<Utc>| {
        let (long, server) = (long.clone(), server.clone());
        async move {
            let d = gql_one(
                &long,
                &server,
                "mutation($t: DateTime!){ advanceClock(to:$t) }",
                json!({ "t": to.to_rfc3339() }),
            )
            .await?;
            AnyResult::Ok(str_at(&d, "/advanceClock")?.parse::<DateTime<Utc>>()?)
        }
    };
    let t0 = advance(Utc::now() + TimeDelta::seconds(1)).await?;

    // The catalog: a 14-day free trial, then 0.0125/h for the container and graduated
    // bandwidth beyond the package's 100 GB (0.09/GB up to 100, 0.05 above).
    let product = "mutation($input: CreateProductInput!){ createProduct(input:$input){ id } }";
    let container = create(
        client,
        &server,
        product,
        json!({ "name": "Container", "kind": "PACKAGE", "unitType": "CORE" }),
    )
    .await?;
    let bandwidth = create(
        client,
        &server,
        product,
        json!({ "name": "Bandwidth", "kind": "METERED_RESOURCE",
        "resource": "bandwidth", "unitType": "GB" }),
    )
    .await?;
    create(client, &server, "mutation($input: CreatePackageInput!){ createPackage(input:$input){ id } }", json!({
        "productId": container, "name": "Small", "cpu": "1", "memoryMb": 1024, "includedStorageGb": "10",
        "includedBandwidthGb": "100", "includedBackupStorageGb": "0" })).await?;
    let plan = create(client, &server, "mutation($input: CreatePlanInput!){ createPlan(input:$input){ id } }", json!({
        "name": "Metered", "tierMode": "GRADUATED", "phases": [
        { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "HOUR" },
            { "productId": bandwidth, "currency": "USD", "unitAmount": "0", "interval": "UNIT" } ] },
        { "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0.0125", "interval": "HOUR" },
            { "productId": bandwidth, "currency": "USD", "maxQuantity": "100", "unitAmount": "0.09", "interval": "UNIT" },
            { "productId": bandwidth, "currency": "USD", "unitAmount": "0.05", "interval": "UNIT" } ] } ] })).await?;

    eprintln!("invoicing {size}: seeding");
    let seed_started = Instant::now();
    let (plan, bandwidth) = (Uuid::parse_str(&plan)?, Uuid::parse_str(&bandwidth)?);
    let pool = match &pg_url {
        Some(url) => {
            let pool = PgPool::connect(url).await?;
            let customers = seed_subscribers_pg(&pool, size, t0, plan, bandwidth).await?;
            (SeedDb::Postgres(pool), customers)
        }
        None => {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    SqliteConnectOptions::new()
                        .filename(&server.db_file)
                        .busy_timeout(Duration::from_secs(60)),
                )
                .await?;
            let customers = seed_subscribers(&pool, size, t0, plan, bandwidth).await?;
            (SeedDb::Sqlite(pool), customers)
        }
    };
    let (pool, customers) = pool;
    let usage_records = pool.count("SELECT COUNT(*) FROM usage_record").await?;
    let seed = seed_started.elapsed();

    eprintln!("invoicing {size}: saving {size} cards through the sandbox's payment-details page");
    let cards_started = Instant::now();
    save_cards(client, &server, customers).await?;
    let cards = cards_started.elapsed();

    // First pass: the clock schedules every subscription it has not seen (phase entered,
    // next visit at the trial's end).
    let statements = sql_statements(client, &server.base).await?;
    let started = Instant::now();
    advance(t0 + TimeDelta::hours(1)).await?;
    let schedule = started.elapsed();
    let schedule_statements = sql_statements(client, &server.base).await? - statements;

    // Month end: trial → final (one PHASE_CHANGED each), invoice period 0, collect.
    eprintln!("invoicing {size}: month end");
    reset_peak_rss(server.pid());
    let statements = sql_statements(client, &server.base).await?;
    let cpu = cpu_time(server.pid());
    let started = Instant::now();
    advance(phase_end_of_period(t0)).await?;
    let month_end = started.elapsed();
    let month_end_cpu = cpu
        .zip(cpu_time(server.pid()))
        .map(|(b, a)| a.saturating_sub(b));
    let month_end_statements = sql_statements(client, &server.base).await? - statements;
    let peak_rss_kib = proc_status_kib(server.pid(), "VmHWM");

    let paid = pool
        .count("SELECT COUNT(*) FROM invoice WHERE status = 'PAID'")
        .await?;
    let all = pool.count("SELECT COUNT(*) FROM invoice").await?;
    let totals = pool.texts("SELECT total FROM invoice").await?;
    let total: rust_decimal::Decimal = totals
        .iter()
        .filter_map(|t| t.parse::<rust_decimal::Decimal>().ok())
        .sum();
    pool.close().await;
    drop(server);
    if let (Some(admin), Some(url)) = (postgres, &pg_url) {
        let name = reqwest::Url::parse(url)?
            .path()
            .trim_start_matches('/')
            .to_owned();
        let admin_pool = PgPool::connect(admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&admin_pool)
        .await?;
        admin_pool.close().await;
    }
    Ok(InvoicingRun {
        subscriptions: size,
        usage_records: usize::try_from(usage_records)?,
        seed,
        cards,
        schedule,
        schedule_statements,
        month_end,
        month_end_statements,
        month_end_cpu,
        peak_rss_kib,
        paid,
        other_invoices: all - paid,
        total: total.to_string(),
    })
}

/// One second past the end of billing period 0 of a subscription started at `t0`.
fn phase_end_of_period(t0: DateTime<Utc>) -> DateTime<Utc> {
    t0.checked_add_months(chrono::Months::new(1)).unwrap_or(t0) + TimeDelta::seconds(1)
}

/// Customers with billing start `t0`, each with an ACTIVE sandbox subscription to `plan`
/// started at `t0` and three bandwidth readings in the period (20–180 GB in all, so most
/// go beyond the 100 GB included). Written in transactions of 1,000 customers.
async fn seed_subscribers(
    pool: &SqlitePool,
    n: usize,
    t0: DateTime<Utc>,
    plan: Uuid,
    bandwidth: Uuid,
) -> AnyResult<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut rng = Rng::new(7);
    for chunk_start in (0..n).step_by(1000) {
        let mut tx = pool.begin().await?;
        for i in chunk_start..(chunk_start + 1000).min(n) {
            let (customer, sub) = (Uuid::now_v7(), Uuid::now_v7());
            let (external, name, email) = (
                format!("inv-{i}"),
                format!("Invoiced {i}"),
                format!("inv{i}@bench.example.com"),
            );
            sqlx::query(
                "INSERT INTO customer (id, external_id, name, email, currency, billing_start, search_text, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, 'USD', ?, ?, ?, ?)",
            )
            .bind(customer).bind(&external).bind(&name).bind(&email).bind(t0)
            .bind(format!("{external}\n{name}\n{email}").to_lowercase()).bind(t0).bind(t0)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO subscription (id, customer_id, plan_id, provider, status, started_at, cancel_at_period_end, created_at, updated_at) \
                 VALUES (?, ?, ?, 'sandbox', 'ACTIVE', ?, false, ?, ?)",
            )
            .bind(sub).bind(customer).bind(plan).bind(t0).bind(t0).bind(t0)
            .execute(&mut *tx)
            .await?;
            for day in [5, 15, 25] {
                let gb = 10 + rng.below(51); // 10–60 GB a reading
                sqlx::query(
                    "INSERT INTO usage_record (id, subscription_id, customer_id, product_id, quantity, at, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(Uuid::now_v7()).bind(sub).bind(customer).bind(bandwidth).bind(gb.to_string())
                .bind(t0 + TimeDelta::days(day)).bind(t0)
                .execute(&mut *tx)
                .await?;
            }
            ids.push(customer.to_string());
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// The seeded database, read back by the bench.
enum SeedDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl SeedDb {
    async fn count(&self, sql: &'static str) -> AnyResult<i64> {
        Ok(match self {
            SeedDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            SeedDb::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        })
    }

    async fn texts(&self, sql: &'static str) -> AnyResult<Vec<String>> {
        Ok(match self {
            SeedDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
            SeedDb::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
        })
    }

    async fn close(self) {
        match self {
            SeedDb::Sqlite(p) => p.close().await,
            SeedDb::Postgres(p) => p.close().await,
        }
    }
}

/// [`seed_subscribers`] on PostgreSQL: the same rows, 1,000 customers per multi-row
/// insert (literals: PostgreSQL parses them into uuid and timestamptz).
async fn seed_subscribers_pg(
    pool: &PgPool,
    n: usize,
    t0: DateTime<Utc>,
    plan: Uuid,
    bandwidth: Uuid,
) -> AnyResult<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    let mut rng = Rng::new(7);
    let t = |at: DateTime<Utc>| format!("'{}'", at.to_rfc3339());
    for chunk_start in (0..n).step_by(1000) {
        let (mut customers, mut subs, mut usage) = (Vec::new(), Vec::new(), Vec::new());
        for i in chunk_start..(chunk_start + 1000).min(n) {
            let (customer, sub) = (Uuid::now_v7(), Uuid::now_v7());
            let (external, name, email) = (
                format!("inv-{i}"),
                format!("Invoiced {i}"),
                format!("inv{i}@bench.example.com"),
            );
            let search = format!("{external}\n{name}\n{email}").to_lowercase();
            customers.push(format!(
                "('{customer}', '{external}', '{name}', '{email}', 'USD', {t0}, E'{search}', {t0}, {t0})",
                t0 = t(t0)
            ));
            subs.push(format!(
                "('{sub}', '{customer}', '{plan}', 'sandbox', 'ACTIVE', {t0}, false, {t0}, {t0})",
                t0 = t(t0)
            ));
            for day in [5, 15, 25] {
                let gb = 10 + rng.below(51);
                usage.push(format!(
                    "('{}', '{sub}', '{customer}', '{bandwidth}', '{gb}', {}, {})",
                    Uuid::now_v7(),
                    t(t0 + TimeDelta::days(day)),
                    t(t0)
                ));
            }
            ids.push(customer.to_string());
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO customer (id, external_id, name, email, currency, billing_start, search_text, created_at, updated_at) VALUES {}",
            customers.join(", ")
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO subscription (id, customer_id, plan_id, provider, status, started_at, cancel_at_period_end, created_at, updated_at) VALUES {}",
            subs.join(", ")
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO usage_record (id, subscription_id, customer_id, product_id, quantity, at, created_at) VALUES {}",
            usage.join(", ")
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(ids)
}

/// For each customer: `updatePaymentDetails`, then the hosted page's form with the card
/// that succeeds (the sandbox saves it and sends PAYMENT_DETAILS_UPDATED by webhook).
async fn save_cards(
    client: &reqwest::Client,
    server: &Arc<Server>,
    customers: Vec<String>,
) -> AnyResult<()> {
    let queue = Arc::new(Mutex::new(customers));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, server, queue) = (client.clone(), server.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or_default();
                let Some(customer) = next else { break };
                let d = gql_one(&client, &server,
                    "mutation($c: ID!){ updatePaymentDetails(customerId:$c, returnUrl:\"https://app.example/billing\"){ url } }",
                    json!({ "c": customer })).await?;
                let url = str_at(&d, "/updatePaymentDetails/url")?;
                let r = client.post(url).form(&[("card_number", "4242424242424242")]).send().await?;
                if !r.status().is_redirection() {
                    return Err(format!("payment-details page answered {}", r.status()).into());
                }
            }
            AnyResult::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn print_invoicing(runs: &[InvoicingRun], engine: &str) {
    println!();
    println!("## invoicing on {engine}: one move of the test clock past the period's end");
    println!();
    println!(
        "| subscriptions | usage records | month-end run s | subscriptions/s | SQL statements | SQL/subscription | server CPU s | server peak RSS MiB | invoices PAID | other invoices | invoiced total USD | first pass s (SQL) | seeding s (SQL) | cards saved s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.1} | {:.0} | {} | {:.1} | {} | {} | {} | {} | {} | {:.1} ({}) | {:.1} | {:.1} |",
            r.subscriptions,
            r.usage_records,
            r.month_end.as_secs_f64(),
            r.subscriptions as f64 / r.month_end.as_secs_f64(),
            r.month_end_statements,
            r.month_end_statements as f64 / r.subscriptions as f64,
            r.month_end_cpu
                .map_or("—".into(), |c| format!("{:.1}", c.as_secs_f64())),
            r.peak_rss_kib
                .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            r.paid,
            r.other_invoices,
            r.total,
            r.schedule.as_secs_f64(),
            r.schedule_statements,
            r.seed.as_secs_f64(),
            r.cards.as_secs_f64(),
        );
    }
    if let [small, .., large] = runs {
        println!();
        println!(
            "Growth from {} to {} subscriptions: ×{:.1} subscriptions, ×{:.2} time, ×{:.2} statements.",
            small.subscriptions,
            large.subscriptions,
            large.subscriptions as f64 / small.subscriptions as f64,
            large.month_end.as_secs_f64() / small.month_end.as_secs_f64(),
            large.month_end_statements as f64 / small.month_end_statements.max(1) as f64,
        );
    }
}
