//! Counting the approvals on a pull request's head through GitHub's `Approvals` role: who
//! reviewed, who of them may approve (write access, or membership of an approving team), and
//! the core's `count_approvals` over it. Used for approval PRs in the GitOps repository
//! (`events`) and for the risk status of application pull requests (`assess`).

use std::collections::BTreeMap;

use deploybot_core::config::TeamName;
use deploybot_core::failure::Failure;
use deploybot_core::github::{Approvals, RepoName};
use deploybot_core::rollout::approval::{ApprovalOutcome, count_approvals};

/// Who must approve, and how many of them.
pub struct Approvers<'a> {
    /// Members approve without write access.
    pub teams: &'a [TeamName],
    /// Never counts: the author of the change.
    pub author: &'a str,
    pub required: usize,
}

/// Counts the approvals of pull request `number` of `repo` on `head_sha`.
pub async fn count_on_head<G: Approvals + ?Sized>(
    github: &G,
    repo: &RepoName,
    number: u64,
    head_sha: &str,
    who: &Approvers<'_>,
) -> Result<ApprovalOutcome, Failure> {
    let reviews = github.pull_request_reviews(repo, number).await?;
    let mut team_members = Vec::new();
    for t in who.teams {
        team_members.extend(github.team_members(&t.org, &t.slug).await?);
    }
    // Each reviewer's permission is asked once, however many reviews they left.
    let mut allowed: BTreeMap<String, bool> = BTreeMap::new();
    for r in &reviews {
        let login = r.reviewer.to_ascii_lowercase();
        if allowed.contains_key(&login) {
            continue;
        }
        let ok = team_members.iter().any(|m| m.eq_ignore_ascii_case(&login))
            || github
                .collaborator_permission(repo, &r.reviewer)
                .await?
                .can_write();
        allowed.insert(login, ok);
    }
    Ok(count_approvals(
        &reviews,
        head_sha,
        who.author,
        |reviewer| {
            allowed
                .get(&reviewer.to_ascii_lowercase())
                .copied()
                .unwrap_or(false)
        },
        who.required,
    ))
}
