//! The GitOps writer: commits manifest edits to the repository Argo CD watches (git2), pushes
//! without force, retries races by re-applying the semantic edit, reverts its own commits and
//! opens pull requests for gated steps.
//!
//! Layout: [`repo`] keeps the local bare clone and talks to the remote (fetch, auth), [`push`]
//! pushes and classifies rejected refs, [`writer`] is the fetch-edit-commit-push loop,
//! [`revert`] undoes one of the bot's commits, [`port`] is the core's git port
//! (`GitopsRepo`) over the writer, [`pull_request`] is PR mode over the git and GitHub ports;
//! messages are rendered by the core's `gitops::commit_message`. It does not decide *what* to
//! change (that is `manifest`) nor *when* (the rollout).

// GitopsError carries paths, refs and messages (about 150 bytes). It is returned once per write,
// on a path dominated by network and disk I/O, so boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod port;
pub mod pull_request;
pub mod push;
pub mod repo;
pub mod revert;
pub mod writer;

use deploybot_core::config::GitopsSpec;
use deploybot_core::failure::{Class, Classified, Failure};
use deploybot_core::github::RepoName;
use deploybot_core::github::token::TokenSource;
use std::sync::Arc;

pub use deploybot_core::gitops::{FileEdit, ManifestEdit};
pub use port::Writers;
pub use writer::{CommitPlan, WriteOutcome, Writer};

/// The deadline of network fetches and pushes (`gitops.timeout`), in milliseconds; read by every
/// transfer's progress callback.
static NETWORK_TIMEOUT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(60_000);

/// Bounds every fetch and push over the network by `timeout`: libgit2's connect timeout and its
/// timeout for each read or write of the remote (a remote that stops answering), and a deadline
/// on the whole transfer (a remote that trickles). Process-wide, as libgit2's options are; set
/// once at start-up, before any git operation runs.
pub fn set_network_timeout(timeout: std::time::Duration) {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    NETWORK_TIMEOUT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
    // SAFETY: libgit2 reads these two ints when it opens a connection; they are written here
    // before the first one is opened, and a git operation never runs concurrently with this.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms);
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms);
    }
}

/// The configured network deadline.
pub(crate) fn network_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(NETWORK_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// The remote at `url` with the credentials the config names: a token from `tokens` (the
/// `gitops.token`, else the GitHub App's installation token or the `github.token`) for https,
/// asked for each fetch and push, the key file or the agent for ssh, nothing for `file://`.
/// `github` names the repository on GitHub (the config's `github_repo`), which picks the App
/// installation; without it, the URL's `OWNER/NAME` does.
pub fn remote(
    gitops: &GitopsSpec,
    url: &repo::RemoteUrl,
    tokens: Option<&Arc<dyn TokenSource>>,
    github: Option<&RepoName>,
) -> repo::Remote {
    let auth = match url.transport() {
        repo::Transport::File => repo::GitAuth::None,
        repo::Transport::Ssh => repo::GitAuth::Ssh {
            key_file: gitops.ssh_key_file.clone(),
        },
        repo::Transport::Http => match tokens {
            Some(t) => repo::GitAuth::Provided(repo::GitTokens {
                source: Arc::clone(t),
                repo: github.cloned().or_else(|| repo_of(url)),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
            None => repo::GitAuth::None,
        },
    };
    repo::Remote {
        url: url.clone(),
        auth,
    }
}

/// `owner/name` of an https remote on its own host (`https://HOST/OWNER/NAME.git`), which is
/// how GitHub and GitHub Enterprise Server name repositories.
fn repo_of(url: &repo::RemoteUrl) -> Option<RepoName> {
    let host = url.as_str().split_once("://")?.1.split(['/', ':']).next()?;
    let host = host.rsplit('@').next()?;
    url.repo_on(host)?.parse().ok()
}

/// A writer for `url` with the config's identity and retry settings.
pub fn writer(
    gitops: &GitopsSpec,
    data_dir: &std::path::Path,
    url: &repo::RemoteUrl,
    token: Option<&Arc<dyn TokenSource>>,
    github: Option<&RepoName>,
    locks: writer::BranchLocks,
) -> Result<Writer, GitopsError> {
    Writer::open(
        data_dir,
        remote(gitops, url, token, github),
        identity(gitops),
        gitops.retry.clone(),
        locks,
    )
}

/// The bot identity on commits.
pub fn identity(gitops: &GitopsSpec) -> writer::Identity {
    writer::Identity {
        name: gitops.author_name.clone(),
        email: gitops.author_email.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::gitops::commit_message::render_commit;
    use deploybot_core::gitops::testing::{changes, info};

    #[test]
    fn trailers_parse_back_with_git() {
        let msg = render_commit(&info(), &changes());
        let parsed = git2::message_trailers_strs(&msg).unwrap();
        let got: Vec<(String, String)> = parsed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want: Vec<(String, String)> = info()
            .trailers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_newline_in_a_value_cannot_forge_a_trailer() {
        let mut i = info();
        i.summary = "x\nRisk-Score: 0".into();
        i.risk_score = Some(90);
        let msg = render_commit(&i, &[]);
        let parsed = git2::message_trailers_strs(&msg).unwrap();
        let scores: Vec<&str> = parsed
            .iter()
            .filter(|(k, _)| *k == "Risk-Score")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(scores, vec!["90"]);
    }

    #[test]
    fn a_push_race_is_transient_and_a_conflict_permanent() {
        let race = GitopsError::RetriesExhausted {
            branch: "main".into(),
            attempts: 10,
            last: "refs/heads/main: fetch first".into(),
        };
        let failure = Failure::from(race);
        assert!(failure.is_transient());
        assert!(
            failure.to_string().contains("still racing other writers"),
            "{failure}"
        );
        let conflict = GitopsError::Conflict {
            branch: "main".into(),
            path: "a.yaml".into(),
            location: "image".into(),
            expected: "1.0".into(),
            found: "1.5".into(),
        };
        assert_eq!(conflict.class(), Class::Permanent);
        let hook = GitopsError::HookRejected {
            branch: "main".into(),
            status: "pre-receive hook declined".into(),
            message: "frozen".into(),
        };
        assert!(!Failure::from(hook).is_transient());
        let io = GitopsError::Io {
            doing: "fetching main".into(),
            message: "connection reset".into(),
        };
        assert_eq!(io.class(), Class::Transient);
    }

    #[test]
    fn https_remotes_carry_the_token_and_file_remotes_nothing() {
        let gitops = deploybot_core::config::Config::default().gitops;
        let url = |u: &str| repo::RemoteUrl::parse(u).unwrap();
        let token: Arc<dyn TokenSource> = Arc::new(crate::adapters::github_auth::FixedToken(
            deploybot_core::secret::Secret::new("ghs_abc"),
        ));
        match remote(
            &gitops,
            &url("https://github.com/o/r.git"),
            Some(&token),
            None,
        )
        .auth
        {
            repo::GitAuth::Provided(t) => assert_eq!(t.repo, Some("o/r".parse().unwrap())),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            remote(&gitops, &url("file:///tmp/x.git"), Some(&token), None).auth,
            repo::GitAuth::None
        ));
        assert!(matches!(
            remote(&gitops, &url("git@github.com:o/r.git"), None, None).auth,
            repo::GitAuth::Ssh { key_file: None }
        ));
    }
}

/// What went wrong while writing to the GitOps repository. Every message says what was being
/// done and where; none carries a secret (tokens are only ever inside `Secret`). A `cause` is
/// part of the message and so not also the `source()`, which would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("{doing}: {cause}")]
    Git { doing: String, cause: git2::Error },
    #[error("{doing}: {url} rejected the credentials: {message}")]
    Auth {
        doing: String,
        url: String,
        message: String,
    },
    #[error("{doing}: {message}")]
    Io { doing: String, message: String },
    #[error("branch {branch} does not exist on {url}")]
    BranchMissing { branch: String, url: String },
    #[error("editing {path} on {branch}: the file does not exist at {commit}")]
    FileMissing {
        path: String,
        branch: String,
        commit: String,
    },
    #[error("editing {path} on {branch}: the file is not UTF-8 text")]
    NotText { path: String, branch: String },
    #[error("editing {path} on {branch}: {cause}")]
    Edit {
        path: String,
        branch: String,
        cause: deploybot_core::manifest::EditError,
    },
    #[error(
        "conflict on {branch}: {path} ({location}) was {expected:?} when the change was planned \
         but is {found:?} upstream now; not overwriting someone else's change"
    )]
    Conflict {
        branch: String,
        path: String,
        location: String,
        expected: String,
        found: String,
    },
    #[error("pushing {branch}: the remote's hook rejected the push ({status}): {message}")]
    HookRejected {
        branch: String,
        status: String,
        message: String,
    },
    #[error("pushing {branch}: the remote rejected {reference}: {status}")]
    PushRejected {
        branch: String,
        reference: String,
        status: String,
    },
    #[error(
        "pushing {branch}: still racing other writers after {attempts} attempts (last: {last})"
    )]
    RetriesExhausted {
        branch: String,
        attempts: u32,
        last: String,
    },
    #[error("reverting {commit} on {branch}: {reason}")]
    RevertRefused {
        branch: String,
        commit: String,
        reason: String,
    },
    #[error(
        "{path} on {branch} is a symlink; deploybot edits files, not links: point the target at \
         the file the link names"
    )]
    Symlink { path: String, branch: String },
    #[error(
        "updating {branch}: its tip {commit} was written by {who}, not the bot; \
         not touching a branch a human pushed to"
    )]
    HumanEdited {
        branch: String,
        commit: String,
        who: String,
    },
}

/// The writer's one classification: git and disk trouble, and push races that outlasted the
/// retries, may pass later; a refusal (credentials, hook, protected branch, a human's commit),
/// a conflict with someone else's change, or a missing branch or file will not.
impl Classified for GitopsError {
    fn class(&self) -> Class {
        match self {
            GitopsError::Git { .. }
            | GitopsError::Io { .. }
            | GitopsError::RetriesExhausted { .. } => Class::Transient,
            GitopsError::Auth { .. }
            | GitopsError::BranchMissing { .. }
            | GitopsError::FileMissing { .. }
            | GitopsError::NotText { .. }
            | GitopsError::Edit { .. }
            | GitopsError::Conflict { .. }
            | GitopsError::HookRejected { .. }
            | GitopsError::PushRejected { .. }
            | GitopsError::RevertRefused { .. }
            | GitopsError::Symlink { .. }
            | GitopsError::HumanEdited { .. } => Class::Permanent,
        }
    }
}

/// Every message already says what was being done and where, so it is the whole cause.
impl From<GitopsError> for Failure {
    fn from(e: GitopsError) -> Failure {
        Failure::new(e.class(), "", e.to_string())
    }
}

impl GitopsError {
    pub(crate) fn git(doing: impl Into<String>) -> impl FnOnce(git2::Error) -> GitopsError {
        let doing = doing.into();
        move |cause| GitopsError::Git { doing, cause }
    }
}
