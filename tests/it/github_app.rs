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

const APP_ID: u64 = 4242;

fn key(name: &str) -> std::path::PathBuf {
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

fn app_tokens(
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
    gh.state
        .lock()
        .unwrap()
        .app
        .as_mut()
        .unwrap()
        .tokens
        .clear();
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
