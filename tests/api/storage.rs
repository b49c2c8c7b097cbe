//! The SQLite file itself: the server copies its write-ahead log into the database file
//! in the background, since no commit does it (a commit that did waited tens of ms).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::TestApp;

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
