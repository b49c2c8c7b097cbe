//! The API's enumerations, mirrored from the domain's.

use async_graphql::Enum;

use crate::billing::{codes, phase, pricing};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::ProductKind")]
pub enum ProductKind {
    Package,
    MeteredResource,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "phase::PhaseKind")]
pub enum PhaseKind {
    Trial,
    Discount,
    Final,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "phase::DurationUnit")]
pub enum DurationUnit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// What a price is per: an hour or a month of a package, or a unit of metered usage.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "pricing::Interval")]
pub enum PriceInterval {
    Hour,
    Month,
    Unit,
}

/// Volume: the whole quantity at its tier's price. Graduated: each unit at its tier's price.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "pricing::TierMode")]
pub enum TierMode {
    Volume,
    Graduated,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::LimitKind")]
pub enum LimitKind {
    /// A count of things that exist now (computations, users).
    Count,
    /// A quantity per billing period that resets.
    PerPeriod,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Service,
    Customer,
    Anonymous,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::SubscriptionStatus")]
pub enum SubscriptionStatus {
    /// Waiting for checkout.
    Incomplete,
    /// Never paid: its checkout expired, was abandoned, or a new subscription replaced it.
    IncompleteExpired,
    Active,
    /// Live, in the plan's trial phase.
    Trialing,
    /// A renewal payment failed; retries are scheduled.
    PastDue,
    Canceled,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::CheckoutStatus")]
pub enum CheckoutStatus {
    Open,
    Pending,
    /// The provider's answer was lost; the reconciler is asking.
    Unknown,
    Succeeded,
    /// The last attempt failed; the customer may try again on the same page.
    Failed,
    /// Closed: not completed in time. It takes no payment; one that still arrives is refunded.
    Expired,
    /// Closed: the customer left through the page's cancel link.
    Abandoned,
    /// Closed: a new subscription of the same customer replaced this one.
    Replaced,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::EventKind")]
pub enum BillingEventKind {
    SubscriptionCreated,
    CheckoutCompleted,
    SubscriptionActivated,
    PaymentSucceeded,
    PaymentFailed,
    PaymentPending,
    PaymentDetailsUpdated,
    SubscriptionCanceled,
    CancellationScheduled,
    PlanChanged,
    SubscriptionExpired,
    /// A plan limit is now fully used.
    LimitReached,
    /// The subscription crossed into its next phase; prices change from that instant.
    PhaseChanged,
    InvoiceIssued,
    InvoicePaid,
    InvoiceUncollectible,
    /// A renewal payment failed; retries are scheduled.
    SubscriptionPastDue,
    /// Money that arrived for a closed checkout was given back.
    PaymentRefunded,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::InvoiceStatus")]
pub enum InvoiceStatus {
    /// Not issued yet (previews).
    Draft,
    /// Issued, waiting for payment.
    Open,
    Paid,
    Void,
    /// Collection gave up.
    Uncollectible,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::WebhookDeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Waiting for its next attempt (or for an earlier delivery of the same customer).
    Pending,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt failed; an admin may replay it.
    Failed,
}
