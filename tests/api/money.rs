use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn extreme_amounts_round_trip_exactly_through_graphql_and_the_database() {
    let app = TestApp::spawn().await;
    let storage = app
        .create_product("Storage", "METERED_RESOURCE", Some("storage"))
        .await;
    let amounts = ["0.000000000001", "9999999999.999999999999", "12.50", "0"];
    let prices: Vec<_> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({ "productId": storage, "currency": "USD", "region": format!("r{i}"), "unitAmount": a, "interval": "UNIT", "maxQuantity": "123456.123456" })
        })
        .collect();
    let plan = app
        .create_plan(json!({ "name": "Exact", "phases": [{ "kind": "FINAL", "prices": prices }] }))
        .await;

    // Read back from a fresh snapshot, loaded from the database.
    app.billing.reload_catalog().await.unwrap();
    let res = app
        .anon("query($p: ID!) { plan(id: $p) { phases { prices { region unitAmount maxQuantity } } } }", json!({ "p": plan }))
        .await;
    let stored = res.ok()["plan"]["phases"][0]["prices"]
        .as_array()
        .unwrap()
        .clone();
    for (i, a) in amounts.iter().enumerate() {
        let p = stored
            .iter()
            .find(|p| p["region"] == format!("r{i}"))
            .expect("price stored");
        assert_eq!(p["unitAmount"], *a);
        assert_eq!(p["maxQuantity"], "123456.123456");
    }

    let q = app
        .anon(
            "query($i: QuoteInput!) { quote(input: $i) { amount amountRounded } }",
            json!({ "i": { "planId": plan, "productId": storage, "currency": "USD", "region": "r0", "quantity": "3" } }),
        )
        .await;
    assert_eq!(
        q.ok()["quote"],
        json!({ "amount": "0.000000000003", "amountRounded": "0.00" })
    );
}

#[tokio::test]
async fn a_json_number_where_a_decimal_is_expected_is_refused() {
    let app = TestApp::spawn().await;
    let storage = app
        .create_product("Storage", "METERED_RESOURCE", Some("storage"))
        .await;
    let res = app
        .admin(
            "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
            json!({ "i": { "name": "Float", "phases": [{ "kind": "FINAL", "prices": [
                { "productId": storage, "currency": "USD", "unitAmount": 0.1, "interval": "UNIT" } ] }] } }),
        )
        .await;
    assert!(
        res.expect_code("BAD_USER_INPUT")
            .contains("must be strings"),
        "{}",
        res.body
    );
    let inline = app
        .admin(
            r#"mutation($p: ID!) { createPackage(input: { productId: $p, name: "x", cpu: 1, memoryMb: 1 }) { id } }"#,
            json!({ "p": storage }),
        )
        .await;
    assert!(
        inline
            .expect_code("BAD_USER_INPUT")
            .contains("must be strings"),
        "{}",
        inline.body
    );
    let plans = app.admin("{ plans { id } }", json!({})).await;
    assert_eq!(plans.ok()["plans"], json!([]));
}
