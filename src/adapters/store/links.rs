//! What the rollout shell keeps beside the rollout records (tables of migration
//! `0004_rollout_shell.sql`): service holds, which stop a held service from being deployed again
//! until a human releases it, the approval pull request each gated rollout opened, and merged
//! changes waiting for their required checks.
//!
//! Plain reads and writes; what a hold means is decided by `rollout::pipeline`.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};

use crate::adapters::store::{Store, StoreError};
use deploybot_core::rollout::admission::HeldService;

/// An approval pull request in the GitOps repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPr {
    pub deploy_id: String,
    pub repo: String,
    pub number: u64,
    pub branch: String,
}

/// Holds `service` in `environment`; a second hold keeps the first one's reason.
pub fn hold(
    store: &Store,
    service: &str,
    environment: &str,
    deploy_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT OR IGNORE INTO service_holds (service, environment, deploy_id, reason, since) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                service,
                environment,
                deploy_id,
                reason,
                now.to_rfc3339_opts(SecondsFormat::Secs, true)
            ],
        )
        .map(drop)
    })
}

/// Releases the hold on `service` in `environment`; true when there was one.
pub fn release(store: &Store, service: &str, environment: &str) -> Result<bool, StoreError> {
    store.with_conn(|c| {
        c.execute(
            "DELETE FROM service_holds WHERE service = ?1 AND environment = ?2",
            params![service, environment],
        )
        .map(|n| n > 0)
    })
}

pub fn hold_of(
    store: &Store,
    service: &str,
    environment: &str,
) -> Result<Option<HeldService>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            "SELECT service, environment, deploy_id, reason, since FROM service_holds \
             WHERE service = ?1 AND environment = ?2",
            params![service, environment],
            |r| {
                Ok(HeldService {
                    service: r.get(0)?,
                    environment: r.get(1)?,
                    deploy_id: r.get(2)?,
                    reason: r.get(3)?,
                    since: r.get(4)?,
                })
            },
        )
        .optional()
    })
}

pub fn record_approval_pr(store: &Store, pr: &ApprovalPr) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT OR REPLACE INTO approval_prs (deploy_id, repo, number, branch) \
             VALUES (?1, ?2, ?3, ?4)",
            params![pr.deploy_id, pr.repo, pr.number as i64, pr.branch],
        )
        .map(drop)
    })
}

fn row_to_pr(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalPr> {
    Ok(ApprovalPr {
        deploy_id: r.get(0)?,
        repo: r.get(1)?,
        number: r.get::<_, i64>(2)? as u64,
        branch: r.get(3)?,
    })
}

pub fn approval_pr(store: &Store, deploy_id: &str) -> Result<Option<ApprovalPr>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            "SELECT deploy_id, repo, number, branch FROM approval_prs WHERE deploy_id = ?1",
            [deploy_id],
            row_to_pr,
        )
        .optional()
    })
}

/// The rollout whose approval PR is `repo#number`, if any (case-insensitive repository).
pub fn approval_pr_by_number(
    store: &Store,
    repo: &str,
    number: u64,
) -> Result<Option<ApprovalPr>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            "SELECT deploy_id, repo, number, branch FROM approval_prs \
             WHERE lower(repo) = lower(?1) AND number = ?2",
            params![repo, number as i64],
            row_to_pr,
        )
        .optional()
    })
}

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
    store.with_conn(|c| {
        c.execute(
            "DELETE FROM pending_releases WHERE service = ?1 AND commit_sha = ?2",
            params![service, commit_sha],
        )
        .map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_approval_prs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        assert_eq!(hold_of(&store, "checkout", "staging").unwrap(), None);
        hold(&store, "checkout", "staging", "d-1", "error rate", now).unwrap();
        hold(&store, "checkout", "staging", "d-2", "later", now).unwrap();
        let h = hold_of(&store, "checkout", "staging").unwrap().unwrap();
        assert_eq!(
            (h.deploy_id.as_str(), h.reason.as_str()),
            ("d-1", "error rate")
        );
        assert_eq!(hold_of(&store, "checkout", "production").unwrap(), None);
        assert!(release(&store, "checkout", "staging").unwrap());
        assert!(!release(&store, "checkout", "staging").unwrap());

        let pr = ApprovalPr {
            deploy_id: "d-1".into(),
            repo: "acme/gitops".into(),
            number: 7,
            branch: "deploybot/checkout/production/d-1".into(),
        };
        record_approval_pr(&store, &pr).unwrap();
        assert_eq!(approval_pr(&store, "d-1").unwrap(), Some(pr.clone()));
        assert_eq!(
            approval_pr_by_number(&store, "Acme/GitOps", 7).unwrap(),
            Some(pr)
        );
        assert_eq!(
            approval_pr_by_number(&store, "acme/gitops", 8).unwrap(),
            None
        );
    }
}
