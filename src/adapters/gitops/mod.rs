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

use crate::adapters::secrets::Resolve;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use deploybot_core::gitops::{FileEdit, ManifestEdit};
pub use port::Writers;
pub use writer::{CommitPlan, WriteOutcome, Writer};

use deploybot_core::failure::{Class, Classified, Failure};
use deploybot_core::retry::{Jitter, RetryOn, RetryPolicy};

/// How a step reaches the branch Argo CD watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Commit and push straight to the environment branch.
    #[default]
    Direct,
    /// Push to a bot branch and open (or reuse) a pull request against the environment branch.
    PullRequest,
}

/// Bounded retry of races (rejected pushes), with exponential backoff and jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
    /// Longest wait between attempts, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    /// Kargo's values: 10 tries, 1 s growing 1.5x, capped at 30 s.
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 1000,
            multiplier: 1.5,
            max_backoff_ms: 30_000,
        }
    }
}

impl RetryConfig {
    /// The retry policy of push races: exponential, capped, with "equal jitter" so that racing
    /// writers spread out but never wait less than half.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial: Duration::from_millis(self.initial_backoff_ms),
            multiplier: self.multiplier,
            max: Duration::from_millis(self.max_backoff_ms),
            jitter: Jitter::Equal,
            on: RetryOn::Transient,
        }
    }

    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if self.max_attempts == 0 {
            problems.push(format!("{key}.max_attempts: must be at least 1"));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            problems.push(format!(
                "{key}.multiplier: must be a number >= 1, got {}",
                self.multiplier
            ));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            problems.push(format!(
                "{key}.max_backoff_ms: must be >= {key}.initial_backoff_ms ({})",
                self.initial_backoff_ms
            ));
        }
    }
}

/// The `gitops` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitopsConfig {
    /// Default GitOps repository URL (`file://`, `https://`, `ssh://`) for environments that do
    /// not name their own.
    pub repo_url: Option<String>,
    /// `owner/name` of the GitOps repository on GitHub, for approval PRs and its webhooks.
    /// Default: read from `repo_url` when it is on github.com (set it for GitHub Enterprise).
    pub github_repo: Option<String>,
    /// `direct` or `pull_request`.
    pub mode: WriteMode,
    /// Name on the bot's commits (author and committer).
    pub author_name: String,
    /// Email on the bot's commits; also how the bot recognises its own commits.
    pub author_email: String,
    /// Prefix of bot branches in PR mode: `<prefix>/<service>/<env>/<deploy-id>`.
    pub branch_prefix: String,
    /// Labels put on the pull requests the bot opens.
    pub pr_labels: Vec<String>,
    /// Label put on a bot PR whose branch a human pushed to (the bot then stops updating it).
    pub human_edited_label: String,
    /// Environment variable holding the token for `https://` remotes (falls back to
    /// `github.token_*`).
    pub token_env: Option<String>,
    /// File holding the token for `https://` remotes.
    pub token_file: Option<PathBuf>,
    /// Private key for `ssh://` remotes; unset means the ssh agent.
    pub ssh_key_file: Option<PathBuf>,
    /// Retry of rejected pushes.
    pub retry: RetryConfig,
}

impl Default for GitopsConfig {
    fn default() -> Self {
        GitopsConfig {
            repo_url: None,
            github_repo: None,
            mode: WriteMode::Direct,
            author_name: "deploybot".into(),
            author_email: "deploybot@users.noreply.github.com".into(),
            branch_prefix: "deploybot".into(),
            pr_labels: vec!["deploybot".into()],
            human_edited_label: "deploybot/human-edited".into(),
            token_env: None,
            token_file: None,
            ssh_key_file: None,
            retry: RetryConfig::default(),
        }
    }
}

impl GitopsConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Some(url) = &self.repo_url
            && let Err(e) = repo::RemoteUrl::parse(url)
        {
            problems.push(format!("gitops.repo_url: {e}"));
        }
        if self.author_name.trim().is_empty() {
            problems.push("gitops.author_name: must not be empty".into());
        }
        if !self.author_email.contains('@') || self.author_email.contains(char::is_whitespace) {
            problems.push(format!(
                "gitops.author_email: must be an email address, got {:?}",
                self.author_email
            ));
        }
        let prefix = self.branch_prefix.trim_matches('/');
        if prefix.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{prefix}/x")) {
            problems.push(format!(
                "gitops.branch_prefix: must be a valid branch name prefix, got {:?}",
                self.branch_prefix
            ));
        }
        for (i, l) in self.pr_labels.iter().enumerate() {
            if l.trim().is_empty() {
                problems.push(format!("gitops.pr_labels[{i}]: must not be empty"));
            }
        }
        if self.human_edited_label.trim().is_empty() {
            problems.push("gitops.human_edited_label: must not be empty".into());
        }
        if let Err(e) = self.token_ref() {
            problems.push(e);
        }
        if let Some(r) = &self.github_repo
            && r.parse::<deploybot_core::github::RepoName>().is_err()
        {
            problems.push(format!("gitops.github_repo: must be OWNER/NAME, got {r:?}"));
        }
        self.retry.validate("gitops.retry", problems);
    }

    /// The token reference for `https://` remotes, if configured here.
    pub fn token_ref(&self) -> Result<Option<deploybot_core::secret::SecretRef>, String> {
        deploybot_core::secret::SecretRef::from_pair(
            "gitops.token",
            self.token_env.as_ref(),
            self.token_file.as_ref(),
        )
    }

    /// The remote for `url` with the credentials this config names, resolved now: the
    /// `gitops.token_*` (else `fallback_token`, e.g. `github.token_*`) for https, the key file or
    /// the agent for ssh, nothing for `file://`. Errors name the key, never the value.
    pub fn remote(
        &self,
        url: &str,
        fallback_token: Option<&deploybot_core::secret::SecretRef>,
    ) -> Result<repo::Remote, String> {
        let url = repo::RemoteUrl::parse(url)?;
        let auth = match url.transport() {
            repo::Transport::File => repo::GitAuth::None,
            repo::Transport::Ssh => repo::GitAuth::Ssh {
                key_file: self.ssh_key_file.clone(),
            },
            repo::Transport::Http => match (self.token_ref()?, fallback_token) {
                (Some(r), _) => {
                    repo::GitAuth::Token(r.resolve().map_err(|e| format!("gitops.token: {e}"))?)
                }
                (None, Some(r)) => {
                    repo::GitAuth::Token(r.resolve().map_err(|e| format!("github.token: {e}"))?)
                }
                (None, None) => repo::GitAuth::None,
            },
        };
        Ok(repo::Remote { url, auth })
    }

    /// A writer for `url` with this config's identity and retry settings.
    pub fn writer(
        &self,
        data_dir: &std::path::Path,
        url: &str,
        fallback_token: Option<&deploybot_core::secret::SecretRef>,
        locks: writer::BranchLocks,
    ) -> Result<Writer, GitopsError> {
        let remote = self
            .remote(url, fallback_token)
            .map_err(|message| GitopsError::Io {
                doing: format!("setting up the GitOps remote {url}"),
                message,
            })?;
        Writer::open(data_dir, remote, self.identity(), self.retry.clone(), locks)
    }

    /// The bot identity on commits.
    pub fn identity(&self) -> writer::Identity {
        writer::Identity {
            name: self.author_name.clone(),
            email: self.author_email.clone(),
        }
    }

    /// `owner/name` when the repository is on GitHub, so its webhooks are accepted.
    pub fn repo_full_name(&self) -> Option<String> {
        if let Some(r) = &self.github_repo {
            return Some(r.clone());
        }
        let url = self.repo_url.as_deref()?;
        let rest = url
            .strip_prefix("https://github.com/")
            .or_else(|| url.strip_prefix("git@github.com:"))
            .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
        Some(
            rest.trim_end_matches(".git")
                .trim_end_matches('/')
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::gitops::FileChange;
    use deploybot_core::gitops::commit_message::{CommitInfo, render_commit};
    use deploybot_core::manifest::ValueChange;

    fn info() -> CommitInfo {
        CommitInfo {
            summary: "ship ghcr.io/acme/checkout:1.4.2".into(),
            deploy_id: "d-20261126-0042".into(),
            service: "checkout".into(),
            environment: "production".into(),
            step: Some("canary 2/5".into()),
            weight: Some(20),
            image: Some("ghcr.io/acme/checkout:1.4.2".into()),
            risk_score: Some(37),
            source_pr: Some("acme/checkout#42".into()),
        }
    }

    fn changes() -> Vec<FileChange> {
        vec![FileChange {
            path: "apps/checkout/production/deployment.yaml".into(),
            changes: vec![ValueChange {
                location: "doc 0: spec.template.spec.containers[0].image".into(),
                line: 21,
                old: "ghcr.io/acme/checkout:1.4.1".into(),
                new: "ghcr.io/acme/checkout:1.4.2".into(),
            }],
        }]
    }

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
    fn defaults_are_valid() {
        let mut p = Vec::new();
        GitopsConfig::default().validate(&mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn problems_name_their_keys() {
        let c = GitopsConfig {
            repo_url: Some("ftp://x/y".into()),
            author_email: "nobody".into(),
            branch_prefix: "bad..prefix".into(),
            retry: RetryConfig {
                max_attempts: 0,
                multiplier: 0.5,
                ..RetryConfig::default()
            },
            ..GitopsConfig::default()
        };
        let mut p = Vec::new();
        c.validate(&mut p);
        let all = p.join("\n");
        for key in [
            "gitops.repo_url",
            "gitops.author_email",
            "gitops.branch_prefix",
            "gitops.retry.max_attempts",
            "gitops.retry.multiplier",
        ] {
            assert!(all.contains(key), "{key} missing in {all}");
        }
    }

    #[test]
    fn https_remotes_take_the_token_from_the_named_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "ghs_abc\n").unwrap();
        let c = GitopsConfig {
            token_file: Some(file),
            ..GitopsConfig::default()
        };
        match c.remote("https://github.com/o/r.git", None).unwrap().auth {
            repo::GitAuth::Token(t) => assert_eq!(t.expose(), "ghs_abc"),
            other => panic!("{other:?}"),
        }
        let missing = GitopsConfig {
            token_env: Some("DEPLOYBOT_TEST_UNSET_7731".into()),
            ..GitopsConfig::default()
        };
        let e = missing
            .remote("https://github.com/o/r.git", None)
            .unwrap_err();
        assert!(
            e.contains("gitops.token") && e.contains("DEPLOYBOT_TEST_UNSET_7731"),
            "{e}"
        );
        assert!(matches!(
            c.remote("file:///tmp/x.git", None).unwrap().auth,
            repo::GitAuth::None
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let r = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 300,
        };
        let p = r.policy();
        for _ in 0..50 {
            let first = p.delay(1, rand::random()).unwrap();
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = p.delay(8, rand::random()).unwrap();
            assert!(late >= Duration::from_millis(150) && late <= Duration::from_millis(300));
        }
        assert_eq!(p.delay(10, 0.5), None, "ten attempts, then give up");
    }
}

/// What went wrong while writing to the GitOps repository. Every message says what was being
/// done and where; none carries a secret (tokens are only ever inside `Secret`).
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error("{doing}: {source}")]
    Git {
        doing: String,
        #[source]
        source: git2::Error,
    },
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
    #[error("editing {path} on {branch}: {source}")]
    Edit {
        path: String,
        branch: String,
        #[source]
        source: deploybot_core::manifest::EditError,
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
        move |source| GitopsError::Git { doing, source }
    }
}
