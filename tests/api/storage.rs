//! The SQLite file itself: the server copies its write-ahead log into the database file
//! in the background, since no commit does it (a commit that did waited tens of ms).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, gql_at};

/// Writes reach the database file while the server runs, without a request waiting for
/// it: the file grows to the size SQLite reports for the database. (On PostgreSQL there
/// is no such file: the test has nothing to look at there.)
#[tokio::test]
async fn a_running_server_copies_its_log_into_the_database_file() {
    let app = TestApp::spawn().await;
    if app.on_postgres() {
        return;
    }
    // Enough rows that the database outgrows what the migrations left in the file.
    for i in 0..300 {
        app.create_customer_with(serde_json::json!({
            "externalId": format!("wal-{i}"),
            "name": "x".repeat(200),
            "email": format!("wal{i}@example.com"),
        }))
        .await;
    }
    let url = app.database_url().to_owned();
    let path = url
        .strip_prefix("sqlite://")
        .and_then(|p| p.split('?').next())
        .expect("a SQLite file URL")
        .to_owned();
    // A reader of our own, through the log: the database's size as SQLite sees it.
    let reader = Database::connect(url.as_str()).await.unwrap();
    let pragma = |name: &'static str| {
        let reader = &reader;
        async move {
            reader
                .query_one_raw(Statement::from_string(reader.get_database_backend(), name))
                .await
                .unwrap()
                .unwrap()
                .try_get_by_index::<i64>(0)
                .unwrap()
        }
    };
    let size = pragma("PRAGMA page_count").await * pragma("PRAGMA page_size").await;
    let in_file = || std::fs::metadata(&path).map_or(0, |m| m.len() as i64);
    assert!(
        size > 0 && in_file() <= size,
        "database {size} bytes, file {}",
        in_file()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_file() < size {
        assert!(
            Instant::now() < deadline,
            "after 10 s the file holds {} of the database's {size} bytes: the log was not checkpointed",
            in_file()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two processes on one database write at once, each transaction reading before it
/// writes: every call succeeds, and each customer ends with one unpaid subscription (the
/// new one, in place of the first). (On SQLite a deferred transaction that read first
/// could not take the writer's lock once the other process had committed after that read:
/// "database is locked" at once, whatever the busy timeout, and the call failed with
/// INTERNAL_SERVER_ERROR.)
#[tokio::test]
async fn two_processes_writing_at_once_both_succeed() {
    let app = TestApp::spawn().await;
    let other = app.another_process().await;
    let plan = app.create_three_phase_plan().await;
    let mut customers = Vec::new();
    for i in 0..24 {
        let c = app.create_customer(&format!("both-{i}")).await;
        // A first subscription sets the billing start, so that each later one's
        // transaction opens with a read (the unpaid subscriptions it replaces).
        crate::subscriptions::subscribe(&app, ADMIN_TOKEN, &c, &plan).await;
        customers.push(c);
    }
    // Each customer once, half through each process.
    let bases = [app.base.as_str(), other.base.as_str()];
    let answers = futures_util::future::join_all(
        customers
            .iter()
            .enumerate()
            .map(|(i, c)| subscribe_at(bases[i % 2], c, &plan)),
    )
    .await;
    for body in &answers {
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(
            body["data"]["createSubscription"]["subscription"]["status"],
            "INCOMPLETE"
        );
    }
    for c in &customers {
        assert_eq!(statuses_of(&app, c).await.incomplete, 1, "{c}");
    }
}

/// One customer subscribes twice at the same moment, once through each process: both
/// calls answer, one subscription is left to pay, and the other's checkout cannot be paid.
/// (On PostgreSQL both used to replace the same older subscription and the second then
/// met the one-live-subscription index: ALREADY_SUBSCRIBED; or the first stored its
/// checkout open after the second had replaced its subscription.)
#[tokio::test]
async fn one_customer_subscribing_twice_at_once_is_left_with_one_to_pay() {
    let app = TestApp::spawn().await;
    let other = app.another_process().await;
    let plan = app.create_three_phase_plan().await;
    for i in 0..8 {
        let c = app.create_customer(&format!("twice-{i}")).await;
        if i % 2 == 1 {
            // Half of them have a billing start already (and an unpaid subscription).
            crate::subscriptions::subscribe(&app, ADMIN_TOKEN, &c, &plan).await;
        }
        let (a, b) = tokio::join!(
            subscribe_at(&app.base, &c, &plan),
            subscribe_at(&other.base, &c, &plan)
        );
        let mut open = 0;
        for body in [&a, &b] {
            assert!(body.get("errors").is_none(), "{body}");
            let out = &body["data"]["createSubscription"];
            match out["subscription"]["status"].as_str() {
                Some("INCOMPLETE") => {}
                Some("INCOMPLETE_EXPIRED") => {
                    // Replaced by the other call: its checkout is closed, not payable.
                    assert_ne!(out["checkout"]["status"], "OPEN", "{body}");
                    continue;
                }
                other => panic!("{other:?}: {body}"),
            }
            open += 1;
        }
        let found = statuses_of(&app, &c).await;
        assert_eq!(found.incomplete, 1, "{c}: {found:?} {a} {b}");
        assert!(open >= 1, "{a} {b}");
        assert_eq!(found.open_checkouts, 1, "{c}: {found:?}");
    }
}

async fn subscribe_at(base: &str, customer: &str, plan: &str) -> Value {
    gql_at(
        base,
        ADMIN_TOKEN,
        crate::subscriptions::SUBSCRIBE,
        crate::subscriptions::subscribe_input(customer, plan, None),
    )
    .await
}

#[derive(Debug)]
struct Found {
    incomplete: usize,
    open_checkouts: usize,
}

/// A customer's unpaid subscriptions, and how many of their subscriptions' checkouts are open.
async fn statuses_of(app: &TestApp, customer: &str) -> Found {
    let body = app
        .admin(
            "query($c: ID!) { customer(id: $c) { subscriptions { status checkout { status } } } }",
            json!({ "c": customer }),
        )
        .await;
    let subs = body.ok()["customer"]["subscriptions"]
        .as_array()
        .unwrap()
        .clone();
    Found {
        incomplete: subs.iter().filter(|s| s["status"] == "INCOMPLETE").count(),
        open_checkouts: subs
            .iter()
            .filter(|s| s["checkout"]["status"] == "OPEN")
            .count(),
    }
}
