//! The sandbox provider's state in our database (table `sandbox_record`), so that a restart
//! or another replica on the same database serves the same checkout and payment-details
//! pages. The provider owns the documents; this only stores them, one compare-and-set per
//! change. Every write is one statement under [`Db::writer_slot`], which on SQLite queues it
//! behind our other writers; batches are one read or one insert per few hundred records.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use entity::sandbox_record;
use providers::sandbox::{RecordKind, SandboxStore, StoreError, Versioned};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, Set, TryInsertResult};
use serde_json::Value;

use super::Db;
use super::db::as_provider_records;

pub struct DbSandboxStore {
    db: Db,
}

impl DbSandboxStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn failed(e: DbErr) -> StoreError {
    StoreError(e.to_string())
}

// Every statement here is the sandbox's own record keeping, counted as the provider's
// (a real provider keeps its records elsewhere).
#[async_trait]
impl SandboxStore for DbSandboxStore {
    async fn get(&self, kind: RecordKind, id: &str) -> Result<Option<Versioned>, StoreError> {
        as_provider_records(self.get_record(kind, id)).await
    }

    async fn insert(&self, kind: RecordKind, id: &str, value: &Value) -> Result<bool, StoreError> {
        as_provider_records(self.insert_record(kind, id, value)).await
    }

    async fn update(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        as_provider_records(self.update_record(kind, id, value, expected_version)).await
    }

    async fn get_many(
        &self,
        kind: RecordKind,
        ids: &[String],
    ) -> Result<HashMap<String, Versioned>, StoreError> {
        as_provider_records(self.get_records(kind, ids)).await
    }

    async fn insert_many(
        &self,
        kind: RecordKind,
        records: &[(String, Value)],
    ) -> Result<HashSet<String>, StoreError> {
        as_provider_records(self.insert_records(kind, records)).await
    }
}

/// Records per statement of a batch read or insert (four values a row: well within both
/// engines' limits on bound values).
const RECORDS_PER_STATEMENT: usize = 500;

fn versioned(kind: RecordKind, row: sandbox_record::Model) -> Result<Versioned, StoreError> {
    let value = serde_json::from_str(&row.body)
        .map_err(|e| StoreError(format!("{} {:?} is not JSON: {e}", kind.as_str(), row.id)))?;
    Ok(Versioned {
        value,
        version: row.version,
    })
}

fn new_row(kind: RecordKind, id: &str, value: &Value) -> sandbox_record::ActiveModel {
    sandbox_record::ActiveModel {
        kind: Set(kind.as_str().to_owned()),
        id: Set(id.to_owned()),
        body: Set(value.to_string()),
        version: Set(1),
    }
}

impl DbSandboxStore {
    async fn get_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        sandbox_record::Entity::find_by_id((kind.as_str().to_owned(), id.to_owned()))
            .one(self.db.conn())
            .await
            .map_err(failed)?
            .map(|row| versioned(kind, row))
            .transpose()
    }

    async fn get_records(
        &self,
        kind: RecordKind,
        ids: &[String],
    ) -> Result<HashMap<String, Versioned>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(RECORDS_PER_STATEMENT) {
            for row in sandbox_record::Entity::find()
                .filter(sandbox_record::Column::Kind.eq(kind.as_str()))
                .filter(sandbox_record::Column::Id.is_in(chunk.iter().map(String::as_str)))
                .all(self.db.conn())
                .await
                .map_err(failed)?
            {
                found.insert(row.id.clone(), versioned(kind, row)?);
            }
        }
        Ok(found)
    }

    async fn insert_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
    ) -> Result<bool, StoreError> {
        let _slot = self.db.writer_slot().await;
        let inserted = sandbox_record::Entity::insert(new_row(kind, id, value))
            .on_conflict_do_nothing()
            .exec_without_returning(self.db.conn())
            .await
            .map_err(failed)?;
        Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
    }

    async fn insert_records(
        &self,
        kind: RecordKind,
        records: &[(String, Value)],
    ) -> Result<HashSet<String>, StoreError> {
        let mut created = HashSet::with_capacity(records.len());
        let _slot = self.db.writer_slot().await;
        for chunk in records.chunks(RECORDS_PER_STATEMENT) {
            let inserted = sandbox_record::Entity::insert_many(
                chunk.iter().map(|(id, value)| new_row(kind, id, value)),
            )
            .on_conflict_do_nothing()
            .exec_with_returning_keys(self.db.conn())
            .await
            .map_err(failed)?;
            if let TryInsertResult::Inserted(keys) = inserted {
                created.extend(keys.into_iter().map(|(_, id)| id));
            }
        }
        Ok(created)
    }

    async fn update_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        let _slot = self.db.writer_slot().await;
        let updated = sandbox_record::Entity::update_many()
            .col_expr(sandbox_record::Column::Body, Expr::value(value.to_string()))
            .col_expr(
                sandbox_record::Column::Version,
                Expr::value(expected_version + 1),
            )
            .filter(sandbox_record::Column::Kind.eq(kind.as_str()))
            .filter(sandbox_record::Column::Id.eq(id))
            .filter(sandbox_record::Column::Version.eq(expected_version))
            .exec(self.db.conn())
            .await
            .map_err(failed)?;
        Ok(updated.rows_affected == 1)
    }
}
