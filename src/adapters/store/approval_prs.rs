//! Approval pull requests (table `approval_prs`, migrations `0004_rollout_shell.sql` and
//! `0007_approval_pr_closed.sql`): the PR in the GitOps repository each gated rollout opened,
//! found by rollout or by repository and number when a review or a merge arrives, and whether
//! it was closed (its branch deleted) once its rollout ended.

use rusqlite::{OptionalExtension, params};

use crate::adapters::store::{Store, StoreError};

/// An approval pull request in the GitOps repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPr {
    pub deploy_id: String,
    pub repo: String,
    pub number: u64,
    pub branch: String,
}

/// Records (or replaces) the approval PR of a rollout, as not closed.
pub fn record_approval_pr(store: &Store, pr: &ApprovalPr) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::record_approval_pr(pg, pr);
    }
    store.with_conn(|c| {
        c.execute(
            "INSERT OR REPLACE INTO approval_prs (deploy_id, repo, number, branch, closed_at) \
             VALUES (?1, ?2, ?3, ?4, NULL)",
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
    if let Some(pg) = store.pg() {
        return super::pg::records::approval_pr(pg, deploy_id);
    }
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
    if let Some(pg) = store.pg() {
        return super::pg::records::approval_pr_by_number(pg, repo, number);
    }
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

/// Records that the approval PR of `deploy_id` is closed and its branch deleted.
pub fn mark_closed(
    store: &Store,
    deploy_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::mark_closed(pg, deploy_id, at);
    }
    store.with_conn(|c| {
        c.execute(
            "UPDATE approval_prs SET closed_at = ?2 WHERE deploy_id = ?1",
            params![deploy_id, at.to_rfc3339()],
        )
        .map(drop)
    })
}

/// Every approval PR not yet closed, oldest rollout first: the reconcile closes those whose
/// rollout ended.
pub fn unclosed(store: &Store) -> Result<Vec<ApprovalPr>, StoreError> {
    if let Some(pg) = store.pg() {
        return super::pg::records::unclosed(pg);
    }
    store.with_conn(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT deploy_id, repo, number, branch FROM approval_prs \
             WHERE closed_at IS NULL ORDER BY rowid",
        )?;
        stmt.query_map([], row_to_pr)?.collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_prs_round_trip_by_rollout_and_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
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
            Some(pr.clone())
        );
        assert_eq!(
            approval_pr_by_number(&store, "acme/gitops", 8).unwrap(),
            None
        );
        assert_eq!(unclosed(&store).unwrap(), vec![pr.clone()]);
        mark_closed(&store, "d-1", chrono::DateTime::UNIX_EPOCH).unwrap();
        assert!(unclosed(&store).unwrap().is_empty());
        // A new approval PR of the rollout (reopened after an unapproved merge) is open again.
        record_approval_pr(
            &store,
            &ApprovalPr {
                number: 9,
                ..pr.clone()
            },
        )
        .unwrap();
        assert_eq!(unclosed(&store).unwrap().len(), 1);
    }
}
