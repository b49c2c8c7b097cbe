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
