//! Outbound webhooks: a local receiver, signatures checked with the reference Standard
//! Webhooks library (PyPI `standardwebhooks`, through tests/support/verify_webhook.py).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{TestApp, advance};
use crate::subscriptions::{event_kinds, monthly_plan, pay, subscribe};

const CREATE: &str = "mutation($i: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $i) { secret endpoint { id url eventKinds enabled } } }";
const DELIVERIES: &str = "query($e: ID!) { webhookDeliveries(endpointId: $e, first: 50) {
    edges { cursor node { id eventId eventCursor eventKind customerId status attemptCount nextAttemptAt
    attempts { number at httpStatus error durationMs } } } } }";

/// What the receiver saw of one request.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Clone)]
struct ReceiverState {
    seen: Arc<Mutex<Vec<Received>>>,
    count: tokio::sync::watch::Sender<usize>,
    /// Requests answered 500 before the receiver accepts.
    fail_first: usize,
    /// Never answer (a hanging receiver).
    hang: bool,
    /// How long each answer takes.
    delay: Duration,
}

/// A webhook receiver on a random local port.
pub struct Receiver {
    pub url: String,
    state: ReceiverState,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    if state.hang {
        std::future::pending::<()>().await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    tokio::time::sleep(state.delay).await;
    let n = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
        });
        seen.len()
    };
    state.count.send_replace(n);
    if n <= state.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

impl Receiver {
    pub async fn start(fail_first: usize, hang: bool, delay: Duration) -> Receiver {
        let state = ReceiverState {
            seen: Arc::default(),
            count: tokio::sync::watch::channel(0).0,
            fail_first,
            hang,
            delay,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { url, state, server }
    }

    pub fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Waits (at most 15 s) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let mut count = self.state.count.subscribe();
        let waited =
            tokio::time::timeout(Duration::from_secs(15), count.wait_for(|c| *c >= n)).await;
        assert!(
            waited.is_ok(),
            "expected {n} webhook requests, got {:?}",
            self.seen()
        );
        self.seen()
    }
}

/// Each request's verdict from the reference library: "ok" or its reason.
pub fn verify_with_reference(secret: &str, received: &[Received]) -> Vec<String> {
    let input: Vec<Value> = received
        .iter()
        .map(|r| {
            json!({ "secret": secret, "body": r.body, "headers": {
                "webhook-id": r.id, "webhook-timestamp": r.timestamp, "webhook-signature": r.signature } })
        })
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/verify_webhook.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(Value::from(input).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the verifier failed (pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the verifier's verdicts")
}

async fn create_endpoint(app: &TestApp, input: Value) -> (String, String) {
    let res = app.admin(CREATE, json!({ "i": input })).await;
    let issued = &res.ok()["createWebhookEndpoint"];
    (
        issued["endpoint"]["id"].as_str().unwrap().to_owned(),
        issued["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let res = app.admin(DELIVERIES, json!({ "e": endpoint })).await;
    res.ok()["webhookDeliveries"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// The endpoint's deliveries once the one of `event_id` has `attempts` attempts recorded
/// (a receiver answers before the sender records the attempt).
async fn deliveries_after(
    app: &TestApp,
    endpoint: &str,
    event_id: &str,
    attempts: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ds = deliveries(app, endpoint).await;
        let recorded = ds
            .iter()
            .find(|d| d["eventId"] == event_id)
            .map_or(0, |d| d["attemptCount"].as_u64().unwrap() as usize);
        if recorded >= attempts {
            return ds;
        }
        assert!(
            Instant::now() < deadline,
            "{attempts} attempts of {event_id}: {ds:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_in_order_per_customer_and_replayable() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start(1, false, Duration::ZERO).await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let res = app.admin(CREATE, json!({ "i": { "url": hook.url } })).await;
    let issued = &res.ok()["createWebhookEndpoint"];
    let secret = issued["secret"].as_str().unwrap().to_owned();
    let endpoint = issued["endpoint"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        issued["endpoint"],
        json!({ "id": endpoint, "url": hook.url, "eventKinds": null, "enabled": true })
    );
    // The secret is shown once: no field returns it again.
    let again = app
        .admin("{ webhookEndpoints { id secret } }", json!({}))
        .await;
    again.expect_code("BAD_USER_INPUT");

    let (a, b) = (
        app.create_customer("a").await,
        app.create_customer("b").await,
    );
    let (ta, tb) = (app.customer_token(&a).await, app.customer_token(&b).await);
    let out_a = subscribe(&app, &ta, &a, &plan).await;
    // The first request is refused (500): a's later events wait behind it...
    let seen = hook.wait_for(1).await;
    assert_eq!(seen[0].json()["type"], "SUBSCRIPTION_CREATED");
    assert_eq!(seen[0].json()["data"]["customerId"], json!(a));
    pay(
        &app,
        out_a["checkout"]["url"].as_str().unwrap(),
        "4242 4242 4242 4242",
    )
    .await;
    // ...while b's go out.
    subscribe(&app, &tb, &b, &plan).await;
    let seen = hook.wait_for(2).await;
    assert_eq!(seen[1].json()["data"]["customerId"], json!(b), "{seen:?}");
    assert_eq!(seen.len(), 2, "a's later events are held back: {seen:?}");

    let first_attempt_at = app.billing.clock.now();
    let listed = deliveries_after(&app, &endpoint, &seen[0].id, 1).await;
    let a1 = listed
        .iter()
        .find(|d| d["eventId"] == json!(seen[0].id))
        .expect("a's first delivery")
        .clone();
    assert_eq!(a1["status"], "PENDING");
    assert_eq!(a1["attemptCount"], 1);
    assert_eq!(a1["attempts"][0]["number"], 1);
    assert_eq!(a1["attempts"][0]["httpStatus"], 500);
    let next: chrono::DateTime<chrono::Utc> =
        a1["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(next, first_attempt_at + chrono::TimeDelta::seconds(30));
    assert_eq!(listed.len(), 7, "a's six events and b's one: {listed:?}");

    // 30 s later by the billing clock, the retry goes out, then a's others in order.
    advance(&app, next).await;
    let seen = hook.wait_for(8).await;
    assert_eq!(seen.len(), 8);
    let of_a: Vec<&Received> = seen
        .iter()
        .filter(|r| r.json()["data"]["customerId"] == json!(a))
        .collect();
    let kinds: Vec<String> = of_a
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    let mut expected = event_kinds(&app, &a).await;
    expected.insert(0, expected[0].clone());
    assert_eq!(kinds, expected, "the retry first, then a's events in order");
    assert_eq!(
        of_a[0].id, of_a[1].id,
        "webhook-id is stable across retries"
    );
    assert_eq!(of_a[0].body, of_a[1].body, "the same body on every attempt");
    let cursors: Vec<i64> = of_a[1..]
        .iter()
        .map(|r| {
            r.json()["data"]["cursor"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    let body = seen[1].json();
    assert!(body["data"]["subscriptionId"].as_str().is_some(), "{body}");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    // Every request verifies with the reference library; a tampered one does not.
    let verdicts = verify_with_reference(&secret, &seen);
    assert!(verdicts.iter().all(|v| v == "ok"), "{verdicts:?}");
    let mut tampered = seen[1].clone();
    tampered.body = tampered.body.replace("SUBSCRIPTION", "SUBSCRIPTIOX");
    let mut other_secret = seen[2].clone();
    other_secret.signature = "v1,AAAA".into();
    assert_ne!(
        verify_with_reference(&secret, &[tampered, other_secret]),
        ["ok", "ok"]
    );

    let a1 = deliveries(&app, &endpoint)
        .await
        .into_iter()
        .find(|d| d["id"] == a1["id"])
        .unwrap();
    assert_eq!(a1["status"], "SUCCEEDED");
    assert_eq!(a1["nextAttemptAt"], Value::Null);
    let statuses: Vec<&Value> = a1["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["httpStatus"])
        .collect();
    assert_eq!(statuses, [&json!(500), &json!(204)]);

    // An admin replays it: the same message once more.
    let replayed = app
        .admin(
            "mutation($d: ID!) { replayWebhookDelivery(id: $d) { id status } }",
            json!({ "d": a1["id"] }),
        )
        .await;
    assert_eq!(replayed.ok()["replayWebhookDelivery"]["status"], "PENDING");
    let seen = hook.wait_for(9).await;
    assert_eq!(seen[8].id, seen[0].id);
    assert_eq!(verify_with_reference(&secret, &seen[8..]), ["ok"]);

    // Disabled: nothing more. A second endpoint, for cancellations only, shows when the
    // dispatcher has passed the events.
    let disabled = app
        .admin(
            "mutation($e: ID!) { disableWebhookEndpoint(id: $e) { enabled } }",
            json!({ "e": endpoint }),
        )
        .await;
    assert_eq!(disabled.ok()["disableWebhookEndpoint"]["enabled"], false);
    let hook2 = Receiver::start(0, false, Duration::ZERO).await;
    let (endpoint2, secret2) = create_endpoint(
        &app,
        json!({ "url": hook2.url, "eventKinds": ["SUBSCRIPTION_CANCELED"] }),
    )
    .await;
    let sub_a = out_a["subscription"]["id"].as_str().unwrap();
    app.gql_as(
        Some(&ta),
        "mutation($s: ID!) { cancelSubscription(id: $s) { status } }",
        json!({ "s": sub_a }),
    )
    .await
    .ok();
    let seen2 = hook2.wait_for(1).await;
    assert_eq!(seen2[0].json()["type"], "SUBSCRIPTION_CANCELED");
    assert_eq!(verify_with_reference(&secret2, &seen2), ["ok"]);
    assert_eq!(hook.seen().len(), 9, "a disabled endpoint is sent nothing");
    assert!(
        deliveries(&app, &endpoint)
            .await
            .iter()
            .all(|d| d["eventKind"] != "SUBSCRIPTION_CANCELED")
    );

    // Deleted: gone with its deliveries.
    let deleted = app
        .admin(
            "mutation($e: ID!) { deleteWebhookEndpoint(id: $e) }",
            json!({ "e": endpoint }),
        )
        .await;
    assert_eq!(deleted.ok()["deleteWebhookEndpoint"], json!(endpoint));
    let left = app.admin("{ webhookEndpoints { id } }", json!({})).await;
    assert_eq!(left.ok()["webhookEndpoints"], json!([{ "id": endpoint2 }]));
    app.admin(DELIVERIES, json!({ "e": endpoint }))
        .await
        .expect_code("NOT_FOUND");
    app.admin(
        "mutation($d: ID!) { replayWebhookDelivery(id: $d) { id } }",
        json!({ "d": a1["id"] }),
    )
    .await
    .expect_code("NOT_FOUND");
}

#[tokio::test]
async fn webhook_endpoints_are_for_admins_and_refuse_bad_input() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer("c").await;
    let customer_token = app.customer_token(&customer).await;
    let service_token = app.service_token("backend").await;
    let (endpoint, _) = create_endpoint(&app, json!({ "url": "https://example.com/hooks" })).await;
    let id = json!({ "e": endpoint });
    let operations = [
        (
            CREATE,
            json!({ "i": { "url": "https://example.com/other" } }),
        ),
        ("{ webhookEndpoints { id } }", json!({})),
        (DELIVERIES, id.clone()),
        (
            "mutation($e: ID!) { disableWebhookEndpoint(id: $e) { id } }",
            id.clone(),
        ),
        (
            "mutation($e: ID!) { enableWebhookEndpoint(id: $e) { id } }",
            id.clone(),
        ),
        (
            "mutation($e: ID!) { deleteWebhookEndpoint(id: $e) }",
            id.clone(),
        ),
        (
            "mutation($e: ID!) { replayWebhookDelivery(id: $e) { id } }",
            id.clone(),
        ),
    ];
    for (query, vars) in &operations {
        for token in [&customer_token, &service_token] {
            app.gql_as(Some(token), query, vars.clone())
                .await
                .expect_code("FORBIDDEN");
        }
        app.anon(query, vars.clone())
            .await
            .expect_code("UNAUTHENTICATED");
    }

    for bad in [
        json!({ "url": "ftp://example.com/hooks" }),
        json!({ "url": "/hooks" }),
        json!({ "url": "not a url" }),
        json!({ "url": "https://user:secret@example.com/" }),
        json!({ "url": "" }),
        json!({ "url": "https://example.com/", "eventKinds": [] }),
        json!({ "url": "https://example.com/", "eventKinds": ["NOT_A_KIND"] }),
    ] {
        app.admin(CREATE, json!({ "i": bad }))
            .await
            .expect_code("BAD_USER_INPUT");
    }
    let listed = app
        .admin("{ webhookEndpoints { id url eventKinds } }", json!({}))
        .await;
    assert_eq!(
        listed.ok()["webhookEndpoints"],
        json!([{ "id": endpoint, "url": "https://example.com/hooks", "eventKinds": null }]),
        "refused input created nothing"
    );
    let kinds = app
        .admin(
            CREATE,
            json!({ "i": { "url": "https://example.com/k", "eventKinds": ["INVOICE_PAID", "INVOICE_PAID", "PAYMENT_FAILED"] } }),
        )
        .await;
    assert_eq!(
        kinds.ok()["createWebhookEndpoint"]["endpoint"]["eventKinds"],
        json!(["INVOICE_PAID", "PAYMENT_FAILED"])
    );

    let unknown = json!({ "e": uuid::Uuid::new_v4().to_string() });
    for query in [
        DELIVERIES,
        "mutation($e: ID!) { disableWebhookEndpoint(id: $e) { id } }",
        "mutation($e: ID!) { deleteWebhookEndpoint(id: $e) }",
        "mutation($e: ID!) { replayWebhookDelivery(id: $e) { id } }",
    ] {
        app.admin(query, unknown.clone())
            .await
            .expect_code("NOT_FOUND");
        app.admin(query, json!({ "e": "nope" }))
            .await
            .expect_code("BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_hanging_receiver_does_not_hold_back_other_endpoints() {
    let app = TestApp::spawn().await;
    let hanging = Receiver::start(0, true, Duration::ZERO).await;
    let quick = Receiver::start(0, false, Duration::ZERO).await;
    let (hung, _) = create_endpoint(&app, json!({ "url": hanging.url })).await;
    let (_, secret) = create_endpoint(&app, json!({ "url": quick.url })).await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let started = Instant::now();
    subscribe(&app, &token, &customer, &plan).await;
    let seen = quick.wait_for(1).await;
    // The test configuration gives a receiver 2 s.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the quick receiver waited {:?}",
        started.elapsed()
    );
    assert_eq!(verify_with_reference(&secret, &seen), ["ok"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let d = deliveries(&app, &hung).await;
        if let Some(a) = d.first().map(|d| d["attempts"][0].clone())
            && !a.is_null()
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the hanging attempt was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(attempt["httpStatus"], Value::Null);
    assert_eq!(attempt["error"], "no answer within 2000 ms");
    assert!(attempt["durationMs"].as_i64().unwrap() >= 2000, "{attempt}");
}

/// Two server processes on one PostgreSQL database both dispatch: each delivery is sent
/// once. Named `*_on_postgres`: on SQLite it fails, so `.ci/run` skips it there.
#[tokio::test]
async fn two_processes_send_each_delivery_once_on_postgres() {
    let app = TestApp::spawn().await;
    // Before the other process starts, so that its catalog has the plan.
    let (plan, _) = monthly_plan(&app, "0").await;
    let replica = app.replica().await;
    // A slow receiver: while one process waits for it, the other sees the delivery due.
    let hook = Receiver::start(0, false, Duration::from_millis(150)).await;
    let (endpoint, secret) = create_endpoint(&app, json!({ "url": hook.url })).await;
    let mut customers = Vec::new();
    for i in 0..8 {
        let c = app.create_customer(&format!("c{i}")).await;
        let token = app.customer_token(&c).await;
        // Half the events are written by the other process.
        let base = if i % 2 == 0 { &app.base } else { &replica.base };
        let res: Value = app
            .client
            .post(format!("{base}/graphql"))
            .bearer_auth(&token)
            .json(&json!({
                "query": "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
                "variables": crate::subscriptions::subscribe_input(&c, &plan, None),
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(res["errors"].is_null(), "{res}");
        customers.push(c);
    }
    let mut expected = 0;
    for c in &customers {
        expected += event_kinds(&app, c).await.len();
    }
    let seen = hook.wait_for(expected).await;
    // Time for a second sending of any of them to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen_now = hook.seen();
    let mut ids: Vec<&str> = seen_now.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected, "{seen:?}");
    assert_eq!(seen_now.len(), expected, "each delivery sent once");
    let verdicts = verify_with_reference(&secret, &seen_now);
    assert!(verdicts.iter().all(|v| v == "ok"), "{verdicts:?}");
    let listed = deliveries(&app, &endpoint).await;
    assert_eq!(listed.len(), expected);
    assert!(
        listed
            .iter()
            .all(|d| d["status"] == "SUCCEEDED" && d["attemptCount"] == 1),
        "{listed:?}"
    );
}

#[tokio::test]
async fn a_delivery_is_retried_for_a_day_then_failed_and_the_customer_s_next_ones_go_out() {
    let app = TestApp::spawn().await;
    let hook = Receiver::start(15, false, Duration::ZERO).await;
    let (endpoint, secret) = create_endpoint(&app, json!({ "url": hook.url })).await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    hook.wait_for(1).await;
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242 4242 4242 4242",
    )
    .await;
    let first = |ds: Vec<Value>| {
        ds.into_iter()
            .find(|d| d["eventKind"] == "SUBSCRIPTION_CREATED")
            .unwrap()
    };
    let id = hook.seen()[0].id.clone();
    for n in 1..15 {
        let d = first(deliveries_after(&app, &endpoint, &id, n as usize).await);
        assert_eq!(d["status"], "PENDING");
        assert_eq!(d["attemptCount"], n);
        let next: chrono::DateTime<chrono::Utc> =
            d["nextAttemptAt"].as_str().unwrap().parse().unwrap();
        advance(&app, next).await;
        let seen = hook.wait_for(n as usize + 1).await;
        assert_eq!(
            seen[n as usize].id, seen[0].id,
            "only the first event is retried"
        );
    }
    // Given up after the 15th: the customer's later events go out, in order.
    let seen = hook.wait_for(20).await;
    let d = first(deliveries_after(&app, &endpoint, &id, 15).await);
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["attemptCount"], 15);
    assert_eq!(d["nextAttemptAt"], Value::Null);
    let attempts = d["attempts"].as_array().unwrap();
    assert!(attempts.iter().all(|a| a["httpStatus"] == 500));
    let at = |a: &Value| {
        a["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    let span = at(&attempts[14]) - at(&attempts[0]);
    assert!(span >= chrono::TimeDelta::hours(24), "retried for {span}");
    let later: Vec<String> = seen[15..]
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(later, event_kinds(&app, &customer).await[1..]);
    let verdicts = verify_with_reference(&secret, &seen[15..]);
    assert!(verdicts.iter().all(|v| v == "ok"), "{verdicts:?}");

    // A replay gives it a fresh set of attempts: accepted now.
    app.admin(
        "mutation($d: ID!) { replayWebhookDelivery(id: $d) { id } }",
        json!({ "d": d["id"] }),
    )
    .await
    .ok();
    let seen = hook.wait_for(21).await;
    assert_eq!(seen[20].id, seen[0].id);
    let d = first(deliveries_after(&app, &endpoint, &id, 16).await);
    assert_eq!(d["status"], "SUCCEEDED");
    assert_eq!(d["attemptCount"], 16);
    assert_eq!(d["attempts"][15]["httpStatus"], 204);
}
