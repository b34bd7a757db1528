//! The PostgreSQL backend of the store, for several replicas on one database (issue 16): the same
//! concepts as the SQLite backend, one submodule each (`queue`: deliveries, their claims and the
//! maintenance; `rollouts`: rollout records and their ownership leases; `records`: assessments,
//! holds, approval PRs, parked releases). Selected by `store.url`.
//!
//! The client is the blocking `postgres` crate, run on a few threads the store owns, each with its
//! own connection: a method sends its work to them and waits for the answer. So the store's
//! methods stay synchronous for every caller, as SQLite's are, and no caller ever enters the
//! client's private runtime from inside tokio (which panics). A connection that broke is opened
//! again for the next piece of work.
//!
//! Migrations (`migrations/postgres/*.sql`) are applied in one transaction under
//! `pg_advisory_xact_lock`, so replicas may start together: the first migrates, the others wait
//! for its commit and find nothing left to do.

pub mod queue;
pub mod records;
pub mod rollouts;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use deploybot_core::secret::Secret;

use super::StoreError;

/// The migrations, in order; `schema_migrations` records the ones applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_schema",
        include_str!("../migrations/postgres/0001_schema.sql"),
    ),
    (
        "0002_rollout_leases",
        include_str!("../migrations/postgres/0002_rollout_leases.sql"),
    ),
];

/// Connections (and threads) a replica holds open: enough for the webhook intake, the worker
/// and the driver to not wait on each other.
pub const CONNECTIONS: usize = 4;

/// How long a delivery claimed by the worker stays this replica's: a replica that died holding
/// it frees it after this. Processing takes seconds (every call it makes has a timeout); one
/// still running past this may be taken by another replica too, which processing tolerates (it
/// is idempotent, see `worker::Processor`), and the claim is not renewed yet.
pub const CLAIM_LEASE_MS: i64 = 5 * 60 * 1000;

/// The advisory lock key every replica migrates under ("deploybot" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x6465_706c_6f79_626f;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/database`; a password in it is used, and never printed.
    pub url: String,
    /// The password from `store.password_env` / `store.password_file`, over one in the URL.
    pub password: Option<Secret>,
    /// Connections (and threads) this replica holds open.
    pub connections: usize,
    /// This replica's name in claims: unique among the replicas, and the same after a restart
    /// of the process so that it takes back at once what it held (the host name: a pod's).
    pub replica: String,
    /// How long the webhook's write and the readiness probe wait for the database's answer
    /// before they fail ([`ANSWER_WITHIN`]).
    pub answer_within: Duration,
}

/// The webhook's write and the readiness probe fail after this without an answer, so the
/// webhook answers 503 well within GitHub's 10 s even when a connection hangs (a partition);
/// the write may still commit later, and GitHub's redelivery is then a duplicate.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The host's name, as a replica's name in claims.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what gethostname is given; it
    // NUL-terminates within it (or truncates, which the lossy read below tolerates).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match rc {
        0 if end > 0 => String::from_utf8_lossy(&buf[..end]).into_owned(),
        _ => "deploybot".to_string(),
    }
}

type Job = Box<dyn FnOnce(Result<&mut postgres::Client, StoreError>) + Send>;

/// A PostgreSQL store: the threads holding its connections.
pub struct Postgres {
    jobs: mpsc::Sender<Job>,
    /// Where it is, for messages: the URL without its password.
    target: String,
    /// Its name in claims.
    replica: String,
    answer_within: Duration,
}

/// `url` without user info, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => "(a PostgreSQL URL)".to_string(),
    }
}

/// The database's message. It never holds the password: neither the client nor the server
/// repeats it.
pub(crate) fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Postgres(describe(&e))
}

/// The client's own text is only "db error" for what the server said: the server's message is
/// what tells an operator what to fix.
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        };
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

pub(crate) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
}

pub(crate) fn is_foreign_key_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
}

impl Postgres {
    /// Connects and applies pending migrations; fails naming the database (never the password).
    pub fn open(options: &PgOptions) -> Result<Postgres, StoreError> {
        let target = redacted(&options.url);
        let open_err = |message: String| StoreError::OpenPostgres {
            target: target.clone(),
            message,
        };
        let mut config: postgres::Config = options.url.parse().map_err(|e: postgres::Error| {
            open_err(format!(
                "reading the URL: {e}; write it as postgres://user@host:5432/db"
            ))
        })?;
        if let Some(p) = &options.password {
            config.password(p.expose());
        }
        config
            .connect_timeout(Duration::from_secs(5))
            .application_name("deploybot");
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..options.connections.max(1) {
            let (config, rx) = (config.clone(), Arc::clone(&rx));
            std::thread::Builder::new()
                .name(format!("store-pg-{i}"))
                .spawn(move || connection_loop(&config, &rx))
                .map_err(|e| open_err(format!("starting a connection thread: {e}")))?;
        }
        let store = Postgres {
            jobs: tx,
            target: target.clone(),
            replica: options.replica.clone(),
            answer_within: options.answer_within,
        };
        store.run(migrate).map_err(|e| match e {
            StoreError::Unreachable(e) => open_err(format!("connecting: {e}")),
            e => open_err(format!("migrating: {e}")),
        })?;
        Ok(store)
    }

    /// This replica's name in claims.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The database, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on one of the store's connections and waits for its answer. Blocking, like a
    /// SQLite call: the work itself runs on the store's own threads.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Box::new(move |c| {
            let _ = tx.send(c.and_then(f));
        }))?;
        rx.recv().map_err(|_| StoreError::WriterGone)?
    }

    /// [`Postgres::run`], failing after `answer_within` without an answer (the work itself may
    /// still finish later).
    pub fn run_bounded<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Box::new(move |c| {
            let _ = tx.send(c.and_then(f));
        }))?;
        match rx.recv_timeout(self.answer_within) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.no_answer()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone),
        }
    }

    /// [`Postgres::run_bounded`] for async callers: waits without holding a runtime thread.
    pub async fn run_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |c| {
            let _ = tx.send(c.and_then(f));
        }))?;
        match tokio::time::timeout(self.answer_within, rx).await {
            Ok(answer) => answer.map_err(|_| StoreError::WriterGone)?,
            Err(_) => Err(self.no_answer()),
        }
    }

    fn no_answer(&self) -> StoreError {
        StoreError::Unreachable(format!(
            "no answer within {} ms",
            self.answer_within.as_millis()
        ))
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.jobs.send(job).map_err(|_| StoreError::WriterGone)
    }
}

/// One connection's thread: takes work until the store is dropped, connecting (again) when
/// there is no open connection. Work that finds the database unreachable gets the error.
fn connection_loop(config: &postgres::Config, jobs: &Mutex<mpsc::Receiver<Job>>) {
    let mut client: Option<postgres::Client> = None;
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if client.as_ref().is_none_or(postgres::Client::is_closed) {
            client = None;
            match config.connect(postgres::NoTls) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    job(Err(StoreError::Unreachable(describe(&e))));
                    continue;
                }
            }
        }
        if let Some(c) = client.as_mut() {
            job(Ok(c));
        }
    }
}

fn migrate(c: &mut postgres::Client) -> Result<(), StoreError> {
    let mut tx = c.transaction().map_err(pg_err)?;
    // Held until this transaction ends: a replica starting at the same moment waits here, then
    // sees every migration recorded.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .map_err(pg_err)?;
    let applied: Vec<String> = tx
        .query("SELECT name FROM schema_migrations", &[])
        .map_err(pg_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (name, sql) in MIGRATIONS {
        if applied.iter().any(|a| a == name) {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Postgres(format!("{name}: {e}")))?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .map_err(pg_err)?;
    }
    tx.commit().map_err(pg_err)
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_url_is_printed_without_its_user_and_password() {
        assert_eq!(
            redacted("postgres://bot:s3cret@db.internal:5432/deploybot"),
            "postgres://db.internal:5432/deploybot"
        );
        assert_eq!(
            redacted("postgresql://db:5432/x?sslmode=disable"),
            "postgresql://db:5432/x?sslmode=disable"
        );
        assert_eq!(redacted("host=db password=x"), "(a PostgreSQL URL)");
    }
}
