//! The stored and API spellings of the domain's enumerations.

use super::invoice::LineKind;
use super::phase::{DurationUnit, PhaseKind};
use super::pricing::{Interval, TierMode};

/// Two-way mapping between an enum and its upper-case spelling in the database.
pub trait Code: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn code(self) -> &'static str;
    fn from_code(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == s)
    }
}

macro_rules! codes {
    ($ty:ty { $($variant:path => $text:literal),+ $(,)? }) => {
        impl Code for $ty {
            const ALL: &'static [Self] = &[$($variant),+];
            fn code(self) -> &'static str {
                match self { $($variant => $text),+ }
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductKind {
    Package,
    MeteredResource,
}

/// When a plan bills its MONTH prices: at the start of their period or at its end. HOUR
/// prices and metered usage are always billed at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecurringBilling {
    #[default]
    InAdvance,
    InArrears,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// A count of things that exist now (computations, users).
    Count,
    /// A quantity per billing period that resets.
    PerPeriod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    /// A project's backend: usage and limits for any customer.
    Service,
    Customer,
}

codes!(PhaseKind { PhaseKind::Trial => "TRIAL", PhaseKind::Discount => "DISCOUNT", PhaseKind::Final => "FINAL" });
codes!(DurationUnit {
    DurationUnit::Hour => "HOUR", DurationUnit::Day => "DAY", DurationUnit::Week => "WEEK",
    DurationUnit::Month => "MONTH", DurationUnit::Year => "YEAR",
});
codes!(Interval { Interval::Hour => "HOUR", Interval::Month => "MONTH", Interval::Unit => "UNIT" });
codes!(TierMode { TierMode::Volume => "VOLUME", TierMode::Graduated => "GRADUATED" });
codes!(ProductKind { ProductKind::Package => "PACKAGE", ProductKind::MeteredResource => "METERED_RESOURCE" });
codes!(RecurringBilling { RecurringBilling::InAdvance => "IN_ADVANCE", RecurringBilling::InArrears => "IN_ARREARS" });
codes!(LimitKind { LimitKind::Count => "COUNT", LimitKind::PerPeriod => "PER_PERIOD" });
codes!(Role { Role::Admin => "ADMIN", Role::Service => "SERVICE", Role::Customer => "CUSTOMER" });

/// Reads a stored code; a value outside the enum is a corrupted row, reported as such.
pub fn parse<T: Code>(s: &str) -> Result<T, sea_orm::DbErr> {
    T::from_code(s).ok_or_else(|| {
        sea_orm::DbErr::Type(format!(
            "unexpected stored value {s:?} for {}",
            std::any::type_name::<T>()
        ))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    Incomplete,
    IncompleteExpired,
    Active,
    Trialing,
    PastDue,
    Canceled,
}

impl SubscriptionStatus {
    /// Live subscriptions count against "one per customer".
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Incomplete | Self::Active | Self::Trialing | Self::PastDue
        )
    }

    /// Paid for and running: the plan's limits apply and usage is recorded. An unpaid
    /// `INCOMPLETE` subscription grants nothing (the default plan applies meanwhile).
    pub fn grants_plan(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckoutStatus {
    Open,
    Pending,
    Unknown,
    Succeeded,
    Failed,
    /// Closed: not completed in time.
    Expired,
    /// Closed: the customer left through the page's cancel link.
    Abandoned,
    /// Closed: a new subscription of the same customer took its place.
    Replaced,
}

impl CheckoutStatus {
    /// Statuses in which a checkout may still be paid.
    pub const OPEN: [CheckoutStatus; 4] = [Self::Open, Self::Pending, Self::Unknown, Self::Failed];

    /// Settled checkouts never move again: late or repeated news cannot undo them.
    pub fn is_final(self) -> bool {
        self == Self::Succeeded || self.is_closed()
    }

    /// A closed checkout cannot be paid; money that still arrives for it is refunded.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Expired | Self::Abandoned | Self::Replaced)
    }
}

/// Why a checkout closed, and so the status it closes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    Expired,
    Abandoned,
    Replaced,
    /// The provider could not open it, or its subscription was canceled.
    Canceled,
}

impl CloseReason {
    pub fn checkout_status(self) -> CheckoutStatus {
        match self {
            Self::Expired | Self::Canceled => CheckoutStatus::Expired,
            Self::Abandoned => CheckoutStatus::Abandoned,
            Self::Replaced => CheckoutStatus::Replaced,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Expired => "checkout not completed in time",
            Self::Abandoned => "checkout abandoned by the customer",
            Self::Replaced => "replaced by a new subscription",
            Self::Canceled => "subscription canceled before it was paid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// To send, or sent with no final answer yet.
    Pending,
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
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
    LimitReached,
    PhaseChanged,
    InvoiceIssued,
    InvoicePaid,
    InvoiceUncollectible,
    SubscriptionPastDue,
    PaymentRefunded,
    /// A subscription's items (quantities or packages) changed.
    ItemsChanged,
}

/// Why a customer's credit balance moved (`credit_entry.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CreditReason {
    /// An invoice with a negative total (a downgrade, a cancel now): its total became credit.
    InvoiceCredit,
    /// Credit set against an invoice.
    Applied,
    /// A payment took more than its invoice came to (the invoice was computed when the
    /// payment succeeded): the difference.
    Overpayment,
    /// Given back through the provider when the customer's last subscription ended.
    Refunded,
    /// A refund of credit that the provider refused: the credit is the customer's again.
    RefundFailed,
}

/// What an invoice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvoiceKind {
    /// A period boundary: the arrears of the period that ended, the advance of the next.
    Period,
    /// A change mid-period: prorations.
    Change,
    /// A cancel now: arrears up to the instant, credit for the unused advance part.
    Final,
}

/// An outbound webhook delivery: sent until accepted, or given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookDeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    Uncollectible,
}

codes!(SubscriptionStatus {
    SubscriptionStatus::Incomplete => "INCOMPLETE", SubscriptionStatus::IncompleteExpired => "INCOMPLETE_EXPIRED",
    SubscriptionStatus::Active => "ACTIVE", SubscriptionStatus::Trialing => "TRIALING",
    SubscriptionStatus::PastDue => "PAST_DUE", SubscriptionStatus::Canceled => "CANCELED",
});
codes!(CheckoutStatus {
    CheckoutStatus::Open => "OPEN", CheckoutStatus::Pending => "PENDING", CheckoutStatus::Unknown => "UNKNOWN",
    CheckoutStatus::Succeeded => "SUCCEEDED", CheckoutStatus::Failed => "FAILED", CheckoutStatus::Expired => "EXPIRED",
    CheckoutStatus::Abandoned => "ABANDONED", CheckoutStatus::Replaced => "REPLACED",
});
codes!(RefundStatus {
    RefundStatus::Pending => "PENDING", RefundStatus::Succeeded => "SUCCEEDED", RefundStatus::Failed => "FAILED",
});
codes!(EventKind {
    EventKind::SubscriptionCreated => "SUBSCRIPTION_CREATED", EventKind::CheckoutCompleted => "CHECKOUT_COMPLETED",
    EventKind::SubscriptionActivated => "SUBSCRIPTION_ACTIVATED", EventKind::PaymentSucceeded => "PAYMENT_SUCCEEDED",
    EventKind::PaymentFailed => "PAYMENT_FAILED", EventKind::PaymentPending => "PAYMENT_PENDING",
    EventKind::PaymentDetailsUpdated => "PAYMENT_DETAILS_UPDATED", EventKind::SubscriptionCanceled => "SUBSCRIPTION_CANCELED",
    EventKind::CancellationScheduled => "CANCELLATION_SCHEDULED", EventKind::PlanChanged => "PLAN_CHANGED",
    EventKind::SubscriptionExpired => "SUBSCRIPTION_EXPIRED", EventKind::LimitReached => "LIMIT_REACHED",
    EventKind::PhaseChanged => "PHASE_CHANGED", EventKind::InvoiceIssued => "INVOICE_ISSUED",
    EventKind::InvoicePaid => "INVOICE_PAID", EventKind::InvoiceUncollectible => "INVOICE_UNCOLLECTIBLE",
    EventKind::SubscriptionPastDue => "SUBSCRIPTION_PAST_DUE", EventKind::PaymentRefunded => "PAYMENT_REFUNDED",
    EventKind::ItemsChanged => "ITEMS_CHANGED",
});
codes!(CreditReason {
    CreditReason::InvoiceCredit => "INVOICE_CREDIT", CreditReason::Applied => "APPLIED",
    CreditReason::Overpayment => "OVERPAYMENT", CreditReason::Refunded => "REFUNDED",
    CreditReason::RefundFailed => "REFUND_FAILED",
});
codes!(LineKind {
    LineKind::Recurring => "RECURRING", LineKind::Metered => "METERED", LineKind::Prepaid => "PREPAID",
    LineKind::Proration => "PRORATION",
});
codes!(InvoiceKind { InvoiceKind::Period => "PERIOD", InvoiceKind::Change => "CHANGE", InvoiceKind::Final => "FINAL" });
codes!(WebhookDeliveryStatus {
    WebhookDeliveryStatus::Pending => "PENDING", WebhookDeliveryStatus::Succeeded => "SUCCEEDED",
    WebhookDeliveryStatus::Failed => "FAILED",
});
codes!(InvoiceStatus {
    InvoiceStatus::Draft => "DRAFT", InvoiceStatus::Open => "OPEN", InvoiceStatus::Paid => "PAID",
    InvoiceStatus::Void => "VOID", InvoiceStatus::Uncollectible => "UNCOLLECTIBLE",
});
