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

const RECORD_BATCH: &str = "mutation($r: [RecordUsageInput!]!) { recordUsageBatch(input: { records: $r }) { records { id subscriptionId quantity reading } } }";

/// A live subscription on a free plan with a plain metered product and a counter; returns
/// (subscription, plain product, counter product, customer token).
async fn metered_subscription(app: &TestApp) -> (String, String, String, String) {
    let (plan, counter) = limited_plan(app, 5, "COUNT").await;
    let plain = app
        .admin(
            r#"mutation { createProduct(input: { name: "Requests", kind: METERED_RESOURCE, resource: "requests", unitType: "REQUEST" }) { id } }"#,
            json!({}),
        )
        .await
        .ok()["createProduct"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app.create_customer("batch").await;
    let token = app.customer_token(&customer).await;
    let sub = subscribe(app, &token, &customer, &plan).await;
    let sub = sub["subscription"]["id"].as_str().unwrap().to_owned();
    (sub, plain, counter, token)
}

async fn stored_usage(app: &TestApp) -> Vec<entity::usage_record::Model> {
    entity::usage_record::Entity::find()
        .all(app.billing.db.conn())
        .await
        .unwrap()
}

fn ids(res: &crate::helpers::Gql) -> Vec<String> {
    res.ok()["recordUsageBatch"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_usage_batch_records_each_key_once_and_replays_answer_the_first_record() {
    let app = TestApp::spawn().await;
    let (sub, plain, counter, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    let rec = |product: &str, q: &str, key: &str| json!({ "subscriptionId": sub, "productId": product, "quantity": q, "idempotencyKey": key });

    let batch = json!({ "r": [rec(&plain, "1.5", "b1"), rec(&plain, "2", "b2"), rec(&counter, "40", "c1"), rec(&counter, "100", "c2")] });
    let first = app
        .gql_as(Some(&backend), RECORD_BATCH, batch.clone())
        .await;
    let records = first.ok()["recordUsageBatch"]["records"].clone();
    assert_eq!(records[0]["quantity"], "1.5");
    assert_eq!(records[1]["quantity"], "2");
    assert_eq!(
        (
            records[2]["quantity"].as_str(),
            records[3]["quantity"].as_str()
        ),
        (Some("40"), Some("60")),
        "a counter's readings in one batch become rises"
    );
    assert_eq!(records[3]["reading"], "100");
    assert_eq!(stored_usage(&app).await.len(), 4);

    // The whole batch again: the same records, nothing new.
    let again = app.gql_as(Some(&backend), RECORD_BATCH, batch).await;
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(stored_usage(&app).await.len(), 4);

    // A replayed key beside fresh ones, and a key given twice in one batch.
    let mixed =
        json!({ "r": [rec(&plain, "2", "b2"), rec(&plain, "7", "b3"), rec(&plain, "7", "b3")] });
    let mixed = app.gql_as(Some(&backend), RECORD_BATCH, mixed).await;
    let mixed_ids = ids(&mixed);
    assert_eq!(mixed_ids[0], ids(&first)[1], "b2 answers its first record");
    assert_eq!(
        mixed_ids[1], mixed_ids[2],
        "a key twice in one batch records once"
    );
    let stored = stored_usage(&app).await;
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored
            .iter()
            .filter(|u| u.idempotency_key.as_deref() == Some("b3"))
            .count(),
        1
    );

    // The same key with other input, in the batch or against the log: refused, nothing written.
    for refused in [
        json!({ "r": [rec(&plain, "1", "b4"), rec(&plain, "2", "b4")] }),
        json!({ "r": [rec(&plain, "1", "b5"), rec(&plain, "9", "b1")] }),
    ] {
        let res = app.gql_as(Some(&backend), RECORD_BATCH, refused).await;
        let msg = res.expect_code("BAD_USER_INPUT");
        assert!(msg.starts_with("records[1]: "), "{msg}");
        assert!(msg.contains("idempotency key"), "{msg}");
    }
    assert_eq!(
        stored_usage(&app).await.len(),
        5,
        "refused batches write nothing"
    );
}

#[tokio::test]
async fn a_bad_record_refuses_the_whole_batch_naming_its_index() {
    let app = TestApp::spawn().await;
    let (sub, plain, counter, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    let good = json!({ "subscriptionId": sub, "productId": plain, "quantity": "1" });
    let container = app.create_product("Box", "PACKAGE", None).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for (bad, index, says) in [
        (
            json!({ "subscriptionId": sub, "productId": plain, "quantity": "-1" }),
            1,
            "quantity",
        ),
        (
            json!({ "subscriptionId": unknown, "productId": plain, "quantity": "1" }),
            1,
            "not found",
        ),
        (
            json!({ "subscriptionId": sub, "productId": container, "quantity": "1" }),
            1,
            "not a metered resource",
        ),
        (
            json!({ "subscriptionId": sub, "productId": plain, "quantity": "1", "at": "2999-01-01T00:00:00Z" }),
            1,
            "future",
        ),
        (
            json!({ "subscriptionId": "nope", "productId": plain, "quantity": "1" }),
            1,
            "subscriptionId",
        ),
        (
            json!({ "subscriptionId": sub, "productId": counter, "quantity": "5", "at": "2020-01-01T00:00:00Z" }),
            2,
            "time order",
        ),
    ] {
        let mut records = vec![good.clone(), bad];
        if index == 2 {
            // A counter reading older than the one before it in the same batch.
            records.insert(
                1,
                json!({ "subscriptionId": sub, "productId": counter, "quantity": "4" }),
            );
        }
        let res = app
            .gql_as(Some(&backend), RECORD_BATCH, json!({ "r": records }))
            .await;
        let msg = res.expect_code("BAD_USER_INPUT");
        assert!(msg.contains(&format!("records[{index}]")), "{msg}");
        assert!(msg.contains(says), "{msg}");
    }
    assert!(stored_usage(&app).await.is_empty(), "nothing was written");

    // 1,000 records are one batch; 1,001 are refused before any is looked at.
    let many: Vec<_> = (0..1001)
        .map(|i| json!({ "subscriptionId": sub, "productId": plain, "quantity": "1", "idempotencyKey": format!("k{i}") }))
        .collect();
    let res = app
        .gql_as(Some(&backend), RECORD_BATCH, json!({ "r": many }))
        .await;
    assert!(res.expect_code("BAD_USER_INPUT").contains("at most 1000"));
    assert!(stored_usage(&app).await.is_empty());
    let res = app
        .gql_as(Some(&backend), RECORD_BATCH, json!({ "r": many[..1000] }))
        .await;
    assert_eq!(ids(&res).len(), 1000);
    assert_eq!(stored_usage(&app).await.len(), 1000);
}

#[tokio::test]
async fn only_backends_record_usage_batches() {
    let app = TestApp::spawn().await;
    let (sub, plain, _, customer_token) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    let batch = json!({ "r": [{ "subscriptionId": sub, "productId": plain, "quantity": "3" }] });
    app.gql_as(Some(&customer_token), RECORD_BATCH, batch.clone())
        .await
        .expect_code("FORBIDDEN");
    app.gql_as(None, RECORD_BATCH, batch.clone())
        .await
        .expect_code("UNAUTHENTICATED");
    assert!(stored_usage(&app).await.is_empty());
    let res = app
        .gql_as(Some(&backend), RECORD_BATCH, batch.clone())
        .await;
    assert_eq!(res.ok()["recordUsageBatch"]["records"][0]["quantity"], "3");
    let res = app.admin(RECORD_BATCH, batch).await;
    assert_eq!(ids(&res).len(), 1, "the admin token records too");
}

#[tokio::test]
async fn a_usage_batch_costs_the_same_statements_for_one_record_or_five_hundred() {
    let app = TestApp::spawn().await;
    let (sub, plain, _, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    let batch = |n: usize, prefix: &str| {
        let records: Vec<_> = (0..n)
            .map(|i| json!({ "subscriptionId": sub, "productId": plain, "quantity": "1", "idempotencyKey": format!("{prefix}-{i}") }))
            .collect();
        json!({ "r": records })
    };
    // Warms the token cache, so that neither measured request looks the key up.
    app.gql_as(Some(&backend), RECORD_BATCH, batch(1, "warm"))
        .await
        .ok();
    let (one, one_cost) = app
        .counted(Some(&backend), RECORD_BATCH, batch(1, "one"))
        .await;
    one.ok();
    let (many, many_cost) = app
        .counted(Some(&backend), RECORD_BATCH, batch(500, "many"))
        .await;
    assert_eq!(ids(&many).len(), 500);
    assert_eq!(one_cost, many_cost, "statements per batch, not per record");
    assert!(
        one_cost <= 2,
        "subscriptions, insert: {one_cost} statements"
    );
    assert_eq!(stored_usage(&app).await.len(), 502);
    // Replays cost one read more, for all of them: the records the insert skipped.
    let (again, again_cost) = app
        .counted(Some(&backend), RECORD_BATCH, batch(500, "many"))
        .await;
    assert_eq!(ids(&again), ids(&many));
    assert_eq!(again_cost, many_cost + 1, "one read of the replayed keys");
    assert_eq!(stored_usage(&app).await.len(), 502);
}

/// The same batch twice at once (on PostgreSQL two transactions race for its fresh keys):
/// each key is recorded once, both answers name the same records, and a counter's readings
/// become the same rises.
#[tokio::test]
async fn the_same_batch_twice_at_once_records_each_key_once() {
    let app = TestApp::spawn().await;
    let (sub, plain, counter, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    let rec = |product: &str, q: &str, key: String| json!({ "subscriptionId": sub, "productId": product, "quantity": q, "idempotencyKey": key });
    let mut records: Vec<_> = (0..200)
        .map(|i| rec(&plain, "1", format!("p-{i}")))
        .collect();
    records.push(rec(&counter, "40", "c-1".into()));
    records.push(rec(&counter, "100", "c-2".into()));
    let batch = json!({ "r": records });
    for _ in 0..3 {
        let (a, b) = tokio::join!(
            app.gql_as(Some(&backend), RECORD_BATCH, batch.clone()),
            app.gql_as(Some(&backend), RECORD_BATCH, batch.clone())
        );
        assert_eq!(ids(&a), ids(&b));
        let rises: Vec<_> = a.ok()["recordUsageBatch"]["records"].as_array().unwrap()[200..]
            .iter()
            .map(|r| r["quantity"].clone())
            .collect();
        assert_eq!(rises, [json!("40"), json!("60")]);
    }
    assert_eq!(stored_usage(&app).await.len(), 202);
}

#[tokio::test]
async fn a_plain_usage_record_costs_two_statements_and_its_replay_one_more() {
    let app = TestApp::spawn().await;
    let (sub, plain, _, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    const RECORD: &str =
        "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id quantity reading } }";
    let record = |quantity: &str, key: Option<&str>| json!({ "i": { "subscriptionId": sub, "productId": plain, "quantity": quantity, "idempotencyKey": key } });
    // Warms the token cache, so that no measured request looks the key up.
    app.gql_as(Some(&backend), RECORD, record("1", None))
        .await
        .ok();
    let (first, cost) = app
        .counted(Some(&backend), RECORD, record("2", Some("k1")))
        .await;
    let first = first.ok()["recordUsage"].clone();
    assert_eq!(first["quantity"], "2");
    assert_eq!(cost, 2, "the subscription, then the insert alone");
    let (again, replay_cost) = app
        .counted(Some(&backend), RECORD, record("2", Some("k1")))
        .await;
    assert_eq!(again.ok()["recordUsage"]["id"], first["id"]);
    assert_eq!(
        replay_cost, 3,
        "the subscription, the refused insert, the key"
    );
    let (reused, _) = app
        .counted(Some(&backend), RECORD, record("3", Some("k1")))
        .await;
    reused.expect_code("IDEMPOTENCY_KEY_REUSED");
    let (_, unkeyed) = app.counted(Some(&backend), RECORD, record("4", None)).await;
    assert_eq!(unkeyed, 2);
    let stored = stored_usage(&app).await;
    assert_eq!(stored.len(), 3, "the warm-up, k1 once, the unkeyed one");
}

/// Fifty `recordUsage` calls at once are written together, and each still gets its own
/// answer: fresh keys their records, replays the record stored before, a key given by
/// several of them one record, and a reused key its error.
#[tokio::test]
async fn concurrent_usage_calls_share_inserts_and_keep_their_own_answers() {
    let app = TestApp::spawn().await;
    let (sub, plain, _, _) = metered_subscription(&app).await;
    let backend = app.service_token("backend").await;
    const RECORD: &str = "mutation($i: RecordUsageInput!) { recordUsage(input: $i) { id } }";
    let record = |quantity: &str, key: &str| json!({ "i": { "subscriptionId": sub, "productId": plain, "quantity": quantity, "idempotencyKey": key } });
    let before = app
        .gql_as(Some(&backend), RECORD, record("1", "before"))
        .await;
    let before = before.ok()["recordUsage"]["id"].clone();
    let mut calls = Vec::new();
    for i in 0..40 {
        calls.push(record("1", &format!("fresh-{i}")));
    }
    calls.extend((0..5).map(|_| record("1", "before")));
    calls.extend((0..4).map(|_| record("2", "twin")));
    calls.push(record("9", "before"));
    let answers = futures_util::future::join_all(
        calls
            .iter()
            .map(|vars| app.counted(Some(&backend), RECORD, vars.clone())),
    )
    .await;
    let id = |i: usize| answers[i].0.ok()["recordUsage"]["id"].clone();
    let fresh: std::collections::HashSet<_> = (0..40).map(id).collect();
    assert_eq!(fresh.len(), 40);
    assert!(
        (40..45).all(|i| id(i) == before),
        "replays answer the stored record"
    );
    assert!(
        (46..49).all(|i| id(i) == id(45)),
        "one record for the key given four times"
    );
    assert!(!fresh.contains(&id(45)) && id(45) != before);
    answers[49].0.expect_code("IDEMPOTENCY_KEY_REUSED");
    assert_eq!(stored_usage(&app).await.len(), 42);
    // Alone, each call would read its subscription and insert: 100 statements.
    let statements: u64 = answers.iter().map(|(_, n)| n).sum();
    assert!(statements < 100, "{statements} statements for 50 calls");
}
