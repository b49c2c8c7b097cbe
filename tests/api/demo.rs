use billing::config::{Cli, Command, Config};
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, TestApp};

#[tokio::test]
async fn the_demo_loads_beside_a_running_server_on_its_database() {
    let app = TestApp::spawn().await;
    // The server's own address: the demo must not try to take it.
    let mut config = Config::for_tests(app.database_url().to_owned(), ADMIN_TOKEN);
    config.bind = app.base.trim_start_matches("http://").parse().unwrap();
    billing::startup::run(Cli {
        config,
        command: Some(Command::Demo),
    })
    .await
    .expect("billing demo runs while the server is up");
    // The running server notices the new catalog.
    app.billing.refresh_catalog_if_changed().await.unwrap();
    let plans = app.anon("{ plans { name } }", json!({})).await;
    let names: Vec<_> = plans.ok()["plans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == "Pro"), "{names:?}");
}
