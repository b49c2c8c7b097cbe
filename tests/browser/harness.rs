//! A real browser for tests: Debian's `chromium`, headless, driven through `chromedriver`
//! (WebDriver) by fantoccini. Each [`Browser`] has its own chromedriver on a free port and
//! a fresh profile, both gone when it is dropped. A missing chromium or chromedriver fails
//! the test (`.ci/run` installs them): these tests are never skipped.
//!
//! The helpers are what a person does: open a page, type into a field, press a button,
//! read the page's text and the address bar. Lookups wait (up to [`WAIT`]) for the page to
//! get there, so tests need no sleeps.
//!
//! [`Landing`] stands in for the customer's own app: `successUrl`/`cancelUrl` point at it,
//! and its pages say where the browser landed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How long a lookup waits for the page.
pub const WAIT: Duration = Duration::from_secs(20);

/// At most this many browsers at once (the machine has two cores).
static BROWSERS: Semaphore = Semaphore::const_new(2);

const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A program from `$var`, else `default`; the test fails when it is not there.
fn program(var: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.is_file(),
        "{} not found (set {var} or `apt-get install chromium chromium-driver`; .ci/run \
         installs them): browser tests need it",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
    _slot: SemaphorePermit<'static>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver ends its Chromium with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// A headless Chromium with a fresh profile, behind its own chromedriver.
    pub async fn start() -> Browser {
        let slot = BROWSERS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", chromedriver.display()));
        let profile =
            std::env::temp_dir().join(format!("billing-browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--window-size=1024,900".to_owned());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"));
        Browser {
            client,
            driver,
            profile,
            _slot: slot,
        }
    }

    /// The WebDriver client, for anything the helpers do not cover.
    #[allow(dead_code)] // kept for the tests that need more than the helpers
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address bar.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .to_string()
    }

    /// Waits until the address bar starts with `prefix`; returns it.
    pub async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "the browser is at {url}, not {prefix}…; the page says:\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text a person sees on the page.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page shows `needle`; returns the page's text.
    pub async fn wait_for_text(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text().await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the page at {} does not say {needle:?}; it says:\n{text}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` selects, once it is on the page.
    pub async fn element(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no {css} on {}: {e}; the page says:\n{}",
                    self.url().await,
                    self.text().await
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the field `css` selects, replacing what was there.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Clicks the button that says `label`.
    pub async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space(.)={}]", xpath_literal(label));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(button) = self.client.find(Locator::XPath(&xpath)).await {
                button
                    .click()
                    .await
                    .unwrap_or_else(|e| panic!("click {label:?}: {e}"));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no button {label:?} on {}; the page says:\n{}",
                self.url().await,
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the WebDriver session (dropping the browser also ends it, less politely).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// `label` as an XPath string literal.
fn xpath_literal(label: &str) -> String {
    if !label.contains('\'') {
        format!("'{label}'")
    } else if !label.contains('"') {
        format!("\"{label}\"")
    } else {
        let parts: Vec<String> = label.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// The customer's app, where checkouts send the browser back: every page says
/// `Landed on {path}`.
pub struct Landing {
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Landing {
    pub async fn start() -> Landing {
        async fn landed(uri: axum::http::Uri) -> axum::response::Html<String> {
            axum::response::Html(format!(
                "<!doctype html><title>App</title><p>Landed on {}</p>",
                uri.path()
            ))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the landing app");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let app = axum::Router::new().fallback(landed);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Landing { base, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
