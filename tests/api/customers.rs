use serde_json::json;

use crate::helpers::TestApp;

const FIELDS: &str = "id externalId name email phone currency region billingStart address { line1 city postalCode country }";

#[tokio::test]
async fn creating_a_customer_twice_with_one_reference_returns_the_same_customer() {
    let app = TestApp::spawn().await;
    let input = json!({ "externalId": "project-42", "name": "Lab", "email": "lab@example.org", "phone": "+1 555 0100",
        "currency": "eur", "region": "eu-west", "address": { "line1": "1 Main St", "city": "Oslo", "postalCode": "0150", "country": "NO" } });
    let first = app
        .admin(
            &format!(
                "mutation($i: CreateCustomerInput!) {{ createCustomer(input: $i) {{ {FIELDS} }} }}"
            ),
            json!({ "i": input }),
        )
        .await;
    let first = first.ok()["createCustomer"].clone();
    assert_eq!(first["currency"], "EUR");
    assert_eq!(first["address"]["city"], "Oslo");
    assert_eq!(first["billingStart"], serde_json::Value::Null);
    let again = app.create_customer("project-42").await;
    assert_eq!(again, first["id"].as_str().unwrap());

    let listed = app
        .admin("{ customers { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(
        listed.ok()["customers"]["edges"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn concurrent_creates_with_one_reference_make_one_customer() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.spawn(async move { app.create_customer("same-project").await });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.expect("task"));
    }
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn customers_are_updated_and_defaults_apply() {
    let app = TestApp::spawn().await;
    let id = app.create_customer("p-1").await;
    let res = app
        .admin(
            &format!("mutation($id: ID!) {{ updateCustomer(id: $id, input: {{ name: \"Renamed\", email: \"new@example.com\", region: \"us-east\", address: {{ city: \"Lima\" }} }}) {{ {FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    let c = res.ok()["updateCustomer"].clone();
    assert_eq!(
        (c["name"].as_str(), c["email"].as_str()),
        (Some("Renamed"), Some("new@example.com"))
    );
    assert_eq!(
        (c["currency"].as_str(), c["region"].as_str()),
        (Some("USD"), Some("us-east"))
    );
    assert_eq!(c["address"]["city"], "Lima");

    let bad = app
        .admin("mutation($id: ID!) { updateCustomer(id: $id, input: { email: \"not-an-email\" }) { id } }", json!({ "id": id }))
        .await;
    assert!(bad.expect_code("BAD_USER_INPUT").contains("email"));
    let bad_currency = app
        .admin(
            "mutation($id: ID!) { updateCustomer(id: $id, input: { currency: \"EURO\" }) { id } }",
            json!({ "id": id }),
        )
        .await;
    bad_currency.expect_code("BAD_USER_INPUT");
    let unchanged = app
        .admin(
            "query($id: ID!) { customer(id: $id) { email currency } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        unchanged.ok()["customer"],
        json!({ "email": "new@example.com", "currency": "USD" })
    );

    let started = app
        .admin(
            "mutation($id: ID!) { setBillingStart(customerId: $id, at: \"2026-03-01T12:00:00.750Z\") { billingStart } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        started.ok()["setBillingStart"]["billingStart"],
        "2026-03-01T12:00:00+00:00"
    );
}

#[tokio::test]
async fn customers_are_paged_and_searched() {
    let app = TestApp::spawn().await;
    for i in 0..7 {
        app.create_customer_with(json!({ "externalId": format!("proj-{i}"), "name": format!("Team {i}"),
            "email": if i % 2 == 0 { format!("even{i}@acme.io") } else { format!("odd{i}@corp.io") } }))
            .await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let res = app
            .admin(
                "query($a: String) { customers(first: 3, after: $a) { edges { cursor node { externalId } } pageInfo { hasNextPage endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        let conn = res.ok()["customers"].clone();
        for e in conn["edges"].as_array().unwrap() {
            seen.push(e["node"]["externalId"].as_str().unwrap().to_owned());
        }
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        seen,
        (0..7).map(|i| format!("proj-{i}")).collect::<Vec<_>>()
    );

    let found = app
        .admin(
            "{ customers(search: \"ACME\") { edges { node { externalId } } } }",
            json!({}),
        )
        .await;
    let ids: Vec<&str> = found.ok()["customers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["proj-0", "proj-2", "proj-4", "proj-6"]);
    let none = app
        .admin(
            "{ customers(search: \"%\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(none.ok()["customers"]["edges"], json!([]));
    let bad = app
        .admin(
            "{ customers(after: \"garbage\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    bad.expect_code("BAD_USER_INPUT");
}

/// Customers → subscriptions → customer → subscriptions: a constant number of statements
/// however many customers the page holds (DataLoaders batch each level).
#[tokio::test]
async fn nested_customer_data_costs_constant_statements() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app
        .create_plan(json!({ "name": "Free", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" } ] }] }))
        .await;
    let query = "{ customers(first: 50) { edges { node { name subscriptions { status checkout { status } customer { externalId subscriptions { id } } } } } } }";
    let mut counts = Vec::new();
    for batch in [2, 4] {
        for i in 0..batch {
            let id = app.create_customer(&format!("c{batch}-{i}")).await;
            app.admin(
                "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id } } }",
                json!({ "i": { "customerId": id, "planId": plan, "successUrl": "https://a.example/ok", "cancelUrl": "https://a.example/no" } }),
            )
            .await
            .ok();
        }
        app.admin(query, json!({})).await.ok();
        let (res, statements) = app.admin_counted(query, json!({})).await;
        counts.push(statements);
        let edges = res.ok()["customers"]["edges"].as_array().unwrap().clone();
        assert!(edges.iter().all(|e| {
            e["node"]["subscriptions"][0]["customer"]["subscriptions"][0]["id"].is_string()
        }));
    }
    assert_eq!(
        counts[0], counts[1],
        "statements must not grow with the number of customers: {counts:?}"
    );
    // The page, then one batch per loader level (in the loaders' own tasks): all counted.
    assert!(counts[0] >= 4, "every level's statements count: {counts:?}");
    // customers, subscriptions, checkouts, customers, subscriptions: one query per level.
    assert_eq!(counts[0], 5, "{counts:?}");
}

#[tokio::test]
async fn control_characters_long_names_bad_countries_and_far_instants_are_refused() {
    let app = TestApp::spawn().await;
    const CREATE: &str = "mutation($i: CreateCustomerInput!) { createCustomer(input: $i) { id address { country } } }";
    for (field, value) in [
        ("name", "Ada\u{0}"),
        ("name", "Ada\u{202E}nimda"),
        ("externalId", "proj\u{1}"),
        ("email", "ada\u{2066}@example.com"),
    ] {
        let mut input =
            serde_json::json!({ "externalId": "p", "name": "Ada", "email": "ada@example.com" });
        input[field] = serde_json::json!(value);
        app.admin(CREATE, serde_json::json!({ "i": input }))
            .await
            .expect_code("BAD_USER_INPUT");
    }
    let long = "x".repeat(201);
    app.admin(
        CREATE,
        serde_json::json!({ "i": { "externalId": "p", "name": long, "email": "ada@example.com" } }),
    )
    .await
    .expect_code("BAD_USER_INPUT");
    app.admin(CREATE, serde_json::json!({ "i": { "externalId": "p", "name": "Ada", "email": "ada@example.com", "address": { "country": "Neverland" } } }))
        .await
        .expect_code("BAD_USER_INPUT");
    let ok = app
        .admin(CREATE, serde_json::json!({ "i": { "externalId": "p", "name": "Ada", "email": "ada@example.com", "address": { "country": "de" } } }))
        .await;
    assert_eq!(ok.ok()["createCustomer"]["address"]["country"], "DE");
    let id = ok.ok()["createCustomer"]["id"].as_str().unwrap().to_owned();
    for at in [
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "+10000-01-01T00:00:00Z",
    ] {
        let res = app
            .admin(
                "mutation($c: ID!, $t: DateTime!) { setBillingStart(customerId: $c, at: $t) { id } }",
                serde_json::json!({ "c": id, "t": at }),
            )
            .await;
        res.expect_code("BAD_USER_INPUT");
    }
    // A metric and an idempotency key with a control character.
    app.admin(
        "mutation($c: ID!) { acquireLimit(customerId: $c, metric: \"cpu\\u0007\") { used } }",
        serde_json::json!({ "c": id }),
    )
    .await
    .expect_code("BAD_USER_INPUT");
    // Decimals are written plainly.
    for bad in ["1e5", "1_000", "+1", " 1"] {
        let res = app
            .anon(
                "query($q: Decimal!) { quote(input: { planId: \"00000000-0000-0000-0000-000000000000\", productId: \"00000000-0000-0000-0000-000000000000\", currency: \"USD\", quantity: $q }) { matched } }",
                serde_json::json!({ "q": bad }),
            )
            .await;
        assert!(
            res.expect_code("BAD_USER_INPUT")
                .contains("not a decimal number"),
            "{}",
            res.body
        );
    }
}
