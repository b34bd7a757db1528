//! The git port: what the shell asks of the GitOps repository Argo CD watches, in domain types
//! (branch names, commit SHAs as text, semantic edits, commit info). The git2 writer implements
//! it; no git2 type crosses it.
//!
//! Every write is idempotent (files already at their targets make no commit, a revert already
//! applied changes nothing), because the rollout driver re-issues what a record still owes
//! after a crash.

use super::remote::RemoteUrl;
use std::sync::Arc;

use super::commit_message::CommitInfo;
use super::edit::{FileChange, FileEdit};
use crate::failure::{Failure, PortFuture};

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new commit is on the remote branch.
    Committed {
        commit: String,
        parent: String,
        changes: Vec<FileChange>,
        /// 1 when the first push landed.
        attempts: u32,
    },
    /// The branch already had the target values; `head` is its tip.
    Unchanged { head: String },
}

impl WriteOutcome {
    /// The branch tip after the write.
    pub fn head(&self) -> &str {
        match self {
            WriteOutcome::Committed { commit, .. } => commit,
            WriteOutcome::Unchanged { head } => head,
        }
    }
}

/// What a write to a bot branch did: written, or left alone because its tip is someone else's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotWrite {
    Written(WriteOutcome),
    /// The tip was authored or committed by `who`, not the bot: the bot never builds on (or
    /// force-pushes over) a human's commit.
    HumanEdited {
        who: String,
    },
}

/// One GitOps repository.
pub trait GitopsRepo: Send + Sync {
    /// Applies `edits` to `branch` in one commit whose message (with its audit trailers) is
    /// rendered from `info`. Files already at their targets make no commit.
    fn write<'a>(
        &'a self,
        branch: &'a str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> PortFuture<'a, WriteOutcome>;
    /// Reverts `commit`, one of the bot's, on `branch`, saying why in `reason`. `Unchanged`
    /// when the branch already has the values from before it.
    fn revert<'a>(
        &'a self,
        branch: &'a str,
        commit: &'a str,
        reason: &'a str,
    ) -> PortFuture<'a, WriteOutcome>;
    /// The commits to revert on `branch` (read from the remote now), newest first as the branch
    /// has them: the bot's own commits whose `Deploy-Id` trailer is one of `deploy_ids` (its
    /// reverts left out), and the commits of `listed` (kept when not on the branch, where
    /// reverting them refuses, saying so). The branch is the record: a commit that landed but
    /// was never recorded is found too.
    fn revert_list<'a>(
        &'a self,
        branch: &'a str,
        deploy_ids: &'a [String],
        listed: &'a [String],
    ) -> PortFuture<'a, Vec<String>>;
    /// Reverts `merge`, a merge of a rollout's approval PR (at its approved head, or a person's
    /// that no approval covered), as a whole against its first parent, whoever wrote what it
    /// merged; `reason` says why. `Unchanged` when the branch already has the values from before
    /// it.
    fn revert_merge<'a>(
        &'a self,
        branch: &'a str,
        merge: &'a str,
        reason: &'a str,
    ) -> PortFuture<'a, WriteOutcome>;
    /// PR mode: [`GitopsRepo::write`] to the bot branch `branch`, created from `base` when
    /// missing, unless its tip is not the bot's.
    fn write_bot_branch<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> PortFuture<'a, BotWrite>;
    /// PR mode's revert: [`GitopsRepo::revert`] (with `whole`, [`GitopsRepo::revert_merge`])
    /// of `commit`, a commit of `base`, made on the bot branch `branch` (created from `base` when
    /// missing) unless its tip is not the bot's; the revert's PR lands it.
    fn revert_on_bot_branch<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
        commit: &'a str,
        reason: &'a str,
        whole: bool,
    ) -> PortFuture<'a, BotWrite>;
    /// The commit at the tip of `branch` on the remote, read now; `None` when there is no such
    /// branch.
    fn tip<'a>(&'a self, branch: &'a str) -> PortFuture<'a, Option<String>>;
    /// Whether `revision` is `commit` or a later commit containing it, with `branch` (the one
    /// Argo CD watches) fetched from the remote now. False when the repository does not have
    /// `revision` (a Helm chart version of a multi-source app, a commit of another branch).
    fn contains<'a>(
        &'a self,
        branch: &'a str,
        revision: &'a str,
        commit: &'a str,
    ) -> PortFuture<'a, bool>;
    /// The text of `path` at `revision`, a commit of `branch` (fetched from the remote when the
    /// local clone does not have the commit yet: a merge made on the server), `None` when the
    /// file is not there.
    fn read_file<'a>(
        &'a self,
        branch: &'a str,
        revision: &'a str,
        path: &'a str,
    ) -> PortFuture<'a, Option<String>>;
}

/// The GitOps repositories by URL (environments may name their own), opened on first use and
/// shared by every rollout.
pub trait GitopsRepos: Send + Sync {
    fn repo(&self, url: &RemoteUrl) -> Result<Arc<dyn GitopsRepo>, Failure>;
}
