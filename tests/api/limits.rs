use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_deeply_nested_query_is_refused() {
    let app = TestApp::spawn().await;
    let mut q = String::from("__typename");
    for _ in 0..50 {
        q = format!(
            "plans {{ phases {{ prices {{ product {{ packages {{ product {{ {q} }} }} }} }} }} }}"
        );
        if q.len() > 4000 {
            break;
        }
    }
    let res = app.anon(&format!("{{ {q} }}"), json!({})).await;
    assert!(res.body["errors"].is_array(), "{}", res.body);
    assert_eq!(res.body["data"], serde_json::Value::Null);
    assert_eq!(res.error_code(), Some("QUERY_TOO_DEEP"), "{}", res.body);
}

#[tokio::test]
async fn a_thousand_aliases_are_refused() {
    let app = TestApp::spawn().await;
    let fields: String = (0..1000)
        .map(|i| format!("a{i}: products {{ id }} "))
        .collect();
    let res = app.anon(&format!("{{ {fields} }}"), json!({})).await;
    assert_eq!(res.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", res.body);
}

#[tokio::test]
async fn a_ten_megabyte_body_is_refused() {
    let app = TestApp::spawn().await;
    let body = json!({ "query": format!("{{ viewer {{ role }} }} #{}", "x".repeat(10 << 20)) });
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 413);
}

#[tokio::test]
async fn batches_are_capped() {
    let app = TestApp::spawn().await;
    let op = json!({ "query": "{ viewer { role } }" });
    let ok = app.post_json(None, &json!(vec![op.clone(); 3])).await;
    assert_eq!(ok.body.as_array().map(Vec::len), Some(3));
    let refused = app.post_json(None, &json!(vec![op; 11])).await;
    assert_eq!(refused.status, 400);
    refused.expect_code("BAD_USER_INPUT");
}

#[tokio::test]
async fn malformed_queries_get_a_code() {
    let app = TestApp::spawn().await;
    let res = app.anon("{ plans { nope } }", json!({})).await;
    res.expect_code("BAD_USER_INPUT");
    let res = app.anon("{ plans ", json!({})).await;
    res.expect_code("BAD_USER_INPUT");
    let res = app
        .anon(
            "query($id: ID!) { customer(id: $id) { id } }",
            json!({ "id": "not-a-uuid" }),
        )
        .await;
    res.expect_code("BAD_USER_INPUT");
}

/// `{ products { ...F27 } }` where each fragment spreads the one before twice: 2^28 fields
/// from a kilobyte, that used to cost seconds of CPU before it was refused.
fn fan_out(levels: usize) -> String {
    let mut text =
        format!("{{ products {{ ...F{levels} }} }}\nfragment F0 on Product {{ id name }}\n");
    for i in 1..=levels {
        text.push_str(&format!(
            "fragment F{i} on Product {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    text
}

#[tokio::test]
async fn a_fragment_fan_out_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let doc = fan_out(27);
    let mut fastest = std::time::Duration::MAX;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let res = app.anon(&doc, json!({})).await;
        fastest = fastest.min(started.elapsed());
        assert_eq!(res.error_code(), Some("QUERY_TOO_COMPLEX"), "{}", res.body);
        assert_eq!(res.body["data"], serde_json::Value::Null);
    }
    eprintln!("fan-out refused in {fastest:?}");
    // A guard against the old multi-second expansion, loose enough for a loaded CI
    // machine; the figure itself (about 2 ms here) is printed and kept in the notes.
    assert!(fastest < std::time::Duration::from_secs(1), "{fastest:?}");
    // Within the limits, fragments work as before.
    let small = app.anon(&fan_out(3), json!({})).await;
    assert_eq!(small.ok()["products"], json!([]));
}

#[tokio::test]
async fn health_answers_while_fan_outs_are_in_flight() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let doc = std::sync::Arc::new(fan_out(27));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (app, doc) = (app.clone(), doc.clone());
        attackers.spawn(async move {
            for _ in 0..25 {
                let res = app.anon(&doc, json!({})).await;
                assert_eq!(res.error_code(), Some("QUERY_TOO_COMPLEX"));
            }
        });
    }
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let res = app
            .client
            .get(format!("{}/health", app.base))
            .send()
            .await
            .expect("health");
        assert!(res.status().is_success());
        slowest = slowest.max(started.elapsed());
    }
    while let Some(done) = attackers.join_next().await {
        done.expect("attacker finished");
    }
    eprintln!("slowest /health under four fan-outs: {slowest:?}");
    // Before, /health stopped answering altogether; the figure (15-85 ms here) is
    // printed. The bound only guards against a stall on a loaded machine.
    assert!(slowest < std::time::Duration::from_secs(2), "{slowest:?}");
}

#[tokio::test]
async fn a_body_that_is_not_json_gets_a_coded_error() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body("{ this is not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 400);
    let body: serde_json::Value = res.json().await.expect("a JSON answer");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
}

#[tokio::test]
async fn requests_over_the_rate_limits_get_429_with_retry_after() {
    let app = TestApp::spawn_with(
        |c| {
            c.rate_limit_per_token = 5;
            c.rate_limit_per_address = 12;
        },
        Vec::new(),
    )
    .await;
    let ask = |token: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/graphql", app.base))
            .json(&json!({ "query": "{ viewer { role } }" }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for _ in 0..5 {
        assert_eq!(
            ask(Some(crate::helpers::ADMIN_TOKEN))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let refused = ask(Some(crate::helpers::ADMIN_TOKEN)).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    // Another caller from the same address still gets through, until the address's limit.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(ask(None).await.unwrap().status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429],
        "{statuses:?}"
    );
}

/// A document is validated in full once and kept; each later request with the same text
/// still has its variables checked before anything runs: a bad value for the second of two
/// mutations refuses the whole request, and the first one does not run either.
#[tokio::test]
async fn a_kept_document_still_checks_each_requests_variables() {
    let app = TestApp::spawn().await;
    const TWO: &str = "mutation($a: CreateCustomerInput!, $b: CreateCustomerInput!) { \
        a: createCustomer(input: $a) { id } b: createCustomer(input: $b) { id } }";
    let customer = |ext: &str| json!({ "externalId": ext, "name": ext, "email": format!("{ext}@example.com") });
    let first = app
        .admin(TWO, json!({ "a": customer("k1"), "b": customer("k2") }))
        .await;
    first.ok();
    let count = || async {
        let res = app
            .admin(
                "{ customers(first: 50) { nodes { externalId } } }",
                json!({}),
            )
            .await;
        let nodes = res.ok()["customers"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        nodes.len()
    };
    assert_eq!(count().await, 2);

    let refusals = [
        // A number where the type says a string.
        json!({ "externalId": "k4", "name": 5, "email": "k4@example.com" }),
        // A field the input type does not have.
        json!({ "externalId": "k4", "name": "k4", "email": "k4@example.com", "colour": "red" }),
        // A required field left out.
        json!({ "externalId": "k4", "name": "k4" }),
        // Null for a required variable.
        serde_json::Value::Null,
    ];
    for bad in refusals {
        let res = app
            .admin(TWO, json!({ "a": customer("k3"), "b": bad }))
            .await;
        assert_eq!(res.body["data"], serde_json::Value::Null, "{}", res.body);
        res.expect_code("BAD_USER_INPUT");
    }
    assert_eq!(count().await, 2, "no mutation of a refused request ran");

    // The same text with good values still runs.
    app.admin(TWO, json!({ "a": customer("k3"), "b": customer("k4") }))
        .await
        .ok();
    assert_eq!(count().await, 4);
}

/// The same for an enumeration: a kept document refuses a value its enum does not have,
/// before the mutation ahead of it runs.
#[tokio::test]
async fn a_kept_document_refuses_an_unknown_enum_value() {
    let app = TestApp::spawn().await;
    const TWO: &str = "mutation($a: CreateProductInput!, $b: CreateProductInput!) { \
        a: createProduct(input: $a) { id } b: createProduct(input: $b) { id } }";
    let product = |name: &str, kind: &str| json!({ "name": name, "kind": kind, "resource": null, "unitType": "CORE" });
    let count = || async {
        let res = app.admin("{ products { id } }", json!({})).await;
        res.ok()["products"].as_array().map(Vec::len)
    };
    app.admin(
        TWO,
        json!({ "a": product("A", "PACKAGE"), "b": product("B", "PACKAGE") }),
    )
    .await
    .ok();
    assert_eq!(count().await, Some(2));
    let res = app
        .admin(
            TWO,
            json!({ "a": product("C", "PACKAGE"), "b": product("D", "GADGET") }),
        )
        .await;
    assert_eq!(res.body["data"], serde_json::Value::Null, "{}", res.body);
    res.expect_code("BAD_USER_INPUT");
    assert!(res.error_message().contains("GADGET"), "{}", res.body);
    assert_eq!(
        count().await,
        Some(2),
        "no mutation of a refused request ran"
    );
}
