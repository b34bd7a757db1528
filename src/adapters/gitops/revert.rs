//! Reverting one of the bot's commits: a new commit that restores the previous values, made
//! with libgit2's in-memory revert (`revert_commit` on the current tip, no working tree), so
//! unrelated commits that landed since are kept. Also which commits a rollback reverts, read
//! from the branch (`revert_list`), and the revert of a merge of a rollout's approval PR as a
//! whole (`revert_merge`): approved or not, what it merged may include a person's commits.
//!
//! It refuses, rather than guesses, when a later commit changed the same lines (the three-way
//! revert conflicts), when the commit is not the bot's (except such a merge), not on the branch,
//! or a merge of more than two parents.

use std::collections::BTreeSet;

use git2::{Commit, Oid, Repository, Sort};

use crate::adapters::gitops::GitopsError;
use crate::adapters::gitops::writer::{
    CommitPlan, Identity, Planner, Target, WriteOutcome, Writer,
};
use deploybot_core::gitops::commit_message::render_revert;

/// At most this many commits are read back from a branch tip when listing what a rollback
/// reverts: a rollout's commits are recent, and the walk stays bounded on a long history.
const REVERT_WALK_LIMIT: usize = 10_000;

impl Writer {
    /// The commits to revert on `branch` (fetched now), newest first as the branch has them:
    /// the bot's own commits (by its email) whose `Deploy-Id` trailer is one of `deploy_ids`,
    /// its reverts left out, and the commits of `listed`; those of `listed` that are not on the
    /// branch come last, so that reverting them refuses, saying so.
    pub async fn revert_list(
        &self,
        branch: &str,
        deploy_ids: &[String],
        listed: &[String],
    ) -> Result<Vec<String>, GitopsError> {
        let clone = self.clone_handle();
        let email = self.identity().email.clone();
        let branch = branch.to_string();
        let ids = deploy_ids.to_vec();
        let listed = listed.to_vec();
        crate::adapters::gitops::writer::blocking(move || {
            let repo = clone.repository()?;
            let mut out: Vec<String> = Vec::new();
            if let Some(tip) = clone.fetch(&repo, &branch)? {
                let doing = format!("listing the commits to revert on {branch}");
                let mut walk = repo.revwalk().map_err(GitopsError::git(&doing))?;
                walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
                    .map_err(GitopsError::git(&doing))?;
                walk.push(tip).map_err(GitopsError::git(&doing))?;
                for oid in walk.take(REVERT_WALK_LIMIT) {
                    let oid = oid.map_err(GitopsError::git(&doing))?;
                    let sha = oid.to_string();
                    let c = repo.find_commit(oid).map_err(GitopsError::git(&doing))?;
                    if listed.contains(&sha) || is_step_of(&c, &email, &ids) {
                        out.push(sha);
                    }
                }
            }
            for sha in listed.iter().rev() {
                if !out.contains(sha) {
                    out.push(sha.clone());
                }
            }
            Ok(out)
        })
        .await
    }

    /// Reverts `merge`, a merge of a rollout's approval PR, as a whole against its first parent
    /// (`git revert -m 1`), whoever wrote what it merged.
    pub async fn revert_merge(
        &self,
        branch: &str,
        merge: &str,
        reason: &str,
    ) -> Result<WriteOutcome, GitopsError> {
        self.revert_as(branch, merge, reason, true).await
    }

    /// Reverts `commit` (a full or abbreviated sha of one of the bot's commits) on `branch`,
    /// explaining why in `reason` (the evidence: metric, counts, statistic, window).
    /// `Unchanged` when the branch already has the values from before `commit`.
    pub async fn revert(
        &self,
        branch: &str,
        commit: &str,
        reason: &str,
    ) -> Result<WriteOutcome, GitopsError> {
        self.revert_as(branch, commit, reason, false).await
    }

    async fn revert_as(
        &self,
        branch: &str,
        commit: &str,
        reason: &str,
        approval_merge: bool,
    ) -> Result<WriteOutcome, GitopsError> {
        self.revert_to(Target::branch(branch), commit, reason, approval_merge)
            .await
    }

    /// Reverts `commit` (with `approval_merge`, as a whole against its first parent) in a commit
    /// on `target`: PR mode writes its reverts to a bot branch created from the environment
    /// branch, whose PR then lands them.
    pub async fn revert_to(
        &self,
        target: Target,
        commit: &str,
        reason: &str,
        approval_merge: bool,
    ) -> Result<WriteOutcome, GitopsError> {
        let planner = RevertPlanner {
            commit: commit.to_string(),
            reason: reason.to_string(),
            identity: self.identity().clone(),
            approval_merge,
        };
        self.run(target, Box::new(planner)).await
    }
}

/// Whether `c` is one of the bot's own step commits (not a revert) of one of `deploy_ids`.
fn is_step_of(c: &Commit<'_>, bot_email: &str, deploy_ids: &[String]) -> bool {
    if c.parent_count() != 1 || c.author().email().ok() != Some(bot_email) {
        return false;
    }
    let Ok(trailers) = git2::message_trailers_strs(c.message().unwrap_or("")) else {
        return false;
    };
    let value = |key: &str| trailers.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    value("Step") != Some("revert")
        && value("Deploy-Id").is_some_and(|id| deploy_ids.iter().any(|d| d == id))
}

struct RevertPlanner {
    commit: String,
    reason: String,
    identity: Identity,
    /// A merge of an approval PR: reverted against its first parent as a whole, whoever wrote
    /// what it merged, and named by its own message.
    approval_merge: bool,
}

impl RevertPlanner {
    fn refuse(&self, branch: &str, reason: impl Into<String>) -> GitopsError {
        GitopsError::RevertRefused {
            branch: branch.to_string(),
            commit: self.commit.clone(),
            reason: reason.into(),
        }
    }
}

impl Planner for RevertPlanner {
    fn plan(
        &mut self,
        repo: &Repository,
        branch: &str,
        tip: &Commit<'_>,
    ) -> Result<CommitPlan, GitopsError> {
        let target = repo
            .revparse_single(&self.commit)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| self.refuse(branch, "no such commit in the repository"))?;
        let on_branch = target.id() == tip.id()
            || repo
                .graph_descendant_of(tip.id(), target.id())
                .map_err(GitopsError::git(format!("walking {branch}")))?;
        if !on_branch {
            return Err(self.refuse(branch, format!("the commit is not on {branch}")));
        }
        // An approval PR lands as a merge commit whose second parent is the bot's own commit:
        // that one is what is reverted, against the first parent (git revert -m 1).
        let (own, mainline) = match target.parent_count() {
            1 if self.approval_merge => (target.clone(), 0),
            2 if self.approval_merge => (target.clone(), 1),
            1 => (target.clone(), 0),
            2 => (
                target.parent(1).map_err(GitopsError::git(format!(
                    "reading the parents of {}",
                    target.id()
                )))?,
                1,
            ),
            _ => return Err(self.refuse(branch, "it is a merge of more than two parents")),
        };
        if !self.approval_merge && own.author().email().ok() != Some(self.identity.email.as_str()) {
            return Err(self.refuse(
                branch,
                format!(
                    "the commit was written by {} <{}>, not by the bot; deploybot only reverts \
                     its own commits",
                    own.author().name().unwrap_or("?"),
                    own.author().email().unwrap_or("?")
                ),
            ));
        }
        let doing = format!("reverting {} on {branch}", target.id());
        let mut index = repo
            .revert_commit(&target, tip, mainline, None)
            .map_err(GitopsError::git(&doing))?;
        if index.has_conflicts() {
            let mut paths = BTreeSet::new();
            for c in index.conflicts().map_err(GitopsError::git(&doing))? {
                let c = c.map_err(GitopsError::git(&doing))?;
                for e in [c.ancestor, c.our, c.their].into_iter().flatten() {
                    paths.insert(String::from_utf8_lossy(&e.path).into_owned());
                }
            }
            let later = later_commits_touching(repo, tip.id(), target.id(), &paths)
                .map_err(GitopsError::git(&doing))?;
            return Err(self.refuse(
                branch,
                format!(
                    "a later commit changed the same lines in {} ({}); revert by hand or \
                     deploy the previous version instead",
                    paths.into_iter().collect::<Vec<_>>().join(", "),
                    if later.is_empty() {
                        "commits since then".to_string()
                    } else {
                        later.join("; ")
                    }
                ),
            ));
        }
        let tree = index
            .write_tree_to(repo)
            .map_err(GitopsError::git(&doing))?;
        if tree == tip.tree_id() {
            return Ok(CommitPlan::Unchanged);
        }
        let message = own.message().unwrap_or("");
        let subject = message.lines().next().unwrap_or("");
        let trailers: Vec<(String, String)> = git2::message_trailers_strs(message)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(CommitPlan::Commit {
            tree,
            message: render_revert(subject, &target.id().to_string(), &self.reason, &trailers),
            changes: Vec::new(),
        })
    }
}

/// `short-sha "subject"` of the commits after `since` up to `tip` that touched any of `paths`.
fn later_commits_touching(
    repo: &Repository,
    tip: Oid,
    since: Oid,
    paths: &BTreeSet<String>,
) -> Result<Vec<String>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL)?;
    walk.push(tip)?;
    walk.hide(since)?;
    let mut out = Vec::new();
    for oid in walk.take(200) {
        let c = repo.find_commit(oid?)?;
        let Ok(parent) = c.parent(0) else { continue };
        let diff = repo.diff_tree_to_tree(Some(&parent.tree()?), Some(&c.tree()?), None)?;
        let touches = diff.deltas().any(|d| {
            d.new_file()
                .path()
                .and_then(|p| p.to_str())
                .is_some_and(|p| paths.contains(p))
        });
        if touches {
            out.push(format!(
                "{} {:?} by {}",
                &c.id().to_string()[..10],
                c.summary().ok().flatten().unwrap_or(""),
                c.author().name().unwrap_or("?")
            ));
        }
    }
    Ok(out)
}
