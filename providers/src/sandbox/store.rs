//! Where the sandbox keeps its state: a small record store that the server implements over
//! its own database (so that a restart, or another replica on the same database, serves the
//! same pages), and [`MemoryStore`] for this crate's tests.
//!
//! Records are JSON documents addressed by a kind and an id, each with a version. Every
//! change is a compare-and-set on that version, so two processes racing on one record (a
//! checkout paid twice at once, paid while it is being closed) get exactly one winner; the
//! loser reads the record again and decides anew. Amounts inside records are decimal
//! strings, never JSON numbers.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

/// What a record is. The string form is stored with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A customer and its saved card (id: the customer ref).
    Customer,
    /// A checkout session (id: `sbx_cs_…`).
    Checkout,
    /// A checkout's idempotency key → its session id.
    CheckoutKey,
    /// A payment-details session (id: `sbx_pd_…`).
    PaymentDetails,
    /// An off-session charge (id: `sbx_ch_…`).
    Charge,
    /// A charge's idempotency key → its charge id.
    ChargeKey,
    /// A refund (id: `sbx_re_…`).
    Refund,
    /// A refund's idempotency key → its refund id.
    RefundKey,
}

impl RecordKind {
    pub const ALL: [RecordKind; 8] = [
        RecordKind::Customer,
        RecordKind::Checkout,
        RecordKind::CheckoutKey,
        RecordKind::PaymentDetails,
        RecordKind::Charge,
        RecordKind::ChargeKey,
        RecordKind::Refund,
        RecordKind::RefundKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Customer => "customer",
            RecordKind::Checkout => "checkout",
            RecordKind::CheckoutKey => "checkout_key",
            RecordKind::PaymentDetails => "payment_details",
            RecordKind::Charge => "charge",
            RecordKind::ChargeKey => "charge_key",
            RecordKind::Refund => "refund",
            RecordKind::RefundKey => "refund_key",
        }
    }
}

/// A stored record and the version it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    pub value: Value,
    pub version: i64,
}

/// The store could not be read or written (the database is down, say). Nothing is known to
/// have changed; the caller may try again.
#[derive(Debug, thiserror::Error)]
#[error("sandbox store: {0}")]
pub struct StoreError(pub String);

/// Durable, shared storage for the sandbox's records.
#[async_trait]
pub trait SandboxStore: Send + Sync {
    async fn get(&self, kind: RecordKind, id: &str) -> Result<Option<Versioned>, StoreError>;
    /// Creates the record at version 1; `false` (and nothing changed) if one exists.
    async fn insert(&self, kind: RecordKind, id: &str, value: &Value) -> Result<bool, StoreError>;
    /// Replaces the record if it is still at `expected_version`, bumping the version by one;
    /// `false` (and nothing changed) if it moved on or does not exist.
    async fn update(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
        expected_version: i64,
    ) -> Result<bool, StoreError>;
    /// The records of one kind with these ids, by id (missing ones are absent): one read
    /// where the store can. The default reads them one by one.
    async fn get_many(
        &self,
        kind: RecordKind,
        ids: &[String],
    ) -> Result<HashMap<String, Versioned>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get(kind, id).await? {
                found.insert(id.clone(), r);
            }
        }
        Ok(found)
    }
    /// Creates each record at version 1 unless one with its id exists (that one is left
    /// alone), and returns the ids it created: one write where the store can. Each record is
    /// its own decision; the default inserts them one by one.
    async fn insert_many(
        &self,
        kind: RecordKind,
        records: &[(String, Value)],
    ) -> Result<HashSet<String>, StoreError> {
        let mut created = HashSet::with_capacity(records.len());
        for (id, value) in records {
            if self.insert(kind, id, value).await? {
                created.insert(id.clone());
            }
        }
        Ok(created)
    }
}

/// A [`SandboxStore`] in process memory: the same semantics as a database, but it forgets
/// everything when the process ends and is not shared with other processes. For tests and
/// one-off experiments only; the server gives the sandbox its database.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<(RecordKind, String), Versioned>>,
}

impl MemoryStore {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<(RecordKind, String), Versioned>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SandboxStore for MemoryStore {
    async fn get(&self, kind: RecordKind, id: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.records().get(&(kind, id.to_owned())).cloned())
    }

    async fn insert(&self, kind: RecordKind, id: &str, value: &Value) -> Result<bool, StoreError> {
        let mut records = self.records();
        let key = (kind, id.to_owned());
        if records.contains_key(&key) {
            return Ok(false);
        }
        records.insert(
            key,
            Versioned {
                value: value.clone(),
                version: 1,
            },
        );
        Ok(true)
    }

    async fn update(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        let mut records = self.records();
        match records.get_mut(&(kind, id.to_owned())) {
            Some(r) if r.version == expected_version => {
                r.value = value.clone();
                r.version += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn insert_once_and_update_only_from_the_version_read() {
        let s = MemoryStore::default();
        assert_eq!(s.get(RecordKind::Checkout, "a").await.unwrap(), None);
        assert!(
            s.insert(RecordKind::Checkout, "a", &json!(1))
                .await
                .unwrap()
        );
        assert!(
            !s.insert(RecordKind::Checkout, "a", &json!(2))
                .await
                .unwrap()
        );
        // Kinds are separate namespaces.
        assert!(s.insert(RecordKind::Charge, "a", &json!(3)).await.unwrap());
        let r = s.get(RecordKind::Checkout, "a").await.unwrap().unwrap();
        assert_eq!((r.value, r.version), (json!(1), 1));
        assert!(
            s.update(RecordKind::Checkout, "a", &json!(4), 1)
                .await
                .unwrap()
        );
        // A second writer that read version 1 loses.
        assert!(
            !s.update(RecordKind::Checkout, "a", &json!(5), 1)
                .await
                .unwrap()
        );
        assert!(
            !s.update(RecordKind::Checkout, "b", &json!(5), 1)
                .await
                .unwrap()
        );
        let r = s.get(RecordKind::Checkout, "a").await.unwrap().unwrap();
        assert_eq!((r.value, r.version), (json!(4), 2));
    }
}
