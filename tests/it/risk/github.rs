//! A pull_request delivery through `risk::service::assess_pull_request` against the fake GitHub:
//! exactly one comment, the right labels and status; a synchronize edits the same comment; a
//! redelivery does not ask the model again.

use deploybot::adapters::github::GithubRest;
use deploybot::adapters::llm::LlmClient;
use deploybot::adapters::store::Store;
use deploybot::adapters::store::assessments::AssessmentStore;
use deploybot::config::Config;
use deploybot::config::ModelSpec;
use deploybot::shell::assess::assess_pull_request;
use deploybot_core::github::{CommentAction, Comments, PullRequests, RepoName};
use deploybot_core::risk::comment::MARKER;
use deploybot_core::risk::model::RiskModel;
use deploybot_core::risk::{RiskTier, Strategy};
use deploybot_core::secret::Secret;
use deploybot_core::webhook::event::parse;
use deploybot_core::webhook::route::{Repos, Route, route};
use serde_json::Value;

use axum::http::Method;

use super::fake_openai::{FakeOpenAi, Reply, verdict};
use crate::support::fake_github::{FakeGithub, file, webhook};

const SECONDARY_LIMIT: &str =
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

const MIGRATION_PATCH: &str = "@@ -0,0 +1,2 @@\n+ALTER TABLE orders ADD COLUMN note text;\n+CREATE INDEX orders_note ON orders (note);";
const CODE_PATCH: &str = "@@ -1,3 +1,4 @@\n fn place() {\n+    audit();\n     save();\n }";
const README_PATCH: &str = "@@ -1 +1 @@\n-# Hello\n+# Hello, World";
const CSS_PATCH: &str = "@@ -1 +1 @@\n-a { color: red; }\n+a { color: blue; }";

/// The repositories of a config whose service `hello` is deployed from `repo`.
fn repos(repo: &str) -> Repos {
    Repos::new("deploybot[bot]").with_app(repo, "hello")
}

/// What the route makes of a `pull_request` delivery whose repository is configured, from the
/// real payload bytes.
fn route_of(bytes: &[u8]) -> Route {
    let parsed = parse("pull_request", bytes).unwrap();
    route(&parsed, &repos(parsed.repository.as_deref().unwrap()))
}

/// The assessment a delivery is routed to: repository, number and head.
fn event(payload: &Value) -> (RepoName, u64, String) {
    match route_of(&serde_json::to_vec(payload).unwrap()) {
        Route::Assess {
            repo,
            number,
            head_sha,
            ..
        } => (repo, number, head_sha),
        other => panic!("not routed to an assessment: {other:?}"),
    }
}

#[test]
fn every_real_pull_request_payload_is_read() {
    let dir = crate::support::fixtures_dir().join("github-webhooks/pull_request");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let payload: Value = serde_json::from_slice(&bytes).unwrap();
        let action = payload["action"].as_str().unwrap();
        let merged = payload["pull_request"]["merged"] == Value::Bool(true);
        let expected = matches!(
            action,
            "opened" | "synchronize" | "reopened" | "ready_for_review"
        ) || (action == "closed" && merged);
        match route_of(&bytes) {
            Route::Assess { head_sha, .. } => {
                assert!(expected, "{action} is assessed");
                assert_eq!(head_sha.len(), 40);
            }
            other => assert!(!expected, "{action} is not assessed: {other:?}"),
        }
        seen += 1;
    }
    assert!(seen >= 20);
}

fn first_push(gh: &FakeGithub, sha: &str) {
    gh.push(
        sha,
        vec![
            file(
                "db/migrate/0007_orders.sql",
                "added",
                2,
                0,
                Some(MIGRATION_PATCH),
            ),
            file("src/orders.rs", "modified", 1, 0, Some(CODE_PATCH)),
            file("README.md", "modified", 1, 1, Some(README_PATCH)),
        ],
        &["Add a note to orders", "Document it"],
    );
}

fn client(gh: &FakeGithub) -> GithubRest {
    GithubRest::new(&gh.url(), Some(&Secret::new("ghs_faketoken"))).unwrap()
}

#[tokio::test]
async fn a_pull_request_gets_one_comment_labels_and_a_status_and_synchronize_edits_it() {
    let opened = webhook("pull_request", "opened");
    let (repo, number, sha) = event(&opened);
    let gh = FakeGithub::start_with_pr(&opened).await;
    first_push(&gh, &sha);
    // Someone quotes the marker: it must not be taken for deploybot's comment.
    gh.add_foreign_comment("mallory", &format!("{MARKER} fake status, risk low"));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let config = Config::default();
    let github = client(&gh);

    let first = assess_pull_request(&config, &github, None, &store, &repo, number, &sha)
        .await
        .unwrap();
    assert!(
        matches!(first.comment, CommentAction::Created(_)),
        "{:?}",
        first.comment
    );
    assert_eq!(first.assessment.tier, RiskTier::Critical);
    assert_eq!(first.assessment.recommended_strategy, Strategy::Canary5);
    assert!(first.assessment.requires_manual_approval);
    assert!(!first.reused);

    let comments = gh.comments();
    let mine: Vec<&Value> = comments
        .iter()
        .filter(|c| c["user"]["login"] == "deploybot[bot]")
        .collect();
    assert_eq!(mine.len(), 1, "exactly one deploybot comment");
    let body = mine[0]["body"].as_str().unwrap();
    assert!(body.starts_with(MARKER));
    assert!(body.contains("**0.8"), "{body}");
    assert!(body.contains(&sha[..12]), "{body}");
    assert!(body.contains("db/migrate/0007_orders.sql"), "{body}");
    assert!(
        body.contains(&format!("deploybot assess --repo {repo} --pr {number}")),
        "{body}"
    );
    assert_eq!(
        comments
            .iter()
            .find(|c| c["user"]["login"] == "mallory")
            .unwrap()["body"]
            .as_str()
            .unwrap(),
        format!("{MARKER} fake status, risk low")
    );
    // The fixture's own `bug` label stays; ours are added (and were created first).
    assert_eq!(gh.pr_labels(), ["bug", "needs-approval", "risk/critical"]);
    {
        let st = gh.state.lock().unwrap();
        // Created by deploybot with its colour, not on the fly by GitHub (default `ededed`).
        assert_ne!(st.repo_labels["risk/critical"]["color"], "ededed");
        assert_eq!(st.statuses.len(), 1);
        assert_eq!(st.statuses[0].0, sha);
        assert_eq!(st.statuses[0].1["context"], "deploybot/risk");
        assert_eq!(st.statuses[0].1["state"], "success");
        assert!(
            st.statuses[0].1["description"]
                .as_str()
                .unwrap()
                .contains("needs approval")
        );
        assert!(
            st.authorization.iter().all(|a| a == "Bearer ghs_faketoken"),
            "{:?}",
            st.authorization
        );
    }
    assert_eq!(
        store.latest(&repo.to_string(), number).unwrap().unwrap().0,
        sha
    );

    // synchronize: a new head that only restyles.
    let sync = webhook("pull_request", "synchronize");
    // Routed to an assessment (`event` panics otherwise).
    event(&sync);
    let new_sha = "0123456789abcdef0123456789abcdef01234567";
    gh.push(
        new_sha,
        vec![file("web/site.css", "modified", 1, 1, Some(CSS_PATCH))],
        &["Restyle"],
    );
    let second = assess_pull_request(&config, &github, None, &store, &repo, number, new_sha)
        .await
        .unwrap();
    assert_eq!(second.comment, CommentAction::Updated(first.comment.id()));
    assert_eq!(second.assessment.tier, RiskTier::Low);
    let comments = gh.comments();
    let mine: Vec<&Value> = comments
        .iter()
        .filter(|c| c["user"]["login"] == "deploybot[bot]")
        .collect();
    assert_eq!(mine.len(), 1, "the same comment was edited");
    assert!(mine[0]["body"].as_str().unwrap().contains("0123456789ab"));
    assert_eq!(
        gh.pr_labels(),
        ["bug", "risk/low"],
        "stale risk label and needs-approval removed"
    );
    let writes = gh.writes();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.ends_with("/issues/2/comments"))
            .count(),
        1,
        "{writes:?}"
    );
    let st = gh.state.lock().unwrap();
    assert_eq!(st.statuses.last().unwrap().0, new_sha);
}

#[tokio::test]
async fn a_redelivery_for_the_same_head_does_not_ask_the_model_again() {
    let opened = webhook("pull_request", "opened");
    let (repo, number, sha) = event(&opened);
    let gh = FakeGithub::start_with_pr(&opened).await;
    first_push(&gh, &sha);
    let model_server = FakeOpenAi::start(vec![]).await;
    model_server.always(Reply::Content(verdict(
        0.9,
        "canary_5",
        true,
        &["schema change under load"],
        "Migration plus code.",
    )));
    let llm = LlmClient::new(
        &ModelSpec::new(model_server.base_url().parse().unwrap(), "fake-model"),
        None,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let config = Config::default();
    let github = client(&gh);
    let model = Some(&llm as &dyn RiskModel);

    let a = assess_pull_request(&config, &github, model, &store, &repo, number, &sha)
        .await
        .unwrap();
    assert_eq!(a.assessment.risk_score, 0.9);
    assert!(!a.reused);
    let b = assess_pull_request(&config, &github, model, &store, &repo, number, &sha)
        .await
        .unwrap();
    assert!(b.reused);
    assert_eq!(b.assessment, a.assessment);
    assert_eq!(b.comment, CommentAction::Unchanged(a.comment.id()));
    assert_eq!(model_server.seen().len(), 1, "the model was asked once");
    let body = gh.comments().last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(body.contains("| llm | model |"), "{body}");
    assert!(body.contains("Model: fake-model"), "{body}");
    assert!(
        body.contains(deploybot_core::risk::prompt::prompt_version()),
        "{body}"
    );
}

#[tokio::test]
async fn github_errors_say_what_was_happening() {
    let opened = webhook("pull_request", "opened");
    let gh = FakeGithub::start_with_pr(&opened).await;
    let github = client(&gh);
    let repo: RepoName = "Codertocat/Hello-World".parse().unwrap();
    // The fake has no route for issue 99's comments via PATCH on a missing id.
    let e = github.update_comment(&repo, 424242, "x").await.unwrap_err();
    assert!(e.cause.starts_with("HTTP 404"), "{e}");
    assert!(
        e.to_string()
            .starts_with("editing comment 424242 in Codertocat/Hello-World"),
        "{e}"
    );
    assert!(!e.is_transient());
    let down = GithubRest::new("http://127.0.0.1:1", None).unwrap();
    let e = down.pull_request(&repo, 2).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("reading pull request Codertocat/Hello-World#2"),
        "{e}"
    );
    assert!(e.is_transient());
}

#[tokio::test]
async fn files_are_read_across_pages_and_truncated_patches_count() {
    let opened = webhook("pull_request", "opened");
    let gh = FakeGithub::start_with_pr(&opened).await;
    let mut files: Vec<Value> = (0..5)
        .map(|i| {
            file(
                &format!("docs/p{i}.md"),
                "added",
                1,
                0,
                Some("@@ -0,0 +1 @@\n+x"),
            )
        })
        .collect();
    files.push(file("src/huge.rs", "modified", 40_000, 100, None));
    gh.push("abc", files, &["m"]);
    let github = client(&gh);
    let repo: RepoName = "Codertocat/Hello-World".parse().unwrap();
    let (_, change) = deploybot::shell::assess::load_pull(&github, &repo, 2)
        .await
        .unwrap();
    assert_eq!(change.files.len(), 6, "three pages of two");
    assert_eq!(change.truncated_patches, 1);
    let a = deploybot_core::risk::Policy::default()
        .assess(&change, &deploybot_core::risk::Thresholds::default());
    assert!(
        a.risk_factors
            .iter()
            .any(|f| f.category == deploybot_core::risk::FactorKind::UnknownContent)
    );
}

#[tokio::test]
async fn secondary_rate_limits_are_waited_out_within_bounds() {
    let opened = webhook("pull_request", "opened");
    let (repo, number, sha) = event(&opened);
    let gh = FakeGithub::start_with_pr(&opened).await;
    first_push(&gh, &sha);
    gh.fail_next(Method::POST, "/comments", 403, SECONDARY_LIMIT, Some(1));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let github = client(&gh);
    let start = std::time::Instant::now();
    let done = assess_pull_request(
        &Config::default(),
        &github,
        None,
        &store,
        &repo,
        number,
        &sha,
    )
    .await
    .unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(950));
    assert!(matches!(done.comment, CommentAction::Created(_)));
    assert_eq!(gh.comments().len(), 1, "created once, after the wait");

    // A wait beyond the bound is not slept through: the error goes to the caller as transient.
    gh.fail_next(Method::POST, "/comments", 403, SECONDARY_LIMIT, Some(3600));
    let e = github.create_comment(&repo, number, "x").await.unwrap_err();
    assert!(e.cause.starts_with("HTTP 403"), "{e}");
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains("secondary rate limit"), "{e}");
}

/// The whole path a GitHub delivery takes: signed `pull_request` deliveries into the real intake,
/// the durable queue, the worker and the production `Dispatcher`, out to the fake GitHub. One
/// comment after `opened`; the same comment edited after `synchronize`.
#[tokio::test]
async fn webhook_deliveries_through_the_intake_and_worker_comment_once_and_edit_on_synchronize() {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use deploybot::adapters::store::DeliveryQueue;
    use deploybot::shell::metrics::Metrics;
    use deploybot::shell::webhook::dispatch::Dispatcher;
    use deploybot::shell::webhook::intake::{Intake, router};
    use deploybot::shell::webhook::worker;
    use deploybot_core::webhook::signature::sign;
    use tokio::sync::{Notify, watch};
    use tower::ServiceExt;

    let opened = webhook("pull_request", "opened");
    let (repo, _number, sha) = event(&opened);
    let gh = FakeGithub::start_with_pr(&opened).await;
    first_push(&gh, &sha);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let config = Arc::new(
        deploybot::config::from_yaml(
            &format!("services:\n  - {{name: hello, app_repo: {repo}}}\n"),
            std::path::Path::new("t.yaml"),
        )
        .unwrap(),
    );
    let app = router(Arc::new(Intake::new(
        Arc::clone(&config),
        Secret::new("s"),
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::new(Notify::new()),
        Arc::new(deploybot::shell::driver::SystemClock),
    )));
    let dispatcher = Arc::new(Dispatcher::<deploybot::shell::runner::PrometheusWindows> {
        config,
        github: Arc::new(client(&gh)),
        tokens: Arc::new(deploybot::adapters::github_auth::Unauthenticated),
        model: None,
        store: store.clone(),
        pipeline: None,
        clock: Arc::new(deploybot::shell::driver::SystemClock),
    });
    let deliver = |id: &str, payload: &Value| {
        let body = serde_json::to_vec(payload).unwrap();
        Request::post("/webhook")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sign(b"s", &body))
            .body(Body::from(body))
            .unwrap()
    };
    let drain = || async {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(worker::run(
            store.clone(),
            Arc::clone(&dispatcher),
            worker::Parts::standalone(worker::Settings::default()),
            rx,
        ));
        for _ in 0..500 {
            if store.pending_count().unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(true).unwrap();
        task.await.unwrap();
    };
    let mine = |gh: &FakeGithub| -> Vec<Value> {
        gh.comments()
            .into_iter()
            .filter(|c| c["user"]["login"] == "deploybot[bot]")
            .collect()
    };

    let resp = app
        .clone()
        .oneshot(deliver("d-opened", &opened))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    drain().await;
    let d = store.delivery("d-opened").unwrap().unwrap();
    assert_eq!(
        d.status,
        deploybot::adapters::store::DeliveryStatus::Done,
        "{:?}",
        d.detail
    );
    assert!(d.detail.unwrap().contains("score"));
    assert_eq!(mine(&gh).len(), 1);
    assert!(gh.pr_labels().contains(&"risk/critical".to_string()));

    let new_sha = "1111111111111111111111111111111111111111";
    gh.push(
        new_sha,
        vec![file("static/site.css", "modified", 1, 1, Some(CSS_PATCH))],
        &["Restyle"],
    );
    let mut sync = webhook("pull_request", "synchronize");
    sync["pull_request"]["head"]["sha"] = Value::String(new_sha.into());
    let resp = app.clone().oneshot(deliver("d-sync", &sync)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    drain().await;
    let comments = mine(&gh);
    assert_eq!(
        comments.len(),
        1,
        "the status comment is edited, not repeated"
    );
    assert!(
        comments[0]["body"]
            .as_str()
            .unwrap()
            .contains(&new_sha[..12])
    );
    assert!(!gh.pr_labels().contains(&"risk/critical".to_string()));
}

/// The fixture's opened pull request on the fake GitHub with its first push (a migration, code,
/// the README), and an empty store: repository, number, head, the fake, the store's folder.
async fn opened_with_first_push() -> (RepoName, u64, String, FakeGithub, tempfile::TempDir, Store) {
    let opened = webhook("pull_request", "opened");
    let (repo, number, sha) = event(&opened);
    let gh = FakeGithub::start_with_pr(&opened).await;
    first_push(&gh, &sha);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    (repo, number, sha, gh, dir, store)
}

/// `risk.status_until_approved: pending`: a pull request the risk sends to a human keeps
/// `deploybot/risk` pending until someone with write access (not its author) approves its
/// head; the review's delivery, through the real route and dispatch, turns it green. Without
/// the key the status is `success` at once (the first test).
#[tokio::test]
async fn the_risk_status_waits_for_an_approval_when_configured_to() {
    use deploybot::shell::webhook::dispatch::Dispatcher;
    use deploybot::shell::webhook::worker::{Processed, Processor};
    use std::sync::Arc;

    let (repo, number, sha, gh, _dir, store) = opened_with_first_push().await;
    let config = deploybot::config::from_yaml(
        "risk:\n  status_until_approved: pending\nservices:\n  - name: hello\n    \
         app_repo: Codertocat/Hello-World\n",
        std::path::Path::new("deploybot.yaml"),
    )
    .unwrap();
    let statuses = |gh: &FakeGithub| -> Vec<(String, String)> {
        gh.state
            .lock()
            .unwrap()
            .statuses
            .iter()
            .map(|(_, s)| {
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["description"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let github = client(&gh);
    let first = assess_pull_request(&config, &github, None, &store, &repo, number, &sha)
        .await
        .unwrap();
    assert!(first.assessment.requires_manual_approval);
    let last = statuses(&gh).pop().unwrap();
    assert_eq!(last.0, "pending", "{last:?}");
    assert!(last.1.contains("needs approval"), "{last:?}");

    let dispatcher: Dispatcher = Dispatcher {
        config: Arc::new(config),
        github: Arc::new(client(&gh)),
        tokens: Arc::new(deploybot::adapters::github_auth::FixedToken(Secret::new(
            "ghs_faketoken",
        ))),
        model: None,
        store: store.clone(),
        pipeline: None,
        clock: Arc::new(deploybot::adapters::clock::SystemClock),
    };
    let mut review = webhook("pull_request_review", "submitted");
    let deliver = |review: Value| {
        let bytes = serde_json::to_vec(&review).unwrap();
        let parsed = parse("pull_request_review", &bytes).unwrap();
        let delivery = deploybot::adapters::store::StoredDelivery {
            seq: 1,
            delivery_id: "d-1".into(),
            event: "pull_request_review".into(),
            action: Some("submitted".into()),
            repository: Some(repo.to_string()),
            received_at: "2026-12-02T09:00:00Z".into(),
            payload: bytes,
            status: deploybot::adapters::store::DeliveryStatus::Pending,
            attempts: 0,
            detail: None,
        };
        (delivery, parsed)
    };
    // The author approving their own change does not count.
    gh.add_review(number, "Codertocat", "APPROVED", &sha);
    gh.set_permission("Codertocat", "admin");
    let (delivery, parsed) = deliver(review.clone());
    let done = dispatcher.process(&delivery, &parsed).await.unwrap();
    assert!(
        matches!(&done, Processed::Done(n) if n.contains("published again")),
        "{done:?}"
    );
    assert_eq!(statuses(&gh).pop().unwrap().0, "pending");

    // A writer's approval of the head does.
    gh.add_review(number, "hubot", "APPROVED", &sha);
    gh.set_permission("hubot", "write");
    review["review"]["user"]["login"] = "hubot".into();
    let (delivery, parsed) = deliver(review);
    dispatcher.process(&delivery, &parsed).await.unwrap();
    let last = statuses(&gh).pop().unwrap();
    assert_eq!(last.0, "success", "{last:?}");
    assert!(last.1.ends_with("approved"), "{last:?}");
}

/// A monorepo: two services share the application repository, each owning its paths. The PR
/// comment names the service the change releases, each service is assessed on its own files
/// (the web service's stylesheet is low risk although the PR as a whole carries a migration),
/// and a change touching neither says that merging it releases nothing.
#[tokio::test]
async fn a_monorepo_pr_names_the_services_it_releases_each_on_its_own_risk() {
    use deploybot::shell::assess::assess_service;
    let (repo, number, sha, gh, _dir, store) = opened_with_first_push().await;
    let config = deploybot::config::from_yaml(
        "services:\n  - name: orders\n    app_repo: Codertocat/Hello-World\n    \
         paths: ['db/**', 'src/orders.rs']\n  - name: web\n    app_repo: Codertocat/Hello-World\n    \
         paths: ['web/**', 'README.md']\n  - name: billing\n    app_repo: Codertocat/Hello-World\n    \
         paths: ['billing/**']\n",
        std::path::Path::new("deploybot.yaml"),
    )
    .unwrap();
    let github = client(&gh);
    let done = assess_pull_request(&config, &github, None, &store, &repo, number, &sha)
        .await
        .unwrap();
    let body = |gh: &FakeGithub| {
        gh.comments()
            .iter()
            .find(|c| c["user"]["login"] == "deploybot[bot]")
            .unwrap()["body"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        body(&gh).contains("| Services | `orders`, `web` (released when merged) |"),
        "{}",
        body(&gh)
    );
    let service = |name: &str| config.services.iter().find(|s| s.name == name).unwrap();
    let orders = assess_service(
        &config,
        None,
        service("orders"),
        &done.change,
        &done.assessment,
    )
    .await;
    let web = assess_service(
        &config,
        None,
        service("web"),
        &done.change,
        &done.assessment,
    )
    .await;
    assert_eq!(orders.tier, RiskTier::Critical, "{orders:?}");
    assert!(web.risk_score < orders.risk_score, "{web:?}");
    assert!(!web.requires_manual_approval, "{web:?}");

    // A new head that touches no service's paths.
    let other = "0123456789abcdef0123456789abcdef01234567";
    gh.push(
        other,
        vec![file("docs/guide.md", "modified", 1, 1, Some(README_PATCH))],
        &["Docs"],
    );
    assess_pull_request(&config, &github, None, &store, &repo, number, other)
        .await
        .unwrap();
    assert!(
        body(&gh).contains("| Services | none: this change touches none of the paths of `orders`, `web`, `billing`, so merging it releases nothing |"),
        "{}",
        body(&gh)
    );
}
