//! Resolution as a user meets it: what a file resolves to, and every refusal, each naming the
//! key, the value and the fix.

use super::*;
use crate::gitops::remote::Transport;

/// A presence port that knows only the listed environment variables.
struct Env(&'static [&'static str]);

impl SecretPresence for Env {
    fn check(&self, r: &SecretRef) -> Result<(), String> {
        match r {
            SecretRef::Env(v) if self.0.contains(&v.as_str()) => Ok(()),
            SecretRef::Env(v) => Err(format!("environment variable {v} is not set")),
            SecretRef::File(p) => Err(format!("reading secret file {}: not found", p.display())),
        }
    }
}

fn resolved(yaml: &str) -> Resolved {
    let raw = RawConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    resolve(&raw, &ShapeOnly).unwrap_or_else(|p| panic!("{p}"))
}

fn parse(yaml: &str) -> Config {
    let r = resolved(yaml);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    r.config
}

/// Every problem of `yaml`, one per line.
fn problems(yaml: &str) -> String {
    problems_with(yaml, &ShapeOnly)
}

fn problems_with(yaml: &str, secrets: &dyn SecretPresence) -> String {
    let raw = RawConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
    match resolve(&raw, secrets) {
        Ok(_) => panic!("resolved:\n{yaml}"),
        Err(p) => p.0.join("\n"),
    }
}

const ONE_SERVICE: &str = "github:\n  token_env: GITHUB_TOKEN\n\
    gitops:\n  repo_url: https://github.com/acme/gitops.git\nservices:\n  \
    - name: checkout\n    app_repo: acme/checkout\n    image: ghcr.io/acme/checkout\n    \
    environments:\n      - name: staging\n      - name: production\n        \
    require_approval: true\n        required_approvals: 2\n        \
    approving_teams: [acme/sre]\n        repo_url: git@github.com:acme/prod-gitops.git\n        \
    branch: env/production\n";

#[test]
fn empty_file_is_the_default_config() {
    let c = parse("");
    assert_eq!(c.server.webhook_path, "/webhook");
    assert_eq!(c.server.max_body_bytes, 25 * 1024 * 1024);
    assert!(c.services.is_empty() && c.secrets().is_empty());
    assert_eq!(
        c.gitops.retry,
        PushRetry {
            max_attempts: 10,
            initial_backoff: PromDuration::from_secs(1),
            multiplier: 1.5,
            max_backoff: PromDuration::from_secs(30),
        }
    );
}

#[test]
fn values_are_typed_once() {
    let c = parse(ONE_SERVICE);
    let s = c.service("checkout").unwrap();
    assert_eq!(s.app_repo.to_string(), "acme/checkout");
    let deploy = s.deploy.as_ref().unwrap();
    assert_eq!(deploy.image.with_tag("1.2"), "ghcr.io/acme/checkout:1.2");
    assert_eq!(
        s.image_tag.render("4f2a9c81d3e7", Some(7)).unwrap(),
        "sha-4f2a9c8"
    );
    assert_eq!(
        s.settings,
        Settings::default(),
        "the plan and timing, computed once"
    );
    let [staging, production] = &deploy.environments[..] else {
        panic!("{:?}", deploy.environments)
    };
    // staging falls back to gitops.repo_url, and its GitHub name to that URL's.
    assert_eq!(
        staging.repo.url.as_str(),
        "https://github.com/acme/gitops.git"
    );
    assert_eq!(
        staging.repo.github.as_ref().unwrap().to_string(),
        "acme/gitops"
    );
    assert_eq!(staging.branch.as_str(), "main");
    assert_eq!(
        staging.approval,
        ApprovalRule {
            required: false,
            count: 1,
            teams: vec![],
            counted_by: ApprovalAuthority::Deploybot,
            revert_unapproved_merges: true,
        }
    );
    assert_eq!(production.repo.url.transport(), Transport::Ssh);
    assert_eq!(
        production.repo.github.as_ref().unwrap().to_string(),
        "acme/prod-gitops"
    );
    assert_eq!(&*production.branch, "env/production");
    assert_eq!(production.approval.count, 2);
    assert_eq!(
        production.approval.teams,
        [TeamName {
            org: "acme".into(),
            slug: "sre".into()
        }]
    );
}

#[test]
fn repositories_are_looked_up_as_github_compares_them() {
    let c = parse(ONE_SERVICE);
    let repo = |s: &str| s.parse::<RepoName>().unwrap();
    assert_eq!(
        c.service_by_app_repo(&repo("ACME/Checkout"))
            .map(|s| s.name.as_str()),
        Some("checkout")
    );
    assert!(c.is_gitops_repo(&repo("Acme/GitOps")));
    assert!(
        c.is_gitops_repo(&repo("acme/PROD-gitops")),
        "an environment's own repository is a GitOps repository too"
    );
    assert!(c.is_configured_repo(&repo("acme/gitops")));
    assert!(!c.is_configured_repo(&repo("acme/other")));
    assert!(c.service_by_app_repo(&repo("acme/gitops")).is_none());
}

#[test]
fn urls_durations_and_plans_are_parsed() {
    let c = parse(
        "server:\n  public_url: https://deploybot.example.com\n\
         prometheus:\n  url: http://h:9090/prom\n\
         llm:\n  base_url: http://127.0.0.1:8081/v1\n  model: m\n  timeout: 5s\n\
         argocd:\n  url: https://argocd.example.com\n  token_env: ARGOCD_TOKEN\n\
         services:\n  - name: a\n    app_repo: o/a\n    rollout:\n      canary_plan: [10, 50, 100]\n      bake: 5m\n",
    );
    assert_eq!(
        c.server.public_url.unwrap().as_str(),
        "https://deploybot.example.com/"
    );
    assert_eq!(c.prometheus.url.unwrap().as_str(), "http://h:9090/prom/");
    let model = c.llm.model.unwrap();
    assert_eq!(model.base_url.as_str(), "http://127.0.0.1:8081/v1");
    assert_eq!(model.timeout, PromDuration::from_secs(5));
    assert_eq!(
        c.argocd.server.unwrap().url.as_str(),
        "https://argocd.example.com/"
    );
    let s = &c.services[0].settings;
    assert_eq!(s.canary_plan.to_string(), "10 -> 50 -> 100");
    assert_eq!(s.bake_secs, 300);
}

#[test]
fn each_refusal_names_key_value_and_fix() {
    for (yaml, want) in [
        (
            "services:\n  - name: a\n    app_repo: nope\n",
            "services[0].app_repo: \"nope\" is not OWNER/NAME; write it as acme/checkout",
        ),
        (
            "gitops:\n  github_repo: x\n",
            "gitops.github_repo: \"x\" is not OWNER/NAME; write it as acme/gitops",
        ),
        (
            "server:\n  webhook_path: hook\n",
            "server.webhook_path: must start with '/', got \"hook\"; write it as \"/hook\"",
        ),
        (
            "services:\n  - name: a\n    app_repo: o/a\n    image: ghcr.io/o/a:1.0\n",
            "services[0].image: the image repository without a tag, got \"ghcr.io/o/a:1.0\"; write it as ghcr.io/acme/checkout",
        ),
        (
            "gitops:\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    environments:\n      - name: e\n",
            "services[0].image: not set, but the service has environments to deploy to; set it",
        ),
        (
            "gitops:\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n        approving_teams: [sre]\n",
            "services[0].environments[0].approving_teams: \"sre\" must be ORG/TEAM-SLUG (e.g. acme/sre)",
        ),
        (
            "gitops:\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n        branch: a..b\n",
            "services[0].environments[0].branch: \"a..b\" is not a valid branch name; name the branch",
        ),
        (
            "services:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n",
            "services[0].environments[0].repo_url: no repository (set it here or gitops.repo_url)",
        ),
        (
            "gitops:\n  repo_url: file:///g\ngithub:\n  token_env: T\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n        require_approval: true\n",
            "services[0].environments[0].require_approval: approval PRs need the GitOps repository on GitHub, and file:///g is not a repository URL on github.com; set gitops.github_repo",
        ),
        (
            "gitops:\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n        targets:\n          - path: d.yaml\n          - path: r.yaml\n            kind: weight\n            canary: a-canary\n",
            "services[0].environments[0].targets[1]: a weight target sends traffic to the canary, but no image target of this environment has track: canary",
        ),
        (
            "gitops:\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n        targets:\n          - path: v.yaml\n            kind: helm_values\n          - path: r.yaml\n            kind: replicas\n            canary: a-canary\n            stable: a\n            total_replicas: 10\n",
            "services[0].environments[0].targets[1]: a replicas target sends traffic to the canary",
        ),
        (
            "gitops:\n  mode: pull_request\n  repo_url: file:///g\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n",
            "gitops.mode: pull_request opens and merges a PR for every step on GitHub: set github.app_id",
        ),
        (
            "gitops:\n  mode: pull_request\n  repo_url: file:///g\ngithub:\n  token_env: T\nservices:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n",
            "gitops.mode: pull_request: the GitOps repository of a/e (file:///g) is not a repository on github.com; set the environment's github_repo",
        ),
        (
            "gitops:\n  checks_timeout: 0s\n",
            "gitops.checks_timeout: must be greater than 0s (e.g. 30m)",
        ),
        (
            "llm:\n  base_url: ftp://x\n  model: m\n",
            "llm.base_url: \"ftp://x\" must be an http:// or https:// URL with a host; write it as",
        ),
        (
            "services:\n  - name: a\n    app_repo: o/a\n    image_tag: 'v-{branch}'\n",
            "services[0].image_tag: image tag template \"v-{branch}\": unknown placeholder {branch}",
        ),
        (
            "services:\n  - name: a\n    app_repo: o/a\n    image_tag: 'v/{sha}'\n",
            "not a valid image tag",
        ),
    ] {
        let p = problems(yaml);
        assert!(p.contains(want), "want {want:?} in:\n{p}");
    }
}

#[test]
fn every_problem_is_listed_at_once() {
    let p = problems(
        "server:\n  webhook_path: hook\n  max_body_bytes: 0\n\
         gitops:\n  author_email: nobody\n  retry:\n    max_attempts: 0\n\
         prometheus:\n  retries: 99\n\
         services:\n  - name: a\n    app_repo: nope\n    rollout:\n      canary_plan: [50, 25]\n\
           \x20 - name: a\n    app_repo: o/a\n",
    );
    for key in [
        "server.webhook_path",
        "server.max_body_bytes: must be greater than 0, got 0",
        "gitops.author_email: must be an email address, got \"nobody\"",
        "gitops.retry.max_attempts",
        "prometheus.retries: at most 10, got 99",
        "services[0].app_repo",
        "services[0].rollout.canary_plan: weights must strictly increase, but 25 follows 50",
        "services[1].name: \"a\" is already the name of another service",
    ] {
        assert!(p.contains(key), "{key} missing in:\n{p}");
    }
}

#[test]
fn deprecated_millisecond_keys_warn_and_mean_the_same() {
    let old = resolved(
        "llm:\n  timeout_ms: 5000\n  max_retry_wait_ms: 1500\n\
         gitops:\n  retry:\n    initial_backoff_ms: 10\n    max_backoff_ms: 100\n",
    );
    let new = parse(
        "llm:\n  timeout: 5s\n  max_retry_wait: 1500ms\n\
         gitops:\n  retry:\n    initial_backoff: 10ms\n    max_backoff: 100ms\n",
    );
    assert_eq!(old.config.gitops.retry, new.gitops.retry);
    assert_eq!(
        new.gitops.retry.initial_backoff,
        PromDuration::from_millis(10)
    );
    let with_model = |y: &str| {
        resolved(&format!("{y}  base_url: http://h/v1\n  model: m\n"))
            .config
            .llm
            .model
            .unwrap()
    };
    let (a, b) = (
        with_model("llm:\n  timeout_ms: 5000\n  max_retry_wait_ms: 1500\n"),
        with_model("llm:\n  timeout: 5s\n  max_retry_wait: 1500ms\n"),
    );
    assert_eq!((a.timeout, a.max_retry_wait), (b.timeout, b.max_retry_wait));
    let warnings: Vec<String> = old.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "gitops.retry.initial_backoff_ms: deprecated; write gitops.retry.initial_backoff: 10ms instead (durations are written 500ms, 30s, 5m)",
            "gitops.retry.max_backoff_ms: deprecated; write gitops.retry.max_backoff: 100ms instead (durations are written 500ms, 30s, 5m)",
            "llm.timeout_ms: deprecated; write llm.timeout: 5s instead (durations are written 500ms, 30s, 5m)",
            "llm.max_retry_wait_ms: deprecated; write llm.max_retry_wait: 1s500ms instead (durations are written 500ms, 30s, 5m)",
        ]
    );
    // The effective config speaks only the new spelling.
    let effective = RawConfig::from_yaml("llm:\n  timeout_ms: 5000\n")
        .unwrap()
        .effective()
        .to_yaml();
    assert!(effective.contains("timeout: 5s"), "{effective}");
    assert!(!effective.contains("_ms"), "{effective}");
}

#[test]
fn both_spellings_of_a_key_is_an_error() {
    let p = problems("llm:\n  timeout: 5s\n  timeout_ms: 5000\n");
    assert!(
        p.contains("llm.timeout_ms: 5000 is the deprecated spelling of llm.timeout, which is also set; remove llm.timeout_ms"),
        "{p}"
    );
    let p = problems("gitops:\n  retry:\n    max_backoff: 1s\n    max_backoff_ms: 1000\n");
    assert!(p.contains("gitops.retry.max_backoff_ms"), "{p}");
}

#[test]
fn a_bad_duration_is_a_parse_error_naming_the_value() {
    let e = RawConfig::from_yaml("prometheus:\n  timeout: 10\n").unwrap_err();
    assert!(e.contains("\"10\"") && e.contains("unit"), "{e}");
}

#[test]
fn unknown_key_is_rejected_with_its_name() {
    let e = RawConfig::from_yaml("server:\n  listn: 127.0.0.1:1\n").unwrap_err();
    assert!(e.contains("listn"), "{e}");
}

#[test]
fn inline_secret_is_not_a_key() {
    let e = RawConfig::from_yaml("server:\n  webhook_secret: hunter2\n").unwrap_err();
    assert!(e.contains("webhook_secret"), "{e}");
}

#[test]
fn public_url_must_be_a_plain_http_base() {
    for ok in [
        "https://deploybot.example.com",
        "http://10.0.0.1:8080/deploybot/",
    ] {
        parse(&format!("server:\n  public_url: {ok}\n"));
    }
    for (bad, why) in [
        ("deploybot.example.com", "not a URL"),
        ("ftp://example.com", "http:// or https://"),
        ("https://user:pw@example.com", "credentials"),
        ("https://example.com/?a=1", "query or fragment"),
    ] {
        let e = problems(&format!("server:\n  public_url: {bad}\n"));
        assert!(
            e.contains("server.public_url") && e.contains(why),
            "{bad}: {e}"
        );
        assert!(!e.contains(":pw@"), "credentials echoed: {e}");
    }
}

#[test]
fn missing_secrets_are_named_by_key_and_reference_never_by_value() {
    let yaml = "server:\n  webhook_secret_env: HOOK\n\
                github:\n  token_file: /run/secrets/gh\n\
                alerts:\n  webhook_url_env: ALERTS\n";
    let p = problems_with(yaml, &Env(&["ALERTS"]));
    assert!(
        p.contains("server.webhook_secret_env (HOOK): environment variable HOOK is not set; set HOOK where deploybot runs, or remove the reference"),
        "{p}"
    );
    assert!(
        p.contains("github.token_file (/run/secrets/gh): reading secret file /run/secrets/gh: not found; mount the secret at /run/secrets/gh"),
        "{p}"
    );
    assert!(!p.contains("alerts"), "a present secret is no problem: {p}");
    // Shape only: the same file resolves where the secrets are not mounted.
    let c = parse(yaml);
    let keys: Vec<String> = c.secrets().iter().map(|(k, r)| k.written(r)).collect();
    assert_eq!(
        keys,
        [
            "server.webhook_secret_env",
            "github.token_file",
            "alerts.webhook_url_env"
        ]
    );
}

#[test]
fn secrets_of_switched_off_sections_are_not_required() {
    // No base_url: no model is asked, so its key is not needed; a file:// remote needs no token.
    let c = resolve(
        &RawConfig::from_yaml(
            "llm:\n  api_key_env: LLM\n\
             gitops:\n  repo_url: file:///srv/g.git\n  token_env: GIT\n\
             prometheus:\n  bearer_token_env: PROM\n",
        )
        .unwrap(),
        &Env(&[]),
    )
    .unwrap_or_else(|p| panic!("{p}"));
    assert!(c.config.secrets().is_empty());
    // Pushing over https does use gitops.token.
    let p = problems_with(
        "gitops:\n  repo_url: https://github.com/o/g.git\n  token_env: GIT\nservices:\n  \
         - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      - name: e\n",
        &Env(&[]),
    );
    assert!(p.contains("gitops.token_env (GIT)"), "{p}");
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
    let c = parse(&ok);
    assert!(c.services[0].analysis.queries.extra.contains_key("orders"));
    let e = problems(&service(
        "          orders: {}\n",
        "          refunds: 'sum(refunds_total{track=\"{{track}}\"})'\n",
    ));
    for needle in [
        "services[0].analysis.judge.extra.orders: needs a query services[0].analysis.queries.extra.orders",
        "services[0].analysis.queries.extra.refunds: no services[0].analysis.judge.extra.refunds",
    ] {
        assert!(e.contains(needle), "{e}");
    }
    let e = problems(&service(
        "          orders: {}\n",
        "          orders: 'sum(orders_total)'\n",
    ));
    assert!(
        e.contains("services[0].analysis.queries.extra.orders: must use {{track}}"),
        "{e}"
    );
}

#[test]
fn pull_request_mode_resolves_with_its_merge_method_and_wait() {
    let c = parse(&ONE_SERVICE.replace(
        "gitops:\n",
        "gitops:\n  mode: pull_request\n  merge_method: squash\n  checks_timeout: 10m\n",
    ));
    assert_eq!(c.gitops.mode, WriteMode::PullRequest);
    assert_eq!(c.gitops.merge_method, crate::github::MergeMethod::Squash);
    assert_eq!(c.gitops.checks_timeout, PromDuration::from_secs(600));
    let d = parse(ONE_SERVICE);
    assert_eq!(d.gitops.mode, WriteMode::Direct, "direct stays the default");
    assert_eq!(d.gitops.merge_method, crate::github::MergeMethod::Merge);
    let e = RawConfig::from_yaml("gitops:\n  merge_method: fast_forward\n")
        .expect_err("an unknown merge method is refused");
    assert!(e.to_string().contains("fast_forward"), "{e}");
}

#[test]
fn gitops_problems_name_their_keys() {
    let p = problems(
        "gitops:\n  repo_url: ftp://x/y\n  author_email: nobody\n  branch_prefix: bad..prefix\n  \
         retry:\n    max_attempts: 0\n    multiplier: 0.5\n",
    );
    for key in [
        "gitops.repo_url",
        "gitops.author_email",
        "gitops.branch_prefix",
        "gitops.retry.max_attempts",
        "gitops.retry.multiplier",
    ] {
        assert!(p.contains(key), "{key} missing in {p}");
    }
}

#[test]
fn llm_problems_name_their_keys() {
    let p = problems("llm:\n  base_url: ftp://x\n  timeout: 0s\n");
    for key in ["llm.base_url", "llm.model", "llm.timeout"] {
        assert!(p.contains(key), "{key} missing in {p}");
    }
}

#[test]
fn a_prompt_budget_beyond_a_known_context_warns() {
    let yaml = |model: &str, tokens: u32| {
        format!(
            "llm:\n  base_url: https://api.openai.com/v1\n  model: {model}\n  \
             max_prompt_tokens: {tokens}\n"
        )
    };
    let r = resolved(&yaml("gpt-4-0613", 12_000));
    let w: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("llm.max_prompt_tokens")
            && w[0].contains("8192-token context")
            && w[0].contains("at most 7392"),
        "{w:?}"
    );
    assert!(resolved(&yaml("gpt-4-0613", 7_000)).warnings.is_empty());
    assert!(resolved(&yaml("gpt-4o", 12_000)).warnings.is_empty());
    assert!(
        resolved(&yaml("qwen2.5:1.5b", 12_000)).warnings.is_empty(),
        "a local model is asked at run time"
    );
}

#[test]
fn the_model_key_is_sent_as_llm_auth_says() {
    let base = "llm:\n  base_url: https://x.openai.azure.com/openai/v1\n  model: gpt-4o\n";
    let spec = |c: Config| c.llm.model.unwrap().auth;
    assert_eq!(spec(parse(base)), ModelAuth::Bearer);
    assert_eq!(
        spec(parse(&format!("{base}  auth: api-key\n"))),
        ModelAuth::ApiKey
    );
    let e = RawConfig::from_yaml(&format!("{base}  auth: header\n")).unwrap_err();
    assert!(e.to_string().contains("auth"), "{e}");
}

#[test]
fn prometheus_problems_name_their_keys() {
    let p = problems(
        "prometheus:\n  url: ftp://x\n  timeout: 0s\n  retries: 99\n  backoff: 2s\n  \
         max_backoff: 1s\n  bearer_token_env: A\n  bearer_token_file: /b\n",
    );
    for key in [
        "prometheus.url",
        "prometheus.timeout",
        "prometheus.retries",
        "prometheus.max_backoff",
        "prometheus.bearer_token",
    ] {
        assert!(p.contains(key), "{key} missing in {p}");
    }
    assert_eq!(parse("").prometheus.retries, 3);
}

#[test]
fn argocd_is_checked_with_full_keys() {
    let c = parse(
        "argocd:\n  url: https://argocd.example.com\n  token_env: ARGOCD_TOKEN\n  \
         application: '{environment}-{service}'\n",
    );
    assert_eq!(
        c.argocd.application_name("checkout", "staging"),
        "staging-checkout"
    );
    let p = problems("argocd:\n  url: argocd.local\n  application: '{svc}'\n  timeout: '0'\n");
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines.len(), 4, "{p}");
    for (line, want) in lines.iter().zip([
        "argocd.url: must be an http(s) URL, got \"argocd.local\"",
        "argocd.token_env or argocd.token_file: required with argocd.url",
        "argocd.application: only {service} and {environment} may be used, got \"{svc}\"",
        "argocd.timeout: must be greater than 0",
    ]) {
        assert!(line.starts_with(want), "{line}");
    }
    assert!(RawConfig::from_yaml("argocd:\n  token: abc\n").is_err());
}

#[test]
fn argocd_poll_is_not_read_and_says_so() {
    let with = resolved("argocd:\n  poll: 5s\n");
    let warning = with.warnings.iter().find(|w| w.key == "argocd.poll");
    let warning = warning.unwrap_or_else(|| panic!("no warning in {:?}", with.warnings));
    assert!(
        warning.message.contains("server.tick_interval"),
        "{}",
        warning.message
    );
    assert!(
        resolved("argocd: {}\n")
            .warnings
            .iter()
            .all(|w| w.key != "argocd.poll")
    );
}

#[test]
fn push_backoff_grows_is_capped_and_jittered_within_bounds() {
    let r = PushRetry {
        max_attempts: 10,
        initial_backoff: PromDuration::from_millis(100),
        multiplier: 2.0,
        max_backoff: PromDuration::from_millis(300),
    };
    let p = r.policy();
    let ms = |attempt, random| p.delay(attempt, random).unwrap().as_millis();
    assert_eq!((ms(1, 0.0), ms(1, 0.999_999)), (50, 99));
    assert_eq!(ms(2, 0.0), 100);
    assert_eq!((ms(8, 0.0), ms(8, 0.999_999)), (150, 299));
    assert_eq!(p.delay(10, 0.5), None, "ten attempts, then give up");
}

#[test]
fn keys_that_said_hold_for_inconclusive_are_read_with_a_warning() {
    let service = |rollout: &str, judge: &str| {
        format!(
            "services:\n  - name: shop\n    app_repo: acme/shop\n    rollout:\n{rollout}    \
             analysis:\n      judge:\n{judge}"
        )
    };
    let old = resolved(&service(
        "      max_hold_intervals: 5\n",
        "        escalate_after_holds: 2\n",
    ));
    let s = old.config.service("shop").unwrap();
    assert_eq!(s.settings.max_inconclusive_intervals, 5);
    assert_eq!(s.analysis.judge.escalate_after_inconclusive, 2);
    assert_eq!(
        s.analysis.judge.escalate_after_holds, None,
        "moved, not kept"
    );
    let warnings: Vec<String> = old.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "services[0].analysis.judge.escalate_after_holds: renamed; write \
             services[0].analysis.judge.escalate_after_inconclusive: 2 instead",
            "services[0].rollout.max_hold_intervals: renamed; write \
             services[0].rollout.max_inconclusive_intervals: 5 instead",
        ]
    );
    let new = resolved(&service(
        "      max_inconclusive_intervals: 5\n",
        "        escalate_after_inconclusive: 2\n",
    ));
    assert!(new.warnings.is_empty());
    assert_eq!(
        new.config.service("shop").unwrap().settings,
        old.config.service("shop").unwrap().settings
    );
    let e = problems(&service(
        "      max_hold_intervals: 5\n      max_inconclusive_intervals: 4\n",
        "        escalate_after_inconclusive: 2\n",
    ));
    assert!(
        e.contains(
            "services[0].rollout.max_hold_intervals: 5 is the old spelling of \
             services[0].rollout.max_inconclusive_intervals, which is also set to 4"
        ),
        "{e}"
    );
}

/// A label is set by anyone with triage access, so a label rule may raise the score but never
/// lower it (a lower score could drop a required approval): a negative `adjust` is refused.
#[test]
fn a_label_rule_can_raise_the_score_but_never_lower_it() {
    let p = problems("risk:\n  labels:\n    - label: risk/override-low\n      adjust: -0.5\n");
    assert!(
        p.contains("risk.labels[0].adjust: must be between 0 and 1, got -0.5")
            && p.contains("never lower"),
        "{p}"
    );
    let c = parse("risk:\n  labels:\n    - label: hotfix\n      adjust: 0.2\n");
    assert_eq!(c.risk.config.labels[0].adjust, 0.2);
}

/// Approval PRs and webhooks of every environment's repository, wherever GitHub runs: on
/// github.com, on a GitHub Enterprise Server (its repositories named from URLs on the API's
/// host), or named explicitly for a git host of its own.
#[test]
fn each_environment_repository_is_named_on_the_github_that_serves_it() {
    let c = parse(
        "github:\n  api_url: https://ghe.example.com/api/v3\n\
         gitops:\n  repo_url: https://ghe.example.com/platform/gitops.git\n\
         services:\n  - name: checkout\n    app_repo: shop/checkout\n    image: i\n    \
         environments:\n      - name: staging\n      - name: production\n        \
         require_approval: true\n        repo_url: git@ghe.example.com:shop/prod-gitops.git\n      \
         - name: dr\n        require_approval: true\n        \
         repo_url: ssh://git@git.example.com/mirror/dr.git\n        github_repo: shop/dr-gitops\n        \
         revert_unapproved_merges: false\n",
    );
    assert_eq!(c.github.web_host(), "ghe.example.com");
    let names: Vec<String> = c
        .gitops_repos_on_github()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        names,
        ["platform/gitops", "shop/prod-gitops", "shop/dr-gitops"]
    );
    let envs = c.services[0].environments();
    assert!(envs[1].approval.revert_unapproved_merges);
    assert!(!envs[2].approval.revert_unapproved_merges);

    let hosts = |api: &str| {
        parse(&format!("github:\n  api_url: {api}\n"))
            .github
            .web_host()
            .to_string()
    };
    assert_eq!(hosts("https://api.github.com"), "github.com");
    assert_eq!(hosts("https://api.acme.ghe.com"), "acme.ghe.com");
    assert_eq!(hosts("http://127.0.0.1:8080/api/v3"), "127.0.0.1");

    let p = problems(
        "github:\n  api_url: https://ghe.example.com/api/v3\ngitops:\n  repo_url: file:///g\n\
         services:\n  - name: a\n    app_repo: o/a\n    image: i\n    environments:\n      \
         - name: e\n        require_approval: true\n        repo_url: https://github.com/o/g.git\n      \
         - name: f\n        github_repo: o/f\n",
    );
    assert!(
        p.contains(
            "services[0].environments[0].require_approval: approval PRs need the GitOps \
             repository on GitHub, and https://github.com/o/g.git is not a repository URL on \
             ghe.example.com; set services[0].environments[0].github_repo"
        ),
        "{p}"
    );
    assert!(
        p.contains("services[0].environments[1].github_repo: names the environment's own repository, but it has no repo_url"),
        "{p}"
    );
}

#[test]
fn environments_name_their_own_argo_cd_and_prometheus_and_fall_back_to_the_top_level() {
    let yaml = "argocd:\n  url: https://argocd.example.com\n  token_env: ARGO_SHARED\n\
                prometheus:\n  url: http://prometheus.shared:9090\n\
                gitops:\n  repo_url: https://github.com/acme/gitops.git\n\
                services:\n  - name: checkout\n    app_repo: acme/checkout\n    \
                image: ghcr.io/acme/checkout\n    environments:\n      - name: staging\n\
                \x20     - name: canary\n        argocd:\n          application: '{service}-cx'\n\
                \x20     - name: production\n        argocd:\n          \
                url: https://argocd.prod.example.com\n          token_env: ARGO_PROD\n\
                \x20       prometheus:\n          url: http://prometheus.prod:9090/prom\n          \
                bearer_token_file: /run/secrets/prom-prod\n";
    let c = parse(yaml);
    let envs = c.services[0].environments();
    let row = |e: &EnvironmentSpec| {
        (
            c.argocd_server(e).map(|s| s.url.to_string()),
            c.application_name("checkout", e),
            c.prometheus_server(e).map(|p| p.url.to_string()),
        )
    };
    let want = [
        (
            "https://argocd.example.com/",
            "checkout-staging",
            "http://prometheus.shared:9090/",
        ),
        (
            "https://argocd.example.com/",
            "checkout-cx",
            "http://prometheus.shared:9090/",
        ),
        (
            "https://argocd.prod.example.com/",
            "checkout-production",
            "http://prometheus.prod:9090/prom/",
        ),
    ];
    for (e, (argocd, app, prom)) in envs.iter().zip(want) {
        assert_eq!(
            row(e),
            (
                Some(argocd.to_string()),
                app.to_string(),
                Some(prom.to_string())
            ),
            "{}",
            e.name
        );
    }
    // An environment's own tokens are checked for presence under their full keys.
    let p = problems_with(yaml, &Env(&["ARGO_SHARED"]));
    let key = "services[0].environments[2]";
    assert!(
        p.contains(&format!(
            "{key}.argocd.token_env (ARGO_PROD): environment variable ARGO_PROD is not set"
        )),
        "{p}"
    );
    assert!(
        p.contains(&format!(
            "{key}.prometheus.bearer_token_file (/run/secrets/prom-prod)"
        )),
        "{p}"
    );
    assert_eq!(p.lines().count(), 2, "{p}");
}

#[test]
fn a_github_app_needs_its_key_and_excludes_a_token() {
    let c = parse("github:\n  app_id: 42\n  private_key_file: /run/secrets/app.pem\n");
    let app = c.github.app.as_ref().unwrap();
    assert_eq!(app.id, 42);
    assert_eq!(
        app.private_key,
        SecretRef::File("/run/secrets/app.pem".into())
    );
    assert!(c.github.authenticated() && c.github.token.is_none());
    assert!(
        c.secrets()
            .iter()
            .any(|(k, _)| *k == SecretKey::GithubAppKey)
    );
    let rows = [
        (
            "no key",
            "github:\n  app_id: 42\n",
            "needs the App's private key",
        ),
        (
            "key without id",
            "github:\n  private_key_env: K\n",
            "a private key without github.app_id",
        ),
        (
            "app and token",
            "github:\n  app_id: 42\n  private_key_env: K\n  token_env: T\n",
            "not both",
        ),
        (
            "id zero",
            "github:\n  app_id: 0\n  private_key_env: K\n",
            "numeric id",
        ),
        (
            "both key halves",
            "github:\n  app_id: 42\n  private_key_env: K\n  private_key_file: /k\n",
            "github.private_key: set either",
        ),
    ];
    for (row, yaml, expected) in rows {
        let p = problems(yaml);
        assert!(p.contains(expected), "row {row:?}: {p}");
    }
}

/// A monorepo: two services of one application repository, each owning its paths, and a third
/// that owns the whole repository. Each row: the files a change touches, the services it
/// releases.
#[test]
fn a_change_releases_the_services_whose_paths_it_touches() {
    let c = parse(
        "services:\n  - name: checkout\n    app_repo: acme/shop\n    paths: ['services/checkout/**', 'libs/money/**']\n  \
         - name: payments\n    app_repo: acme/shop\n    paths: ['services/payments/**']\n  \
         - name: docs\n    app_repo: acme/site\n",
    );
    let shop: RepoName = "Acme/Shop".parse().unwrap();
    let names = |files: &[&str]| {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        c.released_by(&shop, &files)
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    for (row, files, want) in [
        (
            "one service",
            &["services/checkout/src/cart.rs"][..],
            &["checkout"][..],
        ),
        (
            "a shared library it owns",
            &["libs/money/src/lib.rs"][..],
            &["checkout"][..],
        ),
        (
            "both",
            &["services/checkout/a.rs", "services/payments/b.rs"][..],
            &["checkout", "payments"][..],
        ),
        (
            "neither",
            &["README.md", "services/other/x.rs"][..],
            &[][..],
        ),
        (
            "* stays within a directory",
            &["services/checkoutx/a.rs"][..],
            &[][..],
        ),
    ] {
        assert_eq!(names(files), want, "row {row}");
    }
    let site: RepoName = "acme/site".parse().unwrap();
    assert_eq!(c.released_by(&site, &["anything.md".into()]).len(), 1);
    // `/deploy payments` picks the service; any other word is an environment.
    let (services, env) =
        c.deploy_targets(&shop, &["services/checkout/a.rs".into()], Some("payments"));
    assert_eq!((services[0].name.as_str(), env), ("payments", None));
    let (services, env) =
        c.deploy_targets(&shop, &["services/checkout/a.rs".into()], Some("staging"));
    assert_eq!((services.len(), env.as_deref()), (1, Some("staging")));
    assert!(
        problems("services:\n  - name: a\n    app_repo: o/a\n    paths: ['src/[']\n")
            .contains("services[0].paths[0]: \"src/[\" is not a glob")
    );
}

#[test]
fn store_url_selects_postgres_with_its_password_kept_out_of_the_file() {
    assert!(parse("").store.postgres.is_none(), "SQLite by default");
    let c = parse(
        "store:\n  url: postgres://deploybot@db.internal:5432/deploybot\n  \
         password_env: PGPASSWORD\n",
    );
    let pg = c.store.postgres.expect("store.url selects PostgreSQL");
    assert_eq!(pg.url, "postgres://deploybot@db.internal:5432/deploybot");
    assert_eq!(pg.password, Some(SecretRef::Env("PGPASSWORD".into())));
    // The password is a secret in use: checked for presence like the others.
    let p = problems_with(
        "store:\n  url: postgres://bot@db/x\n  password_env: PGPASSWORD\n",
        &Env(&[]),
    );
    assert!(p.contains("store.password_env (PGPASSWORD)"), "{p}");
    // A URL without a password (trust, peer or a .pgpass-less proxy) needs none.
    assert!(
        parse("store:\n  url: postgres://bot@db/x?sslmode=disable\n")
            .store
            .postgres
            .is_some_and(|p| p.password.is_none())
    );
}

#[test]
fn unsafe_or_unsupported_store_urls_are_refused_naming_the_fix() {
    let p = problems("store:\n  url: postgres://bot:hunter2@db/x\n");
    assert!(
        p.contains("store.url: holds a password; move it to store.password_env"),
        "{p}"
    );
    assert!(!p.contains("hunter2"), "the password is never echoed: {p}");
    let p = problems("store:\n  url: postgres://bot@db/x?sslmode=require\n");
    assert!(
        p.contains("sslmode=require is not supported yet") && p.contains("sslmode=disable"),
        "{p}"
    );
    let p = problems("store:\n  url: mysql://bot@db/x\n");
    assert!(p.contains("must be a postgres:// URL with a host"), "{p}");
    let p = problems("store:\n  password_file: /run/secrets/pg\n");
    assert!(
        p.contains("store.password_env/_file: only read with store.url"),
        "{p}"
    );
}
