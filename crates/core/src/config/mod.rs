//! The configuration, parsed once: [`raw`] is the YAML as written, [`resolve`] turns it into the
//! typed [`Config`] every other part of deploybot reads. Resolution parses each value into the
//! type that means it (repositories into [`RepoName`], remotes into [`RemoteUrl`], canary plans
//! and timing into [`Settings`], tag templates into [`TagTemplate`], URLs into [`Url`],
//! durations into [`PromDuration`]), checks that the secrets the config references are present
//! (through the [`SecretPresence`] port: reading them is the shell's), and cross-checks sections.
//! Every problem is collected before it fails, each naming the key, the value and the fix; a
//! config that resolves cannot be found wanting at run time.
//!
//! Reading the file is the shell's (`deploybot::config`); this module only turns text into
//! values.

pub mod raw;
mod resolve;

use crate::retry::{Jitter, RetryOn, RetryPolicy};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

use crate::duration::PromDuration;
use crate::github::{MergeMethod, RepoName};
use crate::gitops::remote::RemoteUrl;
use crate::manifest::{TargetConfig, TargetKind, Track};
use crate::risk::policy::Policy;
use crate::risk::{RiskConfig, Thresholds};
use crate::rollout::config::OnNewVersion;
use crate::rollout::record::Settings;
use crate::rollout::trigger::TagTemplate;
use crate::secret::SecretRef;

pub use raw::{AnalysisConfig, ApprovalAuthority, ModelAuth, RawConfig, WriteMode};
pub use resolve::{base_url, resolve};

/// The configuration deploybot runs on: every value parsed into its type, every cross-reference
/// checked. Holds secret references only, never their values.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSpec,
    pub github: GithubSpec,
    pub gitops: GitopsSpec,
    pub llm: LlmSpec,
    pub prometheus: PrometheusSpec,
    pub store: StoreSpec,
    pub risk: RiskSpec,
    pub argocd: ArgoCdSpec,
    pub alerts: AlertsSpec,
    pub services: Vec<ServiceSpec>,
    /// The secret references in use; see [`Config::secrets`].
    secrets: Vec<(SecretKey, SecretRef)>,
}

impl Default for Config {
    /// The config of an empty file.
    fn default() -> Self {
        match resolve(&RawConfig::default(), &ShapeOnly) {
            Ok(resolved) => resolved.config,
            Err(p) => unreachable!("the default config resolves: {p}"),
        }
    }
}

/// `server`.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub listen: SocketAddr,
    /// Starts with `/`.
    pub webhook_path: String,
    /// Greater than zero.
    pub max_body_bytes: usize,
    /// `serve` refuses to start without it.
    pub webhook_secret: Option<SecretRef>,
    /// At least 100 ms.
    pub tick_interval: PromDuration,
    /// At least 100 ms.
    pub reconcile_interval: PromDuration,
    /// An http(s) base with a host and no credentials, query or fragment.
    pub public_url: Option<Url>,
    /// Serves the status page, `GET /api/rollouts` and `/metrics`; not the same address as
    /// `listen`.
    pub admin_listen: SocketAddr,
    pub limits: ConnectionLimits,
    /// Greater than zero.
    pub shutdown_grace: PromDuration,
    pub worker: WorkerSpec,
}

/// What one client may hold of the listeners: connections, time and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// At least 1.
    pub max_connections: usize,
    /// Greater than zero.
    pub header_timeout: PromDuration,
    /// Greater than zero.
    pub body_timeout: PromDuration,
    /// At least `max_body_bytes`, so that one largest delivery fits.
    pub intake_budget_bytes: usize,
}

/// How the webhook worker runs: its lanes, its memory and its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpec {
    /// At least 1.
    pub workers: usize,
    /// At least 1.
    pub command_workers: usize,
    /// At least `max_body_bytes`, so that any stored delivery can be processed.
    pub budget_bytes: usize,
    /// Doubling, no jitter, every transient failure.
    pub retry: RetryPolicy,
}

/// `github`.
#[derive(Debug, Clone)]
pub struct GithubSpec {
    pub api_url: Url,
    /// A personal (or externally minted) token; never set together with `app`.
    pub token: Option<SecretRef>,
    /// The GitHub App deploybot authenticates as, minting installation tokens itself.
    pub app: Option<GithubApp>,
    pub bot_login: String,
    /// Greater than zero.
    pub timeout: PromDuration,
}

/// `github.app_id` with its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubApp {
    pub id: u64,
    pub private_key: SecretRef,
}

impl GithubSpec {
    /// Whether GitHub calls are authenticated at all (a token or an App).
    pub fn authenticated(&self) -> bool {
        self.token.is_some() || self.app.is_some()
    }

    /// The API base as clients join paths to it: without the `/` a parsed URL ends a bare host
    /// with (`https://api.github.com`).
    pub fn api_base(&self) -> &str {
        self.api_url.as_str().trim_end_matches('/')
    }

    /// The host of GitHub's web and git URLs, where repositories are named `OWNER/NAME`:
    /// `github.com` for the public API (`api.github.com`), `SUBDOMAIN.ghe.com` for
    /// `api.SUBDOMAIN.ghe.com`, and the API's own host for GitHub Enterprise Server
    /// (`https://HOST/api/v3`).
    pub fn web_host(&self) -> &str {
        let host = self.api_url.host_str().unwrap_or("github.com");
        if self.api_url.path().starts_with("/api/") {
            return host;
        }
        match host.strip_prefix("api.") {
            Some(web) if !web.is_empty() => web,
            _ => host,
        }
    }
}

/// `gitops`: identity, bot branches and retries of the writer; each environment's repository is
/// on its [`EnvironmentSpec`].
#[derive(Debug, Clone)]
pub struct GitopsSpec {
    /// The default repository of environments that do not name their own.
    pub repo_url: Option<RemoteUrl>,
    /// `gitops.github_repo`, else the `owner/name` of a `repo_url` on GitHub's host (see
    /// [`GithubSpec::web_host`]): where approval PRs of environments without their own
    /// `repo_url` go, and whose webhooks are accepted.
    pub github_repo: Option<RepoName>,
    pub mode: WriteMode,
    pub author_name: String,
    /// Contains `@`; how the bot recognises its own commits.
    pub author_email: String,
    /// A valid branch-name prefix, without surrounding `/`.
    pub branch_prefix: String,
    /// Every merge deploybot makes uses it.
    pub merge_method: MergeMethod,
    /// PR mode's wait for required checks; greater than zero.
    pub checks_timeout: PromDuration,
    pub pr_labels: Vec<String>,
    pub human_edited_label: String,
    /// For `https://` remotes; `github.token` is used when unset.
    pub token: Option<SecretRef>,
    /// For `ssh://` remotes; unset means the ssh agent.
    pub ssh_key_file: Option<PathBuf>,
    pub retry: PushRetry,
    /// Greater than zero.
    pub timeout: PromDuration,
}

/// `gitops.retry`: how rejected pushes are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRetry {
    /// Attempts in total, the first included; at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt.
    pub initial_backoff: PromDuration,
    /// Growth of the wait per attempt; at least 1.
    pub multiplier: f64,
    /// Longest wait; at least `initial_backoff`.
    pub max_backoff: PromDuration,
}

impl PushRetry {
    /// The retry policy of push races: exponential, capped, with "equal jitter" so that racing
    /// writers spread out but never wait less than half.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial: self.initial_backoff.as_duration(),
            multiplier: self.multiplier,
            max: self.max_backoff.as_duration(),
            jitter: Jitter::Equal,
            on: RetryOn::Transient,
        }
    }
}

/// `llm`.
#[derive(Debug, Clone)]
pub struct LlmSpec {
    /// The model to ask; `None` without `llm.base_url` (the policy alone decides).
    pub model: Option<ModelSpec>,
    /// Prompt budget in tokens, also used to summarise diffs when no model is asked.
    pub max_prompt_tokens: usize,
}

/// An OpenAI-compatible model deploybot asks (`llm` with a `base_url`).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// http(s).
    pub base_url: Url,
    /// Not empty.
    pub model: String,
    pub api_key: Option<SecretRef>,
    /// How the key is sent.
    pub auth: ModelAuth,
    /// Greater than zero.
    pub timeout: PromDuration,
    /// At most 10.
    pub max_retries: u32,
    pub max_retry_wait: PromDuration,
    /// At least 100.
    pub max_output_tokens: u32,
}

impl ModelSpec {
    /// `model` at `base_url` with the default timeout, retries and reply budget.
    pub fn new(base_url: Url, model: impl Into<String>) -> ModelSpec {
        let d = raw::LlmConfig::default();
        ModelSpec {
            base_url,
            model: model.into(),
            api_key: None,
            auth: ModelAuth::Bearer,
            timeout: raw::defaults::LLM_TIMEOUT,
            max_retries: d.max_retries,
            max_retry_wait: raw::defaults::LLM_MAX_RETRY_WAIT,
            max_output_tokens: d.max_output_tokens,
        }
    }
}

/// `prometheus`.
#[derive(Debug, Clone)]
pub struct PrometheusSpec {
    /// An http(s) base ending in `/` (so joining `api/v1/query` keeps a path prefix); unset, no
    /// canary can be judged.
    pub url: Option<Url>,
    /// Greater than zero.
    pub timeout: PromDuration,
    /// At most 10.
    pub retries: u32,
    /// Greater than zero.
    pub backoff: PromDuration,
    /// At least `backoff`.
    pub max_backoff: PromDuration,
    pub bearer_token: Option<SecretRef>,
    /// Greater than zero.
    pub staleness_limit: PromDuration,
}

impl Default for PrometheusSpec {
    fn default() -> Self {
        Config::default().prometheus
    }
}

/// `store`.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub data_dir: PathBuf,
    /// `store.url`: PostgreSQL instead of the SQLite file.
    pub postgres: Option<PostgresSpec>,
    pub retention: Retention,
}

/// `store.url` and its password: a `postgres://` URL with a host, no password and no TLS mode
/// but `disable` (TLS is not supported yet).
#[derive(Debug, Clone)]
pub struct PostgresSpec {
    pub url: String,
    pub password: Option<SecretRef>,
}

/// `store.retention`: each greater than zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub payloads: PromDuration,
    pub ignored: PromDuration,
    pub deliveries: PromDuration,
}

impl Default for Retention {
    fn default() -> Self {
        let d = raw::RetentionConfig::default();
        Retention {
            payloads: d.payloads,
            ignored: d.ignored,
            deliveries: d.deliveries,
        }
    }
}

impl StoreSpec {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("deploybot.sqlite3")
    }
}

/// `risk`: the policy, compiled once, and the global thresholds.
#[derive(Debug, Clone)]
pub struct RiskSpec {
    /// The section as written; part of the digest that decides whether a stored assessment is
    /// still valid.
    pub config: RiskConfig,
    pub policy: Policy,
    /// `risk.thresholds` over the built-in defaults.
    pub thresholds: Thresholds,
}

/// `argocd`.
#[derive(Debug, Clone)]
pub struct ArgoCdSpec {
    /// The server and its token; `None` without `argocd.url` (a commit then settles for
    /// `settle_time`).
    pub server: Option<ArgoCdServer>,
    /// Uses only `{service}` and `{environment}`.
    pub application: String,
    pub refresh: bool,
    /// Greater than zero.
    pub timeout: PromDuration,
    pub settle_time: PromDuration,
}

/// An Argo CD server deploybot reads Applications from.
#[derive(Debug, Clone)]
pub struct ArgoCdServer {
    pub url: Url,
    pub token: SecretRef,
}

impl ArgoCdSpec {
    /// The Application name for `service` in `environment` from the top-level template (an
    /// environment may name its own: [`Config::application_name`]).
    pub fn application_name(&self, service: &str, environment: &str) -> String {
        application_name(&self.application, service, environment)
    }
}

fn application_name(template: &str, service: &str, environment: &str) -> String {
    template
        .replace("{service}", service)
        .replace("{environment}", environment)
}

/// A Prometheus server: its base URL (ending in `/`) and bearer token, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusServer {
    pub url: Url,
    pub bearer_token: Option<SecretRef>,
}

impl Config {
    /// The Argo CD server `env` is read from: its own, else `argocd.url`'s; `None` without
    /// either (commits then settle for `argocd.settle_time`).
    pub fn argocd_server<'a>(&'a self, env: &'a EnvironmentSpec) -> Option<&'a ArgoCdServer> {
        env.argocd.as_ref().or(self.argocd.server.as_ref())
    }

    /// The Application of `service` in `env`: the environment's template, else
    /// `argocd.application`.
    pub fn application_name(&self, service: &str, env: &EnvironmentSpec) -> String {
        let template = env
            .application
            .as_deref()
            .unwrap_or(&self.argocd.application);
        application_name(template, service, &env.name)
    }

    /// The Prometheus `env` is judged from: its own, else `prometheus.url` with
    /// `prometheus.bearer_token`; `None` without either.
    pub fn prometheus_server(&self, env: &EnvironmentSpec) -> Option<PrometheusServer> {
        env.prometheus.clone().or_else(|| {
            self.prometheus.url.clone().map(|url| PrometheusServer {
                url,
                bearer_token: self.prometheus.bearer_token.clone(),
            })
        })
    }
}

/// `alerts`.
#[derive(Debug, Clone)]
pub struct AlertsSpec {
    pub webhook_url: Option<SecretRef>,
    /// Greater than zero.
    pub timeout: PromDuration,
    /// At most 10.
    pub retries: u32,
    pub repeat_after: PromDuration,
}

impl AlertsSpec {
    /// The retry of one alert post: `retries` more tries, waits doubling from 1 s up to 30 s.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy::doubling(
            self.retries.saturating_add(1),
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        )
    }
}

/// One service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Unique, not empty.
    pub name: String,
    pub app_repo: RepoName,
    pub namespace: String,
    /// Renders the tag of a merged change.
    pub image_tag: TagTemplate,
    pub required_checks: Vec<String>,
    /// What a rollout of this service deploys, and where; `None` for a service that is only
    /// assessed (it has no environments).
    pub deploy: Option<DeploySpec>,
    /// The judge's settings and their queries, checked against each other.
    pub analysis: AnalysisConfig,
    /// `services[].risk` over `risk.thresholds`.
    pub thresholds: Thresholds,
    /// What a new rollout of this service copies into its record.
    pub settings: Settings,
    pub on_new_version: OnNewVersion,
    /// The paths of the application repository that are this service's.
    pub paths: ServicePaths,
}

/// The paths of an application repository that belong to one service: globs matched on the
/// repository path (`*` stays within a directory), or the whole repository.
#[derive(Debug, Clone, Default)]
pub struct ServicePaths {
    /// As written; empty: the whole repository.
    pub patterns: Vec<String>,
    set: Option<globset::GlobSet>,
}

impl ServicePaths {
    /// Compiles `patterns`; the error names the pattern that is not a glob.
    pub fn new(patterns: &[String]) -> Result<ServicePaths, (usize, String)> {
        if patterns.is_empty() {
            return Ok(ServicePaths::default());
        }
        let mut set = globset::GlobSetBuilder::new();
        for (i, p) in patterns.iter().enumerate() {
            let glob = globset::GlobBuilder::new(p.trim_start_matches('/'))
                .literal_separator(true)
                .build()
                .map_err(|e| (i, e.to_string()))?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| (0, e.to_string()))?;
        Ok(ServicePaths {
            patterns: patterns.to_vec(),
            set: Some(set),
        })
    }

    /// The whole repository is the service's.
    pub fn is_whole_repository(&self) -> bool {
        self.set.is_none()
    }

    /// `path` (relative to the repository root) is the service's.
    pub fn owns(&self, path: &str) -> bool {
        self.set.as_ref().is_none_or(|s| s.is_match(path))
    }
}

/// What a service's rollouts deploy and where.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub image: ImageRepository,
    /// In promotion order; never empty, names unique.
    pub environments: Vec<EnvironmentSpec>,
}

impl ServiceSpec {
    /// The environments in promotion order (none for a service that is only assessed).
    pub fn environments(&self) -> &[EnvironmentSpec] {
        self.deploy
            .as_ref()
            .map_or(&[][..], |d| d.environments.as_slice())
    }

    pub fn environment(&self, name: &str) -> Option<&EnvironmentSpec> {
        self.environments().iter().find(|e| e.name == name)
    }
}

/// One environment of a service.
#[derive(Debug, Clone)]
pub struct EnvironmentSpec {
    pub name: String,
    /// Its own `repo_url`, else `gitops.repo_url`.
    pub repo: GitopsRepo,
    pub branch: BranchName,
    pub targets: Vec<TargetConfig>,
    pub approval: ApprovalRule,
    /// Its own Argo CD server (`argocd.url` and token), else the top-level one
    /// ([`Config::argocd_server`]).
    pub argocd: Option<ArgoCdServer>,
    /// Its own Application name template, else `argocd.application`
    /// ([`Config::application_name`]).
    pub application: Option<String>,
    /// Its own Prometheus, else `prometheus.url` ([`Config::prometheus_server`]).
    pub prometheus: Option<PrometheusServer>,
}

impl EnvironmentSpec {
    /// Some target deploys the canary workload: a canary strategy has a new version to send
    /// traffic to.
    pub fn carries_canary(&self) -> bool {
        carries_canary(&self.targets)
    }

    /// The pod count of a replica-ratio canary (a `replicas` target), whose weights are the
    /// shares whole pods can give; `None` when traffic is split by weight.
    pub fn pods(&self) -> Option<u32> {
        self.targets
            .iter()
            .find(|t| t.kind == TargetKind::Replicas)
            .and_then(|t| t.total_replicas)
    }
}

/// An image or Helm values target with `track: canary` is among `targets`.
pub(crate) fn carries_canary(targets: &[TargetConfig]) -> bool {
    targets.iter().any(|t| {
        matches!(t.kind, TargetKind::Image | TargetKind::HelmValues) && t.track == Track::Canary
    })
}

/// A GitOps repository: where to push, and its name on GitHub when it is known (approval PRs,
/// and the webhooks the routing accepts from it): the environment's `github_repo`, else read from
/// a `repo_url` on GitHub's host (github.com, or the GitHub Enterprise Server of
/// `github.api_url`); the default repository's is `gitops.github_repo`.
#[derive(Debug, Clone)]
pub struct GitopsRepo {
    pub url: RemoteUrl,
    pub github: Option<RepoName>,
}

/// Who must approve before an environment changes, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Always ask, whatever the risk says.
    pub required: bool,
    /// Approvals an approval PR needs; at least 1.
    pub count: usize,
    /// Teams whose members may approve without write access.
    pub teams: Vec<TeamName>,
    pub counted_by: ApprovalAuthority,
    /// A merge of the approval PR that the approvals do not cover is reverted through git (the
    /// rollout pauses and alerts either way).
    pub revert_unapproved_merges: bool,
}

/// A GitHub team, `org/team-slug`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamName {
    pub org: String,
    pub slug: String,
}

impl std::str::FromStr for TeamName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((org, slug)) if !org.is_empty() && !slug.is_empty() && !slug.contains('/') => {
                Ok(TeamName {
                    org: org.into(),
                    slug: slug.into(),
                })
            }
            _ => Err(format!("{s:?} is not ORG/TEAM-SLUG")),
        }
    }
}

impl fmt::Display for TeamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.slug)
    }
}

/// A container image repository without a tag (`ghcr.io/acme/checkout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRepository(String);

impl ImageRepository {
    pub fn parse(s: &str) -> Result<ImageRepository, String> {
        if s.trim().is_empty() || s.rsplit('/').next().is_some_and(|n| n.contains(':')) {
            return Err(format!("{s:?} is not an image repository without a tag"));
        }
        Ok(ImageRepository(s.to_string()))
    }

    /// The full reference of `tag` (`ghcr.io/acme/checkout:1.4.2`).
    pub fn with_tag(&self, tag: &str) -> String {
        format!("{}:{tag}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A branch name git accepts (`git check-ref-format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchName(String);

impl BranchName {
    pub fn parse(s: &str) -> Result<BranchName, String> {
        if crate::gitops::remote::is_valid_branch_name(s) {
            Ok(BranchName(s.to_string()))
        } else {
            Err(format!("{s:?} is not a valid branch name"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for BranchName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The services of `repo` that a change of `files` (repository paths) releases: those that
    /// own at least one of them, in config order.
    pub fn released_by<'a>(&'a self, repo: &RepoName, files: &[String]) -> Vec<&'a ServiceSpec> {
        self.services
            .iter()
            .filter(|s| s.app_repo.same_repo(repo) && files.iter().any(|f| s.paths.owns(f)))
            .collect()
    }

    /// What `/deploy ARG` on a pull request of `repo` that changed `files` starts: ARG naming one
    /// of the repository's services picks that one (to every environment); otherwise ARG is an
    /// environment (or absent) for every service the change touches.
    pub fn deploy_targets<'a>(
        &'a self,
        repo: &RepoName,
        files: &[String],
        arg: Option<&str>,
    ) -> (Vec<&'a ServiceSpec>, Option<String>) {
        if let Some(named) = arg.and_then(|a| {
            self.services
                .iter()
                .find(|s| s.app_repo.same_repo(repo) && s.name.eq_ignore_ascii_case(a))
        }) {
            return (vec![named], None);
        }
        (self.released_by(repo, files), arg.map(str::to_string))
    }

    /// The (first) service whose pull requests come from `repo`, compared as GitHub does,
    /// ignoring case.
    pub fn service_by_app_repo(&self, repo: &RepoName) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.app_repo.same_repo(repo))
    }

    /// Every service whose pull requests come from `repo` (a monorepo deploys several).
    pub fn services_by_app_repo<'a>(
        &'a self,
        repo: &'a RepoName,
    ) -> impl Iterator<Item = &'a ServiceSpec> + 'a {
        self.services.iter().filter(|s| s.app_repo.same_repo(repo))
    }

    /// Every GitOps repository known on GitHub, where approval PRs live: `gitops.github_repo`
    /// and each environment's own, once each (compared as GitHub compares names).
    pub fn gitops_repos_on_github(&self) -> Vec<&RepoName> {
        let environments = self
            .services
            .iter()
            .flat_map(|s| s.environments())
            .filter_map(|e| e.repo.github.as_ref());
        let mut repos: Vec<&RepoName> = Vec::new();
        for r in self.gitops.github_repo.iter().chain(environments) {
            if !repos.iter().any(|known| known.same_repo(r)) {
                repos.push(r);
            }
        }
        repos
    }

    /// Whether `repo` is one of the GitOps repositories on GitHub (see
    /// [`Config::gitops_repos_on_github`]).
    pub fn is_gitops_repo(&self, repo: &RepoName) -> bool {
        self.gitops_repos_on_github()
            .iter()
            .any(|g| g.same_repo(repo))
    }

    /// Whether deliveries from `repo` concern deploybot: an app repository or a GitOps one.
    pub fn is_configured_repo(&self, repo: &RepoName) -> bool {
        self.service_by_app_repo(repo).is_some() || self.is_gitops_repo(repo)
    }

    /// Every secret the config uses, with the key it is configured under. References in a
    /// section that is switched off (an `llm.api_key_env` without `llm.base_url`, a
    /// `gitops.token_env` with no https remote) are not used and not listed.
    pub fn secrets(&self) -> &[(SecretKey, SecretRef)] {
        &self.secrets
    }
}

/// The secrets a config can reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKey {
    WebhookSecret,
    GithubToken,
    GithubAppKey,
    GitopsToken,
    LlmApiKey,
    PrometheusBearerToken,
    ArgoCdToken,
    AlertsWebhookUrl,
    StorePassword,
}

impl SecretKey {
    pub const ALL: [SecretKey; 9] = [
        SecretKey::WebhookSecret,
        SecretKey::GithubToken,
        SecretKey::GithubAppKey,
        SecretKey::GitopsToken,
        SecretKey::LlmApiKey,
        SecretKey::PrometheusBearerToken,
        SecretKey::ArgoCdToken,
        SecretKey::AlertsWebhookUrl,
        SecretKey::StorePassword,
    ];

    /// The key without its `_env` / `_file` suffix, e.g. `github.token`.
    pub fn key(self) -> &'static str {
        match self {
            SecretKey::WebhookSecret => "server.webhook_secret",
            SecretKey::GithubToken => "github.token",
            SecretKey::GithubAppKey => "github.private_key",
            SecretKey::GitopsToken => "gitops.token",
            SecretKey::LlmApiKey => "llm.api_key",
            SecretKey::PrometheusBearerToken => "prometheus.bearer_token",
            SecretKey::ArgoCdToken => "argocd.token",
            SecretKey::AlertsWebhookUrl => "alerts.webhook_url",
            SecretKey::StorePassword => "store.password",
        }
    }

    /// The key as written in the file for `r`, e.g. `github.token_env`.
    pub fn written(self, r: &SecretRef) -> String {
        match r {
            SecretRef::Env(_) => format!("{}_env", self.key()),
            SecretRef::File(_) => format!("{}_file", self.key()),
        }
    }
}

/// Whether a referenced secret can be read where deploybot runs: the port through which
/// resolution asks, since reading the environment or a file is I/O. The answer never carries the
/// value.
pub trait SecretPresence {
    /// `Err` says why `r` cannot be read (`environment variable X is not set`).
    fn check(&self, r: &SecretRef) -> Result<(), String>;
}

/// Checks the shape of secret references only, for where the secrets are not mounted
/// (`check-config --shape-only`, tests, commands that need no secret).
pub struct ShapeOnly;

impl SecretPresence for ShapeOnly {
    fn check(&self, _: &SecretRef) -> Result<(), String> {
        Ok(())
    }
}

/// A config that resolved, and what it should change before a later version stops reading it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub warnings: Vec<Warning>,
}

/// Something that works today and should be changed: a deprecated key, with its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The key as written, e.g. `llm.timeout_ms`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a config does not resolve: every problem found, each naming the key, the value and the
/// fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("\n  - "))
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests;
