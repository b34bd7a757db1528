//! The store: webhook deliveries, risk assessments, rollouts (with their audit trail and metric
//! history), held services, approval PRs and parked releases, one module each. Two backends
//! behind the one `Store`: an embedded SQLite database (rusqlite, bundled; the default, one
//! replica), or PostgreSQL (`pg`, selected by `store.url`; several replicas on one database).
//! Each method answers the same on both (`tests/it/store_contract.rs` runs one set of tests
//! against each); the SQLite code lives in the concept modules, PostgreSQL's in `pg`.
//! Created and migrated on open.
//!
//! SQLite writes go through one writer thread that commits in small groups: every caller still gets its
//! answer only after its row is durable (WAL, `synchronous=FULL`), but concurrent deliveries share
//! one fsync. Reads use their own connection so they never wait behind a commit.

pub mod approval_prs;
pub mod assessments;
pub mod holds;
pub mod maintenance;
pub mod parked;
pub mod pg;
pub mod rollouts;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deploybot_core::clock::Clock as _;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::lane::{Lane, Placement};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::adapters::clock::SystemClock;

/// One schema migration: SQL, or code for what SQL cannot do (rewriting stored JSON).
enum Migration {
    Sql(&'static str),
    Code(fn(&rusqlite::Transaction) -> Result<(), rusqlite::Error>),
}

/// Versioned schema migrations, applied in order, each in its own transaction;
/// `PRAGMA user_version` records the last one applied.
const MIGRATIONS: &[(&str, Migration)] = &[
    (
        "0001_deliveries",
        Migration::Sql(include_str!("migrations/0001_deliveries.sql")),
    ),
    (
        "0002_assessments",
        Migration::Sql(include_str!("migrations/0002_assessments.sql")),
    ),
    (
        "0003_rollouts",
        Migration::Sql(include_str!("migrations/0003_rollouts.sql")),
    ),
    (
        "0004_rollout_shell",
        Migration::Sql(include_str!("migrations/0004_rollout_shell.sql")),
    ),
    (
        "0005_rollout_metrics",
        Migration::Sql(include_str!("migrations/0005_rollout_metrics.sql")),
    ),
    (
        "0006_rollout_state",
        Migration::Code(rollouts::rewrite_format_1_records),
    ),
    (
        "0007_approval_pr_closed",
        Migration::Sql(include_str!("migrations/0007_approval_pr_closed.sql")),
    ),
    (
        "0008_delivery_lanes",
        Migration::Sql(include_str!("migrations/0008_delivery_lanes.sql")),
    ),
    (
        "0009_leases",
        Migration::Sql(include_str!("migrations/0009_leases.sql")),
    ),
];

/// What the store could not do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("opening the store at {target}: {message}")]
    OpenPostgres { target: String, message: String },
    /// PostgreSQL's message (never holding the password).
    #[error("store: {0}")]
    Postgres(String),
    /// PostgreSQL did not answer, or refused the connection.
    #[error("store: connecting to PostgreSQL: {0}")]
    Unreachable(String),
    /// What only the SQLite backend has (its file, its connection) was asked of PostgreSQL.
    #[error("store: {0} exists only in a SQLite store")]
    NotSqlite(&'static str),
    /// The database's message is part of this one, so it is not also the `source()`: an error
    /// chain (`{:#}`) would print it twice.
    #[error("store: {0}")]
    Sqlite(rusqlite::Error),
    #[error("store writer has stopped")]
    WriterGone,
    #[error(
        "store: {free} bytes free on the data volume, fewer than the {needed} one delivery may need"
    )]
    Full { free: u64, needed: u64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

/// The store's one classification: transient. A busy, locked or full database may clear, and
/// what was being stored is asked again (a webhook redelivered, an effect re-issued).
impl From<StoreError> for deploybot_core::failure::Failure {
    fn from(e: StoreError) -> Self {
        deploybot_core::failure::Failure::transient("", e.to_string())
    }
}

/// A delivery as received, before it is stored.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: String,
    pub payload: Vec<u8>,
    /// `ignored` rows are recorded for the audit trail but never queued.
    pub status: DeliveryStatus,
    pub detail: Option<String>,
    /// Its lane and ordering key (`deploybot_core::webhook::lane::place`).
    pub placement: Placement,
}

/// A delivery read back from the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub seq: i64,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: String,
    pub payload: Vec<u8>,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub detail: Option<String>,
}

/// A pending delivery without its payload: what the worker schedules from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    pub seq: i64,
    pub delivery_id: String,
    pub event: String,
    pub lane: Lane,
    pub key: String,
    pub attempts: i64,
    /// Unix milliseconds before which it must not be tried again (0: at once).
    pub not_before: i64,
    /// Size of the stored payload.
    pub bytes: usize,
}

/// The status of a delivery. `Failed` is the dead-letter state: a delivery that failed for good
/// (a permanent error, or its retries ran out) waits there, payload kept, until it is replayed
/// (`deploybot deliveries replay`) or pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Done,
    Ignored,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Ignored => "ignored",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DeliveryStatus {
        match s {
            "done" => DeliveryStatus::Done,
            "ignored" => DeliveryStatus::Ignored,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// Whether an insert stored a new delivery or found the id already there (a redelivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// What claiming one delivery before processing it came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This process holds it until it records the outcome (or its claim's lease runs out).
    Yes,
    /// Another replica holds it until `until` (Unix ms): its key waits, as behind a delivery
    /// in hand here.
    Elsewhere { until: i64 },
    /// No longer pending: another replica finished it.
    Gone,
}

/// The delivery queue port. The webhook intake and its worker need nothing more.
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Stores a delivery durably; returns once it is on disk.
    fn enqueue(
        &self,
        delivery: NewDelivery,
    ) -> impl std::future::Future<Output = Result<Inserted, StoreError>> + Send;
    /// The oldest pending deliveries without their payloads, at most `limit`.
    fn queued(&self, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError>;
    /// One delivery with its payload, by its queue position.
    fn load(&self, seq: i64) -> Result<Option<StoredDelivery>, StoreError>;
    /// Records the outcome of one processing attempt.
    fn finish(
        &self,
        delivery_id: &str,
        status: DeliveryStatus,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// Counts a failed attempt that will be retried no earlier than `not_before` (Unix
    /// milliseconds); returns the attempts made so far.
    fn record_attempt(
        &self,
        delivery_id: &str,
        detail: &str,
        not_before: i64,
    ) -> Result<i64, StoreError>;
    fn pending_count(&self) -> Result<u64, StoreError>;
    /// Claims one delivery for this process before it starts, so that replicas sharing the
    /// store never process it at once. A store only one process uses has nothing to claim
    /// against.
    fn claim_one(&self, _delivery_id: &str, _now: i64) -> Result<Claimed, StoreError> {
        Ok(Claimed::Yes)
    }
    /// The readiness probe: the store answers, takes a write, and has room for a delivery of
    /// `room` bytes.
    fn ready(&self, room: u64) -> Result<(), StoreError>;
}

type WriteJob = (NewDelivery, oneshot::Sender<Result<Inserted, StoreError>>);

/// The store, on either backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(Sqlite),
    Postgres(pg::Postgres),
}

/// Where a store is: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(pg::PgOptions),
}

impl Location {
    /// Where `spec` puts the store: the PostgreSQL database of `store.url`, with `password` read
    /// from `store.password_env`/`_file`, else the SQLite file under `store.data_dir`.
    pub fn of(spec: &deploybot_core::config::StoreSpec, password: Option<Secret>) -> Location {
        match &spec.postgres {
            Some(pg) => Location::Postgres(pg::PgOptions {
                url: pg.url.clone(),
                password,
                connections: pg::CONNECTIONS,
                replica: pg::host_name(),
                answer_within: pg::ANSWER_WITHIN,
            }),
            None => Location::Sqlite(spec.database_path()),
        }
    }
}

struct Sqlite {
    path: PathBuf,
    /// Connection for reads and small updates (queue bookkeeping).
    conn: Mutex<Connection>,
    writer: std::sync::mpsc::Sender<WriteJob>,
    /// Dropped with the store, which ends the checkpoint thread.
    _checkpoint: std::sync::mpsc::Sender<()>,
}

/// Bounds of the store's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The write-ahead log is checkpointed and truncated when it grows past this, even while
    /// writes never pause (a passive checkpoint alone can fall behind forever).
    pub wal_limit_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            wal_limit_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Opens a connection with the settings every connection must share.
fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before we answer; the 202 promise depends on it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // No checkpoint on the commit path: an automatic checkpoint copies pages and fsyncs the
    // database inside whichever commit crosses the threshold, a latency spike for the delivery
    // waiting on it. The checkpoint thread does it in the background instead.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// A connection that checkpoints: it also cuts the log's file back to `wal_limit` once a
/// checkpoint has reset it.
fn connect_checkpointer(path: &Path, options: StoreOptions) -> Result<Connection, rusqlite::Error> {
    let conn = connect(path)?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        i64::try_from(options.wal_limit_bytes).unwrap_or(i64::MAX),
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, (_name, migration)) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with bounds other than the defaults.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| open_err(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = connect(path).map_err(|e| open_err(e.to_string()))?;
        migrate(&mut conn).map_err(|e| open_err(format!("migrating: {e}")))?;
        let writer_conn =
            connect_checkpointer(path, options).map_err(|e| open_err(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let wal = maintenance::wal_path(path);
                move || writer_loop(writer_conn, rx, &wal, options)
            })
            .map_err(|e| open_err(format!("starting writer thread: {e}")))?;
        let checkpoint_conn =
            connect_checkpointer(path, options).map_err(|e| open_err(e.to_string()))?;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop_rx))
            .map_err(|e| open_err(format!("starting checkpoint thread: {e}")))?;
        Ok(Store {
            backend: Arc::new(Backend::Sqlite(Sqlite {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                writer: tx,
                _checkpoint: stop_tx,
            })),
        })
    }

    /// Connects to PostgreSQL and applies pending migrations (under an advisory lock, so
    /// replicas may start together).
    pub fn open_postgres(options: &pg::PgOptions) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Arc::new(Backend::Postgres(pg::Postgres::open(options)?)),
        })
    }

    /// Opens the store at `location`, on its backend.
    pub fn open_at(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(options) => Store::open_postgres(options),
        }
    }

    /// The PostgreSQL backend, when this store is on it: each method asks this first.
    pub(crate) fn pg(&self) -> Option<&pg::Postgres> {
        match &*self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    fn sqlite(&self) -> Result<&Sqlite, StoreError> {
        match &*self.backend {
            Backend::Sqlite(s) => Ok(s),
            Backend::Postgres(_) => Err(StoreError::NotSqlite("a database file")),
        }
    }

    /// The SQLite database file; empty for a PostgreSQL store, which has none.
    pub fn path(&self) -> &Path {
        match &*self.backend {
            Backend::Sqlite(s) => &s.path,
            Backend::Postgres(_) => Path::new(""),
        }
    }

    /// This process's name among the replicas sharing the store (PostgreSQL); a SQLite store
    /// has one process, and none.
    pub fn replica(&self) -> Option<&str> {
        self.pg().map(pg::Postgres::replica)
    }

    /// Where the store is, for messages: the file, or the database without its password.
    pub fn describe(&self) -> String {
        match &*self.backend {
            Backend::Sqlite(s) => s.path.display().to_string(),
            Backend::Postgres(p) => p.target().to_string(),
        }
    }

    /// Runs `f` with SQLite's read connection, for concepts that keep their own tables. Only a
    /// SQLite store has one (PostgreSQL's implementations are in `pg`).
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let conn = self
            .sqlite()?
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    /// One delivery by id.
    pub fn delivery(&self, delivery_id: &str) -> Result<Option<StoredDelivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::delivery(pg, delivery_id);
        }
        self.with_conn(|c| {
            c.query_row(
                &format!("{SELECT_DELIVERY} WHERE delivery_id = ?1"),
                [delivery_id],
                row_to_delivery,
            )
            .optional()
        })
    }

    /// Counts deliveries by status, for tests and the CLI.
    pub fn count_by_status(&self, status: DeliveryStatus) -> Result<u64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::count_by_status(pg, status);
        }
        self.with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM deliveries WHERE status = ?1",
                [status.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }
}

/// Claims: a delivery handed to one worker at a time, across replicas on PostgreSQL.
impl Store {
    /// Claims up to `limit` pending deliveries that are due and not under a live claim, oldest
    /// first, for `owner` until `now + lease` (Unix ms). A claim ends when the delivery is
    /// finished or its attempt recorded; one not ended within its lease is claimable again.
    pub fn claim(
        &self,
        owner: &str,
        limit: usize,
        now: i64,
        lease: i64,
    ) -> Result<Vec<QueuedDelivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::claim(pg, owner, limit, now, lease);
        }
        self.with_conn(|c| {
            // One statement: SQLite runs it alone, so no other writer sees a half-made claim.
            let mut stmt = c.prepare_cached(
                "UPDATE deliveries SET claimed_by = ?1, claimed_until = ?2 \
                 WHERE seq IN (SELECT seq FROM deliveries WHERE status = 'pending' \
                 AND not_before <= ?3 AND claimed_until <= ?3 ORDER BY seq LIMIT ?4) \
                 RETURNING seq, delivery_id, event, lane, lane_key, attempts, not_before, \
                 length(payload)",
            )?;
            let mut rows = stmt
                .query_map(
                    params![owner, now.saturating_add(lease), now, limit as i64],
                    row_to_queued,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|q| q.seq);
            Ok(rows)
        })
    }

    /// Gives back `owner`'s claim on a delivery before its lease ends; whether it held one.
    pub fn release_claim(&self, owner: &str, delivery_id: &str) -> Result<bool, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::release_claim(pg, owner, delivery_id);
        }
        self.with_conn(|c| {
            c.execute(
                "UPDATE deliveries SET claimed_by = NULL, claimed_until = 0 \
                 WHERE delivery_id = ?1 AND claimed_by = ?2",
                params![delivery_id, owner],
            )
            .map(|n| n == 1)
        })
    }
}

fn row_to_queued(r: &rusqlite::Row<'_>) -> Result<QueuedDelivery, rusqlite::Error> {
    Ok(QueuedDelivery {
        seq: r.get(0)?,
        delivery_id: r.get(1)?,
        event: r.get(2)?,
        lane: Lane::parse(&r.get::<_, String>(3)?),
        key: r.get(4)?,
        attempts: r.get(5)?,
        not_before: r.get(6)?,
        bytes: usize::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
    })
}

const SELECT_DELIVERY: &str = "SELECT seq, delivery_id, event, action, repository, received_at, \
     payload, status, attempts, detail FROM deliveries";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> Result<StoredDelivery, rusqlite::Error> {
    Ok(StoredDelivery {
        seq: r.get(0)?,
        delivery_id: r.get(1)?,
        event: r.get(2)?,
        action: r.get(3)?,
        repository: r.get(4)?,
        received_at: r.get(5)?,
        payload: r.get(6)?,
        status: DeliveryStatus::parse(&r.get::<_, String>(7)?),
        attempts: r.get(8)?,
        detail: r.get(9)?,
    })
}

/// Moves committed WAL pages into the database every second, off the commit path. PASSIVE never
/// blocks a writer; a busy moment only leaves the work for the next round (the writer thread
/// bounds the log's size, see `writer_loop`).
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(std::time::Duration::from_secs(1))
    {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "store: background checkpoint");
        }
    }
    // Last round on the way out, so a clean stop leaves a small WAL.
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// Group commit: take one job, then whatever else is already waiting (bounded), and commit them
/// in one transaction. Answers go out only after the commit returned.
///
/// The log is bounded here, between two commits: under writes that never pause, the background
/// PASSIVE checkpoint never sees the moment SQLite needs to start the log over, and a TRUNCATE
/// from another connection starves behind this one. So once the log is past its limit, this
/// thread (the only delivery writer) empties it itself; the passive rounds have already copied
/// most of it, so the pause is short.
fn writer_loop(
    mut conn: Connection,
    rx: std::sync::mpsc::Receiver<WriteJob>,
    wal: &Path,
    options: StoreOptions,
) {
    const MAX_GROUP: usize = 256;
    while let Ok(first) = rx.recv() {
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > options.wal_limit_bytes)
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "store: emptying the write-ahead log");
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<Vec<Inserted>, rusqlite::Error> {
            let tx = conn.transaction()?;
            let mut out = Vec::with_capacity(group.len());
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries \
                     (delivery_id, event, action, repository, received_at, payload, status, detail, \
                      lane, lane_key) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for (d, _) in &group {
                    let n = stmt.execute(params![
                        d.delivery_id,
                        d.event,
                        d.action,
                        d.repository,
                        d.received_at,
                        d.payload,
                        d.status.as_str(),
                        d.detail,
                        d.placement.lane.as_str(),
                        d.placement.key,
                    ])?;
                    out.push(if n == 1 {
                        Inserted::New
                    } else {
                        Inserted::Duplicate
                    });
                }
            }
            tx.commit()?;
            Ok(out)
        })();
        match result {
            Ok(outcomes) => {
                for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Sqlite(
                        rusqlite::Error::ToSqlConversionFailure(msg.clone().into()),
                    )));
                }
            }
        }
    }
}

impl DeliveryQueue for Store {
    async fn enqueue(&self, delivery: NewDelivery) -> Result<Inserted, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::enqueue(pg, delivery).await;
        }
        let (tx, rx) = oneshot::channel();
        self.sqlite()?
            .writer
            .send((delivery, tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    fn queued(&self, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::queued(pg, limit);
        }
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, delivery_id, event, lane, lane_key, attempts, not_before, \
                 length(payload) FROM deliveries WHERE status = 'pending' ORDER BY seq LIMIT ?1",
            )?;
            stmt.query_map([limit as i64], row_to_queued)?.collect()
        })
    }

    fn load(&self, seq: i64) -> Result<Option<StoredDelivery>, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::load(pg, seq);
        }
        self.with_conn(|c| {
            c.query_row(
                &format!("{SELECT_DELIVERY} WHERE seq = ?1"),
                [seq],
                row_to_delivery,
            )
            .optional()
        })
    }

    fn finish(
        &self,
        delivery_id: &str,
        status: DeliveryStatus,
        detail: &str,
    ) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::finish(pg, delivery_id, status, detail);
        }
        self.with_conn(|c| {
            c.execute(
                "UPDATE deliveries SET status = ?2, detail = ?3, attempts = attempts + 1, \
                 processed_at = ?4, claimed_by = NULL, claimed_until = 0 WHERE delivery_id = ?1",
                params![
                    delivery_id,
                    status.as_str(),
                    detail,
                    SystemClock.now().to_rfc3339()
                ],
            )
            .map(|_| ())
        })
    }

    fn record_attempt(
        &self,
        delivery_id: &str,
        detail: &str,
        not_before: i64,
    ) -> Result<i64, StoreError> {
        if let Some(pg) = self.pg() {
            return pg::queue::record_attempt(pg, delivery_id, detail, not_before);
        }
        self.with_conn(|c| {
            c.query_row(
                "UPDATE deliveries SET attempts = attempts + 1, detail = ?2, not_before = ?3, \
                 claimed_by = NULL, claimed_until = 0 WHERE delivery_id = ?1 RETURNING attempts",
                params![delivery_id, detail, not_before],
                |r| r.get(0),
            )
        })
    }

    fn pending_count(&self) -> Result<u64, StoreError> {
        self.count_by_status(DeliveryStatus::Pending)
    }

    /// On PostgreSQL, a claim with a lease (`pg::CLAIM_LEASE`); SQLite has one process.
    fn claim_one(&self, delivery_id: &str, now: i64) -> Result<Claimed, StoreError> {
        match self.pg() {
            Some(pg) => pg::queue::claim_one(pg, delivery_id, now),
            None => Ok(Claimed::Yes),
        }
    }

    fn ready(&self, room: u64) -> Result<(), StoreError> {
        self.probe_write()?;
        // PostgreSQL's volume is the database server's to watch: the probe's write is the proof.
        if self.pg().is_some() {
            return Ok(());
        }
        let free = maintenance::free_bytes(self.path())?;
        if free < room {
            return Err(StoreError::Full { free, needed: room });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> NewDelivery {
        NewDelivery {
            delivery_id: id.into(),
            event: "ping".into(),
            action: None,
            repository: Some("o/r".into()),
            received_at: "2026-01-01T00:00:00Z".into(),
            payload: b"{}".to_vec(),
            status: DeliveryStatus::Pending,
            detail: None,
            placement: Placement {
                lane: Lane::Work,
                key: format!("delivery:{id}"),
            },
        }
    }

    #[tokio::test]
    async fn enqueue_dedupes_by_delivery_id_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/deploybot.sqlite3");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.enqueue(delivery("a")).await.unwrap(), Inserted::New);
            assert_eq!(
                store.enqueue(delivery("a")).await.unwrap(),
                Inserted::Duplicate
            );
            assert_eq!(store.enqueue(delivery("b")).await.unwrap(), Inserted::New);
        }
        let store = Store::open(&path).unwrap();
        let pending = store.queued(10).unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|d| d.delivery_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(pending[0].key, "delivery:a");
        let a = store.load(pending[0].seq).unwrap().unwrap();
        assert_eq!(a.payload, b"{}");
        store.finish("a", DeliveryStatus::Done, "ok").unwrap();
        assert_eq!(store.pending_count().unwrap(), 1);
        assert_eq!(
            store.delivery("a").unwrap().unwrap().status,
            DeliveryStatus::Done
        );
    }

    #[tokio::test]
    async fn concurrent_enqueues_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut handles = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.enqueue(delivery(&format!("d{i}"))).await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap().unwrap(), Inserted::New);
        }
        assert_eq!(store.pending_count().unwrap(), 200);
    }
}
