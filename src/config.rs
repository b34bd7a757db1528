//! The configuration: one YAML file parsed once into typed structs and validated at start-up.
//!
//! Unknown keys are rejected (a typo must not silently fall back to a default), secrets appear only
//! as references (`*_env` / `*_file`), and every validation message names the key at fault.
//! Sections that belong to one concept are defined next to it (`risk::RiskConfig`,
//! `gitops::GitopsConfig`, ...) and assembled here.

use crate::adapters::secrets::Resolve;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use deploybot_core::secret::{Secret, SecretRef};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub github: GithubConfig,
    pub gitops: crate::adapters::gitops::GitopsConfig,
    pub llm: crate::adapters::llm::LlmConfig,
    pub prometheus: crate::adapters::prometheus::PrometheusConfig,
    pub store: StoreConfig,
    pub risk: deploybot_core::risk::RiskConfig,
    pub argocd: crate::adapters::argocd::ArgoCdConfig,
    pub alerts: crate::adapters::alert::AlertsConfig,
    pub services: Vec<ServiceConfig>,
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
    pub tick_interval: deploybot_core::duration::PromDuration,
    /// How often approvals and parked releases are re-read from GitHub, so that a lost webhook
    /// only delays a rollout.
    pub reconcile_interval: deploybot_core::duration::PromDuration,
    /// Public base URL of this server (`https://deploybot.example.com`): when set, PR status
    /// comments link to the rollout's status page under it.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            webhook_path: "/webhook".into(),
            max_body_bytes: 25 * 1024 * 1024,
            webhook_secret_env: None,
            webhook_secret_file: None,
            tick_interval: deploybot_core::duration::PromDuration::from_secs(5),
            reconcile_interval: deploybot_core::duration::PromDuration::from_secs(60),
            public_url: None,
        }
    }
}

impl ServerConfig {
    pub fn webhook_secret_ref(&self) -> Result<Option<SecretRef>, String> {
        SecretRef::from_pair(
            "server.webhook_secret",
            self.webhook_secret_env.as_ref(),
            self.webhook_secret_file.as_ref(),
        )
    }

    /// Why `public_url` cannot be linked from a PR comment, if it cannot: it must be an absolute
    /// http(s) URL without credentials, query or fragment (the page paths are appended to it).
    fn public_url_problem(&self) -> Option<String> {
        let raw = self.public_url.as_deref()?;
        let url = match reqwest::Url::parse(raw) {
            Ok(u) => u,
            Err(e) => return Some(format!("{raw:?} is not a URL: {e}")),
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Some(format!(
                "{raw:?}: must be an http:// or https:// URL with a host"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Some("must not carry credentials (the URL is posted on pull requests)".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Some(format!("{raw:?}: must not have a query or fragment"));
        }
        None
    }

    /// Resolves the webhook secret; `serve` refuses to start without one.
    pub fn webhook_secret(&self) -> Result<Secret, String> {
        match self.webhook_secret_ref()? {
            Some(r) => r
                .resolve()
                .map_err(|e| format!("server.webhook_secret: {e}")),
            None => Err(
                "server.webhook_secret_env or server.webhook_secret_file must be set: \
                 deploybot refuses to accept unsigned webhooks"
                    .into(),
            ),
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
    /// Login of the bot account; its own comments and reviews are ignored.
    pub bot_login: String,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: "https://api.github.com".into(),
            token_env: None,
            token_file: None,
            bot_login: "deploybot[bot]".into(),
        }
    }
}

impl GithubConfig {
    pub fn token_ref(&self) -> Result<Option<SecretRef>, String> {
        SecretRef::from_pair(
            "github.token",
            self.token_env.as_ref(),
            self.token_file.as_ref(),
        )
    }
}

/// Where deploybot keeps its state (deliveries, assessments, rollouts) and its git clones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Data directory; the SQLite database and the GitOps clones live under it.
    pub data_dir: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./deploybot-data"),
        }
    }
}

impl StoreConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("deploybot.sqlite3")
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
    /// a rollout deploys `image:tag`. Required to roll out.
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
    pub risk: Option<deploybot_core::risk::RiskThresholds>,
    /// How rollouts of this service proceed: canary plan, bake, analysis interval, limits.
    #[serde(default)]
    pub rollout: deploybot_core::rollout::config::RolloutConfig,
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
    /// Branch Argo CD watches.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Manifest edits that deploy a new version (image tags) and shift traffic (canary weights).
    #[serde(default)]
    pub targets: Vec<deploybot_core::manifest::TargetConfig>,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// The judge and its statistical settings.
    pub judge: deploybot_core::canary::JudgeConfig,
    /// PromQL templates for the metrics the judge reads.
    pub queries: crate::adapters::prometheus::QueryTemplates,
}

/// A configuration that could not be loaded, with every problem found (not only the first).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is part of the message, so not also the `source()` (printed once).
    #[error("reading config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("parsing config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates YAML text; `path` is only used in messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            yaml_serde::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every validation problem, each naming its key. Secrets are checked for shape here and
    /// resolved by the commands that need them, so `check-config` works without them.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.server.webhook_path.starts_with('/') {
            p.push(format!(
                "server.webhook_path: must start with '/', got {:?}",
                self.server.webhook_path
            ));
        }
        for (key, d) in [
            ("server.tick_interval", self.server.tick_interval),
            ("server.reconcile_interval", self.server.reconcile_interval),
        ] {
            if d.as_millis() < 100 {
                p.push(format!("{key}: must be at least 100ms"));
            }
        }
        if self.server.max_body_bytes == 0 {
            p.push("server.max_body_bytes: must be greater than 0".into());
        }
        if let Err(e) = self.server.webhook_secret_ref() {
            p.push(e);
        }
        if let Some(e) = self.server.public_url_problem() {
            p.push(format!("server.public_url: {e}"));
        }
        if let Err(e) = self.github.token_ref() {
            p.push(e);
        }
        self.gitops.validate(&mut p);
        self.llm.validate(&mut p);
        self.prometheus.validate(&mut p);
        self.risk.validate("risk", &mut p);
        self.argocd.validate(&mut p);
        self.alerts.validate(&mut p);
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = format!("services[{i}]");
            if s.name.trim().is_empty() {
                p.push(format!("{key}.name: must not be empty"));
            } else if !names.insert(s.name.clone()) {
                p.push(format!("{key}.name: duplicate service {:?}", s.name));
            }
            let parts: Vec<&str> = s.app_repo.split('/').collect();
            if parts.len() != 2 || parts.iter().any(|x| x.is_empty()) {
                p.push(format!(
                    "{key}.app_repo: must be OWNER/NAME, got {:?}",
                    s.app_repo
                ));
            }
            if let Some(image) = &s.image
                && (image.trim().is_empty()
                    || image.rsplit('/').next().is_some_and(|n| n.contains(':')))
            {
                p.push(format!(
                    "{key}.image: the image repository without a tag, got {image:?}"
                ));
            }
            if let Err(e) = deploybot_core::rollout::trigger::image_tag(
                &s.image_tag,
                "0123456789abcdef",
                Some(1),
            ) {
                p.push(format!("{key}.image_tag: {e}"));
            }
            let mut envs = std::collections::BTreeSet::new();
            for (j, e) in s.environments.iter().enumerate() {
                let ekey = format!("{key}.environments[{j}]");
                if !envs.insert(e.name.clone()) {
                    p.push(format!("{ekey}.name: duplicate environment {:?}", e.name));
                }
                if e.repo_url.is_none() && self.gitops.repo_url.is_none() {
                    p.push(format!(
                        "{ekey}.repo_url: no repository (set it here or gitops.repo_url)"
                    ));
                }
                if e.required_approvals == 0 && e.require_approval {
                    p.push(format!(
                        "{ekey}.required_approvals: must be at least 1 when require_approval is set"
                    ));
                }
                for t in &e.approving_teams {
                    if t.split('/').filter(|x| !x.is_empty()).count() != 2 {
                        p.push(format!(
                            "{ekey}.approving_teams: {t:?} must be ORG/TEAM-SLUG"
                        ));
                    }
                }
                for (k, t) in e.targets.iter().enumerate() {
                    t.validate(&format!("{ekey}.targets[{k}]"), &mut p);
                }
            }
            if let Some(r) = &s.risk {
                r.validate(&format!("{key}.risk"), &mut p);
            }
            s.analysis
                .judge
                .validate(&format!("{key}.analysis.judge"), &mut p);
            s.analysis
                .queries
                .validate(&format!("{key}.analysis.queries"), &mut p);
            if s.analysis.queries.latency.is_none()
                && s.analysis.judge.latency.mode
                    == deploybot_core::canary::settings::MetricMode::Gate
            {
                // The judge would wait forever for a histogram nobody asks for.
                p.push(format!(
                    "{key}.analysis.judge.latency.mode: gate needs {key}.analysis.queries.latency; \
                     set the query or make latency dry-run"
                ));
            }
            for name in s.analysis.judge.extra.keys() {
                if !s.analysis.queries.extra.contains_key(name) {
                    p.push(format!(
                        "{key}.analysis.judge.extra.{name}: needs a query \
                         {key}.analysis.queries.extra.{name}"
                    ));
                }
            }
            for name in s.analysis.queries.extra.keys() {
                if !s.analysis.judge.extra.contains_key(name) {
                    // A query nobody judges would cost Prometheus time and decide nothing.
                    p.push(format!(
                        "{key}.analysis.queries.extra.{name}: no {key}.analysis.judge.extra.{name} \
                         says how to judge it"
                    ));
                }
            }
            s.rollout.validate(&format!("{key}.rollout"), &mut p);
        }
        p
    }

    /// The effective config as YAML. Only secret references exist in it, so it is safe to print.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(y, Path::new("test.yaml"))
    }

    #[test]
    fn empty_file_is_the_default_config() {
        let c = parse("").unwrap();
        assert_eq!(c.server.webhook_path, "/webhook");
        assert_eq!(c.server.max_body_bytes, 25 * 1024 * 1024);
    }

    #[test]
    fn public_url_must_be_a_plain_http_base() {
        for ok in [
            "https://deploybot.example.com",
            "http://10.0.0.1:8080/deploybot/",
        ] {
            parse(&format!("server:\n  public_url: {ok}\n")).unwrap();
        }
        for (bad, why) in [
            ("deploybot.example.com", "not a URL"),
            ("ftp://example.com", "http:// or https://"),
            ("https://user:pw@example.com", "credentials"),
            ("https://example.com/?a=1", "query or fragment"),
        ] {
            let e = parse(&format!("server:\n  public_url: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("server.public_url") && e.contains(why),
                "{bad}: {e}"
            );
            assert!(!e.contains(":pw@"), "credentials echoed: {e}");
        }
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let e = parse("server:\n  listn: 127.0.0.1:1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn inline_secret_is_not_a_key() {
        let e = parse("server:\n  webhook_secret: hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("webhook_secret"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let e = parse(
            "server:\n  webhook_path: hook\n  max_body_bytes: 0\nservices:\n  - name: a\n    app_repo: nope\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("server.webhook_path"), "{e}");
        assert!(e.contains("server.max_body_bytes"), "{e}");
        assert!(e.contains("services[0].app_repo"), "{e}");
    }

    #[test]
    fn an_extra_metric_needs_both_its_query_and_its_judgement() {
        let service = |judge: &str, queries: &str| {
            format!(
                "services:\n  - name: shop\n    app_repo: acme/shop\n    analysis:\n      judge:\n        extra:\n{judge}      queries:\n        extra:\n{queries}"
            )
        };
        let ok = service(
            "          orders: {direction: lower-is-worse}\n",
            "          orders: 'sum(increase(orders_total{track=\"{{track}}\"}[{{interval}}]))'\n",
        );
        let c = parse(&ok).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.services[0].analysis.queries.extra.contains_key("orders"));
        let problems =
            |judge: &str, queries: &str| parse(&service(judge, queries)).unwrap_err().to_string();
        let e = problems(
            "          orders: {}\n",
            "          refunds: 'sum(refunds_total{track=\"{{track}}\"})'\n",
        );
        for needle in [
            "services[0].analysis.judge.extra.orders: needs a query services[0].analysis.queries.extra.orders",
            "services[0].analysis.queries.extra.refunds: no services[0].analysis.judge.extra.refunds",
        ] {
            assert!(e.contains(needle), "{e}");
        }
        let e = problems(
            "          orders: {}\n",
            "          orders: 'sum(orders_total)'\n",
        );
        assert!(
            e.contains("services[0].analysis.queries.extra.orders: must use {{track}}"),
            "{e}"
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploybot.yaml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.services.is_empty());
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploybot.yaml");
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config.services[0].analysis.judge,
            deploybot_core::canary::JudgeConfig::default()
        );
    }
}
