//! The stored and API spellings of the domain's enumerations.

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckoutStatus {
    Open,
    Pending,
    Unknown,
    Succeeded,
    Failed,
    Expired,
}

impl CheckoutStatus {
    /// Settled checkouts never move again: late or repeated news cannot undo them.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Expired)
    }
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
    EventKind::SubscriptionPastDue => "SUBSCRIPTION_PAST_DUE",
});
codes!(InvoiceStatus {
    InvoiceStatus::Draft => "DRAFT", InvoiceStatus::Open => "OPEN", InvoiceStatus::Paid => "PAID",
    InvoiceStatus::Void => "VOID", InvoiceStatus::Uncollectible => "UNCOLLECTIBLE",
});
