use std::sync::Arc;

use serde_json::json;

use sea_orm::EntityTrait;

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, subscribe};

const ACQUIRE: &str = "mutation($c: ID!, $m: String!) { acquireLimit(customerId: $c, metric: $m) { limit used remaining allowed } }";

/// A free plan with limits and a metered bandwidth product; returns (plan, bandwidth).
async fn limited_plan(app: &TestApp, computations: i64, kind: &str) -> (String, String) {
    let container = app.create_product("Container", "PACKAGE", None).await;
    let bandwidth = app
        .admin(
            r#"mutation { createProduct(input: { name: "Bandwidth", kind: METERED_RESOURCE, resource: "bandwidth", unitType: "GB", aggregatedUsage: true }) { id } }"#,
            json!({}),
        )
        .await
        .ok()["createProduct"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plan = app
        .create_plan(json!({ "name": format!("Limited {computations}"), "limits": [{ "metric": "computations", "max": computations, "kind": kind }],
            "phases": [{ "kind": "FINAL", "prices": [
                { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" },
                { "productId": bandwidth, "currency": "USD", "unitAmount": "0", "interval": "UNIT" } ] }] }))
        .await;
    (plan, bandwidth)
}

#[tokio::test]
async fn a_hundred_concurrent_acquires_get_exactly_the_limit() {
    let app = Arc::new(TestApp::spawn().await);
    limited_plan(&app, 10, "COUNT").await; // the default plan governs customers without a subscription
    let customer = app.create_customer("project").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (app, customer) = (app.clone(), customer.clone());
        tasks.spawn(async move {
            app.admin(ACQUIRE, json!({ "c": customer, "m": "computations" }))
                .await
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        match res.unwrap().error_code() {
            None => ok += 1,
            Some("LIMIT_EXCEEDED") => refused += 1,
            Some(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (10, 90));
    let e = app
        .admin("query($c: ID!) { entitlement(customerId: $c, metric: \"computations\") { limit used remaining allowed kind } }", json!({ "c": customer }))
        .await;
    assert_eq!(
        e.ok()["entitlement"],
        json!({ "limit": 10, "used": 10, "remaining": 0, "allowed": false, "kind": "COUNT" })
    );
    assert_eq!(event_kinds(&app, &customer).await, ["LIMIT_REACHED"]);

    let released = app
        .admin("mutation($c: ID!) { releaseLimit(customerId: $c, metric: \"computations\") { used allowed } }", json!({ "c": customer }))
        .await;
    assert_eq!(
        released.ok()["releaseLimit"],
        json!({ "used": 9, "allowed": true })
    );
    // An unlimited metric is always allowed, and nothing is stored for it.
    let free = app
        .admin(ACQUIRE, json!({ "c": customer, "m": "users" }))
        .await;
    assert_eq!(
        free.ok()["acquireLimit"],
        json!({ "limit": null, "used": 0, "remaining": null, "allowed": true })
    );
    let stored = entity::limit_usage::Entity::find_by_id((
        customer.parse::<uuid::Uuid>().unwrap(),
        "users".to_owned(),
    ))
    .one(app.billing.db.conn())
    .await
    .unwrap();
    assert!(stored.is_none(), "{stored:?}");
}

#[tokio::test]
async fn per_period_limits_reset_with_the_period_and_plan_changes_must_fit() {
    let app = TestApp::spawn().await;
    let (plan, _) = limited_plan(&app, 2, "PER_PERIOD").await;
    let (small, _) = limited_plan(&app, 1, "COUNT").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let backend = app.service_token("backend").await;
    let sub = subscribe(&app, &token, &customer, &plan).await;
    let sub_id = sub["subscription"]["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        app.gql_as(
            Some(&backend),
            ACQUIRE,
            json!({ "c": customer, "m": "computations" }),
        )
        .await
        .ok();
    }
    app.gql_as(
        Some(&backend),
        ACQUIRE,
        json!({ "c": customer, "m": "computations" }),
    )
    .await
    .expect_code("LIMIT_EXCEEDED");

    let refused = app
        .gql_as(
            Some(&token),
            "mutation($s: ID!, $p: ID!) { changePlan(subscriptionId: $s, planId: $p) { subscription { id } } }",
            json!({ "s": sub_id, "p": small }),
        )
        .await;
    assert!(refused.expect_code("LIMIT_EXCEEDED").contains("in use"));

    let next_month = (app.billing.clock.now() + chrono::TimeDelta::days(32)).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": next_month }),
    )
    .await
    .ok();
    let again = app
        .gql_as(
            Some(&backend),
            ACQUIRE,
            json!({ "c": customer, "m": "computations" }),
        )
        .await;
    assert_eq!(
        again.ok()["acquireLimit"]["used"],
        1,
        "a new period starts from zero"
    );
}

#[tokio::test]
async fn usage_is_recorded_once_per_key_and_counters_become_rises() {
    let app = TestApp::spawn().await;
    let (plan, bandwidth) = limited_plan(&app, 5, "COUNT").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let backend = app.service_token("backend").await;
    let sub = subscribe(&app, &token, &customer, &plan).await;
    let sub = sub["subscription"]["id"].as_str().unwrap().to_owned();
    let record = |reading: &str, key: &str| json!({ "i": { "subscriptionId": sub, "productId": bandwidth, "quantity": reading, "idempotencyKey": key } });
    const RECORD: &str =
        "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id quantity reading } }";
    let first = app
        .gql_as(Some(&backend), RECORD, record("40", "r1"))
        .await
        .ok()["recordUsage"]
        .clone();
    assert_eq!(
        (first["quantity"].as_str(), first["reading"].as_str()),
        (Some("40"), Some("40"))
    );
    let again = app
        .gql_as(Some(&backend), RECORD, record("40", "r1"))
        .await
        .ok()["recordUsage"]
        .clone();
    assert_eq!(again["id"], first["id"], "the same key records once");
    app.gql_as(Some(&backend), RECORD, record("41", "r1"))
        .await
        .expect_code("IDEMPOTENCY_KEY_REUSED");
    let rise = app
        .gql_as(Some(&backend), RECORD, record("100", "r2"))
        .await
        .ok()["recordUsage"]
        .clone();
    assert_eq!(rise["quantity"], "60");
    let reset = app
        .gql_as(Some(&backend), RECORD, record("15", "r3"))
        .await
        .ok()["recordUsage"]
        .clone();
    assert_eq!(
        reset["quantity"], "15",
        "a counter that went down was reset"
    );

    let future = json!({ "i": { "subscriptionId": sub, "productId": bandwidth, "quantity": "1", "at": "2999-01-01T00:00:00Z" } });
    app.gql_as(Some(&backend), RECORD, future)
        .await
        .expect_code("BAD_USER_INPUT");
    let negative =
        json!({ "i": { "subscriptionId": sub, "productId": bandwidth, "quantity": "-1" } });
    app.gql_as(Some(&backend), RECORD, negative)
        .await
        .expect_code("BAD_USER_INPUT");
}

#[tokio::test]
async fn the_usage_summary_shows_included_amounts_and_overage_so_far() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let small = app
        .admin(
            r#"mutation($p: ID!) { createPackage(input: { productId: $p, name: "Small", cpu: "1", memoryMb: 1024, includedBandwidthGb: "100" }) { id } }"#,
            json!({ "p": container }),
        )
        .await
        .ok()["createPackage"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bandwidth = app
        .create_product("Bandwidth", "METERED_RESOURCE", Some("bandwidth"))
        .await;
    let plan = app
        .create_plan(json!({ "name": "Metered", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "0", "interval": "MONTH" },
            { "productId": bandwidth, "currency": "USD", "unitAmount": "0.05", "interval": "UNIT" } ] }] }))
        .await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let backend = app.service_token("backend").await;
    // The included bandwidth comes from the package named on the item (default items name
    // none, and include nothing).
    let mut input = crate::subscriptions::subscribe_input(&customer, &plan, None);
    input["i"]["items"] = json!([{ "productId": container, "packageId": small, "quantity": "1" }]);
    let sub = app
        .gql_as(Some(&token), "mutation($i: CreateSubscriptionInput!) { createSubscription(input: $i) { subscription { id items { productName packageName quantity } } checkout { url } } }", input)
        .await;
    let sub = sub.ok()["createSubscription"].clone();
    assert_eq!(
        sub["subscription"]["items"],
        json!([{ "productName": "Container", "packageName": "Small", "quantity": "1" }])
    );
    crate::subscriptions::pay(
        &app,
        sub["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    let sub = sub["subscription"]["id"].as_str().unwrap().to_owned();
    for gb in ["60", "90"] {
        app.gql_as(
            Some(&backend),
            "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id } }",
            json!({ "i": { "subscriptionId": sub, "productId": bandwidth, "quantity": gb } }),
        )
        .await
        .ok();
    }
    let later = (app.billing.clock.now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    app.admin(
        "mutation($t: DateTime!) { advanceClock(to: $t) }",
        json!({ "t": later }),
    )
    .await
    .ok();
    let res = app
        .gql_as(Some(&token), "query($s: ID!) { usageSummary(subscriptionId: $s) { productId usage included overage amount currency } }", json!({ "s": sub }))
        .await;
    assert_eq!(
        res.ok()["usageSummary"],
        json!([{ "productId": bandwidth, "usage": "150", "included": "100", "overage": "50", "amount": "2.50", "currency": "USD" }])
    );
}

#[tokio::test]
async fn only_backends_record_usage_and_hold_limits() {
    let app = TestApp::spawn().await;
    let (plan, bandwidth) = limited_plan(&app, 3, "COUNT").await;
    let customer = app.create_customer("c").await;
    let other = app.create_customer("other").await;
    let token = app.customer_token(&customer).await;
    let backend = app.service_token("project backend").await;
    let sub = subscribe(&app, &token, &customer, &plan).await;
    let sub = sub["subscription"]["id"].as_str().unwrap().to_owned();
    let usage = json!({ "i": { "subscriptionId": sub, "productId": bandwidth, "quantity": "5" } });
    const RECORD: &str = "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { quantity } }";
    const RELEASE: &str = "mutation($c: ID!, $m: String!, $q: Int! = 1) { releaseLimit(customerId: $c, metric: $m, quantity: $q) { used } }";
    let limit = json!({ "c": customer, "m": "computations" });

    // The customer's key (a browser's) may do none of it, not even for itself.
    app.gql_as(Some(&token), RECORD, usage.clone())
        .await
        .expect_code("FORBIDDEN");
    app.gql_as(Some(&token), ACQUIRE, limit.clone())
        .await
        .expect_code("FORBIDDEN");
    app.gql_as(Some(&token), RELEASE, limit.clone())
        .await
        .expect_code("FORBIDDEN");

    // The service key does it for any customer, and reads customers and entitlements.
    assert_eq!(
        app.gql_as(Some(&backend), RECORD, usage).await.ok()["recordUsage"]["quantity"],
        "5"
    );
    for _ in 0..2 {
        app.gql_as(Some(&backend), ACQUIRE, limit.clone())
            .await
            .ok();
    }
    app.gql_as(
        Some(&backend),
        ACQUIRE,
        json!({ "c": other, "m": "computations" }),
    )
    .await
    .ok();
    let read = app
        .gql_as(
            Some(&backend),
            "query($c: ID!) { viewer { role } customer(id: $c) { id } entitlement(customerId: $c, metric: \"computations\") { used } }",
            json!({ "c": customer }),
        )
        .await;
    assert_eq!(
        read.ok(),
        &json!({ "viewer": { "role": "SERVICE" }, "customer": { "id": customer }, "entitlement": { "used": 2 } })
    );

    // Releasing more than is in use is refused and changes nothing.
    let too_many = json!({ "c": customer, "m": "computations", "q": 3 });
    app.gql_as(Some(&backend), RELEASE, too_many)
        .await
        .expect_code("BAD_USER_INPUT");
    let one = json!({ "c": customer, "m": "computations", "q": 1 });
    assert_eq!(
        app.gql_as(Some(&backend), RELEASE, one).await.ok()["releaseLimit"]["used"],
        1
    );

    // Nothing else.
    for refused in [
        "{ products { id } plans { id } }",
        "mutation { createProduct(input: { name: \"x\", kind: PACKAGE, unitType: \"CORE\" }) { id } }",
        "mutation { createServiceKey(name: \"another\") { token } }",
    ] {
        let res = app.gql_as(Some(&backend), refused, json!({})).await;
        if refused.starts_with("mutation") {
            res.expect_code("FORBIDDEN");
        }
    }
    for customer_only in [
        "query($c: ID!) { customer(id: $c) { subscriptions { id } } }",
        "query($c: ID!) { invoices(customerId: $c) { edges { node { id } } } }",
        "mutation($c: ID!) { createApiKey(customerId: $c) { token } }",
        "mutation($c: ID!) { updatePaymentDetails(customerId: $c, returnUrl: \"https://x.io\") { url } }",
    ] {
        app.gql_as(Some(&backend), customer_only, json!({ "c": customer }))
            .await
            .expect_code("FORBIDDEN");
    }
    let events = app
        .gql_as(
            Some(&backend),
            "query($c: ID!) { billingEvents(customerId: $c) { kind } }",
            json!({ "c": customer }),
        )
        .await;
    events.expect_code("FORBIDDEN");
}
