//! Group commit of single `recordUsage` calls: the records of plain metered products that
//! arrive while one write is in progress are written together by the next one, in one
//! multi-row insert. Each call still gets its own answer (its record, the record its key
//! replays, or its own error); a lone call costs what it did alone. A call whose caller
//! hangs up while it waits is still written by the next turn (its key makes a retry safe).
//!
//! On SQLite one insert is written at a time, and each is a round trip to the
//! connection's thread and a commit: with many callers at once, the queue for the writer
//! was the limit, not the work.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use entity::usage_record;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::db::{Db, spawn_counted};
use super::error::{BillingError, BillingResult};
use super::usage::{NewUsage, Usage, insert_skipping_stored, same_or_reused, stored_under};

/// A record waiting for the next group write.
struct Pending {
    record: usage_record::Model,
    input: NewUsage,
    at: DateTime<Utc>,
    answer: oneshot::Sender<BillingResult<Usage>>,
}

/// The records waiting, and the turn to write them.
#[derive(Default)]
pub(crate) struct UsageIntake {
    waiting: Mutex<Vec<Pending>>,
    turn: tokio::sync::Mutex<()>,
}

impl UsageIntake {
    /// Writes `record` (of a plain metered product, checked) with whatever else is waiting,
    /// and answers it: the record, or the one its key already holds.
    pub(crate) async fn record(
        &self,
        db: &Db,
        record: usage_record::Model,
        input: NewUsage,
        at: DateTime<Utc>,
    ) -> BillingResult<Usage> {
        let (answer, mut answered) = oneshot::channel();
        self.queue().push(Pending {
            record,
            input,
            at,
            answer,
        });
        let turn = self.turn.lock().await;
        // The write before ours may have taken our record along.
        if let Ok(done) = answered.try_recv() {
            return done;
        }
        let group = std::mem::take(&mut *self.queue());
        // Empty when a turn whose caller hung up took our record: its task answers it.
        if !group.is_empty() {
            // The write runs in a task of its own, so that a caller who hangs up does not
            // cancel the others' records half-way; the turn passes once it is done.
            let db = db.clone();
            let write = spawn_counted(async move { write_group(&db, group).await });
            let _ = write.await;
        }
        drop(turn);
        answered.await.unwrap_or_else(|_| {
            Err(BillingError::Conflict(
                "the usage record's write was interrupted: send it again with its key".into(),
            ))
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One insert for the group (in the writer slot, committing by itself: it is one
/// statement), then one read of the keys it skipped; each record gets its answer. If the
/// insert fails, each record is written alone, so that each gets its own error.
async fn write_group(db: &Db, group: Vec<Pending>) {
    let inserted = {
        let _writer = db.writer_slot().await;
        insert_skipping_stored(db.conn(), group.iter().map(|p| p.record.clone()).collect()).await
    };
    let inserted = match inserted {
        Ok(ids) => ids,
        Err(_) if group.len() > 1 => {
            for p in group {
                Box::pin(write_group(db, vec![p])).await;
            }
            return;
        }
        Err(e) => {
            let _ = group
                .into_iter()
                .next()
                .map(|p| p.answer.send(Err(e.into())));
            return;
        }
    };
    let skipped: Vec<(Uuid, String)> = group
        .iter()
        .filter(|p| !inserted.contains(&p.record.id))
        .filter_map(|p| Some((p.record.subscription_id, p.input.idempotency_key.clone()?)))
        .collect();
    let stored = if skipped.is_empty() {
        Ok(HashMap::new())
    } else {
        stored_under(db.conn(), skipped).await
    };
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            // Each caller whose record is not known gets the error (as an internal one).
            let message = e.to_string();
            for p in group
                .into_iter()
                .filter(|p| !inserted.contains(&p.record.id))
            {
                let e = BillingError::Db(sea_orm::DbErr::Custom(message.clone()));
                let _ = p.answer.send(Err(e));
            }
            return;
        }
    };
    for p in group {
        let result = if inserted.contains(&p.record.id) {
            Ok(Usage::from(p.record))
        } else {
            // Skipped: its key holds a record (stored before, or earlier in this group).
            p.input
                .idempotency_key
                .as_ref()
                .and_then(|k| stored.get(&(p.record.subscription_id, k.clone())))
                .ok_or(BillingError::Db(sea_orm::DbErr::RecordNotInserted))
                .and_then(|existing| same_or_reused(existing.clone(), &p.input, p.at))
        };
        let _ = p.answer.send(result);
    }
}
