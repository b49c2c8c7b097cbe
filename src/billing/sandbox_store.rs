//! The sandbox provider's state in our database (table `sandbox_record`), so that a restart
//! or another replica on the same database serves the same checkout and payment-details
//! pages. The provider owns the documents; this only stores them, one compare-and-set per
//! change. Writes go through [`Db::write`], which on SQLite queues behind our other writers.

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
}

impl DbSandboxStore {
    async fn get_record(
        &self,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        let Some(row) =
            sandbox_record::Entity::find_by_id((kind.as_str().to_owned(), id.to_owned()))
                .one(self.db.conn())
                .await
                .map_err(failed)?
        else {
            return Ok(None);
        };
        let value = serde_json::from_str(&row.body)
            .map_err(|e| StoreError(format!("{} {id:?} is not JSON: {e}", kind.as_str())))?;
        Ok(Some(Versioned {
            value,
            version: row.version,
        }))
    }

    async fn insert_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
    ) -> Result<bool, StoreError> {
        let txn = self.db.write().await.map_err(failed)?;
        let inserted = sandbox_record::Entity::insert(sandbox_record::ActiveModel {
            kind: Set(kind.as_str().to_owned()),
            id: Set(id.to_owned()),
            body: Set(value.to_string()),
            version: Set(1),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&*txn)
        .await
        .map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(matches!(inserted, TryInsertResult::Inserted(n) if n > 0))
    }

    async fn update_record(
        &self,
        kind: RecordKind,
        id: &str,
        value: &Value,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        let txn = self.db.write().await.map_err(failed)?;
        let updated = sandbox_record::Entity::update_many()
            .col_expr(sandbox_record::Column::Body, Expr::value(value.to_string()))
            .col_expr(
                sandbox_record::Column::Version,
                Expr::value(expected_version + 1),
            )
            .filter(sandbox_record::Column::Kind.eq(kind.as_str()))
            .filter(sandbox_record::Column::Id.eq(id))
            .filter(sandbox_record::Column::Version.eq(expected_version))
            .exec(&*txn)
            .await
            .map_err(failed)?;
        txn.commit().await.map_err(failed)?;
        Ok(updated.rows_affected == 1)
    }
}
