//! The write loop: fetch the branch tip, plan a commit on it in memory (edited blobs, a tree
//! built with `TreeBuilder`, no index, no checkout), push without force, and on a lost race
//! re-fetch and plan again on the new tip, waiting as the retry policy says (`gitops.retry`:
//! bounded exponential backoff with jitter).
//!
//! Writes to one (repository, branch) are serialized by an async mutex per key. Across
//! processes the remote itself arbitrates: pushes are fast-forward only, so a loser retries and
//! never overwrites. What to commit is a [`Planner`]: edits ([`Writer::write`]) and reverts
//! (`revert.rs`) are two planners over the same loop.

use deploybot_core::gitops::FileChange;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use git2::{Commit, FileMode, ObjectType, Oid, Repository, Signature, Tree};

use crate::adapters::gitops::GitopsError;
use crate::adapters::gitops::push::{PushFailure, push};
use crate::adapters::gitops::repo::{LocalClone, Remote};
use crate::adapters::retry::retry;
use deploybot_core::config::PushRetry;
use deploybot_core::failure::{Class, Classified};
use deploybot_core::gitops::commit_message::{CommitInfo, render_commit};
use deploybot_core::gitops::edit::FileEdit;
pub use deploybot_core::gitops::repo::WriteOutcome;

/// The bot's name and email on its commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// What a planner wants committed on a tip.
#[derive(Debug)]
pub enum CommitPlan {
    Unchanged,
    Commit {
        tree: Oid,
        message: String,
        changes: Vec<FileChange>,
    },
}

/// Decides the commit to make on a given tip. Called again on the new tip after a lost race,
/// so it must be semantic (re-derive from the tip), and it may refuse (conflict).
pub trait Planner: Send {
    fn plan(
        &mut self,
        repo: &Repository,
        branch: &str,
        tip: &Commit<'_>,
    ) -> Result<CommitPlan, GitopsError>;
}

/// Which branch to write and where a missing branch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub branch: String,
    /// When the branch does not exist yet, create it from this branch's tip (PR mode).
    /// `None`: a missing branch is an error.
    pub create_from: Option<String>,
    /// Refuse to build on a tip that someone other than the bot committed (bot branches).
    pub bot_owned: bool,
}

impl Target {
    pub fn branch(branch: impl Into<String>) -> Target {
        Target {
            branch: branch.into(),
            create_from: None,
            bot_owned: false,
        }
    }
}

/// One async mutex per (repository, branch) key, shared by every writer of a process.
#[derive(Debug, Clone, Default)]
pub struct BranchLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl BranchLocks {
    pub async fn lock(&self, repo: &str, branch: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(format!("{repo}\n{branch}")).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// Writes to one GitOps repository through its local clone.
#[derive(Debug, Clone)]
pub struct Writer {
    clone: Arc<LocalClone>,
    identity: Identity,
    retry: PushRetry,
    locks: BranchLocks,
}

impl Writer {
    /// Opens (or creates) the local clone of `remote` under `data_dir`.
    pub fn open(
        data_dir: &Path,
        remote: Remote,
        identity: Identity,
        retry: PushRetry,
        locks: BranchLocks,
    ) -> Result<Writer, GitopsError> {
        Ok(Writer {
            clone: Arc::new(LocalClone::open(data_dir, remote)?),
            identity,
            retry,
            locks,
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn clone_path(&self) -> &Path {
        self.clone.path()
    }

    /// The local clone, for a read that runs on a blocking thread.
    pub(crate) fn clone_handle(&self) -> Arc<LocalClone> {
        self.clone.clone()
    }

    /// Applies `edits` to `branch` in one commit with a message rendered from `info`.
    /// Files already at their targets make no commit.
    pub async fn write(
        &self,
        branch: &str,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> Result<WriteOutcome, GitopsError> {
        self.write_to(Target::branch(branch), edits, info).await
    }

    /// [`Writer::write`] with control over branch creation and ownership.
    pub async fn write_to(
        &self,
        target: Target,
        edits: Vec<Arc<dyn FileEdit>>,
        info: CommitInfo,
    ) -> Result<WriteOutcome, GitopsError> {
        let planner = EditPlanner {
            edits,
            info,
            first: None,
        };
        self.run(target, Box::new(planner)).await
    }

    /// The tip of `branch` on the remote (fetched now), with its author and committer emails.
    pub async fn remote_tip(&self, branch: &str) -> Result<Option<TipInfo>, GitopsError> {
        let clone = self.clone.clone();
        let branch = branch.to_string();
        blocking(move || {
            let repo = clone.repository()?;
            let Some(oid) = clone.fetch(&repo, &branch)? else {
                return Ok(None);
            };
            let c = repo
                .find_commit(oid)
                .map_err(GitopsError::git(format!("reading the tip of {branch}")))?;
            Ok(Some(TipInfo {
                commit: oid.to_string(),
                author_email: c.author().email().unwrap_or("").to_string(),
                committer_email: c.committer().email().unwrap_or("").to_string(),
            }))
        })
        .await
    }

    /// The retry loop shared by writes and reverts, serialized per (repository, branch). Each
    /// try runs on a blocking thread; the waits between tries do not hold one.
    pub(crate) async fn run(
        &self,
        target: Target,
        planner: Box<dyn Planner>,
    ) -> Result<WriteOutcome, GitopsError> {
        let _guard = self
            .locks
            .lock(self.clone.remote().url.as_str(), &target.branch)
            .await;
        let policy = self.retry.policy();
        let planner = Arc::new(Mutex::new(planner));
        let tried = retry(&policy, tokio::time::sleep, |attempt| {
            let clone = self.clone.clone();
            let identity = self.identity.clone();
            let target = target.clone();
            let planner = planner.clone();
            blocking(move || {
                let mut planner = planner.lock().unwrap_or_else(|p| p.into_inner());
                try_once(&clone, &identity, &target, planner.as_mut(), attempt)
            })
        })
        .await;
        match tried {
            Ok(outcome) => Ok(outcome),
            Err(Try::Failed(e)) => Err(e),
            Err(Try::Race(last)) => Err(GitopsError::RetriesExhausted {
                branch: target.branch.clone(),
                attempts: policy.max_attempts,
                last,
            }),
        }
    }
}

/// How one try of the write loop failed. Only a lost race is tried again here; any other error,
/// transient ones included, goes back to the caller at once (the rollout driver retries it).
#[derive(Debug)]
enum Try {
    /// The branch moved under the push: why, as the remote said.
    Race(String),
    Failed(GitopsError),
}

impl Classified for Try {
    fn class(&self) -> Class {
        match self {
            Try::Race(_) => Class::Transient,
            Try::Failed(_) => Class::Permanent,
        }
    }
}

impl std::fmt::Display for Try {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Try::Race(why) => write!(f, "lost a push race; retrying on the new tip: {why}"),
            Try::Failed(e) => e.fmt(f),
        }
    }
}

impl From<GitopsError> for Try {
    fn from(e: GitopsError) -> Try {
        Try::Failed(e)
    }
}

/// The remote tip of a branch and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipInfo {
    pub commit: String,
    pub author_email: String,
    pub committer_email: String,
}

pub(crate) async fn blocking<T: Send + 'static, E: From<GitopsError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(E::from(GitopsError::Io {
            doing: "running a git operation".into(),
            message: e.to_string(),
        }))
    })
}

/// One try: fetch, plan on the tip, commit, push.
fn try_once(
    clone: &LocalClone,
    identity: &Identity,
    target: &Target,
    planner: &mut dyn Planner,
    attempt: u32,
) -> Result<WriteOutcome, Try> {
    let branch = &target.branch;
    let repo = clone.repository()?;
    let started = std::time::Instant::now();
    let branch_tip = clone.fetch(&repo, branch)?;
    let fetched = started.elapsed();
    let tip_oid = match branch_tip {
        Some(oid) => {
            if target.bot_owned {
                refuse_foreign_tip(&repo, branch, oid, identity)?;
            }
            oid
        }
        None => match &target.create_from {
            Some(base) => clone
                .fetch(&repo, base)?
                .ok_or_else(|| GitopsError::BranchMissing {
                    branch: base.clone(),
                    url: clone.remote().url.redacted(),
                })?,
            None => {
                return Err(Try::Failed(GitopsError::BranchMissing {
                    branch: branch.clone(),
                    url: clone.remote().url.redacted(),
                }));
            }
        },
    };
    let tip = repo
        .find_commit(tip_oid)
        .map_err(GitopsError::git(format!("reading the tip of {branch}")))?;
    let plan = planner.plan(&repo, branch, &tip)?;
    let planned = started.elapsed();
    let (tree, message, changes) = match plan {
        CommitPlan::Commit {
            tree,
            message,
            changes,
        } => (tree, message, changes),
        CommitPlan::Unchanged => {
            // A new branch with nothing to change is not worth creating.
            return Ok(WriteOutcome::Unchanged {
                head: tip_oid.to_string(),
            });
        }
    };
    let doing = format!("committing to {branch}");
    let tree = repo.find_tree(tree).map_err(GitopsError::git(&doing))?;
    let sig = Signature::now(&identity.name, &identity.email).map_err(GitopsError::git(&doing))?;
    let commit = repo
        .commit(None, &sig, &sig, &message, &tree, &[&tip])
        .map_err(GitopsError::git(&doing))?;
    let committed_at = started.elapsed();
    let pushed = push(clone, &repo, commit, branch, branch_tip);
    tracing::debug!(branch = %branch, attempt, ?fetched, ?planned, ?committed_at, total = ?started.elapsed(), "write attempt timings");
    match pushed {
        Ok(()) => {
            tracing::info!(branch = %branch, commit = %commit, attempt, "pushed");
            Ok(WriteOutcome::Committed {
                commit: commit.to_string(),
                parent: tip_oid.to_string(),
                changes,
                attempts: attempt,
            })
        }
        Err(PushFailure::Permanent(e)) => Err(Try::Failed(e)),
        Err(PushFailure::Race(why)) => Err(Try::Race(why)),
    }
}

fn refuse_foreign_tip(
    repo: &Repository,
    branch: &str,
    oid: Oid,
    identity: &Identity,
) -> Result<(), GitopsError> {
    let c = repo
        .find_commit(oid)
        .map_err(GitopsError::git(format!("reading the tip of {branch}")))?;
    for who in [c.author(), c.committer()] {
        let email = who.email().unwrap_or("");
        if email != identity.email {
            return Err(GitopsError::HumanEdited {
                branch: branch.to_string(),
                commit: oid.to_string(),
                who: format!("{} <{email}>", who.name().unwrap_or("?")),
            });
        }
    }
    Ok(())
}

/// Plans a commit from semantic file edits, and checks on every retry that the values the
/// first attempt saw are still the ones upstream.
struct EditPlanner {
    edits: Vec<Arc<dyn FileEdit>>,
    info: CommitInfo,
    /// `(path, changes)` as computed on the first tip: the values the change was planned from.
    first: Option<Vec<FileChange>>,
}

impl Planner for EditPlanner {
    fn plan(
        &mut self,
        repo: &Repository,
        branch: &str,
        tip: &Commit<'_>,
    ) -> Result<CommitPlan, GitopsError> {
        let base = tip
            .tree()
            .map_err(GitopsError::git(format!("reading the tree of {branch}")))?;
        // Several edits may target one file: apply them in order on the evolving text.
        let mut texts: BTreeMap<String, String> = BTreeMap::new();
        let mut changed: Vec<FileChange> = Vec::new();
        for edit in &self.edits {
            let path = edit.path().trim_start_matches('/').to_string();
            let text = match texts.get(&path) {
                Some(t) => t.clone(),
                None => read_text(repo, &base, &path, branch, tip.id())?,
            };
            let edited = edit.apply(&text).map_err(|cause| GitopsError::Edit {
                path: path.clone(),
                branch: branch.to_string(),
                cause,
            })?;
            if !edited.changes.is_empty() {
                texts.insert(path.clone(), edited.text);
                changed.push(FileChange {
                    path,
                    changes: edited.changes,
                });
            }
        }
        match &self.first {
            None => self.first = Some(changed.clone()),
            Some(first) => check_unchanged_upstream(branch, first, &changed)?,
        }
        if changed.is_empty() {
            return Ok(CommitPlan::Unchanged);
        }
        let mut updates = BTreeMap::new();
        for (path, text) in &texts {
            let blob = repo
                .blob(text.as_bytes())
                .map_err(GitopsError::git(format!("writing {path}")))?;
            updates.insert(path.as_str(), blob);
        }
        let tree = replace_blobs(repo, Some(&base), &updates)
            .map_err(GitopsError::git(format!("building the tree for {branch}")))?;
        Ok(CommitPlan::Commit {
            tree,
            message: render_commit(&self.info, &changed),
            changes: changed,
        })
    }
}

/// A retry must change the same values from the same old values; otherwise someone else changed
/// what we were about to change, and overwriting it would lose their update.
fn check_unchanged_upstream(
    branch: &str,
    first: &[FileChange],
    now: &[FileChange],
) -> Result<(), GitopsError> {
    // Everything already at the target (someone made the same change): nothing to do, no conflict.
    if now.is_empty() {
        return Ok(());
    }
    for f in first {
        let current = now.iter().find(|n| n.path == f.path);
        for c in &f.changes {
            let found = current.and_then(|n| n.changes.iter().find(|x| x.location == c.location));
            match found {
                Some(x) if x.old == c.old => {}
                Some(x) => {
                    return Err(conflict(branch, &f.path, &c.location, &c.old, &x.old));
                }
                // That value is at the target now while others are not: someone else touched it.
                None => {
                    return Err(conflict(branch, &f.path, &c.location, &c.old, &c.new));
                }
            }
        }
    }
    for n in now {
        for x in &n.changes {
            let planned = first
                .iter()
                .find(|f| f.path == n.path)
                .is_some_and(|f| f.changes.iter().any(|c| c.location == x.location));
            if !planned {
                return Err(conflict(branch, &n.path, &x.location, &x.new, &x.old));
            }
        }
    }
    Ok(())
}

fn conflict(branch: &str, path: &str, location: &str, expected: &str, found: &str) -> GitopsError {
    GitopsError::Conflict {
        branch: branch.to_string(),
        path: path.to_string(),
        location: location.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

pub(crate) fn read_text(
    repo: &Repository,
    tree: &Tree<'_>,
    path: &str,
    branch: &str,
    commit: Oid,
) -> Result<String, GitopsError> {
    let missing = || GitopsError::FileMissing {
        path: path.to_string(),
        branch: branch.to_string(),
        commit: commit.to_string(),
    };
    let entry = tree.get_path(Path::new(path)).map_err(|_| missing())?;
    if entry.kind() != Some(ObjectType::Blob) {
        return Err(missing());
    }
    // A symlink's blob is its target's path: editing it as YAML, then writing it back as a file,
    // would replace the link with a regular file.
    if entry.filemode() == i32::from(FileMode::Link) {
        return Err(GitopsError::Symlink {
            path: path.to_string(),
            branch: branch.to_string(),
        });
    }
    let blob = repo
        .find_blob(entry.id())
        .map_err(GitopsError::git(format!("reading {path} on {branch}")))?;
    if blob.size() > deploybot_core::manifest::MAX_BYTES {
        return Err(GitopsError::Edit {
            path: path.to_string(),
            branch: branch.to_string(),
            cause: deploybot_core::manifest::EditError::TooLarge {
                path: path.to_string(),
                bytes: blob.size(),
                limit: deploybot_core::manifest::MAX_BYTES,
            },
        });
    }
    String::from_utf8(blob.content().to_vec()).map_err(|_| GitopsError::NotText {
        path: path.to_string(),
        branch: branch.to_string(),
    })
}

/// A new tree equal to `base` except for the given `path -> blob` replacements. Only the trees on
/// the paths to the changed files are rewritten, so the cost follows the depth of the change,
/// not the size of the repository.
pub(crate) fn replace_blobs(
    repo: &Repository,
    base: Option<&Tree<'_>>,
    updates: &BTreeMap<&str, Oid>,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(base)?;
    let mut subdirs: BTreeMap<&str, BTreeMap<&str, Oid>> = BTreeMap::new();
    for (path, blob) in updates {
        match path.split_once('/') {
            None => {
                // Keep an executable bit if the file had one.
                let mode = base
                    .and_then(|t| t.get_name(path))
                    .map(|e| e.filemode())
                    .filter(|m| *m == i32::from(FileMode::BlobExecutable))
                    .map(|_| FileMode::BlobExecutable)
                    .unwrap_or(FileMode::Blob);
                builder.insert(path, *blob, mode.into())?;
            }
            Some((dir, rest)) => {
                subdirs.entry(dir).or_default().insert(rest, *blob);
            }
        }
    }
    for (dir, inner) in subdirs {
        let sub = match base.and_then(|t| t.get_name(dir)) {
            Some(e) if e.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(e.id())?),
            _ => None,
        };
        let oid = replace_blobs(repo, sub.as_ref(), &inner)?;
        builder.insert(dir, oid, FileMode::Tree.into())?;
    }
    builder.write()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::manifest::ValueChange;

    fn vc(location: &str, old: &str, new: &str) -> ValueChange {
        ValueChange {
            location: location.into(),
            line: 1,
            old: old.into(),
            new: new.into(),
        }
    }

    fn fc(path: &str, changes: Vec<ValueChange>) -> Vec<FileChange> {
        vec![FileChange {
            path: path.into(),
            changes,
        }]
    }

    #[test]
    fn same_old_values_on_a_new_tip_are_not_a_conflict() {
        let first = fc("a.yaml", vec![vc("image", "1.0", "2.0")]);
        assert!(check_unchanged_upstream("main", &first, &first.clone()).is_ok());
        assert!(check_unchanged_upstream("main", &first, &[]).is_ok());
    }

    #[test]
    fn a_changed_old_value_is_a_conflict_naming_both_values() {
        let first = fc("a.yaml", vec![vc("image", "1.0", "2.0")]);
        let now = fc("a.yaml", vec![vc("image", "1.5", "2.0")]);
        let e = check_unchanged_upstream("main", &first, &now)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"1.0\"") && e.contains("\"1.5\"") && e.contains("a.yaml"),
            "{e}"
        );
    }

    /// Issue 17.11: a symlinked manifest and one past the editor's limit are refused before
    /// they are edited (a link written back as a file, or a 50 MB file in memory as a tree).
    #[test]
    fn symlinks_and_oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let target = repo.blob(b"kind: Deployment\n").unwrap();
        let big = repo
            .blob(&vec![b'#'; deploybot_core::manifest::MAX_BYTES + 1])
            .unwrap();
        let mut b = repo.treebuilder(None).unwrap();
        b.insert("real.yaml", target, FileMode::Blob.into())
            .unwrap();
        let link = repo.blob(b"real.yaml").unwrap();
        b.insert("link.yaml", link, FileMode::Link.into()).unwrap();
        b.insert("big.yaml", big, FileMode::Blob.into()).unwrap();
        let tree = repo.find_tree(b.write().unwrap()).unwrap();
        let read = |p: &str| read_text(&repo, &tree, p, "main", Oid::ZERO_SHA1);
        assert_eq!(read("real.yaml").unwrap(), "kind: Deployment\n");
        let e = read("link.yaml").unwrap_err();
        assert!(matches!(e, GitopsError::Symlink { .. }), "{e}");
        assert_eq!(e.class(), Class::Permanent);
        let e = read("big.yaml").unwrap_err();
        assert!(e.to_string().contains("more than the 2097152"), "{e}");
        assert_eq!(e.class(), Class::Permanent);
    }

    #[test]
    fn replace_blobs_rewrites_only_the_path_and_keeps_modes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = repo.blob(b"a").unwrap();
        let x = repo.blob(b"#!/bin/sh").unwrap();
        let mut inner = BTreeMap::new();
        inner.insert("apps/web/deploy.yaml", a);
        inner.insert("apps/web/run.sh", x);
        inner.insert("README", a);
        let t1 = replace_blobs(&repo, None, &inner).unwrap();
        // mark run.sh executable by hand
        let tree = repo.find_tree(t1).unwrap();
        let web = repo
            .find_tree(tree.get_path(Path::new("apps/web")).unwrap().id())
            .unwrap();
        let mut b = repo.treebuilder(Some(&web)).unwrap();
        b.insert("run.sh", x, FileMode::BlobExecutable.into())
            .unwrap();
        let web2 = b.write().unwrap();
        let mut apps = repo.treebuilder(None).unwrap();
        apps.insert("web", web2, FileMode::Tree.into()).unwrap();
        let apps = apps.write().unwrap();
        let mut root = repo.treebuilder(Some(&tree)).unwrap();
        root.insert("apps", apps, FileMode::Tree.into()).unwrap();
        let t2 = repo.find_tree(root.write().unwrap()).unwrap();

        let y = repo.blob(b"#!/bin/bash").unwrap();
        let mut up = BTreeMap::new();
        up.insert("apps/web/run.sh", y);
        let t3 = repo
            .find_tree(replace_blobs(&repo, Some(&t2), &up).unwrap())
            .unwrap();
        let e = t3.get_path(Path::new("apps/web/run.sh")).unwrap();
        assert_eq!(e.id(), y);
        assert_eq!(e.filemode(), i32::from(FileMode::BlobExecutable));
        assert_eq!(t3.get_path(Path::new("README")).unwrap().id(), a);
        assert_eq!(
            t3.get_path(Path::new("apps/web/deploy.yaml")).unwrap().id(),
            a
        );
    }
}
