//! Gates that hold (issue 15): each test is one way around a gate that today's code left open,
//! driven through the pipeline and the production runner over a real GitOps repository (the
//! demo's layout), the fake GitHub backed by that repository, and a virtual clock. Races are
//! driven deterministically: a runner that stops after an effect until the test lets it go, and
//! the fake GitHub changing the world right after one of deploybot's calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use serde_json::json;
use tokio::sync::oneshot;

use deploybot::adapters::store::Store;
use deploybot::shell::driver::{Clock, EffectRunner};
use deploybot::shell::pipeline::Pipeline;
use deploybot_core::failure::Failure;
use deploybot_core::github::RepoName;
use deploybot_core::rollout::input::EffectKind;
use deploybot_core::rollout::record::{Revert, Rollout};
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Command, Effect, Input, Level, Observation, Phase};
use deploybot_core::webhook::route::{Route, route};

use crate::pipeline::{
    CANARY, GITOPS, Setup, awaiting_approval, events, github_for, live_runner, release, setup,
    setup_wrapped,
};
use crate::support::fake_github::{BareRepo, FakeGithub, webhook};

const FILES: [&str; 3] = [
    "deployment-canary.yaml",
    "deployment.yaml",
    "httproute.yaml",
];

/// The files deploybot edits in `env`, as `main` has them.
fn manifests(repo: &BareRepo, env: &str) -> Vec<String> {
    FILES
        .iter()
        .map(|f| repo.show("main", &format!("apps/checkout/overlays/{env}/{f}")))
        .collect()
}

/// The rollout's own commits on `main` (its `Deploy-Id`, not a revert) that no revert names.
fn unreverted(repo: &BareRepo, deploy_id: &str) -> Vec<String> {
    let log = repo.log("main");
    let reverted: Vec<&str> = log
        .iter()
        .flat_map(|(_, m)| m.lines())
        .filter_map(|l| l.strip_prefix("This reverts commit "))
        .map(|l| l.trim_end_matches('.'))
        .collect();
    log.iter()
        .filter(|(_, m)| {
            m.lines().any(|l| l == format!("Deploy-Id: {deploy_id}"))
                && !m.lines().any(|l| l == "Step: revert")
        })
        .map(|(sha, _)| sha.clone())
        .filter(|sha| !reverted.contains(&sha.as_str()))
        .collect()
}

fn repo_of(s: &Setup<impl EffectRunner>) -> BareRepo {
    BareRepo(s.ws.gitops.clone())
}

fn get(s: &Setup<impl EffectRunner>, id: &str) -> Rollout {
    s.pipeline.store().get(id).unwrap().unwrap()
}

fn by(cmd: Command, who: &str) -> Input {
    Input::Command {
        cmd,
        by: who.into(),
    }
}

/// Whether the audit trail of checkout shows a critical alert.
fn alerted_critically(store: &Store) -> bool {
    store.history("checkout").unwrap().iter().any(|e| {
        e.effects.iter().any(|x| {
            matches!(
                x,
                Effect::Notify {
                    level: Level::Critical,
                    ..
                }
            )
        })
    })
}

/// Hole 1: the approval names the head it counted, and only that head is merged. Someone pushes
/// to the approval branch right after deploybot counted the reviews (the fake GitHub does it as
/// soon as the reviews were listed): the push is not merged, the rollout waits again, and an
/// approval of the new head merges exactly that.
#[tokio::test]
async fn an_approval_merges_the_head_it_counted_and_a_moved_head_is_counted_again() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
    let repo = repo_of(&s);
    let before = manifests(&repo, "production");
    gh.set_permission("carol", "write");
    let reviewed = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    let branch = gh.pull(n)["head"]["ref"].as_str().unwrap().to_string();
    gh.add_review(n, "carol", "APPROVED", &reviewed);
    let canary = "apps/checkout/overlays/production/deployment-canary.yaml";
    let unreviewed = repo
        .show(&branch, canary)
        .replace("checkout:2.0.0", "checkout:9.9.9-unreviewed");
    let pushed = Arc::new(Mutex::new(String::new()));
    let (b, p) = (branch.clone(), pushed.clone());
    gh.after_next(Method::GET, &format!("/pulls/{n}/reviews"), move |st| {
        let git = st.git.as_ref().unwrap();
        *p.lock().unwrap() = git.commit_as("mallory", &b, canary, &unreviewed);
    });
    let github = github_for(&gh);
    let repo_name: RepoName = GITOPS.parse().unwrap();
    let note = events(&s, &github)
        .on_review(&repo_name, n, s.clock.now())
        .await
        .unwrap();
    let pushed = pushed.lock().unwrap().clone();
    assert!(!pushed.is_empty(), "the push happened: {note}");
    assert_eq!(
        manifests(&repo, "production"),
        before,
        "nothing reached production that nobody reviewed: {note}"
    );
    assert_eq!(gh.pull(n)["state"], json!("open"), "{note}");
    assert_eq!(get(&s, &id).phase(), Phase::AwaitingApproval, "{note}");

    // Carol approves what is there now: exactly that head is merged.
    gh.add_review(n, "carol", "APPROVED", &pushed);
    let note = events(&s, &github)
        .on_review(&repo_name, n, s.clock.now())
        .await
        .unwrap();
    let r = get(&s, &id);
    assert_eq!(r.approved_by(), Some("carol"), "{note}");
    let merge = gh.pull(n)["merge_commit_sha"].as_str().unwrap().to_string();
    assert_eq!(r.commits[0].sha, merge);
    assert!(repo.show("main", canary).contains("9.9.9-unreviewed"));
}

/// Hole 2: a person's merge of the approval PR counts only when the reviews on the merged head
/// satisfy the rule. Merged by a writer nobody approved, or by the change's author: the rollout
/// pauses, a critical alert goes out, and the merge is reverted through git with the reason.
#[tokio::test]
async fn a_merge_without_the_required_approvals_pauses_alerts_and_is_reverted() {
    for merged_by in ["erin", "dana"] {
        let gh = FakeGithub::start().await;
        let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
        let repo = repo_of(&s);
        let before = manifests(&repo, "production");
        gh.set_permission(merged_by, "write");
        let merge = gh.merge_by_human(n, merged_by);
        let github = github_for(&gh);
        let repo_name: RepoName = GITOPS.parse().unwrap();
        let note = events(&s, &github)
            .on_approval_merged(&repo_name, n, merged_by, s.clock.now())
            .await
            .unwrap();
        let r = get(&s, &id);
        assert!(
            matches!(r.phase(), Phase::Paused { .. }),
            "merged by {merged_by}: {note}: {:?}",
            r.phase()
        );
        assert_eq!(r.approved_by(), None, "merged by {merged_by}");
        assert_eq!(
            manifests(&repo, "production"),
            before,
            "merged by {merged_by}: the merge is reverted"
        );
        let (_, message) = &repo.log("main")[0];
        assert!(
            message.contains(&format!("This reverts commit {merge}"))
                && message.contains(merged_by)
                && message.contains("approv"),
            "merged by {merged_by}: the revert says why: {message}"
        );
        assert!(
            alerted_critically(s.pipeline.store()),
            "merged by {merged_by}"
        );
    }
}

/// The other side of hole 2: a person merging an approval PR whose head the reviews approve is
/// the approval (of the reviewers), and the rollout continues from their merge.
#[tokio::test]
async fn a_person_merging_an_approved_head_continues_from_their_merge() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
    gh.set_permission("carol", "write");
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    gh.add_review(n, "carol", "APPROVED", &head);
    let merge = gh.merge_by_human(n, "erin");
    let github = github_for(&gh);
    let repo_name: RepoName = GITOPS.parse().unwrap();
    let note = events(&s, &github)
        .on_approval_merged(&repo_name, n, "erin", s.clock.now())
        .await
        .unwrap();
    let r = get(&s, &id);
    assert_eq!(r.approved_by(), Some("carol"), "{note}");
    assert_eq!(r.commits.len(), 1, "{r:#?}");
    assert_eq!(r.commits[0].sha, merge);
    assert_eq!(repo_of(&s).tip("main").unwrap(), merge);
    assert!(
        !gh.writes().iter().any(|w| w.ends_with("/merge")),
        "the bot did not merge it again: {:?}",
        gh.writes()
    );
}

/// The bodies of the comments on issue or PR `n`.
fn comments_on(gh: &FakeGithub, n: u64) -> Vec<String> {
    gh.state
        .lock()
        .unwrap()
        .comments
        .iter()
        .filter(|(on, _)| *on == n)
        .map(|(_, c)| c["body"].as_str().unwrap().to_string())
        .collect()
}

/// Hole 3: the approval PR of a rollout that is superseded or rolled back is closed with a
/// comment saying why, and its bot branch deleted, so merging it later cannot ship stale
/// manifests.
#[tokio::test]
async fn approval_prs_of_dead_rollouts_are_closed_saying_why_and_their_branches_deleted() {
    let gh = FakeGithub::start().await;
    let (s, first, n) = awaiting_approval(&gh, "deploybot").await;
    let repo = repo_of(&s);
    let branch = gh.pull(n)["head"]["ref"].as_str().unwrap().to_string();
    let second = s
        .pipeline
        .start(
            &release("1.1.0"),
            CANARY,
            Some("production"),
            "t",
            s.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(get(&s, &first).phase(), Phase::Superseded);
    let closed = gh.pull(n);
    assert_eq!(closed["state"], json!("closed"));
    assert_ne!(closed["merged"], json!(true));
    assert!(repo.tip(&branch).is_none(), "{branch} is deleted");
    let said = comments_on(&gh, n);
    assert!(
        said.iter()
            .any(|c| c.contains("superseded") && c.contains(&second)),
        "{said:?}"
    );

    // The newer rollout waits on its own PR; rolled back, it is closed too.
    let open = gh.open_prs();
    assert_eq!(open.len(), 1, "{open:#?}");
    let m = open[0]["number"].as_u64().unwrap();
    s.pipeline
        .feed(&second, by(Command::Rollback, "carol"), s.clock.now())
        .await
        .unwrap();
    assert!(gh.open_prs().is_empty(), "{:#?}", gh.open_prs());
    let said = comments_on(&gh, m);
    assert!(said.iter().any(|c| c.contains("rolled back")), "{said:?}");
}

/// A demo workspace whose production environment needs approval and has its own GitOps
/// repository, `acme/prod-gitops`, on a GitHub Enterprise Server layout: the fake GitHub's API
/// under `/api/v3` (its PRs backed by that repository) and git over smart HTTP for tokens
/// `check` accepts. `github_auth` is the config's credential lines under `github:`.
pub(crate) struct EnterpriseProd {
    pub api: String,
    pub prod: std::path::PathBuf,
    pub config: Arc<deploybot::config::Config>,
    pub store: Store,
    pub clock: deploybot::demo::VirtualClock,
    pub _git: crate::support::git_http::GitHttp,
    pub _tmp: tempfile::TempDir,
}

pub(crate) async fn enterprise_prod(
    gh: &FakeGithub,
    check: crate::support::git_http::TokenCheck,
    github_auth: &str,
) -> EnterpriseProd {
    let tmp = tempfile::tempdir().unwrap();
    let ws = deploybot::demo::workspace::Workspace::create(&tmp.path().join("ws")).unwrap();
    let served = tmp.path().join("git");
    std::fs::create_dir_all(served.join("acme")).unwrap();
    let prod = served.join("acme/prod-gitops.git");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&ws.gitops)
        .arg(&prod)
        .status()
        .unwrap();
    assert!(copied.success());
    let git = crate::support::git_http::GitHttp::start_checked(served, check).await;
    gh.back_with_git(BareRepo(prod.clone()));
    let api = format!("{}/api/v3", gh.url());
    let text = ws
        .config_text()
        .replace(
            "store:\n",
            &format!("github:\n  api_url: {api}\n{github_auth}\nstore:\n"),
        )
        .replace(
            "      - name: production\n",
            &format!(
                "      - name: production\n        require_approval: true\n        \
                 repo_url: {}\n",
                git.url("acme/prod-gitops.git")
            ),
        );
    let config = Arc::new(deploybot::config::from_yaml(&text, &ws.config_path).unwrap());
    std::fs::create_dir_all(&ws.data_dir).unwrap();
    let store = Store::open(&config.store.database_path()).unwrap();
    let clock = deploybot::demo::VirtualClock::starting_at(deploybot_core::rollout::testing::t(0));
    EnterpriseProd {
        api,
        prod,
        config,
        store,
        clock,
        _git: git,
        _tmp: tmp,
    }
}

impl EnterpriseProd {
    /// The pipeline over `parts` with release 2.0.0 started in production, awaiting its
    /// approval PR; the rollout's id.
    pub(crate) async fn start_production(
        &self,
        parts: deploybot::shell::runner::RunnerParts<deploybot::demo::ReplayWindows>,
    ) -> (
        Pipeline<deploybot::shell::runner::LiveRunner<deploybot::demo::ReplayWindows>>,
        String,
    ) {
        let pipeline = Pipeline::new(
            self.config.clone(),
            self.store.clone(),
            deploybot::shell::runner::LiveRunner::new(parts),
        );
        let id = pipeline
            .start(
                &release("2.0.0"),
                CANARY,
                Some("production"),
                "t",
                self.clock.now(),
            )
            .await
            .unwrap();
        assert_eq!(
            self.store.get(&id).unwrap().unwrap().phase(),
            Phase::AwaitingApproval
        );
        (pipeline, id)
    }
}

/// Hole 4: an environment with its own GitOps repository, on GitHub Enterprise Server (the API
/// under `/api/v3`, git over HTTP on the same host): its webhooks are routed, its approval PR is
/// opened and merged there.
#[tokio::test]
async fn approval_prs_work_in_an_environment_repository_on_github_enterprise() {
    let gh = FakeGithub::start().await;
    let env = enterprise_prod(
        &gh,
        Arc::new(|t| t == "prod-t0ken"),
        "  token_env: GHES_TEST_TOKEN\n",
    )
    .await;
    let (api, prod, config, store, clock) = (
        env.api.clone(),
        env.prod.clone(),
        env.config.clone(),
        env.store.clone(),
        env.clock.clone(),
    );
    let mut parts = crate::pipeline::runner_parts(&config, &store, &clock, Some(&api));
    parts.gitops = deploybot::shell::runner::gitops_writers(
        &config,
        Some(Arc::new(deploybot::adapters::github_auth::FixedToken(
            deploybot_core::secret::Secret::new("prod-t0ken"),
        ))),
    );
    let (pipeline, id) = env.start_production(parts).await;
    assert!(
        gh.requests()
            .iter()
            .any(|r| r == "POST /api/v3/repos/acme/prod-gitops/pulls"),
        "{:#?}",
        gh.requests()
    );
    let n = gh.open_prs()[0]["number"].as_u64().unwrap();
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();

    // A review there is routed to the approval, not ignored.
    let mut review = webhook("pull_request_review", "submitted");
    review["repository"]["full_name"] = json!("acme/prod-gitops");
    review["pull_request"]["number"] = json!(n);
    review["review"]["user"]["login"] = json!("carol");
    let parsed = deploybot_core::webhook::event::parse(
        "pull_request_review",
        &serde_json::to_vec(&review).unwrap(),
    )
    .unwrap();
    let routed = route(&parsed, &deploybot::shell::webhook::repos(&config));
    assert!(
        matches!(&routed, Route::Review { repo, number } if repo.to_string() == "acme/prod-gitops" && *number == n),
        "{routed:?}"
    );

    gh.set_permission("carol", "write");
    gh.add_review(n, "carol", "APPROVED", &head);
    let github = deploybot::adapters::github::GithubRest::new(
        &api,
        Some(&deploybot_core::secret::Secret::new("t0ken")),
    )
    .unwrap();
    let events = deploybot::shell::events::RolloutEvents {
        config: &config,
        github: &github,
        model: None,
        pipeline: &pipeline,
    };
    let note = events
        .on_review(&"acme/prod-gitops".parse().unwrap(), n, clock.now())
        .await
        .unwrap();
    let r = store.get(&id).unwrap().unwrap();
    assert_eq!(r.approved_by(), Some("carol"), "{note}");
    assert!(
        gh.requests()
            .iter()
            .any(|x| *x == format!("PUT /api/v3/repos/acme/prod-gitops/pulls/{n}/merge")),
        "{:#?}",
        gh.requests()
    );
    assert_eq!(
        BareRepo(prod).tip("main").unwrap(),
        r.commits[0].sha,
        "the canary starts from the merge in the environment's repository"
    );
}

/// Where a test stops a [`Gated`] runner: after the next effect of one kind (the effect
/// happened: its commit is in git), until the test lets it go.
#[derive(Clone, Default)]
struct Gate(Arc<Mutex<Option<Armed>>>);

/// The kind of effect to stop after, who to tell when it is reached, and what lets it go.
type Armed = (EffectKind, oneshot::Sender<()>, oneshot::Receiver<()>);

impl Gate {
    /// Stops after the next effect of `kind`: `reached` fires then, and it goes on when
    /// `release` does (or is dropped).
    fn arm(&self, kind: EffectKind) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.0.lock().unwrap() = Some((kind, reached_tx, release_rx));
        (reached, release)
    }
}

/// A runner that stops where its [`Gate`] says.
struct Gated<R> {
    inner: R,
    gate: Gate,
}

impl<R: EffectRunner> EffectRunner for Gated<R> {
    async fn run(&self, r: &Rollout, effect: &Effect) -> Result<Option<Input>, Failure> {
        let out = self.inner.run(r, effect).await;
        let stop = {
            let mut armed = self.gate.0.lock().unwrap();
            match armed.take() {
                Some((kind, reached, release)) if kind == effect.kind() => Some((reached, release)),
                other => {
                    *armed = other;
                    None
                }
            }
        };
        if let Some((reached, release)) = stop {
            let _ = reached.send(());
            let _ = release.await;
        }
        out
    }
}

/// The staging pipeline with a gated production runner, and its gate.
async fn gated() -> (Setup<Gated<impl EffectRunner>>, Gate) {
    let gate = Gate::default();
    let g = gate.clone();
    let s = setup_wrapped("supersede", None, "deploybot", &[], move |inner| Gated {
        inner,
        gate: g,
    })
    .await;
    (s, gate)
}

/// A staging rollout of 1.0.0 at its first step (25 %), synced and baked: the next promote
/// commits 50 %.
async fn baked(s: &Setup<Gated<impl EffectRunner>>) -> String {
    let id = s
        .pipeline
        .start(&release("1.0.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    s.pipeline.tick(s.clock.advance(61)).await.unwrap();
    assert!(
        matches!(
            get(s, &id).step().map(|st| &st.progress),
            Some(deploybot_core::rollout::Progress::Live { .. })
        ),
        "{:?}",
        get(s, &id).phase()
    );
    s.clock.advance(301);
    id
}

/// Hole 5: `/rollback` arrives while the next step's commit is in flight (pushed, its result not
/// yet recorded). The rollback waits for the rollout's one driver, and reverts that commit too:
/// production is back where it was, and no commit of the rollout stands unreverted.
#[tokio::test]
async fn a_rollback_while_a_commit_is_in_flight_waits_for_it_and_reverts_it_too() {
    let (s, gate) = gated().await;
    let repo = repo_of(&s);
    let before = manifests(&repo, "staging");
    let id = baked(&s).await;
    let (reached, release) = gate.arm(EffectKind::CommitStep);
    let now = s.clock.now();
    let promote = s
        .pipeline
        .feed(&id, Input::judged(Observation::Promote), now);
    let rollback = async {
        reached.await.unwrap();
        let rollback = s.pipeline.feed(&id, by(Command::Rollback, "carol"), now);
        tokio::pin!(rollback);
        // Enough for a rollback that does not wait to finish; one that waits cannot.
        let early = tokio::time::timeout(Duration::from_millis(500), &mut rollback).await;
        let _ = release.send(());
        match early {
            Ok(done) => (done, false),
            Err(_) => (rollback.await, true),
        }
    };
    let (promoted, (rolled, waited)) = tokio::join!(promote, rollback);
    promoted.unwrap();
    rolled.unwrap();
    let r = get(&s, &id);
    assert!(
        matches!(r.rollback(), Some((_, Some(Revert::Done { .. })))),
        "{:?}",
        r.state
    );
    assert_eq!(manifests(&repo, "staging"), before);
    assert_eq!(unreverted(&repo, &id), Vec::<String>::new());
    assert!(waited, "the rollback waited for the commit in flight");
}

/// Hole 5, across rollouts: two releases admitted at once in one environment (the webhook
/// worker, the tick loop's promotions and `deploybot rollout start` all start rollouts) must not
/// both decide to supersede the live one: one is admitted at a time, so the later one supersedes
/// the earlier. The live rollout's first commit is held in flight while both releases arrive.
#[tokio::test]
async fn two_releases_admitted_at_once_leave_one_live_rollout_in_the_environment() {
    let (s, gate) = gated().await;
    let (reached, release_gate) = gate.arm(EffectKind::CommitStep);
    let now = s.clock.now();
    let (v1, v2, v3) = (release("1.0.0"), release("1.1.0"), release("2.0.0"));
    let first = s.pipeline.start(&v1, CANARY, None, "t", now);
    let both = async {
        reached.await.unwrap();
        let a = s.pipeline.start(&v2, CANARY, None, "t", now);
        let b = s.pipeline.start(&v3, CANARY, None, "t", now);
        let both = async { tokio::join!(a, b) };
        tokio::pin!(both);
        // Both are admitted (and wait) while the first rollout's commit is in flight.
        let early = tokio::time::timeout(Duration::from_millis(500), &mut both).await;
        assert!(early.is_err(), "they wait for the live rollout's driver");
        let _ = release_gate.send(());
        both.await
    };
    let (first, (a, b)) = tokio::join!(first, both);
    first.unwrap();
    // The second waits for the first to be admitted and started, then supersedes it (rather
    // than failing on the store's one-live-rollout rule and being retried).
    assert_eq!(a.unwrap(), "checkout-staging-1.1.0");
    assert_eq!(b.unwrap(), "checkout-staging-2.0.0");
    assert_eq!(get(&s, "checkout-staging-1.1.0").phase(), Phase::Superseded);
    let live: Vec<(String, Phase)> = s
        .pipeline
        .store()
        .live()
        .unwrap()
        .into_iter()
        .filter(|r| r.environment() == "staging")
        .map(|r| (r.deploy_id.clone(), r.phase()))
        .collect();
    assert_eq!(live.len(), 1, "live: {live:?}");
}

/// Hole 5, the revert list: the process dies right after a step's commit was pushed (not
/// recorded), and the first thing the new process does is a `/rollback`: the revert list comes
/// from the branch (every commit carrying the rollout's `Deploy-Id`), so that commit is reverted
/// too.
#[tokio::test]
async fn the_revert_list_comes_from_the_branch_so_an_unrecorded_commit_is_reverted() {
    let (s, gate) = gated().await;
    let repo = repo_of(&s);
    let before = manifests(&repo, "staging");
    let id = baked(&s).await;
    let (reached, _release) = gate.arm(EffectKind::CommitStep);
    {
        let promote = s
            .pipeline
            .feed(&id, Input::judged(Observation::Promote), s.clock.now());
        tokio::select! {
            _ = promote => panic!("the gate holds the commit's result"),
            _ = reached => {}
        }
        // Dropped here: the process died with 50 % pushed and not recorded.
    }
    assert_eq!(unreverted(&repo, &id).len(), 2);
    let store = Store::open(&s.config.store.database_path()).unwrap();
    let restarted = Pipeline::new(
        s.config.clone(),
        store.clone(),
        live_runner(&s.config, &store, &s.clock, None),
    );
    restarted
        .feed(&id, by(Command::Rollback, "carol"), s.clock.now())
        .await
        .unwrap();
    let r = store.get(&id).unwrap().unwrap();
    assert!(
        matches!(r.rollback(), Some((_, Some(Revert::Done { .. })))),
        "{:?}",
        r.state
    );
    assert_eq!(manifests(&repo, "staging"), before);
    assert_eq!(unreverted(&repo, &id), Vec::<String>::new());
}

/// Hole 6: a newer version supersedes a rollout half way; rolling the newer one back returns
/// the environment to the last version that completed (not to the superseded one's half-done
/// canary), and the audit trail says so.
#[tokio::test]
async fn rolling_back_after_a_supersede_returns_to_the_last_completed_version() {
    let s = setup("supersede", None).await;
    let repo = repo_of(&s);
    let before = manifests(&repo, "staging");
    let old = s
        .pipeline
        .start(&release("1.0.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    s.pipeline.tick(s.clock.advance(61)).await.unwrap();
    let new = s
        .pipeline
        .start(&release("1.1.0"), CANARY, None, "t", s.clock.now())
        .await
        .unwrap();
    assert_eq!(get(&s, &old).phase(), Phase::Superseded);
    s.pipeline
        .feed(&new, by(Command::Rollback, "carol"), s.clock.advance(10))
        .await
        .unwrap();
    assert_eq!(
        manifests(&repo, "staging"),
        before,
        "back to 1.4.2, the last version that completed"
    );
    assert_eq!(unreverted(&repo, &old), Vec::<String>::new());
    let trail = s.pipeline.store().history("checkout").unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.rollout_id == new && e.cause == "/rollback" && e.note.contains(&old)),
        "{:#?}",
        trail
            .iter()
            .map(|e| (&e.rollout_id, &e.cause, &e.note))
            .collect::<Vec<_>>()
    );
}

/// The property test over random interleavings of releases, ticks, commands, approvals, pushes,
/// merges and crashes (the process killed right after any effect, restarted on the same store;
/// a webhook that was being processed is redelivered, as the durable queue does). Afterwards, in
/// every environment: the manifests are those of the last version that completed or those of the
/// live rollout's current step, never a mixture; no commit of a rolled-back or superseded rollout
/// stands unreverted; and no approval PR of a rollout that is over is open.
mod interleavings {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use deploybot::adapters::store::{approval_prs, holds};
    use deploybot::demo::workspace::Workspace;
    use deploybot::demo::{ReplayWindows, VirtualClock};
    use deploybot::shell::events::RolloutEvents;
    use deploybot::shell::runner::LiveRunner;
    use deploybot_core::risk::Strategy as Plan;
    use deploybot_core::rollout::admission::Gate;
    use proptest::prelude::*;
    use tokio::sync::Notify;

    /// Kills the process right after the `n`th effect from now: the effect happened, its result
    /// is never recorded (`crashed` fires and the run never returns).
    struct Crashy {
        inner: LiveRunner<ReplayWindows>,
        left: Arc<AtomicUsize>,
        crashed: Arc<Notify>,
    }

    impl EffectRunner for Crashy {
        async fn run(&self, r: &Rollout, effect: &Effect) -> Result<Option<Input>, Failure> {
            let out = self.inner.run(r, effect).await;
            let left = self.left.load(Ordering::SeqCst);
            if left == 1 {
                self.left.store(0, Ordering::SeqCst);
                self.crashed.notify_one();
                std::future::pending::<()>().await;
            } else if left > 1 {
                self.left.store(left - 1, Ordering::SeqCst);
            }
            out
        }
    }

    #[derive(Debug, Clone)]
    enum Act {
        /// A merged change of `TAGS[tag]` (with an approval asked by its risk, or not).
        Release {
            tag: usize,
            approval: bool,
        },
        Tick {
            minutes: u8,
        },
        /// carol (a writer) approves the open approval PR's head.
        Approve,
        /// mallory pushes to the open approval PR's branch.
        Push,
        /// erin merges the open approval PR; carol approved its head first when `approved`.
        Merge {
            approved: bool,
        },
        Command(usize),
        /// `deploybot rollout release checkout staging` after a rollback held it.
        Unhold,
        Reconcile,
        /// The next action is killed right after its `after`th effect.
        Crash {
            after: usize,
        },
    }

    const TAGS: [&str; 3] = ["1.0.0", "1.1.0", "2.0.0"];
    const COMMANDS: [Command; 6] = [
        Command::Pause,
        Command::Resume,
        Command::Rollback,
        Command::Hold,
        Command::HoldCancel,
        Command::Promote,
    ];

    fn act() -> impl Strategy<Value = Act> {
        prop_oneof![
            3 => (0..TAGS.len(), any::<bool>())
                .prop_map(|(tag, approval)| Act::Release { tag, approval }),
            5 => (1u8..25).prop_map(|minutes| Act::Tick { minutes }),
            2 => Just(Act::Approve),
            1 => Just(Act::Push),
            2 => any::<bool>().prop_map(|approved| Act::Merge { approved }),
            2 => (0..COMMANDS.len()).prop_map(Act::Command),
            1 => Just(Act::Unhold),
            1 => Just(Act::Reconcile),
            2 => (1usize..6).prop_map(|after| Act::Crash { after }),
        ]
    }

    struct World {
        gh: FakeGithub,
        ws: Workspace,
        config: Arc<deploybot::config::Config>,
        store: Store,
        clock: VirtualClock,
        left: Arc<AtomicUsize>,
        crashed: Arc<Notify>,
        /// A restarted process has not run `recover` yet.
        recover_owed: std::sync::atomic::AtomicBool,
        /// The manifests of each environment before anything shipped.
        seed: Vec<(&'static str, Vec<String>)>,
        _tmp: tempfile::TempDir,
    }

    impl World {
        /// The pipeline a (re)started process runs.
        fn pipeline(&self) -> Pipeline<Crashy> {
            let inner = live_runner(&self.config, &self.store, &self.clock, Some(&self.gh.url()));
            Pipeline::new(
                self.config.clone(),
                self.store.clone(),
                Crashy {
                    inner,
                    left: self.left.clone(),
                    crashed: self.crashed.clone(),
                },
            )
        }

        fn repo(&self) -> BareRepo {
            BareRepo(self.ws.gitops.clone())
        }

        fn open_approval_pr(&self) -> Option<u64> {
            self.gh
                .open_prs()
                .iter()
                .filter_map(|p| p["number"].as_u64())
                .next()
        }
    }

    async fn world() -> World {
        let gh = FakeGithub::start().await;
        let s = setup_wrapped("supersede", Some(&gh), "deploybot", &[], |r| r).await;
        gh.back_with_git(BareRepo(s.ws.gitops.clone()));
        gh.set_permission("carol", "write");
        gh.set_permission("erin", "write");
        let crate::pipeline::Setup {
            ws,
            pipeline,
            clock,
            config,
            _tmp,
        } = s;
        let repo = BareRepo(ws.gitops.clone());
        let seed = ["staging", "production"]
            .into_iter()
            .map(|env| (env, manifests_at(&repo, "main", env)))
            .collect();
        World {
            seed,
            store: pipeline.store().clone(),
            gh,
            ws,
            config,
            clock,
            left: Arc::new(AtomicUsize::new(0)),
            crashed: Arc::new(Notify::new()),
            recover_owed: Default::default(),
            _tmp,
        }
    }

    /// Runs `f` on the pipeline; if the process is killed meanwhile, restarts (a new pipeline on
    /// the same store) and runs it once more when `redelivered` (the webhook it was processing is
    /// still in the durable queue); the restarted process `recover`s before its first tick, but
    /// maybe after a webhook or two.
    async fn run(
        w: &World,
        p: &mut Pipeline<Crashy>,
        redelivered: bool,
        f: impl AsyncFn(&Pipeline<Crashy>),
    ) {
        let killed = {
            let work = f(p);
            tokio::select! {
                () = work => false,
                () = w.crashed.notified() => true,
            }
        };
        if !killed {
            return;
        }
        if std::env::var("GATES_DEBUG").is_ok() {
            eprintln!("  killed");
        }
        w.left.store(0, Ordering::SeqCst);
        *p = w.pipeline();
        // The worker and the rollout loop start together: a redelivered webhook, or the next
        // one, may well be processed before `recover` has re-issued what the records owe.
        w.recover_owed.store(true, Ordering::SeqCst);
        if redelivered {
            f(p).await;
        }
    }

    /// The restarted process's `recover`, once, when it is owed; it can be killed too (then the
    /// next start owes it again).
    async fn recover(w: &World, p: &mut Pipeline<Crashy>) {
        if w.recover_owed.swap(false, Ordering::SeqCst) {
            run(w, p, false, async |p| {
                p.driver().recover(w.clock.now()).await.unwrap();
            })
            .await;
        }
    }

    fn events<'a>(
        w: &'a World,
        p: &'a Pipeline<Crashy>,
        github: &'a deploybot::adapters::github::GithubRest,
    ) -> RolloutEvents<'a, Crashy> {
        RolloutEvents {
            config: &w.config,
            github,
            model: None,
            pipeline: p,
        }
    }

    async fn apply(w: &World, p: &mut Pipeline<Crashy>, a: &Act) {
        // The rollout loop recovers before it ticks or reconciles; webhooks do not wait for it.
        if matches!(a, Act::Tick { .. } | Act::Reconcile) {
            recover(w, p).await;
        }
        deliver(w, p, a).await;
    }

    async fn deliver(w: &World, p: &mut Pipeline<Crashy>, a: &Act) {
        let github = github_for(&w.gh);
        let repo: RepoName = GITOPS.parse().unwrap();
        let now = w.clock.now();
        match a {
            Act::Crash { after } => w.left.store(*after, Ordering::SeqCst),
            Act::Release { tag, approval } => {
                let gate = Gate {
                    risk_score: 0.3,
                    strategy: Plan::Canary25,
                    approval_required: *approval,
                };
                run(w, p, true, async |p| {
                    // Held, busy, already running: answers, not failures.
                    let _ = p
                        .start(&release(TAGS[*tag]), gate, Some("staging"), "t", now)
                        .await;
                })
                .await;
            }
            Act::Tick { minutes } => {
                for _ in 0..*minutes {
                    let now = w.clock.advance(60);
                    run(w, p, false, async |p| {
                        p.tick(now).await.unwrap();
                    })
                    .await;
                }
            }
            Act::Approve | Act::Push | Act::Merge { .. } => {
                let Some(n) = w.open_approval_pr() else {
                    return;
                };
                let pr = w.gh.pull(n);
                let head = pr["head"]["sha"].as_str().unwrap().to_string();
                let merged = match a {
                    Act::Approve => {
                        w.gh.add_review(n, "carol", "APPROVED", &head);
                        false
                    }
                    Act::Push => {
                        // A change to the PR's own environment (`deploybot/checkout/ENV/ID`).
                        let branch = pr["head"]["ref"].as_str().unwrap();
                        let env = branch.split('/').nth(2).unwrap();
                        let path = format!("apps/checkout/overlays/{env}/deployment.yaml");
                        let text = w
                            .repo()
                            .show(branch, &path)
                            .replace("leaves this alone", "leaves this alone (mallory)");
                        w.repo().commit_as("mallory", branch, &path, &text);
                        false
                    }
                    Act::Merge { approved } => {
                        if *approved {
                            w.gh.add_review(n, "carol", "APPROVED", &head);
                        }
                        w.gh.merge_by_human(n, "erin");
                        true
                    }
                    _ => unreachable!(),
                };
                let github = &github;
                let repo = &repo;
                run(w, p, true, async |p| {
                    let e = events(w, p, github);
                    let _ = if merged {
                        e.on_approval_merged(repo, n, "erin", now).await
                    } else {
                        e.on_review(repo, n, now).await
                    };
                })
                .await;
            }
            Act::Command(c) => {
                let live: Vec<Rollout> = w.store.live().unwrap();
                let Some(r) = live.last() else { return };
                let id = r.deploy_id.clone();
                let cmd = COMMANDS[*c];
                run(w, p, true, async |p| {
                    p.feed(&id, by(cmd, "ops"), now).await.unwrap();
                })
                .await;
            }
            Act::Unhold => {
                holds::release(&w.store, "checkout", "staging").unwrap();
                holds::release(&w.store, "checkout", "production").unwrap();
            }
            Act::Reconcile => {
                let github = &github;
                run(w, p, false, async |p| {
                    events(w, p, github).reconcile(now).await;
                })
                .await;
            }
        }
    }

    /// The files of `env` at commit `rev`.
    fn manifests_at(repo: &BareRepo, rev: &str, env: &str) -> Vec<String> {
        FILES
            .iter()
            .map(|f| repo.show(rev, &format!("apps/checkout/overlays/{env}/{f}")))
            .collect()
    }

    /// The rollout's commits that no revert undoes, counting the commits a reverted merge
    /// brought in as undone with it.
    fn unreverted_of(repo: &BareRepo, r: &Rollout) -> Vec<String> {
        let log = repo.log("main");
        let mut undone: BTreeSet<String> = BTreeSet::new();
        for (_, m) in &log {
            for l in m.lines() {
                if let Some(sha) = l.strip_prefix("This reverts commit ") {
                    let sha = sha.trim_end_matches('.');
                    undone.insert(sha.to_string());
                    undone.extend(repo.merged_by(sha));
                }
            }
        }
        let mut standing: Vec<String> = unreverted(repo, &r.deploy_id)
            .into_iter()
            .filter(|sha| !undone.contains(sha))
            .collect();
        standing.extend(
            r.commits
                .iter()
                .filter(|c| !c.kind.is_step() && !undone.contains(&c.sha))
                .map(|c| c.sha.clone()),
        );
        standing
    }

    /// The three properties, in every environment.
    fn check(w: &World) -> Result<(), String> {
        let repo = w.repo();
        let all = w.store.recent(Some("checkout"), 500).unwrap();
        for env in ["staging", "production"] {
            let mut mine: Vec<&Rollout> = all.iter().filter(|r| r.environment() == env).collect();
            mine.sort_by_key(|r| r.created_at);
            let now = manifests_at(&repo, "main", env);
            let seed = w.seed.iter().find(|(e, _)| *e == env).unwrap().1.clone();
            let last_completed = mine
                .iter()
                .rev()
                .find(|r| r.phase() == Phase::Complete)
                .and_then(|r| r.commits.last())
                .map_or(seed, |c| manifests_at(&repo, &c.sha, env));
            let current_step = mine
                .iter()
                .rev()
                .find(|r| r.is_live())
                .and_then(|r| r.commits.last())
                .map(|c| manifests_at(&repo, &c.sha, env));
            if now != last_completed && Some(&now) != current_step.as_ref() {
                return Err(format!(
                    "{env}: a mixture: {now:#?}\nlast completed: {last_completed:#?}\ncurrent step: {current_step:#?}\nrollouts: {:#?}",
                    mine.iter()
                        .map(|r| (&r.deploy_id, r.phase(), &r.commits))
                        .collect::<Vec<_>>()
                ));
            }
            for r in mine.iter().filter(|r| {
                matches!(r.phase(), Phase::RolledBack | Phase::Superseded) && !r.is_live()
            }) {
                let standing = unreverted_of(&repo, r);
                if !standing.is_empty() {
                    return Err(format!(
                        "{env}: {} ({}) left {standing:?} unreverted",
                        r.deploy_id,
                        r.phase()
                    ));
                }
            }
        }
        for link in approval_prs::unclosed(&w.store).unwrap().into_iter().chain(
            w.gh.open_prs().iter().filter_map(|p| {
                approval_prs::approval_pr_by_number(&w.store, GITOPS, p["number"].as_u64().unwrap())
                    .unwrap()
            }),
        ) {
            let r = w.store.get(&link.deploy_id).unwrap().unwrap();
            if !r.is_live() && w.gh.pull(link.number)["state"] == json!("open") {
                return Err(format!(
                    "the approval PR #{} of {} ({}) is open",
                    link.number,
                    link.deploy_id,
                    r.phase()
                ));
            }
        }
        Ok(())
    }

    async fn scenario(acts: Vec<Act>) -> Result<(), String> {
        let w = world().await;
        let mut p = w.pipeline();
        for a in &acts {
            apply(&w, &mut p, a).await;
        }
        // Afterwards: a last restart finishes what a kill left owed, the reconcile what a lost
        // webhook would have said.
        w.left.store(0, Ordering::SeqCst);
        let p = w.pipeline();
        let now = w.clock.advance(60);
        w.recover_owed.store(false, Ordering::SeqCst);
        p.driver().recover(now).await.unwrap();
        let github = github_for(&w.gh);
        events(&w, &p, &github).reconcile(now).await;
        if std::env::var("GATES_DEBUG").is_ok() {
            let all = w.store.recent(None, 100).unwrap();
            eprintln!(
                "acts {:?}\n  -> {:?} | prs {}",
                acts,
                all.iter()
                    .map(|r| format!("{} {}", r.deploy_id, r.phase()))
                    .collect::<Vec<_>>(),
                w.gh.state.lock().unwrap().pulls.len()
            );
        }
        check(&w)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]
        #[test]
        fn no_interleaving_leaves_a_mixture_an_unreverted_commit_or_a_stale_approval_pr(
            acts in prop::collection::vec(act(), 1..14)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let outcome = rt.block_on(scenario(acts));
            prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        }
    }
}

/// An approval PR that the GitOps repository's branch protection will not let the bot merge yet
/// (its required check has not reported): the approved rollout neither fails nor bypasses the
/// rule. It asks again after `retry_after` and, past `gitops.checks_timeout`, pauses naming the
/// rule; once the check passes, `/resume` merges the approved head.
#[tokio::test]
async fn an_approval_pr_refused_by_branch_protection_waits_then_pauses_naming_the_rule() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
    gh.require_checks(&["gitops-ci"]);
    gh.set_permission("carol", "write");
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    gh.add_review(n, "carol", "APPROVED", &head);
    let github = github_for(&gh);
    let repo_name: RepoName = GITOPS.parse().unwrap();
    events(&s, &github)
        .on_review(&repo_name, n, s.clock.now())
        .await
        .unwrap();
    let r = get(&s, &id);
    assert!(
        matches!(r.phase(), Phase::Canary { .. }),
        "still committing, not failed: {:?}",
        r.phase()
    );
    assert!(r.commits.is_empty());
    assert_eq!(gh.pull(n)["merged"], json!(false));
    // Asked again on the retries; past the default 30 minutes, paused with GitHub's words.
    for _ in 0..40 {
        s.pipeline.tick(s.clock.advance(60)).await.unwrap();
    }
    let r = get(&s, &id);
    let Phase::Paused { reason } = r.phase() else {
        panic!("{:?}", r.phase())
    };
    assert!(
        reason.contains("(GitHub: Required status check \"gitops-ci\" is expected)")
            && reason.contains("gitops.checks_timeout (30m)"),
        "{reason}"
    );
    let tries = gh
        .requests()
        .iter()
        .filter(|l| *l == &format!("PUT /repos/{GITOPS}/pulls/{n}/merge"))
        .count();
    assert!(tries > 2, "{tries} merge attempts");
    assert_eq!(gh.pull(n)["merged"], json!(false), "never bypassed");

    gh.add_status(&head, "gitops-ci", "success");
    s.pipeline
        .feed(&id, by(Command::Resume, "carol"), s.clock.advance(10))
        .await
        .unwrap();
    let r = get(&s, &id);
    let merge = gh.pull(n)["merge_commit_sha"].as_str().unwrap().to_string();
    assert_eq!(r.commits.len(), 1, "{r:#?}");
    assert_eq!(r.commits[0].sha, merge);
}

/// Branch protection asking for what the bot cannot give (GitHub's own approving review on the
/// GitOps repository): no wait would help, so the approved rollout pauses at once naming the
/// rule, and nothing is merged.
#[tokio::test]
async fn a_rule_only_a_person_can_meet_pauses_at_once() {
    let gh = FakeGithub::start().await;
    let (s, id, n) = awaiting_approval(&gh, "deploybot").await;
    gh.state.lock().unwrap().require_review = true;
    gh.set_permission("carol", "write");
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();
    gh.add_review(n, "carol", "APPROVED", &head);
    let github = github_for(&gh);
    let repo_name: RepoName = GITOPS.parse().unwrap();
    events(&s, &github)
        .on_review(&repo_name, n, s.clock.now())
        .await
        .unwrap();
    let r = get(&s, &id);
    let Phase::Paused { reason } = r.phase() else {
        panic!("{:?}", r.phase())
    };
    assert!(
        reason.contains("At least 1 approving review is required by reviewers with write access")
            && reason.contains("never bypasses branch protection"),
        "{reason}"
    );
    assert_eq!(gh.pull(n)["merged"], json!(false));
}
