//! The local clone of a GitOps repository and the conversation with its remote: credentials
//! (token over HTTPS, agent or key over ssh) and fetching one branch. The remote's URL was parsed
//! when the config resolved (`deploybot_core::gitops::remote::RemoteUrl`).
//!
//! The clone is bare: the writer builds trees from blobs and never checks files out, so the cost
//! of a write does not grow with the repository. It is created once per repository under the
//! data directory and only fetched afterwards; nothing here re-clones.

use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use git2::{
    AutotagOption, Cred, CredentialType, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    Repository, Tree,
};
use sha2::{Digest, Sha256};

use crate::adapters::gitops::GitopsError;
use deploybot_core::failure::{Class, Failure};
use deploybot_core::github::RepoName;
use deploybot_core::github::token::{Scope, TokenSource};
use deploybot_core::secret::Secret;

pub use deploybot_core::gitops::remote::{RemoteUrl, Transport};

/// Credentials for a remote. The token stays a [`Secret`] until libgit2 asks for it.
#[derive(Debug, Clone)]
pub enum GitAuth {
    /// `file://`, or a public remote.
    None,
    /// GitHub App installation token or PAT, sent as HTTP Basic `x-access-token:TOKEN`.
    Token(Secret),
    /// The same, asked of a token source when libgit2 needs it (a current installation token),
    /// and asked once more if the remote refused it.
    Provided(GitTokens),
    /// ssh with a key file, or the ssh agent when `key_file` is `None`.
    Ssh { key_file: Option<PathBuf> },
}

/// Where an https remote's token comes from: the token source GitHub calls use, for the
/// repository the remote is. libgit2 asks for credentials on a blocking thread, so the token is
/// awaited on the runtime that opened the writer.
#[derive(Clone)]
pub struct GitTokens {
    pub source: std::sync::Arc<dyn TokenSource>,
    /// `owner/name` of the remote, which picks the App installation; `None` when the URL does
    /// not name one (the source then has only a fixed token to offer).
    pub repo: Option<RepoName>,
    pub runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for GitTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitTokens")
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

impl GitTokens {
    /// A token current now; the error says why there is none (never a value), classified as
    /// the source classified it (GitHub unreachable while minting may pass later).
    fn current(&self) -> Result<Secret, Failure> {
        let doing = "getting a token for the remote";
        let runtime = self.runtime.as_ref().ok_or_else(|| {
            Failure::permanent(doing, "no async runtime to ask the token source on")
        })?;
        let scope = match &self.repo {
            Some(r) => Scope::Repo(r),
            None => Scope::Account(""),
        };
        match runtime.block_on(self.source.token(scope)) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Failure::permanent(
                doing,
                "no GitHub token or App is configured",
            )),
            Err(e) => Err(e),
        }
    }

    fn refused(&self, token: &Secret) {
        let scope = match &self.repo {
            Some(r) => Scope::Repo(r),
            None => Scope::Account(""),
        };
        self.source.refused(scope, token);
    }
}

/// A remote and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: RemoteUrl,
    pub auth: GitAuth,
}

/// Tracks what the credentials callback did, so that a refusal becomes a clear error instead
/// of libgit2 asking again forever, and when the transfer must end.
pub(crate) struct AuthState {
    asked: Cell<u32>,
    missing: Cell<bool>,
    /// The provided token handed to libgit2 last, to report if the remote refuses it.
    handed: RefCell<Option<Secret>>,
    /// Why the token source had no token, when it had none.
    unavailable: RefCell<Option<Failure>>,
    /// `gitops.timeout` from the start of the operation.
    deadline: Instant,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            asked: Cell::new(0),
            missing: Cell::new(false),
            handed: RefCell::new(None),
            unavailable: RefCell::new(None),
            deadline: Instant::now() + super::network_timeout(),
        }
    }
}

impl AuthState {
    /// Callbacks with credentials installed. libgit2 asks again after a refusal; the second
    /// request means the remote rejected what we sent. A fetch's transfer is cut at the
    /// deadline (a remote trickling bytes never trips the per-read timeout).
    pub(crate) fn callbacks<'a>(&'a self, remote: &'a Remote) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let deadline = self.deadline;
        cb.transfer_progress(move |_| Instant::now() < deadline);
        cb.credentials(move |_url, username, allowed| {
            self.asked.set(self.asked.get() + 1);
            // A provided token may have expired on the way: it is asked for afresh once.
            let tries = if matches!(remote.auth, GitAuth::Provided(_)) {
                2
            } else {
                1
            };
            if self.asked.get() > tries {
                return Err(git2::Error::from_str("credentials were rejected"));
            }
            match &remote.auth {
                GitAuth::Provided(tokens)
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    if let Some(refused) = self.handed.borrow_mut().take() {
                        tokens.refused(&refused);
                    }
                    match tokens.current() {
                        Ok(token) => {
                            let cred = Cred::userpass_plaintext("x-access-token", token.expose());
                            *self.handed.borrow_mut() = Some(token);
                            cred
                        }
                        Err(why) => {
                            *self.unavailable.borrow_mut() = Some(why);
                            Err(git2::Error::from_str("no token available"))
                        }
                    }
                }
                GitAuth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    Cred::userpass_plaintext("x-access-token", token.expose())
                }
                GitAuth::Ssh { key_file } if allowed.contains(CredentialType::SSH_KEY) => {
                    let user = username.unwrap_or("git");
                    match key_file {
                        Some(key) => Cred::ssh_key(user, None, key, None),
                        None => Cred::ssh_key_from_agent(user),
                    }
                }
                GitAuth::Ssh { .. } if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(username.unwrap_or("git"))
                }
                _ => {
                    self.missing.set(true);
                    Err(git2::Error::from_str("no usable credentials configured"))
                }
            }
        });
        cb
    }

    /// Turns a libgit2 error into an auth error when the credentials callback was involved.
    pub(crate) fn error(&self, doing: &str, remote: &Remote, e: git2::Error) -> GitopsError {
        let url = remote.url.redacted();
        if let Some(why) = self.unavailable.borrow_mut().take() {
            if why.class == Class::Transient {
                // GitHub did not answer the mint: the push may pass once it does.
                GitopsError::Io {
                    doing: doing.into(),
                    message: format!("no token for {url}: {why}"),
                }
            } else {
                GitopsError::Auth {
                    doing: doing.into(),
                    url,
                    message: format!("no token for the remote: {why}"),
                }
            }
        } else if self.missing.get() {
            GitopsError::Auth {
                doing: doing.into(),
                url,
                message: "the remote requires credentials and none usable are configured \
                          (gitops.token_env / gitops.token_file for https, an ssh key or agent \
                          for ssh)"
                    .into(),
            }
        } else if self.asked.get() > 1 || e.code() == git2::ErrorCode::Auth {
            GitopsError::Auth {
                doing: doing.into(),
                url,
                message: format!(
                    "{} (is the token valid and allowed to write to the repository?)",
                    e.message()
                ),
            }
        } else {
            GitopsError::Git {
                doing: doing.into(),
                cause: e,
            }
        }
    }
}

/// The bare local clone of one GitOps repository.
///
/// The opened repositories are kept: a fresh `Repository` starts with cold pack and delta-base
/// caches, and rebuilding a deltified tree chain on every write costs more than the write.
pub struct LocalClone {
    path: PathBuf,
    remote: Remote,
    repo: Mutex<Option<Repository>>,
    /// The remote itself, for `file://` remotes (pushed to directly, see `push.rs`).
    file_remote: Mutex<Option<Repository>>,
}

impl std::fmt::Debug for LocalClone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClone")
            .field("path", &self.path)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl LocalClone {
    /// Opens the clone for `remote` under `data_dir/gitops/`, creating an empty bare repository
    /// the first time (the first fetch fills it).
    pub fn open(data_dir: &Path, remote: Remote) -> Result<LocalClone, GitopsError> {
        let path = data_dir
            .join("gitops")
            .join(clone_dir_name(remote.url.as_str()));
        if Repository::open_bare(&path).is_err() {
            std::fs::create_dir_all(&path).map_err(|e| GitopsError::Io {
                doing: format!("creating the local clone directory {}", path.display()),
                message: e.to_string(),
            })?;
            Repository::init_bare(&path).map_err(GitopsError::git(format!(
                "creating the local clone of {} at {}",
                remote.url.redacted(),
                path.display()
            )))?;
        }
        Ok(LocalClone {
            path,
            remote,
            repo: Mutex::new(None),
            file_remote: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The local clone, opened once and kept. Hold the guard for one attempt, not across waits:
    /// it serializes every git operation on this clone.
    pub fn repository(&self) -> Result<RepoGuard<'_>, GitopsError> {
        open_cached(&self.repo, || {
            Repository::open_bare(&self.path).map_err(GitopsError::git(format!(
                "opening the local clone {}",
                self.path.display()
            )))
        })
    }

    /// The repository behind a `file://` remote, opened once and kept.
    pub(crate) fn file_remote(&self) -> Result<RepoGuard<'_>, GitopsError> {
        let url = self.remote.url.as_str();
        let path = url.strip_prefix("file://").unwrap_or(url);
        open_cached(&self.file_remote, || {
            Repository::open(Path::new(path)).map_err(GitopsError::git(format!(
                "opening the remote repository {url}"
            )))
        })
    }

    /// Fetches `branch` and returns its tip on the remote, or `None` when the remote has no such
    /// branch. The remote-tracking ref `refs/remotes/origin/<branch>` follows the remote.
    pub fn fetch(&self, repo: &Repository, branch: &str) -> Result<Option<Oid>, GitopsError> {
        let doing = format!("fetching {branch} from {}", self.remote.url.redacted());
        if self.remote.url.transport() == Transport::File
            && let Some(tip) = self.fetch_local(repo, branch, &doing)?
        {
            return Ok(tip);
        }
        let refname = format!("refs/heads/{branch}");
        let tracking = tracking_ref(branch);
        let auth = AuthState::default();
        let mut remote = repo
            .remote_anonymous(self.remote.url.as_str())
            .map_err(GitopsError::git(&doing))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(auth.callbacks(&self.remote))
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        remote
            .fetch(&[format!("+{refname}:{tracking}")], Some(&mut opts), None)
            .map_err(|e| auth.error(&doing, &self.remote, e))?;
        let tip = remote
            .list()
            .map_err(GitopsError::git(&doing))?
            .iter()
            .find(|h| h.name() == refname)
            .map(|h| h.oid());
        match tip {
            Some(oid) => {
                repo.reference(&tracking, oid, true, "deploybot: fetch")
                    .map_err(GitopsError::git(&doing))?;
            }
            None => {
                if let Ok(mut r) = repo.find_reference(&tracking) {
                    r.delete().map_err(GitopsError::git(&doing))?;
                }
            }
        }
        Ok(tip)
    }
}

/// Trees and blobs reachable from `tree` but not from `base`, descending only into subtrees
/// whose id changed: the cost follows the edited paths, not the repository.
pub(crate) fn new_objects(
    repo: &Repository,
    tree: &Tree<'_>,
    base: Option<&Tree<'_>>,
    out: &mut Vec<Oid>,
) -> Result<(), git2::Error> {
    if base.is_some_and(|b| b.id() == tree.id()) {
        return Ok(());
    }
    out.push(tree.id());
    for entry in tree.iter() {
        let name = entry.name_bytes();
        let old = base.and_then(|b| {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| b.get_name(n))
                .map(|e| (e.id(), e.kind()))
        });
        if old.is_some_and(|(id, _)| id == entry.id()) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let sub = repo.find_tree(entry.id())?;
                let old_sub = match old {
                    Some((id, Some(ObjectType::Tree))) => Some(repo.find_tree(id)?),
                    _ => None,
                };
                new_objects(repo, &sub, old_sub.as_ref(), out)?;
            }
            Some(ObjectType::Blob) => out.push(entry.id()),
            // Submodule commits live elsewhere.
            _ => {}
        }
    }
    Ok(())
}

fn open_cached(
    slot: &Mutex<Option<Repository>>,
    open: impl FnOnce() -> Result<Repository, GitopsError>,
) -> Result<RepoGuard<'_>, GitopsError> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(open()?);
    }
    Ok(RepoGuard(guard))
}

/// An opened repository, borrowed from its [`LocalClone`] for one operation.
pub struct RepoGuard<'a>(MutexGuard<'a, Option<Repository>>);

impl Deref for RepoGuard<'_> {
    type Target = Repository;

    fn deref(&self) -> &Repository {
        self.0
            .as_ref()
            .expect("opened before the guard was handed out")
    }
}

impl LocalClone {
    /// `file://` fetch by copying objects: only those the new commits add (walking changed
    /// subtrees only), as loose objects. libgit2's local transport would build and index a
    /// delta-compressed pack and mark every tree of our history, costing O(repository) per fetch.
    /// `None` when there is no common ground yet (first fetch) or the gap is large: the caller
    /// then fetches a pack the ordinary way.
    fn fetch_local(
        &self,
        repo: &Repository,
        branch: &str,
        doing: &str,
    ) -> Result<Option<Option<Oid>>, GitopsError> {
        const MAX_COMMITS: usize = 500;
        let remote = self.file_remote()?;
        let err = GitopsError::git(doing);
        let tip = match remote.find_reference(&format!("refs/heads/{branch}")) {
            Ok(r) => r.resolve().map_err(GitopsError::git(doing))?.target(),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(err(e)),
        };
        let tracking = tracking_ref(branch);
        let Some(tip) = tip else {
            if let Ok(mut r) = repo.find_reference(&tracking) {
                r.delete().map_err(GitopsError::git(doing))?;
            }
            return Ok(Some(None));
        };
        let local_odb = repo.odb().map_err(GitopsError::git(doing))?;
        if !local_odb.exists(tip) {
            let remote_odb = remote.odb().map_err(GitopsError::git(doing))?;
            let mut walk = remote.revwalk().map_err(GitopsError::git(doing))?;
            walk.push(tip).map_err(GitopsError::git(doing))?;
            let mut common = 0;
            for r in repo
                .references_glob("refs/remotes/origin/*")
                .map_err(GitopsError::git(doing))?
                .flatten()
            {
                if let Some(oid) = r.target()
                    && remote_odb.exists(oid)
                {
                    walk.hide(oid).map_err(GitopsError::git(doing))?;
                    common += 1;
                }
            }
            if common == 0 {
                return Ok(None);
            }
            let commits: Vec<Oid> = walk
                .take(MAX_COMMITS + 1)
                .collect::<Result<_, _>>()
                .map_err(GitopsError::git(doing))?;
            if commits.len() > MAX_COMMITS {
                return Ok(None);
            }
            // Parents before children, trees and blobs before their commit: a reader never
            // finds a commit whose objects are missing.
            for oid in commits.into_iter().rev() {
                let c = remote.find_commit(oid).map_err(GitopsError::git(doing))?;
                let tree = c.tree().map_err(GitopsError::git(doing))?;
                let base = match c.parent(0) {
                    Ok(p) => Some(p.tree().map_err(GitopsError::git(doing))?),
                    Err(_) => None,
                };
                let mut objects = Vec::new();
                new_objects(&remote, &tree, base.as_ref(), &mut objects)
                    .map_err(GitopsError::git(doing))?;
                objects.push(oid);
                for o in objects {
                    if !local_odb.exists(o) {
                        let obj = remote_odb.read(o).map_err(GitopsError::git(doing))?;
                        local_odb
                            .write(obj.kind(), obj.data())
                            .map_err(GitopsError::git(doing))?;
                    }
                }
            }
        }
        repo.reference(&tracking, tip, true, "deploybot: fetch")
            .map_err(GitopsError::git(doing))?;
        Ok(Some(Some(tip)))
    }
}

pub(crate) fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// `<last path segment>-<hash>.git`: readable, and distinct for distinct URLs.
fn clone_dir_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git");
    let readable: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = hex::encode(&Sha256::digest(url.as_bytes())[..6]);
    format!("{readable}-{hash}.git")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core's pure branch-name check says what libgit2 says, on the names that matter.
    #[test]
    fn the_core_ref_name_rules_agree_with_libgit2() {
        for name in [
            "main",
            "env/production",
            "deploybot/x",
            "a..b",
            "a b",
            "x.lock",
            ".hidden",
            "a/",
            "a//b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "end.",
            "@",
            "tab\t",
            "release-1.2",
            "a/.b",
            "a.lock/b",
            "ünï/côdé",
        ] {
            let full = format!("refs/heads/{name}");
            assert_eq!(
                deploybot_core::gitops::remote::is_valid_ref_name(&full),
                git2::Reference::is_valid_name(&full),
                "{full:?}"
            );
        }
    }

    #[test]
    fn clone_dirs_differ_per_url() {
        let a = clone_dir_name("https://github.com/a/gitops.git");
        let b = clone_dir_name("https://github.com/b/gitops.git");
        assert!(a.starts_with("gitops-") && a.ends_with(".git"));
        assert_ne!(a, b);
    }
}
