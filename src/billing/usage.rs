//! Recorded usage of metered resources. For products with aggregated usage the value is a
//! running counter reading: the usage is its rise since the previous reading, and a
//! reading that went down is a reset whose usage is the reading itself.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{Dec, subscription, usage_record};
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::Product;
use super::codes::{Code, ProductKind};
use super::error::{BillingError, BillingResult};
use super::phase::truncate_to_second;
use super::subscriptions::Subscription;
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

/// Records one `recordUsageBatch` may hold.
pub const MAX_USAGE_BATCH: usize = 1_000;

/// A counter's reading: when, and its value.
type Reading = (DateTime<Utc>, Option<Decimal>);

/// A record whose input passed every check that needs no database.
struct Checked {
    product: Arc<Product>,
    value: Decimal,
    at: DateTime<Utc>,
}

/// (subscription, idempotency key) pairs looked up per statement of a batch.
const KEY_PAIRS_PER_READ: usize = 500;

impl Billing {
    /// The checks of one record that need no database: a metered product of the catalog,
    /// a valid quantity, an instant that is not in the future, a valid key.
    fn check_usage(&self, input: &NewUsage, now: DateTime<Utc>) -> BillingResult<Checked> {
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
        let at = truncate_to_second(input.at.unwrap_or(now));
        if at > now {
            return Err(BillingError::invalid(
                "usage cannot be recorded in the future",
            ));
        }
        if let Some(key) = &input.idempotency_key {
            validate::idempotency_key(key)?;
        }
        Ok(Checked { product, value, at })
    }

    pub async fn record_usage(&self, who: &Principal, input: NewUsage) -> BillingResult<Usage> {
        who.require_backend()?;
        // A backend records for any customer: the role was the whole check.
        let sub = self
            .subscription(&Principal::Admin, input.subscription_id)
            .await?;
        require_paid(&sub)?;
        let now = self.clock.now();
        let Checked { product, value, at } = self.check_usage(&input, now)?;
        // A counter's replay must be found before its reading is compared with newer ones;
        // a plain record's replay shows up as a row its insert skipped, which spares the
        // common case (a fresh key) a statement.
        if product.aggregated_usage
            && let Some(key) = &input.idempotency_key
            && let Some(existing) = self.usage_by_key(sub.id, key).await?
        {
            return same_or_reused(existing, &input, at);
        }
        let record = |quantity: Decimal, reading: Option<Decimal>| usage_record::Model {
            id: Uuid::now_v7(),
            subscription_id: sub.id,
            customer_id: sub.customer_id,
            product_id: product.id,
            quantity: Dec(quantity),
            reading: reading.map(Dec),
            at,
            idempotency_key: input.idempotency_key.clone(),
            created_at: now,
        };
        if !product.aggregated_usage {
            // Nothing read before it: written in one statement with the records of the
            // calls waiting beside it.
            let m = record(value, None);
            return self.usage_intake.record(&self.db, m, input, at).await;
        }
        let txn = self.db.write().await?;
        let (quantity, reading) = {
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
        };
        let inserted = usage_record::ActiveModel::from(record(quantity, reading))
            .insert(&*txn)
            .await;
        match inserted {
            Ok(m) => {
                txn.commit().await?;
                Ok(m.into())
            }
            Err(e) => {
                drop(txn);
                self.replayed_or(e, sub.id, &input, at).await
            }
        }
    }

    /// After a failed insert of a record: a replay of its key answers the record first
    /// written under it (or refuses a reuse of the key); any other error stands.
    async fn replayed_or(
        &self,
        e: sea_orm::DbErr,
        subscription_id: Uuid,
        input: &NewUsage,
        at: DateTime<Utc>,
    ) -> BillingResult<Usage> {
        if !matches!(
            e.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ) {
            return Err(e.into());
        }
        let key = input.idempotency_key.as_deref().unwrap_or_default();
        let existing = self
            .usage_by_key(subscription_id, key)
            .await?
            .ok_or(BillingError::Db(e))?;
        same_or_reused(existing, input, at)
    }

    /// Up to [`MAX_USAGE_BATCH`] records in one transaction, each checked as
    /// [`Self::record_usage`] checks it and idempotent by its key (a key given twice in the
    /// batch with the same input records once). A refused record refuses the batch with
    /// `BAD_USER_INPUT` naming its index, and nothing is written. The answers are in input
    /// order; a replay answers the record first written under its key.
    pub async fn record_usage_batch(
        &self,
        who: &Principal,
        inputs: Vec<NewUsage>,
    ) -> BillingResult<Vec<Usage>> {
        who.require_backend()?;
        if inputs.len() > MAX_USAGE_BATCH {
            return Err(BillingError::invalid(format!(
                "records: a batch holds at most {MAX_USAGE_BATCH} records, got {}",
                inputs.len()
            )));
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let at_index = |i: usize| {
            move |e: BillingError| match e {
                e @ BillingError::Db(_) => e,
                e => BillingError::invalid(format!("records[{i}]: {e}")),
            }
        };
        let now = self.clock.now();
        let checked = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| self.check_usage(input, now).map_err(at_index(i)))
            .collect::<BillingResult<Vec<_>>>()?;
        let mut ids: Vec<Uuid> = inputs.iter().map(|u| u.subscription_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let subscriptions: HashMap<Uuid, Subscription> = subscription::Entity::find()
            .filter(subscription::Column::Id.is_in(ids))
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| Subscription::try_from(m).map(|s| (s.id, s)))
            .collect::<Result<_, _>>()?;
        let mut subs = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let sub = subscriptions
                .get(&input.subscription_id)
                .ok_or_else(|| BillingError::not_found("subscription", input.subscription_id))
                .and_then(|s| require_paid(s).map(|()| s))
                .map_err(at_index(i))?;
            subs.push(sub);
        }
        self.write_usage_batch(&inputs, &checked, &subs, now).await
    }

    /// The write of [`Self::record_usage_batch`], in one write transaction: the counters'
    /// stored keys and previous readings, then one multi-row insert that skips a key
    /// already stored; only the records it skipped (replays, or a concurrent batch's
    /// records on PostgreSQL) are then read, to answer them or refuse a reused key. (A
    /// counter's record skipped so was computed from the same reading as the stored one,
    /// so the rises after it stand.)
    async fn write_usage_batch(
        &self,
        inputs: &[NewUsage],
        checked: &[Checked],
        subs: &[&Subscription],
        now: DateTime<Utc>,
    ) -> BillingResult<Vec<Usage>> {
        let at_index =
            |i: usize| move |e: BillingError| BillingError::invalid(format!("records[{i}]: {e}"));
        let pair_of = |i: usize| Some((subs[i].id, inputs[i].idempotency_key.clone()?));
        let txn = self.db.write().await?;
        // A counter's replay must be known before its reading is compared with the next
        // ones, so counters' keys are read first; a plain record's replay shows up as a
        // row the insert skipped, which spares the common case (fresh keys) the read.
        let counters = (0..inputs.len()).filter(|&i| checked[i].product.aggregated_usage);
        let mut by_key = stored_under(&*txn, counters.filter_map(pair_of)).await?;
        // Each counter's latest reading (when, and its value), read once and then carried
        // through the batch.
        let mut last_reading: HashMap<(Uuid, Uuid), Option<Reading>> = HashMap::new();
        let mut answers = Vec::with_capacity(inputs.len());
        let mut fresh = Vec::new();
        for (i, ((input, c), sub)) in inputs.iter().zip(checked).zip(subs).enumerate() {
            if let Some(pair) = pair_of(i)
                && let Some(existing) = by_key.get(&pair)
            {
                answers.push(same_or_reused(existing.clone(), input, c.at).map_err(at_index(i))?);
                continue;
            }
            let (quantity, reading) = if c.product.aggregated_usage {
                let pair = (sub.id, c.product.id);
                if let Entry::Vacant(slot) = last_reading.entry(pair) {
                    let previous = usage_record::Entity::find()
                        .filter(usage_record::Column::SubscriptionId.eq(sub.id))
                        .filter(usage_record::Column::ProductId.eq(c.product.id))
                        .order_by_desc(usage_record::Column::At)
                        .one(&*txn)
                        .await?;
                    slot.insert(previous.map(|p| (p.at, p.reading.map(|r| r.0))));
                }
                let previous = last_reading.get(&pair).copied().flatten();
                if previous.is_some_and(|(at, _)| at > c.at) {
                    return Err(at_index(i)(BillingError::invalid(
                        "counter readings must be recorded in time order",
                    )));
                }
                last_reading.insert(pair, Some((c.at, Some(c.value))));
                (
                    counter_usage(previous.and_then(|(_, r)| r), c.value),
                    Some(c.value),
                )
            } else {
                (c.value, None)
            };
            let m = usage_record::Model {
                id: Uuid::now_v7(),
                subscription_id: sub.id,
                customer_id: sub.customer_id,
                product_id: c.product.id,
                quantity: Dec(quantity),
                reading: reading.map(Dec),
                at: c.at,
                idempotency_key: input.idempotency_key.clone(),
                created_at: now,
            };
            if let Some(pair) = pair_of(i) {
                // A second record under this key in the batch replays this one.
                by_key.insert(pair, m.clone());
            }
            answers.push(Usage::from(m.clone()));
            fresh.push(m);
        }
        if fresh.is_empty() {
            txn.commit().await?;
            return Ok(answers);
        }
        let ids: HashSet<Uuid> = fresh.iter().map(|m| m.id).collect();
        let inserted = insert_skipping_stored(&*txn, fresh).await?;
        if inserted.len() < ids.len() {
            // Keys stored before (or by a concurrent batch): each record under one of them
            // answers what is stored, or refuses the batch if its input differs.
            let skipped = (0..inputs.len())
                .filter(|&i| ids.contains(&answers[i].id) && !inserted.contains(&answers[i].id))
                .filter_map(pair_of);
            let stored = stored_under(&*txn, skipped).await?;
            for (i, answer) in answers.iter_mut().enumerate() {
                if let Some(existing) = pair_of(i).and_then(|p| stored.get(&p)) {
                    *answer = same_or_reused(existing.clone(), &inputs[i], checked[i].at)
                        .map_err(at_index(i))?;
                }
            }
        }
        txn.commit().await?;
        Ok(answers)
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

/// Inserts records in one statement, skipping each whose (subscription, key) already holds
/// one (stored, or earlier in the statement): the ids inserted.
pub(super) async fn insert_skipping_stored(
    db: &impl ConnectionTrait,
    records: Vec<usage_record::Model>,
) -> Result<HashSet<Uuid>, sea_orm::DbErr> {
    Ok(
        match usage_record::Entity::insert_many(
            records.into_iter().map(usage_record::ActiveModel::from),
        )
        .on_conflict_do_nothing_on([
            usage_record::Column::SubscriptionId,
            usage_record::Column::IdempotencyKey,
        ])
        .exec_with_returning_keys(db)
        .await?
        {
            sea_orm::TryInsertResult::Inserted(keys) => keys.into_iter().collect(),
            _ => HashSet::new(),
        },
    )
}

/// The records stored under (subscription, idempotency key) pairs: one index lookup per
/// pair, [`KEY_PAIRS_PER_READ`] pairs a statement. (A filter on the subscriptions and on
/// the keys apart made SQLite probe every subscription with every key: a million lookups
/// for a batch of 1,000.)
pub(super) async fn stored_under(
    db: &impl ConnectionTrait,
    pairs: impl IntoIterator<Item = (Uuid, String)>,
) -> BillingResult<HashMap<(Uuid, String), usage_record::Model>> {
    let mut pairs: Vec<(Uuid, String)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut by_key = HashMap::new();
    for chunk in pairs.chunks(KEY_PAIRS_PER_READ) {
        let wanted = chunk.iter().fold(Condition::any(), |any, (sub, key)| {
            any.add(
                Condition::all()
                    .add(usage_record::Column::SubscriptionId.eq(*sub))
                    .add(usage_record::Column::IdempotencyKey.eq(key.as_str())),
            )
        });
        for m in usage_record::Entity::find().filter(wanted).all(db).await? {
            if let Some(k) = m.idempotency_key.clone() {
                by_key.insert((m.subscription_id, k), m);
            }
        }
    }
    Ok(by_key)
}

/// Usage is recorded only on a subscription that is paid up.
fn require_paid(sub: &Subscription) -> BillingResult<()> {
    if !sub.status.grants_plan() {
        return Err(BillingError::InvalidState(format!(
            "subscription {} is {}: usage is recorded only once it is paid",
            sub.id,
            sub.status.code()
        )));
    }
    Ok(())
}

pub(super) fn same_or_reused(
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
