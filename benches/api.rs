//! End-to-end API benchmark: the real release server binary on a fresh SQLite file,
//! driven over HTTP from this process, next to a hand-written axum + sqlx baseline.
//!
//! Run with `cargo build --release && cargo bench --bench api`. See BENCHMARKS.md.
//!
//! Environment:
//! - `BENCH_SECONDS`: measured seconds per workload (default 10), after a 2 s warm-up.
//! - `BENCH_CUSTOMERS`: customers to seed (default 10000).
//! - `BILLING_BIN`: the server binary (default `<target>/release/billing`).

mod support;

use std::future::IntoFuture;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm::sqlx::SqlitePool;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use serde_json::{Value, json};
use uuid::Uuid;

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

/// id, external_id, name, email, currency
type CustomerRow = (Uuid, String, String, String, String);

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

    let mut server = start_server(&bin, &[])?;
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
fn print_report(rows: &[Row], seconds: u64, customers: usize) {
    println!();
    println!("machine: {}", machine());
    println!(
        "{CONCURRENCY} connections, {seconds} s per workload after a {} s warm-up, {customers} customers",
        WARM_UP.as_secs()
    );
    println!();
    print_rows(rows);
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
