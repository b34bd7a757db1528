//! The webhook intake through the real router: real GitHub payloads, signatures, the durable
//! queue, de-duplication, limits, and crash recovery.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::store::{DeliveryQueue, DeliveryStatus, Store, StoredDelivery};
use deploybot::config::Config;
use deploybot::shell::metrics::Metrics;
use deploybot::shell::webhook::intake::{Intake, metrics_router, probes, router};
use deploybot::shell::webhook::worker::{self, Processed, Processor};
use deploybot_core::failure::Failure;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::event::{Event, Parsed};
use deploybot_core::webhook::signature::sign;
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::support::fixtures_dir;

const SECRET: &str = "test-secret-0123456789";

/// A config that knows every repository named in the fixture payloads.
fn config() -> Config {
    deploybot::config::from_yaml(
        "gitops:\n  repo_url: file:///tmp/none\nservices:\n\
         \x20 - {name: hello, app_repo: Codertocat/Hello-World}\n\
         \x20 - {name: octo, app_repo: octo-org/octo-repo}\n\
         \x20 - {name: npm, app_repo: Codertocat/hello-world-npm}\n\
         \x20 - {name: ping, app_repo: Octocoders/Hello-World}\n",
        Path::new("test.yaml"),
    )
    .unwrap()
}

struct App {
    /// The webhook listener's routes.
    router: axum::Router,
    /// The admin listener's `/metrics` and probes.
    admin: axum::Router,
    store: Store,
    _dir: tempfile::TempDir,
}

fn app_with(config: Config) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let intake = Arc::new(Intake::new(
        Arc::new(config),
        Secret::new(SECRET),
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::new(Notify::new()),
        Arc::new(SystemClock),
    ));
    App {
        router: router(Arc::clone(&intake)),
        admin: metrics_router(Arc::clone(&intake)).merge(probes(intake)),
        store,
        _dir: dir,
    }
}

fn request(event: &str, id: &str, body: Vec<u8>, signature: Option<String>) -> Request<Body> {
    let mut r = Request::post("/webhook")
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id);
    if let Some(s) = signature {
        r = r.header("x-hub-signature-256", s);
    }
    r.body(Body::from(body)).unwrap()
}

fn signed(event: &str, id: &str, body: &[u8]) -> Request<Body> {
    request(
        event,
        id,
        body.to_vec(),
        Some(sign(SECRET.as_bytes(), body)),
    )
}

async fn send(app: &App, req: Request<Body>) -> (StatusCode, String) {
    call(&app.router, req).await
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Every fixture: (event, file name, payload).
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let root = fixtures_dir().join("github-webhooks");
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let event = dir.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            out.push((event.clone(), name, std::fs::read(&f).unwrap()));
        }
    }
    out.sort();
    assert!(
        out.len() >= 70,
        "expected the full fixture set, found {}",
        out.len()
    );
    out
}

/// The variant a fixture must parse into, from its event and action alone.
fn expected_kind(event: &str, action: Option<&str>) -> &'static str {
    match (event, action) {
        ("ping", _) => "ping",
        (
            "pull_request",
            Some(
                "opened" | "synchronize" | "reopened" | "ready_for_review" | "closed" | "labeled"
                | "unlabeled",
            ),
        ) => "pull_request",
        ("issue_comment", Some("created")) => "issue_comment",
        ("pull_request_review", Some("submitted" | "dismissed")) => "pull_request_review",
        ("workflow_run", Some("completed")) => "workflow_run",
        ("registry_package" | "package", Some("published")) => "package",
        ("check_suite", Some("completed")) => "check_suite",
        _ => "ignored",
    }
}

/// Whether the intake queues a fixture under [`config`] (every fixture repository is a service's
/// app repository, no GitOps repository): what its route does not ignore. Stated from the
/// payload alone, apart from the route (`webhook::route`'s table tests the reasons).
fn expected_queued(event: &str, payload: &serde_json::Value) -> bool {
    let action = payload["action"].as_str();
    let bot = |user: &serde_json::Value| {
        user["type"] == "Bot" || user["login"].as_str().is_some_and(|l| l.ends_with("[bot]"))
    };
    match expected_kind(event, action) {
        "ping" => true,
        "pull_request" => {
            matches!(
                action,
                Some("opened" | "synchronize" | "reopened" | "ready_for_review")
            ) || (action == Some("closed") && payload["pull_request"]["merged"] == true)
        }
        "issue_comment" => {
            !payload["issue"]["pull_request"].is_null() && !bot(&payload["comment"]["user"])
        }
        "pull_request_review" => !bot(&payload["review"]["user"]),
        "workflow_run" | "package" | "check_suite" => true,
        _ => false,
    }
}

#[tokio::test]
async fn every_real_payload_parses_into_its_variant_and_is_stored() {
    let app = app_with(config());
    let mut acted = 0;
    for (i, (event, name, body)) in fixtures().into_iter().enumerate() {
        let payload = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        let action = payload["action"].as_str().map(str::to_string);
        let parsed = deploybot_core::webhook::event::parse(&event, &body)
            .unwrap_or_else(|e| panic!("{event}/{name}: {e}"));
        assert_eq!(
            parsed.event.kind(),
            expected_kind(&event, action.as_deref()),
            "{event}/{name}"
        );
        let id = format!("fixture-{i}");
        let (status, text) = send(&app, signed(&event, &id, &body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{event}/{name}: {text}");
        let stored = app.store.delivery(&id).unwrap().expect("stored before 202");
        assert_eq!(
            stored.payload, body,
            "{event}/{name}: raw payload kept byte for byte"
        );
        assert_eq!(stored.event, event);
        assert_eq!(stored.action, action);
        let expect_pending = expected_queued(&event, &payload);
        let want = if expect_pending {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Ignored
        };
        assert_eq!(stored.status, want, "{event}/{name}: {text}");
        if !expect_pending {
            // The reason is recorded with the delivery and given to the sender.
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                answer["reason"].as_str(),
                stored.detail.as_deref(),
                "{event}/{name}"
            );
            assert!(
                stored.detail.is_some(),
                "{event}/{name}: an ignored delivery says why"
            );
        }
        acted += usize::from(expect_pending);
    }
    // The ping, PR, review, check and package fixtures; not the labels, unmerged closes and
    // comments on issues, which the route ignores at the door.
    assert!(
        acted >= 20,
        "most fixtures of the events deploybot acts on are queued ({acted})"
    );
}

#[tokio::test]
async fn specific_fields_are_read_from_real_payloads() {
    let body =
        std::fs::read(fixtures_dir().join("github-webhooks/pull_request/closed.payload.json"))
            .unwrap();
    let p = deploybot_core::webhook::event::parse("pull_request", &body).unwrap();
    assert_eq!(p.repository.as_deref(), Some("Codertocat/Hello-World"));
    match p.event {
        Event::PullRequest {
            action,
            pull_request,
        } => {
            assert_eq!(
                action,
                deploybot_core::webhook::event::PullRequestAction::Closed { merged: false }
            );
            assert_eq!(pull_request.number, 2);
            assert_eq!(pull_request.head.sha.len(), 40);
        }
        other => panic!("{other:?}"),
    }
    let body =
        std::fs::read(fixtures_dir().join("github-webhooks/pull_request/labeled.payload.json"))
            .unwrap();
    let p = deploybot_core::webhook::event::parse("pull_request", &body).unwrap();
    assert!(matches!(
        p.event,
        Event::PullRequest { action: deploybot_core::webhook::event::PullRequestAction::Labeled { ref label }, .. } if !label.is_empty()
    ));
}

#[tokio::test]
async fn unsigned_and_mis_signed_real_payloads_get_401_and_store_nothing() {
    let app = app_with(config());
    for (i, (event, name, body)) in fixtures().into_iter().enumerate() {
        let unsigned = request(&event, &format!("u{i}"), body.clone(), None);
        assert_eq!(
            send(&app, unsigned).await.0,
            StatusCode::UNAUTHORIZED,
            "{event}/{name}"
        );
        let wrong = Some(sign(b"another secret", &body));
        let mis = request(&event, &format!("m{i}"), body.clone(), wrong);
        assert_eq!(
            send(&app, mis).await.0,
            StatusCode::UNAUTHORIZED,
            "{event}/{name}"
        );
        let sha1 = Some("sha1=0123456789abcdef0123456789abcdef01234567".to_string());
        let old = request(&event, &format!("s{i}"), body, sha1);
        assert_eq!(
            send(&app, old).await.0,
            StatusCode::UNAUTHORIZED,
            "{event}/{name}"
        );
    }
    assert_eq!(app.store.pending_count().unwrap(), 0);
    assert_eq!(
        app.store.count_by_status(DeliveryStatus::Ignored).unwrap(),
        0
    );
}

#[tokio::test]
async fn a_redelivery_is_answered_200_and_stored_once() {
    let app = app_with(config());
    let body =
        std::fs::read(fixtures_dir().join("github-webhooks/pull_request/opened.payload.json"))
            .unwrap();
    let (s1, _) = send(&app, signed("pull_request", "abc-1", &body)).await;
    let (s2, t2) = send(&app, signed("pull_request", "abc-1", &body)).await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    assert_eq!(s2, StatusCode::OK);
    assert!(t2.contains("duplicate"), "{t2}");
    assert_eq!(app.store.pending_count().unwrap(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_reason_and_stores_nothing() {
    let mut cfg = config();
    cfg.server.max_body_bytes = 1024;
    let app = app_with(cfg);
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            signed("pull_request", "a1", b"{not json"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            signed("pull_request", "a2", br#"{"action":"opened"}"#),
            StatusCode::BAD_REQUEST,
            "pull_request",
        ),
        (
            signed("pull_request", "a3", b"[1,2]"),
            StatusCode::BAD_REQUEST,
            "object",
        ),
        (
            {
                let b = br#"{"zen":"x"}"#;
                let mut r = signed("ping", "a4", b);
                r.headers_mut().remove("x-github-event");
                r
            },
            StatusCode::BAD_REQUEST,
            "X-GitHub-Event",
        ),
        (
            {
                let b = br#"{"zen":"x"}"#;
                let mut r = signed("ping", "a5", b);
                r.headers_mut().remove("x-github-delivery");
                r
            },
            StatusCode::BAD_REQUEST,
            "X-GitHub-Delivery",
        ),
        (
            signed("ping", "a6", &vec![b' '; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
    ];
    for (req, want, reason) in cases {
        let (status, text) = send(&app, req).await;
        assert_eq!(status, want, "{text}");
        assert!(text.contains(reason), "{reason:?} not in {text}");
    }
    // A body over the cap with no Content-Length (chunked) is cut while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b' '; 64])).collect();
    let req = Request::post("/webhook")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "a7")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.store.pending_count().unwrap(), 0);
}

#[tokio::test]
async fn unconfigured_repositories_are_recorded_and_ignored() {
    let app = app_with(Config::default());
    let body =
        std::fs::read(fixtures_dir().join("github-webhooks/pull_request/opened.payload.json"))
            .unwrap();
    let (status, text) = send(&app, signed("pull_request", "r1", &body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(text.contains("not configured"), "{text}");
    let d = app.store.delivery("r1").unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Ignored);
    assert_eq!(app.store.pending_count().unwrap(), 0);
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// Issue 15.9: the webhook listener serves the webhook and health only; `/metrics` is the admin
/// listener's (and so are the status page and `/api/rollouts`, see `cli.rs`).
#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = app_with(config());
    for path in ["/healthz", "/readyz"] {
        assert_eq!(send(&app, get(path)).await.0, StatusCode::OK, "{path}");
        assert_eq!(
            call(&app.admin, get(path)).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in ["/metrics", "/api/rollouts", "/"] {
        assert_eq!(
            send(&app, get(path)).await.0,
            StatusCode::NOT_FOUND,
            "{path} is not served to the webhook's clients"
        );
    }
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    send(&app, signed("ping", "p1", body)).await;
    send(&app, request("ping", "p2", body.to_vec(), None)).await;
    let (status, text) = call(&app.admin, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("deploybot_webhook_deliveries_total{event=\"ping\",outcome=\"queued\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "deploybot_webhook_deliveries_total{event=\"unverified\",outcome=\"unauthorized\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("deploybot_webhook_signature_failures_total 1"),
        "{text}"
    );
    assert!(text.contains("deploybot_queue_depth 1"), "{text}");
}

/// The series of a `/metrics` page, without their values.
fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_string()))
        .collect()
}

/// Issue 17.4: 10,000 requests with random event names (unsigned, mis-signed and signed) leave
/// `/metrics` with the same series as the first few did: no header becomes a label value.
#[tokio::test]
async fn random_event_names_never_grow_the_metrics() {
    use rand::Rng as _;
    let app = app_with(config());
    let body = br#"{"zen":"z","hook_id":1}"#;
    let random_name = |rng: &mut rand::rngs::ThreadRng| -> String {
        let len = rng.random_range(1..24);
        (0..len)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    };
    let wave = |from: usize, to: usize| {
        let mut rng = rand::rng();
        let reqs: Vec<Request<Body>> = (from..to)
            .map(|i| {
                let event = random_name(&mut rng);
                let id = format!("r-{i}");
                match i % 10 {
                    0 => signed(&event, &id, body),
                    1..=4 => request(&event, &id, body.to_vec(), Some(sign(b"nope", body))),
                    _ => request(&event, &id, body.to_vec(), None),
                }
            })
            .collect();
        let app = &app;
        async move {
            futures_util::future::join_all(reqs.into_iter().map(|r| send(app, r))).await;
        }
    };
    wave(0, 100).await;
    let before = call(&app.admin, get("/metrics")).await.1;
    for chunk in (100..10_000).step_by(500) {
        wave(chunk, chunk + 500).await;
    }
    let after = call(&app.admin, get("/metrics")).await.1;
    assert_eq!(series(&before), series(&after), "{after}");
    // Counts grew, names did not: the page's size moves by a few digits only.
    assert!(
        after.len() < before.len() + 200,
        "{} -> {}",
        before.len(),
        after.len()
    );
}

/// Counts how often each delivery was processed.
#[derive(Default)]
struct Counting {
    seen: std::sync::Mutex<Vec<String>>,
    calls: AtomicUsize,
}

impl Processor for Counting {
    async fn process(&self, d: &StoredDelivery, _p: &Parsed) -> Result<Processed, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(d.delivery_id.clone());
        Ok(Processed::Done("counted".into()))
    }
}

async fn drain(store: &Store, processor: Arc<Counting>) {
    let (tx, rx) = watch::channel(false);
    let s = store.clone();
    let task = tokio::spawn(worker::run(
        s,
        processor,
        worker::Parts::standalone(worker::Settings::default()),
        rx,
    ));
    for _ in 0..200 {
        if store.pending_count().unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_crash_after_the_202_loses_nothing_and_processes_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let body =
        std::fs::read(fixtures_dir().join("github-webhooks/pull_request/synchronize.payload.json"))
            .unwrap();
    {
        // First life: the intake answers 202, then the process dies before any worker ran.
        let store = Store::open(&db).unwrap();
        let router = router(Arc::new(Intake::new(
            Arc::new(config()),
            Secret::new(SECRET),
            store.clone(),
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
            Arc::new(SystemClock),
        )));
        for id in ["c1", "c2"] {
            let resp = router
                .clone()
                .oneshot(signed("pull_request", id, &body))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
        }
    }
    // Second life: the worker picks both up, in order.
    let store = Store::open(&db).unwrap();
    let counting = Arc::new(Counting::default());
    drain(&store, Arc::clone(&counting)).await;
    assert_eq!(*counting.seen.lock().unwrap(), ["c1", "c2"]);
    // Third life: nothing is processed again.
    let store = Store::open(&db).unwrap();
    let again = Arc::new(Counting::default());
    drain(&store, Arc::clone(&again)).await;
    assert_eq!(again.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        store.delivery("c1").unwrap().unwrap().status,
        DeliveryStatus::Done
    );
}

/// Fails transiently a fixed number of times, then panics on a marked delivery.
struct Flaky {
    failures_left: AtomicUsize,
}

impl Processor for Flaky {
    async fn process(&self, d: &StoredDelivery, _p: &Parsed) -> Result<Processed, Failure> {
        if d.delivery_id == "boom" {
            panic!("processor bug");
        }
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(Failure::transient("asking the peer", "timed out"));
        }
        Ok(Processed::Done("ok".into()))
    }
}

#[tokio::test]
async fn transient_failures_retry_and_a_panic_fails_one_delivery_only() {
    let app = app_with(config());
    let body = br#"{"zen":"z","hook_id":1}"#;
    send(&app, signed("ping", "boom", body)).await;
    send(&app, signed("ping", "fine", body)).await;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(worker::run(
        app.store.clone(),
        Arc::new(Flaky {
            failures_left: AtomicUsize::new(2),
        }),
        worker::Parts::standalone(worker::Settings {
            retry: RetryPolicy::doubling(5, Duration::from_millis(5), Duration::from_millis(20)),
            ..worker::Settings::default()
        }),
        rx,
    ));
    for _ in 0..300 {
        if app.store.pending_count().unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    let boom = app.store.delivery("boom").unwrap().unwrap();
    assert_eq!(boom.status, DeliveryStatus::Failed);
    assert!(boom.detail.unwrap().contains("panicked"));
    let fine = app.store.delivery("fine").unwrap().unwrap();
    assert_eq!(fine.status, DeliveryStatus::Done);
    assert_eq!(fine.attempts, 3, "two transient failures, then success");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Arbitrary bodies and headers never panic and never produce a 5xx.
    #[test]
    fn arbitrary_requests_never_5xx(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        event in "[ -~]{0,20}",
        id in "[ -~]{0,40}",
        sig in proptest::option::of("[ -~]{0,80}"),
        sign_it in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let app = app_with(config());
            let signature = if sign_it { Some(sign(SECRET.as_bytes(), &body)) } else { sig };
            let mut req = Request::post("/webhook");
            if let Ok(v) = axum::http::HeaderValue::from_str(&event) { req = req.header("x-github-event", v); }
            if let Ok(v) = axum::http::HeaderValue::from_str(&id) { req = req.header("x-github-delivery", v); }
            if let Some(s) = signature.and_then(|s| axum::http::HeaderValue::from_str(&s).ok()) {
                req = req.header("x-hub-signature-256", s);
            }
            let (status, _) = send(&app, req.body(Body::from(body.clone())).unwrap()).await;
            prop_assert!(!status.is_server_error(), "{status}");
            if !sign_it {
                prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
            Ok(())
        })?;
    }

    /// A body signed with another secret never verifies.
    #[test]
    fn another_secret_never_verifies(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        other in "[ -~]{1,40}",
    ) {
        prop_assume!(other != SECRET);
        let header = sign(other.as_bytes(), &body);
        prop_assert!(deploybot_core::webhook::signature::verify(SECRET.as_bytes(), &body, Some(&header)).is_err());
    }
}

/// `server.webhook_secret_file` is read for each delivery: after the App's webhook secret is
/// changed and the mounted file replaced, deliveries signed with the new secret pass and those
/// signed with the old one get 401, without a restart.
#[tokio::test]
async fn a_rotated_webhook_secret_file_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook-secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
    let intake = Intake::new(
        Arc::new(config()),
        Secret::new("unused"),
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::new(Notify::new()),
        Arc::new(SystemClock),
    )
    .with_rotating_secret(
        deploybot::adapters::github_auth::RotatingSecret::read(
            deploybot_core::secret::SecretRef::File(file.clone()),
        )
        .unwrap(),
    );
    let router = router(Arc::new(intake));
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
    let (status, _) = call(&router, signed("ping", "r1", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    std::fs::write(&file, "the-new-secret\n").unwrap();
    let (status, _) = call(&router, signed("ping", "r2", body)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old secret no longer passes"
    );
    let new = request(
        "ping",
        "r3",
        body.to_vec(),
        Some(sign(b"the-new-secret", body)),
    );
    let (status, _) = call(&router, new).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}
