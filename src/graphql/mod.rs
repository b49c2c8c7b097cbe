//! The GraphQL layer: thin resolvers that parse, authorize, call the domain and map.

pub mod catalog;
pub mod clock;
pub mod context;
pub mod cost;
pub mod customer;
pub mod enums;
pub mod error;
pub mod invoice;
pub mod loaders;
pub mod observe;
pub mod portal;
pub mod scalars;
pub mod subscription;
pub mod usage;
pub mod variables;
pub mod webhook;

use async_graphql::{MergedObject, Schema, SchemaBuilder};

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    catalog::CatalogQuery,
    customer::CustomerQuery,
    subscription::SubscriptionQuery,
    usage::UsageQuery,
    invoice::InvoiceQuery,
    webhook::WebhookQuery,
    clock::ClockQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    catalog::CatalogMutation,
    customer::CustomerMutation,
    subscription::SubscriptionMutation,
    usage::UsageMutation,
    invoice::InvoiceMutation,
    webhook::WebhookMutation,
    portal::PortalMutation,
    clock::ClockMutation,
);

pub use subscription::SubscriptionRoot;

pub type BillingSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Operations in one batch request. The other query limits are in [`cost`].
pub const MAX_BATCH: usize = 10;

/// The schema's types and limits, without any runtime data: `billing schema` prints its
/// SDL offline, and start-up adds the database, the clock and the providers.
pub fn schema_builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    // Outermost: times and logs every operation, refusals included.
    .extension(observe::Observe)
    // Measured first, without expanding fragments; the library's own checks (which
    // expand them) then only ever see documents within these limits.
    .extension(cost::CostLimits::default())
    .limit_depth(cost::MAX_DEPTH as usize)
    .limit_complexity(cost::MAX_COMPLEXITY as usize)
    .limit_recursive_depth(32)
    .limit_directives(8)
}

/// The SDL as committed in `schema.graphql`.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}
