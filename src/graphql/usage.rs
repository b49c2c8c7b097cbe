//! Usage records and plan limits.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::enums::LimitKind;
use super::error::{GqlResult, uuid};
use super::scalars::Decimal;
use crate::billing::BillingError;
use crate::billing::limits::Entitlement as EntitlementModel;
use crate::billing::usage::{MAX_USAGE_BATCH, NewUsage, Usage};

#[derive(SimpleObject)]
pub struct UsageRecord {
    pub id: ID,
    pub subscription_id: ID,
    pub product_id: ID,
    /// The usage this record adds (for counters: the rise since the previous reading).
    pub quantity: Decimal,
    /// The counter reading, for products with aggregated usage.
    pub reading: Option<Decimal>,
    pub at: DateTime<Utc>,
}

impl From<Usage> for UsageRecord {
    fn from(u: Usage) -> Self {
        UsageRecord {
            id: ID(u.id.to_string()),
            subscription_id: ID(u.subscription_id.to_string()),
            product_id: ID(u.product_id.to_string()),
            quantity: u.quantity.into(),
            reading: u.reading.map(Into::into),
            at: u.at,
        }
    }
}

/// Where a customer stands against one plan limit.
#[derive(SimpleObject)]
pub struct Entitlement {
    pub customer_id: ID,
    pub metric: String,
    /// None when the customer's plan does not limit this metric.
    pub kind: Option<LimitKind>,
    pub limit: Option<i64>,
    pub used: i64,
    pub remaining: Option<i64>,
    /// Whether one more may be acquired now.
    pub allowed: bool,
    /// For per-period limits: the start of the period being counted.
    pub period_start: Option<DateTime<Utc>>,
}

impl From<EntitlementModel> for Entitlement {
    fn from(e: EntitlementModel) -> Self {
        Entitlement {
            customer_id: ID(e.customer_id.to_string()),
            metric: e.metric,
            kind: e.kind.map(Into::into),
            limit: e.limit,
            used: e.used,
            remaining: e.remaining,
            allowed: e.allowed,
            period_start: e.period_start,
        }
    }
}

#[derive(InputObject)]
pub struct RecordUsageInput {
    pub subscription_id: ID,
    pub product_id: ID,
    /// The usage, or for aggregated products the counter's current reading.
    pub quantity: Decimal,
    /// When it was measured; defaults to now.
    pub at: Option<DateTime<Utc>>,
    /// The same key twice records once.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct RecordUsageBatchInput {
    /// At most 1,000 records, written in one transaction: all of them, or none.
    pub records: Vec<RecordUsageInput>,
}

#[derive(SimpleObject)]
pub struct RecordUsageBatchPayload {
    /// One per input record, in input order (a replayed key answers its first record).
    pub records: Vec<UsageRecord>,
}

impl RecordUsageInput {
    fn into_new(self, field: &str) -> async_graphql::Result<NewUsage> {
        Ok(NewUsage {
            subscription_id: uuid(&format!("{field}subscriptionId"), &self.subscription_id)?,
            product_id: uuid(&format!("{field}productId"), &self.product_id)?,
            quantity: self.quantity.0,
            at: self.at,
            idempotency_key: self.idempotency_key,
        })
    }
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// May this customer use one more of `metric` (e.g. start another computation)?
    async fn entitlement(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        metric: String,
    ) -> async_graphql::Result<Entitlement> {
        let e = ctx
            .billing()?
            .entitlement(&ctx.principal(), uuid("customerId", &customer_id)?, &metric)
            .await
            .gql()?;
        Ok(e.into())
    }
}

#[derive(Default)]
pub struct UsageMutation;

#[Object]
impl UsageMutation {
    async fn record_usage(
        &self,
        ctx: &Context<'_>,
        input: RecordUsageInput,
    ) -> async_graphql::Result<UsageRecord> {
        let u = ctx
            .billing()?
            .record_usage(&ctx.principal(), input.into_new("")?)
            .await
            .gql()?;
        Ok(u.into())
    }

    /// Up to 1,000 usage records in one transaction, each as `recordUsage` records it
    /// (same roles, checks and idempotency keys; a key twice in one batch records once).
    /// A refused record refuses the whole batch with BAD_USER_INPUT naming its index
    /// (`records[3]: …`), and nothing is written.
    async fn record_usage_batch(
        &self,
        ctx: &Context<'_>,
        input: RecordUsageBatchInput,
    ) -> async_graphql::Result<RecordUsageBatchPayload> {
        let billing = ctx.billing()?;
        let who = ctx.principal();
        // The role first, then the size, so that neither costs a caller without one
        // the parsing of 1,000 records.
        who.require_backend().gql()?;
        if input.records.len() > MAX_USAGE_BATCH {
            return Err(BillingError::invalid(format!(
                "records: a batch holds at most {MAX_USAGE_BATCH} records, got {}",
                input.records.len()
            )))
            .gql();
        }
        let records = input
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_new(&format!("records[{i}].")))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        let recorded = billing.record_usage_batch(&who, records).await.gql()?;
        Ok(RecordUsageBatchPayload {
            records: recorded.into_iter().map(Into::into).collect(),
        })
    }

    /// Takes `quantity` of a limit before the thing happens; LIMIT_EXCEEDED when it does not fit.
    async fn acquire_limit(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        metric: String,
        #[graphql(default = 1)] quantity: i32,
    ) -> async_graphql::Result<Entitlement> {
        let e = ctx
            .billing()?
            .acquire_limit(
                &ctx.principal(),
                uuid("customerId", &customer_id)?,
                &metric,
                i64::from(quantity),
            )
            .await
            .gql()?;
        Ok(e.into())
    }

    /// Gives back `quantity` (the computation ended).
    async fn release_limit(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        metric: String,
        #[graphql(default = 1)] quantity: i32,
    ) -> async_graphql::Result<Entitlement> {
        let e = ctx
            .billing()?
            .release_limit(
                &ctx.principal(),
                uuid("customerId", &customer_id)?,
                &metric,
                i64::from(quantity),
            )
            .await
            .gql()?;
        Ok(e.into())
    }
}
