//! Idempotency keys, by Stripe's rules: the same key with the same input returns the first
//! result without doing the work again; with other input it is refused; concurrent calls
//! with one key do the work once. Keys are scoped to the caller.

use std::time::Duration;

use chrono::TimeDelta;
use entity::idempotency_key;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use super::Billing;
use super::access::Principal;
use super::error::{BillingError, BillingResult};

/// How long a key is remembered (at least 24 hours, as promised).
pub const KEY_LIFETIME: TimeDelta = TimeDelta::hours(48);

pub enum Claim {
    /// Nobody used the key yet: do the work, then `complete` it.
    Fresh,
    /// The first call's stored result.
    Replay(String),
}

pub fn scope_of(who: &Principal) -> String {
    match who {
        Principal::Admin => "admin".to_owned(),
        Principal::Service => "service".to_owned(),
        Principal::Customer(id) => format!("customer:{id}"),
        Principal::Anonymous => "anonymous".to_owned(),
    }
}

pub fn request_hash(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Billing {
    pub async fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        operation: &str,
        hash: &str,
    ) -> BillingResult<Claim> {
        super::validate::idempotency_key(key)?;
        // Another call holding the key finishes within its provider timeout; wait that long.
        for _ in 0..1200 {
            let slot = self.db.writer_slot().await;
            let inserted = idempotency_key::ActiveModel {
                scope: Set(scope.to_owned()),
                key: Set(key.to_owned()),
                operation: Set(operation.to_owned()),
                request_hash: Set(hash.to_owned()),
                response: Set(None),
                created_at: Set(self.clock.now()),
            }
            .insert(self.db.conn())
            .await;
            drop(slot);
            match inserted {
                Ok(_) => return Ok(Claim::Fresh),
                Err(e)
                    if matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            let existing = idempotency_key::Entity::find_by_id((scope.to_owned(), key.to_owned()))
                .one(self.db.conn())
                .await?;
            if let Some(row) = existing {
                if row.operation != operation || row.request_hash != hash {
                    return Err(BillingError::IdempotencyKeyReused);
                }
                if let Some(response) = row.response {
                    return Ok(Claim::Replay(response));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Err(BillingError::Conflict(
            "another request with this idempotency key is still running".into(),
        ))
    }

    pub async fn complete_idempotency(
        &self,
        scope: &str,
        key: &str,
        response: String,
    ) -> BillingResult<()> {
        let row = idempotency_key::ActiveModel {
            scope: Set(scope.to_owned()),
            key: Set(key.to_owned()),
            response: Set(Some(response)),
            ..Default::default()
        };
        let _slot = self.db.writer_slot().await;
        row.update(self.db.conn()).await?;
        Ok(())
    }

    /// Forgets a key whose call failed, so that a retry can run.
    pub async fn release_idempotency(&self, scope: &str, key: &str) -> BillingResult<()> {
        let _slot = self.db.writer_slot().await;
        idempotency_key::Entity::delete_by_id((scope.to_owned(), key.to_owned()))
            .exec(self.db.conn())
            .await?;
        Ok(())
    }

    pub async fn purge_idempotency_keys(&self) -> BillingResult<u64> {
        let cutoff = self.clock.now() - KEY_LIFETIME;
        let _slot = self.db.writer_slot().await;
        let res = idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::CreatedAt.lt(cutoff))
            .exec(self.db.conn())
            .await?;
        Ok(res.rows_affected)
    }
}
