//! GraphiQL as the server serves it: the page and its scripts come from the server itself
//! (the browser has no network), the editor renders, and a query with the admin's
//! `Authorization` header runs and shows its answer.

use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::{Browser, WAIT};
use crate::helpers::{ADMIN_TOKEN, TestApp};

const QUERY: &str = "{ viewer { role } }";

fn admin_headers() -> String {
    json!({ "Authorization": format!("Bearer {ADMIN_TOKEN}") }).to_string()
}

/// Waits for the response pane to show `needle`; returns its text.
async fn wait_for_response(browser: &Browser, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = browser
            .element(".graphiql-response")
            .await
            .text()
            .await
            .unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the response pane does not say {needle:?}; it says:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Every script, style sheet and request the page made came from `base`.
async fn only_local_resources(browser: &Browser, base: &str) {
    let names = browser
        .client()
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("the page's resources");
    let names: Vec<String> = serde_json::from_value(names).expect("a list of addresses");
    assert!(
        names
            .iter()
            .any(|n| n.contains("/graphql/assets/graphiql-")),
        "GraphiQL was not loaded from the server: {names:?}"
    );
    // data: URLs (GraphiQL's inline fonts and icons) are in the style sheet, not fetched.
    for name in names.iter().filter(|n| !n.starts_with("data:")) {
        assert!(
            name.starts_with(base),
            "the page loaded {name} from elsewhere: {names:?}"
        );
    }
}

/// Replaces the text of the CodeMirror editor inside `css`.
async fn set_editor(browser: &Browser, css: &str, text: &str) {
    browser.element(&format!("{css} .CodeMirror")).await;
    browser
        .client()
        .execute(
            "document.querySelector(arguments[0] + ' .CodeMirror').CodeMirror.setValue(arguments[1]);",
            vec![Value::from(css), Value::from(text)],
        )
        .await
        .unwrap_or_else(|e| panic!("set the editor {css}: {e}"));
}

#[tokio::test]
async fn graphiql_renders_offline_and_runs_a_query_with_the_admin_header() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;

    browser.open(&format!("{}/graphql", app.base)).await;
    browser.element(".graphiql-container").await;
    browser.element(".graphiql-query-editor .CodeMirror").await;
    // The headers editor is open from the start, for a pasted token.
    browser.click_button("Headers").await;
    set_editor(&browser, ".graphiql-query-editor", QUERY).await;
    set_editor(
        &browser,
        ".graphiql-editor-tool .graphiql-editor:not(.hidden)",
        &admin_headers(),
    )
    .await;
    browser.click(".graphiql-execute-button").await;

    let response = wait_for_response(&browser, "ADMIN").await;
    assert!(response.contains("\"role\": \"ADMIN\""), "{response}");
    only_local_resources(&browser, &app.base).await;
    browser.close().await;
}

#[tokio::test]
async fn graphiql_takes_the_query_and_headers_from_its_address() {
    let app = TestApp::spawn().await;
    let browser = Browser::start().await;
    let mut url = reqwest::Url::parse(&format!("{}/graphql", app.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("query", QUERY)
        .append_pair("headers", &admin_headers());

    browser.open(url.as_str()).await;
    browser.click(".graphiql-execute-button").await;

    let response = wait_for_response(&browser, "ADMIN").await;
    assert!(response.contains("\"role\": \"ADMIN\""), "{response}");
    only_local_resources(&browser, &app.base).await;
    browser.close().await;
}

#[tokio::test]
async fn graphiql_assets_have_their_types_and_a_long_cache() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/graphql/assets/"))
        .collect();
    assert_eq!(assets.len(), 5, "{html}");
    for path in assets {
        let res = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
        let expected = if path.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(header("content-type").starts_with(expected), "{path}");
        if path.ends_with("init.js") {
            assert_eq!(header("cache-control"), "no-cache");
        } else {
            assert_eq!(
                header("cache-control"),
                "public, max-age=31536000, immutable"
            );
        }
        assert!(!res.bytes().await.unwrap().is_empty(), "{path}");
    }
    let missing = app
        .client
        .get(format!("{}/graphql/assets/nothing.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
