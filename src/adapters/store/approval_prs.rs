//! Approval pull requests (table `approval_prs`, migration `0004_rollout_shell.sql`): the PR in
//! the GitOps repository each gated rollout opened, found by rollout or by repository and number
//! when a review or a merge arrives.

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
            Some(pr)
        );
        assert_eq!(
            approval_pr_by_number(&store, "acme/gitops", 8).unwrap(),
            None
        );
    }
}
