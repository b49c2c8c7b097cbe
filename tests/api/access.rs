use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, TestApp, three_phase_plan};

#[tokio::test]
async fn a_customer_token_sees_only_its_own_customer() {
    let app = TestApp::spawn().await;
    let mine = app.create_customer("mine").await;
    let theirs = app.create_customer("theirs").await;
    let token = app.customer_token(&mine).await;

    let viewer = app
        .gql_as(
            Some(&token),
            "{ viewer { role customer { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        viewer.ok()["viewer"],
        json!({ "role": "CUSTOMER", "customer": { "id": mine } })
    );
    let own = app
        .gql_as(
            Some(&token),
            "query($id: ID!) { customer(id: $id) { id } }",
            json!({ "id": mine }),
        )
        .await;
    assert_eq!(own.ok()["customer"]["id"], mine.as_str());

    let other = app
        .gql_as(
            Some(&token),
            "query($id: ID!) { customer(id: $id) { id name } }",
            json!({ "id": theirs }),
        )
        .await;
    other.expect_code("NOT_FOUND");
    assert_eq!(other.body["data"]["customer"], serde_json::Value::Null);
    let change = app
        .gql_as(
            Some(&token),
            "mutation($id: ID!) { updateCustomer(id: $id, input: { name: \"pwned\" }) { id } }",
            json!({ "id": theirs }),
        )
        .await;
    change.expect_code("NOT_FOUND");
    let still = app
        .admin(
            "query($id: ID!) { customer(id: $id) { name } }",
            json!({ "id": theirs }),
        )
        .await;
    assert_eq!(still.ok()["customer"]["name"], "Ada");

    // Its own contact details, yes; its currency, no.
    let renamed = app
        .gql_as(
            Some(&token),
            "mutation($id: ID!) { updateCustomer(id: $id, input: { name: \"Mine\" }) { name } }",
            json!({ "id": mine }),
        )
        .await;
    assert_eq!(renamed.ok()["updateCustomer"]["name"], "Mine");
    let currency = app
        .gql_as(
            Some(&token),
            "mutation($id: ID!) { updateCustomer(id: $id, input: { currency: \"EUR\" }) { id } }",
            json!({ "id": mine }),
        )
        .await;
    currency.expect_code("FORBIDDEN");

    for admin_only in [
        "{ customers { edges { node { id } } } }",
        "mutation { createProduct(input: { name: \"x\", kind: PACKAGE, unitType: \"CORE\" }) { id } }",
        "mutation { createCustomer(input: { externalId: \"x\", name: \"x\", email: \"x@y.io\" }) { id } }",
    ] {
        app.gql_as(Some(&token), admin_only, json!({}))
            .await
            .expect_code("FORBIDDEN");
        app.anon(admin_only, json!({}))
            .await
            .expect_code("UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn anonymous_callers_see_the_public_catalog_and_offers_stay_private() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    app.create_plan(three_phase_plan("Public", &container))
        .await;
    let vip = app.create_customer("vip").await;
    let other = app.create_customer("other").await;
    let mut private = three_phase_plan("Private", &container);
    private["public"] = json!(false);
    private["offeredTo"] = json!([vip]);
    let private_id = app.create_plan(private).await;

    let names = |res: &crate::helpers::Gql| -> Vec<String> {
        res.ok()["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&app.anon("{ plans { name } }", json!({})).await),
        ["Public"]
    );
    let vip_token = app.customer_token(&vip).await;
    let other_token = app.customer_token(&other).await;
    assert_eq!(
        names(
            &app.gql_as(Some(&vip_token), "{ plans { name } }", json!({}))
                .await
        ),
        ["Public", "Private"]
    );
    assert_eq!(
        names(
            &app.gql_as(Some(&other_token), "{ plans { name } }", json!({}))
                .await
        ),
        ["Public"]
    );
    let hidden = app
        .gql_as(
            Some(&other_token),
            "query($p: ID!) { plan(id: $p) { name } }",
            json!({ "p": private_id }),
        )
        .await;
    assert_eq!(hidden.ok()["plan"], serde_json::Value::Null);
    let offered = app
        .gql_as(
            Some(&vip_token),
            "query($p: ID!) { plan(id: $p) { offeredTo } }",
            json!({ "p": private_id }),
        )
        .await;
    offered.expect_code("FORBIDDEN");

    let withdrawn = app
        .admin(
            "mutation($p: ID!, $c: ID!) { withdrawPlanOffer(planId: $p, customerId: $c) { offeredTo } }",
            json!({ "p": private_id, "c": vip }),
        )
        .await;
    assert_eq!(withdrawn.ok()["withdrawPlanOffer"]["offeredTo"], json!([]));
    assert_eq!(
        names(
            &app.gql_as(Some(&vip_token), "{ plans { name } }", json!({}))
                .await
        ),
        ["Public"]
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_and_revoked_keys_stop_working() {
    let app = TestApp::spawn().await;
    let bad = app
        .gql_as(Some("not-a-token"), "{ viewer { role } }", json!({}))
        .await;
    assert_eq!(bad.status, 401);
    bad.expect_code("UNAUTHENTICATED");

    let customer = app.create_customer("c").await;
    let issued = app
        .admin("mutation($c: ID!) { createApiKey(customerId: $c) { token key { id prefix } customer { id } } }", json!({ "c": customer }))
        .await;
    let issued = issued.ok()["createApiKey"].clone();
    let token = issued["token"].as_str().unwrap();
    assert!(token.starts_with(issued["key"]["prefix"].as_str().unwrap()));
    assert_eq!(
        app.gql_as(Some(token), "{ viewer { role } }", json!({}))
            .await
            .ok()["viewer"]["role"],
        "CUSTOMER"
    );

    let keys = app
        .admin(
            "query($c: ID!) { customer(id: $c) { apiKeys { id revokedAt } } }",
            json!({ "c": customer }),
        )
        .await;
    assert_eq!(
        keys.ok()["customer"]["apiKeys"].as_array().unwrap().len(),
        1
    );
    let listing_keys = app
        .gql_as(
            Some(token),
            "query($c: ID!) { customer(id: $c) { apiKeys { id } } }",
            json!({ "c": customer }),
        )
        .await;
    listing_keys.expect_code("FORBIDDEN");

    app.admin(
        "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }",
        json!({ "id": issued["key"]["id"] }),
    )
    .await
    .ok();
    app.gql_as(Some(token), "{ viewer { role } }", json!({}))
        .await
        .expect_code("UNAUTHENTICATED");
    let anon = app
        .anon("{ viewer { role customer { id } } }", json!({}))
        .await;
    assert_eq!(
        anon.ok()["viewer"],
        json!({ "role": "ANONYMOUS", "customer": null })
    );
}

#[tokio::test]
async fn the_test_clock_moves_forward_only_and_only_for_admins() {
    let app = TestApp::spawn().await;
    let moved = app
        .admin(
            "mutation { advanceClock(to: \"2099-01-01T00:00:00Z\") }",
            json!({}),
        )
        .await;
    assert_eq!(moved.ok()["advanceClock"], "2099-01-01T00:00:00+00:00");
    assert_eq!(
        app.anon("{ now }", json!({})).await.ok()["now"],
        "2099-01-01T00:00:00+00:00"
    );
    let back = app
        .admin(
            "mutation { advanceClock(to: \"2098-01-01T00:00:00Z\") }",
            json!({}),
        )
        .await;
    back.expect_code("BAD_USER_INPUT");
    let anon = app
        .anon(
            "mutation { advanceClock(to: \"2100-01-01T00:00:00Z\") }",
            json!({}),
        )
        .await;
    anon.expect_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn a_configured_admin_token_replaces_the_previous_one() {
    let app = TestApp::spawn().await;
    const NEXT: &str = "rotated-admin-token-abcdefghijklmnopqrstuvwxyz";
    let short = app
        .restart_with(|c| c.admin_token = Some("short-token".into()))
        .await;
    assert!(short.is_err(), "a short admin token is refused at start-up");
    let restarted = app
        .restart_with(|c| c.admin_token = Some(NEXT.into()))
        .await
        .expect("starts with the new token");
    let ask = |base: String, token: &'static str| {
        let client = app.client.clone();
        async move {
            let res = client
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": "{ viewer { role } }" }))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = ask(restarted.base.clone(), ADMIN_TOKEN).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (_, body) = ask(restarted.base.clone(), NEXT).await;
    assert_eq!(body["data"]["viewer"]["role"], "ADMIN", "{body}");
    // Nothing of a configured token is stored in clear; generated ones keep a short prefix.
    let keys = entity::api_key::Entity::find()
        .all(app.billing.db.conn())
        .await
        .unwrap();
    assert!(keys.iter().all(|k| k.prefix.is_empty()), "{keys:?}");
}

#[tokio::test]
async fn introspection_needs_a_token_by_default() {
    let app = TestApp::spawn_with(
        |c| c.introspection = billing::config::Config::for_tests("", "").introspection,
        Vec::new(),
    )
    .await;
    let q = "{ __schema { queryType { name } } }";
    let anon = app.anon(q, json!({})).await;
    assert_eq!(
        anon.body["data"]["__schema"],
        serde_json::Value::Null,
        "{}",
        anon.body
    );
    let admin = app.admin(q, json!({})).await;
    assert_eq!(admin.ok()["__schema"]["queryType"]["name"], "QueryRoot");
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let theirs = app.gql_as(Some(&token), q, json!({})).await;
    assert_eq!(theirs.ok()["__schema"]["queryType"]["name"], "QueryRoot");
}
