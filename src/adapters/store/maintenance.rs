//! Keeping the store bounded and honest about itself: retention of finished deliveries and their
//! payloads (`prune`, hourly in `serve` and by `deploybot store prune`), the dead-letter state
//! (failed deliveries listed and replayed), the readiness probe (a real write, and room on the
//! volume for one more delivery) and the sizes of its files.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{DeliveryStatus, Store, StoreError};
use deploybot_core::config::Retention;

/// SQLite's write-ahead log next to the database `db`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| {
        StoreError::Open {
            path: dir.to_path_buf(),
            message: "the path holds a NUL byte".into(),
        }
    })?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_dir` is a NUL-terminated path and `stat` is written by statvfs before it is
    // read; nothing else holds either.
    let rc = unsafe { libc::statvfs(c_dir.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(StoreError::Open {
            path: dir.to_path_buf(),
            message: format!(
                "reading the free space: {}",
                std::io::Error::last_os_error()
            ),
        });
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion)] // the field widths differ between platforms
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Payloads of deliveries processed successfully, emptied (the rows stay).
    pub payloads: u64,
    /// Ignored deliveries deleted.
    pub ignored: u64,
    /// Processed (done or failed) deliveries deleted.
    pub deliveries: u64,
}

/// A delivery in the dead-letter state, as `deploybot deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub received_at: String,
    pub attempts: i64,
    pub detail: Option<String>,
    /// Size of the stored payload; 0 once pruned (it can then not be replayed).
    pub bytes: u64,
}

/// What replaying a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Back in the queue, its attempts reset.
    Requeued,
    /// No delivery has this id.
    Unknown,
    /// Only failed deliveries are replayed; this one is pending, done or ignored.
    NotFailed(DeliveryStatus),
    /// Its payload was pruned: nothing is left to process.
    NoPayload,
}

/// The sizes of the store's files, for the soak benchmark and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub database: u64,
    pub wal: u64,
}

impl Store {
    /// Deletes and empties what `retention` no longer keeps, counted from `now`. Pending
    /// deliveries are never touched; a failed one keeps its payload until its row goes.
    pub fn prune(&self, now: DateTime<Utc>, retention: &Retention) -> Result<Pruned, StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::queue::prune(pg, now, retention);
        }
        let before = |d: deploybot_core::duration::PromDuration| {
            let age =
                chrono::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            (now - age).to_rfc3339()
        };
        self.with_conn(|c| {
            let ignored = c.execute(
                "DELETE FROM deliveries WHERE status = 'ignored' AND received_at < ?1",
                [before(retention.ignored)],
            )?;
            let deliveries = c.execute(
                "DELETE FROM deliveries WHERE status IN ('done', 'failed') AND received_at < ?1",
                [before(retention.deliveries)],
            )?;
            let payloads = c.execute(
                "UPDATE deliveries SET payload = X'' \
                 WHERE status = 'done' AND received_at < ?1 AND length(payload) > 0",
                [before(retention.payloads)],
            )?;
            Ok(Pruned {
                payloads: payloads as u64,
                ignored: ignored as u64,
                deliveries: deliveries as u64,
            })
        })
    }

    /// Failed deliveries, oldest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::queue::dead_letters(pg, limit);
        }
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT delivery_id, event, action, repository, received_at, attempts, detail, \
                 length(payload) FROM deliveries WHERE status = 'failed' ORDER BY seq LIMIT ?1",
            )?;
            stmt.query_map([limit as i64], |r| {
                Ok(DeadLetter {
                    delivery_id: r.get(0)?,
                    event: r.get(1)?,
                    action: r.get(2)?,
                    repository: r.get(3)?,
                    received_at: r.get(4)?,
                    attempts: r.get(5)?,
                    detail: r.get(6)?,
                    bytes: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                })
            })?
            .collect()
        })
    }

    /// Puts a failed delivery back in the queue, as if it had just arrived (its place in the
    /// queue and its ordering key stay; its attempts start again).
    pub fn replay(&self, delivery_id: &str) -> Result<Replay, StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::queue::replay(pg, delivery_id);
        }
        self.with_conn(|c| {
            let row: Option<(String, i64)> = c
                .query_row(
                    "SELECT status, length(payload) FROM deliveries WHERE delivery_id = ?1",
                    [delivery_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((status, bytes)) = row else {
                return Ok(Replay::Unknown);
            };
            let status = DeliveryStatus::parse(&status);
            if status != DeliveryStatus::Failed {
                return Ok(Replay::NotFailed(status));
            }
            if bytes == 0 {
                return Ok(Replay::NoPayload);
            }
            c.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, not_before = 0, \
                 detail = 'replayed', processed_at = NULL, claimed_by = NULL, claimed_until = 0 \
                 WHERE delivery_id = ?1 AND status = 'failed'",
                [delivery_id],
            )?;
            Ok(Replay::Requeued)
        })
    }

    /// A real write, the smallest the store can make: the readiness probe's proof that the
    /// volume still takes writes.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        if let Some(pg) = self.pg() {
            return super::pg::queue::probe_write(pg);
        }
        let now = crate::adapters::clock::SystemClock;
        let at = deploybot_core::clock::Clock::now(&now).to_rfc3339();
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO store_health (id, checked_at) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                params![at],
            )
            .map(|_| ())
        })
    }

    /// The database file and its write-ahead log, in bytes (PostgreSQL: the database's size).
    pub fn sizes(&self) -> Sizes {
        if let Some(pg) = self.pg() {
            return super::pg::queue::sizes(pg);
        }
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Sizes {
            database: len(self.path()),
            wal: len(&wal_path(self.path())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_from_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(&dir.path().join("s.db")).unwrap();
        assert!(free > 0);
        assert!(free_bytes(Path::new("/nonexistent-dir-deploybot/s.db")).is_err());
    }
}
