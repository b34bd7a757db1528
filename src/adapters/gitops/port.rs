//! The core's git port over the writer: [`Writer`] is a `GitopsRepo`, and [`Writers`] opens one
//! per repository URL on first use (the `GitopsRepos` the rollout runner holds). Errors leave as
//! the core's `Failure`, classified by `GitopsError`'s one classification.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use deploybot_core::config::GitopsSpec;
use deploybot_core::failure::{Failure, PortFuture};
use deploybot_core::github::RepoName;
use deploybot_core::github::token::TokenSource;
use deploybot_core::gitops::commit_message::CommitInfo;
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::gitops::remote::RemoteUrl;
use deploybot_core::gitops::repo::{BotWrite, GitopsRepo, GitopsRepos, WriteOutcome};

use crate::adapters::gitops::GitopsError;
use crate::adapters::gitops::writer::{BranchLocks, Target, Writer, blocking, read_text};
use git2::Oid;

impl GitopsRepo for Writer {
    fn write<'a>(
        &'a self,
        branch: &'a str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> PortFuture<'a, WriteOutcome> {
        Box::pin(async move { Ok(Writer::write(self, branch, edits, info).await?) })
    }

    fn revert<'a>(
        &'a self,
        branch: &'a str,
        commit: &'a str,
        reason: &'a str,
    ) -> PortFuture<'a, WriteOutcome> {
        Box::pin(async move { Ok(Writer::revert(self, branch, commit, reason).await?) })
    }

    fn revert_list<'a>(
        &'a self,
        branch: &'a str,
        deploy_ids: &'a [String],
        listed: &'a [String],
    ) -> PortFuture<'a, Vec<String>> {
        Box::pin(async move { Ok(Writer::revert_list(self, branch, deploy_ids, listed).await?) })
    }

    fn revert_merge<'a>(
        &'a self,
        branch: &'a str,
        merge: &'a str,
        reason: &'a str,
    ) -> PortFuture<'a, WriteOutcome> {
        Box::pin(async move { Ok(Writer::revert_merge(self, branch, merge, reason).await?) })
    }

    fn write_bot_branch<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> PortFuture<'a, BotWrite> {
        Box::pin(
            async move { bot_write(self.write_to(bot_branch(branch, base), edits, info).await) },
        )
    }

    fn revert_on_bot_branch<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
        commit: &'a str,
        reason: &'a str,
        whole: bool,
    ) -> PortFuture<'a, BotWrite> {
        Box::pin(async move {
            bot_write(
                self.revert_to(bot_branch(branch, base), commit, reason, whole)
                    .await,
            )
        })
    }

    fn tip<'a>(&'a self, branch: &'a str) -> PortFuture<'a, Option<String>> {
        Box::pin(async move { Ok(self.remote_tip(branch).await?.map(|t| t.commit)) })
    }

    fn contains<'a>(
        &'a self,
        branch: &'a str,
        revision: &'a str,
        commit: &'a str,
    ) -> PortFuture<'a, bool> {
        let clone = self.clone_handle();
        let (branch, revision, commit) =
            (branch.to_string(), revision.to_string(), commit.to_string());
        Box::pin(async move {
            Ok(blocking(move || -> Result<bool, GitopsError> {
                let repo = clone.repository()?;
                clone.fetch(&repo, &branch)?;
                // Not an object id, or one this clone does not have: not a commit of the branch.
                let (Ok(revision), Ok(commit)) = (Oid::from_str(&revision), Oid::from_str(&commit))
                else {
                    return Ok(false);
                };
                if revision == commit {
                    return Ok(repo.find_commit(revision).is_ok());
                }
                if repo.find_commit(revision).is_err() || repo.find_commit(commit).is_err() {
                    return Ok(false);
                }
                repo.graph_descendant_of(revision, commit)
                    .map_err(GitopsError::git(format!(
                        "checking whether {revision} contains {commit}"
                    )))
            })
            .await?)
        })
    }

    fn read_file<'a>(
        &'a self,
        branch: &'a str,
        revision: &'a str,
        path: &'a str,
    ) -> PortFuture<'a, Option<String>> {
        let clone = self.clone_handle();
        let (branch, revision, path) = (branch.to_string(), revision.to_string(), path.to_string());
        Box::pin(async move {
            Ok(blocking(move || -> Result<Option<String>, GitopsError> {
                let repo = clone.repository()?;
                let doing = format!("reading {path} at {revision}");
                let oid = Oid::from_str(&revision).map_err(GitopsError::git(&doing))?;
                if repo.find_commit(oid).is_err() {
                    clone.fetch(&repo, &branch)?;
                }
                let tree = repo
                    .find_commit(oid)
                    .and_then(|c| c.tree())
                    .map_err(GitopsError::git(&doing))?;
                match read_text(&repo, &tree, &path, &revision, oid) {
                    Ok(text) => Ok(Some(text)),
                    Err(GitopsError::FileMissing { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?)
        })
    }
}

/// One writer per GitOps repository URL, shared by every rollout of the process (and their
/// branch locks with it).
pub struct Writers {
    gitops: GitopsSpec,
    data_dir: PathBuf,
    /// Where `https://` remotes get their token (`gitops.token_*`, else the GitHub App or
    /// `github.token_*`), asked for each fetch and push.
    token: Option<Arc<dyn TokenSource>>,
    /// Each remote's name on GitHub, by URL, when the config gives one (`github_repo`).
    github_names: HashMap<String, RepoName>,
    locks: BranchLocks,
    open: Mutex<HashMap<String, Arc<Writer>>>,
}

impl Writers {
    /// Writers with `gitops`' identity and retry settings, their clones under `data_dir`.
    pub fn new(
        gitops: GitopsSpec,
        data_dir: PathBuf,
        token: Option<Arc<dyn TokenSource>>,
    ) -> Writers {
        Writers {
            gitops,
            data_dir,
            token,
            github_names: HashMap::new(),
            locks: BranchLocks::default(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The repositories' names on GitHub by URL, which pick the App installation for a remote
    /// whose URL does not say (`http://mirror/gitops.git`).
    pub fn with_github_names(mut self, names: HashMap<String, RepoName>) -> Writers {
        self.github_names = names;
        self
    }
}

impl GitopsRepos for Writers {
    fn repo(&self, url: &RemoteUrl) -> Result<Arc<dyn GitopsRepo>, Failure> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = open.get(url.as_str()) {
            return Ok(w.clone());
        }
        let w = Arc::new(crate::adapters::gitops::writer(
            &self.gitops,
            &self.data_dir,
            url,
            self.token.as_ref(),
            self.github_names.get(url.as_str()),
            self.locks.clone(),
        )?);
        open.insert(url.as_str().to_string(), w.clone());
        Ok(w)
    }
}

/// A bot branch, created from `base` when missing, written only while its tip is the bot's.
fn bot_branch(branch: &str, base: &str) -> Target {
    Target {
        branch: branch.to_string(),
        create_from: Some(base.to_string()),
        bot_owned: true,
    }
}

/// A write to a bot branch in the port's terms: a person's commit on it is an answer, not an
/// error (the bot leaves the branch alone).
fn bot_write(result: Result<WriteOutcome, GitopsError>) -> Result<BotWrite, Failure> {
    match result {
        Ok(w) => Ok(BotWrite::Written(w)),
        Err(GitopsError::HumanEdited { who, .. }) => Ok(BotWrite::HumanEdited { who }),
        Err(e) => Err(e.into()),
    }
}
