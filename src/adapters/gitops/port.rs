//! The core's git port over the writer: [`Writer`] is a `GitopsRepo`, and [`Writers`] opens one
//! per repository URL on first use (the `GitopsRepos` the rollout runner holds). Errors leave as
//! the core's `Failure`, classified by `GitopsError`'s one classification.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use deploybot_core::failure::{Failure, PortFuture};
use deploybot_core::gitops::commit_message::CommitInfo;
use deploybot_core::gitops::edit::FileEdit;
use deploybot_core::gitops::repo::{BotWrite, GitopsRepo, GitopsRepos, WriteOutcome};
use deploybot_core::secret::SecretRef;

use crate::adapters::gitops::writer::{BranchLocks, Target, Writer};
use crate::adapters::gitops::{GitopsConfig, GitopsError};

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

    fn write_bot_branch<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> PortFuture<'a, BotWrite> {
        Box::pin(async move {
            let target = Target {
                branch: branch.to_string(),
                create_from: Some(base.to_string()),
                bot_owned: true,
            };
            match self.write_to(target, edits, info).await {
                Ok(w) => Ok(BotWrite::Written(w)),
                Err(GitopsError::HumanEdited { who, .. }) => Ok(BotWrite::HumanEdited { who }),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn tip<'a>(&'a self, branch: &'a str) -> PortFuture<'a, Option<String>> {
        Box::pin(async move { Ok(self.remote_tip(branch).await?.map(|t| t.commit)) })
    }
}

/// One writer per GitOps repository URL, shared by every rollout of the process (and their
/// branch locks with it).
pub struct Writers {
    config: GitopsConfig,
    data_dir: PathBuf,
    /// The token for `https://` remotes when `gitops.token_*` is unset (`github.token_*`), or
    /// why its reference is invalid (reported at the first write that needs it).
    fallback_token: Result<Option<SecretRef>, String>,
    locks: BranchLocks,
    open: Mutex<HashMap<String, Arc<Writer>>>,
}

impl Writers {
    /// Writers with `config`'s identity and retry settings, their clones under `data_dir`.
    pub fn new(
        config: GitopsConfig,
        data_dir: PathBuf,
        fallback_token: Result<Option<SecretRef>, String>,
    ) -> Writers {
        Writers {
            config,
            data_dir,
            fallback_token,
            locks: BranchLocks::default(),
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl GitopsRepos for Writers {
    fn repo(&self, url: &str) -> Result<Arc<dyn GitopsRepo>, Failure> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = open.get(url) {
            return Ok(w.clone());
        }
        let fallback = self.fallback_token.clone().map_err(Failure::refused)?;
        let w = Arc::new(self.config.writer(
            &self.data_dir,
            url,
            fallback.as_ref(),
            self.locks.clone(),
        )?);
        open.insert(url.to_string(), w.clone());
        Ok(w)
    }
}
