//! The database handle: connection set-up per engine, a statement counter, and write
//! transactions that never trip over each other on SQLite.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::{Mutex, MutexGuard};

tokio::task_local! {
    /// The statements of the request being served, when it is counted
    /// (`BILLING_DEBUG_STATEMENTS`): see [`count_statements`].
    static REQUEST_STATEMENTS: Arc<Statements>;
    /// Set while a payment provider keeps its own records in our database (the sandbox):
    /// a real provider's are not our statements.
    static PROVIDER_RECORDS: ();
}

/// A request's SQL statements: ours, and those a provider ran to keep its own records.
#[derive(Default)]
pub struct Statements {
    pub ours: AtomicU64,
    pub provider: AtomicU64,
}

/// Runs `f` counting the SQL statements it runs (in its own task, and in the tasks its
/// DataLoaders spawn through [`spawn_counted`]) into `counter`.
pub async fn count_statements<F: std::future::Future>(counter: Arc<Statements>, f: F) -> F::Output {
    REQUEST_STATEMENTS.scope(counter, f).await
}

/// Runs `f`, a provider's own bookkeeping, counting its statements as the provider's.
pub async fn as_provider_records<F: std::future::Future>(f: F) -> F::Output {
    PROVIDER_RECORDS.scope((), f).await
}

/// `tokio::spawn`, keeping the caller's statement count (if any) in the new task.
pub fn spawn_counted<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match REQUEST_STATEMENTS.try_with(Arc::clone) {
        Ok(counter) => tokio::spawn(REQUEST_STATEMENTS.scope(counter, f)),
        Err(_) => tokio::spawn(f),
    }
}

/// A value per row for a multi-row update: `CASE WHEN id = a THEN x WHEN id = b THEN y …
/// END`, to pair with a filter on the same ids. `None` for no rows.
pub fn per_row<C: sea_orm::ColumnTrait>(
    id: C,
    values: impl IntoIterator<Item = (uuid::Uuid, sea_orm::sea_query::Expr)>,
) -> Option<sea_orm::sea_query::Expr> {
    let mut values = values.into_iter();
    let (first, value) = values.next()?;
    let mut case = sea_orm::sea_query::Expr::case(id.eq(first), value);
    for (row, value) in values {
        case = case.case(id.eq(row), value);
    }
    Some(case.into())
}

/// Rows after `(a, b)` in `(col_a, col_b)` order: a keyset cursor, as a row-value
/// comparison that both engines answer from an index ending in those columns.
pub fn after<A: sea_orm::ColumnTrait, B: sea_orm::ColumnTrait>(
    (col_a, a): (A, sea_orm::Value),
    (col_b, b): (B, sea_orm::Value),
) -> sea_orm::sea_query::Expr {
    use sea_orm::sea_query::{Expr, ExprTrait};
    Expr::tuple([col_a.into_expr(), col_b.into_expr()])
        .gt(Expr::tuple([Expr::value(a), Expr::value(b)]))
}

/// How often [`Db::run_checkpoints`] looks for new writes to copy into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// What a checkpoint found in SQLite's write-ahead log, in pages (frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// Frames in the log.
    pub logged: i64,
    /// Frames now copied into the database file.
    pub copied: i64,
}

/// Pages of a connection's cache before a write transaction spills dirty ones into the
/// log: 4,096 pages of 4 KiB.
const SPILL_AFTER_PAGES: &str = "4096";

#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    statements: Arc<AtomicU64>,
    /// SQLite has one writer at a time: serializing our own write transactions turns
    /// SQLITE_BUSY failures into an orderly queue.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds the process's writer slot.
pub struct WriteTxn<'a> {
    txn: DatabaseTransaction,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTxn<'_> {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl Deref for WriteTxn<'_> {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl Db {
    pub async fn connect(url: &str, pool: u32) -> Result<Self, DbErr> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(pool.max(1))
            .min_connections(1)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    // No commit copies the log back itself: see [`Db::run_checkpoints`].
                    .pragma("wal_autocheckpoint", "0")
                    // A transaction's dirty pages stay in memory up to 16 MiB before they
                    // spill into the log mid-transaction (and are read back from it): a
                    // 1,000-record usage batch dirties about 2,000 index pages, four times
                    // the 2 MiB cache. The cache shrinks back to its size at commit.
                    .pragma("cache_spill", SPILL_AFTER_PAGES)
            });
        if url.starts_with("sqlite:") {
            // A SQLite connection is a file on a thread of this process: a ping finds nothing
            // broken, and sqlx's ping on every acquire is one more round trip to that thread
            // per statement (it still pings on every release).
            opts.test_before_acquire(false);
        }
        let mut conn = Database::connect(opts).await?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            // Not counted (the usual case): one thread-local read.
            let _ = REQUEST_STATEMENTS.try_with(|c| {
                if PROVIDER_RECORDS.try_with(|_| ()).is_ok() {
                    c.provider.fetch_add(1, Ordering::Relaxed)
                } else {
                    c.ours.fetch_add(1, Ordering::Relaxed)
                }
            });
        });
        let write_lock = (conn.get_database_backend() == DatabaseBackend::Sqlite)
            .then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            conn,
            statements,
            write_lock,
        })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// SQL statements executed since start-up (reported at `/metrics`).
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The process's writer slot (SQLite; nothing on PostgreSQL), for a write that is one
    /// statement and needs no transaction of its own: it commits by itself, without the
    /// round trips of BEGIN and COMMIT.
    pub async fn writer_slot(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// SQLite: copies the write-ahead log into the database file, as far as no reader
    /// still needs it (a passive checkpoint: it waits for no reader and no writer). `None`
    /// on PostgreSQL, and for a database without a log (in memory).
    pub async fn checkpoint(&self) -> Result<Option<WalCheckpoint>, DbErr> {
        if self.backend() != DatabaseBackend::Sqlite {
            return Ok(None);
        }
        let row = self
            .conn
            .query_one_raw(sea_orm::Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA wal_checkpoint(PASSIVE)",
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let logged: i64 = row.try_get_by_index(1)?;
        let copied: i64 = row.try_get_by_index(2)?;
        Ok((logged >= 0).then_some(WalCheckpoint { logged, copied }))
    }

    /// SQLite: checkpoints every `every` while anything was written since the last one.
    ///
    /// SQLite's own checkpoint runs inside the commit that takes the log past 1,000
    /// pages: that request waited for the copy and two fsyncs (about 25 ms on the bench
    /// machine, once every ~35 small mutations: their p99). Connections are opened with
    /// `wal_autocheckpoint=0`, and this task does it off the request path instead, on a
    /// connection of the pool but outside the writer slot. (A connection of its own cost
    /// 2.5 MiB more memory at start-up.) Returns at once on PostgreSQL.
    pub async fn run_checkpoints(self, every: Duration) {
        if self.backend() != DatabaseBackend::Sqlite {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = None;
        loop {
            tick.tick().await;
            if seen == Some(self.statement_count()) {
                continue;
            }
            match self.checkpoint().await {
                // The checkpoint's own statement is not a write.
                Ok(_) => seen = Some(self.statement_count()),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    }

    /// A write transaction. On SQLite it holds the process's writer slot and begins
    /// `IMMEDIATE`: it takes SQLite's write lock at once, waiting (up to the busy timeout)
    /// for another process's writer. A deferred one would take it only at its first write,
    /// and a transaction that had read before another process committed would then fail
    /// at once with "database is locked" (the busy timeout does not apply to it).
    pub async fn write(&self) -> Result<WriteTxn<'_>, DbErr> {
        let Some(lock) = &self.write_lock else {
            let txn = self.conn.begin().await?;
            return Ok(WriteTxn { txn, _guard: None });
        };
        let guard = lock.lock().await;
        let txn = self
            .conn
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        Ok(WriteTxn {
            txn,
            _guard: Some(guard),
        })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::Db;

    /// `.cargo/config.toml` builds SQLite with the query planner stability guarantee: a
    /// bound LIMIT (every SeaORM `.one()`) must not make SQLite prepare the statement again
    /// on each execution.
    #[tokio::test]
    async fn sqlite_is_built_with_a_stable_query_plan() {
        let db = Db::connect("sqlite::memory:", 1).await.unwrap();
        let options: Vec<String> = db
            .conn()
            .query_all_raw(Statement::from_string(
                db.backend(),
                "PRAGMA compile_options",
            ))
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
    }

    /// No commit checkpoints the log by itself (that commit would wait for the copy and
    /// its fsyncs): the log keeps every page written until [`Db::checkpoint`], which
    /// copies them all when no reader holds them.
    #[tokio::test]
    async fn commits_leave_the_log_to_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("billing-wal-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("wal.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        let run = |sql: &str| {
            db.conn()
                .execute_raw(Statement::from_string(db.backend(), sql.to_owned()))
        };
        run("CREATE TABLE pages (body BLOB)").await.unwrap();
        // Four commits of 500 rows of 4,000 bytes: over 2,000 pages, twice the 1,000 at
        // which a commit would otherwise have checkpointed.
        for _ in 0..4 {
            run(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
                 INSERT INTO pages SELECT randomblob(4000) FROM n",
            )
            .await
            .unwrap();
        }
        let done = db.checkpoint().await.unwrap().expect("a WAL database");
        assert!(done.logged >= 2000, "{done:?}");
        assert_eq!(done.copied, done.logged, "{done:?}");
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A write transaction larger than the page cache (1,000 pages against its 500) keeps
    /// its dirty pages in memory until it commits: nothing reaches the log before, to be
    /// written again and read back from it.
    #[tokio::test]
    async fn a_transaction_keeps_its_pages_until_it_commits() {
        let dir = std::env::temp_dir().join(format!("billing-spill-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spill.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 2)
            .await
            .unwrap();
        let sql = |sql: &str| Statement::from_string(db.backend(), sql.to_owned());
        db.conn()
            .execute_raw(sql("CREATE TABLE pages (body BLOB)"))
            .await
            .unwrap();
        let log = path.with_extension("db-wal");
        let logged = || std::fs::metadata(&log).map_or(0, |m| m.len());
        let before = logged();
        let txn = db.write().await.unwrap();
        txn.execute_raw(sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
             INSERT INTO pages SELECT randomblob(4000) FROM n",
        ))
        .await
        .unwrap();
        let during = logged();
        txn.commit().await.unwrap();
        let after = logged();
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(during, before, "the transaction spilled into the log");
        assert!(after > before + 4_000_000, "{before} → {after}");
    }
}
