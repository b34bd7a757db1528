//! PR mode: push the step to a deterministic bot branch and open (or reuse) a pull request
//! against the environment branch, over the git port (`GitopsRepo`) and GitHub's
//! `GitopsPullRequests` and `Labels` roles; the one GitHub adapter serves them.
//!
//! A bot branch is the bot's only while the bot is the only one pushing to it: when its tip was
//! authored or committed by someone else, the bot labels the PR and stops (it never
//! force-pushes).

use std::sync::Arc;

use deploybot_core::failure::Failure;
use deploybot_core::github::{BotPullRequest, GitopsPullRequests, Labels, RepoName};
use deploybot_core::gitops::commit_message::{CommitInfo, render_pull_request};
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::gitops::repo::{BotWrite, GitopsRepo, WriteOutcome};

/// One step proposed as a pull request.
pub struct ProposeRequest {
    /// The GitOps repository on GitHub, where the PR is opened.
    pub repo: RepoName,
    /// The environment branch Argo CD watches (the PR's base).
    pub base: String,
    /// The bot branch (see [`bot_branch`]).
    pub branch: String,
    pub edits: Vec<Arc<dyn FileEdit>>,
    pub info: CommitInfo,
    /// Labels for a new PR.
    pub labels: Vec<String>,
    /// Label for a PR whose branch a human pushed to.
    pub human_edited_label: String,
}

/// What PR mode did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proposal {
    /// A new pull request.
    Opened {
        pr: BotPullRequest,
        write: WriteOutcome,
    },
    /// The open pull request for this branch was reused (the branch may have a new commit).
    Reused {
        pr: BotPullRequest,
        write: WriteOutcome,
    },
    /// A human pushed to the bot branch: labelled (when its PR is open) and left alone.
    HumanEdited {
        pr: Option<BotPullRequest>,
        branch: String,
        who: String,
    },
    /// The base already has the target values and there is no bot branch: nothing to propose.
    NothingToPropose { head: String },
}

/// Proposes a step: commit to the bot branch (created from `base` when missing, never
/// force-pushed) and make sure exactly one open PR from it into `base` exists.
pub async fn propose<R, G>(repo: &R, github: &G, req: ProposeRequest) -> Result<Proposal, Failure>
where
    R: GitopsRepo + ?Sized,
    G: GitopsPullRequests + Labels + ?Sized,
{
    let written = repo
        .write_bot_branch(&req.branch, &req.base, req.edits, req.info.clone())
        .await?;
    let write = match written {
        BotWrite::Written(w) => w,
        BotWrite::HumanEdited { who } => {
            let pr = github
                .find_open_pull_request(&req.repo, &req.branch, &req.base)
                .await?;
            if let Some(pr) = &pr {
                github
                    .add_labels(
                        &req.repo,
                        pr.number,
                        std::slice::from_ref(&req.human_edited_label),
                    )
                    .await?;
            }
            tracing::warn!(branch = %req.branch, %who, "bot branch has a human commit; not updating it");
            return Ok(Proposal::HumanEdited {
                pr,
                branch: req.branch,
                who,
            });
        }
    };
    if let WriteOutcome::Unchanged { head } = &write
        && repo.tip(&req.branch).await?.is_none()
    {
        return Ok(Proposal::NothingToPropose { head: head.clone() });
    }
    if let Some(pr) = github
        .find_open_pull_request(&req.repo, &req.branch, &req.base)
        .await?
    {
        return Ok(Proposal::Reused { pr, write });
    }
    let changes = match &write {
        WriteOutcome::Committed { changes, .. } => changes.clone(),
        WriteOutcome::Unchanged { .. } => Vec::new(),
    };
    let text = render_pull_request(
        &req.info,
        &changes,
        &req.branch,
        &req.base,
        &req.human_edited_label,
    );
    let pr = github
        .open_pull_request(&req.repo, &req.branch, &req.base, &text)
        .await?;
    if !req.labels.is_empty() {
        github.add_labels(&req.repo, pr.number, &req.labels).await?;
    }
    Ok(Proposal::Opened { pr, write })
}

/// The deterministic bot branch of a deploy step: `<prefix>/<service>/<env>/<deploy-id>`, each
/// part reduced to characters git accepts in a branch name.
pub fn bot_branch(prefix: &str, service: &str, environment: &str, deploy_id: &str) -> String {
    let clean = |s: &str| {
        let c: String = s
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.') {
                    ch
                } else {
                    '-'
                }
            })
            .collect();
        let c = c.replace("..", "-");
        let c = c.trim_matches(|ch| ch == '.' || ch == '-').to_string();
        let c = c.strip_suffix(".lock").map(str::to_string).unwrap_or(c);
        if c.is_empty() { "x".to_string() } else { c }
    };
    let prefix: Vec<String> = prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .map(clean)
        .collect();
    format!(
        "{}/{}/{}/{}",
        prefix.join("/"),
        clean(service),
        clean(environment),
        clean(deploy_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_branches_are_deterministic_and_valid() {
        let b = bot_branch("deploybot", "checkout", "prod", "d-42");
        assert_eq!(b, "deploybot/checkout/prod/d-42");
        assert_eq!(b, bot_branch("deploybot", "checkout", "prod", "d-42"));
        let odd = bot_branch("/bots/deploy/", "a b", "..x..", "id~1^2:.lock");
        assert!(
            git2::Reference::is_valid_name(&format!("refs/heads/{odd}")),
            "{odd}"
        );
        assert_eq!(odd, "bots/deploy/a-b/x/id-1-2-");
    }
}
