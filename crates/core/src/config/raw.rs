//! The configuration file exactly as it is written: serde structs, one per YAML section, with
//! unknown keys rejected (a typo must not silently fall back to a default) and secrets only as
//! references (`*_env` / `*_file`). Nothing here is trusted yet: `config::resolve` turns it into
//! the typed [`super::Config`] the program runs on. Sections that belong to one concept are
//! defined next to it (`risk::RiskConfig`, `canary::JudgeConfig`, `manifest::TargetConfig`,
//! `rollout::config::RolloutConfig`, `canary::query::QueryTemplates`) and assembled here.
//!
//! Durations are written one way (`500ms`, `30s`, `5m`). The millisecond keys of earlier versions
//! (`llm.timeout_ms`, `llm.max_retry_wait_ms`, `gitops.retry.initial_backoff_ms`,
//! `gitops.retry.max_backoff_ms`) are still read, and resolution warns about each; so that "not
//! given" can be told apart from "given as the default", both spellings are `Option`s here and
//! the defaults live in [`defaults`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::canary::JudgeConfig;
use crate::canary::query::QueryTemplates;
use crate::duration::PromDuration;
use crate::github::MergeMethod;
use crate::manifest::TargetConfig;
use crate::risk::{RiskConfig, RiskThresholds};
use crate::rollout::config::RolloutConfig;

/// The defaults of the keys that have two spellings, applied by resolution and by
/// [`RawConfig::effective`].
pub mod defaults {
    use crate::duration::PromDuration;

    pub const LLM_TIMEOUT: PromDuration = PromDuration::from_secs(30);
    pub const LLM_MAX_RETRY_WAIT: PromDuration = PromDuration::from_secs(20);
    /// Kargo's values: 1 s growing 1.5x, capped at 30 s.
    pub const PUSH_INITIAL_BACKOFF: PromDuration = PromDuration::from_secs(1);
    pub const PUSH_MAX_BACKOFF: PromDuration = PromDuration::from_secs(30);
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: ServerConfig,
    pub github: GithubConfig,
    pub gitops: GitopsConfig,
    pub llm: LlmConfig,
    pub prometheus: PrometheusConfig,
    pub store: StoreConfig,
    pub risk: RiskConfig,
    pub argocd: ArgoCdConfig,
    pub alerts: AlertsConfig,
    pub services: Vec<ServiceConfig>,
}

impl RawConfig {
    /// Parses YAML text; an empty file is the default config. serde stops at the first unknown
    /// key or wrong type, and its message names it.
    pub fn from_yaml(text: &str) -> Result<RawConfig, String> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        yaml_serde::from_str(text).map_err(|e| e.to_string())
    }

    /// The config as it takes effect, in today's spelling: deprecated keys replaced by their
    /// successors, defaults of two-spelling keys filled in. What `check-config` prints; secrets
    /// appear only as references, so it is safe to print.
    pub fn effective(&self) -> RawConfig {
        let mut c = self.clone();
        let ms = |v: Option<u64>| v.map(PromDuration::from_millis);
        let llm = &mut c.llm;
        llm.timeout = llm
            .timeout
            .or(ms(llm.timeout_ms.take()))
            .or(Some(defaults::LLM_TIMEOUT));
        llm.max_retry_wait = llm
            .max_retry_wait
            .or(ms(llm.max_retry_wait_ms.take()))
            .or(Some(defaults::LLM_MAX_RETRY_WAIT));
        let retry = &mut c.gitops.retry;
        retry.initial_backoff = retry
            .initial_backoff
            .or(ms(retry.initial_backoff_ms.take()))
            .or(Some(defaults::PUSH_INITIAL_BACKOFF));
        retry.max_backoff = retry
            .max_backoff
            .or(ms(retry.max_backoff_ms.take()))
            .or(Some(defaults::PUSH_MAX_BACKOFF));
        for s in &mut c.services {
            // Resolution already refused keys given both ways; what is left is the old one.
            let _ = s.rollout.renamed("");
            let _ = s.analysis.judge.renamed("");
        }
        c
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// The HTTP listener that receives webhooks and serves health, metrics and the status page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Path GitHub posts deliveries to.
    pub webhook_path: String,
    /// Largest accepted delivery body in bytes (GitHub caps payloads at 25 MB).
    pub max_body_bytes: usize,
    /// Name of the environment variable holding the webhook secret.
    pub webhook_secret_env: Option<String>,
    /// Path of a file holding the webhook secret.
    pub webhook_secret_file: Option<PathBuf>,
    /// How often live rollouts are ticked: analysis due, sync polled, retries re-issued.
    pub tick_interval: PromDuration,
    /// How often approvals and parked releases are re-read from GitHub, so that a lost webhook
    /// only delays a rollout.
    pub reconcile_interval: PromDuration,
    /// Public base URL of this server (`https://deploybot.example.com`): when set, PR status
    /// comments link to the rollout's status page under it.
    pub public_url: Option<String>,
    /// Address of the admin listener: the status page, `GET /api/rollouts` and `/metrics`, which
    /// the webhook listener (the one exposed to the internet) does not serve.
    pub admin_listen: SocketAddr,
    /// Connections served at once on each listener; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from when the connection is ready
    /// for the next request: an idle keep-alive connection is closed after it too.
    pub header_timeout: PromDuration,
    /// Time a client has to send a delivery's body once its headers arrived.
    pub body_timeout: PromDuration,
    /// Bytes of delivery bodies held in memory at once, all connections together; a body that
    /// does not fit is answered 503 with `Retry-After` before it is read.
    pub intake_budget_bytes: usize,
    /// On SIGTERM: how long in-flight requests and deliveries may take before they are
    /// abandoned (they stay queued) and the process exits.
    pub shutdown_grace: PromDuration,
    /// Deliveries other than commands processed at once (one at a time per pull request).
    pub workers: usize,
    /// Commands (`/rollback`, `/pause`, ...) processed at once, in their own lane, so they
    /// never wait behind assessments.
    pub command_workers: usize,
    /// Bytes of stored payloads the worker holds in memory at once.
    pub worker_budget_bytes: usize,
    /// Retries of a delivery that failed transiently; it then waits in the dead-letter state.
    pub delivery_retry: DeliveryRetryConfig,
}

/// `server.delivery_retry`: how a delivery that failed transiently is tried again. A delivery
/// waiting for its retry holds back only later deliveries of its own pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryRetryConfig {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one ...
    pub initial_backoff: PromDuration,
    /// ... up to this.
    pub max_backoff: PromDuration,
}

impl Default for DeliveryRetryConfig {
    fn default() -> Self {
        DeliveryRetryConfig {
            max_attempts: 5,
            initial_backoff: PromDuration::from_secs(1),
            max_backoff: PromDuration::from_secs(60),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            webhook_path: "/webhook".into(),
            max_body_bytes: 25 * 1024 * 1024,
            webhook_secret_env: None,
            webhook_secret_file: None,
            tick_interval: PromDuration::from_secs(5),
            reconcile_interval: PromDuration::from_secs(60),
            public_url: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_connections: 256,
            header_timeout: PromDuration::from_secs(10),
            body_timeout: PromDuration::from_secs(10),
            intake_budget_bytes: 64 * 1024 * 1024,
            shutdown_grace: PromDuration::from_secs(20),
            workers: 4,
            command_workers: 2,
            worker_budget_bytes: 64 * 1024 * 1024,
            delivery_retry: DeliveryRetryConfig::default(),
        }
    }
}

/// How deploybot talks to GitHub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// REST API base URL; GitHub Enterprise Server uses `https://HOST/api/v3`.
    pub api_url: String,
    /// Environment variable holding a token (PAT or GitHub App installation token).
    pub token_env: Option<String>,
    /// File holding a token.
    pub token_file: Option<PathBuf>,
    /// The GitHub App's id: deploybot mints installation tokens itself (with `private_key_*`).
    pub app_id: Option<u64>,
    /// Environment variable holding the App's private key (PEM).
    pub private_key_env: Option<String>,
    /// File holding the App's private key (PEM), as GitHub hands it out.
    pub private_key_file: Option<PathBuf>,
    /// Login of the bot account; its own comments and reviews are ignored.
    pub bot_login: String,
    /// Time allowed for one API request, its response body included.
    pub timeout: PromDuration,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: "https://api.github.com".into(),
            token_env: None,
            token_file: None,
            app_id: None,
            private_key_env: None,
            private_key_file: None,
            bot_login: "deploybot[bot]".into(),
            timeout: PromDuration::from_secs(30),
        }
    }
}

/// How a step reaches the branch Argo CD watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Commit and push straight to the environment branch.
    #[default]
    Direct,
    /// Every step and every revert through a pull request on the GitOps repository, merged by
    /// deploybot once the repository's own required checks pass: for branches protected by
    /// "require a pull request".
    PullRequest,
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
    /// Prefix of bot branches: `<prefix>/<service>/<env>/<deploy-id>` (approval PRs), with
    /// `-step-<weight>` or `-revert-<commit>` after it in PR mode.
    pub branch_prefix: String,
    /// How every PR deploybot merges is merged (approval PRs, PR mode's steps and reverts):
    /// `merge`, `squash` or `rebase`, one the repository allows.
    pub merge_method: MergeMethod,
    /// How long a PR deploybot merges (an approved approval PR; in PR mode a step's or a
    /// revert's) may wait for the GitOps repository's required checks (GitHub refusing the
    /// merge) before the rollout pauses (a revert: fails, alerting) naming the rule.
    pub checks_timeout: PromDuration,
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
    /// Time allowed for one fetch or push over the network (connecting, and each read or write
    /// of the remote, are cut at it too).
    pub timeout: PromDuration,
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
            merge_method: MergeMethod::Merge,
            checks_timeout: PromDuration::from_secs(30 * 60),
            pr_labels: vec!["deploybot".into()],
            human_edited_label: "deploybot/human-edited".into(),
            token_env: None,
            token_file: None,
            ssh_key_file: None,
            retry: RetryConfig::default(),
            timeout: PromDuration::from_secs(60),
        }
    }
}

/// `gitops.retry`: bounded retry of races (rejected pushes), with exponential backoff and
/// jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt (default `1s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_backoff: Option<PromDuration>,
    /// Deprecated spelling of `initial_backoff`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    /// Growth of the wait per attempt.
    pub multiplier: f64,
    /// Longest wait between attempts (default `30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<PromDuration>,
    /// Deprecated spelling of `max_backoff`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 10,
            initial_backoff: None,
            initial_backoff_ms: None,
            multiplier: 1.5,
            max_backoff: None,
            max_backoff_ms: None,
        }
    }
}

/// The `llm` config section. Without `base_url` no model is called: the policy alone decides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// OpenAI-compatible API base URL (e.g. `http://127.0.0.1:8081/v1`).
    pub base_url: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Environment variable holding the API key (none for local servers without auth).
    pub api_key_env: Option<String>,
    /// File holding the API key.
    pub api_key_file: Option<PathBuf>,
    /// Time allowed for one request (default `30s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<PromDuration>,
    /// Deprecated spelling of `timeout`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt (429, 5xx, timeouts, connection errors).
    pub max_retries: u32,
    /// Longest wait between attempts (default `20s`); a `Retry-After` above it ends the retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retry_wait: Option<PromDuration>,
    /// Deprecated spelling of `max_retry_wait`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retry_wait_ms: Option<u64>,
    /// Prompt budget in tokens (estimated at 4 characters each); larger diffs are summarised.
    /// Lowered at run time to fit the model's context when the server says how large it is.
    pub max_prompt_tokens: usize,
    /// Reply budget in tokens.
    pub max_output_tokens: u32,
    /// How the API key is sent: `bearer` (`Authorization: Bearer`, OpenAI, Ollama, llama.cpp)
    /// or `api-key` (an `api-key` header, Azure OpenAI).
    pub auth: ModelAuth,
}

/// How the model's API key is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelAuth {
    /// `Authorization: Bearer <key>`.
    #[default]
    Bearer,
    /// `api-key: <key>` (Azure OpenAI's key authentication).
    ApiKey,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: None,
            model: None,
            api_key_env: None,
            api_key_file: None,
            timeout: None,
            timeout_ms: None,
            max_retries: 2,
            max_retry_wait: None,
            max_retry_wait_ms: None,
            max_prompt_tokens: 12_000,
            max_output_tokens: 800,
            auth: ModelAuth::Bearer,
        }
    }
}

/// The `prometheus` config section: where the server is and how patiently to ask it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus server, e.g. `http://prometheus:9090` (a path prefix such as
    /// `http://host/prometheus` is kept).
    pub url: Option<String>,
    /// Time allowed for one HTTP request, also sent to Prometheus as the query `timeout`.
    pub timeout: PromDuration,
    /// How many times a transient failure (5xx, 429, timeout, connection refused) is retried
    /// before the source reports Prometheus unavailable. Bad queries (4xx) are never retried.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: PromDuration,
    /// Upper bound of the wait between retries.
    pub max_backoff: PromDuration,
    /// Environment variable holding a bearer token (Prometheus behind an auth proxy).
    pub bearer_token_env: Option<String>,
    /// File holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// An interval whose newest request-counter sample is older than this at the interval's end
    /// is stale and reported as missing (a dead scrape target must not look like a quiet one).
    pub staleness_limit: PromDuration,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: None,
            timeout: PromDuration::from_secs(10),
            retries: 3,
            backoff: PromDuration::from_millis(500),
            max_backoff: PromDuration::from_secs(5),
            bearer_token_env: None,
            bearer_token_file: None,
            staleness_limit: PromDuration::from_secs(120),
        }
    }
}

/// Where deploybot keeps its state (deliveries, assessments, rollouts) and its git clones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Data directory; the SQLite database and the GitOps clones live under it.
    pub data_dir: PathBuf,
    /// `postgres://user@host:5432/database`: the store is this PostgreSQL database instead of
    /// the SQLite file, so several replicas can share it. No password in it, and no TLS yet.
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password (with `url`).
    pub password_env: Option<String>,
    /// File holding the PostgreSQL password (with `url`).
    pub password_file: Option<PathBuf>,
    /// How long finished deliveries and their payloads are kept.
    pub retention: RetentionConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./deploybot-data"),
            url: None,
            password_env: None,
            password_file: None,
            retention: RetentionConfig::default(),
        }
    }
}

/// `store.retention`: what the prune (hourly, and `deploybot store prune`) deletes. Pending
/// deliveries are never pruned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Payload of a delivery processed successfully: emptied this long after it arrived; the
    /// row stays for the audit trail. A failed delivery keeps its payload, so it can be replayed.
    pub payloads: PromDuration,
    /// An ignored delivery (row and payload): deleted this long after it arrived.
    pub ignored: PromDuration,
    /// A processed (done or failed) delivery: deleted this long after it arrived.
    pub deliveries: PromDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            payloads: PromDuration::from_secs(72 * 3600),
            ignored: PromDuration::from_secs(24 * 3600),
            deliveries: PromDuration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The `argocd:` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArgoCdConfig {
    /// Argo CD server URL. Unset: no Argo CD; deploybot waits `settle_time` after each commit.
    pub url: Option<String>,
    /// Environment variable holding an Argo CD API token (required with `url`).
    pub token_env: Option<String>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
    /// Application name of a service in an environment; `{service}` and `{environment}`.
    pub application: String,
    /// Ask Argo CD to re-read git after each commit instead of waiting for its poll.
    pub refresh: bool,
    pub timeout: PromDuration,
    /// No longer read: a rollout reads the Application once per `server.tick_interval`. Still
    /// accepted, with a warning, so configs written for older versions load.
    pub poll: Option<PromDuration>,
    /// Without Argo CD: how long after a commit the analysis window opens.
    pub settle_time: PromDuration,
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        ArgoCdConfig {
            url: None,
            token_env: None,
            token_file: None,
            application: "{service}-{environment}".into(),
            refresh: true,
            timeout: PromDuration::from_secs(10),
            poll: None,
            settle_time: PromDuration::from_secs(60),
        }
    }
}

/// The `alerts:` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Environment variable holding a Slack-compatible incoming-webhook URL (the URL is the
    /// credential). Unset: alerts are log lines (and PR comments) only.
    pub webhook_url_env: Option<String>,
    /// File holding the webhook URL.
    pub webhook_url_file: Option<PathBuf>,
    pub timeout: PromDuration,
    /// Retries of a post that failed transiently (5xx, 429, timeout), waits doubling from 1 s.
    pub retries: u32,
    /// The same alert (rollout, level and notice) is posted once within this window.
    pub repeat_after: PromDuration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook_url_env: None,
            webhook_url_file: None,
            timeout: PromDuration::from_secs(10),
            retries: 3,
            repeat_after: PromDuration::from_secs(3600),
        }
    }
}

/// One deployable service: where its code lives and where its manifests live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name, used in commit trailers, labels and PromQL (`{{service}}`).
    pub name: String,
    /// Application repository (`owner/name`) whose pull requests deploy this service.
    pub app_repo: String,
    /// Kubernetes namespace (`{{namespace}}` in PromQL).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Container image repository of the service, without a tag (e.g. `ghcr.io/acme/checkout`);
    /// a rollout deploys `image:tag`. Required when the service has environments.
    #[serde(default)]
    pub image: Option<String>,
    /// Image tag of a merged change: `{sha}`, `{short_sha}` (7 characters) and `{pr}`.
    #[serde(default = "default_image_tag")]
    pub image_tag: String,
    /// Checks (check runs or commit statuses) that must pass on the merge commit before a
    /// merged change rolls out, e.g. the article's `lint`, `test`, `llm-eval`, `sbom-cve-scan`.
    #[serde(default)]
    pub required_checks: Vec<String>,
    /// Environments in promotion order, e.g. staging then production.
    #[serde(default)]
    pub environments: Vec<EnvironmentConfig>,
    /// Canary analysis: which metrics and how they are judged.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Per-service overrides of the risk thresholds.
    #[serde(default)]
    pub risk: Option<RiskThresholds>,
    /// How rollouts of this service proceed: canary plan, bake, analysis interval, limits.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// The paths of the application repository that belong to this service (globs, e.g.
    /// `services/checkout/**`), so that several services can share one repository; empty: all
    /// of it. A merged pull request releases every service whose paths it touches.
    #[serde(default)]
    pub paths: Vec<String>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_image_tag() -> String {
    "sha-{short_sha}".into()
}

/// One environment of a service and the manifests that deploy it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Environment name (`staging`, `production`, ...).
    pub name: String,
    /// GitOps repository URL for this environment (defaults to `gitops.repo_url`).
    #[serde(default)]
    pub repo_url: Option<String>,
    /// `owner/name` of this environment's `repo_url` on GitHub (approval PRs, webhooks), for a
    /// URL that does not say it (another git host than GitHub's). Default: read from a
    /// `repo_url` on github.com or on the GitHub Enterprise Server of `github.api_url`.
    #[serde(default)]
    pub github_repo: Option<String>,
    /// Branch Argo CD watches.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Manifest edits that deploy a new version (image tags) and shift traffic (canary weights).
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Whether a human must approve before this environment changes.
    #[serde(default)]
    pub require_approval: bool,
    /// Approvals the approval PR needs: reviews in state approved, on its current head, by
    /// users with write access or in `approving_teams`, never by the change's author.
    #[serde(default = "default_required_approvals")]
    pub required_approvals: u32,
    /// Teams (`org/team-slug`) whose members may approve even without write access.
    #[serde(default)]
    pub approving_teams: Vec<String>,
    /// Who decides an approval PR is approved: `deploybot` counts the reviews itself;
    /// `branch_protection` leaves it to the branch's protection rules: deploybot tries the merge
    /// on every review and reconcile, and GitHub refuses until the rules are met.
    #[serde(default)]
    pub approvals_counted_by: ApprovalAuthority,
    /// A person's merge of the approval PR that the approvals on its merged head do not cover
    /// is an out-of-band change: the rollout pauses and alerts, and (unless this is false) the
    /// merge is reverted through git with the reason in the commit.
    #[serde(default = "default_true")]
    pub revert_unapproved_merges: bool,
    /// This environment's Argo CD, where it is not the top-level `argocd` one (another cluster,
    /// another Application name); unset keys take the top-level section's values.
    #[serde(default)]
    pub argocd: Option<EnvironmentArgoCd>,
    /// This environment's Prometheus, where it is not `prometheus.url` (one per cluster).
    #[serde(default)]
    pub prometheus: Option<EnvironmentPrometheus>,
}

/// `services[].environments[].argocd`: this environment's Argo CD server and Application name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentArgoCd {
    /// The Argo CD server of this environment; needs its own `token_env` or `token_file` (a
    /// token of one server is never sent to another). Unset: `argocd.url` and its token.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The Application name (`{service}`, `{environment}`). Unset: `argocd.application`.
    #[serde(default)]
    pub application: Option<String>,
}

/// `services[].environments[].prometheus`: this environment's Prometheus server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentPrometheus {
    /// The Prometheus of this environment; the other `prometheus` settings (timeout, retries,
    /// staleness) are the top-level ones.
    pub url: String,
    /// Its bearer token, if it needs one (the top-level token is never sent to another server).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// Who decides that an approval PR has its approvals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAuthority {
    #[default]
    Deploybot,
    BranchProtection,
}

fn default_required_approvals() -> u32 {
    1
}

fn default_branch() -> String {
    "main".into()
}

/// Canary analysis settings of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// The judge and its statistical settings.
    pub judge: JudgeConfig,
    /// PromQL templates for the metrics the judge reads.
    pub queries: QueryTemplates,
}
