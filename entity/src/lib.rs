//! SeaORM entities: one module per table, plain data, no GraphQL.

pub mod api_key;
pub mod customer;
pub mod dec;
pub mod package;
pub mod phase;
pub mod plan;
pub mod plan_limit;
pub mod plan_offer;
pub mod price;
pub mod product;
pub mod setting;

pub use dec::Dec;
