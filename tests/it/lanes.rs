//! The worker's lanes (issues 15.7, 17.7 and 17.8), in process: real payloads through the real
//! intake into the real store, processed by a processor the test holds or releases delivery by
//! delivery, so every interleaving is driven, not waited for.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::store::{
    DeliveryQueue, DeliveryStatus, Inserted, NewDelivery, QueuedDelivery, Store, StoreError,
    StoredDelivery,
};
use deploybot::shell::metrics::Metrics;
use deploybot::shell::webhook::intake::{Intake, router};
use deploybot::shell::webhook::worker::{self, Processed, Processor, Settings};
use deploybot_core::failure::Failure;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::secret::Secret;
use deploybot_core::webhook::event::Parsed;
use deploybot_core::webhook::signature::sign;
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

use crate::support::fixtures_dir;
use crate::support::serve::pull_request_opened;

const SECRET: &str = "lanes-secret";
const REPO: &str = "Codertocat/Hello-World";

fn config() -> deploybot::config::Config {
    deploybot::config::from_yaml(
        &format!("services:\n  - {{name: hello, app_repo: {REPO}}}\n"),
        Path::new("lanes.yaml"),
    )
    .unwrap()
}

/// A `/command` comment on pull request `number` (the real `issue_comment` payload, on a PR).
fn command(number: u64, body: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(
        fixtures_dir().join("github-webhooks/issue_comment/created.payload.json"),
    )
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["issue"]["number"] = number.into();
    v["issue"]["pull_request"] = serde_json::json!({"url": "https://api.github.com/pulls/1"});
    v["comment"]["body"] = body.into();
    serde_json::to_vec(&v).unwrap()
}

struct Queue {
    store: Store,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Queue {
    fn new() -> Queue {
        let dir = tempfile::tempdir().unwrap();
        // The name `deploybot deliveries --data-dir` opens.
        let store = Store::open(&dir.path().join("deploybot.sqlite3")).unwrap();
        let router = router(Arc::new(Intake::new(
            Arc::new(config()),
            Secret::new(SECRET),
            store.clone(),
            Arc::new(Metrics::default()),
            Arc::new(Notify::new()),
            Arc::new(SystemClock),
        )));
        Queue {
            store,
            router,
            _dir: dir,
        }
    }

    /// Delivers through the intake; the delivery must be queued.
    async fn deliver(&self, event: &str, id: &str, body: &[u8]) {
        let req = Request::post("/webhook")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sign(SECRET.as_bytes(), body))
            .body(Body::from(body.to_vec()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{id}");
    }

    fn status(&self, id: &str) -> (DeliveryStatus, i64) {
        let d = self.store.delivery(id).unwrap().unwrap();
        (d.status, d.attempts)
    }
}

/// Holds each delivery until the test releases it, and records what started and finished.
#[derive(Default)]
struct Held {
    /// Deliveries released before they started, or waiting to be.
    gates: Mutex<HashMap<String, Arc<Notify>>>,
    /// Deliveries that pass without waiting (by event).
    free_events: Mutex<HashSet<String>>,
    started: Mutex<Vec<String>>,
    finished: Mutex<Vec<String>>,
    changed: Notify,
}

impl Held {
    fn gate(&self, id: &str) -> Arc<Notify> {
        Arc::clone(self.gates.lock().unwrap().entry(id.into()).or_default())
    }

    fn release(&self, id: &str) {
        self.gate(id).notify_one();
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    fn finished(&self) -> Vec<String> {
        self.finished.lock().unwrap().clone()
    }

    /// Waits (at most ten seconds: a failure, not a timing) until `check` holds.
    async fn until(&self, what: &str, check: impl Fn(&Held) -> bool) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if check(self) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            panic!(
                "never: {what}; started {:?}, finished {:?}",
                self.started(),
                self.finished()
            );
        }
    }
}

impl Processor for Held {
    async fn process(&self, d: &StoredDelivery, _p: &Parsed) -> Result<Processed, Failure> {
        self.started.lock().unwrap().push(d.delivery_id.clone());
        self.changed.notify_waiters();
        if !self.free_events.lock().unwrap().contains(&d.event) {
            self.gate(&d.delivery_id).notified().await;
        }
        self.finished.lock().unwrap().push(d.delivery_id.clone());
        self.changed.notify_waiters();
        Ok(Processed::Done("done".into()))
    }
}

fn start<Q: DeliveryQueue, P: Processor>(
    queue: Q,
    processor: Arc<P>,
    settings: Settings,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker::run(
        queue,
        processor,
        worker::Parts::standalone(settings),
        stopped,
    ));
    (stop, task)
}

/// Fifty assessments waiting on a slow model, then a `/rollback`.
async fn fifty_assessments_then_a_rollback(q: &Queue) {
    for n in 0..50 {
        let body = pull_request_opened(REPO, 1000 + n, 0);
        q.deliver("pull_request", &format!("assess-{n}"), &body)
            .await;
    }
    q.deliver("issue_comment", "rollback", &command(7, "/rollback"))
        .await;
}

/// 15.7: a `/rollback` is acted on while fifty assessments wait on a slow model; on a single
/// FIFO (the worker before lanes) it starts only after all fifty.
#[tokio::test]
async fn a_rollback_is_acted_on_while_assessments_wait() {
    let q = Queue::new();
    fifty_assessments_then_a_rollback(&q).await;
    let held = Arc::new(Held::default());
    held.free_events
        .lock()
        .unwrap()
        .insert("issue_comment".into());
    let (stop, task) = start(q.store.clone(), Arc::clone(&held), Settings::default());
    held.until("the rollback is processed", |h| {
        h.finished().contains(&"rollback".to_string())
    })
    .await;
    let assessments: Vec<String> = held
        .started()
        .into_iter()
        .filter(|id| id.starts_with("assess-"))
        .collect();
    assert_eq!(
        assessments,
        ["assess-0", "assess-1", "assess-2", "assess-3"],
        "four assessments in hand, the other 46 queued"
    );
    assert!(held.finished().iter().all(|id| id == "rollback"));
    assert_eq!(q.status("rollback").0, DeliveryStatus::Done);
    stop.send(true).unwrap();
    for n in 0..50 {
        held.release(&format!("assess-{n}"));
    }
    task.await.unwrap();

    // The same queue on one FIFO line: the rollback waits for every assessment.
    let q = Queue::new();
    fifty_assessments_then_a_rollback(&q).await;
    let fifo = Arc::new(Held::default());
    fifo.free_events
        .lock()
        .unwrap()
        .insert("issue_comment".into());
    let spec = config().server.worker;
    let (stop, task) = start(q.store.clone(), Arc::clone(&fifo), Settings::fifo(&spec));
    for n in 0..50 {
        let id = format!("assess-{n}");
        fifo.until("the next assessment starts", |h| h.started().contains(&id))
            .await;
        assert!(!fifo.started().contains(&"rollback".to_string()));
        fifo.release(&id);
    }
    fifo.until("the rollback is processed", |h| {
        h.finished().contains(&"rollback".to_string())
    })
    .await;
    assert_eq!(fifo.started().last().map(String::as_str), Some("rollback"));
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A pull request's deliveries are processed one at a time, in arrival order, while other pull
/// requests' run beside them.
#[tokio::test]
async fn a_pull_requests_deliveries_keep_their_order() {
    let q = Queue::new();
    for (id, number) in [("pr5-a", 5), ("pr5-b", 5), ("pr6-a", 6), ("pr5-c", 5)] {
        q.deliver("pull_request", id, &pull_request_opened(REPO, number, 0))
            .await;
    }
    let held = Arc::new(Held::default());
    let (stop, task) = start(q.store.clone(), Arc::clone(&held), Settings::default());
    held.until("both pull requests start", |h| h.started().len() == 2)
        .await;
    assert_eq!(held.started(), ["pr5-a", "pr6-a"]);
    held.release("pr6-a");
    held.until("pr6-a finishes", |h| h.finished() == ["pr6-a"])
        .await;
    assert_eq!(held.started().len(), 2, "pr5-b waits for pr5-a");
    held.release("pr5-a");
    held.until("pr5-b starts", |h| h.started().len() == 3).await;
    held.release("pr5-b");
    held.until("pr5-c starts", |h| h.started().len() == 4).await;
    held.release("pr5-c");
    held.until("all finish", |h| h.finished().len() == 4).await;
    assert_eq!(held.started(), ["pr5-a", "pr6-a", "pr5-b", "pr5-c"]);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Fails deliveries of the events it is told to, transiently, counting the calls.
#[derive(Default)]
struct Failing {
    failing: Mutex<HashSet<String>>,
    calls: Mutex<Vec<String>>,
}

impl Processor for Failing {
    async fn process(&self, d: &StoredDelivery, _p: &Parsed) -> Result<Processed, Failure> {
        self.calls.lock().unwrap().push(d.delivery_id.clone());
        if self.failing.lock().unwrap().contains(&d.event) {
            return Err(Failure::transient("asking GitHub", "HTTP 502"));
        }
        Ok(Processed::Done("ok".into()))
    }
}

fn retry(max_attempts: u32, wait: Duration) -> Settings {
    Settings {
        retry: RetryPolicy::doubling(max_attempts, wait, wait),
        poll: Duration::from_millis(50),
        ..Settings::default()
    }
}

/// Four pull requests (the processor fails them) queued ahead of a ping.
async fn four_failing_then_a_ping(q: &Queue) {
    for n in 0..4 {
        q.deliver(
            "pull_request",
            &format!("failing-{n}"),
            &pull_request_opened(REPO, 10 + n, 0),
        )
        .await;
    }
    q.deliver("ping", "ping", br#"{"zen":"z","hook_id":1}"#)
        .await;
}

/// 17.7: deliveries waiting for their retries do not hold back an unrelated one (before, a ping
/// waited 52 s behind four failing pull requests); after their last attempt they are dead
/// letters, listed and replayed by `deploybot deliveries`.
#[tokio::test]
async fn retries_wait_off_the_line_and_end_as_replayable_dead_letters() {
    let q = Queue::new();
    four_failing_then_a_ping(&q).await;
    let failing = Arc::new(Failing::default());
    failing
        .failing
        .lock()
        .unwrap()
        .insert("pull_request".into());
    let (stop, task) = start(
        q.store.clone(),
        Arc::clone(&failing),
        retry(2, Duration::from_secs(3600)),
    );
    for _ in 0..200 {
        if q.status("ping").0 == DeliveryStatus::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(q.status("ping").0, DeliveryStatus::Done, "the ping went by");
    for n in 0..4 {
        assert_eq!(
            q.status(&format!("failing-{n}")),
            (DeliveryStatus::Pending, 1),
            "waiting an hour for its second attempt"
        );
    }
    stop.send(true).unwrap();
    task.await.unwrap();

    // With no wait, the second attempt comes at once and is the last: dead letters.
    let q = Queue::new();
    four_failing_then_a_ping(&q).await;
    let (stop, task) = start(
        q.store.clone(),
        Arc::clone(&failing),
        retry(2, Duration::ZERO),
    );
    for _ in 0..300 {
        if q.store.pending_count().unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let dead: Vec<String> = q
        .store
        .dead_letters(10)
        .unwrap()
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    assert_eq!(dead, ["failing-0", "failing-1", "failing-2", "failing-3"]);

    // The command line lists and replays them; once GitHub is back they are processed.
    let data_dir = q.store.path().parent().unwrap().to_path_buf();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(args)
            .args(["--data-dir", &data_dir.display().to_string()])
            .output()
            .unwrap()
    };
    let listed = cli(&["deliveries", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        text.contains("failing-2") && text.contains("HTTP 502"),
        "{text}"
    );
    let replayed = cli(&[
        "deliveries",
        "replay",
        "failing-0",
        "failing-1",
        "ping",
        "nope",
    ]);
    assert_eq!(replayed.status.code(), Some(3), "two could not be replayed");
    let err = String::from_utf8_lossy(&replayed.stderr);
    assert!(err.contains("ping: not replayed: it is done"), "{err}");
    assert!(
        err.contains("nope: not replayed: no delivery has this id"),
        "{err}"
    );
    failing.failing.lock().unwrap().clear();
    let (stop, task) = start(q.store.clone(), Arc::clone(&failing), Settings::default());
    for _ in 0..300 {
        if q.status("failing-1").0 == DeliveryStatus::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(
        q.status("failing-0"),
        (DeliveryStatus::Done, 1),
        "its attempts started over"
    );
    assert_eq!(q.status("failing-1").0, DeliveryStatus::Done);
    assert_eq!(q.status("failing-2").0, DeliveryStatus::Failed);
}

/// A store whose bookkeeping writes fail (a full disk): deliveries are read, outcomes are not
/// written.
#[derive(Clone)]
struct Unwritable(Store);

fn full() -> StoreError {
    StoreError::Full { free: 0, needed: 1 }
}

impl DeliveryQueue for Unwritable {
    async fn enqueue(&self, d: NewDelivery) -> Result<Inserted, StoreError> {
        self.0.enqueue(d).await
    }
    fn queued(&self, limit: usize) -> Result<Vec<QueuedDelivery>, StoreError> {
        self.0.queued(limit)
    }
    fn load(&self, seq: i64) -> Result<Option<StoredDelivery>, StoreError> {
        self.0.load(seq)
    }
    fn finish(&self, _: &str, _: DeliveryStatus, _: &str) -> Result<(), StoreError> {
        Err(full())
    }
    fn record_attempt(&self, _: &str, _: &str, _: i64) -> Result<i64, StoreError> {
        Err(full())
    }
    fn pending_count(&self) -> Result<u64, StoreError> {
        self.0.pending_count()
    }
    fn ready(&self, _: u64) -> Result<(), StoreError> {
        Err(full())
    }
}

/// 17.8: a delivery whose outcome cannot be written is held back with a growing wait, not
/// processed again in a tight loop (before: again every poll, forever).
#[tokio::test]
async fn an_outcome_that_cannot_be_written_is_not_retried_in_a_tight_loop() {
    let q = Queue::new();
    q.deliver("ping", "stuck", br#"{"zen":"z","hook_id":1}"#)
        .await;
    let counting = Arc::new(Failing::default());
    let settings = Settings {
        poll: Duration::from_millis(10),
        ..Settings::default()
    };
    let (stop, task) = start(Unwritable(q.store.clone()), Arc::clone(&counting), settings);
    // Waits of 1 s, then 2 s: three tries in the first 2.5 s at most.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let calls = counting.calls.lock().unwrap().len();
    assert!((1..=3).contains(&calls), "processed {calls} times in 2.5 s");
    assert_eq!(q.status("stuck").0, DeliveryStatus::Pending, "still queued");
}

/// `deploybot bench lanes` runs end to end on a small queue: the revert is pushed to the bare
/// repository, and the lanes meet the goal while the FIFO waits for every assessment.
#[test]
fn the_emergency_lane_benchmark_runs() {
    let stdout = crate::support::deploybot_ok(&[
        "bench",
        "lanes",
        "--assessments",
        "3",
        "--llm-seconds",
        "0.5",
    ]);
    assert!(stdout.contains("goal under 2 s: met"), "{stdout}");
    let fifo: f64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("single FIFO (one at a time):"))
        .and_then(|rest| rest.trim().strip_suffix(" s"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no FIFO line: {stdout}"));
    assert!(fifo >= 1.0, "the FIFO waited for the assessments: {stdout}");
}
