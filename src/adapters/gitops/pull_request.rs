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
use deploybot_core::gitops::commit_message::{CommitInfo, PullRequestText, render_pull_request};
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

/// The one open PR from `branch` into `base`: the open one reused, else one opened with `text`
/// and `labels`. Whether it is new is the second value.
pub async fn open_or_reuse<G>(
    github: &G,
    repo: &RepoName,
    branch: &str,
    base: &str,
    text: &PullRequestText,
    labels: &[String],
) -> Result<(BotPullRequest, bool), Failure>
where
    G: GitopsPullRequests + Labels + ?Sized,
{
    if let Some(pr) = github.find_open_pull_request(repo, branch, base).await? {
        return Ok((pr, false));
    }
    let pr = github.open_pull_request(repo, branch, base, text).await?;
    if !labels.is_empty() {
        github.add_labels(repo, pr.number, labels).await?;
    }
    Ok((pr, true))
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
    match open_or_reuse(
        github,
        &req.repo,
        &req.branch,
        &req.base,
        &text,
        &req.labels,
    )
    .await?
    {
        (pr, true) => Ok(Proposal::Opened { pr, write }),
        (pr, false) => Ok(Proposal::Reused { pr, write }),
    }
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

/// PR mode's bot branch of one step, `<bot branch>-step-<weight>`: one PR per step, so each
/// step's merge is a commit of its own that Argo CD's wait and the revert can name. A sibling
/// of the approval PR's branch, never below it: git cannot hold both `a/b` and `a/b/c`.
pub fn step_branch(
    prefix: &str,
    service: &str,
    environment: &str,
    deploy_id: &str,
    weight: u8,
) -> String {
    format!(
        "{}-step-{weight}",
        bot_branch(prefix, service, environment, deploy_id)
    )
}

/// PR mode's bot branch of a revert, `<bot branch>-revert-<newest commit reverted>`: the same
/// revert keeps its branch across retries and restarts, a later revert of more commits gets
/// its own.
pub fn revert_branch(
    prefix: &str,
    service: &str,
    environment: &str,
    deploy_id: &str,
    newest: &str,
) -> String {
    let short: String = newest
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(10)
        .collect();
    format!(
        "{}-revert-{short}",
        bot_branch(prefix, service, environment, deploy_id)
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

    #[test]
    fn step_and_revert_branches_sit_beside_the_approval_branch() {
        let approval = bot_branch("deploybot", "checkout", "prod", "d-42");
        let step = step_branch("deploybot", "checkout", "prod", "d-42", 25);
        assert_eq!(step, "deploybot/checkout/prod/d-42-step-25");
        let revert = revert_branch("deploybot", "checkout", "prod", "d-42", "0123456789abcdef");
        assert_eq!(revert, "deploybot/checkout/prod/d-42-revert-0123456789");
        for b in [&step, &revert] {
            assert!(!b.starts_with(&format!("{approval}/")), "{b}");
            assert!(
                git2::Reference::is_valid_name(&format!("refs/heads/{b}")),
                "{b}"
            );
        }
    }
}
