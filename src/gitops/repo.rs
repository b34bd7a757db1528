//! The local clone of a GitOps repository and the conversation with its remote: URL parsing,
//! credentials (token over HTTPS, agent or key over ssh) and fetching one branch.
//!
//! The clone is bare: the writer builds trees from blobs and never checks files out, so the cost
//! of a write does not grow with the repository. It is created once per repository under the
//! data directory and only fetched afterwards; nothing here re-clones.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use git2::{AutotagOption, Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};

use super::GitopsError;
use crate::secret::Secret;

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    File,
    Http,
    Ssh,
}

/// A remote URL that deploybot knows how to reach.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    url: String,
    transport: Transport,
}

impl RemoteUrl {
    pub fn parse(url: &str) -> Result<RemoteUrl, String> {
        let transport = if url.starts_with("file://") {
            Transport::File
        } else if url.starts_with("https://") || url.starts_with("http://") {
            Transport::Http
        } else if url.starts_with("ssh://") || is_scp_like(url) {
            Transport::Ssh
        } else {
            return Err(format!(
                "unsupported repository URL {:?}: use file://, https://, http://, ssh:// or \
                 user@host:path",
                redact(url)
            ));
        };
        if transport == Transport::Http && userinfo(url).is_some_and(|u| u.contains(':')) {
            return Err(format!(
                "{}: do not put credentials in the URL; use gitops.token_env or gitops.token_file",
                redact(url)
            ));
        }
        Ok(RemoteUrl {
            url: url.to_string(),
            transport,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URL without any userinfo, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteUrl({})", self.redacted())
    }
}

fn is_scp_like(url: &str) -> bool {
    match url.split_once(':') {
        Some((host, path)) => {
            !host.contains('/') && host.contains('@') && !path.is_empty() && !path.starts_with("//")
        }
        None => false,
    }
}

fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once('@').map(|(u, _)| u)
}

fn redact(url: &str) -> String {
    match (url.split_once("://"), userinfo(url)) {
        (Some((scheme, rest)), Some(u)) => {
            format!("{scheme}://***@{}", &rest[u.len() + 1..])
        }
        _ => url.to_string(),
    }
}

/// Credentials for a remote. The token stays a [`Secret`] until libgit2 asks for it.
#[derive(Debug, Clone)]
pub enum GitAuth {
    /// `file://`, or a public remote.
    None,
    /// GitHub App installation token or PAT, sent as HTTP Basic `x-access-token:TOKEN`.
    Token(Secret),
    /// ssh with a key file, or the ssh agent when `key_file` is `None`.
    Ssh { key_file: Option<PathBuf> },
}

/// A remote and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: RemoteUrl,
    pub auth: GitAuth,
}

/// Tracks what the credentials callback did, so that a refusal becomes a clear error instead
/// of libgit2 asking again forever.
#[derive(Default)]
pub(crate) struct AuthState {
    asked: Cell<u32>,
    missing: Cell<bool>,
}

impl AuthState {
    /// Callbacks with credentials installed. libgit2 asks again after a refusal; the second
    /// request means the remote rejected what we sent.
    pub(crate) fn callbacks<'a>(&'a self, remote: &'a Remote) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        cb.credentials(move |_url, username, allowed| {
            self.asked.set(self.asked.get() + 1);
            if self.asked.get() > 1 {
                return Err(git2::Error::from_str("credentials were rejected"));
            }
            match &remote.auth {
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
        if self.missing.get() {
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
                source: e,
            }
        }
    }
}

/// The bare local clone of one GitOps repository.
#[derive(Debug)]
pub struct LocalClone {
    path: PathBuf,
    remote: Remote,
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
        Ok(LocalClone { path, remote })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    pub fn repository(&self) -> Result<Repository, GitopsError> {
        Repository::open_bare(&self.path).map_err(GitopsError::git(format!(
            "opening the local clone {}",
            self.path.display()
        )))
    }

    /// Fetches `branch` and returns its tip on the remote, or `None` when the remote has no such
    /// branch. The remote-tracking ref `refs/remotes/origin/<branch>` follows the remote.
    pub fn fetch(&self, repo: &Repository, branch: &str) -> Result<Option<Oid>, GitopsError> {
        let doing = format!("fetching {branch} from {}", self.remote.url.redacted());
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

    #[test]
    fn urls_are_classified() {
        assert_eq!(
            RemoteUrl::parse("file:///tmp/x.git").unwrap().transport(),
            Transport::File
        );
        assert_eq!(
            RemoteUrl::parse("https://github.com/o/r.git")
                .unwrap()
                .transport(),
            Transport::Http
        );
        assert_eq!(
            RemoteUrl::parse("git@github.com:o/r.git")
                .unwrap()
                .transport(),
            Transport::Ssh
        );
        assert_eq!(
            RemoteUrl::parse("ssh://git@host/o/r.git")
                .unwrap()
                .transport(),
            Transport::Ssh
        );
        assert!(RemoteUrl::parse("/tmp/x").is_err());
    }

    #[test]
    fn credentials_in_urls_are_refused_and_never_echoed() {
        let e =
            RemoteUrl::parse("https://x-access-token:ghs_secret@github.com/o/r.git").unwrap_err();
        assert!(!e.contains("ghs_secret"), "{e}");
        assert!(e.contains("token_env"), "{e}");
    }

    #[test]
    fn clone_dirs_differ_per_url() {
        let a = clone_dir_name("https://github.com/a/gitops.git");
        let b = clone_dir_name("https://github.com/b/gitops.git");
        assert!(a.starts_with("gitops-") && a.ends_with(".git"));
        assert_ne!(a, b);
    }
}
