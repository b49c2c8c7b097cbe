//! Live billing events over `/graphql/ws` (graphql-transport-ws).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{ADMIN_TOKEN, TestApp};
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

/// The next `next` payload (or error), within five seconds.
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an event within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            match v["type"].as_str() {
                Some("next") => return v["payload"].clone(),
                Some("error") => return json!({ "errors": v["payload"] }),
                _ => continue,
            }
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
    let Some(replica) = app.replica().await else {
        eprintln!(
            "events_cross_replicas_on_postgres: needs TEST_DATABASE_URL=postgres://…; skipped on SQLite"
        );
        return;
    };
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

/// Two processes run their billing clocks against one PostgreSQL database: a phase
/// crossing is recorded once.
#[tokio::test]
async fn two_clocks_record_one_phase_change_on_postgres() {
    let app = TestApp::spawn().await;
    let Some(replica) = app.replica().await else {
        eprintln!(
            "two_clocks_record_one_phase_change_on_postgres: needs PostgreSQL; skipped on SQLite"
        );
        return;
    };
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app
        .create_plan(crate::helpers::three_phase_plan("Pro", &container))
        .await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let start = app.billing.clock.now();
    let out = subscribe(&app, &token, &customer, &plan).await;
    pay(
        &app,
        out["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let to = (start + chrono::TimeDelta::days(15)).to_rfc3339();
    let client = reqwest::Client::new();
    let advance = |base: String| {
        let (client, to) = (client.clone(), to.clone());
        async move {
            client
                .post(format!("{base}/graphql"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({ "query": "mutation($t: DateTime!) { advanceClock(to: $t) }", "variables": { "t": to } }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (a, b) = tokio::join!(advance(app.base.clone()), advance(replica.base.clone()));
    assert!(a.is_success() && b.is_success());
    // And once more each, as later ticks would.
    let (a, b) = tokio::join!(advance(app.base.clone()), advance(replica.base.clone()));
    assert!(a.is_success() && b.is_success());
    let kinds = crate::subscriptions::event_kinds(&app, &customer).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "PHASE_CHANGED").count(),
        1,
        "{kinds:?}"
    );
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
