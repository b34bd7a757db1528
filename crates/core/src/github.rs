//! The GitHub port, split by role: reading a pull request ([`PullRequests`]), its conversation
//! ([`Comments`]), [`Labels`], the [`Checks`] of a commit, [`Approvals`] (reviews, permissions,
//! teams) and PR mode's writes on the GitOps repository ([`GitopsPullRequests`]), all in domain
//! types, plus the two idempotent operations built on them (the marked status comment, the risk
//! labels). Callers take the narrowest role they need; [`Github`] names all of them for the
//! shell structs that hand roles out.
//!
//! One octocrab adapter (`deploybot::adapters::github`) implements every role and classifies
//! every failure once into a [`Failure`]; nothing outside it sees octocrab, HTTP or raw JSON.
//! This module does not decide anything about risk.

use std::fmt;
use std::str::FromStr;

pub mod token;

use crate::failure::{Failure, PortFuture};
use crate::gitops::commit_message::PullRequestText;
use crate::risk::FileStatus;
use crate::rollout::approval::Review;
use crate::rollout::trigger::CheckRun;

/// `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    pub owner: String,
    pub name: String,
}

impl FromStr for RepoName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match s.split_once('/') {
            Some((o, n)) if valid(o) && valid(n) => Ok(RepoName {
                owner: o.into(),
                name: n.into(),
            }),
            _ => Err(format!("repository must be OWNER/NAME, got {s:?}")),
        }
    }
}

impl RepoName {
    /// Whether `other` names the same repository: GitHub compares owner and name ignoring case.
    pub fn same_repo(&self, other: &RepoName) -> bool {
        self.owner.eq_ignore_ascii_case(&other.owner) && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The parts of a pull request deploybot reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    pub labels: Vec<String>,
    pub head_sha: String,
    pub merged: bool,
    /// Set once merged (by deploybot or by a human); GitHub also fills it with a test merge
    /// commit while the PR is open, so it means "the merge" only when `merged`.
    pub merge_commit_sha: Option<String>,
    /// Who merged it, once merged.
    pub merged_by: Option<String>,
    /// Neither merged nor closed.
    pub open: bool,
    pub draft: bool,
    /// Files GitHub counts as changed (may exceed what the files API lists).
    pub changed_files: u64,
}

/// One changed file as the PR files API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFile {
    pub path: String,
    pub previous_path: Option<String>,
    pub status: FileStatus,
    pub additions: u32,
    pub deletions: u32,
    /// `None` when GitHub left the patch out (binary or too large).
    pub patch: Option<String>,
}

/// An issue comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub author: String,
    pub body: String,
}

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// A commit status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: StatusState,
    pub context: String,
    /// GitHub keeps at most 140 characters.
    pub description: String,
    pub target_url: Option<String>,
}

/// A user's permission on a repository, as GitHub's collaborator permission API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Not a collaborator (GitHub answers 404 or `none`).
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// Whether this permission can push, and so may approve and command rollouts.
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }

    /// GitHub's role or legacy permission name (`admin`, `maintain`, `write`, `triage`, `read`,
    /// `none`); anything else (custom roles) is unknown.
    pub fn from_github(name: &str) -> Option<Permission> {
        Some(match name.to_ascii_lowercase().as_str() {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            "none" => Permission::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Triage => "triage",
            Permission::Write => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }
}

/// A reaction GitHub allows on a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reaction {
    PlusOne,
    MinusOne,
    Laugh,
    Confused,
    Heart,
    Hooray,
    Rocket,
    Eyes,
}

impl Reaction {
    /// The `content` GitHub expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::PlusOne => "+1",
            Reaction::MinusOne => "-1",
            Reaction::Laugh => "laugh",
            Reaction::Confused => "confused",
            Reaction::Heart => "heart",
            Reaction::Hooray => "hooray",
            Reaction::Rocket => "rocket",
            Reaction::Eyes => "eyes",
        }
    }
}

/// A label and how to create it when the repository lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSpec {
    pub name: String,
    /// Hex colour without `#`.
    pub color: String,
    pub description: String,
}

/// A pull request from a bot branch in the GitOps repository, as PR mode needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotPullRequest {
    pub number: u64,
    pub url: String,
    /// Head branch name (without `owner:`).
    pub head: String,
    pub base: String,
}

/// How deploybot merges a pull request (`gitops.merge_method`), as GitHub's merge endpoint
/// names it. A repository that allows only some methods answers 405 to the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    /// A merge commit whose second parent is the PR's head.
    #[default]
    Merge,
    /// One new commit on the base with the PR's changes; the PR's own commits stay off it.
    Squash,
    /// The PR's commits replayed on the base, as new commits.
    Rebase,
}

impl MergeMethod {
    /// GitHub's name for it (`merge_method`).
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// What became of a merge at an expected head. The two refusals are answers, not failures: the
/// branch-protection flow asks again later, the rollout gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Merged; the merge commit's SHA.
    Merged(String),
    /// The head moved past the commit that was approved; GitHub's reason.
    HeadMoved(String),
    /// Not mergeable (conflicts, branch protection, already merged); GitHub's reason.
    NotMergeable(String),
}

/// Reading a pull request: what the risk assessment and the commands read.
pub trait PullRequests: Send + Sync {
    fn pull_request<'a>(&'a self, repo: &'a RepoName, number: u64) -> PortFuture<'a, PullRequest>;
    /// Every listed file (all pages; GitHub lists at most 3000).
    fn pull_request_files<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<PullFile>>;
    /// Commit messages, oldest first (all pages; GitHub lists at most 250).
    fn pull_request_commits<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<String>>;
}

/// The PR conversation: comments and reactions to them.
pub trait Comments: Send + Sync {
    /// Comments on the PR conversation (all pages).
    fn issue_comments<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<Comment>>;
    fn create_comment<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        body: &'a str,
    ) -> PortFuture<'a, Comment>;
    fn update_comment<'a>(
        &'a self,
        repo: &'a RepoName,
        comment_id: u64,
        body: &'a str,
    ) -> PortFuture<'a, Comment>;
    /// Reacts to an issue comment; reacting twice is not an error.
    fn add_reaction<'a>(
        &'a self,
        repo: &'a RepoName,
        comment_id: u64,
        content: Reaction,
    ) -> PortFuture<'a, ()>;
}

/// Labels on pull requests (the risk tiers, rollbacks, PR mode's labels).
pub trait Labels: Send + Sync {
    /// Creates the label in the repository unless it exists.
    fn ensure_label<'a>(&'a self, repo: &'a RepoName, label: &'a LabelSpec) -> PortFuture<'a, ()>;
    fn add_labels<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        labels: &'a [String],
    ) -> PortFuture<'a, ()>;
    /// Removes a label from the PR; a label that is not there is not an error.
    fn remove_label<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        label: &'a str,
    ) -> PortFuture<'a, ()>;
}

/// The checks of a commit: reading them (the release gate) and setting deploybot's statuses.
pub trait Checks: Send + Sync {
    fn set_commit_status<'a>(
        &'a self,
        repo: &'a RepoName,
        sha: &'a str,
        status: &'a CommitStatus,
    ) -> PortFuture<'a, ()>;
    /// The check runs on a commit (all pages; GitHub's latest run per name) followed by its
    /// commit statuses (the combined status: the latest per context), each status as a run
    /// named by its context: `pending` is `in_progress`, any other state a completed run
    /// concluding with it. Check-run and status ids are separate sequences, so a required
    /// name should be either a check or a status, not both.
    fn check_runs<'a>(&'a self, repo: &'a RepoName, sha: &'a str) -> PortFuture<'a, Vec<CheckRun>>;
}

/// Who approved, and whether they may: reviews, permissions and teams.
pub trait Approvals: Send + Sync {
    /// Every review on the PR (all pages), oldest first, as GitHub lists them.
    fn pull_request_reviews<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
    ) -> PortFuture<'a, Vec<Review>>;
    /// The user's permission on the repository; someone who is not a collaborator has
    /// [`Permission::None`] (not an error).
    fn collaborator_permission<'a>(
        &'a self,
        repo: &'a RepoName,
        login: &'a str,
    ) -> PortFuture<'a, Permission>;
    /// Logins of the team's members (all pages, child teams included, as GitHub lists them).
    fn team_members<'a>(&'a self, org: &'a str, team_slug: &'a str) -> PortFuture<'a, Vec<String>>;
}

/// PR mode's writes on the GitOps repository: the approval PR from a bot branch, found or
/// opened, merged once approved, and closed with its branch deleted when its rollout ends.
/// Labelling and commenting on it are [`Labels`] and [`Comments`].
pub trait GitopsPullRequests: Send + Sync {
    /// The open PR from `head` (a branch of the repository itself) into `base`, if any.
    fn find_open_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
    ) -> PortFuture<'a, Option<BotPullRequest>>;
    fn open_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
        text: &'a PullRequestText,
    ) -> PortFuture<'a, BotPullRequest>;
    /// The merge commit of a PR from `head` into `base` that was merged, if any (the newest):
    /// how a step whose PR was merged before a crash is recognised.
    fn merged_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        head: &'a str,
        base: &'a str,
    ) -> PortFuture<'a, Option<String>>;
    /// Merges the PR with `method` only if its head is still `expected_head_sha`. A moved head
    /// and an unmergeable PR are answers ([`Merge`]), not failures. The SHA of a merge is the
    /// commit now on the base: a merge commit, the squashed commit, or the last rebased one.
    fn merge_pull_request<'a>(
        &'a self,
        repo: &'a RepoName,
        number: u64,
        expected_head_sha: &'a str,
        method: MergeMethod,
    ) -> PortFuture<'a, Merge>;
    /// Closes the PR without merging it; closing a closed PR is not an error.
    fn close_pull_request<'a>(&'a self, repo: &'a RepoName, number: u64) -> PortFuture<'a, ()>;
    /// Deletes `branch` of the repository; a branch that is not there is not an error.
    fn delete_branch<'a>(&'a self, repo: &'a RepoName, branch: &'a str) -> PortFuture<'a, ()>;
}

/// Every role at once: what a shell struct that serves several callers holds, so that each
/// caller can be handed the narrow role it needs. It adds no method; the one GitHub adapter
/// has it by implementing each role.
pub trait Github:
    PullRequests + Comments + Labels + Checks + Approvals + GitopsPullRequests
{
}

impl<T> Github for T where
    T: PullRequests + Comments + Labels + Checks + Approvals + GitopsPullRequests + ?Sized
{
}

/// What happened to the status comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentAction {
    Created(u64),
    Updated(u64),
    Unchanged(u64),
}

impl CommentAction {
    pub fn id(self) -> u64 {
        match self {
            CommentAction::Created(id)
            | CommentAction::Updated(id)
            | CommentAction::Unchanged(id) => id,
        }
    }
}

/// Finds the comment carrying `marker` written by `bot_login` and edits it, or creates it. A
/// comment by anyone else that quotes the marker is ignored (it cannot be edited anyway, and
/// must not hijack the status).
pub async fn upsert_marked_comment<C: Comments + ?Sized>(
    gh: &C,
    repo: &RepoName,
    number: u64,
    marker: &str,
    bot_login: &str,
    body: &str,
) -> Result<CommentAction, Failure> {
    let comments = gh.issue_comments(repo, number).await?;
    let mine = comments
        .iter()
        .find(|c| c.author.eq_ignore_ascii_case(bot_login) && c.body.contains(marker));
    match mine {
        Some(c) if c.body == body => Ok(CommentAction::Unchanged(c.id)),
        Some(c) => Ok(CommentAction::Updated(
            gh.update_comment(repo, c.id, body).await?.id,
        )),
        None => Ok(CommentAction::Created(
            gh.create_comment(repo, number, body).await?.id,
        )),
    }
}

/// Makes the PR carry exactly the `desired` labels among those `managed` decides are ours,
/// creating missing labels first. Labels deploybot does not manage are left alone.
pub async fn sync_labels<L: Labels + ?Sized>(
    gh: &L,
    repo: &RepoName,
    number: u64,
    current: &[String],
    desired: &[LabelSpec],
    managed: impl Fn(&str) -> bool,
) -> Result<(), Failure> {
    for stale in current
        .iter()
        .filter(|l| managed(l) && !desired.iter().any(|d| d.name.eq_ignore_ascii_case(l)))
    {
        gh.remove_label(repo, number, stale).await?;
    }
    let missing: Vec<String> = desired
        .iter()
        .filter(|d| !current.iter().any(|c| c.eq_ignore_ascii_case(&d.name)))
        .map(|d| d.name.clone())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for d in desired.iter().filter(|d| missing.contains(&d.name)) {
        gh.ensure_label(repo, d).await?;
    }
    gh.add_labels(repo, number, &missing).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_parse_strictly() {
        let r: RepoName = "octo-org/hello.world".parse().unwrap();
        assert_eq!(r.to_string(), "octo-org/hello.world");
        for bad in ["", "a", "a/", "/b", "a/b/c", "a b/c", "a/../b"] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn permissions_order_and_write_access() {
        use Permission::*;
        for (name, p, write) in [
            ("admin", Admin, true),
            ("maintain", Maintain, true),
            ("write", Write, true),
            ("triage", Triage, false),
            ("read", Read, false),
            ("none", None, false),
            ("ADMIN", Admin, true),
        ] {
            assert_eq!(Permission::from_github(name), Some(p), "{name}");
            assert_eq!(p.can_write(), write, "{name}");
        }
        assert_eq!(Permission::from_github("custom-deployer"), Option::None);
        assert_eq!(Write.as_str(), "write");
    }
}
