//! Recorded usage of metered resources. For products with aggregated usage the value is a
//! running counter reading: the usage is its rise since the previous reading, and a
//! reading that went down is a reset whose usage is the reading itself.

use chrono::{DateTime, Utc};
use entity::{Dec, usage_record};
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::codes::{Code, ProductKind};
use super::error::{BillingError, BillingResult};
use super::phase::truncate_to_second;
use super::validate;

#[derive(Clone, Debug)]
pub struct NewUsage {
    pub subscription_id: Uuid,
    pub product_id: Uuid,
    pub quantity: Decimal,
    pub at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub product_id: Uuid,
    /// The usage this record adds.
    pub quantity: Decimal,
    /// The counter reading it came from (aggregated products).
    pub reading: Option<Decimal>,
    pub at: DateTime<Utc>,
}

impl From<usage_record::Model> for Usage {
    fn from(m: usage_record::Model) -> Self {
        Usage {
            id: m.id,
            subscription_id: m.subscription_id,
            product_id: m.product_id,
            quantity: m.quantity.0,
            reading: m.reading.map(|r| r.0),
            at: m.at,
        }
    }
}

/// The usage a counter reading represents, after the previous reading.
pub fn counter_usage(previous: Option<Decimal>, reading: Decimal) -> Decimal {
    match previous {
        Some(p) if reading >= p => reading - p,
        // First reading counts from zero; a lower one means the counter was reset.
        _ => reading,
    }
}

impl Billing {
    pub async fn record_usage(&self, who: &Principal, input: NewUsage) -> BillingResult<Usage> {
        who.require_backend()?;
        // A backend records for any customer: the role was the whole check.
        let sub = self
            .subscription(&Principal::Admin, input.subscription_id)
            .await?;
        if !sub.status.grants_plan() {
            return Err(BillingError::InvalidState(format!(
                "subscription {} is {}: usage is recorded only once it is paid",
                sub.id,
                sub.status.code()
            )));
        }
        let product = self
            .catalog()
            .product(input.product_id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("product", input.product_id))?;
        if product.kind != ProductKind::MeteredResource {
            return Err(BillingError::invalid(format!(
                "product {:?} is not a metered resource",
                product.name
            )));
        }
        let value = validate::quantity("quantity", input.quantity)?;
        if let Some(at) = input.at {
            validate::instant("at", at)?;
        }
        let now = self.clock.now();
        let at = truncate_to_second(input.at.unwrap_or(now));
        if at > now {
            return Err(BillingError::invalid(
                "usage cannot be recorded in the future",
            ));
        }
        if let Some(key) = &input.idempotency_key {
            validate::idempotency_key(key)?;
            if let Some(existing) = self.usage_by_key(sub.id, key).await? {
                return same_or_reused(existing, &input, at);
            }
        }
        let txn = self.db.write().await?;
        let (quantity, reading) = if product.aggregated_usage {
            let previous = usage_record::Entity::find()
                .filter(usage_record::Column::SubscriptionId.eq(sub.id))
                .filter(usage_record::Column::ProductId.eq(product.id))
                .order_by_desc(usage_record::Column::At)
                .one(&*txn)
                .await?;
            if previous.as_ref().is_some_and(|p| p.at > at) {
                return Err(BillingError::invalid(
                    "counter readings must be recorded in time order",
                ));
            }
            (
                counter_usage(previous.and_then(|p| p.reading.map(|r| r.0)), value),
                Some(value),
            )
        } else {
            (value, None)
        };
        let inserted = usage_record::ActiveModel {
            id: Set(Uuid::now_v7()),
            subscription_id: Set(sub.id),
            customer_id: Set(sub.customer_id),
            product_id: Set(product.id),
            quantity: Set(Dec(quantity)),
            reading: Set(reading.map(Dec)),
            at: Set(at),
            idempotency_key: Set(input.idempotency_key.clone()),
            created_at: Set(now),
        }
        .insert(&*txn)
        .await;
        match inserted {
            Ok(m) => {
                txn.commit().await?;
                Ok(m.into())
            }
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                drop(txn);
                let key = input.idempotency_key.as_deref().unwrap_or_default();
                let existing = self
                    .usage_by_key(sub.id, key)
                    .await?
                    .ok_or(BillingError::Db(e))?;
                same_or_reused(existing, &input, at)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn usage_by_key(
        &self,
        subscription: Uuid,
        key: &str,
    ) -> BillingResult<Option<usage_record::Model>> {
        Ok(usage_record::Entity::find()
            .filter(usage_record::Column::SubscriptionId.eq(subscription))
            .filter(usage_record::Column::IdempotencyKey.eq(key))
            .one(self.db.conn())
            .await?)
    }

    /// Usage records of a subscription in `[from, to)`, oldest first.
    pub async fn usage_between(
        &self,
        subscription: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BillingResult<Vec<Usage>> {
        Ok(usage_record::Entity::find()
            .filter(usage_record::Column::SubscriptionId.eq(subscription))
            .filter(usage_record::Column::At.gte(from))
            .filter(usage_record::Column::At.lt(to))
            .order_by_asc(usage_record::Column::At)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(Usage::from)
            .collect())
    }
}

fn same_or_reused(
    existing: usage_record::Model,
    input: &NewUsage,
    at: DateTime<Utc>,
) -> BillingResult<Usage> {
    let given = existing.reading.unwrap_or(existing.quantity).0;
    if existing.product_id != input.product_id
        || given != input.quantity
        || (input.at.is_some() && existing.at != at)
    {
        return Err(BillingError::IdempotencyKeyReused);
    }
    Ok(existing.into())
}

#[cfg(test)]
mod tests {
    use super::counter_usage;
    use rust_decimal::dec;

    #[test]
    fn counters_rise_and_reset() {
        assert_eq!(counter_usage(None, dec!(40)), dec!(40));
        assert_eq!(counter_usage(Some(dec!(40)), dec!(100)), dec!(60));
        assert_eq!(
            counter_usage(Some(dec!(100)), dec!(15)),
            dec!(15),
            "a reset counts the new reading"
        );
        assert_eq!(counter_usage(Some(dec!(15)), dec!(15)), dec!(0));
    }
}
