//! Resolution: from [`RawConfig`] to [`Config`], every value parsed once into its type and every
//! problem collected (not only the first), each saying which key, what value and how to fix it.
//! The checks that belong to one concept stay with it (`JudgeConfig::validate`,
//! `RiskConfig::validate`, `TargetConfig::validate`, `RolloutConfig::validate`,
//! `QueryTemplates::validate`); what spans sections (an environment's repository, a gated metric
//! without its query, secrets present) is decided here.

use std::collections::BTreeSet;

use url::Url;

use super::raw::{self, RawConfig, WriteMode};
use super::{
    AlertsSpec, ApprovalRule, ArgoCdServer, ArgoCdSpec, BranchName, Config, ConnectionLimits,
    DeploySpec, EnvironmentSpec, GithubApp, GithubSpec, GitopsRepo, GitopsSpec, ImageRepository,
    LlmSpec, ModelSpec, PostgresSpec, Problems, PrometheusServer, PrometheusSpec, PushRetry,
    Resolved, Retention, RiskSpec, SecretKey, SecretPresence, ServerSpec, ServicePaths,
    ServiceSpec, StoreSpec, TeamName, Warning, WorkerSpec, carries_canary,
};
use crate::canary::settings::MetricMode;
use crate::duration::PromDuration;
use crate::github::RepoName;
use crate::gitops::remote::{RemoteUrl, Transport, is_valid_branch_name};
use crate::manifest::TargetKind;
use crate::retry::RetryPolicy;
use crate::risk::policy::Policy;
use crate::rollout::trigger::TagTemplate;
use crate::secret::SecretRef;

/// Retrying more than this only delays the moment a human learns that a server is down.
const MAX_RETRIES: u32 = 10;

/// Resolves `raw`; secrets it references are checked through `secrets` (pass
/// [`super::ShapeOnly`] where they are not mounted). All problems are returned at once.
pub fn resolve(raw: &RawConfig, secrets: &dyn SecretPresence) -> Result<Resolved, Problems> {
    let mut r = Resolver {
        github_host: "github.com".into(),
        problems: Vec::new(),
        warnings: Vec::new(),
        secrets: Vec::new(),
        environment_secrets: Vec::new(),
    };
    let server = r.server(&raw.server);
    let github = r.github(&raw.github);
    if let Some(g) = &github {
        r.github_host = g.web_host().to_string();
    }
    let https_remotes = raw
        .services
        .iter()
        .flat_map(|s| &s.environments)
        .filter_map(|e| e.repo_url.as_ref().or(raw.gitops.repo_url.as_ref()))
        .any(|url| RemoteUrl::parse(url).is_ok_and(|u| u.transport() == Transport::Http));
    let gitops = r.gitops(&raw.gitops, https_remotes);
    let llm = r.llm(&raw.llm);
    let prometheus = r.prometheus(&raw.prometheus);
    let risk = r.risk(&raw.risk);
    let argocd = r.argocd(&raw.argocd);
    let alerts = r.alerts(&raw.alerts);
    let store = r.store(&raw.store);
    let mut names = BTreeSet::new();
    let mut services = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let key = format!("services[{i}]");
        if s.name.trim().is_empty() {
            r.problem(format!(
                "{key}.name: must not be empty; name the service (e.g. checkout)"
            ));
        } else if !names.insert(s.name.clone()) {
            r.problem(format!(
                "{key}.name: {:?} is already the name of another service; names must be unique",
                s.name
            ));
        }
        if let Some(s) = r.service(&key, s, raw, gitops.as_ref(), risk.as_ref()) {
            services.push(s);
        }
    }
    if let (Some(g), Some(gh)) = (&gitops, &github)
        && g.mode == WriteMode::PullRequest
    {
        r.pull_request_mode(gh, &services);
    }
    for (key, reference) in &r.secrets {
        if let Err(why) = secrets.check(reference) {
            r.problems.push(missing_secret(key.key(), reference, &why));
        }
    }
    for (key, reference) in &r.environment_secrets {
        if let Err(why) = secrets.check(reference) {
            r.problems.push(missing_secret(key, reference, &why));
        }
    }
    let (Some(server), Some(github), Some(gitops), Some(llm), Some(prometheus)) =
        (server, github, gitops, llm, prometheus)
    else {
        return Err(Problems(r.problems));
    };
    let (Some(risk), Some(argocd), Some(alerts), Some(store)) = (risk, argocd, alerts, store)
    else {
        return Err(Problems(r.problems));
    };
    if !r.problems.is_empty() {
        return Err(Problems(r.problems));
    }
    Ok(Resolved {
        config: Config {
            server,
            github,
            gitops,
            llm,
            prometheus,
            store,
            risk,
            argocd,
            alerts,
            services,
            secrets: r.secrets,
        },
        warnings: r.warnings,
    })
}

/// The problem of a secret that cannot be read: names the key and the reference, never a value.
fn missing_secret(key: &str, reference: &SecretRef, why: &str) -> String {
    let (what, fix) = match reference {
        SecretRef::Env(var) => (var.clone(), format!("set {var} where deploybot runs")),
        SecretRef::File(path) => (
            path.display().to_string(),
            format!("mount the secret at {}", path.display()),
        ),
    };
    let suffix = match reference {
        SecretRef::Env(_) => "_env",
        SecretRef::File(_) => "_file",
    };
    format!("{key}{suffix} ({what}): {why}; {fix}, or remove the reference")
}

struct Resolver {
    /// Where GitHub names repositories (`GithubSpec::web_host`), once `github` is resolved.
    github_host: String,
    problems: Vec<String>,
    warnings: Vec<Warning>,
    /// The secret references in use, checked for presence once every section is resolved.
    secrets: Vec<(SecretKey, SecretRef)>,
    /// An environment's own Argo CD and Prometheus tokens, by the key they are written under
    /// (`services[0].environments[1].argocd.token`), checked for presence with the others.
    environment_secrets: Vec<(String, SecretRef)>,
}

impl Resolver {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// Runs a concept's own validation under `key`; `Some(())` when it found nothing.
    fn check(&mut self, validate: impl FnOnce(&mut Vec<String>)) -> Option<()> {
        let before = self.problems.len();
        validate(&mut self.problems);
        (self.problems.len() == before).then_some(())
    }

    /// The value of a `Result`, or `None` with its error recorded as a problem.
    fn ok<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.problem(e)).ok()
    }

    /// A `<key>_env` / `<key>_file` pair. A reference `in_use` is checked for presence at the
    /// end; one in a switched-off section (`llm.api_key_env` without `llm.base_url`) is not.
    fn secret(
        &mut self,
        key: SecretKey,
        env: Option<&String>,
        file: Option<&std::path::PathBuf>,
        in_use: bool,
    ) -> Option<Option<SecretRef>> {
        let r = self.ok(SecretRef::from_pair(key.key(), env, file))?;
        if let (Some(r), true) = (&r, in_use) {
            self.secrets.push((key, r.clone()));
        }
        Some(r)
    }

    /// A renamed key's outcome: its warning kept, or its problem recorded.
    fn renamed(&mut self, r: Result<Option<crate::deprecated::Warning>, String>) -> Option<()> {
        if let Some((key, message)) = self.ok(r)? {
            self.warnings.push(Warning { key, message });
        }
        Some(())
    }

    /// A duration key with a deprecated millisecond spelling: the new key, else the old one
    /// (with a warning naming the new key and the equivalent value), else `default`. Both is an
    /// error: which one was meant cannot be guessed.
    fn duration(
        &mut self,
        key: &str,
        new: Option<PromDuration>,
        old_ms: Option<u64>,
        default: PromDuration,
    ) -> Option<PromDuration> {
        match (new, old_ms) {
            (Some(_), Some(ms)) => {
                self.problem(format!(
                    "{key}_ms: {ms} is the deprecated spelling of {key}, which is also set; \
                     remove {key}_ms"
                ));
                None
            }
            (Some(d), None) => Some(d),
            (None, Some(ms)) => {
                let d = PromDuration::from_millis(ms);
                self.warnings.push(Warning {
                    key: format!("{key}_ms"),
                    message: format!(
                        "deprecated; write {key}: {d} instead (durations are written 500ms, 30s, \
                         5m)"
                    ),
                });
                Some(d)
            }
            (None, None) => Some(default),
        }
    }

    /// An absolute http(s) URL with a host. `what` says what it is for, in the fix.
    fn http_url(&mut self, key: &str, text: &str, example: &str) -> Option<Url> {
        let parsed = Url::parse(text)
            .map_err(|e| format!("{key}: {text:?} is not a URL ({e}); write it as {example}"));
        let url = self.ok(parsed)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            self.problem(format!(
                "{key}: {text:?} must be an http:// or https:// URL with a host; write it as \
                 {example}"
            ));
            return None;
        }
        Some(url)
    }

    fn server(&mut self, s: &raw::ServerConfig) -> Option<ServerSpec> {
        let mut ok = true;
        if !s.webhook_path.starts_with('/') {
            self.problem(format!(
                "server.webhook_path: must start with '/', got {:?}; write it as \"/{}\"",
                s.webhook_path,
                s.webhook_path.trim_start_matches('/')
            ));
            ok = false;
        }
        for (key, d) in [
            ("server.tick_interval", s.tick_interval),
            ("server.reconcile_interval", s.reconcile_interval),
        ] {
            if d.as_millis() < 100 {
                self.problem(format!(
                    "{key}: must be at least 100ms, got {d}; a shorter period only busies the store"
                ));
                ok = false;
            }
        }
        if s.max_body_bytes == 0 {
            self.problem(
                "server.max_body_bytes: must be greater than 0, got 0; GitHub sends up to \
                 26214400 (25 MB)"
                    .into(),
            );
            ok = false;
        }
        for (key, d) in [
            ("server.header_timeout", s.header_timeout),
            ("server.body_timeout", s.body_timeout),
            ("server.shutdown_grace", s.shutdown_grace),
        ] {
            if d.is_zero() {
                self.problem(format!("{key}: must be greater than 0s, got {d}"));
                ok = false;
            }
        }
        for (key, n) in [
            ("server.max_connections", s.max_connections),
            ("server.workers", s.workers),
            ("server.command_workers", s.command_workers),
        ] {
            if n == 0 {
                self.problem(format!("{key}: must be at least 1, got 0"));
                ok = false;
            }
        }
        // A budget below the largest body would refuse that body forever, however idle the
        // service: the delivery could never be received (intake) or processed (worker).
        for (key, n) in [
            ("server.intake_budget_bytes", s.intake_budget_bytes),
            ("server.worker_budget_bytes", s.worker_budget_bytes),
        ] {
            if n < s.max_body_bytes {
                self.problem(format!(
                    "{key}: must be at least server.max_body_bytes ({}), got {n}, or the largest \
                     delivery could never be held",
                    s.max_body_bytes
                ));
                ok = false;
            }
        }
        if s.admin_listen == s.listen {
            self.problem(format!(
                "server.admin_listen: must differ from server.listen ({}): the status page and \
                 /metrics are not served to the webhook's clients; use e.g. 127.0.0.1:9090",
                s.listen
            ));
            ok = false;
        }
        let retry = self.delivery_retry(&s.delivery_retry);
        let secret = self.secret(
            SecretKey::WebhookSecret,
            s.webhook_secret_env.as_ref(),
            s.webhook_secret_file.as_ref(),
            true,
        );
        let public_url = match &s.public_url {
            Some(text) => Some(self.public_url(text)?),
            None => None,
        };
        Some(ServerSpec {
            listen: s.listen,
            webhook_path: s.webhook_path.clone(),
            max_body_bytes: s.max_body_bytes,
            webhook_secret: secret?,
            tick_interval: s.tick_interval,
            reconcile_interval: s.reconcile_interval,
            public_url,
            admin_listen: s.admin_listen,
            limits: ConnectionLimits {
                max_connections: s.max_connections,
                header_timeout: s.header_timeout,
                body_timeout: s.body_timeout,
                intake_budget_bytes: s.intake_budget_bytes,
            },
            shutdown_grace: s.shutdown_grace,
            worker: WorkerSpec {
                workers: s.workers,
                command_workers: s.command_workers,
                budget_bytes: s.worker_budget_bytes,
                retry: retry?,
            },
        })
        .filter(|_| ok)
    }

    fn delivery_retry(&mut self, c: &raw::DeliveryRetryConfig) -> Option<RetryPolicy> {
        const KEY: &str = "server.delivery_retry";
        let mut ok = true;
        if c.max_attempts == 0 || c.max_attempts > MAX_RETRIES + 1 {
            self.problem(format!(
                "{KEY}.max_attempts: must be 1 to {}, got {} (1 means no retry)",
                MAX_RETRIES + 1,
                c.max_attempts
            ));
            ok = false;
        }
        if c.initial_backoff.is_zero() {
            self.problem(format!("{KEY}.initial_backoff: must be greater than 0s"));
            ok = false;
        }
        if c.max_backoff < c.initial_backoff {
            self.problem(format!(
                "{KEY}.max_backoff: must be at least {KEY}.initial_backoff ({}), got {}",
                c.initial_backoff, c.max_backoff
            ));
            ok = false;
        }
        ok.then(|| {
            RetryPolicy::doubling(
                c.max_attempts,
                c.initial_backoff.as_duration(),
                c.max_backoff.as_duration(),
            )
        })
    }

    /// `server.public_url`: page paths are appended to it and it is posted on pull requests, so
    /// it must be a plain http(s) base without credentials, query or fragment.
    fn public_url(&mut self, text: &str) -> Option<Url> {
        const KEY: &str = "server.public_url";
        let url = match Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                self.problem(format!(
                    "{KEY}: {text:?} is not a URL: {e}; write it as https://deploybot.example.com"
                ));
                return None;
            }
        };
        let why = if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            format!("{text:?}: must be an http:// or https:// URL with a host")
        } else if !url.username().is_empty() || url.password().is_some() {
            // Not echoed: the value holds the credentials.
            "must not carry credentials (the URL is posted on pull requests); remove them".into()
        } else if url.query().is_some() || url.fragment().is_some() {
            format!("{text:?}: must not have a query or fragment; remove them")
        } else {
            return Some(url);
        };
        self.problem(format!("{KEY}: {why}"));
        None
    }

    /// PR mode opens and merges every step's PR on GitHub: it needs an identity there and each
    /// environment's GitOps repository named on GitHub, or every step would fail at run time.
    fn pull_request_mode(&mut self, github: &GithubSpec, services: &[ServiceSpec]) {
        if github.token.is_none() && github.app.is_none() {
            self.problem(
                "gitops.mode: pull_request opens and merges a PR for every step on GitHub: set \
                 github.app_id with github.private_key_env/_file (or github.token_env/_file)"
                    .into(),
            );
        }
        for s in services {
            for e in s.environments() {
                if e.repo.github.is_none() {
                    self.problem(format!(
                        "gitops.mode: pull_request: the GitOps repository of {}/{} ({}) is not \
                         a repository on {}; set the environment's github_repo (or \
                         gitops.github_repo) to its owner/name",
                        s.name,
                        e.name,
                        e.repo.url.redacted(),
                        self.github_host
                    ));
                }
            }
        }
    }

    fn github(&mut self, g: &raw::GithubConfig) -> Option<GithubSpec> {
        let api_url = self.http_url(
            "github.api_url",
            &g.api_url,
            "https://api.github.com (GitHub Enterprise Server: https://HOST/api/v3)",
        );
        let token = self.secret(
            SecretKey::GithubToken,
            g.token_env.as_ref(),
            g.token_file.as_ref(),
            true,
        );
        let key = self.secret(
            SecretKey::GithubAppKey,
            g.private_key_env.as_ref(),
            g.private_key_file.as_ref(),
            g.app_id.is_some(),
        );
        let app = match (g.app_id, key?) {
            (Some(_), _) if matches!(token, Some(Some(_))) => {
                // Which identity was meant cannot be guessed, and the two would act differently.
                self.problem(
                    "github.app_id: set either a GitHub App (app_id with private_key_env or \
                     private_key_file) or a token (token_env or token_file), not both"
                        .into(),
                );
                return None;
            }
            (Some(0), _) => {
                self.problem(
                    "github.app_id: must be the App's numeric id (its settings page, \"App ID\")"
                        .into(),
                );
                return None;
            }
            (Some(id), Some(private_key)) => Some(GithubApp { id, private_key }),
            (Some(_), None) => {
                self.problem(
                    "github.app_id: needs the App's private key: set github.private_key_env or \
                     github.private_key_file (the .pem GitHub generated for the App)"
                        .into(),
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(
                    "github.private_key_env/_file: a private key without github.app_id; set the \
                     App's id as github.app_id"
                        .into(),
                );
                return None;
            }
            (None, None) => None,
        };
        if g.timeout.is_zero() {
            self.problem("github.timeout: must be greater than 0s (e.g. 30s)".into());
            return None;
        }
        Some(GithubSpec {
            api_url: api_url?,
            token: token?,
            app,
            bot_login: g.bot_login.clone(),
            timeout: g.timeout,
        })
    }

    /// `https_remotes`: whether some environment pushes over https, the only use of
    /// `gitops.token`.
    fn gitops(&mut self, g: &raw::GitopsConfig, https_remotes: bool) -> Option<GitopsSpec> {
        let mut ok = true;
        let repo_url = match &g.repo_url {
            Some(url) => {
                let parsed = RemoteUrl::parse(url).map_err(|e| format!("gitops.repo_url: {e}"));
                Some(self.ok(parsed))
            }
            None => None,
        };
        if g.author_name.trim().is_empty() {
            self.problem(
                "gitops.author_name: must not be empty; the bot's commits need an author \
                 (default: deploybot)"
                    .into(),
            );
            ok = false;
        }
        if !g.author_email.contains('@') || g.author_email.contains(char::is_whitespace) {
            self.problem(format!(
                "gitops.author_email: must be an email address, got {:?}; write it as \
                 deploybot@users.noreply.github.com",
                g.author_email
            ));
            ok = false;
        }
        if g.checks_timeout.is_zero() {
            self.problem(
                "gitops.checks_timeout: must be greater than 0s (e.g. 30m): it is how long a PR \
                 waits for the GitOps repository's required checks"
                    .into(),
            );
            ok = false;
        }
        let prefix = g.branch_prefix.trim_matches('/');
        if prefix.is_empty() || !is_valid_branch_name(&format!("{prefix}/x")) {
            self.problem(format!(
                "gitops.branch_prefix: must be a valid branch name prefix, got {:?}; use letters, \
                 digits, '-' and '/' (e.g. deploybot)",
                g.branch_prefix
            ));
            ok = false;
        }
        for (i, l) in g.pr_labels.iter().enumerate() {
            if l.trim().is_empty() {
                self.problem(format!(
                    "gitops.pr_labels[{i}]: must not be empty; remove it or name a label"
                ));
                ok = false;
            }
        }
        if g.human_edited_label.trim().is_empty() {
            self.problem(
                "gitops.human_edited_label: must not be empty (default: deploybot/human-edited)"
                    .into(),
            );
            ok = false;
        }
        let token = self.secret(
            SecretKey::GitopsToken,
            g.token_env.as_ref(),
            g.token_file.as_ref(),
            https_remotes,
        );
        let github_repo = match (&g.github_repo, &repo_url) {
            (Some(r), _) => Some(self.repo_name("gitops.github_repo", r, "acme/gitops")),
            (None, Some(Some(url))) => url
                .repo_on(&self.github_host)
                .and_then(|n| n.parse().ok())
                .map(Some),
            (None, _) => None,
        };
        let retry = self.retry(&g.retry);
        if g.timeout.is_zero() {
            self.problem("gitops.timeout: must be greater than 0s (e.g. 1m)".into());
            ok = false;
        }
        Some(GitopsSpec {
            repo_url: repo_url.map(|u| u.ok_or(())).transpose().ok()?,
            github_repo: github_repo.map(|r| r.ok_or(())).transpose().ok()?,
            mode: g.mode,
            author_name: g.author_name.clone(),
            author_email: g.author_email.clone(),
            branch_prefix: prefix.to_string(),
            merge_method: g.merge_method,
            checks_timeout: g.checks_timeout,
            pr_labels: g.pr_labels.clone(),
            human_edited_label: g.human_edited_label.clone(),
            token: token?,
            ssh_key_file: g.ssh_key_file.clone(),
            retry: retry?,
            timeout: g.timeout,
        })
        .filter(|_| ok)
    }

    /// `OWNER/NAME`, with the fix in the message.
    fn repo_name(&mut self, key: &str, text: &str, example: &str) -> Option<RepoName> {
        let parsed = text
            .parse::<RepoName>()
            .map_err(|_| format!("{key}: {text:?} is not OWNER/NAME; write it as {example}"));
        self.ok(parsed)
    }

    fn retry(&mut self, c: &raw::RetryConfig) -> Option<PushRetry> {
        const KEY: &str = "gitops.retry";
        let mut ok = true;
        let initial = self.duration(
            &format!("{KEY}.initial_backoff"),
            c.initial_backoff,
            c.initial_backoff_ms,
            raw::defaults::PUSH_INITIAL_BACKOFF,
        );
        let max = self.duration(
            &format!("{KEY}.max_backoff"),
            c.max_backoff,
            c.max_backoff_ms,
            raw::defaults::PUSH_MAX_BACKOFF,
        );
        if c.max_attempts == 0 {
            self.problem(format!(
                "{KEY}.max_attempts: must be at least 1, got 0 (1 means no retry)"
            ));
            ok = false;
        }
        if !(c.multiplier.is_finite() && c.multiplier >= 1.0) {
            self.problem(format!(
                "{KEY}.multiplier: must be a number >= 1, got {}; 1 keeps the wait constant",
                c.multiplier
            ));
            ok = false;
        }
        let (initial, max) = (initial?, max?);
        if max < initial {
            self.problem(format!(
                "{KEY}.max_backoff: must be >= {KEY}.initial_backoff ({initial}), got {max}; \
                 raise it or lower initial_backoff"
            ));
            ok = false;
        }
        Some(PushRetry {
            max_attempts: c.max_attempts,
            initial_backoff: initial,
            multiplier: c.multiplier,
            max_backoff: max,
        })
        .filter(|_| ok)
    }

    fn llm(&mut self, c: &raw::LlmConfig) -> Option<LlmSpec> {
        let api_key = self.secret(
            SecretKey::LlmApiKey,
            c.api_key_env.as_ref(),
            c.api_key_file.as_ref(),
            c.base_url.is_some(),
        );
        // The deprecated keys warn even while no model is configured: the file still says them.
        let timeout = self.duration(
            "llm.timeout",
            c.timeout,
            c.timeout_ms,
            raw::defaults::LLM_TIMEOUT,
        );
        let max_retry_wait = self.duration(
            "llm.max_retry_wait",
            c.max_retry_wait,
            c.max_retry_wait_ms,
            raw::defaults::LLM_MAX_RETRY_WAIT,
        );
        let api_key = api_key?;
        let (timeout, max_retry_wait) = (timeout?, max_retry_wait?);
        let Some(base) = &c.base_url else {
            return Some(LlmSpec {
                model: None,
                max_prompt_tokens: c.max_prompt_tokens,
            });
        };
        let mut ok = true;
        let base_url = self.http_url("llm.base_url", base, "http://127.0.0.1:8081/v1");
        let model = c.model.as_deref().map(str::trim).unwrap_or_default();
        if model.is_empty() {
            self.problem(
                "llm.model: required when llm.base_url is set; name the model (e.g. gpt-4o-mini)"
                    .into(),
            );
            ok = false;
        }
        if timeout.is_zero() {
            self.problem("llm.timeout: must be greater than 0s, got 0s (e.g. 30s)".into());
            ok = false;
        }
        if c.max_retries > MAX_RETRIES {
            self.problem(format!(
                "llm.max_retries: at most {MAX_RETRIES}, got {}",
                c.max_retries
            ));
            ok = false;
        }
        if c.max_prompt_tokens < 1000 {
            self.problem(format!(
                "llm.max_prompt_tokens: at least 1000, got {}",
                c.max_prompt_tokens
            ));
            ok = false;
        }
        if c.max_output_tokens < 100 {
            self.problem(format!(
                "llm.max_output_tokens: at least 100, got {}",
                c.max_output_tokens
            ));
            ok = false;
        }
        if let Some(context) = crate::risk::model::known_context(model) {
            let wanted = c.max_prompt_tokens as u64 + u64::from(c.max_output_tokens);
            if wanted > u64::from(context) {
                self.warnings.push(Warning {
                    key: "llm.max_prompt_tokens".into(),
                    message: format!(
                        "{} plus llm.max_output_tokens {} exceeds the {context}-token context of \
                         {model}: requests would be refused or replies cut; lower it to at most {}",
                        c.max_prompt_tokens,
                        c.max_output_tokens,
                        u64::from(context).saturating_sub(u64::from(c.max_output_tokens))
                    ),
                });
            }
        }
        let model = ModelSpec {
            base_url: base_url?,
            model: model.to_string(),
            api_key,
            auth: c.auth,
            timeout,
            max_retries: c.max_retries,
            max_retry_wait,
            max_output_tokens: c.max_output_tokens,
        };
        ok.then_some(LlmSpec {
            model: Some(model),
            max_prompt_tokens: c.max_prompt_tokens,
        })
    }

    fn prometheus(&mut self, c: &raw::PrometheusConfig) -> Option<PrometheusSpec> {
        const KEY: &str = "prometheus";
        let mut ok = true;
        let url = c
            .url
            .as_ref()
            .map(|text| {
                base_url(text).map_err(|e| {
                    format!("{KEY}.url: {e}; write it as http://prometheus.monitoring:9090")
                })
            })
            .map(|r| self.ok(r));
        for (name, d) in [
            ("timeout", c.timeout),
            ("backoff", c.backoff),
            ("staleness_limit", c.staleness_limit),
        ] {
            if d.is_zero() {
                self.problem(format!("{KEY}.{name}: must be greater than 0s, got {d}"));
                ok = false;
            }
        }
        if c.retries > MAX_RETRIES {
            self.problem(format!(
                "{KEY}.retries: at most {MAX_RETRIES}, got {}",
                c.retries
            ));
            ok = false;
        }
        if c.max_backoff < c.backoff {
            self.problem(format!(
                "{KEY}.max_backoff: must be at least {KEY}.backoff ({}), got {}",
                c.backoff, c.max_backoff
            ));
            ok = false;
        }
        let token = self.secret(
            SecretKey::PrometheusBearerToken,
            c.bearer_token_env.as_ref(),
            c.bearer_token_file.as_ref(),
            c.url.is_some(),
        );
        Some(PrometheusSpec {
            url: url.map(|u| u.ok_or(())).transpose().ok()?,
            timeout: c.timeout,
            retries: c.retries,
            backoff: c.backoff,
            max_backoff: c.max_backoff,
            bearer_token: token?,
            staleness_limit: c.staleness_limit,
        })
        .filter(|_| ok)
    }

    fn risk(&mut self, c: &crate::risk::RiskConfig) -> Option<RiskSpec> {
        self.check(|p| c.validate("risk", p))?;
        let policy = Policy::new(c).map_err(|e| format!("risk: {e}"));
        Some(RiskSpec {
            config: c.clone(),
            policy: self.ok(policy)?,
            thresholds: c.thresholds.resolve(None),
        })
    }

    fn argocd(&mut self, c: &raw::ArgoCdConfig) -> Option<ArgoCdSpec> {
        let mut ok = true;
        let token = self.secret(
            SecretKey::ArgoCdToken,
            c.token_env.as_ref(),
            c.token_file.as_ref(),
            c.url.is_some(),
        );
        let server = match &c.url {
            None => None,
            Some(text) => {
                let url = match Url::parse(text) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                        Some(u)
                    }
                    _ => {
                        self.problem(format!(
                            "argocd.url: must be an http(s) URL, got {text:?}; write it as \
                             https://argocd.example.com"
                        ));
                        None
                    }
                };
                let token = match &token {
                    Some(Some(t)) => Some(t.clone()),
                    Some(None) => {
                        self.problem(
                            "argocd.token_env or argocd.token_file: required with argocd.url; \
                             name where the Argo CD API token is"
                                .into(),
                        );
                        None
                    }
                    None => None,
                };
                match (url, token) {
                    (Some(url), Some(token)) => Some(ArgoCdServer { url, token }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        ok &= self.application_template("argocd.application", &c.application);
        if c.timeout.is_zero() {
            self.problem("argocd.timeout: must be greater than 0 (e.g. 10s)".into());
            ok = false;
        }
        if let Some(poll) = c.poll {
            self.warnings.push(Warning {
                key: "argocd.poll".into(),
                message: format!(
                    "{poll} is not read: a rollout reads the Application once per \
                     server.tick_interval while it waits; remove the key"
                ),
            });
        }
        token?;
        ok.then(|| ArgoCdSpec {
            server,
            application: c.application.clone(),
            refresh: c.refresh,
            timeout: c.timeout,
            settle_time: c.settle_time,
        })
    }

    fn store(&mut self, c: &raw::StoreConfig) -> Option<StoreSpec> {
        let r = &c.retention;
        let mut ok = true;
        for (key, d) in [
            ("payloads", r.payloads),
            ("ignored", r.ignored),
            ("deliveries", r.deliveries),
        ] {
            if d.as_millis() < 3_600_000 {
                self.problem(format!(
                    "store.retention.{key}: must be at least 1h, got {d}; the prune runs hourly"
                ));
                ok = false;
            }
        }
        if r.deliveries < r.payloads {
            self.problem(format!(
                "store.retention.deliveries: must be at least store.retention.payloads ({}), got \
                 {}; a payload cannot outlive its row",
                r.payloads, r.deliveries
            ));
            ok = false;
        }
        let password = self.secret(
            SecretKey::StorePassword,
            c.password_env.as_ref(),
            c.password_file.as_ref(),
            c.url.is_some(),
        );
        let postgres = match &c.url {
            Some(url) => self.postgres_url(url).map(|url| {
                Some(PostgresSpec {
                    url,
                    password: password.clone().flatten(),
                })
            }),
            None => {
                if password.as_ref().is_some_and(Option::is_some) {
                    self.problem(
                        "store.password_env/_file: only read with store.url; set store.url \
                         (postgres://user@host:5432/db) or remove the password"
                            .into(),
                    );
                    ok = false;
                }
                Some(None)
            }
        };
        let (Some(postgres), Some(_)) = (postgres, password) else {
            return None;
        };
        ok.then(|| StoreSpec {
            data_dir: c.data_dir.clone(),
            postgres,
            retention: Retention {
                payloads: r.payloads,
                ignored: r.ignored,
                deliveries: r.deliveries,
            },
        })
    }

    /// `store.url`: PostgreSQL with a host; the password stays out of the file, and TLS modes
    /// other than `disable` are refused, since the connection is not encrypted yet.
    fn postgres_url(&mut self, text: &str) -> Option<String> {
        const EXAMPLE: &str = "postgres://deploybot@db.internal:5432/deploybot";
        let Ok(url) = Url::parse(text) else {
            self.problem(format!(
                "store.url: not a URL; write it as {EXAMPLE} (the password in \
                 store.password_env or store.password_file)"
            ));
            return None;
        };
        let mut ok = true;
        if !matches!(url.scheme(), "postgres" | "postgresql") || url.host_str().is_none() {
            self.problem(format!(
                "store.url: must be a postgres:// URL with a host; write it as {EXAMPLE}, or \
                 remove store.url to keep the SQLite store under store.data_dir"
            ));
            ok = false;
        }
        if url.password().is_some() {
            // Never echo the URL here: it holds the password.
            self.problem(
                "store.url: holds a password; move it to store.password_env or \
                 store.password_file, so the config file holds no secret"
                    .into(),
            );
            ok = false;
        }
        for (key, value) in url.query_pairs() {
            if key == "sslmode" && value != "disable" {
                self.problem(format!(
                    "store.url: sslmode={value} is not supported yet (deploybot connects to \
                     PostgreSQL without TLS); use sslmode=disable on a private network, or \
                     reach the database through a TLS proxy on localhost"
                ));
                ok = false;
            }
        }
        ok.then(|| text.to_string())
    }

    fn alerts(&mut self, c: &raw::AlertsConfig) -> Option<AlertsSpec> {
        let webhook = self.secret(
            SecretKey::AlertsWebhookUrl,
            c.webhook_url_env.as_ref(),
            c.webhook_url_file.as_ref(),
            true,
        );
        if c.timeout.is_zero() {
            self.problem("alerts.timeout: must be greater than 0 (e.g. 10s)".into());
            return None;
        }
        if c.retries > MAX_RETRIES {
            self.problem(format!(
                "alerts.retries: at most {MAX_RETRIES}, got {}",
                c.retries
            ));
            return None;
        }
        Some(AlertsSpec {
            webhook_url: webhook?,
            timeout: c.timeout,
            retries: c.retries,
            repeat_after: c.repeat_after,
        })
    }

    fn service(
        &mut self,
        key: &str,
        s: &raw::ServiceConfig,
        raw: &RawConfig,
        gitops: Option<&GitopsSpec>,
        risk: Option<&RiskSpec>,
    ) -> Option<ServiceSpec> {
        let mut ok = true;
        let app_repo = self.repo_name(&format!("{key}.app_repo"), &s.app_repo, "acme/checkout");
        let image = match &s.image {
            Some(text) => {
                let parsed = ImageRepository::parse(text).map_err(|_| {
                    format!(
                        "{key}.image: the image repository without a tag, got {text:?}; write \
                         it as ghcr.io/acme/checkout (the tag comes from image_tag)"
                    )
                });
                Some(self.ok(parsed))
            }
            None => None,
        };
        // Rendered once on a sample commit: a template that cannot make a valid tag fails here,
        // not at the first merge.
        let tag = TagTemplate::parse(&s.image_tag)
            .and_then(|t| t.render("0123456789abcdef", Some(1)).map(|_| t))
            .map_err(|e| format!("{key}.image_tag: {e}"));
        let image_tag = self.ok(tag);
        let mut environments = Vec::new();
        let mut names = BTreeSet::new();
        for (j, e) in s.environments.iter().enumerate() {
            let ekey = format!("{key}.environments[{j}]");
            if !names.insert(e.name.clone()) {
                self.problem(format!(
                    "{ekey}.name: duplicate environment {:?}; each environment of a service \
                     needs its own name",
                    e.name
                ));
                ok = false;
            }
            match self.environment(&ekey, e, &raw.gitops, gitops) {
                Some(env) => environments.push(env),
                None => ok = false,
            }
        }
        let deploy = match (image, environments.is_empty()) {
            (_, true) => None,
            (Some(image), false) => image.map(|image| DeploySpec {
                image,
                environments,
            }),
            (None, false) => {
                self.problem(format!(
                    "{key}.image: not set, but the service has environments to deploy to; set \
                     it to the image repository without a tag (e.g. ghcr.io/acme/checkout)"
                ));
                None
            }
        };
        let has_environments = !s.environments.is_empty();
        if let Some(r) = &s.risk {
            ok &= self
                .check(|p| r.validate(&format!("{key}.risk"), p))
                .is_some();
        }
        let mut analysis = s.analysis.clone();
        let renamed = analysis.judge.renamed(&format!("{key}.analysis.judge"));
        ok &= self.renamed(renamed).is_some();
        ok &= self.analysis(key, &analysis).is_some();
        let rollout_key = format!("{key}.rollout");
        let mut rollout = s.rollout.clone();
        let renamed = rollout.renamed(&rollout_key);
        ok &= self.renamed(renamed).is_some();
        let settings = self
            .check(|p| rollout.validate(&rollout_key, p))
            .and_then(|()| {
                let settings = rollout.settings().map_err(|e| format!("{rollout_key}.{e}"));
                self.ok(settings)
            });
        let spec = ServiceSpec {
            name: s.name.clone(),
            app_repo: app_repo?,
            namespace: s.namespace.clone(),
            image_tag: image_tag?,
            required_checks: s.required_checks.clone(),
            deploy,
            analysis,
            thresholds: risk?.config.thresholds.resolve(s.risk.as_ref()),
            settings: settings?,
            on_new_version: s.rollout.on_new_version,
            paths: match ServicePaths::new(&s.paths) {
                Ok(p) => p,
                Err((i, e)) => {
                    self.problem(format!(
                        "{key}.paths[{i}]: {:?} is not a glob: {e}; write it as services/checkout/**",
                        s.paths.get(i).map(String::as_str).unwrap_or_default()
                    ));
                    return None;
                }
            },
        };
        (ok && (spec.deploy.is_some() || !has_environments)).then_some(spec)
    }

    fn environment(
        &mut self,
        ekey: &str,
        e: &raw::EnvironmentConfig,
        raw_gitops: &raw::GitopsConfig,
        gitops: Option<&GitopsSpec>,
    ) -> Option<EnvironmentSpec> {
        let mut ok = true;
        // An environment's own repository is named on GitHub by its github_repo, else by its
        // URL on GitHub's host; the default one by gitops.github_repo or its URL.
        let named = match &e.github_repo {
            Some(r) => {
                match self.repo_name(&format!("{ekey}.github_repo"), r, "acme/prod-gitops") {
                    Some(name) => Some(name),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        if named.is_some() && e.repo_url.is_none() {
            self.problem(format!(
                "{ekey}.github_repo: names the environment's own repository, but it has no \
                 repo_url; set repo_url, or name the default one in gitops.github_repo"
            ));
            ok = false;
        }
        let repo = match (&e.repo_url, raw_gitops.repo_url.is_some()) {
            (Some(url), _) => {
                let parsed = RemoteUrl::parse(url).map_err(|err| format!("{ekey}.repo_url: {err}"));
                let host = self.github_host.clone();
                self.ok(parsed).map(|url| GitopsRepo {
                    github: named
                        .clone()
                        .or_else(|| url.repo_on(&host).and_then(|n| n.parse().ok())),
                    url,
                })
            }
            (None, true) => gitops.and_then(|g| {
                g.repo_url.clone().map(|url| GitopsRepo {
                    url,
                    github: g.github_repo.clone(),
                })
            }),
            (None, false) => {
                self.problem(format!(
                    "{ekey}.repo_url: no repository (set it here or gitops.repo_url)"
                ));
                None
            }
        };
        let branch = BranchName::parse(&e.branch)
            .map_err(|err| format!("{ekey}.branch: {err}; name the branch Argo CD watches"));
        let branch = self.ok(branch);
        if e.required_approvals == 0 && e.require_approval {
            self.problem(format!(
                "{ekey}.required_approvals: must be at least 1 when require_approval is set, \
                 got 0"
            ));
            ok = false;
        }
        let mut teams = Vec::new();
        for t in &e.approving_teams {
            let team = t.parse::<TeamName>().map_err(|_| {
                format!("{ekey}.approving_teams: {t:?} must be ORG/TEAM-SLUG (e.g. acme/sre)")
            });
            match self.ok(team) {
                Some(team) => teams.push(team),
                None => ok = false,
            }
        }
        for (k, t) in e.targets.iter().enumerate() {
            ok &= self
                .check(|p| t.validate(&format!("{ekey}.targets[{k}]"), p))
                .is_some();
        }
        // Traffic shifted to a canary that still runs the old image is judged old against old,
        // and the new version first meets users at 100 %: such a config must not load.
        let shifter = e
            .targets
            .iter()
            .position(|t| matches!(t.kind, TargetKind::Weight | TargetKind::Replicas));
        if let (Some(k), false) = (shifter, carries_canary(&e.targets)) {
            let kind = match e.targets[k].kind {
                TargetKind::Replicas => "replicas",
                _ => "weight",
            };
            self.problem(format!(
                "{ekey}.targets[{k}]: a {kind} target sends traffic to the canary, but no image \
                 target of this environment has track: canary, so the canary would run the old \
                 image and be judged against itself; add the canary workload's file as an image \
                 (or helm_values) target with track: canary"
            ));
            ok = false;
        }
        // An environment that always asks for approval opens an approval PR at its first step,
        // in a repository that must be named on GitHub: known now, not found missing
        // mid-rollout. (The token it also needs may be left out on purpose, to run without an
        // account; `serve` warns about that at start-up.)
        if let (true, Some(repo)) = (e.require_approval, &repo)
            && repo.github.is_none()
        {
            let fix = if e.repo_url.is_some() {
                format!("set {ekey}.github_repo")
            } else {
                "set gitops.github_repo".to_string()
            };
            self.problem(format!(
                "{ekey}.require_approval: approval PRs need the GitOps repository on GitHub, and \
                 {} is not a repository URL on {}; {fix}",
                repo.url.redacted(),
                self.github_host
            ));
            ok = false;
        }
        let (argocd, application) = match &e.argocd {
            Some(a) => match self.environment_argocd(ekey, a) {
                Some(resolved) => resolved,
                None => {
                    ok = false;
                    (None, None)
                }
            },
            None => (None, None),
        };
        let prometheus = match &e.prometheus {
            Some(p) => {
                let server = self.environment_prometheus(ekey, p);
                ok &= server.is_some();
                server
            }
            None => None,
        };
        let spec = EnvironmentSpec {
            argocd,
            application,
            prometheus,
            name: e.name.clone(),
            repo: repo?,
            branch: branch?,
            targets: e.targets.clone(),
            approval: ApprovalRule {
                required: e.require_approval,
                // An approval the risk asks for needs at least one reviewer, whatever is set.
                count: e.required_approvals.max(1) as usize,
                teams,
                counted_by: e.approvals_counted_by,
                revert_unapproved_merges: e.revert_unapproved_merges,
            },
        };
        ok.then_some(spec)
    }

    /// `<ekey>.argocd`: the environment's own server (URL with its own token) and Application
    /// name; `None` with the problems recorded.
    fn environment_argocd(
        &mut self,
        ekey: &str,
        a: &raw::EnvironmentArgoCd,
    ) -> Option<(Option<ArgoCdServer>, Option<String>)> {
        let key = format!("{ekey}.argocd");
        let mut ok = true;
        let token = SecretRef::from_pair(
            &format!("{key}.token"),
            a.token_env.as_ref(),
            a.token_file.as_ref(),
        )
        .map_err(|e| self.problem(e))
        .ok()?;
        let server = match (&a.url, token) {
            (Some(text), Some(token)) => match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    self.environment_secrets
                        .push((format!("{key}.token"), token.clone()));
                    Some(ArgoCdServer { url: u, token })
                }
                _ => {
                    self.problem(format!(
                        "{key}.url: must be an http(s) URL, got {text:?}; write it as \
                         https://argocd.production.example.com"
                    ));
                    ok = false;
                    None
                }
            },
            (Some(_), None) => {
                self.problem(format!(
                    "{key}.token_env or {key}.token_file: required with {key}.url (the top-level \
                     argocd token is not sent to another server); name where this server's API \
                     token is"
                ));
                ok = false;
                None
            }
            (None, Some(_)) => {
                self.problem(format!(
                    "{key}.token_env or {key}.token_file: only read with {key}.url; set the \
                     environment's Argo CD URL, or remove the token"
                ));
                ok = false;
                None
            }
            (None, None) => None,
        };
        if let Some(template) = &a.application {
            ok &= self.application_template(&format!("{key}.application"), template);
        }
        ok.then(|| (server, a.application.clone()))
    }

    /// `<ekey>.prometheus`: the environment's own Prometheus; `None` with the problems recorded.
    fn environment_prometheus(
        &mut self,
        ekey: &str,
        p: &raw::EnvironmentPrometheus,
    ) -> Option<PrometheusServer> {
        let key = format!("{ekey}.prometheus");
        let url = base_url(&p.url).map_err(|e| {
            format!("{key}.url: {e}; write it as http://prometheus.production.svc:9090")
        });
        let token = SecretRef::from_pair(
            &format!("{key}.bearer_token"),
            p.bearer_token_env.as_ref(),
            p.bearer_token_file.as_ref(),
        );
        let (url, token) = (self.ok(url), self.ok(token));
        let (url, bearer_token) = (url?, token?);
        if let Some(t) = &bearer_token {
            self.environment_secrets
                .push((format!("{key}.bearer_token"), t.clone()));
        }
        Some(PrometheusServer { url, bearer_token })
    }

    /// An Application name template under `key`: only `{service}` and `{environment}`.
    fn application_template(&mut self, key: &str, template: &str) -> bool {
        let leftover = template
            .replace("{service}", "")
            .replace("{environment}", "");
        if leftover.contains(['{', '}']) || template.trim().is_empty() {
            self.problem(format!(
                "{key}: only {{service}} and {{environment}} may be used, got {template:?}"
            ));
            return false;
        }
        true
    }

    /// The judge and its queries, and how they must match: a gated latency needs its query, and
    /// an extra metric needs both a query and a judgement.
    fn analysis(&mut self, key: &str, a: &raw::AnalysisConfig) -> Option<()> {
        let before = self.problems.len();
        a.judge
            .validate(&format!("{key}.analysis.judge"), &mut self.problems);
        a.queries
            .validate(&format!("{key}.analysis.queries"), &mut self.problems);
        if a.queries.latency.is_none() && a.judge.latency.mode == MetricMode::Gate {
            // The judge would wait forever for a histogram nobody asks for.
            self.problem(format!(
                "{key}.analysis.judge.latency.mode: gate needs {key}.analysis.queries.latency; \
                 set the query or make latency dry-run"
            ));
        }
        for name in a.judge.extra.keys() {
            if !a.queries.extra.contains_key(name) {
                self.problem(format!(
                    "{key}.analysis.judge.extra.{name}: needs a query \
                     {key}.analysis.queries.extra.{name}"
                ));
            }
        }
        for name in a.queries.extra.keys() {
            if !a.judge.extra.contains_key(name) {
                // A query nobody judges would cost Prometheus time and decide nothing.
                self.problem(format!(
                    "{key}.analysis.queries.extra.{name}: no {key}.analysis.judge.extra.{name} \
                     says how to judge it"
                ));
            }
        }
        (self.problems.len() == before).then_some(())
    }
}

/// Checks and normalises a server's base URL: http(s), a host, and a trailing `/` so that
/// joining `api/v1/query` keeps a path prefix (Prometheus behind `--web.route-prefix=/prom`).
pub fn base_url(text: &str) -> Result<Url, String> {
    let mut base = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if base.scheme() != "http" && base.scheme() != "https" {
        return Err(format!("{text:?}: scheme must be http or https"));
    }
    if base.host_str().is_none() {
        return Err(format!("{text:?}: no host"));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}
