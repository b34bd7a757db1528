//! Gates that hold (issue 15): each test is one way around a gate that today's code left open,
//! driven through the pipeline and the production runner over a real GitOps repository (the
//! demo's layout), the fake GitHub backed by that repository, and a virtual clock. Races are
//! driven deterministically: a runner that stops after an effect until the test lets it go, and
//! the fake GitHub changing the world right after one of deploybot's calls.

use std::sync::Arc;

use serde_json::json;

use deploybot::adapters::store::Store;
use deploybot::shell::driver::Clock;
use deploybot::shell::pipeline::Pipeline;
use deploybot_core::rollout::Phase;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::webhook::route::{Route, route};

use crate::pipeline::{CANARY, release};
use crate::support::fake_github::{BareRepo, FakeGithub, webhook};

/// Hole 4: an environment with its own GitOps repository, on GitHub Enterprise Server (the API
/// under `/api/v3`, git over HTTP on the same host): its webhooks are routed, its approval PR is
/// opened and merged there.
#[tokio::test]
async fn approval_prs_work_in_an_environment_repository_on_github_enterprise() {
    let gh = FakeGithub::start().await;
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
    let git = crate::support::git_http::GitHttp::start(served, "prod-t0ken").await;
    gh.back_with_git(BareRepo(prod.clone()));
    let api = format!("{}/api/v3", gh.url());
    let text = ws
        .config_text()
        .replace(
            "store:\n",
            &format!("github:\n  api_url: {api}\n  token_env: GHES_TEST_TOKEN\n\nstore:\n"),
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
    let mut parts = crate::pipeline::runner_parts(&config, &store, &clock, Some(&api));
    parts.gitops = deploybot::shell::runner::gitops_writers(
        &config,
        Some(deploybot_core::secret::Secret::new("prod-t0ken")),
    );
    let pipeline = Pipeline::new(
        config.clone(),
        store.clone(),
        deploybot::shell::runner::LiveRunner::new(parts),
    );
    let id = pipeline
        .start(
            &release("2.0.0"),
            CANARY,
            Some("production"),
            "t",
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&id).unwrap().unwrap().phase(),
        Phase::AwaitingApproval
    );
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
