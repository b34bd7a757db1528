//! GitHub App authentication against the fake GitHub in App mode: JWTs signed by the test App's
//! key (`fixtures/github-app`), installation tokens that live a few seconds, several
//! installations at once, a 401 answered by re-minting once, and rotated secret files.

use std::sync::Arc;
use std::time::Duration;

use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::github::GithubRest;
use deploybot::adapters::github_auth::{AppTokens, FixedToken, PersonalToken, RotatingSecret};
use deploybot_core::clock::Clock as _;
use deploybot_core::failure::Class;
use deploybot_core::github::token::{Scope, TokenSource};
use deploybot_core::github::{PullRequests, RepoName};
use deploybot_core::secret::SecretRef;

use crate::support::fake_github::{FakeGithub, webhook};
use crate::support::fixtures_dir;

pub(crate) const APP_ID: u64 = 4242;

pub(crate) fn key(name: &str) -> std::path::PathBuf {
    fixtures_dir().join("github-app").join(name)
}

/// The fake GitHub serving one PR, as the App installed on `acme` (11) and `globex` (22), its
/// tokens living `lifetime`.
async fn app_github(lifetime: Duration) -> (FakeGithub, u64) {
    let gh = FakeGithub::start_with_pr(&webhook("pull_request", "opened")).await;
    let public = std::fs::read(key("test-app.pub.pem")).unwrap();
    gh.require_app(APP_ID, &public, &[("acme", 11), ("globex", 22)], lifetime);
    let n = gh.open_prs()[0]["number"].as_u64().unwrap();
    (gh, n)
}

/// The test App's token source against `gh`, its key read from `pem` in `fixtures/github-app`.
pub(crate) fn app_tokens(
    gh: &FakeGithub,
    pem: &str,
    clock: Arc<dyn deploybot_core::clock::Clock + Send + Sync>,
) -> AppTokens {
    AppTokens::new(
        APP_ID,
        RotatingSecret::read(SecretRef::File(key(pem))).unwrap(),
        &gh.url(),
        Duration::from_secs(10),
        clock,
    )
    .unwrap()
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

#[tokio::test]
async fn installation_tokens_are_minted_per_installation_and_refreshed_across_lifetimes() {
    let (gh, n) = app_github(Duration::from_secs(2)).await;
    let tokens = Arc::new(app_tokens(&gh, "test-app.pem", Arc::new(SystemClock)));
    // globex's installation comes from a delivery; acme's is looked up.
    tokens.learn(&repo("globex/app"), 22);
    let client = GithubRest::with_tokens(&gh.url(), tokens.clone()).unwrap();
    let started = std::time::Instant::now();
    let mut calls = 0;
    // Three token lifetimes and more, two organisations.
    while started.elapsed() < Duration::from_secs(7) {
        for r in ["acme/app", "globex/app"] {
            client.pull_request(&repo(r), n).await.unwrap_or_else(|e| {
                panic!("call {calls} on {r}: {e}; refused: {:?}", gh.refused())
            });
            calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let lookups: Vec<String> = gh
        .requests()
        .into_iter()
        .filter(|r| r.ends_with("/installation"))
        .collect();
    assert_eq!(
        lookups,
        ["GET /repos/acme/app/installation"],
        "looked up once, learned otherwise"
    );
    // At least one new token per installation and lifetime, far fewer than calls.
    let minted = gh.minted();
    assert!(
        minted >= 6 && minted < calls,
        "{minted} tokens for {calls} calls"
    );
    let mints: Vec<String> = gh
        .requests()
        .into_iter()
        .filter(|r| r.contains("access_tokens"))
        .collect();
    assert!(
        mints
            .iter()
            .any(|r| r == "POST /app/installations/11/access_tokens"),
        "{mints:?}"
    );
    assert!(
        mints
            .iter()
            .any(|r| r == "POST /app/installations/22/access_tokens"),
        "{mints:?}"
    );
}

#[tokio::test]
async fn a_revoked_token_is_reminted_once_and_a_second_401_is_permanent() {
    let (gh, n) = app_github(Duration::from_secs(3600)).await;
    let tokens = Arc::new(app_tokens(&gh, "test-app.pem", Arc::new(SystemClock)));
    let client = GithubRest::with_tokens(&gh.url(), tokens.clone()).unwrap();
    client.pull_request(&repo("acme/app"), n).await.unwrap();
    // GitHub forgets every token (revoked, or expired earlier than it said).
    gh.revoke_tokens();
    let before = gh.requests().len();
    client.pull_request(&repo("acme/app"), n).await.unwrap();
    let after: Vec<String> = gh.requests()[before..].to_vec();
    assert_eq!(
        after,
        [
            format!("GET /repos/acme/app/pulls/{n}"),
            "POST /app/installations/11/access_tokens".to_string(),
            format!("GET /repos/acme/app/pulls/{n}"),
        ],
        "one refusal, one new token, one retry"
    );

    // A token that is refused whatever happens: asked twice, then permanent, never shown.
    let fixed = GithubRest::with_tokens(
        &gh.url(),
        Arc::new(FixedToken(deploybot_core::secret::Secret::new(
            "ghs_not_issued",
        ))),
    )
    .unwrap();
    let before = gh.requests().len();
    let e = fixed.pull_request(&repo("acme/app"), n).await.unwrap_err();
    assert_eq!(
        gh.requests().len() - before,
        2,
        "{:?}",
        &gh.requests()[before..]
    );
    assert_eq!(e.class, Class::Permanent, "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(!e.to_string().contains("ghs_not_issued"), "{e}");
}

#[tokio::test]
async fn an_expired_jwt_or_another_key_is_refused_and_a_rotated_key_file_is_used() {
    let (gh, _) = app_github(Duration::from_secs(3600)).await;
    // A clock twenty minutes behind signs a JWT that expired before GitHub sees it.
    let behind = deploybot::demo::VirtualClock::starting_at(
        SystemClock.now() - chrono::Duration::minutes(20),
    );
    let stale = app_tokens(&gh, "test-app.pem", Arc::new(behind));
    let e = stale
        .token(Scope::Repo(&repo("acme/app")))
        .await
        .unwrap_err();
    assert_eq!(e.class, Class::Permanent, "{e}");
    let m = e.to_string();
    assert!(m.contains("HTTP 401") && m.contains("github.app_id"), "{m}");
    assert!(
        !m.contains("BEGIN") && !m.contains("eyJ"),
        "no key or JWT in errors: {m}"
    );
    assert!(
        gh.refused().last().unwrap().contains("ExpiredSignature"),
        "{:?}",
        gh.refused()
    );

    // Another App's key, in a file that is then replaced by the right one (a rotated Secret).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::copy(key("other-app.pem"), &file).unwrap();
    let tokens = AppTokens::new(
        APP_ID,
        RotatingSecret::read(SecretRef::File(file.clone())).unwrap(),
        &gh.url(),
        Duration::from_secs(10),
        Arc::new(SystemClock),
    )
    .unwrap();
    let e = tokens
        .token(Scope::Repo(&repo("acme/app")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 401"), "{e}");
    assert!(
        gh.refused().last().unwrap().contains("InvalidSignature"),
        "{:?}",
        gh.refused()
    );
    std::fs::copy(key("test-app.pem"), &file).unwrap();
    let t = tokens.token(Scope::Repo(&repo("acme/app"))).await.unwrap();
    assert!(t.is_some());
}

#[tokio::test]
async fn a_rotated_token_file_is_read_again_without_a_restart() {
    let gh = FakeGithub::start_with_pr(&webhook("pull_request", "opened")).await;
    let n = gh.open_prs()[0]["number"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "ghs_first\n").unwrap();
    gh.require_token("ghs_first");
    let source = PersonalToken(RotatingSecret::read(SecretRef::File(file.clone())).unwrap());
    let client = GithubRest::with_tokens(&gh.url(), Arc::new(source)).unwrap();
    client.pull_request(&repo("acme/app"), n).await.unwrap();
    // Kubernetes replaces the mounted file; GitHub accepts only the new token.
    std::fs::write(&file, "ghs_second\n").unwrap();
    gh.require_token("ghs_second");
    client.pull_request(&repo("acme/app"), n).await.unwrap();
    // Gone for a moment mid-rotation: the value read last is still used.
    std::fs::remove_file(&file).unwrap();
    client.pull_request(&repo("acme/app"), n).await.unwrap();
}

/// A rollout as the App, spanning several token lifetimes: the approval PR is opened, approved
/// and merged through the API and every step pushed over smart HTTP, both with installation
/// tokens that live two seconds, on a GitHub Enterprise Server layout (`/api/v3`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_as_the_app_outlives_its_installation_tokens() {
    use deploybot_core::rollout::Phase;
    use deploybot_core::rollout::store::RolloutStore as _;

    use crate::support::fake_github::BareRepo;

    let gh = FakeGithub::start().await;
    let lifetime = Duration::from_secs(2);
    gh.require_app(
        APP_ID,
        &std::fs::read(key("test-app.pub.pem")).unwrap(),
        &[("acme", 11)],
        lifetime,
    );
    let state = gh.state.clone();
    let env = crate::gates::enterprise_prod(
        &gh,
        Arc::new(move |t| {
            let st = state.lock().unwrap();
            st.app
                .as_ref()
                .unwrap()
                .valid_token(t, Some("acme"))
                .is_ok()
        }),
        &format!(
            "  app_id: {APP_ID}\n  private_key_file: {}\n",
            key("test-app.pem").display()
        ),
    )
    .await;
    let (api, prod, config, store, clock) = (
        env.api.clone(),
        env.prod.clone(),
        env.config.clone(),
        env.store.clone(),
        env.clock.clone(),
    );
    // What `serve` builds from the config: one token source for the API and for git.
    let tokens =
        deploybot::adapters::github_auth::from_config(&config.github, Arc::new(SystemClock))
            .unwrap();
    let mut parts = crate::pipeline::runner_parts(&config, &store, &clock, None);
    parts.github = Some(Arc::new(
        GithubRest::with_tokens(&api, Arc::clone(&tokens)).unwrap(),
    ));
    parts.github_authenticated = config.github.authenticated();
    parts.gitops = deploybot::shell::runner::gitops_writers(
        &config,
        deploybot::adapters::github_auth::for_gitops(&config, &tokens).unwrap(),
    );
    let (pipeline, id) = env.start_production(parts).await;
    let n = gh.open_prs()[0]["number"].as_u64().unwrap();
    let head = gh.pull(n)["head"]["sha"].as_str().unwrap().to_string();

    // The tokens that opened the PR are gone by the time someone approves it.
    tokio::time::sleep(lifetime + Duration::from_millis(500)).await;
    gh.set_permission("carol", "write");
    gh.add_review(n, "carol", "APPROVED", &head);
    let github = GithubRest::with_tokens(&api, Arc::clone(&tokens)).unwrap();
    let events = deploybot::shell::events::RolloutEvents {
        config: &config,
        github: &github,
        model: None,
        pipeline: &pipeline,
    };
    events
        .on_review(&repo("acme/prod-gitops"), n, clock.now())
        .await
        .unwrap();
    assert_eq!(
        store.get(&id).unwrap().unwrap().approved_by(),
        Some("carol")
    );

    // The canary steps, pushed over a span of further token lifetimes.
    let started = std::time::Instant::now();
    for _ in 0..120 {
        pipeline.tick(clock.advance(30)).await.unwrap();
        let r = store.get(&id).unwrap().unwrap();
        if r.phase() == Phase::Complete {
            break;
        }
        assert!(!r.phase().is_terminal(), "{r:#?}");
        assert!(!matches!(r.phase(), Phase::Paused { .. }), "{r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = store.get(&id).unwrap().unwrap();
    assert_eq!(r.phase(), Phase::Complete, "{r:#?}");
    assert!(
        started.elapsed() > lifetime,
        "the steps outlived a token: {:?}",
        started.elapsed()
    );
    assert!(gh.minted() >= 3, "{} tokens", gh.minted());
    assert_eq!(
        BareRepo(prod).tip("main").unwrap(),
        r.commits.last().unwrap().sha
    );
}

/// Records what the dispatcher tells it.
#[derive(Default)]
struct Learned(std::sync::Mutex<Vec<(String, u64)>>);

impl TokenSource for Learned {
    fn token<'a>(
        &'a self,
        _: Scope<'a>,
    ) -> deploybot_core::failure::PortFuture<'a, Option<deploybot_core::secret::Secret>> {
        Box::pin(async { Ok(None) })
    }
    fn refused(&self, _: Scope<'_>, _: &deploybot_core::secret::Secret) {}
    fn learn(&self, repo: &RepoName, installation: u64) {
        self.0
            .lock()
            .unwrap()
            .push((repo.to_string(), installation));
    }
}

#[tokio::test]
async fn a_delivery_tells_which_installation_serves_its_repository() {
    use deploybot::shell::webhook::dispatch::Dispatcher;
    use deploybot::shell::webhook::worker::Processor as _;

    let gh = FakeGithub::start().await;
    let learned = Arc::new(Learned::default());
    let dir = tempfile::tempdir().unwrap();
    let dispatcher = Dispatcher::<deploybot::shell::runner::PrometheusWindows> {
        config: Arc::new(deploybot_core::config::Config::default()),
        github: Arc::new(GithubRest::new(&gh.url(), None).unwrap()),
        tokens: learned.clone(),
        model: None,
        store: deploybot::adapters::store::Store::open(&dir.path().join("db")).unwrap(),
        pipeline: None,
        clock: Arc::new(SystemClock),
    };
    // A real delivery to an App: `installation.id` beside `repository.full_name`.
    let mut payload = webhook("pull_request", "opened");
    payload["installation"]["id"] = serde_json::json!(77);
    let full_name = payload["repository"]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::to_vec(&payload).unwrap();
    let parsed = deploybot_core::webhook::event::parse("pull_request", &body).unwrap();
    let delivery = deploybot::adapters::store::StoredDelivery {
        seq: 1,
        delivery_id: "d1".into(),
        event: "pull_request".into(),
        action: Some("opened".into()),
        repository: Some(full_name.clone()),
        received_at: "2026-01-01T00:00:00Z".into(),
        payload: body,
        status: deploybot::adapters::store::DeliveryStatus::Pending,
        attempts: 0,
        detail: None,
    };
    dispatcher.process(&delivery, &parsed).await.unwrap();
    assert_eq!(*learned.0.lock().unwrap(), [(full_name, 77)]);
}

/// Refresh timing on a paused clock shared with the fake GitHub: an hour-long token is reused
/// until five minutes before it expires, then replaced, without a refused call.
#[tokio::test]
async fn an_hour_long_token_is_reused_until_five_minutes_before_it_expires() {
    let (gh, n) = app_github(Duration::from_secs(3600)).await;
    let clock = deploybot::demo::VirtualClock::starting_at(SystemClock.now());
    gh.set_app_clock(Arc::new(clock.clone()));
    let tokens = Arc::new(app_tokens(&gh, "test-app.pem", Arc::new(clock.clone())));
    let client = GithubRest::with_tokens(&gh.url(), tokens).unwrap();
    let acme = repo("acme/app");
    // (row, seconds to advance, tokens minted after the call)
    let rows = [
        ("first call", 0, 1),
        ("54 minutes in", 54 * 60, 1),
        ("55m50s in: within the margin", 110, 2),
        ("a minute later: the new one", 60, 2),
        ("past the new one's margin", 55 * 60, 3),
    ];
    for (row, advance, minted) in rows {
        clock.advance(advance);
        client
            .pull_request(&acme, n)
            .await
            .unwrap_or_else(|e| panic!("row {row:?}: {e}"));
        assert_eq!(gh.minted(), minted, "row {row:?}");
    }
    assert!(gh.refused().is_empty(), "{:?}", gh.refused());
}

#[tokio::test]
async fn calls_that_find_no_token_together_wait_for_one_mint() {
    let (gh, _) = app_github(Duration::from_secs(3600)).await;
    let tokens = app_tokens(&gh, "test-app.pem", Arc::new(SystemClock));
    tokens.learn(&repo("acme/app"), 11);
    let acme = repo("acme/app");
    let got =
        futures_util::future::join_all((0..8).map(|_| tokens.token(Scope::Repo(&acme)))).await;
    let got: Vec<String> = got
        .into_iter()
        .map(|t| t.unwrap().unwrap().expose().to_string())
        .collect();
    assert_eq!(gh.minted(), 1);
    assert!(got.iter().all(|t| *t == got[0]), "{got:?}");
}
