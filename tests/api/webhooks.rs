use serde_json::json;

use crate::helpers::TestApp;
use crate::subscriptions::{event_kinds, monthly_plan, subscribe};

const SECRET: &str = "whsec_sandbox_test";

async fn deliver(app: &TestApp, body: &serde_json::Value, secret: &str) -> u16 {
    let body = body.to_string();
    let now = app.billing.clock.now().timestamp();
    let sig = providers::signature::sign(
        secret,
        chrono::Utc::now().timestamp().max(now),
        body.as_bytes(),
    );
    app.client
        .post(format!("{}/providers/sandbox/webhook", app.base))
        .header("Sandbox-Signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn webhooks_need_a_valid_signature_and_count_once() {
    let app = TestApp::spawn().await;
    let (plan, _) = monthly_plan(&app, "10").await;
    let customer = app.create_customer("c").await;
    let token = app.customer_token(&customer).await;
    let out = subscribe(&app, &token, &customer, &plan).await;
    let url = out["checkout"]["url"].as_str().unwrap();
    let session = url.rsplit('/').next().unwrap();
    let sub = out["subscription"]["id"].as_str().unwrap();
    let succeeded =
        json!({ "id": "sbx_evt_manual_1", "type": "checkout.succeeded", "object": session });

    assert_eq!(deliver(&app, &succeeded, "wrong-secret").await, 400);
    let unsigned = app
        .client
        .post(format!("{}/providers/sandbox/webhook", app.base))
        .body(succeeded.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 400);
    assert_eq!(
        event_kinds(&app, &customer).await,
        ["SUBSCRIPTION_CREATED"],
        "refused webhooks write nothing"
    );

    for _ in 0..10 {
        assert_eq!(deliver(&app, &succeeded, SECRET).await, 200);
    }
    let kinds = event_kinds(&app, &customer).await;
    assert_eq!(
        kinds,
        [
            "SUBSCRIPTION_CREATED",
            "CHECKOUT_COMPLETED",
            "PAYMENT_SUCCEEDED",
            "SUBSCRIPTION_ACTIVATED",
            "INVOICE_ISSUED",
            "INVOICE_PAID"
        ]
    );

    // Late news never moves a subscription backwards.
    let late_failure = json!({ "id": "sbx_evt_manual_2", "type": "checkout.failed", "object": session, "reason": "card declined" });
    let late_pending =
        json!({ "id": "sbx_evt_manual_3", "type": "checkout.pending", "object": session });
    assert_eq!(deliver(&app, &late_failure, SECRET).await, 200);
    assert_eq!(deliver(&app, &late_pending, SECRET).await, 200);
    let res = app
        .admin(
            "query($id: ID!) { subscription(id: $id) { status checkout { status } } }",
            json!({ "id": sub }),
        )
        .await;
    assert_eq!(
        res.ok()["subscription"],
        json!({ "status": "ACTIVE", "checkout": { "status": "SUCCEEDED" } })
    );
    assert_eq!(event_kinds(&app, &customer).await.len(), 6);

    let unknown_provider = app
        .client
        .post(format!("{}/providers/nope/webhook", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_provider.status().as_u16(), 404);
}
