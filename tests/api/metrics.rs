//! `/metrics`: the process's recorder (request latency by operation and outcome, provider
//! calls, the billing clock, the event hub) beside the server's own counters.

use std::time::Duration;

use serde_json::json;

use crate::helpers::TestApp;
use crate::subscriptions::{monthly_plan, pay, subscribe};

async fn scrape(app: &TestApp) -> String {
    let res = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.text().await.unwrap()
}

/// The value of the series `name` whose labels include all of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn metrics_report_requests_provider_calls_the_clock_and_the_event_hub() {
    // The wall clock, so that event hub lag is measured.
    let app = TestApp::spawn_with(|c| c.test_clock = false, Vec::new()).await;
    let ok = app
        .admin("query MetricsProbeQuery { plans { id } }", json!({}))
        .await;
    ok.ok();
    let failed = app
        .admin(
            "mutation MetricsProbeFailing($id: ID!) { archivePlan(id: $id) { id } }",
            json!({ "id": "00000000-0000-0000-0000-000000000000" }),
        )
        .await;
    let code = failed.error_code().expect("the mutation fails").to_owned();

    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("metrics").await;
    let token = app.customer_token(&customer).await;
    let created = subscribe(&app, &token, &customer, &plan).await;
    let paid = pay(
        &app,
        created["checkout"]["url"].as_str().unwrap(),
        "4242424242424242",
    )
    .await;
    assert!(paid.status().is_redirection());
    app.billing.run_clock().await.unwrap();

    let mut text = scrape(&app).await;
    for _ in 0..50 {
        if series(&text, "billing_event_hub_lag_seconds_count", &[]).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape(&app).await;
    }

    assert!(text.contains("# TYPE billing_graphql_request_duration_seconds histogram"));
    let request = "billing_graphql_request_duration_seconds_count";
    assert_eq!(
        series(
            &text,
            request,
            &[("operation", "MetricsProbeQuery"), ("outcome", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            request,
            &[("operation", "MetricsProbeFailing"), ("outcome", &code)]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        series(
            &text,
            "billing_graphql_request_duration_seconds_bucket",
            &[("operation", "MetricsProbeQuery"), ("le", "+Inf")]
        )
        .is_some(),
        "{text}"
    );

    let call = "billing_provider_call_duration_seconds_count";
    for name in ["upsert_customer", "start_checkout"] {
        assert!(
            series(
                &text,
                call,
                &[("provider", "sandbox"), ("call", name), ("outcome", "ok")]
            )
            .is_some_and(|n| n >= 1.0),
            "{name}: {text}"
        );
    }
    assert!(text.contains("# TYPE billing_provider_call_duration_seconds histogram"));

    assert!(
        series(
            &text,
            "billing_clock_run_duration_seconds_count",
            &[("outcome", "ok")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    for kind in ["expired", "reconciled", "canceled", "invoiced", "refunded"] {
        assert!(
            series(&text, "billing_clock_items_total", &[("kind", kind)]).is_some(),
            "{kind}: {text}"
        );
    }
    assert!(
        series(&text, "billing_event_hub_lag_seconds_count", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The server's own lines.
    assert!(series(&text, "billing_sql_statements_total", &[]).is_some_and(|n| n > 0.0));
    assert_eq!(
        series(&text, "billing_websocket_connections", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn every_server_in_a_process_renders_the_recorder_beside_its_own_counters() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn().await;
    a.admin("query MetricsProbeOtherServer { plans { id } }", json!({}))
        .await
        .ok();
    for app in [&a, &b] {
        let text = scrape(app).await;
        // One recorder per process: b reports a's request too.
        assert_eq!(
            series(
                &text,
                "billing_graphql_request_duration_seconds_count",
                &[("operation", "MetricsProbeOtherServer"), ("outcome", "ok")]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE billing_sql_statements_total").count(),
            1
        );
        assert!(app.statements().await > 0);
    }
}
