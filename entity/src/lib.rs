//! SeaORM entities: one module per table, plain data, no GraphQL.

pub mod api_key;
pub mod checkout;
pub mod credit_entry;
pub mod customer;
pub mod dec;
pub mod event;
pub mod idempotency_key;
pub mod invoice;
pub mod invoice_line;
pub mod limit_usage;
pub mod package;
pub mod phase;
pub mod plan;
pub mod plan_limit;
pub mod plan_offer;
pub mod price;
pub mod product;
pub mod provider_customer;
pub mod provider_event;
pub mod refund;
pub mod sandbox_record;
pub mod setting;
pub mod subscription;
pub mod subscription_phase;
pub mod subscription_version;
pub mod usage_record;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;

pub use dec::Dec;
