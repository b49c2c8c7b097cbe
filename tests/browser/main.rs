//! Browser tests: the hosted payment pages in a real headless Chromium, against the real
//! server on a random port with a fresh database (the API tests' `TestApp`). Each test
//! asserts what the customer sees (where the browser lands, the text on the page) and what
//! was stored (the subscription's status and its events, through GraphQL).
//!
//! `harness` has the browser and the customer's landing app; `flows` the GraphQL steps the
//! tests share. Add a module per area, like the API tests.

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod documents;
mod flows;
mod graphiql;
mod harness;
mod portal;
mod sandbox;
mod stripe;
