use serde_json::json;

use crate::helpers::{TestApp, three_phase_plan};

const CATALOG: &str = "{ plans { id name isDefault phases { kind duration { count unit }
    prices { id currency region maxQuantity unitAmount interval product { id name kind } } } limits { metric max kind } } }";

#[tokio::test]
async fn a_plan_is_created_with_phases_prices_and_limits_in_one_mutation() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let mut plan = three_phase_plan("Pro", &container);
    plan["limits"] = json!([{ "metric": "computations", "max": 100 }, { "metric": "users", "max": 5, "kind": "COUNT" }]);
    let id = app.create_plan(plan).await;

    let res = app.anon(CATALOG, json!({})).await;
    let plans = res.ok()["plans"].as_array().unwrap().clone();
    assert_eq!(plans.len(), 1);
    let p = &plans[0];
    assert_eq!(p["id"], id.as_str());
    assert_eq!(p["isDefault"], true, "the first plan becomes the default");
    let kinds: Vec<&str> = p["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ph| ph["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["TRIAL", "DISCOUNT", "FINAL"]);
    assert_eq!(
        p["phases"][0]["duration"],
        json!({ "count": 14, "unit": "DAY" })
    );
    assert_eq!(p["phases"][2]["duration"], json!(null));
    assert_eq!(p["phases"][1]["prices"][0]["unitAmount"], "0.8");
    assert_eq!(p["phases"][1]["prices"][0]["product"]["name"], "Container");
    assert_eq!(
        p["limits"],
        json!([{ "metric": "computations", "max": 100, "kind": "COUNT" }, { "metric": "users", "max": 5, "kind": "COUNT" }])
    );
}

#[tokio::test]
async fn products_and_packages_are_created_updated_and_archived() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let bw = app
        .admin(
            r#"mutation { createProduct(input: { name: "Bandwidth", kind: METERED_RESOURCE, resource: "Bandwidth",
                unitType: "gb", aggregatedUsage: true, externalId: "bw-1" }) { id resource unitType unit aggregatedUsage externalId } }"#,
            json!({}),
        )
        .await;
    let bw = bw.ok()["createProduct"].clone();
    assert_eq!(bw["resource"], "bandwidth");
    assert_eq!(bw["unitType"], "GB");
    assert_eq!(bw["unit"], "1");
    assert_eq!(bw["aggregatedUsage"], true);

    let pkg = app
        .admin(
            r#"mutation($p: ID!) { createPackage(input: { productId: $p, name: "Small", cpu: "0.25", memoryMb: 512,
                includedStorageGb: "10", includedBandwidthGb: "100.5" }) { id cpu memoryMb includedStorageGb includedBandwidthGb includedBackupStorageGb product { name } } }"#,
            json!({ "p": container }),
        )
        .await;
    let pkg = pkg.ok()["createPackage"].clone();
    assert_eq!(pkg["cpu"], "0.25");
    assert_eq!(pkg["includedBandwidthGb"], "100.5");
    assert_eq!(pkg["includedBackupStorageGb"], "0");
    assert_eq!(pkg["product"]["name"], "Container");

    let updated = app
        .admin(
            r#"mutation($id: ID!) { updatePackage(id: $id, input: { cpu: "1.5" }) { cpu } }"#,
            json!({ "id": pkg["id"] }),
        )
        .await;
    assert_eq!(updated.ok()["updatePackage"]["cpu"], "1.5");
    let renamed = app
        .admin(
            r#"mutation($id: ID!) { updateProduct(id: $id, input: { name: "Traffic" }) { name } }"#,
            json!({ "id": bw["id"] }),
        )
        .await;
    assert_eq!(renamed.ok()["updateProduct"]["name"], "Traffic");

    app.admin(
        "mutation($id: ID!) { archiveProduct(id: $id) { archived } }",
        json!({ "id": bw["id"] }),
    )
    .await
    .ok();
    let listed = app
        .anon("{ products { name packages { name } } }", json!({}))
        .await;
    assert_eq!(
        listed.ok()["products"],
        json!([{ "name": "Container", "packages": [{ "name": "Small" }] }])
    );
    let all = app
        .admin(
            "{ products(includeArchived: true) { name archived } }",
            json!({}),
        )
        .await;
    assert_eq!(all.ok()["products"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn plans_are_edited_piece_by_piece() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let plan = app
        .create_plan(json!({ "name": "Basic", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "10", "interval": "MONTH" } ] }] }))
        .await;
    let trial = app
        .admin(
            r#"mutation($p: ID!) { addPhase(planId: $p, input: { kind: TRIAL, duration: { count: 7, unit: DAY } }) { phases { id kind } } }"#,
            json!({ "p": plan }),
        )
        .await;
    let phases = trial.ok()["addPhase"]["phases"].clone();
    assert_eq!(phases[0]["kind"], "TRIAL");
    assert_eq!(phases[1]["kind"], "FINAL");
    let final_phase = phases[1]["id"].clone();

    let added = app
        .admin(
            r#"mutation($ph: ID!, $pr: ID!) { addPrice(phaseId: $ph, input: { productId: $pr, currency: "EUR", unitAmount: "9", interval: MONTH }) { phases { prices { id currency unitAmount } } } }"#,
            json!({ "ph": final_phase, "pr": container }),
        )
        .await;
    let prices = added.ok()["addPrice"]["phases"][1]["prices"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(prices.len(), 2);
    let eur = prices.iter().find(|p| p["currency"] == "EUR").unwrap()["id"].clone();
    let changed = app
        .admin(
            r#"mutation($id: ID!) { updatePrice(id: $id, input: { unitAmount: "8.5" }) { phases { prices { currency unitAmount } } } }"#,
            json!({ "id": eur }),
        )
        .await;
    assert!(
        changed.ok()["updatePrice"]["phases"][1]["prices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["currency"] == "EUR" && p["unitAmount"] == "8.5")
    );

    let limited = app
        .admin(
            r#"mutation($p: ID!) { setPlanLimit(planId: $p, input: { metric: "computations", max: 10 }) { limits { metric max } } }"#,
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        limited.ok()["setPlanLimit"]["limits"],
        json!([{ "metric": "computations", "max": 10 }])
    );
    let relimited = app
        .admin(
            r#"mutation($p: ID!) { setPlanLimit(planId: $p, input: { metric: "computations", max: 20 }) { limits { metric max } } }"#,
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        relimited.ok()["setPlanLimit"]["limits"],
        json!([{ "metric": "computations", "max": 20 }])
    );

    let renamed = app
        .admin(
            r#"mutation($p: ID!) { updatePlan(id: $p, input: { name: "Basic+", tierMode: GRADUATED }) { name tierMode } }"#,
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        renamed.ok()["updatePlan"],
        json!({ "name": "Basic+", "tierMode": "GRADUATED" })
    );

    // Removing the FINAL phase would leave an invalid plan: refused, nothing changes.
    let refused = app
        .admin(
            "mutation($id: ID!) { removePhase(id: $id) { id } }",
            json!({ "id": final_phase }),
        )
        .await;
    assert!(refused.expect_code("BAD_USER_INPUT").contains("FINAL"));
    let still = app
        .admin(
            "query($p: ID!) { plan(id: $p) { phases { kind prices { currency } } } }",
            json!({ "p": plan }),
        )
        .await;
    assert_eq!(
        still.ok()["plan"]["phases"][1]["prices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn exactly_one_plan_is_the_default_even_under_concurrent_calls() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let container = app.create_product("Container", "PACKAGE", None).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            app.create_plan(three_phase_plan(&format!("Plan {i}"), &container))
                .await,
        );
    }
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..30 {
        let (app, id) = (app.clone(), ids[i % ids.len()].clone());
        calls.spawn(async move {
            app.admin(
                "mutation($id: ID!) { setDefaultPlan(id: $id) { id isDefault } }",
                json!({ "id": id }),
            )
            .await
        });
    }
    while let Some(res) = calls.join_next().await {
        res.expect("task").ok();
    }
    let res = app
        .admin("{ plans { id isDefault } defaultPlan { id } }", json!({}))
        .await;
    let data = res.ok();
    let defaults: Vec<&serde_json::Value> = data["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["isDefault"] == true)
        .collect();
    assert_eq!(defaults.len(), 1, "{data}");
    assert_eq!(defaults[0]["id"], data["defaultPlan"]["id"]);
}

#[tokio::test]
async fn archived_plans_leave_the_catalog_and_the_default_cannot_be_archived() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let first = app.create_plan(three_phase_plan("First", &container)).await;
    let second = app
        .create_plan(three_phase_plan("Second", &container))
        .await;

    let refused = app
        .admin(
            "mutation($id: ID!) { archivePlan(id: $id) { id } }",
            json!({ "id": first }),
        )
        .await;
    refused.expect_code("DEFAULT_PLAN");
    let archived = app
        .admin(
            "mutation($id: ID!) { archivePlan(id: $id) { archived } }",
            json!({ "id": second }),
        )
        .await;
    assert_eq!(archived.ok()["archivePlan"]["archived"], true);

    let listed = app.anon("{ plans { name } }", json!({})).await;
    assert_eq!(listed.ok()["plans"], json!([{ "name": "First" }]));
    let with_archived = app
        .admin(
            "{ plans(includeArchived: true) { name archived } }",
            json!({}),
        )
        .await;
    assert_eq!(with_archived.ok()["plans"].as_array().unwrap().len(), 2);
    let to_default = app
        .admin(
            "mutation($id: ID!) { setDefaultPlan(id: $id) { id } }",
            json!({ "id": second }),
        )
        .await;
    to_default.expect_code("PLAN_ARCHIVED");
}

#[tokio::test]
async fn the_nested_catalog_costs_the_same_statements_whatever_the_number_of_plans() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    app.create_plan(three_phase_plan("Plan 0", &container))
        .await;
    app.admin(CATALOG, json!({})).await.ok(); // warms the token cache

    let (res, one_plan) = app.admin_counted(CATALOG, json!({})).await;
    res.ok();

    for i in 1..8 {
        app.create_plan(three_phase_plan(&format!("Plan {i}"), &container))
            .await;
    }
    app.admin(CATALOG, json!({})).await.ok();
    let (res, eight_plans) = app.admin_counted(CATALOG, json!({})).await;
    assert_eq!(res.ok()["plans"].as_array().unwrap().len(), 8);
    assert_eq!(
        one_plan, eight_plans,
        "statements must not grow with the number of plans"
    );
    assert_eq!(
        eight_plans, 0,
        "the catalog is served from its in-memory snapshot"
    );
}

#[tokio::test]
async fn bad_catalog_input_is_refused_with_a_code_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let container = app.create_product("Container", "PACKAGE", None).await;
    let final_price = json!([{ "productId": container, "currency": "USD", "unitAmount": "1", "interval": "HOUR" }]);
    let cases = [
        (
            "two FINAL phases",
            json!({ "name": "x", "phases": [{ "kind": "FINAL" }, { "kind": "FINAL" }] }),
            "more than once",
        ),
        (
            "phases out of order",
            json!({ "name": "x", "phases": [{ "kind": "DISCOUNT", "duration": { "count": 1, "unit": "DAY" } }, { "kind": "TRIAL", "duration": { "count": 1, "unit": "DAY" } }, { "kind": "FINAL" }] }),
            "order",
        ),
        (
            "no FINAL",
            json!({ "name": "x", "phases": [{ "kind": "TRIAL", "duration": { "count": 1, "unit": "DAY" } }] }),
            "FINAL",
        ),
        (
            "zero duration",
            json!({ "name": "x", "phases": [{ "kind": "TRIAL", "duration": { "count": 0, "unit": "DAY" } }, { "kind": "FINAL" }] }),
            "at least 1",
        ),
        (
            "negative duration",
            json!({ "name": "x", "phases": [{ "kind": "TRIAL", "duration": { "count": -3, "unit": "DAY" } }, { "kind": "FINAL" }] }),
            "at least 1",
        ),
        (
            "unknown currency",
            json!({ "name": "x", "phases": [{ "kind": "FINAL", "prices": [{ "productId": container, "currency": "XYZ", "unitAmount": "1", "interval": "HOUR" }] }] }),
            "ISO 4217",
        ),
        (
            "negative amount",
            json!({ "name": "x", "phases": [{ "kind": "FINAL", "prices": [{ "productId": container, "currency": "USD", "unitAmount": "-1", "interval": "HOUR" }] }] }),
            "negative",
        ),
        (
            "13 decimals",
            json!({ "name": "x", "phases": [{ "kind": "FINAL", "prices": [{ "productId": container, "currency": "USD", "unitAmount": "0.0000000000001", "interval": "HOUR" }] }] }),
            "12 decimal places",
        ),
        (
            "duplicate tiers",
            json!({ "name": "x", "phases": [{ "kind": "FINAL", "prices": [
            { "productId": container, "currency": "USD", "unitAmount": "1", "maxQuantity": "10", "interval": "HOUR" },
            { "productId": container, "currency": "USD", "unitAmount": "2", "maxQuantity": "10.0", "interval": "HOUR" }] }] }),
            "same tier",
        ),
        (
            "unit price for a package",
            json!({ "name": "x", "phases": [{ "kind": "FINAL", "prices": [{ "productId": container, "currency": "USD", "unitAmount": "1", "interval": "UNIT" }] }] }),
            "per HOUR or per MONTH",
        ),
        (
            "empty name",
            json!({ "name": " ", "phases": [{ "kind": "FINAL", "prices": final_price }] }),
            "name",
        ),
    ];
    for (what, input, needle) in cases {
        let res = app
            .admin(
                "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        let msg = res.expect_code("BAD_USER_INPUT");
        assert!(
            msg.contains(needle),
            "{what}: {msg:?} should mention {needle:?}"
        );
    }
    let unknown_product = app
        .admin(
            "mutation($i: CreatePlanInput!) { createPlan(input: $i) { id } }",
            json!({ "i": { "name": "x", "phases": [{ "kind": "FINAL", "prices": [{ "productId": uuid::Uuid::new_v4().to_string(), "currency": "USD", "unitAmount": "1", "interval": "HOUR" }] }] } }),
        )
        .await;
    unknown_product.expect_code("NOT_FOUND");
    let bad_cpu = app
        .admin(
            r#"mutation($p: ID!) { createPackage(input: { productId: $p, name: "x", cpu: "0.3", memoryMb: 512 }) { id } }"#,
            json!({ "p": container }),
        )
        .await;
    assert!(bad_cpu.expect_code("BAD_USER_INPUT").contains("0.25"));

    let res = app
        .admin(
            "{ plans(includeArchived: true) { id } products { packages { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(res.ok()["plans"], json!([]), "no plan was half-written");
    assert_eq!(res.ok()["products"][0]["packages"], json!([]));
}
