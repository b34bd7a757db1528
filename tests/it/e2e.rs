//! The whole flow, end to end, through what `serve` runs (`webhook::server::assemble`): signed
//! webhooks into the router; the GitOps repository a real bare repository served over smart
//! HTTP by `git http-backend` (accepting only unexpired installation tokens of the GitHub App
//! deploybot runs as); the real Prometheus server over known series; a
//! fake GitHub speaking the REST shapes (built from the real payloads, API-opened PRs backed by
//! the real repository) and a fake Argo CD (held to its API description) reporting the
//! repository's tip as synced and healthy.
//!
//! Time is a virtual clock, and the Prometheus series are backfilled for the virtual timeline
//! (`promtool tsdb create-blocks-from openmetrics`): a 40-minute rollout is judged from real
//! PromQL over real TSDB blocks in seconds. The canary is healthy until `REGRESSION_AT`, then
//! fails 15 % of its requests in staging.
//!
//! Scenarios, in order, on one installation:
//! 1. a healthy change waits for its required check, rolls through staging, waits for an
//!    approval in production (a reader's review does not count, a writer's does), is merged by
//!    the bot, and completes;
//! 2. the process is killed mid-canary and restarted: the rollout continues, no step is
//!    committed twice; `/rollback` by a reader is refused, by a writer obeyed (git revert);
//! 3. a regressed change is rolled back in staging by the judge, with the evidence in the revert
//!    commit, a `deploy/rolled-back` label and the PR comment; production never sees it;
//! 4. Prometheus stops mid-analysis: the rollout pauses and is never promoted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::DateTime;
use serde_json::{Value, json};
use tower::ServiceExt;

use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::secrets::Secrets;
use deploybot::adapters::store::DeliveryStatus;
use deploybot::config::Config;
use deploybot::demo::VirtualClock;
use deploybot::demo::workspace::Workspace;
use deploybot::shell::driver::Clock;
use deploybot::shell::runner::PrometheusWindows;
use deploybot::shell::webhook::server::{Assembly, assemble};
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Phase, Rollout};
use deploybot_core::webhook::signature::sign;

use crate::support::fake_argocd::{self, FakeArgoCd};
use crate::support::fake_github::{BareRepo, FakeGithub, file, webhook};
use crate::support::git_http::GitHttp;
use crate::support::prometheus::{PrometheusServer, require_tools, start_prometheus};

pub(crate) const SECRET: &str = "e2e-webhook-secret";
/// How long the fake GitHub's installation tokens live.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2);
const ARGO_TOKEN: &str = "argo-t0ken";
const APP_REPO: &str = "Codertocat/Hello-World";
pub(crate) const GITOPS_REPO: &str = "Codertocat/gitops";
/// Minutes of series before the virtual clock starts, and in all.
const LEAD: i64 = 10;
const SPAN: i64 = 160;
/// Minute of the timeline from which the staging canary fails 15 % of its requests.
pub(crate) const REGRESSION_AT: i64 = 100;

/// The virtual timeline starts this many minutes before the real now, so the whole of it is in
/// the past and backfilled.
pub(crate) fn timeline_start() -> i64 {
    let now = SystemClock.now().timestamp();
    (now - (SPAN + 5) * 60) / 60 * 60
}

/// Minute of the timeline from which `cart`'s staging canary fails 15 % of its requests: from
/// the start, so every `cart` release regresses (`org`'s monorepo, where `checkout` is healthy).
pub(crate) const CART_REGRESSION_AT: i64 = 0;

/// Counters per 15-second scrape, per service: baseline 3000 requests, canary 1000 (a 25 %
/// share, the first canary step), 0.5 % errors on both; the staging canary 15 % after
/// `REGRESSION_AT` for `checkout`, `CART_REGRESSION_AT` for `cart`.
fn openmetrics(start: i64) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("# TYPE http_requests counter\n");
    for (service, regression_at) in [("checkout", REGRESSION_AT), ("cart", CART_REGRESSION_AT)] {
        for env in ["staging", "production"] {
            for track in ["baseline", "canary"] {
                for code in ["200", "500"] {
                    let mut value = 1_000u64;
                    for k in 0..=(SPAN * 4) {
                        let minute = k / 4;
                        let wobble = (k % 3) as u64;
                        let (requests, errors) = match track {
                            "baseline" => (3000, 14 + wobble),
                            _ if env == "staging" && minute >= regression_at => (1000, 150),
                            _ => (1000, 4 + wobble),
                        };
                        value += if code == "500" {
                            errors
                        } else {
                            requests - errors
                        };
                        writeln!(
                        s,
                        r#"http_requests_total{{service="{service}",environment="{env}",track="{track}",code="{code}"}} {value} {}"#,
                        start + k * 15
                    )
                    .unwrap();
                    }
                }
            }
        }
    }
    s.push_str("# EOF\n");
    s
}

/// Argo CD over the real repository (`support::fake_argocd`, held to Argo CD's API
/// description): every environment's Application synced and healthy at the branch tip.
async fn start_argo(ws: &Workspace) -> FakeArgoCd {
    let tip = |_: &str| fake_argocd::App::Tip {
        git_dir: ws.gitops.clone(),
        branch: "main".into(),
        third_writer: None,
    };
    fake_argocd::serve(
        ARGO_TOKEN,
        vec![
            ("checkout-staging", tip("staging")),
            ("checkout-production", tip("production")),
        ],
    )
    .await
}

pub(crate) struct World {
    pub(crate) config: Config,
    pub(crate) gh: FakeGithub,
    pub(crate) repo: BareRepo,
    prometheus: PrometheusServer,
    pub(crate) argo: FakeArgoCd,
    pub(crate) clock: VirtualClock,
    _git: GitHttp,
    _tmp: tempfile::TempDir,
    deliveries: std::sync::atomic::AtomicU64,
}

fn write_secret(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p.display().to_string()
}

impl World {
    async fn new() -> World {
        World::new_with(|_| {}).await
    }

    /// The world with its config (as JSON, before it is resolved) changed by `tweak`.
    pub(crate) async fn new_with(tweak: impl FnOnce(&mut Value)) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // The demo's GitOps layout, served over smart HTTP.
        let ws = Workspace::create(&dir.join("git")).unwrap();
        let repo = BareRepo(ws.gitops.clone());
        // deploybot is the GitHub App, installed on the organisation (installation 1, as the
        // real deliveries say): the API and git accept only its unexpired installation tokens,
        // which live two seconds, so the scenarios outlive their first ones.
        let gh = FakeGithub::start().await;
        gh.require_app(
            crate::github_app::APP_ID,
            &std::fs::read(crate::github_app::key("test-app.pub.pem")).unwrap(),
            &[("Codertocat", 1)],
            TOKEN_LIFETIME,
        );
        let state = gh.state.clone();
        let git = GitHttp::start_checked(
            ws.root.clone(),
            Arc::new(move |t| {
                let st = state.lock().unwrap();
                st.app
                    .as_ref()
                    .unwrap()
                    .valid_token(t, Some("Codertocat"))
                    .is_ok()
            }),
        )
        .await;
        gh.back_with_git(repo.clone());
        let argo = start_argo(&ws).await;
        let argo_url = argo.url.clone();
        let start = timeline_start();
        let prometheus = start_prometheus(&openmetrics(start)).await;
        let clock =
            VirtualClock::starting_at(DateTime::from_timestamp(start + LEAD * 60, 0).unwrap());

        let q = |errors: bool| {
            let sel = r#"service="{{service}}",environment="{{environment}}",track="{{track}}""#;
            if errors {
                format!(
                    r#"sum(increase(http_requests_total{{{sel},code=~"5.."}}[{{{{interval}}}}])) or 0 * sum(increase(http_requests_total{{{sel}}}[{{{{interval}}}}]))"#
                )
            } else {
                format!(r#"sum(increase(http_requests_total{{{sel}}}[{{{{interval}}}}]))"#)
            }
        };
        let targets = |env: &str| {
            json!([
                {"path": format!("apps/checkout/overlays/{env}/deployment-canary.yaml"), "track": "canary"},
                {"path": format!("apps/checkout/overlays/{env}/deployment.yaml")},
                {"path": format!("apps/checkout/overlays/{env}/httproute.yaml"), "kind": "weight",
                 "canary": "checkout-canary", "stable": "checkout-stable"},
            ])
        };
        let mut config = json!({
            "server": {"webhook_secret_file": write_secret(&dir, "webhook-secret", SECRET)},
            "github": {
                "api_url": gh.url(),
                "app_id": crate::github_app::APP_ID,
                "private_key_file": crate::github_app::key("test-app.pem"),
            },
            "gitops": {
                "repo_url": git.url("gitops.git"),
                "github_repo": GITOPS_REPO,
                "retry": {"max_attempts": 3, "initial_backoff": "10ms", "max_backoff": "50ms"},
            },
            "prometheus": {"url": prometheus.url, "retries": 1, "backoff": "20ms", "max_backoff": "50ms"},
            "argocd": {"url": argo_url, "token_file": write_secret(&dir, "argo-token", ARGO_TOKEN)},
            "store": {"data_dir": dir.join("data")},
            "services": [{
                "name": "checkout",
                "app_repo": APP_REPO,
                "namespace": "shop",
                "image": "ghcr.io/example-org/checkout",
                "required_checks": ["test"],
                // Every change ships as canary_25 and needs no approval on risk alone: the
                // scenarios are about the rollout, and production asks for approval itself.
                "risk": {"canary_25_at": 0.0, "canary_10_at": 0.99, "canary_5_at": 0.995, "approval_at": 0.999},
                "environments": [
                    {"name": "staging", "targets": targets("staging")},
                    {"name": "production", "require_approval": true, "targets": targets("production")},
                ],
                "analysis": {
                    "judge": {"min_intervals": 3, "latency": {"mode": "dry-run"}},
                    "queries": {
                        "requests": q(false),
                        "errors": q(true),
                        "latency": null,
                        "last_sample": r#"max(timestamp(http_requests_total{service="{{service}}",environment="{{environment}}",track="{{track}}"}))"#,
                    },
                },
                "rollout": {"canary_plan": [25, 100], "bake": "2m", "analysis_interval": "1m",
                            "verification": "2m", "max_inconclusive_intervals": 2},
            }],
        });
        tweak(&mut config);
        let yaml = yaml_serde::to_string(&config).unwrap();
        // Resolving is the validity check: any problem is an error here.
        let config = deploybot::config::from_yaml(&yaml, &dir.join("deploybot.yaml")).unwrap();
        World {
            config,
            gh,
            repo,
            prometheus,
            argo,
            clock,
            _git: git,
            _tmp: tmp,
            deliveries: Default::default(),
        }
    }

    pub(crate) async fn start(&self) -> Assembly<PrometheusWindows> {
        let windows = PrometheusWindows::new(Arc::new(self.config.clone()), &Secrets::none());
        let app = assemble(self.config.clone(), windows, Arc::new(self.clock.clone()))
            .await
            .unwrap();
        app.pipeline
            .driver()
            .recover(self.clock.now())
            .await
            .unwrap();
        app
    }

    /// Posts a signed delivery and waits until the worker has processed it.
    pub(crate) async fn deliver(
        &self,
        app: &Assembly<PrometheusWindows>,
        event: &str,
        payload: &Value,
    ) -> String {
        let n = self
            .deliveries
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("e2e-{n}-{}", uuid_ish());
        let body = serde_json::to_vec(payload).unwrap();
        let req = Request::post("/webhook")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", &id)
            .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
            .body(Body::from(body))
            .unwrap();
        let resp = app.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{event}");
        for _ in 0..400 {
            let d = app.store.delivery(&id).unwrap().unwrap();
            if d.status != DeliveryStatus::Pending {
                assert_ne!(d.status, DeliveryStatus::Failed, "{event}: {:?}", d.detail);
                return d.detail.unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{event} delivery {id} was not processed");
    }

    /// Ticks every 30 virtual seconds until `done` holds (at most `minutes`).
    pub(crate) async fn run_until(
        &self,
        app: &Assembly<PrometheusWindows>,
        minutes: i64,
        what: &str,
        done: impl Fn(&[Rollout]) -> bool,
    ) {
        for _ in 0..minutes * 2 {
            self.clock.advance(30);
            app.tick().await;
            if done(&app.store.recent(None, 100).unwrap()) {
                return;
            }
        }
        panic!(
            "{what}: not reached in {minutes} virtual minutes: {:#?}",
            app.store.recent(None, 100).unwrap()
        );
    }

    pub(crate) async fn run_for(&self, app: &Assembly<PrometheusWindows>, minutes: i64) {
        for _ in 0..minutes * 2 {
            self.clock.advance(30);
            app.tick().await;
        }
    }

    /// A merged app PR `number` whose merge commit is `sha`, with one small code change.
    pub(crate) fn merged_pr(&self, number: u64, sha: &str, title: &str) -> Value {
        self.merged_pr_touching(number, sha, title, &["src/cart/coupon.rs"])
    }

    /// A merged app PR `number` whose merge commit is `sha`, with the same small change to
    /// each of `paths` (which decide, in a monorepo, the services it releases).
    pub(crate) fn merged_pr_touching(
        &self,
        number: u64,
        sha: &str,
        title: &str,
        paths: &[&str],
    ) -> Value {
        let mut payload = webhook("pull_request", "closed");
        let pr = &mut payload["pull_request"];
        pr["number"] = json!(number);
        pr["title"] = json!(title);
        pr["merged"] = json!(true);
        pr["state"] = json!("closed");
        pr["merge_commit_sha"] = json!(sha);
        pr["head"]["sha"] = json!(format!("{:040x}", number));
        self.gh.add_pull(pr.clone());
        self.gh.push_to(
            number,
            &format!("{:040x}", number),
            paths
                .iter()
                .map(|path| {
                    file(
                        path,
                        "modified",
                        3,
                        1,
                        Some("@@ -1,2 +1,4 @@\n a\n-b\n+c\n+d\n+e\n"),
                    )
                })
                .collect(),
            &[title],
        );
        payload
    }

    pub(crate) fn comment_on(&self, number: u64, login: &str, body: &str) -> Value {
        let mut payload = webhook("issue_comment", "created");
        payload["issue"]["number"] = json!(number);
        payload["issue"]["pull_request"] = json!({"url": "x"});
        payload["comment"]["id"] = json!(self.gh.add_comment(number, login, body));
        payload["comment"]["body"] = json!(body);
        payload["comment"]["user"]["login"] = json!(login);
        payload["comment"]["user"]["type"] = json!("User");
        payload["repository"]["full_name"] = json!(APP_REPO);
        payload
    }

    pub(crate) fn git_log(&self) -> Vec<String> {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.repo.0)
            .args(["log", "--format=%H%n%B%n--end--", "main"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split("--end--\n")
            .filter(|c| !c.trim().is_empty())
            .map(String::from)
            .collect()
    }

    pub(crate) fn show(&self, path: &str) -> String {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.repo.0)
            .args(["show", &format!("main:{path}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The fake numbers app and GitOps PRs from one counter and finds a PR by its number: an
    /// app PR a test adds under a number deploybot's PRs already took would be read in their
    /// place, and its comments mixed with theirs. App PRs therefore take numbers above any
    /// deploybot opened, which this checks at the end of a test.
    pub(crate) fn assert_pr_numbers_unique(&self) {
        let numbers: Vec<u64> = self
            .gh
            .state
            .lock()
            .unwrap()
            .pulls
            .iter()
            .filter_map(|p| p["number"].as_u64())
            .collect();
        let distinct: std::collections::BTreeSet<u64> = numbers.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            numbers.len(),
            "a PR number taken twice: {numbers:?}"
        );
    }

    pub(crate) fn comments_on(&self, number: u64) -> Vec<String> {
        self.gh
            .state
            .lock()
            .unwrap()
            .comments
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, c)| c["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn uuid_ish() -> String {
    format!(
        "{:x}",
        SystemClock.now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// What the admin listener's `/metrics` says now.
pub(crate) async fn admin_metrics(app: &Assembly<PrometheusWindows>) -> String {
    let resp = app
        .admin
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

pub(crate) fn find<'a>(all: &'a [Rollout], env: &str, tag: &str) -> Option<&'a Rollout> {
    all.iter()
        .find(|r| r.environment() == env && r.image_tag() == tag)
}

pub(crate) fn phase_of(all: &[Rollout], env: &str, tag: &str) -> Option<Phase> {
    find(all, env, tag).map(|r| r.phase().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_changes_roll_out_and_back_by_themselves() {
    if !require_tools() {
        return; // missing, and opted out of failing: said so on stderr
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("deploybot::shell::runner=info")
        .with_test_writer()
        .try_init();
    let mut w = World::new().await;
    let app = w.start().await;

    // 1. A healthy change: parked until its required check passes, then staging, then an
    //    approval in production, then complete.
    let sha1 = "1111111111111111111111111111111111111111";
    let tag1 = "sha-1111111";
    w.gh.add_check_run(sha1, "test", "in_progress", None);
    let note = w
        .deliver(
            &app,
            "pull_request",
            &w.merged_pr(101, sha1, "Cart: coupon message"),
        )
        .await;
    assert!(note.contains("waiting for test (in_progress)"), "{note}");
    assert!(
        app.store.recent(None, 10).unwrap().is_empty(),
        "nothing starts before the checks"
    );
    w.gh.add_check_run(sha1, "test", "completed", Some("success"));
    let mut suite = webhook("check_suite", "completed");
    suite["check_suite"]["head_sha"] = json!(sha1);
    let note = w.deliver(&app, "check_suite", &suite).await;
    assert!(
        note.contains("started checkout-staging-sha-1111111"),
        "{note}"
    );

    w.run_until(
        &app,
        30,
        "staging complete, production awaiting approval",
        |all| phase_of(all, "production", tag1) == Some(Phase::AwaitingApproval),
    )
    .await;
    let all = app.store.recent(None, 10).unwrap();
    assert_eq!(phase_of(&all, "staging", tag1), Some(Phase::Complete));
    let staging_route = w.show("apps/checkout/overlays/staging/httproute.yaml");
    assert!(
        staging_route.contains("weight: 0  # deploybot: canary weight"),
        "{staging_route}"
    );
    assert!(
        w.show("apps/checkout/overlays/staging/deployment.yaml")
            .contains("ghcr.io/example-org/checkout:sha-1111111  # deploybot: stable image")
    );
    // The approval PR in the GitOps repository carries the first production step.
    let open = w.gh.open_prs();
    let approval = open
        .iter()
        .find(|p| {
            p["head"]["ref"]
                .as_str()
                .unwrap_or("")
                .starts_with("deploybot/checkout/production/")
        })
        .unwrap_or_else(|| panic!("no approval PR: {open:#?}"));
    let approval_n = approval["number"].as_u64().unwrap();
    let approval_head = approval["head"]["sha"].as_str().unwrap().to_string();
    assert_eq!(
        approval_head,
        w.repo
            .tip(approval["head"]["ref"].as_str().unwrap())
            .unwrap()
    );
    let review_payload = |login: &str| {
        let mut p = webhook("pull_request_review", "submitted");
        p["pull_request"]["number"] = json!(approval_n);
        p["review"]["user"]["login"] = json!(login);
        p["review"]["user"]["type"] = json!("User");
        p["repository"]["full_name"] = json!(GITOPS_REPO);
        p
    };
    // A reader's approval does not count.
    w.gh.set_permission("carol", "read");
    w.gh.add_review(approval_n, "carol", "APPROVED", &approval_head);
    let note = w
        .deliver(&app, "pull_request_review", &review_payload("carol"))
        .await;
    assert!(note.contains("0 of 1 approvals"), "{note}");
    assert!(note.contains("carol has no write access"), "{note}");
    // A writer's does: the bot merges the PR (a real merge commit) and the canary starts.
    w.gh.set_permission("alice", "write");
    w.gh.add_review(approval_n, "alice", "APPROVED", &approval_head);
    let note = w
        .deliver(&app, "pull_request_review", &review_payload("alice"))
        .await;
    assert!(note.contains("approved by alice"), "{note}");
    let merged = w.gh.pull(approval_n);
    assert_eq!(merged["merged"], json!(true));
    assert_eq!(
        w.repo.tip("main").unwrap(),
        merged["merge_commit_sha"].as_str().unwrap()
    );
    w.run_until(&app, 30, "production complete", |all| {
        phase_of(all, "production", tag1) == Some(Phase::Complete)
    })
    .await;
    assert!(
        w.show("apps/checkout/overlays/production/deployment.yaml")
            .contains("checkout:sha-1111111")
    );
    let comments = w.comments_on(101);
    assert!(
        comments.iter().any(
            |c| c.contains("deploybot:rollout:checkout-production-sha-1111111")
                && c.contains("complete")
                // The canary steps' accumulated evidence stays on the finished comment.
                && c.contains("verified intervals over")
                && c.contains("<br>error-rate: ")
        ),
        "{comments:#?}"
    );
    let statuses = w.gh.state.lock().unwrap().statuses.clone();
    assert!(
        statuses.iter().any(|(sha, s)| sha == sha1
            && s["context"] == "deploybot/production"
            && s["state"] == "success"),
        "{statuses:#?}"
    );

    // 2. Killed mid-canary, restarted: it continues and commits nothing twice. Then /rollback.
    let sha2 = "2222222222222222222222222222222222222222";
    let tag2 = "sha-2222222";
    w.gh.add_check_run(sha2, "test", "completed", Some("success"));
    w.deliver(
        &app,
        "pull_request",
        &w.merged_pr(202, sha2, "Orders: totals"),
    )
    .await;
    w.run_until(&app, 10, "second change live in staging", |all| {
        find(all, "staging", tag2).is_some_and(|r| r.latest.is_some())
    })
    .await;
    app.abort();
    let app = w.start().await;
    w.run_until(&app, 20, "second change at 100 % in staging", |all| {
        phase_of(all, "staging", tag2) == Some(Phase::Verification)
    })
    .await;
    let log = w.git_log();
    for weight in ["Weight: 25", "Weight: 100"] {
        let n = log
            .iter()
            .filter(|c| c.contains("Deploy-Id: checkout-staging-sha-2222222") && c.contains(weight))
            .count();
        assert_eq!(n, 1, "{weight} committed once: {log:#?}");
    }
    let before = w.git_log().len();
    w.gh.set_permission("dave", "read");
    let note = w
        .deliver(
            &app,
            "issue_comment",
            &w.comment_on(202, "dave", "/rollback"),
        )
        .await;
    assert!(note.contains("refused /rollback by dave"), "{note}");
    assert_eq!(
        w.git_log().len(),
        before,
        "a reader's /rollback changes nothing"
    );
    assert!(
        w.comments_on(202)
            .iter()
            .any(|c| c.contains("needs write access"))
    );
    let note = w
        .deliver(
            &app,
            "issue_comment",
            &w.comment_on(202, "alice", "/rollback"),
        )
        .await;
    assert!(note.contains("/rollback by alice"), "{note}");
    let all = app.store.recent(None, 20).unwrap();
    let r2 = find(&all, "staging", tag2).unwrap();
    assert_eq!(r2.phase(), Phase::RolledBack);
    assert_eq!(
        r2.release.previous_tag, tag1,
        "what deploybot last completed in staging"
    );
    let log = w.git_log();
    assert_eq!(log.len(), before + 2, "both steps reverted, newest first");
    assert!(
        log[0].contains("Revert") && log[0].contains("Weight: 25"),
        "{}",
        log[0]
    );
    assert!(
        log[1].contains("Revert") && log[1].contains("Weight: 100"),
        "{}",
        log[1]
    );
    assert!(
        w.show("apps/checkout/overlays/staging/deployment.yaml")
            .contains("checkout:sha-1111111"),
        "staging is back on the first change"
    );
    let reactions = w.gh.reactions();
    assert!(
        reactions.iter().any(|(_, r, _)| r == "confused"),
        "{reactions:?}"
    );
    assert!(reactions.iter().any(|(_, r, _)| r == "+1"), "{reactions:?}");
    // The rollback held staging; a writer releases it.
    let note = w
        .deliver(
            &app,
            "issue_comment",
            &w.comment_on(202, "alice", "/hold cancel"),
        )
        .await;
    assert!(note.contains("released"), "{note}");

    // 3. A regressed change: rolled back by the judge in staging, evidence everywhere.
    let now = w.clock.now();
    let regression = DateTime::from_timestamp(timeline_start() + REGRESSION_AT * 60, 0).unwrap();
    if now < regression {
        w.clock.advance((regression - now).num_seconds() + 60);
    }
    let sha3 = "3333333333333333333333333333333333333333";
    let tag3 = "sha-3333333";
    w.gh.add_check_run(sha3, "test", "completed", Some("success"));
    w.deliver(
        &app,
        "pull_request",
        &w.merged_pr(303, sha3, "Orders: currency"),
    )
    .await;
    w.run_until(&app, 15, "regression rolled back", |all| {
        find(all, "staging", tag3).is_some_and(|r| r.reverted_as().is_some())
    })
    .await;
    let all = app.store.recent(None, 20).unwrap();
    assert!(
        find(&all, "production", tag3).is_none(),
        "never reaches production"
    );
    let revert = &w.git_log()[0];
    assert!(
        revert.contains("Revert \"deploy(checkout/staging)"),
        "{revert}"
    );
    assert!(revert.contains("Evidence: canary "), "{revert}");
    let judged = find(&all, "staging", tag3)
        .and_then(|r| r.latest.as_ref())
        .and_then(|s| s.evidence.as_ref())
        .expect("the rollback keeps the judge's evidence");
    assert!(judged.verified_intervals >= 1, "{judged:?}");
    assert!(
        judged
            .metrics
            .iter()
            .any(|m| m.metric == "error-rate" && m.evalue >= m.threshold && m.canary_events > 0),
        "{judged:?}"
    );
    assert!(
        revert.contains("Deploy-Id: checkout-staging-sha-3333333"),
        "{revert}"
    );
    let labels = w.gh.label_calls();
    assert!(
        labels
            .iter()
            .any(|(n, l)| *n == 303 && l.contains(&"deploy/rolled-back".to_string())),
        "{labels:?}"
    );
    assert!(
        w.comments_on(303).iter().any(|c| c.contains("Rolled back")
            && c.contains("error-rate")
            && c.contains("(regression; canary ")),
        "{:#?}",
        w.comments_on(303)
    );
    deploybot::adapters::store::holds::release(&app.store, "checkout", "staging").unwrap();

    // 4. Prometheus stops mid-analysis: paused, never promoted.
    let sha4 = "4444444444444444444444444444444444444444";
    let tag4 = "sha-4444444";
    w.gh.add_check_run(sha4, "test", "completed", Some("success"));
    w.deliver(&app, "pull_request", &w.merged_pr(404, sha4, "Docs"))
        .await;
    w.run_until(&app, 5, "fourth change synced", |all| {
        find(all, "staging", tag4).is_some_and(|r| r.traffic().percent() == 25)
    })
    .await;
    w.prometheus.stop();
    w.run_until(&app, 10, "paused without metrics", |all| {
        matches!(phase_of(all, "staging", tag4), Some(Phase::Paused { .. }))
    })
    .await;
    let commits = w.git_log().len();
    w.run_for(&app, 5).await;
    let all = app.store.recent(None, 20).unwrap();
    let r4 = find(&all, "staging", tag4).unwrap();
    assert!(
        matches!(&r4.phase(), Phase::Paused { reason } if reason.contains("metrics unavailable")),
        "{:?}",
        r4.phase()
    );
    assert_eq!(r4.commits.len(), 1, "never promoted past the first step");
    assert_eq!(w.git_log().len(), commits);
    assert!(w.comments_on(404).iter().any(|c| c.contains("Paused")));
    // The pause is an alert on /metrics too, for the platform team's own alerting.
    let metrics = admin_metrics(&app).await;
    assert!(
        metrics.contains(r#"deploybot_rollout_alerts_total{level="warn",notice="paused"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"deploybot_rollout_alerts_total{level="warn",notice="rolled_back"} 2"#),
        "{metrics}"
    );
    assert!(!w.argo.requests_for("checkout-production").is_empty());
    assert_eq!(w.argo.violations(), Vec::<String>::new());
    w.assert_pr_numbers_unique();
    app.shutdown(Duration::from_secs(10)).await;

    // All of it as the App: tokens minted as they expired, the installation taken from the
    // deliveries, or looked up by repository once per process start when a restarted process
    // resumes its rollout (a push) before any delivery arrives; no token or key in the store.
    assert!(w.gh.minted() >= 2, "{} tokens", w.gh.minted());
    let lookups: Vec<String> =
        w.gh.requests()
            .into_iter()
            .filter(|r| r.ends_with("/installation"))
            .collect();
    assert!(
        lookups.len() <= 2
            && lookups
                .iter()
                .all(|l| l == "GET /repos/Codertocat/gitops/installation"),
        "{lookups:?}"
    );
    let db = w.config.store.database_path();
    for file in [db.clone(), db.with_extension("sqlite3-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("ghs_") && !text.contains("PRIVATE KEY"),
            "{}",
            file.display()
        );
    }
}
