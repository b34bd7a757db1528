//! PR mode: push the step to a deterministic bot branch and open (or reuse) a pull request
//! against the environment branch, through the small [`PullRequests`] port and its octocrab
//! adapter.
//!
//! A bot branch is the bot's only while the bot is the only one pushing to it: when its tip was
//! authored or committed by someone else, the bot labels the PR and stops (it never
//! force-pushes). The port speaks domain types; octocrab types stay in the adapter.

use std::future::Future;
use std::sync::Arc;

use octocrab::Octocrab;

use crate::adapters::gitops::GitopsError;
use crate::adapters::gitops::writer::{Target, WriteOutcome, Writer};
use deploybot_core::gitops::commit_message::{CommitInfo, PullRequestText, render_pull_request};
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::secret::Secret;

/// A pull request as PR mode needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    /// Head branch name (without `owner:`).
    pub head: String,
    pub base: String,
}

/// What PR mode asks of GitHub.
pub trait PullRequests: Send + Sync {
    /// The open PR from `head` (a branch of the repository itself) into `base`, if any.
    fn find_open(
        &self,
        head: &str,
        base: &str,
    ) -> impl Future<Output = Result<Option<PullRequest>, GitopsError>> + Send;
    fn create(
        &self,
        head: &str,
        base: &str,
        text: &PullRequestText,
    ) -> impl Future<Output = Result<PullRequest, GitopsError>> + Send;
    fn add_labels(
        &self,
        number: u64,
        labels: &[String],
    ) -> impl Future<Output = Result<(), GitopsError>> + Send;
}

/// [`PullRequests`] over the GitHub REST API (octocrab).
#[derive(Debug, Clone)]
pub struct OctocrabPullRequests {
    crab: Octocrab,
    owner: String,
    repo: String,
}

impl OctocrabPullRequests {
    /// `api_url` is `https://api.github.com`, a GHES `https://HOST/api/v3`, or a test fake.
    pub fn new(
        api_url: &str,
        token: &Secret,
        owner: &str,
        repo: &str,
    ) -> Result<OctocrabPullRequests, GitopsError> {
        let err = |e: octocrab::Error| GitopsError::GitHub {
            doing: format!("setting up the GitHub client for {api_url}"),
            message: e.to_string(),
        };
        let crab = Octocrab::builder()
            .base_uri(api_url)
            .map_err(err)?
            .personal_token(token.expose().to_string())
            .build()
            .map_err(err)?;
        Ok(OctocrabPullRequests {
            crab,
            owner: owner.to_string(),
            repo: repo.to_string(),
        })
    }

    fn github_error(&self, doing: String, e: octocrab::Error) -> GitopsError {
        let message = match &e {
            octocrab::Error::GitHub { source, .. } => {
                format!("GitHub answered {}: {}", source.status_code, source.message)
            }
            other => other.to_string(),
        };
        GitopsError::GitHub { doing, message }
    }
}

fn to_domain(pr: octocrab::models::pulls::PullRequest) -> PullRequest {
    PullRequest {
        number: pr.number,
        url: pr.html_url.map(|u| u.to_string()).unwrap_or_default(),
        head: pr.head.ref_field,
        base: pr.base.ref_field,
    }
}

impl PullRequests for OctocrabPullRequests {
    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, GitopsError> {
        let page = self
            .crab
            .pulls(&self.owner, &self.repo)
            .list()
            .state(octocrab::params::State::Open)
            .head(format!("{}:{head}", self.owner))
            .base(base)
            .per_page(100)
            .send()
            .await
            .map_err(|e| {
                self.github_error(
                    format!(
                        "listing open pull requests {}:{head} -> {base} in {}/{}",
                        self.owner, self.owner, self.repo
                    ),
                    e,
                )
            })?;
        // Filter again: the head filter silently matches nothing for a typo'd owner, and
        // a proxy or an old GHES may ignore it altogether.
        Ok(page
            .items
            .into_iter()
            .map(to_domain)
            .find(|pr| pr.head == head && pr.base == base))
    }

    async fn create(
        &self,
        head: &str,
        base: &str,
        text: &PullRequestText,
    ) -> Result<PullRequest, GitopsError> {
        self.crab
            .pulls(&self.owner, &self.repo)
            .create(text.title.clone(), head, base)
            .body(text.body.clone())
            .send()
            .await
            .map(to_domain)
            .map_err(|e| {
                self.github_error(
                    format!(
                        "opening a pull request {head} -> {base} in {}/{}",
                        self.owner, self.repo
                    ),
                    e,
                )
            })
    }

    async fn add_labels(&self, number: u64, labels: &[String]) -> Result<(), GitopsError> {
        self.crab
            .issues(&self.owner, &self.repo)
            .add_labels(number, labels)
            .await
            .map(|_| ())
            .map_err(|e| {
                self.github_error(
                    format!(
                        "labelling pull request #{number} in {}/{} with {}",
                        self.owner,
                        self.repo,
                        labels.join(", ")
                    ),
                    e,
                )
            })
    }
}

/// One step proposed as a pull request.
pub struct ProposeRequest {
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
        pr: PullRequest,
        write: WriteOutcome,
    },
    /// The open pull request for this branch was reused (the branch may have a new commit).
    Reused {
        pr: PullRequest,
        write: WriteOutcome,
    },
    /// A human pushed to the bot branch: labelled (when its PR is open) and left alone.
    HumanEdited {
        pr: Option<PullRequest>,
        branch: String,
        who: String,
    },
    /// The base already has the target values and there is no bot branch: nothing to propose.
    NothingToPropose { head: String },
}

/// Proposes a step: commit to the bot branch (created from `base` when missing, never
/// force-pushed) and make sure exactly one open PR from it into `base` exists.
pub async fn propose<P: PullRequests>(
    writer: &Writer,
    prs: &P,
    req: ProposeRequest,
) -> Result<Proposal, GitopsError> {
    let target = Target {
        branch: req.branch.clone(),
        create_from: Some(req.base.clone()),
        bot_owned: true,
    };
    let write = match writer.write_to(target, req.edits, req.info.clone()).await {
        Ok(w) => w,
        Err(GitopsError::HumanEdited { who, .. }) => {
            let pr = prs.find_open(&req.branch, &req.base).await?;
            if let Some(pr) = &pr {
                prs.add_labels(pr.number, std::slice::from_ref(&req.human_edited_label))
                    .await?;
            }
            tracing::warn!(branch = %req.branch, %who, "bot branch has a human commit; not updating it");
            return Ok(Proposal::HumanEdited {
                pr,
                branch: req.branch,
                who,
            });
        }
        Err(e) => return Err(e),
    };
    if let WriteOutcome::Unchanged { head } = &write
        && writer.remote_tip(&req.branch).await?.is_none()
    {
        return Ok(Proposal::NothingToPropose { head: head.clone() });
    }
    if let Some(pr) = prs.find_open(&req.branch, &req.base).await? {
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
    let pr = prs.create(&req.branch, &req.base, &text).await?;
    if !req.labels.is_empty() {
        prs.add_labels(pr.number, &req.labels).await?;
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
