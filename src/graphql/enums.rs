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

/// When a plan bills its MONTH prices: at the start of each period (the checkout takes
/// period 0's) or at its end. HOUR prices and metered usage are always billed at the end.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::RecurringBilling")]
pub enum RecurringBilling {
    InAdvance,
    InArrears,
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
    /// Money was given back: a payment for a closed checkout, or credit left at the end.
    PaymentRefunded,
    /// The subscription's items (quantities, packages) changed.
    ItemsChanged,
}

/// Why a customer's credit balance moved.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::CreditReason")]
pub enum CreditReason {
    /// An invoice with a negative total became credit.
    InvoiceCredit,
    /// Credit set against an invoice.
    Applied,
    /// A payment took more than its invoice (computed when it was paid) came to.
    Overpayment,
    /// Given back through the provider when the last subscription ended.
    Refunded,
    /// The provider refused a refund of credit: the credit is the customer's again.
    RefundFailed,
}

/// What an invoice is for.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "codes::InvoiceKind")]
pub enum InvoiceKind {
    /// A period boundary: the arrears of the period that ended and the advance lines of
    /// the one that starts (the first is collected by the checkout).
    Period,
    /// A change mid-period: PRORATION lines.
    Change,
    /// After a cancel now: arrears up to the instant, credit for the unused advance part.
    Final,
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
