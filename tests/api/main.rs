//! Integration tests: the real server on a random port, a fresh database per test, and
//! GraphQL over real HTTP. `TEST_DATABASE_URL=postgres://…` runs them on PostgreSQL.

mod access;
mod catalog;
mod chaos;
mod customers;
mod demo;
mod documents;
mod events;
mod helpers;
mod invoices;
mod legacy;
mod limits;
mod metrics;
mod money;
mod money_path;
mod portal;
mod pricing;
mod proration;
mod sandbox_state;
mod schema;
mod storage;
mod stripe;
mod subscriptions;
mod usage;
mod webhooks;
mod webhooks_out;
