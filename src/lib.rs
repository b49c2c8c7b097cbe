//! The billing server: configuration and start-up, the HTTP transport, the GraphQL layer
//! and the billing domain, kept in separate rooms.

pub mod billing;
pub mod clock;
pub mod config;
pub mod demo;
pub mod graphql;
pub mod http;
pub mod startup;
pub mod telemetry;
