//! Issue 16: the store's contract, one set of tests run unchanged against both backends (SQLite,
//! and PostgreSQL on the test binary's private cluster, `support::postgres`). Every store method
//! is called here; `contract!` generates `sqlite::<test>` and `postgres::<test>` from each.
//!
//! Two handles opened on one storage are two replicas: the claim and lease tests use them to show
//! that no delivery is claimed twice, that an abandoned claim returns to the queue after its
//! lease, and that a replica whose rollout lease was taken over is fenced out; two real workers
//! on one PostgreSQL database process each delivery once, each key in order.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploybot::adapters::clock::SystemClock;
use deploybot::adapters::store::approval_prs::{self, ApprovalPr};
use deploybot::adapters::store::assessments::{AssessmentKey, AssessmentStore};
use deploybot::adapters::store::maintenance::{Pruned, Replay};
use deploybot::adapters::store::parked::{self, PendingRelease};
use deploybot::adapters::store::pg::PgOptions;
use deploybot::adapters::store::{
    DeliveryQueue, DeliveryStatus, Inserted, Location, NewDelivery, Store, StoredDelivery, holds,
};
use deploybot::shell::driver::{Driver, DriverError, EffectRunner, LeaseTerms};
use deploybot::shell::webhook::worker::{self, Processed, Processor};
use deploybot_core::clock::Clock as _;
use deploybot_core::config::Retention;
use deploybot_core::duration::PromDuration;
use deploybot_core::failure::Failure;
use deploybot_core::risk::{Policy, Thresholds};
use deploybot_core::rollout::admission::Gate;
use deploybot_core::rollout::lease::Acquire;
use deploybot_core::rollout::store::{RolloutStore, RolloutStoreError};
use deploybot_core::rollout::testing::{t, trigger};
use deploybot_core::rollout::{
    Command, Input, MetricPoint, Release, Rollout, Settings, Trigger, Weight, step,
};
use deploybot_core::webhook::event::Parsed;
use deploybot_core::webhook::lane::{Lane, Placement};
use tokio::sync::watch;

use crate::support;

/// One backend's storage; each `open` is another handle on it (another replica).
pub struct Backend {
    location: Location,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn sqlite() -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        Some(Backend {
            location: Location::Sqlite(dir.path().join("data/deploybot.sqlite3")),
            _dir: dir,
        })
    }

    fn postgres() -> Option<Backend> {
        let db = support::postgres::database()?;
        Some(Backend {
            location: Location::Postgres(db.options()),
            _dir: tempfile::tempdir().unwrap(),
        })
    }

    fn open(&self) -> Store {
        Store::open_at(&self.location).unwrap()
    }
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = super::Backend::sqlite() else { return };
                    super::$test(backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = super::Backend::postgres() else { return };
                    super::$test(backend).await;
                }
            )*
        }
    };
}

contract!(
    deliveries_are_stored_once_by_id_and_survive_a_reopen,
    a_failed_delivery_waits_as_a_dead_letter_until_replayed,
    prune_keeps_what_retention_keeps_and_never_a_pending_delivery,
    assessments_round_trip_by_key_and_latest,
    holds_keep_the_first_reason_until_released,
    approval_prs_are_found_by_rollout_and_by_number,
    parked_releases_wait_in_order_until_unparked,
    one_live_rollout_per_service_and_environment,
    a_stale_writer_cannot_overwrite_a_newer_record,
    metric_history_is_idempotent_ordered_and_keeps_known_values,
    two_replicas_never_claim_one_delivery,
    an_abandoned_claim_is_claimed_again_after_its_lease,
    a_replica_whose_rollout_lease_was_taken_over_is_fenced_out,
    a_rollout_is_driven_by_one_replica_at_a_time,
);

fn delivery(id: &str, status: DeliveryStatus, received_at: String) -> NewDelivery {
    NewDelivery {
        delivery_id: id.into(),
        event: "ping".into(),
        action: Some("created".into()),
        repository: Some("o/r".into()),
        received_at,
        payload: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        status,
        detail: None,
        placement: Placement {
            lane: Lane::Work,
            key: format!("delivery:{id}"),
        },
    }
}

fn now_text() -> String {
    SystemClock.now().to_rfc3339()
}

fn rollout(id: &str, service: &str, env: &str) -> Rollout {
    Rollout::new(
        Trigger {
            release: Release {
                image_tag: format!("sha-{id}"),
                ..trigger(id, service, env).release
            },
            ..trigger(id, service, env)
        },
        Settings::default(),
        t(0),
    )
}

fn pause() -> Input {
    Input::Command {
        cmd: Command::Pause,
        by: "ops".into(),
    }
}

async fn deliveries_are_stored_once_by_id_and_survive_a_reopen(b: Backend) {
    {
        let store = b.open();
        let a = delivery("a", DeliveryStatus::Pending, now_text());
        assert_eq!(store.enqueue(a.clone()).await.unwrap(), Inserted::New);
        assert_eq!(store.enqueue(a).await.unwrap(), Inserted::Duplicate);
        let ignored = NewDelivery {
            detail: Some("not for us".into()),
            ..delivery("i", DeliveryStatus::Ignored, now_text())
        };
        assert_eq!(store.enqueue(ignored).await.unwrap(), Inserted::New);
        assert_eq!(
            store
                .enqueue(delivery("b", DeliveryStatus::Pending, now_text()))
                .await
                .unwrap(),
            Inserted::New
        );
    }
    let store = b.open();
    // A redelivery to another replica is a duplicate too.
    assert_eq!(
        b.open()
            .enqueue(delivery("a", DeliveryStatus::Pending, now_text()))
            .await
            .unwrap(),
        Inserted::Duplicate
    );
    let queued = store.queued(10).unwrap();
    let ids: Vec<&str> = queued.iter().map(|q| q.delivery_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "pending ones only, oldest first");
    assert_eq!(queued[0].key, "delivery:a");
    assert_eq!(queued[0].lane, Lane::Work);
    assert_eq!(queued[0].bytes, "{\"id\":\"a\"}".len());
    assert_eq!(store.queued(1).unwrap().len(), 1);
    let a = store.load(queued[0].seq).unwrap().unwrap();
    assert_eq!(
        (a.payload.as_slice(), a.action.as_deref(), a.attempts),
        (&b"{\"id\":\"a\"}"[..], Some("created"), 0)
    );
    assert_eq!(store.load(i64::MAX).unwrap(), None);
    assert_eq!(
        store.delivery("i").unwrap().unwrap().detail.as_deref(),
        Some("not for us")
    );
    assert_eq!(store.delivery("nope").unwrap(), None);
    store.finish("a", DeliveryStatus::Done, "ok").unwrap();
    assert_eq!(store.pending_count().unwrap(), 1);
    assert_eq!(store.count_by_status(DeliveryStatus::Done).unwrap(), 1);
    assert_eq!(store.count_by_status(DeliveryStatus::Ignored).unwrap(), 1);
    let a = store.delivery("a").unwrap().unwrap();
    assert_eq!(
        (a.status, a.attempts, a.detail.as_deref()),
        (DeliveryStatus::Done, 1, Some("ok"))
    );
    store.ready(1024).unwrap();
    store.probe_write().unwrap();
    assert!(store.sizes().database > 0);
}

async fn a_failed_delivery_waits_as_a_dead_letter_until_replayed(b: Backend) {
    let store = b.open();
    for id in ["f", "p"] {
        store
            .enqueue(delivery(id, DeliveryStatus::Pending, now_text()))
            .await
            .unwrap();
    }
    assert_eq!(store.record_attempt("f", "timed out", 5_000).unwrap(), 1);
    assert_eq!(
        store.record_attempt("f", "timed out again", 9_000).unwrap(),
        2
    );
    let f = store.queued(10).unwrap().remove(0);
    assert_eq!((f.attempts, f.not_before), (2, 9_000));
    store
        .finish("f", DeliveryStatus::Failed, "gave up: 404")
        .unwrap();
    let dead = store.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].delivery_id.as_str(),
            dead[0].attempts,
            dead[0].detail.as_deref()
        ),
        ("f", 3, Some("gave up: 404"))
    );
    assert!(dead[0].bytes > 0);
    assert_eq!(store.replay("nope").unwrap(), Replay::Unknown);
    assert_eq!(
        store.replay("p").unwrap(),
        Replay::NotFailed(DeliveryStatus::Pending)
    );
    assert_eq!(store.replay("f").unwrap(), Replay::Requeued);
    assert_eq!(
        store.replay("f").unwrap(),
        Replay::NotFailed(DeliveryStatus::Pending),
        "replayed once"
    );
    let f = store.delivery("f").unwrap().unwrap();
    assert_eq!(
        (f.status, f.attempts, f.detail.as_deref()),
        (DeliveryStatus::Pending, 0, Some("replayed"))
    );
    assert!(store.dead_letters(10).unwrap().is_empty());
    assert_eq!(store.pending_count().unwrap(), 2);
}

async fn prune_keeps_what_retention_keeps_and_never_a_pending_delivery(b: Backend) {
    let store = b.open();
    let now = SystemClock.now();
    let ago = |h: i64| (now - chrono::Duration::hours(h)).to_rfc3339();
    let rows = [
        ("fresh-done", DeliveryStatus::Done, 1),
        ("old-done", DeliveryStatus::Done, 100),
        ("ancient-done", DeliveryStatus::Done, 1000),
        ("old-ignored", DeliveryStatus::Ignored, 30),
        ("fresh-ignored", DeliveryStatus::Ignored, 2),
        ("old-failed", DeliveryStatus::Failed, 100),
        ("ancient-failed", DeliveryStatus::Failed, 1000),
        ("ancient-pending", DeliveryStatus::Pending, 1000),
    ];
    for (id, status, age) in rows {
        store.enqueue(delivery(id, status, ago(age))).await.unwrap();
    }
    let retention = Retention {
        payloads: PromDuration::from_secs(72 * 3600),
        ignored: PromDuration::from_secs(24 * 3600),
        deliveries: PromDuration::from_secs(720 * 3600),
    };
    assert_eq!(
        store.prune(now, &retention).unwrap(),
        Pruned {
            payloads: 1,
            ignored: 1,
            deliveries: 2
        }
    );
    let payload = |id: &str| store.delivery(id).unwrap().map(|d| d.payload.len());
    assert!(payload("fresh-done").unwrap() > 0);
    assert_eq!(payload("old-done"), Some(0), "emptied, row kept");
    assert_eq!(payload("ancient-done"), None);
    assert_eq!(payload("old-ignored"), None);
    assert!(payload("fresh-ignored").unwrap() > 0);
    assert!(payload("old-failed").unwrap() > 0, "a dead letter keeps it");
    assert_eq!(payload("ancient-failed"), None);
    assert!(payload("ancient-pending").unwrap() > 0, "never pruned");
    assert_eq!(store.prune(now, &retention).unwrap(), Pruned::default());
    assert_eq!(
        store.replay("old-failed").unwrap(),
        Replay::Requeued,
        "its payload was kept for this"
    );
}

async fn assessments_round_trip_by_key_and_latest(b: Backend) {
    let key = AssessmentKey {
        repository: "o/r".into(),
        pr_number: 7,
        head_sha: "abc".into(),
        inputs_digest: "d1".into(),
    };
    let a = Policy::default().assess(
        &deploybot_core::risk::Change::default(),
        &Thresholds::default(),
    );
    {
        let store = b.open();
        assert_eq!(store.find(&key).unwrap(), None);
        AssessmentStore::save(&store, &key, &a).unwrap();
        AssessmentStore::save(&store, &key, &a).unwrap(); // idempotent
    }
    let store = b.open();
    assert_eq!(store.find(&key).unwrap(), Some(a.clone()));
    let other = AssessmentKey {
        inputs_digest: "d2".into(),
        ..key.clone()
    };
    assert_eq!(store.find(&other).unwrap(), None);
    assert_eq!(store.latest("o/r", 7).unwrap(), Some(("abc".into(), a)));
    assert_eq!(store.latest("o/r", 8).unwrap(), None);
}

async fn holds_keep_the_first_reason_until_released(b: Backend) {
    let store = b.open();
    let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
    assert_eq!(holds::hold_of(&store, "checkout", "staging").unwrap(), None);
    holds::hold(&store, "checkout", "staging", "d-1", "error rate", now).unwrap();
    holds::hold(&store, "checkout", "staging", "d-2", "later", now).unwrap();
    let h = holds::hold_of(&store, "checkout", "staging")
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.deploy_id.as_str(), h.reason.as_str(), h.since.as_str()),
        ("d-1", "error rate", "2026-05-28T20:26:40Z")
    );
    assert_eq!(
        holds::hold_of(&store, "checkout", "production").unwrap(),
        None
    );
    assert!(holds::release(&store, "checkout", "staging").unwrap());
    assert!(!holds::release(&store, "checkout", "staging").unwrap());
}

async fn approval_prs_are_found_by_rollout_and_by_number(b: Backend) {
    let store = b.open();
    let pr = |id: &str, number| ApprovalPr {
        deploy_id: id.into(),
        repo: "acme/gitops".into(),
        number,
        branch: format!("deploybot/checkout/production/{id}"),
    };
    approval_prs::record_approval_pr(&store, &pr("d-1", 7)).unwrap();
    approval_prs::record_approval_pr(&store, &pr("d-2", 8)).unwrap();
    assert_eq!(
        approval_prs::approval_pr(&store, "d-1").unwrap(),
        Some(pr("d-1", 7))
    );
    assert_eq!(approval_prs::approval_pr(&store, "d-9").unwrap(), None);
    assert_eq!(
        approval_prs::approval_pr_by_number(&store, "Acme/GitOps", 7).unwrap(),
        Some(pr("d-1", 7)),
        "the repository's case does not matter"
    );
    assert_eq!(
        approval_prs::approval_pr_by_number(&store, "acme/gitops", 9).unwrap(),
        None
    );
    assert_eq!(
        approval_prs::unclosed(&store).unwrap(),
        [pr("d-1", 7), pr("d-2", 8)]
    );
    approval_prs::mark_closed(&store, "d-1", chrono::DateTime::UNIX_EPOCH).unwrap();
    assert_eq!(approval_prs::unclosed(&store).unwrap(), [pr("d-2", 8)]);
    // Reopened after an unapproved merge: open again, and last.
    approval_prs::record_approval_pr(&store, &pr("d-1", 9)).unwrap();
    assert_eq!(
        approval_prs::unclosed(&store).unwrap(),
        [pr("d-2", 8), pr("d-1", 9)]
    );
}

async fn parked_releases_wait_in_order_until_unparked(b: Backend) {
    let store = b.open();
    let parked = |service: &str, sha: &str, waiting: &str| PendingRelease {
        release: Release {
            service: service.into(),
            commit_sha: Some(sha.into()),
            ..trigger("x", service, "staging").release
        },
        gate: Gate {
            risk_score: 0.4,
            strategy: deploybot_core::risk::Strategy::Canary25,
            approval_required: false,
        },
        waiting: waiting.into(),
    };
    parked::park_release(&store, &parked("checkout", "aaa", "ci"), t(0)).unwrap();
    parked::park_release(&store, &parked("cart", "bbb", "ci"), t(10)).unwrap();
    // Parked again: what it waits for changes, its place does not.
    parked::park_release(&store, &parked("checkout", "aaa", "e2e"), t(20)).unwrap();
    assert_eq!(
        parked::parked_releases(&store).unwrap(),
        [
            parked("checkout", "aaa", "e2e"),
            parked("cart", "bbb", "ci")
        ]
    );
    parked::unpark_release(&store, "checkout", "aaa").unwrap();
    assert_eq!(
        parked::parked_releases(&store).unwrap(),
        [parked("cart", "bbb", "ci")]
    );
}

async fn one_live_rollout_per_service_and_environment(b: Backend) {
    let store = b.open();
    let first = rollout("d1", "checkout", "production");
    store.create(&first, "@a").unwrap();
    let err = store
        .create(&rollout("d2", "checkout", "production"), "@a")
        .unwrap_err();
    assert!(
        matches!(&err, RolloutStoreError::LiveConflict { existing, .. } if existing == "d1"),
        "{err}"
    );
    store
        .create(&rollout("d3", "checkout", "staging"), "@a")
        .unwrap();
    store
        .create(&rollout("d4", "cart", "production"), "@a")
        .unwrap();
    let rollback = Input::Command {
        cmd: Command::Rollback,
        by: "ops".into(),
    };
    let tr = step(&first, rollback.clone(), t(5));
    RolloutStore::save(&store, &first, &rollback, &tr).unwrap();
    assert!(!tr.next.is_live());
    store
        .create(&rollout("d2", "checkout", "production"), "@a")
        .unwrap();
    assert_eq!(store.recent(Some("checkout"), 10).unwrap().len(), 3);
    assert_eq!(store.recent(None, 2).unwrap().len(), 2);
    let live: Vec<String> = store
        .live()
        .unwrap()
        .into_iter()
        .map(|r| r.deploy_id)
        .collect();
    assert_eq!(live, ["d2", "d3", "d4"]);
    assert_eq!(store.get("d1").unwrap(), Some(tr.next));
    assert_eq!(store.get("nope").unwrap(), None);
    let history = store.history("checkout").unwrap();
    let causes: Vec<(&str, &str)> = history
        .iter()
        .map(|e| (e.rollout_id.as_str(), e.cause.as_str()))
        .collect();
    assert_eq!(
        causes,
        [
            ("d1", "created"),
            ("d3", "created"),
            ("d1", "/rollback"),
            ("d2", "created")
        ]
    );
    assert_eq!(history[2].input, Some(rollback));
    assert_eq!(history[2].actor, "@ops");
}

async fn a_stale_writer_cannot_overwrite_a_newer_record(b: Backend) {
    let (one, two) = (b.open(), b.open());
    let r = rollout("d1", "checkout", "staging");
    one.create(&r, "@a").unwrap();
    let tr = step(&r, pause(), t(1));
    RolloutStore::save(&one, &r, &pause(), &tr).unwrap();
    // A second replica still holding the original record.
    let stale = step(&r, pause(), t(2));
    let err = RolloutStore::save(&two, &r, &pause(), &stale).unwrap_err();
    assert!(matches!(err, RolloutStoreError::Conflict { .. }), "{err}");
    let ghost = rollout("nope", "x", "y");
    let tr = step(&ghost, pause(), t(1));
    assert!(matches!(
        RolloutStore::save(&two, &ghost, &pause(), &tr).unwrap_err(),
        RolloutStoreError::NotFound { .. }
    ));
    assert_eq!(two.history("checkout").unwrap().len(), 2);
}

fn point(at: i64, metric: &str, canary: Option<f64>, baseline: Option<f64>) -> MetricPoint {
    MetricPoint {
        at: t(at),
        weight: Weight::new(10).unwrap(),
        metric: metric.into(),
        canary,
        baseline,
    }
}

async fn metric_history_is_idempotent_ordered_and_keeps_known_values(b: Backend) {
    let store = b.open();
    store
        .create(&rollout("d1", "checkout", "staging"), "@a")
        .unwrap();
    store
        .record_metrics(
            "d1",
            &[
                point(120, "error_rate", Some(0.02), Some(0.01)),
                point(60, "p99_latency_seconds", Some(0.25), None),
                point(60, "error_rate", Some(0.01), Some(f64::NAN)),
            ],
        )
        .unwrap();
    store
        .record_metrics(
            "d1",
            &[
                point(60, "p99_latency_seconds", None, Some(0.2)),
                point(60, "error_rate", None, Some(0.01)),
            ],
        )
        .unwrap();
    assert_eq!(
        store.metrics("d1").unwrap(),
        [
            point(60, "error_rate", Some(0.01), Some(0.01)),
            point(60, "p99_latency_seconds", Some(0.25), Some(0.2)),
            point(120, "error_rate", Some(0.02), Some(0.01)),
        ]
    );
    let err = store
        .record_metrics("nope", &[point(60, "error_rate", Some(0.1), None)])
        .unwrap_err();
    assert!(matches!(err, RolloutStoreError::NotFound { .. }), "{err}");
    assert!(store.metrics("nope").unwrap().is_empty());
}

/// Two replicas claiming from one queue at the same time, in small batches: every delivery is
/// handed out exactly once while the claims hold.
async fn two_replicas_never_claim_one_delivery(b: Backend) {
    let store = b.open();
    for i in 0..200 {
        store
            .enqueue(delivery(
                &format!("d{i:03}"),
                DeliveryStatus::Pending,
                now_text(),
            ))
            .await
            .unwrap();
    }
    let now = 1_000;
    let replicas = ["a", "b"].map(|name| {
        let store = b.open();
        std::thread::spawn(move || {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(name, 3, now, 60_000).unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|q| q.delivery_id));
            }
        })
    });
    let [a, b2] = replicas.map(|h| h.join().unwrap());
    let all: BTreeSet<&String> = a.iter().chain(&b2).collect();
    assert_eq!(a.len() + b2.len(), 200, "a {} + b {}", a.len(), b2.len());
    assert_eq!(all.len(), 200, "no delivery claimed twice");
    eprintln!("claims: replica a {}, replica b {}", a.len(), b2.len());
    assert!(
        store
            .claim("c", 10, now + 59_999, 60_000)
            .unwrap()
            .is_empty()
    );
}

async fn an_abandoned_claim_is_claimed_again_after_its_lease(b: Backend) {
    let (a, b2) = (b.open(), b.open());
    for id in ["x", "y", "z"] {
        a.enqueue(delivery(id, DeliveryStatus::Pending, now_text()))
            .await
            .unwrap();
    }
    let claimed = a.claim("a", 2, 1_000, 30_000).unwrap();
    let ids: Vec<&str> = claimed.iter().map(|q| q.delivery_id.as_str()).collect();
    assert_eq!(ids, ["x", "y"], "oldest first");
    // a finishes x, then dies holding y. b gets only z while a's claim holds ...
    a.finish("x", DeliveryStatus::Done, "ok").unwrap();
    let got = b2.claim("b", 10, 2_000, 30_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery_id, "z");
    assert!(b2.claim("b", 10, 30_999, 30_000).unwrap().is_empty());
    // ... and y once it ran out; x, finished, never again.
    let got = b2.claim("b", 10, 31_000, 30_000).unwrap();
    let ids: Vec<&str> = got.iter().map(|q| q.delivery_id.as_str()).collect();
    assert_eq!(ids, ["y"]);
    // A retry ends the claim: the delivery is claimable when it is due, by any replica.
    b2.record_attempt("z", "502", 40_000).unwrap();
    assert!(a.claim("a", 10, 39_999, 30_000).unwrap().is_empty());
    assert_eq!(
        a.claim("a", 10, 40_000, 30_000).unwrap()[0].delivery_id,
        "z"
    );
    // Given back early, it is claimable at once.
    assert!(a.release_claim("a", "z").unwrap());
    assert!(!a.release_claim("a", "z").unwrap());
    assert_eq!(
        b2.claim("b", 10, 40_001, 30_000).unwrap()[0].delivery_id,
        "z"
    );
}

/// Replica A drives a rollout under a lease; its lease expires (A paused, partitioned), B takes
/// it over with the next token and writes; A's next write is refused, and so is a renewal
/// pretending nothing happened.
async fn a_replica_whose_rollout_lease_was_taken_over_is_fenced_out(b: Backend) {
    let (a, b2) = (b.open(), b.open());
    let r = rollout("d1", "checkout", "staging");
    a.create(&r, "@a").unwrap();
    let Acquire::Granted(lease_a) = a.acquire_lease("d1", "replica-a", 0, 30_000).unwrap() else {
        panic!("nobody held it")
    };
    assert_eq!((lease_a.fence, lease_a.expires_at), (1, 30_000));
    assert_eq!(
        b2.acquire_lease("d1", "replica-b", 29_999, 30_000).unwrap(),
        Acquire::Held {
            holder: "replica-a".into(),
            until: 30_000
        }
    );
    // A writes while it holds the lease.
    let tr = step(&r, pause(), t(1));
    a.save_as(&r, &pause(), &tr, Some(&lease_a)).unwrap();
    let paused = tr.next;
    // A stops renewing; past its lease B takes over with the next token.
    let Acquire::Granted(lease_b) = b2.acquire_lease("d1", "replica-b", 30_000, 30_000).unwrap()
    else {
        panic!("the lease had expired")
    };
    assert_eq!((lease_b.fence, lease_b.holder.as_str()), (2, "replica-b"));
    assert_eq!(b2.lease_of("d1").unwrap(), Some(lease_b.clone()));
    let resume = Input::Command {
        cmd: Command::Resume,
        by: "ops".into(),
    };
    let tr = step(&paused, resume.clone(), t(40));
    // A wakes up and writes with its old token, even over the current record: refused.
    let err = a
        .save_as(&paused, &resume, &tr, Some(&lease_a))
        .unwrap_err();
    assert!(
        matches!(err, RolloutStoreError::Fenced { fence: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("fenced out"), "{err}");
    // B's write with the current token goes through.
    b2.save_as(&paused, &resume, &tr, Some(&lease_b)).unwrap();
    // A asking again while B holds it learns who does; B renews with the same token.
    assert!(matches!(
        a.acquire_lease("d1", "replica-a", 41_000, 30_000).unwrap(),
        Acquire::Held { .. }
    ));
    let Acquire::Granted(renewed) = b2.acquire_lease("d1", "replica-b", 50_000, 30_000).unwrap()
    else {
        panic!("its own lease")
    };
    assert_eq!((renewed.fence, renewed.expires_at), (2, 80_000));
    assert_eq!(
        b2.history("checkout").unwrap().len(),
        3,
        "created, paused by A, resumed by B: nothing from A after the takeover"
    );
    assert!(matches!(
        a.acquire_lease("nope", "replica-a", 0, 30_000).unwrap_err(),
        RolloutStoreError::NotFound { .. }
    ));
}

/// Replicas starting together on an empty database: one migrates under the advisory lock, the
/// others wait for it and find the schema in place (PostgreSQL only: a SQLite file has one
/// process).
#[test]
fn replicas_starting_together_on_postgres_migrate_once() {
    let Some(db) = support::postgres::database() else {
        return;
    };
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let options = db.options();
            std::thread::spawn(move || Store::open_postgres(&options).map(drop))
        })
        .collect();
    for open in opens {
        open.join().unwrap().unwrap();
    }
    let store = Store::open_postgres(&db.options()).unwrap();
    assert_eq!(store.pending_count().unwrap(), 0);
}

/// `store.url` and `store.password_file` in the config file are what `deploybot store prune`
/// opens: the PostgreSQL database, not a SQLite file under `store.data_dir`.
#[tokio::test]
async fn the_config_file_points_the_cli_at_postgres() {
    let Some(db) = support::postgres::database() else {
        return;
    };
    let store = Store::open_postgres(&db.options()).unwrap();
    let old = (SystemClock.now() - chrono::Duration::hours(48)).to_rfc3339();
    store
        .enqueue(delivery("old-ignored", DeliveryStatus::Ignored, old))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg-password"),
        format!("{}\n", db.password()),
    )
    .unwrap();
    let config = dir.path().join("deploybot.yaml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "store:\n  data_dir: {}\n  url: {}\n  password_file: {}\n",
            data.display(),
            db.url,
            dir.path().join("pg-password").display()
        ),
    )
    .unwrap();
    let out = support::deploybot_ok(&["store", "prune", "--config", &config.display().to_string()]);
    assert!(out.contains("deleted 1 ignored"), "{out}");
    assert_eq!(store.delivery("old-ignored").unwrap(), None);
    assert!(!data.exists(), "no SQLite store was created");
    // Without the password the database refuses, and the error says where, never what.
    std::fs::write(dir.path().join("pg-password"), "wrong\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["store", "prune", "--config", &config.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("opening the store at postgres://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(db.password()) && !stderr.contains("wrong"),
        "{stderr}"
    );
}

/// PostgreSQL gone under a running store: storing a delivery fails (the intake answers 503
/// then, so GitHub records the failure) and the readiness probe fails, rather than anything
/// being acknowledged that is not stored.
#[tokio::test]
async fn without_its_database_the_store_refuses_instead_of_acknowledging() {
    let Some(db) = support::postgres::database() else {
        return;
    };
    let store = Store::open_postgres(&db.options()).unwrap();
    store.ready(1024).unwrap();
    db.drop_now();
    let err = store
        .enqueue(delivery("lost", DeliveryStatus::Pending, now_text()))
        .await
        .unwrap_err();
    // A connection the drop cut says so; one opened after it finds no database.
    let text = err.to_string();
    assert!(
        text.contains("does not exist") || text.contains("terminating connection"),
        "{text}"
    );
    let err = store.ready(1024).unwrap_err();
    assert!(err.to_string().starts_with("store: "), "{err}");
    for _ in 0..8 {
        let err = store
            .enqueue(delivery("lost", DeliveryStatus::Pending, now_text()))
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("store: "), "{err}");
    }
}

/// A delivery processed: its id, the worker, when it started and when it ended.
type Processing = (String, &'static str, Instant, Instant);

/// Records when each delivery was processed, and by which worker.
struct Recorder {
    worker: &'static str,
    log: Arc<Mutex<Vec<Processing>>>,
    /// The workers that started a delivery: each holds its first until both have, so both take
    /// work however the two race.
    started: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Processor for Recorder {
    async fn process(&self, d: &StoredDelivery, _: &Parsed) -> Result<Processed, Failure> {
        self.started.lock().unwrap().insert(self.worker);
        let waited = Instant::now();
        while self.started.lock().unwrap().len() < 2 {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the other took nothing"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let entry = (d.delivery_id.clone(), self.worker, started, Instant::now());
        self.log.lock().unwrap().push(entry);
        Ok(Processed::Done("recorded".into()))
    }
}

/// Two `serve` workers on one PostgreSQL store: every delivery processed exactly once, and the
/// deliveries of one ordering key one after the other, in order, whichever replica takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_on_one_postgres_process_each_delivery_once_in_key_order() {
    let Some(db) = support::postgres::database() else {
        return;
    };
    let store = Store::open_postgres(&db.options()).unwrap();
    let payload =
        std::fs::read(support::fixtures_dir().join("github-webhooks/ping/payload.json")).unwrap();
    let key = |i: usize| format!("pr:o/r#{}", i % 6);
    for i in 0..60 {
        let d = NewDelivery {
            event: "ping".into(),
            payload: payload.clone(),
            placement: Placement {
                lane: Lane::Work,
                key: key(i),
            },
            ..delivery(&format!("d{i:02}"), DeliveryStatus::Pending, now_text())
        };
        store.enqueue(d).await.unwrap();
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let settings = worker::Settings {
        poll: Duration::from_millis(10),
        ..worker::Settings::default()
    };
    let started = Instant::now();
    let (stop, stopped) = watch::channel(false);
    // One delivery at a time each, the first held until the other started one: neither can
    // take every key, so both work, and a key one holds waits for it.
    let first = Arc::new(Mutex::new(BTreeSet::new()));
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let recorder = Arc::new(Recorder {
                worker: name,
                log: Arc::clone(&log),
                started: Arc::clone(&first),
            });
            let settings = worker::Settings {
                capacity: deploybot_core::webhook::lane::Capacity {
                    work: 1,
                    ..settings.capacity
                },
                ..settings.clone()
            };
            tokio::spawn(worker::run(
                Store::open_postgres(&db.options()).unwrap(),
                recorder,
                worker::Parts::standalone(settings),
                stopped.clone(),
            ))
        })
        .collect();
    while store.pending_count().unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still pending after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    let ids: BTreeSet<&str> = log.iter().map(|(id, ..)| id.as_str()).collect();
    assert_eq!(
        log.len(),
        60,
        "processed {} times for 60 deliveries",
        log.len()
    );
    assert_eq!(ids.len(), 60, "each delivery once");
    let by = |w| log.iter().filter(|(_, who, ..)| *who == w).count();
    eprintln!(
        "60 deliveries, 6 keys, two workers: a {} b {} in {} ms",
        by("a"),
        by("b"),
        elapsed.as_millis()
    );
    assert!(by("a") > 0 && by("b") > 0, "both replicas took work");
    for k in 0..6 {
        let mut of_key: Vec<_> = log
            .iter()
            .filter(|(id, ..)| id[1..].parse::<usize>().unwrap() % 6 == k)
            .collect();
        of_key.sort_by_key(|(_, _, started, _)| *started);
        let order: Vec<&str> = of_key.iter().map(|(id, ..)| id.as_str()).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "key {k} kept its order");
        for pair in of_key.windows(2) {
            assert!(
                pair[1].2 >= pair[0].3,
                "key {k}: {} overlapped {}",
                pair[1].0,
                pair[0].0
            );
        }
    }
}

/// Effects that all succeed with nothing to feed back: the lease test is about who steps.
struct Quiet;

impl EffectRunner for Quiet {
    async fn run(
        &self,
        _: &Rollout,
        _: &deploybot_core::rollout::Effect,
    ) -> Result<Option<Input>, Failure> {
        Ok(None)
    }
}

/// Two drivers on one store, as two replicas' (`serve` turns leases on for PostgreSQL): the one
/// that started the rollout drives it; the other's inputs and ticks are refused or skipped
/// until the lease runs out, then it takes the rollout over and the first is the one refused.
async fn a_rollout_is_driven_by_one_replica_at_a_time(b: Backend) {
    let terms = |holder: &str| LeaseTerms {
        holder: holder.into(),
        ttl: Duration::from_secs(30),
    };
    let a = Driver::new(b.open(), Quiet).with_leases(terms("a"));
    let b2 = Driver::new(b.open(), Quiet).with_leases(terms("b"));
    let r = rollout("d1", "checkout", "staging");
    a.start(&r, "@a", pause(), t(0)).await.unwrap();
    let resume = Input::Command {
        cmd: Command::Resume,
        by: "ops".into(),
    };
    let err = b2.feed("d1", resume.clone(), t(10)).await.unwrap_err();
    assert!(
        matches!(&err, DriverError::HeldElsewhere { holder, .. } if holder == "a"),
        "{err}"
    );
    b2.tick_all(t(10)).await.unwrap();
    let store = b.open();
    assert_eq!(
        store.history("checkout").unwrap().len(),
        2,
        "b moved nothing"
    );
    // a keeps it by driving it (each feed renews) ...
    a.feed("d1", Input::Tick, t(20)).await.unwrap();
    assert!(b2.feed("d1", resume.clone(), t(35)).await.is_err());
    // ... until a goes quiet: 30 s after its last renewal b takes over, with the next token.
    b2.feed("d1", resume.clone(), t(50)).await.unwrap();
    let lease = store.lease_of("d1").unwrap().unwrap();
    assert_eq!((lease.holder.as_str(), lease.fence), ("b", 2));
    let err = a.feed("d1", pause(), t(51)).await.unwrap_err();
    assert!(
        matches!(&err, DriverError::HeldElsewhere { holder, .. } if holder == "b"),
        "{err}"
    );
    let causes: Vec<String> = store
        .history("checkout")
        .unwrap()
        .into_iter()
        .map(|e| e.cause)
        .collect();
    assert_eq!(causes, ["created", "/pause", "/resume"]);
}

/// A TCP proxy to PostgreSQL that can stop passing bytes without closing anything: a network
/// partition as the client sees it (what it sends is taken, no answer comes back).
struct FreezingProxy {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl FreezingProxy {
    fn to(target: u16) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let all = Arc::clone(&frozen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ];
                for (mut from, mut to) in pairs {
                    let frozen = Arc::clone(&all);
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            // Held after it was read: nothing read while frozen passes.
                            while frozen.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        FreezingProxy { port, frozen }
    }
}

/// PostgreSQL that stops answering mid-connection: the webhook's write and the readiness probe
/// fail within their bound (`ANSWER_WITHIN`, 1 s here) instead of waiting past GitHub's 10 s,
/// so the intake answers 503 rather than nothing.
#[tokio::test]
async fn a_database_that_stops_answering_fails_the_write_within_its_bound() {
    let Some(db) = support::postgres::database() else {
        return;
    };
    let (head, name) = db.url.rsplit_once('/').unwrap();
    let port: u16 = head.rsplit_once(':').unwrap().1.parse().unwrap();
    let proxy = FreezingProxy::to(port);
    let options = PgOptions {
        url: format!("postgres://deploybot@127.0.0.1:{}/{name}", proxy.port),
        answer_within: Duration::from_secs(1),
        ..db.options()
    };
    let store = Store::open_postgres(&options).unwrap();
    store
        .enqueue(delivery("before", DeliveryStatus::Pending, now_text()))
        .await
        .unwrap();
    store.ready(1024).unwrap();
    proxy.frozen.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let write = store.enqueue(delivery("during", DeliveryStatus::Pending, now_text()));
    let err = tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("the write is bounded: it answers, even while nothing comes back")
        .unwrap_err();
    assert!(
        err.to_string().contains("no answer within 1000 ms"),
        "{err}"
    );
    let err = store.ready(1024).unwrap_err();
    assert!(
        err.to_string().contains("no answer within 1000 ms"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // The partition heals: what was sent goes through, the store's threads are free again.
    proxy.frozen.store(false, Ordering::Relaxed);
}
