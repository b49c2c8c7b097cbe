//! Plan limits, enforced before the thing happens (CoCoS: "may this project start
//! computation #101?"). Acquiring and releasing are single conditional UPDATEs, so
//! concurrent callers can never go past a limit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{limit_usage, subscription};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::{Plan, PlanLimit};
use super::codes::{Code, EventKind, LimitKind, SubscriptionStatus};
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::phase::period_containing;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entitlement {
    pub customer_id: Uuid,
    pub metric: String,
    pub kind: Option<LimitKind>,
    /// None: the plan does not limit this metric.
    pub limit: Option<i64>,
    pub used: i64,
    pub remaining: Option<i64>,
    /// Whether one more may be acquired now.
    pub allowed: bool,
    pub period_start: Option<DateTime<Utc>>,
}

fn metric(m: &str) -> BillingResult<String> {
    let m = m.trim();
    super::validate::plain("metric", m, false)?;
    if m.is_empty() || m.len() > 64 {
        return Err(BillingError::invalid("metric must be 1 to 64 characters"));
    }
    Ok(m.to_owned())
}

impl Billing {
    /// The plan whose limits apply to a customer: their paid-up subscription's, else the
    /// default plan's (an unpaid `INCOMPLETE` one grants nothing); and the instant
    /// per-period limits are anchored on.
    async fn governing(
        &self,
        customer_id: Uuid,
    ) -> BillingResult<(Option<Arc<Plan>>, DateTime<Utc>)> {
        let customer = self.customer_model(customer_id).await?;
        let live = subscription::Entity::find()
            .filter(subscription::Column::CustomerId.eq(customer_id))
            .filter(
                subscription::Column::Status.is_in(
                    [
                        SubscriptionStatus::Active,
                        SubscriptionStatus::Trialing,
                        SubscriptionStatus::PastDue,
                    ]
                    .map(|s| s.code()),
                ),
            )
            .order_by_desc(subscription::Column::CreatedAt)
            .one(self.db.conn())
            .await?;
        let catalog = self.catalog_with(live.iter().map(|s| s.plan_id)).await?;
        let plan = match &live {
            Some(s) => catalog.plan(s.plan_id).cloned(),
            None => catalog.default_plan().cloned(),
        };
        let anchor = live
            .and_then(|s| s.started_at)
            .unwrap_or(customer.created_at);
        Ok((plan, anchor))
    }

    fn period_start(&self, anchor: DateTime<Utc>) -> DateTime<Utc> {
        let now = self.clock.now();
        if now < anchor {
            anchor
        } else {
            period_containing(anchor, now).1
        }
    }

    async fn usage_row(
        &self,
        db: &impl ConnectionTrait,
        customer_id: Uuid,
        metric: &str,
    ) -> BillingResult<Option<limit_usage::Model>> {
        Ok(
            limit_usage::Entity::find_by_id((customer_id, metric.to_owned()))
                .one(db)
                .await?,
        )
    }

    fn entitlement_of(
        &self,
        customer_id: Uuid,
        metric: &str,
        limit: Option<&PlanLimit>,
        row: Option<limit_usage::Model>,
        period: Option<DateTime<Utc>>,
    ) -> Entitlement {
        let used = match (&row, limit.map(|l| l.kind)) {
            // A per-period count from an earlier period no longer counts.
            (Some(r), Some(LimitKind::PerPeriod)) if r.period_start != period => 0,
            (Some(r), _) => r.used,
            (None, _) => 0,
        };
        let max = limit.map(|l| l.max_value);
        Entitlement {
            customer_id,
            metric: metric.to_owned(),
            kind: limit.map(|l| l.kind),
            limit: max,
            used,
            remaining: max.map(|m| Ord::max(m - used, 0)),
            allowed: max.is_none_or(|m| used < m),
            period_start: period,
        }
    }

    pub async fn entitlement(
        &self,
        who: &Principal,
        customer_id: Uuid,
        metric_name: &str,
    ) -> BillingResult<Entitlement> {
        who.require_customer_read(customer_id)?;
        let metric = metric(metric_name)?;
        let (plan, anchor) = self.governing(customer_id).await?;
        let limit = plan
            .as_ref()
            .and_then(|p| p.limits.iter().find(|l| l.metric == metric));
        let period = (limit.map(|l| l.kind) == Some(LimitKind::PerPeriod))
            .then(|| self.period_start(anchor));
        let row = self.usage_row(self.db.conn(), customer_id, &metric).await?;
        Ok(self.entitlement_of(customer_id, &metric, limit, row, period))
    }

    /// Takes `quantity` of a limit (e.g. one more computation), or refuses with
    /// LIMIT_EXCEEDED and changes nothing.
    pub async fn acquire_limit(
        &self,
        who: &Principal,
        customer_id: Uuid,
        metric_name: &str,
        quantity: i64,
    ) -> BillingResult<Entitlement> {
        who.require_backend()?;
        if quantity < 1 {
            return Err(BillingError::invalid("quantity must be at least 1"));
        }
        let metric = metric(metric_name)?;
        let (plan, anchor) = self.governing(customer_id).await?;
        let limit = plan
            .as_ref()
            .and_then(|p| p.limits.iter().find(|l| l.metric == metric))
            .cloned();
        let Some(limit) = limit else {
            // Nothing to hold: allowed, and nothing is stored.
            return Ok(self.entitlement_of(customer_id, &metric, None, None, None));
        };
        let limit = Some(limit);
        let period = (limit.as_ref().map(|l| l.kind) == Some(LimitKind::PerPeriod))
            .then(|| self.period_start(anchor));
        let now = self.clock.now();
        let txn = self.db.write().await?;
        limit_usage::Entity::insert(limit_usage::ActiveModel {
            customer_id: Set(customer_id),
            metric: Set(metric.clone()),
            used: Set(0),
            period_start: Set(period),
        })
        .on_conflict_do_nothing_on([limit_usage::Column::CustomerId, limit_usage::Column::Metric])
        .exec(&*txn)
        .await?;
        if let Some(p) = period {
            // A new period starts from zero.
            limit_usage::Entity::update_many()
                .col_expr(limit_usage::Column::Used, Expr::value(0i64))
                .col_expr(limit_usage::Column::PeriodStart, Expr::value(Some(p)))
                .filter(limit_usage::Column::CustomerId.eq(customer_id))
                .filter(limit_usage::Column::Metric.eq(metric.as_str()))
                .filter(
                    limit_usage::Column::PeriodStart
                        .ne(p)
                        .or(limit_usage::Column::PeriodStart.is_null()),
                )
                .exec(&*txn)
                .await?;
        }
        let mut take = limit_usage::Entity::update_many()
            .col_expr(
                limit_usage::Column::Used,
                Expr::col(limit_usage::Column::Used).add(quantity),
            )
            .filter(limit_usage::Column::CustomerId.eq(customer_id))
            .filter(limit_usage::Column::Metric.eq(metric.as_str()));
        if let Some(l) = &limit {
            take = take.filter(
                Expr::col(limit_usage::Column::Used)
                    .add(quantity)
                    .lte(l.max_value),
            );
        }
        let taken = take.exec(&*txn).await?.rows_affected == 1;
        let row = self.usage_row(&*txn, customer_id, &metric).await?;
        let ent = self.entitlement_of(customer_id, &metric, limit.as_ref(), row, period);
        if !taken {
            return Err(BillingError::LimitExceeded(format!(
                "limit {metric} is {}: {} in use, {quantity} more refused",
                ent.limit.unwrap_or_default(),
                ent.used
            )));
        }
        if ent.limit.is_some_and(|m| ent.used == m) {
            record(
                &*txn,
                now,
                customer_id,
                None,
                EventKind::LimitReached,
                json!({ "metric": metric, "limit": ent.limit, "used": ent.used }),
            )
            .await?;
        }
        txn.commit().await?;
        if ent.limit.is_some_and(|m| ent.used == m) {
            self.announce_events();
        }
        Ok(ent)
    }

    /// Gives back `quantity` (a computation ended). Giving back more than is in use is
    /// refused and changes nothing; a metric the plan does not limit holds nothing.
    pub async fn release_limit(
        &self,
        who: &Principal,
        customer_id: Uuid,
        metric_name: &str,
        quantity: i64,
    ) -> BillingResult<Entitlement> {
        who.require_backend()?;
        if quantity < 1 {
            return Err(BillingError::invalid("quantity must be at least 1"));
        }
        let metric = metric(metric_name)?;
        let (plan, anchor) = self.governing(customer_id).await?;
        let Some(limit) = plan
            .as_ref()
            .and_then(|p| p.limits.iter().find(|l| l.metric == metric))
            .cloned()
        else {
            return Ok(self.entitlement_of(customer_id, &metric, None, None, None));
        };
        let period = (limit.kind == LimitKind::PerPeriod).then(|| self.period_start(anchor));
        let txn = self.db.write().await?;
        let mut give_back = limit_usage::Entity::update_many()
            .col_expr(
                limit_usage::Column::Used,
                Expr::col(limit_usage::Column::Used).sub(quantity),
            )
            .filter(limit_usage::Column::CustomerId.eq(customer_id))
            .filter(limit_usage::Column::Metric.eq(metric.as_str()))
            .filter(limit_usage::Column::Used.gte(quantity));
        if let Some(p) = period {
            // What an earlier period counted is no longer in use.
            give_back = give_back.filter(limit_usage::Column::PeriodStart.eq(p));
        }
        let released = give_back.exec(&*txn).await?.rows_affected == 1;
        let row = self.usage_row(&*txn, customer_id, &metric).await?;
        let ent = self.entitlement_of(customer_id, &metric, Some(&limit), row, period);
        if !released {
            return Err(BillingError::invalid(format!(
                "cannot release {quantity} {metric}: {} in use",
                ent.used
            )));
        }
        txn.commit().await?;
        Ok(ent)
    }

    /// Refuses a move to a plan whose count limits are below what the customer uses now.
    pub(crate) async fn check_limits_fit(
        &self,
        customer_id: Uuid,
        plan: &Plan,
    ) -> BillingResult<()> {
        for l in plan.limits.iter().filter(|l| l.kind == LimitKind::Count) {
            if let Some(row) = self
                .usage_row(self.db.conn(), customer_id, &l.metric)
                .await?
                && row.used > l.max_value
            {
                return Err(BillingError::LimitExceeded(format!(
                    "plan {:?} allows {} {}, but {} are in use; release some first",
                    plan.name, l.max_value, l.metric, row.used
                )));
            }
        }
        Ok(())
    }
}
