//! Live billing events over `/graphql/ws` (graphql-transport-ws).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{ADMIN_TOKEN, TestApp, gql_at};
use crate::subscriptions::{monthly_plan, pay, subscribe};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a websocket and sends `connection_init` with the token; returns the socket and
/// the server's first answer.
async fn connect(base: &str, token: Option<&str>) -> (Ws, Option<Message>) {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket opens");
    let payload = token.map_or(
        json!({}),
        |t| json!({ "Authorization": format!("Bearer {t}") }),
    );
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": payload }).to_string(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok);
    (ws, first)
}

async fn subscribe_events(ws: &mut Ws, args: &str) {
    let query = format!(
        "subscription {{ billingEvents{args} {{ cursor kind customerId subscriptionId data }} }}"
    );
    ws.send(Message::text(
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }).to_string(),
    ))
    .await
    .unwrap();
}

/// The next protocol message (a text frame), parsed, within five seconds.
async fn next_text(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next `next` payload (or error), within five seconds.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_text(ws).await;
        match v["type"].as_str() {
            Some("next") => return v["payload"].clone(),
            Some("error") => return json!({ "errors": v["payload"] }),
            _ => continue,
        }
    }
}

fn is_ack(m: &Option<Message>) -> bool {
    matches!(m, Some(Message::Text(t)) if t.contains("connection_ack"))
}

#[tokio::test]
async fn a_customer_sees_its_own_events_live_and_resumes_from_a_cursor() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let mine = app.create_customer("mine").await;
    let theirs = app.create_customer("theirs").await;
    let token = app.customer_token(&mine).await;
    let their_token = app.customer_token(&theirs).await;

    let (mut ws, ack) = connect(&app.base, Some(&token)).await;
    assert!(is_ack(&ack), "{ack:?}");
    // From the start of the log: nothing is missed while the subscription is being set up.
    subscribe_events(&mut ws, "(after: \"0\")").await;

    // Someone else's activity is not visible; ours is, in order.
    subscribe(&app, &their_token, &theirs, &plan).await;
    let out = subscribe(&app, &token, &mine, &plan).await;
    let created = next_event(&mut ws).await;
    let e = &created["data"]["billingEvents"];
    assert_eq!(
        (e["kind"].as_str(), e["customerId"].as_str()),
        (Some("SUBSCRIPTION_CREATED"), Some(mine.as_str()))
    );
    let cursor = e["cursor"].as_str().unwrap().to_owned();
    drop(ws);

    // While disconnected, the customer pays; a reconnect with the cursor misses nothing.
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let (mut ws, ack) = connect(&app.base, Some(&token)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, &format!("(after: \"{cursor}\")")).await;
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut ws).await;
        kinds.push(
            e["data"]["billingEvents"]["kind"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        kinds,
        [
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED"
        ]
    );

    // Asking for another customer's events is refused.
    let (mut ws, _) = connect(&app.base, Some(&token)).await;
    subscribe_events(&mut ws, &format!("(customerId: \"{theirs}\")")).await;
    let refused = next_event(&mut ws).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused}"
    );
}

#[tokio::test]
async fn admins_watch_everyone_and_bad_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "0").await;
    let customer = app.create_customer("c").await;
    let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, "(after: \"0\")").await;
    let token = app.customer_token(&customer).await;
    subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(
        next_event(&mut ws).await["data"]["billingEvents"]["kind"],
        "SUBSCRIPTION_CREATED"
    );
    assert_eq!(
        next_event(&mut ws).await["data"]["billingEvents"]["kind"],
        "SUBSCRIPTION_ACTIVATED"
    );

    for bad in [Some("not-a-token"), None] {
        let (_, answer) = connect(&app.base, bad).await;
        assert!(
            matches!(answer, Some(Message::Close(_)) | None),
            "{bad:?} got {answer:?}"
        );
    }
}

/// Two server processes on one PostgreSQL database: an event committed through one
/// reaches a websocket subscriber connected to the other.
#[tokio::test]
async fn events_cross_replicas_on_postgres() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (plan, _) = monthly_plan(&app, "0").await;
    let customer = app.create_customer("c").await;
    let (mut ws, ack) = connect(&replica.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, "(after: \"0\")").await;
    let started = std::time::Instant::now();
    let token = app.customer_token(&customer).await;
    subscribe(&app, &token, &customer, &plan).await;
    assert_eq!(
        next_event(&mut ws).await["data"]["billingEvents"]["kind"],
        "SUBSCRIPTION_CREATED"
    );
    // NOTIFY wakes the other process at once; its 2 s safety poll is not what delivered this.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

/// A customer subscribed to a new three-phase plan (14-day trial, then a discount month),
/// with its checkout paid: the customer, and the time it subscribed.
async fn paid_three_phase(app: &TestApp) -> (String, chrono::DateTime<chrono::Utc>) {
    let plan = app.create_three_phase_plan().await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let start = app.billing.clock.now();
    let out = subscribe(app, &token, &customer, &plan).await;
    pay(
        app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    (customer, start)
}

/// Two processes run their billing clocks against one PostgreSQL database: a phase
/// crossing is recorded once.
#[tokio::test]
async fn two_clocks_record_one_phase_change_on_postgres() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (customer, start) = paid_three_phase(&app).await;
    let to = start + chrono::TimeDelta::days(15);
    let advance = |base: String| advance_on(base, to);
    let (a, b) = tokio::join!(advance(app.base.clone()), advance(replica.base.clone()));
    assert!(a && b);
    // And once more each, as later ticks would.
    let (a, b) = tokio::join!(advance(app.base.clone()), advance(replica.base.clone()));
    assert!(a && b);
    let kinds = crate::subscriptions::event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PHASE_CHANGED").count(),
        1,
        "{kinds:?}"
    );
}

/// Moves the test clock of the server at `base` to `to` and waits for its run; whether
/// it answered without an error.
async fn advance_on(base: String, to: chrono::DateTime<chrono::Utc>) -> bool {
    let query = "mutation($t: DateTime!) { advanceClock(to: $t) }";
    let body = gql_at(&base, ADMIN_TOKEN, query, json!({ "t": to.to_rfc3339() })).await;
    body.get("errors").is_none() && body["data"]["advanceClock"].is_string()
}

/// A plan created on one process is subscribed to at once through another, before that
/// one's 2 s catalog refresh: the subscription is made, with its plan and phase, and its
/// checkout page names the plan.
#[tokio::test]
async fn another_process_subscribes_to_a_plan_created_elsewhere() {
    let app = TestApp::spawn().await;
    let other = app.another_process().await;
    let plan = app.create_three_phase_plan().await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let body = gql_at(
        &other.base,
        &token,
        "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) {
            subscription { plan { name } currentPhase } checkout { url } } }",
        crate::subscriptions::subscribe_input(&customer, &plan, None),
    )
    .await;
    assert!(body.get("errors").is_none(), "{body}");
    let out = &body["data"]["createSubscription"];
    assert_eq!(out["subscription"]["plan"]["name"], "Pro");
    assert_eq!(out["subscription"]["currentPhase"], "TRIAL");
    let page = reqwest::get(out["checkout"]["url"].as_str().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<p id=\"plan\">Plan: <strong>Pro</strong></p>"),
        "{page}"
    );
}

/// A plan created on one process and a subscription to it that another process's clock
/// meets first, before its 2 s catalog refresh: that clock still records the phase
/// change, and visits the subscription again at the next one, not only at the period's end.
#[tokio::test]
async fn another_process_clock_knows_a_plan_created_elsewhere() {
    let app = TestApp::spawn().await;
    let other = app.another_process().await;
    let (customer, start) = paid_three_phase(&app).await;
    assert!(advance_on(other.base.clone(), start + chrono::TimeDelta::days(15)).await);
    let phases = || async {
        crate::subscriptions::event_kinds(&app, &customer)
            .await
            .into_iter()
            .filter(|k| k == "PHASE_CHANGED")
            .count()
    };
    assert_eq!(phases().await, 1, "trial → discount on the other process");
    // The discount ends a month later: the other clock meets that crossing too.
    let later =
        start + chrono::TimeDelta::days(14) + chrono::Months::new(1) + chrono::TimeDelta::hours(1);
    assert!(advance_on(other.base.clone(), later).await);
    assert_eq!(phases().await, 2, "discount → final on the other process");
}

#[tokio::test]
async fn subscribers_share_one_read_of_the_log() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let mut sockets = Vec::new();
    let mut cost = Vec::new();
    for (round, wanted) in [1, 10].into_iter().enumerate() {
        while sockets.len() < wanted {
            let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
            assert!(is_ack(&ack));
            subscribe_events(&mut ws, "(after: \"0\")").await;
            sockets.push(ws);
        }
        // Every socket is live once it has caught up with a fresh event.
        let warm = app.create_customer(&format!("warm-{round}")).await;
        let token = app.customer_token(&warm).await;
        subscribe(&app, &token, &warm, &plan).await;
        for ws in &mut sockets {
            loop {
                let e = next_event(ws).await;
                if e["data"]["billingEvents"]["customerId"] == json!(warm) {
                    break;
                }
            }
        }
        let measured = app.create_customer(&format!("measured-{round}")).await;
        let token = app.customer_token(&measured).await;
        let before = app.statements().await;
        subscribe(&app, &token, &measured, &plan).await;
        for ws in &mut sockets {
            let e = next_event(ws).await;
            assert_eq!(e["data"]["billingEvents"]["customerId"], json!(measured));
        }
        cost.push(app.statements().await - before);
    }
    eprintln!("statements per event: {cost:?}");
    assert!(
        cost[1] < cost[0] + 9,
        "one event cost {} statements with 10 subscribers, {} with 1",
        cost[1],
        cost[0]
    );
}

/// The close frame's code, within two seconds.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn open(base: &str) -> Ws {
    let url = format!("{}/graphql/ws", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .expect("opens")
        .0
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.unwrap();
}

/// Issues a customer key and returns (key id, token).
async fn issue_key(app: &TestApp, customer: &str) -> (String, String) {
    let issued = app
        .admin(
            "mutation($c: ID!) { createApiKey(customerId: $c) { token key { id } } }",
            json!({ "c": customer }),
        )
        .await;
    let k = &issued.ok()["createApiKey"];
    (
        k["key"]["id"].as_str().unwrap().to_owned(),
        k["token"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(base: &str, key: &str) {
    let res = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "query": "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }", "variables": { "id": key } }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
}

#[tokio::test]
async fn revoking_a_key_closes_its_websockets_with_4403() {
    let app = TestApp::spawn().await;
    let customer = app.create_customer("c").await;
    let (key, token) = issue_key(&app, &customer).await;
    let (_other_key, other_token) = issue_key(&app, &customer).await;
    let (mut ws, ack) = connect(&app.base, Some(&token)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, "").await;
    let (mut other, ack) = connect(&app.base, Some(&other_token)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut other, "").await;
    let started = std::time::Instant::now();
    revoke(&app.base, &key).await;
    assert_eq!(close_code(&mut ws).await, Some(4403));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Another key of the same customer keeps its socket.
    send(&mut other, json!({ "type": "ping" })).await;
    let pong = tokio::time::timeout(Duration::from_secs(2), other.next()).await;
    assert!(
        matches!(&pong, Ok(Some(Ok(Message::Text(t)))) if t.contains("pong")),
        "{pong:?}"
    );
}

/// PostgreSQL only (it needs two server processes on one database), like every test whose
/// name ends in `_on_postgres`: on SQLite it fails, so `.ci/run` skips them there.
#[tokio::test]
async fn revocation_reaches_every_replica_within_a_second_on_postgres() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let customer = app.create_customer("c").await;
    let (key, token) = issue_key(&app, &customer).await;
    let (mut ws, ack) = connect(&replica.base, Some(&token)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, "").await;
    // The replica has the token cached now.
    let ask = || {
        reqwest::Client::new()
            .post(format!("{}/graphql", replica.base))
            .bearer_auth(&token)
            .json(&json!({ "query": "{ viewer { role } }" }))
            .send()
    };
    assert_eq!(ask().await.unwrap().status().as_u16(), 200);
    let started = std::time::Instant::now();
    revoke(&app.base, &key).await;
    assert_eq!(close_code(&mut ws).await, Some(4403));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ask().await.unwrap().status().as_u16(), 401);
}

#[tokio::test]
async fn websockets_follow_the_protocol_close_codes() {
    // Long enough that the other cases' first messages arrive well before it, on a
    // loaded machine too (a subscribe before the ack must be 4401, not 4408).
    let app = TestApp::spawn_with(|c| c.ws_init_timeout_ms = 1500, Vec::new()).await;
    // No connection_init in time.
    let mut idle = open(&app.base).await;
    assert_eq!(close_code(&mut idle).await, Some(4408));
    // Subscribing before the ack.
    let mut early = open(&app.base).await;
    send(&mut early, json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { billingEvents { kind } }" } })).await;
    assert_eq!(close_code(&mut early).await, Some(4401));
    // Not a protocol message.
    let mut garbage = open(&app.base).await;
    garbage.send(Message::text("not json")).await.unwrap();
    assert_eq!(close_code(&mut garbage).await, Some(4400));
    // A refused token.
    let (_, refused) = connect(&app.base, Some("not-a-token")).await;
    assert!(
        matches!(&refused, Some(Message::Close(Some(f))) if u16::from(f.code) == 4403),
        "{refused:?}"
    );
    // A subscription id already in use.
    let (mut twice, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut twice, "").await;
    subscribe_events(&mut twice, "").await;
    assert_eq!(close_code(&mut twice).await, Some(4409));
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_subscriptions_and_sockets_are_counted() {
    let app = TestApp::spawn_with(|c| c.ws_max_subscriptions = 2, Vec::new()).await;
    let gauge = || async {
        let text = reqwest::get(format!("{}/metrics", app.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("billing_websocket_connections "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("gauge")
    };
    assert_eq!(gauge().await, 0);
    let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    for id in ["a", "b", "c"] {
        send(&mut ws, json!({ "id": id, "type": "subscribe", "payload": { "query": "subscription { billingEvents { kind } }" } })).await;
    }
    let refused = next_event(&mut ws).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{refused}"
    );
    assert_eq!(gauge().await, 1);
    // Ending one makes room.
    send(&mut ws, json!({ "id": "a", "type": "complete" })).await;
    send(&mut ws, json!({ "id": "d", "type": "subscribe", "payload": { "query": "subscription { billingEvents { kind } }" } })).await;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        assert!(!msg.to_string().contains("\"error\""), "{msg:?}");
    }
    drop(ws);
    tokio::time::timeout(Duration::from_secs(2), async {
        while gauge().await != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the closed socket is no longer counted");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_1001_and_exits_promptly() {
    let db = crate::helpers::TestDb::new().await;
    let app = billing::startup::Application::build(billing::config::Config::for_tests(
        db.url.clone(),
        ADMIN_TOKEN,
    ))
    .await
    .expect("starts");
    let base = format!("http://{}", app.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let (mut ws, ack) = connect(&base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_events(&mut ws, "").await;
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1001));
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops within 10 s")
        .unwrap()
        .expect("a clean stop");
    eprintln!("shutdown took {:?}", started.elapsed());
    // No longer accepting.
    assert!(reqwest::get(format!("{base}/health")).await.is_err());
}

/// Clock runs in one process take turns: concurrent `advanceClock` calls (each runs the
/// jobs inline, as the background tick does) all succeed and record one phase change.
#[tokio::test]
async fn concurrent_clock_runs_in_one_process_take_turns() {
    let app = TestApp::spawn().await;
    let (customer, start) = paid_three_phase(&app).await;
    let to = (start + chrono::TimeDelta::days(45)).to_rfc3339();
    let runs = (0..12).map(|_| {
        app.admin(
            "mutation($t: DateTime!) { advanceClock(to: $t) }",
            json!({ "t": to }),
        )
    });
    for res in futures_util::future::join_all(runs).await {
        res.ok();
    }
    let kinds = crate::subscriptions::event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PHASE_CHANGED").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_fragment_fan_out_over_a_websocket_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    let mut doc = String::from(
        "subscription { billingEvents { ...F27 } }\nfragment F0 on BillingEvent { kind cursor }\n",
    );
    for i in 1..=27 {
        doc.push_str(&format!(
            "fragment F{i} on BillingEvent {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    let started = std::time::Instant::now();
    send(
        &mut ws,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": doc } }),
    )
    .await;
    let refused = next_event(&mut ws).await;
    // A guard against the old multi-second expansion (the figure is a few ms).
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "{refused}"
    );
}

async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

async fn subscribe_with(ws: &mut Ws, id: &str, query: &str) {
    send(
        ws,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }),
    )
    .await;
}

/// The next `next` message: (id, the event).
async fn next_message(ws: &mut Ws) -> (String, Value) {
    loop {
        let v = next_text(ws).await;
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "next" {
            assert!(v["payload"].get("errors").is_none(), "{v}");
            return (
                v["id"].as_str().unwrap().to_owned(),
                v["payload"]["data"]["billingEvents"].clone(),
            );
        }
    }
}

/// Every `next` message until the socket is quiet for a moment: (id, the event).
async fn drain(ws: &mut Ws) -> Vec<(String, Value)> {
    let mut got = vec![next_message(ws).await];
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await
    {
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "next", "{v}");
            assert!(v["payload"].get("errors").is_none(), "{v}");
            got.push((
                v["id"].as_str().unwrap().to_owned(),
                v["payload"]["data"]["billingEvents"].clone(),
            ));
        }
    }
    got
}

/// Nothing more within a moment (an event that should not come would be on its way).
async fn quiet(ws: &mut Ws) {
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        assert!(!matches!(msg, Message::Text(_)), "unexpected {msg:?}");
    }
}

#[tokio::test]
async fn subscribers_with_one_selection_share_its_render_and_keep_their_own_events() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "0").await;
    let mine = app.create_customer("mine").await;
    let theirs = app.create_customer("theirs").await;
    let token = app.customer_token(&mine).await;
    let their_token = app.customer_token(&theirs).await;
    let full = "subscription { billingEvents { cursor kind customerId subscriptionId data } }";
    let small = "subscription Small { billingEvents { customerId kind } }";

    // Two admins and a customer with one selection set, an admin with another, and one
    // connection holding both.
    let mut admins = Vec::new();
    for _ in 0..2 {
        let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
        assert!(is_ack(&ack));
        subscribe_with(&mut ws, "full", full).await;
        admins.push(ws);
    }
    let (mut customer, ack) = connect(&app.base, Some(&token)).await;
    assert!(is_ack(&ack));
    subscribe_with(&mut customer, "full", full).await;
    let (mut other, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_with(&mut other, "small", small).await;
    let (mut both, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_with(&mut both, "a", full).await;
    subscribe_with(&mut both, "b", small).await;
    // Subscribed once a query on each connection has been answered after them.
    for ws in admins
        .iter_mut()
        .chain([&mut customer, &mut other, &mut both])
    {
        subscribe_with(ws, "probe", "{ __typename }").await;
        loop {
            let msg = ws.next().await.unwrap().unwrap();
            if msg
                .to_string()
                .contains(r#""type":"complete","id":"probe""#)
            {
                break;
            }
        }
    }

    let renders = metric(&app.base, "billing_event_renders_total").await;
    // Someone else's subscription, then the customer's own.
    subscribe(&app, &their_token, &theirs, &plan).await;
    subscribe(&app, &token, &mine, &plan).await;
    let all = drain(&mut admins[0]).await;
    let kinds = |es: &[(String, Value)], who: &str| {
        es.iter()
            .filter(|(_, e)| e["customerId"] == who)
            .map(|(_, e)| e["kind"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for who in [&theirs, &mine] {
        let k = kinds(&all, who);
        assert!(k.contains(&"SUBSCRIPTION_CREATED".to_owned()), "{k:?}");
        assert!(k.contains(&"SUBSCRIPTION_ACTIVATED".to_owned()), "{k:?}");
    }
    assert!(
        all.iter()
            .all(|(id, e)| id == "full" && e["cursor"].is_string() && e["data"].is_object())
    );
    assert_eq!(drain(&mut admins[1]).await, all);
    // The customer shares the admins' selection set, and sees only its own events.
    let own: Vec<(String, Value)> = all
        .iter()
        .filter(|(_, e)| e["customerId"] == json!(mine))
        .cloned()
        .collect();
    assert_eq!(drain(&mut customer).await, own);
    let small_events: Vec<(String, Value)> = all
        .iter()
        .map(|(_, e)| {
            (
                "small".to_owned(),
                json!({ "kind": e["kind"], "customerId": e["customerId"] }),
            )
        })
        .collect();
    assert_eq!(drain(&mut other).await, small_events);
    let mut by_id: std::collections::HashMap<String, Vec<(String, Value)>> = Default::default();
    for (id, e) in drain(&mut both).await {
        by_id.entry(id.clone()).or_default().push((id, e));
    }
    assert_eq!(
        by_id["a"],
        all.iter()
            .map(|(_, e)| ("a".to_owned(), e.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        by_id["b"],
        small_events
            .iter()
            .map(|(_, e)| ("b".to_owned(), e.clone()))
            .collect::<Vec<_>>()
    );
    // Each event was rendered once per selection set, whatever the subscribers.
    assert_eq!(
        metric(&app.base, "billing_event_renders_total").await - renders,
        2 * all.len() as u64
    );

    // An ended subscription gets nothing more; the connection's other one goes on.
    send(&mut both, json!({ "id": "a", "type": "complete" })).await;
    let done = tokio::time::timeout(Duration::from_secs(5), both.next()).await;
    assert!(
        matches!(&done, Ok(Some(Ok(Message::Text(t)))) if t.contains(r#""type":"complete","id":"a""#)),
        "{done:?}"
    );
    let later = app.create_customer("later").await;
    let later_token = app.customer_token(&later).await;
    subscribe(&app, &later_token, &later, &plan).await;
    let rest = drain(&mut both).await;
    assert!(
        !rest.is_empty()
            && rest
                .iter()
                .all(|(id, e)| id == "b" && e["customerId"] == json!(later)),
        "{rest:?}"
    );
    quiet(&mut customer).await;
}

#[tokio::test]
async fn queries_over_a_websocket_answer_and_complete() {
    let app = TestApp::spawn().await;
    let (mut ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack));
    subscribe_with(&mut ws, "q", "{ viewer { role } }").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(serde_json::from_str::<Value>(&msg.to_string()).unwrap());
    }
    assert_eq!(got[0]["type"], "next", "{got:?}");
    assert_eq!(got[0]["id"], "q");
    assert!(
        got[0]["payload"]["data"]["viewer"]["role"].is_string(),
        "{got:?}"
    );
    assert_eq!(got[1], json!({ "type": "complete", "id": "q" }));
    // A document that does not validate: its errors, then complete.
    subscribe_with(&mut ws, "bad", "subscription { billingEvents { nope } }").await;
    let msg = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(&msg.to_string()).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("next"), Some("bad")),
        "{v}"
    );
    assert!(v["payload"]["errors"][0]["message"].is_string(), "{v}");
    let msg = ws.next().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&msg.to_string()).unwrap(),
        json!({ "type": "complete", "id": "bad" })
    );
}

/// Websockets are served on a thread of their own at a lower CPU priority than the HTTP
/// workers (Linux niceness, per thread): on a busy CPU, queries and mutations run before
/// the fan-out of their events.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn websockets_run_on_a_thread_below_the_http_workers() {
    let app = TestApp::spawn().await;
    let (_ws, ack) = connect(&app.base, Some(ADMIN_TOKEN)).await;
    assert!(is_ack(&ack), "{ack:?}");
    // Field 19 of /proc/…/stat is the niceness; the name before it is in parentheses.
    let niceness = |stat: &str| -> i64 {
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after_name
            .split_whitespace()
            .nth(16)
            .and_then(|n| n.parse().ok())
            .expect("a niceness in /proc/…/stat")
    };
    let mut ws_threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        if name.trim() == "billing-ws" {
            ws_threads.push(niceness(&stat));
        }
    }
    let own = niceness(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    assert!(
        !ws_threads.is_empty(),
        "no billing-ws thread in this process"
    );
    assert!(
        ws_threads.iter().all(|&n| n > own),
        "websocket threads at niceness {ws_threads:?}, the test's own thread at {own}"
    );
}
