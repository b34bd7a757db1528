//! Parked releases (table `pending_releases`, migration `0004_rollout_shell.sql`): merged
//! changes waiting for their required checks, re-checked on CI events and by the reconcile.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::params;

use crate::adapters::store::{Store, StoreError};

/// A merged change waiting for its required checks.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRelease {
    pub release: deploybot_core::rollout::record::Release,
    pub gate: deploybot_core::rollout::admission::Gate,
    pub waiting: String,
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Records (or updates what it waits for) a release waiting for checks.
pub fn park_release(
    store: &Store,
    p: &PendingRelease,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::park_release(pg, p, now);
    }
    let sha = p.release.commit_sha.clone().unwrap_or_default();
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO pending_releases (service, commit_sha, release, gate, waiting, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (service, commit_sha) DO UPDATE SET waiting = excluded.waiting",
            params![
                p.release.service,
                sha,
                serde_json::to_string(&p.release).map_err(json_err)?,
                serde_json::to_string(&p.gate).map_err(json_err)?,
                p.waiting,
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ],
        )
        .map(drop)
    })
}

/// Every release still waiting, oldest first.
pub fn parked_releases(store: &Store) -> Result<Vec<PendingRelease>, StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::parked_releases(pg);
    }
    store.with_conn(|c| {
        let mut stmt = c.prepare(
            "SELECT release, gate, waiting FROM pending_releases ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            let release: String = r.get(0)?;
            let gate: String = r.get(1)?;
            Ok(PendingRelease {
                release: serde_json::from_str(&release).map_err(json_err)?,
                gate: serde_json::from_str(&gate).map_err(json_err)?,
                waiting: r.get(2)?,
            })
        })?;
        rows.collect()
    })
}

pub fn unpark_release(store: &Store, service: &str, commit_sha: &str) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::unpark_release(pg, service, commit_sha);
    }
    store.with_conn(|c| {
        c.execute(
            "DELETE FROM pending_releases WHERE service = ?1 AND commit_sha = ?2",
            params![service, commit_sha],
        )
        .map(drop)
    })
}
