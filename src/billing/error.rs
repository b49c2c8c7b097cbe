//! The domain's errors, each with a stable code that reaches the client unchanged.

use sea_orm::DbErr;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("the token is not valid")]
    BadToken,
    #[error("this operation is not allowed for your role")]
    Forbidden,
    #[error("plan {0} is archived")]
    PlanArchived(Uuid),
    #[error("the default plan cannot be archived; make another plan the default first")]
    DefaultPlanArchive,
    #[error("{0}")]
    Conflict(String),
    #[error("the test clock is not enabled on this server")]
    TestClockDisabled,
    #[error("the clock only moves forward; it is already at {0}")]
    ClockBackwards(String),
    /// A run of the billing clock failed in its own task: the error it met, with its code.
    #[error("the billing clock's run failed: {message}")]
    ClockRunFailed { code: &'static str, message: String },
    #[error("plan {plan:?} is not offered in {currency}")]
    CurrencyNotOffered { plan: String, currency: String },
    #[error("the customer already has a live subscription")]
    AlreadySubscribed,
    #[error("this idempotency key was used with different input")]
    IdempotencyKeyReused,
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    QueryTooComplex(String),
    #[error("{0}")]
    QueryTooDeep(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("payment provider failed: {0}")]
    Provider(#[from] providers::ProviderError),
    #[error("internal error")]
    Db(#[from] DbErr),
}

impl BillingError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "BAD_USER_INPUT",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Unauthenticated | Self::BadToken => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::PlanArchived(_) => "PLAN_ARCHIVED",
            Self::DefaultPlanArchive => "DEFAULT_PLAN",
            Self::Conflict(_) => "CONFLICT",
            Self::TestClockDisabled => "TEST_CLOCK_DISABLED",
            Self::ClockBackwards(_) => "BAD_USER_INPUT",
            Self::ClockRunFailed { code, .. } => code,
            Self::CurrencyNotOffered { .. } => "CURRENCY_NOT_OFFERED",
            Self::AlreadySubscribed => "ALREADY_SUBSCRIBED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::InvalidState(_) => "INVALID_STATE",
            Self::LimitExceeded(_) => "LIMIT_EXCEEDED",
            Self::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            Self::QueryTooDeep(_) => "QUERY_TOO_DEEP",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::Provider(_) => "PAYMENT_PROVIDER_ERROR",
            Self::Db(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

pub type BillingResult<T> = Result<T, BillingError>;
