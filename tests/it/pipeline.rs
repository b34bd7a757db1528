//! The pipeline and the production runner over a real local GitOps repository (the demo's
//! layout, `file://`), replayed metrics and a virtual clock: what a new version does to a running
//! one (supersede or queue), an approval PR merged by a person, and `/deploy` shipping on the
//! PR's assessment with its model.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use deploybot::adapters::github::GithubRest;
use deploybot::adapters::store::Store;
use deploybot::config::Config;
use deploybot::demo::workspace::Workspace;
use deploybot::demo::{ReplayWindows, VirtualClock};
use deploybot::shell::driver::{Clock, EffectRunner};
use deploybot::shell::events::RolloutEvents;
use deploybot::shell::pipeline::{Gate, Pipeline, PipelineError, Release};
use deploybot::shell::runner::{LiveRunner, RunnerParts};
use deploybot_core::canary::generate;
use deploybot_core::github::RepoName;
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::Phase;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::route::Comment;

use crate::support::fake_github::{BareRepo, FakeGithub, file, webhook};

pub(crate) struct Setup<R = LiveRunner<ReplayWindows>> {
    pub(crate) ws: Workspace,
    pub(crate) pipeline: Pipeline<R>,
    pub(crate) clock: VirtualClock,
    pub(crate) config: Arc<Config>,
    pub(crate) _tmp: tempfile::TempDir,
}

/// The demo's workspace and config, with `on_new_version` set and, given a fake GitHub, approval
/// required in production and the repository named on GitHub (a YAML patch by string: the
/// anchors are the demo config's own lines).
pub(crate) async fn setup(on_new_version: &str, github: Option<&FakeGithub>) -> Setup {
    setup_with(on_new_version, github, "deploybot").await
}

pub(crate) async fn setup_with(
    on_new_version: &str,
    github: Option<&FakeGithub>,
    counted_by: &str,
) -> Setup {
    setup_patched(on_new_version, github, counted_by, &[]).await
}

/// `setup_with`, with further (anchor, replacement) patches of the config text.
pub(crate) async fn setup_patched(
    on_new_version: &str,
    github: Option<&FakeGithub>,
    counted_by: &str,
    patches: &[(&str, &str)],
) -> Setup {
    setup_wrapped(on_new_version, github, counted_by, patches, |r| r).await
}

/// `setup_patched`, with the production runner wrapped by `wrap` (a test's control over when
/// an effect finishes).
pub(crate) async fn setup_wrapped<R: EffectRunner>(
    on_new_version: &str,
    github: Option<&FakeGithub>,
    counted_by: &str,
    patches: &[(&str, &str)],
    wrap: impl FnOnce(LiveRunner<ReplayWindows>) -> R,
) -> Setup<R> {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::create(&tmp.path().join("ws")).unwrap();
    let mut text = ws.config_text().replace(
        "      sync_timeout: 10m\n",
        &format!("      sync_timeout: 10m\n      on_new_version: {on_new_version}\n"),
    );
    if let Some(gh) = github {
        text = text.replace(
            "store:\n",
            &format!(
                "github:\n  api_url: {}\n  token_env: PIPELINE_TEST_TOKEN\n\nstore:\n",
                gh.url()
            ),
        );
        text = text.replace(
            "  mode: direct\n",
            "  mode: direct\n  github_repo: Codertocat/gitops\n",
        );
        text = text.replace(
            "      - name: production\n",
            &format!(
                "      - name: production\n        require_approval: true\n        \
                 approvals_counted_by: {counted_by}\n"
            ),
        );
    }
    for (anchor, replacement) in patches {
        assert!(text.contains(anchor), "no {anchor:?} in the demo config");
        text = text.replace(anchor, replacement);
    }
    // Resolving is the validity check: any problem is an error here.
    let config = Arc::new(deploybot::config::from_yaml(&text, &ws.config_path).unwrap());
    std::fs::create_dir_all(&ws.data_dir).unwrap();
    let store = Store::open(&config.store.database_path()).unwrap();
    let clock = VirtualClock::starting_at(
        DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    );
    let api = github.map(FakeGithub::url);
    let runner = wrap(live_runner(&config, &store, &clock, api.as_deref()));
    Setup {
        pipeline: Pipeline::new(config.clone(), store, runner),
        ws,
        clock,
        config,
        _tmp: tmp,
    }
}

/// The production runner over `store`, with healthy replayed metrics for every tag the tests
/// ship, time from `clock`, and GitHub at `github_api` (with a token) when given: what a
/// process started on this configuration runs.
pub(crate) fn live_runner(
    config: &Arc<Config>,
    store: &Store,
    clock: &VirtualClock,
    github_api: Option<&str>,
) -> LiveRunner<ReplayWindows> {
    LiveRunner::new(runner_parts(config, store, clock, github_api))
}

/// The parts of [`live_runner`], for a test to change an edge before it starts.
pub(crate) fn runner_parts(
    config: &Arc<Config>,
    store: &Store,
    clock: &VirtualClock,
    github_api: Option<&str>,
) -> RunnerParts<ReplayWindows> {
    let healthy = generate::suite(1, 7)
        .into_iter()
        .find(|g| g.family == "healthy-flat")
        .unwrap()
        .scenario
        .window;
    let windows = ReplayWindows::new(
        ["1.0.0", "1.1.0", "2.0.0"]
            .iter()
            .map(|t| (t.to_string(), healthy.clone()))
            .collect(),
    );
    let mut parts = RunnerParts::offline(
        config.clone(),
        store.clone(),
        windows,
        Arc::new(clock.clone()),
    );
    if let Some(api) = github_api {
        let token = Secret::new("t0ken");
        parts.github = Some(Arc::new(GithubRest::new(api, Some(&token)).unwrap()));
        parts.github_authenticated = true;
    }
    parts
}

pub(crate) fn release(tag: &str) -> Release {
    Release {
        service: "checkout".into(),
        image_tag: tag.into(),
        previous_tag: "1.4.2".into(),
        changed_files: vec!["src/cart/coupon.rs".into()],
        commit_message: format!("ship {tag}"),
        author: "dana".into(),
        pull_request: None,
        commit_sha: None,
    }
}

pub(crate) const CANARY: Gate = Gate {
    risk_score: 0.3,
    strategy: Strategy::Canary25,
    approval_required: false,
};

pub(crate) async fn run_until<R: EffectRunner>(
    s: &Setup<R>,
    minutes: i64,
    done: impl Fn(&[deploybot_core::rollout::Rollout]) -> bool,
) {
    for _ in 0..minutes * 2 {
        let now = s.clock.advance(30);
        s.pipeline.tick(now).await.unwrap();
        if done(&s.pipeline.store().recent(None, 50).unwrap()) {
            return;
        }
    }
    panic!(
        "not reached: {:#?}",
        s.pipeline.store().recent(None, 50).unwrap()
    );
}

#[tokio::test]
async fn a_new_version_supersedes_by_default_and_queues_when_asked() {
    // Supersede: the newer version takes over at once.
    let s = setup("supersede", None).await;
    let a = s
        .pipeline
        .start(&release("1.0.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    let b = s
        .pipeline
        .start(&release("1.1.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    let store = s.pipeline.store();
    assert_eq!(store.get(&a).unwrap().unwrap().phase(), Phase::Superseded);
    assert!(store.get(&b).unwrap().unwrap().is_live());

    // Queue: the newer version waits, then starts when the running one is done.
    let s = setup("queue", None).await;
    let a = s
        .pipeline
        .start(&release("1.0.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    let err = s
        .pipeline
        .start(&release("1.1.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PipelineError::Busy { live, .. } if *live == a),
        "{err}"
    );
    assert!(err.to_string().contains("queue"), "{err}");
    assert_eq!(
        s.pipeline.store().recent(None, 10).unwrap().len(),
        1,
        "nothing started"
    );
    run_until(&s, 60, |all| {
        all.iter()
            .any(|r| r.deploy_id == a && r.phase() == Phase::Complete)
    })
    .await;
    let b = s
        .pipeline
        .start(
            &release("1.1.0"),
            CANARY,
            Some("staging"),
            "t",
            s.clock.now(),
        )
        .await
        .unwrap();
    assert!(s.pipeline.store().get(&b).unwrap().unwrap().is_live());
}

pub(crate) const GITOPS: &str = "Codertocat/gitops";

/// A production rollout of 2.0.0 waiting on its approval PR (real, in the bare repository):
/// the setup, the deploy id and the PR number.
pub(crate) async fn awaiting_approval(gh: &FakeGithub, counted_by: &str) -> (Setup, String, u64) {
    let s = setup_with("supersede", Some(gh), counted_by).await;
    gh.back_with_git(BareRepo(s.ws.gitops.clone()));
    let id = s
        .pipeline
        .start(
            &release("2.0.0"),
            CANARY,
            Some("production"),
            "t",
            s.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        s.pipeline.store().get(&id).unwrap().unwrap().phase(),
        Phase::AwaitingApproval
    );
    let n = gh.open_prs()[0]["number"].as_u64().unwrap();
    (s, id, n)
}

pub(crate) fn github_for(gh: &FakeGithub) -> GithubRest {
    GithubRest::new(&gh.url(), Some(&Secret::new("t0ken"))).unwrap()
}

pub(crate) fn events<'a>(
    s: &'a Setup,
    github: &'a GithubRest,
) -> RolloutEvents<'a, LiveRunner<ReplayWindows>> {
    RolloutEvents {
        config: &s.config,
        github,
        model: None,
        pipeline: &s.pipeline,
    }
}

/// An environment removed from the config while its rollout waits for approval does not fall
/// back to "one approval by anybody with write access": the review is refused, saying why.
#[tokio::test]
async fn approvals_for_an_environment_removed_from_the_config_are_refused() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    gh.add_review(n, "carol", "APPROVED", &head);
    let mut without_production = (*s.config).clone();
    for service in &mut without_production.services {
        if let Some(deploy) = &mut service.deploy {
            deploy.environments.retain(|e| e.name != "production");
        }
    }
    let github = github_for(&gh);
    let events = RolloutEvents {
        config: &without_production,
        github: &github,
        model: None,
        pipeline: &s.pipeline,
    };
    let repo: RepoName = GITOPS.parse().unwrap();
    let e = events.on_review(&repo, n, s.clock.now()).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.to_string()
            .contains("checkout/production, which was removed from the configuration"),
        "{e}"
    );
    assert_eq!(
        s.pipeline.store().get(&id).unwrap().unwrap().phase(),
        Phase::AwaitingApproval
    );
}

#[tokio::test]
async fn branch_protection_can_decide_instead_of_deploybot() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "branch_protection").await;
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    let github = github_for(&gh);
    let events = events(&s, &github);
    let repo: RepoName = GITOPS.parse().unwrap();

    // A reader approves (deploybot would not count it) but the rules are not met: GitHub
    // refuses the merge and the rollout keeps waiting.
    gh.set_unmergeable(n);
    gh.add_review(n, "carol", "APPROVED", &head);
    let note = events.on_review(&repo, n, s.clock.now()).await.unwrap();
    assert!(note.contains("does not allow the merge yet"), "{note}");
    assert_eq!(
        s.pipeline.store().get(&id).unwrap().unwrap().phase(),
        Phase::AwaitingApproval
    );

    // The rules are met: the merge goes through and is the approval.
    gh.set_mergeable(n);
    let note = events.on_review(&repo, n, s.clock.now()).await.unwrap();
    assert!(
        note.contains("approved by carol (branch protection)"),
        "{note}"
    );
    let r = s.pipeline.store().get(&id).unwrap().unwrap();
    let merge = gh.pull(n)["merge_commit_sha"].as_str().unwrap().to_string();
    assert_eq!(r.commits.len(), 1, "{r:#?}");
    assert_eq!(r.commits[0].sha, merge);
    assert_eq!(BareRepo(s.ws.gitops.clone()).tip("main").unwrap(), merge);
}

/// A model that always finds the change critical, and counts how often it was asked.
#[derive(Default)]
struct AlarmedModel {
    calls: std::sync::atomic::AtomicUsize,
}

impl deploybot_core::risk::model::RiskModel for AlarmedModel {
    fn model(&self) -> &str {
        "alarmed-test-model"
    }

    fn assess<'a>(
        &'a self,
        _system: &'a str,
        _user: &'a str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<
                        deploybot_core::risk::model::ModelVerdict,
                        deploybot_core::risk::model::LlmError,
                    >,
                > + Send
                + 'a,
        >,
    > {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            Ok(deploybot_core::risk::model::ModelVerdict {
                risk_score: 0.95,
                risk_factors: vec!["touches how coupons are priced".into()],
                recommended_strategy: deploybot_core::risk::Strategy::Canary5,
                requires_manual_approval: false,
                rationale: "pricing change".into(),
            })
        })
    }
}

/// `/deploy staging` on a merged PR ships on the assessment the PR got, model included: with
/// an LLM configured, the score it raised sets the strategy (the regression was a policy-only
/// re-assessment that shipped a critical change directly). Without a model, the same PR gets
/// the policy's verdict.
#[tokio::test]
async fn deploy_command_ships_on_the_assessment_the_model_raised() {
    let opened = webhook("pull_request", "opened");
    let repo: RepoName = opened["repository"]["full_name"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut strategies = Vec::new();
    for with_model in [true, false] {
        let gh = FakeGithub::start_with_pr(&opened).await;
        let app_repo = format!("app_repo: {repo}");
        let s = setup_patched(
            "supersede",
            Some(&gh),
            "deploybot",
            &[("app_repo: example-org/checkout", app_repo.as_str())],
        )
        .await;
        gh.push(
            "5c2ad07b1b8d6b5f9e1d2f7a3f2c3e4d5a6b7c8d",
            vec![file(
                "src/cart/coupon.rs",
                "modified",
                2,
                1,
                Some("@@ -1,2 +1,3 @@\n fn discount() {\n-    10\n+    15\n+    // rounding\n"),
            )],
            &["Raise the coupon discount"],
        );
        gh.merge_by_human(2, "erin");
        gh.set_permission("alice", "write");
        let comment = gh.add_comment(2, "alice", "/deploy staging");
        let model = AlarmedModel::default();
        let github = github_for(&gh);
        let events = RolloutEvents {
            model: with_model.then_some(&model as &dyn deploybot_core::risk::model::RiskModel),
            ..events(&s, &github)
        };
        // What the webhook route gives the handler for this comment.
        let repos = deploybot::shell::webhook::repos(&s.config);
        let c = Comment {
            repo: repo.clone(),
            number: 2,
            service: repos.service_of(&repo.to_string()).map(str::to_string),
            comment_id: comment,
            author: "alice".into(),
            body: "/deploy staging".into(),
        };
        let note = events.on_comment(&c, s.clock.now()).await.unwrap();
        assert!(note.contains("/deploy by @alice"), "{note}");
        let r = s
            .pipeline
            .rollout_for_pr(&repo, 2)
            .unwrap()
            .expect("the /deploy started a rollout");
        assert_eq!(r.environment(), "staging");
        assert_eq!(
            model.calls.load(std::sync::atomic::Ordering::SeqCst),
            usize::from(with_model)
        );
        if with_model {
            let course = r.course().unwrap();
            assert!(course.risk_score >= 0.95, "{:?}", course.risk_score);
        }
        strategies.push(r.course().map(|c| (c.strategy, c.risk_score)));
    }
    assert_eq!(
        strategies[0].map(|s| s.0),
        Some(Strategy::Canary5),
        "{strategies:?}"
    );
    assert!(
        strategies[1].map(|s| s.1) < strategies[0].map(|s| s.1),
        "the policy alone scores lower: {strategies:?}"
    );
}

/// An environment whose targets deploy no canary workload cannot give a canary traffic: a
/// release the risk sends as a canary ships `direct`, in one commit, and completes (before,
/// its first canary step found nothing to change and the rollout failed).
#[tokio::test]
async fn an_environment_without_a_canary_workload_ships_direct() {
    let s = setup_patched(
        "supersede",
        None,
        "deploybot",
        &[(
            "          - path: apps/checkout/overlays/staging/deployment-canary.yaml\n            \
             track: canary\n          - path: apps/checkout/overlays/staging/deployment.yaml\n            \
             track: stable\n          - path: apps/checkout/overlays/staging/httproute.yaml\n            \
             kind: weight\n            canary: checkout-canary\n            stable: checkout-stable\n",
            "          - path: apps/checkout/overlays/staging/deployment.yaml\n",
        )],
    )
    .await;
    let id = s
        .pipeline
        .start(
            &release("1.0.0"),
            CANARY,
            Some("staging"),
            "t",
            s.clock.now(),
        )
        .await
        .unwrap();
    run_until(&s, 60, |all| {
        all.iter()
            .any(|r| r.deploy_id == id && r.phase().is_terminal())
    })
    .await;
    let r = s.pipeline.store().get(&id).unwrap().unwrap();
    assert_eq!(r.phase(), Phase::Complete, "{r:#?}");
    assert_eq!(r.course().map(|c| c.strategy), Some(Strategy::Direct));
    assert_eq!(r.commits.len(), 1, "{:#?}", r.commits);
    // The status comment on the pull request says why it shipped direct.
    let comment = deploybot_core::rollout::comment::status_comment(
        &r,
        &deploybot_core::rollout::Notice::Completed,
    );
    assert!(
        comment.contains("canary_25 asked, but this environment has no canary workload"),
        "{comment}"
    );
}

/// A replica-ratio canary of 10 pods cannot carry 5 %: the rollout's plan, its first commit and
/// the manifests all say the 10 % that one pod really serves (before, the plan said 5 % while
/// one pod of ten served 10 %, and the sample-ratio check paused the rollout).
#[tokio::test]
async fn a_replica_ratio_canary_ships_the_share_its_pods_give() {
    let s = setup_patched(
        "supersede",
        None,
        "deploybot",
        &[(
            "          - path: apps/checkout/overlays/staging/httproute.yaml\n            \
             kind: weight\n            canary: checkout-canary\n            stable: checkout-stable\n",
            "          - path: apps/checkout/overlays/staging/deployment-canary.yaml\n            \
             kind: replicas\n            canary: checkout-canary\n            stable: checkout\n            \
             total_replicas: 10\n          - path: apps/checkout/overlays/staging/deployment.yaml\n            \
             kind: replicas\n            canary: checkout-canary\n            stable: checkout\n            \
             total_replicas: 10\n",
        )],
    )
    .await;
    let gate = Gate {
        strategy: Strategy::Canary5,
        ..CANARY
    };
    let id = s
        .pipeline
        .start(&release("1.0.0"), gate, Some("staging"), "t", s.clock.now())
        .await
        .unwrap();
    run_until(&s, 10, |all| {
        all.iter()
            .any(|r| r.deploy_id == id && !r.commits.is_empty())
    })
    .await;
    let r = s.pipeline.store().get(&id).unwrap().unwrap();
    assert_eq!(
        r.course().map(|c| c.plan.to_string()).as_deref(),
        Some("10 -> 30 -> 50 -> 100")
    );
    assert_eq!(r.commits[0].weight.percent(), 10);
    let show = |path: &str| {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&s.ws.gitops)
            .args([
                "show",
                &format!("main:apps/checkout/overlays/staging/{path}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(show("deployment-canary.yaml").contains("  replicas: 1\n"));
    assert!(
        show("deployment.yaml").contains("  replicas: 9  #"),
        "{}",
        show("deployment.yaml")
    );
}
