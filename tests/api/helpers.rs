use std::sync::Arc;

use billing::config::Config;
use billing::startup::Application;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

/// A fresh database: a temporary SQLite file, or a new PostgreSQL database on the server
/// named by `TEST_DATABASE_URL`. Dropped with the test.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        {
            Some(admin_url) => {
                let name = format!("billing_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .expect("connect to PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b)
                    .unwrap_or(&admin_url);
                TestDb {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            None => {
                let path = std::env::temp_dir()
                    .join(format!("billing-test-{}.db", Uuid::new_v4().simple()));
                TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    cleanup: Cleanup::File(path),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: use a runtime of our own, on its own thread.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let admin = Database::connect(admin_url.as_str()).await.ok()?;
                        admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await
                            .ok()
                    })
                })
                .join();
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub billing: Arc<billing::billing::Billing>,
    /// Kept for the test's lifetime; dropping it removes the database.
    _db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Replica {
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A GraphQL answer as the client saw it.
#[derive(Debug)]
pub struct Gql {
    pub status: u16,
    pub body: Value,
}

impl Gql {
    /// The `data`, asserting that there were no errors.
    pub fn ok(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none_or(|e| e.is_null()),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn error_message(&self) -> &str {
        self.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
    }

    /// Asserts one error with this code and returns its message.
    pub fn expect_code(&self, code: &str) -> &str {
        assert_eq!(
            self.error_code(),
            Some(code),
            "expected {code}, got {}",
            self.body
        );
        self.error_message()
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}, Vec::new()).await
    }

    /// A server with adjusted configuration and extra payment providers.
    pub async fn spawn_with(
        configure: impl FnOnce(&mut Config),
        extra: Vec<Arc<dyn providers::PaymentProvider>>,
    ) -> TestApp {
        Self::spawn_on(TestDb::new().await, configure, extra).await
    }

    /// A server on a database the test prepared (e.g. migrated part of the way).
    pub async fn spawn_on(
        db: TestDb,
        configure: impl FnOnce(&mut Config),
        extra: Vec<Arc<dyn providers::PaymentProvider>>,
    ) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            billing::startup::init_tracing();
        }
        let mut config = Config::for_tests(db.url.clone(), ADMIN_TOKEN);
        configure(&mut config);
        let app = Application::build_with(config, extra)
            .await
            .expect("server starts");
        let base = format!("http://{}", app.addr);
        let billing = app.billing.clone();
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            billing,
            _db: db,
            server,
        }
    }

    /// A second server process on the same PostgreSQL database; on SQLite the test fails.
    pub async fn replica(&self) -> Replica {
        // A PostgreSQL-only test fails on SQLite rather than passing without its check.
        assert!(
            self.on_postgres(),
            "a PostgreSQL-only test: run it with TEST_DATABASE_URL=postgres://…"
        );
        self.another_process().await
    }

    /// The test's database URL (for another process on it).
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    pub fn on_postgres(&self) -> bool {
        self._db.url.starts_with("postgres")
    }

    /// A second server process on the same database, on either engine: on PostgreSQL a
    /// replica; on SQLite a second process on the same file (shared state, but no
    /// LISTEN/NOTIFY between them).
    pub async fn another_process(&self) -> Replica {
        let app = Application::build(Config::for_tests(self._db.url.clone(), ADMIN_TOKEN))
            .await
            .expect("second process starts");
        let base = format!("http://{}", app.addr);
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Replica { base, server }
    }

    /// Stops this server (its port stops answering) and starts a new one, with the test
    /// configuration, on the same database. `base` and `billing` then name the new one.
    pub async fn restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        let app = Application::build(Config::for_tests(self._db.url.clone(), ADMIN_TOKEN))
            .await
            .expect("server restarts");
        self.base = format!("http://{}", app.addr);
        self.billing = app.billing.clone();
        self.server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
    }

    /// Another server process on this test's database (either engine), configured by
    /// `configure`; an error when it refuses to start.
    pub async fn restart_with(
        &self,
        configure: impl FnOnce(&mut Config),
    ) -> Result<Replica, billing::startup::AnyError> {
        let mut config = Config::for_tests(self._db.url.clone(), ADMIN_TOKEN);
        configure(&mut config);
        let app = Application::build(config).await?;
        let base = format!("http://{}", app.addr);
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        Ok(Replica { base, server })
    }

    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        self.post_json(token, &json!({ "query": query, "variables": variables }))
            .await
    }

    pub async fn post_json(&self, token: Option<&str>, body: &Value) -> Gql {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        Gql { status, body }
    }

    /// A GraphQL request as admin and the SQL statements that request ran (the test
    /// server's `x-sql-statements` header), whatever else the server does meanwhile.
    pub async fn admin_counted(&self, query: &str, variables: Value) -> (Gql, u64) {
        self.counted(Some(ADMIN_TOKEN), query, variables).await
    }

    /// [`Self::gql_as`] and the statements the request ran.
    pub async fn counted(&self, token: Option<&str>, query: &str, variables: Value) -> (Gql, u64) {
        let (res, ours, _) = self.counted_with_provider(token, query, variables).await;
        (res, ours)
    }

    /// [`Self::counted`], and apart from those the statements of the sandbox provider's own
    /// records (a real provider keeps them elsewhere).
    pub async fn counted_with_provider(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> (Gql, u64, u64) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let count = |name: &str| -> u64 {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    panic!("the test server counts each request's statements ({name})")
                })
        };
        let (statements, provider) = (
            count("x-sql-statements"),
            count("x-sql-statements-provider"),
        );
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        (Gql { status, body }, statements, provider)
    }

    pub async fn admin(&self, query: &str, variables: Value) -> Gql {
        self.gql_as(Some(ADMIN_TOKEN), query, variables).await
    }

    pub async fn anon(&self, query: &str, variables: Value) -> Gql {
        self.gql_as(None, query, variables).await
    }

    /// SQL statements the server has run so far, background work included (prefer
    /// [`Self::counted`] for one request's).
    pub async fn statements(&self) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix("billing_sql_statements_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("statement counter")
    }

    // ---- building blocks ---------------------------------------------------------------

    pub async fn create_product(&self, name: &str, kind: &str, resource: Option<&str>) -> String {
        let res = self
            .admin(
                "mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }",
                json!({ "i": { "name": name, "kind": kind, "resource": resource,
                               "unitType": if kind == "PACKAGE" { "CORE" } else { "GB" } } }),
            )
            .await;
        res.ok()["createProduct"]["id"]
            .as_str()
            .expect("product id")
            .to_owned()
    }

    /// Creates a plan from a `CreatePlanInput` and returns its id.
    pub async fn create_plan(&self, input: Value) -> String {
        let res = self
            .admin(
                "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        res.ok()["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    }

    /// [`three_phase_plan`] "Pro" on a new "Container" package: the plan's id.
    pub async fn create_three_phase_plan(&self) -> String {
        let container = self.create_product("Container", "PACKAGE", None).await;
        self.create_plan(three_phase_plan("Pro", &container)).await
    }

    pub async fn create_customer(&self, external_id: &str) -> String {
        self.create_customer_with(
            json!({ "externalId": external_id, "name": "Ada", "email": "ada@example.com" }),
        )
        .await
    }

    pub async fn create_customer_with(&self, input: Value) -> String {
        let res = self
            .admin(
                "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        res.ok()["createCustomer"]["id"]
            .as_str()
            .expect("customer id")
            .to_owned()
    }

    /// A service key's token (a project's backend).
    pub async fn service_token(&self, name: &str) -> String {
        let res = self
            .admin(
                "mutation($n: String!) { createServiceKey(name: $n) { token key { role name } customer { id } } }",
                json!({ "n": name }),
            )
            .await;
        let issued = &res.ok()["createServiceKey"];
        assert_eq!(issued["key"]["role"], "SERVICE");
        assert_eq!(issued["customer"], Value::Null);
        issued["token"].as_str().expect("token").to_owned()
    }

    pub async fn customer_token(&self, customer_id: &str) -> String {
        let res = self
            .admin(
                "mutation($c: ID!) { createApiKey(customerId: $c) { token } }",
                json!({ "c": customer_id }),
            )
            .await;
        res.ok()["createApiKey"]["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }
}

/// A plan with a 14-day trial, a 1-month discount and a final phase, pricing `product` per
/// hour in USD (no region) at 0, 0.8 and 1.
pub fn three_phase_plan(name: &str, product: &str) -> Value {
    let price = |amount: &str| json!([{ "productId": product, "currency": "USD", "unitAmount": amount, "interval": "HOUR" }]);
    json!({
        "name": name,
        "phases": [
            { "kind": "TRIAL", "duration": { "count": 14, "unit": "DAY" }, "prices": price("0") },
            { "kind": "DISCOUNT", "duration": { "count": 1, "unit": "MONTH" }, "prices": price("0.8") },
            { "kind": "FINAL", "prices": price("1") },
        ]
    })
}

/// An RFC 3339 instant of a test.
pub fn utc(at: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc()
}

/// Moves the test clock to `to` (every job runs as if that time had passed).
pub async fn advance(app: &TestApp, to: chrono::DateTime<chrono::Utc>) {
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": to.to_rfc3339() }),
    )
    .await
    .ok();
}

/// A GraphQL request to the server at `base`: the answer's body.
pub async fn gql_at(base: &str, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
