//! The rollout CLI (`status`, `history`) through the real binary against a seeded store, and
//! the `/api/rollouts` router through `tower::ServiceExt::oneshot`.

use crate::support::rollout::{t, trigger};
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use deploybot::adapters::store::Store;
use deploybot_core::risk::Strategy;
use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{
    Command as Cmd, Input, Observation, Rollout, Settings, Weight, step,
};

fn deploybot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
}

fn drive(store: &Store, mut r: Rollout, inputs: Vec<(i64, Input)>) -> Rollout {
    store.create(&r, "@alice").unwrap();
    for (at, input) in inputs {
        let tr = step(&r, input.clone(), t(at));
        store.save(&r, &input, &tr).unwrap();
        r = tr.next;
    }
    r
}

/// checkout/production live at 10 %; checkout/staging rolled back; cart complete.
pub fn seed(data_dir: &Path) -> Store {
    let store = Store::open(&data_dir.join("deploybot.sqlite3")).unwrap();
    let w = |p| Weight::new(p).unwrap();
    let assessed = |s| Input::Assessed {
        risk_score: 0.42,
        strategy: s,
        approval_required: false,
    };
    drive(
        &store,
        Rollout::new(
            trigger("d-live", "checkout", "production"),
            Settings::default(),
            t(0),
        ),
        vec![
            (0, assessed(Strategy::Canary5)),
            (
                1,
                Input::Committed {
                    sha: "c0ffee1".into(),
                    weight: w(5),
                },
            ),
            (
                2,
                Input::Synced {
                    revision: "c0ffee1".into(),
                },
            ),
            (700, Input::judged(Observation::Promote)),
            (
                701,
                Input::Committed {
                    sha: "c0ffee2".into(),
                    weight: w(10),
                },
            ),
            (
                702,
                Input::Synced {
                    revision: "c0ffee2".into(),
                },
            ),
        ],
    );
    drive(
        &store,
        Rollout::new(
            trigger("d-bad", "checkout", "staging"),
            Settings::default(),
            t(0),
        ),
        vec![
            (0, assessed(Strategy::Canary25)),
            (
                1,
                Input::Committed {
                    sha: "bad0001".into(),
                    weight: w(25),
                },
            ),
            (
                2,
                Input::Synced {
                    revision: "bad0001".into(),
                },
            ),
            (
                62,
                Input::judged(Observation::Rollback {
                    metric: "error_rate".into(),
                    evidence: "canary 4.1% vs baseline 0.3% (p=0.001)".into(),
                }),
            ),
            (
                63,
                Input::Reverted {
                    sha: "rev0001".into(),
                },
            ),
            (
                64,
                Input::Command {
                    cmd: Cmd::Resume,
                    by: "bob".into(),
                },
            ),
        ],
    );
    drive(
        &store,
        Rollout::new(
            trigger("d-cart", "cart", "production"),
            Settings::default(),
            t(0),
        ),
        vec![
            (0, assessed(Strategy::Direct)),
            (
                1,
                Input::Committed {
                    sha: "ca47001".into(),
                    weight: w(100),
                },
            ),
            (
                2,
                Input::Synced {
                    revision: "ca47001".into(),
                },
            ),
            (700, Input::judged(Observation::Promote)),
        ],
    );
    store
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = deploybot().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn status_shows_live_rollouts_first_with_traffic_commits_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    drop(seed(dir.path()));
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = run(&["status", "checkout", "--data-dir", data]);
    assert!(ok, "{err}");
    let live_at = out.find("checkout/production  d-live  canary (step 2, 10%)  [live]");
    let bad_at = out.find("checkout/staging  d-bad  rolled_back");
    assert!(
        matches!((live_at, bad_at), (Some(a), Some(b)) if a < b),
        "{out}"
    );
    assert!(
        out.contains("strategy  canary_5 (risk 0.42), plan 5 -> 10 -> 25 -> 50 -> 100"),
        "{out}"
    );
    assert!(
        out.contains("commits   c0ffee1 (5%), c0ffee2 (10%)"),
        "{out}"
    );
    assert!(
        out.contains("judge     rollback on error_rate: canary 4.1% vs baseline 0.3% (p=0.001)"),
        "{out}"
    );
    assert!(
        out.contains("rollback  judge: error_rate regressed at 25%: reverted as rev0001"),
        "{out}"
    );
    assert!(!out.contains("cart/"), "filtered by service: {out}");

    let (ok, out, _) = run(&["status", "--data-dir", data]);
    assert!(ok);
    assert!(out.contains("cart/production  d-cart  complete"), "{out}");

    let (ok, out, _) = run(&["status", "nothing-here", "--data-dir", data]);
    assert!(ok);
    assert_eq!(out.trim(), "no rollouts for nothing-here");
}

#[test]
fn status_and_history_as_json_carry_the_facts_and_the_stored_state() {
    let dir = tempfile::tempdir().unwrap();
    drop(seed(dir.path()));
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = run(&["status", "--json", "--data-dir", data]);
    assert!(ok, "{err}");
    let rollouts: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = rollouts
        .iter()
        .map(|r| r["deploy_id"].as_str().unwrap())
        .collect();
    for r in &rollouts {
        // The typed state is there whole, beside the flat facts derived from it.
        let state: deploybot_core::rollout::State =
            serde_json::from_value(r["state"].clone()).unwrap();
        assert_eq!(
            r["live"],
            !matches!(state, deploybot_core::rollout::State::Ended { .. })
        );
    }
    assert_eq!(rollouts[0]["phase"]["kind"], "canary");
    assert_eq!(ids[0], "d-live", "live first: {ids:?}");
    assert_eq!(ids.len(), 3);

    let (ok, out, err) = run(&["history", "checkout", "--json", "--data-dir", data]);
    assert!(ok, "{err}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let causes: Vec<&str> = events
        .iter()
        .filter(|e| e["rollout_id"] == "d-bad")
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        [
            "created",
            "assessed",
            "committed",
            "synced",
            "judged:rollback",
            "reverted",
            "/resume"
        ]
    );
}

#[test]
fn history_prints_every_input_with_actor_decision_and_effects() {
    let dir = tempfile::tempdir().unwrap();
    drop(seed(dir.path()));
    let cfg = dir.path().join("deploybot.yaml");
    std::fs::write(
        &cfg,
        format!("store:\n  data_dir: {}\n", dir.path().display()),
    )
    .unwrap();
    let (ok, out, err) = run(&["history", "checkout", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("d-bad")).collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        lines[4].contains("judge") && lines[4].contains("judged:rollback"),
        "{}",
        lines[4]
    );
    assert!(
        lines[4].contains(
            "-> revert bad0001, comment, status failure, label deploy/rolled-back, hold service"
        ),
        "{}",
        lines[4]
    );
    // A rejected input is on the record too, with its reason and the time it arrived.
    assert!(lines[6].starts_with("2026-11-26T10:01:04"), "{}", lines[6]);
    assert!(
        lines[6].contains("@bob") && lines[6].contains("rejected"),
        "{}",
        lines[6]
    );
    assert!(
        lines[6].contains("/resume is not valid in phase rolled_back"),
        "{}",
        lines[6]
    );
    let (ok, out, _) = run(&["history", "nobody", "--config", cfg.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(out.trim(), "no history for nobody");
}

#[test]
fn a_missing_store_is_a_clear_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let (ok, _, err) = run(&["status", "--data-dir", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("no deploybot database at"), "{err}");
    assert!(!missing.exists(), "status must not create a database");
    let (ok, _, err) = run(&[
        "history",
        "x",
        "--config",
        dir.path().join("nope.yaml").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("reading config file"), "{err}");
}

mod api {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(store: &Store, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = deploybot::shell::status_api::api_router(store.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    fn ids(v: &serde_json::Value) -> Vec<String> {
        v["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["deploy_id"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn lists_rollouts_live_first_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = seed(dir.path());
        let (status, all) = get(&store, "/api/rollouts").await;
        assert_eq!(status, StatusCode::OK);
        let all_ids = ids(&all);
        assert_eq!(all_ids.len(), 3);
        assert_eq!(all_ids[0], "d-live");
        assert_eq!(all["rollouts"][0]["phase"]["kind"], "canary");
        assert_eq!(all["rollouts"][0]["canary_weight"], 10);

        let (_, live) = get(&store, "/api/rollouts?live=true").await;
        assert_eq!(ids(&live), ["d-live"]);
        let (_, cart) = get(&store, "/api/rollouts?service=cart").await;
        assert_eq!(ids(&cart), ["d-cart"]);
        let (_, one) = get(&store, "/api/rollouts?limit=1").await;
        assert_eq!(ids(&one), ["d-live"]);
    }

    #[tokio::test]
    async fn one_rollout_with_its_events_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = seed(dir.path());
        let (status, body) = get(&store, "/api/rollouts/d-bad").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["rollout"]["revert"]["sha"], "rev0001");
        let causes: Vec<&str> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["cause"].as_str().unwrap())
            .collect();
        assert_eq!(causes.len(), 7);
        assert_eq!(causes[4], "judged:rollback");

        let (status, body) = get(&store, "/api/rollouts/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no rollout with id nope");
        let (status, body) = get(&store, "/api/rollouts?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
        let (status, _) = get(&store, "/api/rollouts?colour=blue").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

/// The driver against a fake world (an in-memory GitOps repo, Argo CD and judge that behave
/// idempotently, as the real effects must), killed at every effect boundary and restarted.
mod driver {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};

    use deploybot::shell::driver::{Driver, EffectRunner};
    use deploybot_core::failure::Failure;
    use deploybot_core::rollout::{Effect, Phase};
    use futures_util::FutureExt;

    #[derive(Default)]
    struct World {
        /// The GitOps repository's history: (sha, deploy id, what the commit did).
        git: Vec<(String, String, String)>,
        manifest: HashMap<String, Weight>,
        reverted: HashMap<String, String>,
        labels: BTreeSet<String>,
        held: BTreeSet<String>,
        /// The judge's answer at each weight (default Promote).
        judge: HashMap<u8, Observation>,
        /// Effects executed so far, and the one after which the process "dies".
        executed: usize,
        crash_after: Option<usize>,
        /// A transient failure to inject once, on the effect with this number.
        fail_once: Option<usize>,
    }

    #[derive(Clone)]
    struct FakeRunner(Arc<Mutex<World>>);

    impl EffectRunner for FakeRunner {
        async fn run(&self, r: &Rollout, effect: &Effect) -> Result<Option<Input>, Failure> {
            let (result, crash) = {
                let mut w = self.0.lock().unwrap();
                w.executed += 1;
                let n = w.executed;
                if w.fail_once == Some(n) {
                    w.fail_once = None;
                    return Err(Failure::transient(
                        "pushing branch main",
                        "connection reset",
                    ));
                }
                let result = match effect {
                    // Idempotent like the GitOps writer: no commit when the file already says so.
                    Effect::CommitStep { weight, .. } => {
                        let sha = if w.manifest.get(&r.deploy_id) == Some(weight) {
                            w.git
                                .iter()
                                .rev()
                                .find(|(_, d, what)| {
                                    *d == r.deploy_id && *what == weight.to_string()
                                })
                                .map(|(sha, _, _)| sha.clone())
                                .unwrap()
                        } else {
                            let sha = format!("g{}", w.git.len() + 1);
                            w.git
                                .push((sha.clone(), r.deploy_id.clone(), weight.to_string()));
                            w.manifest.insert(r.deploy_id.clone(), *weight);
                            sha
                        };
                        Some(Input::Committed {
                            sha,
                            weight: *weight,
                        })
                    }
                    Effect::WaitForSync { revision, .. } => Some(Input::Synced {
                        revision: revision.clone(),
                    }),
                    Effect::QueryMetrics { .. } => Some(Input::judged(
                        w.judge
                            .get(&r.traffic().percent())
                            .cloned()
                            .unwrap_or(Observation::Promote),
                    )),
                    Effect::Revert { deploy_id, .. } => {
                        let sha = match w.reverted.get(deploy_id) {
                            Some(sha) => sha.clone(),
                            None => {
                                let sha = format!("g{}", w.git.len() + 1);
                                w.git
                                    .push((sha.clone(), deploy_id.clone(), "revert".into()));
                                w.reverted.insert(deploy_id.clone(), sha.clone());
                                sha
                            }
                        };
                        Some(Input::Reverted { sha })
                    }
                    Effect::Label { name } => {
                        w.labels.insert(name.clone());
                        None
                    }
                    Effect::HoldService { .. } => {
                        w.held.insert(r.service().to_string());
                        None
                    }
                    _ => None,
                };
                (result, w.crash_after == Some(n))
            };
            if crash {
                // The effect happened; the process dies before its result is recorded.
                std::future::pending::<()>().await;
            }
            Ok(result)
        }
    }

    fn fast() -> Settings {
        Settings {
            bake_secs: 120,
            verification_secs: 120,
            analysis_interval_secs: 60,
            ..Settings::default()
        }
    }

    /// Drives rollout `id` with ticks until it is no longer live (bounded).
    async fn to_the_end(
        driver: &Driver<Store, FakeRunner>,
        id: &str,
        clock: &AtomicI64,
    ) -> Rollout {
        for _ in 0..200 {
            let r = driver.store().get(id).unwrap().unwrap();
            if !r.is_live() {
                return r;
            }
            let now = clock.fetch_add(60, Ordering::SeqCst) + 60;
            driver.tick_all(t(now)).await.unwrap();
        }
        panic!("rollout {id} did not finish");
    }

    /// Runs one rollout, killing the process after effect `crash_after` (if it gets that far),
    /// then restarts on the same database and world and runs it to the end.
    async fn crash_and_resume(
        dir: &Path,
        world: Arc<Mutex<World>>,
        crash_after: Option<usize>,
    ) -> (Rollout, bool) {
        let db = dir.join("deploybot.sqlite3");
        let clock = AtomicI64::new(0);
        world.lock().unwrap().crash_after = crash_after;
        let crashed = {
            let driver = Driver::new(Store::open(&db).unwrap(), FakeRunner(world.clone()));
            let run = async {
                let r = Rollout::new(trigger("d-1", "checkout", "production"), fast(), t(0));
                let first = Input::Assessed {
                    risk_score: 0.4,
                    strategy: Strategy::Canary5,
                    approval_required: false,
                };
                driver.start(&r, "@alice", first, t(0)).await.unwrap();
                to_the_end(&driver, "d-1", &clock).await
            };
            // Every part of the run is ready at once except the crash, so one poll either
            // finishes the run or stops exactly at the crash point; dropping it is the kill.
            run.now_or_never().is_none()
        };
        world.lock().unwrap().crash_after = None;
        let driver = Driver::new(Store::open(&db).unwrap(), FakeRunner(world.clone()));
        let now = clock.fetch_add(1, Ordering::SeqCst) + 1;
        driver.recover(t(now)).await.unwrap();
        (to_the_end(&driver, "d-1", &clock).await, crashed)
    }

    fn commits_of(world: &World) -> Vec<String> {
        world.git.iter().map(|(_, _, what)| what.clone()).collect()
    }

    #[tokio::test]
    async fn killed_at_every_effect_boundary_a_rollout_resumes_without_duplicate_commits() {
        // A clean run first, to learn how many effects a whole rollout takes.
        let dir = tempfile::tempdir().unwrap();
        let clean = Arc::new(Mutex::new(World::default()));
        let (r, crashed) = crash_and_resume(dir.path(), clean.clone(), None).await;
        assert!(!crashed);
        assert_eq!(r.phase(), Phase::Complete);
        let total = clean.lock().unwrap().executed;
        assert!(
            total > 20,
            "a five-step rollout runs many effects, got {total}"
        );
        let want = ["5%", "10%", "25%", "50%", "100%"];
        assert_eq!(commits_of(&clean.lock().unwrap()), want);

        for k in 1..=total {
            let dir = tempfile::tempdir().unwrap();
            let world = Arc::new(Mutex::new(World::default()));
            let (r, crashed) = crash_and_resume(dir.path(), world.clone(), Some(k)).await;
            assert!(crashed, "effect {k} of {total} should have been reached");
            let w = world.lock().unwrap();
            assert_eq!(r.phase(), Phase::Complete, "crash after effect {k}");
            assert_eq!(
                commits_of(&w),
                want,
                "crash after effect {k}: no step twice, none lost"
            );
            let recorded: Vec<&str> = r.commits.iter().map(|c| c.sha.as_str()).collect();
            let in_git: Vec<&str> = w.git.iter().map(|(sha, _, _)| sha.as_str()).collect();
            assert_eq!(
                recorded, in_git,
                "crash after effect {k}: the record knows every commit"
            );
        }
    }

    #[tokio::test]
    async fn a_regression_killed_mid_rollback_is_reverted_once_labelled_and_held() {
        let judge = HashMap::from([(
            10u8,
            Observation::Rollback {
                metric: "error_rate".into(),
                evidence: "canary 4.1% vs baseline 0.3%".into(),
            },
        )]);
        let clean = Arc::new(Mutex::new(World {
            judge: judge.clone(),
            ..World::default()
        }));
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = crash_and_resume(dir.path(), clean.clone(), None).await;
        assert_eq!(r.phase(), Phase::RolledBack);
        let total = clean.lock().unwrap().executed;
        for k in 1..=total {
            let dir = tempfile::tempdir().unwrap();
            let world = Arc::new(Mutex::new(World {
                judge: judge.clone(),
                ..World::default()
            }));
            let (r, _) = crash_and_resume(dir.path(), world.clone(), Some(k)).await;
            let w = world.lock().unwrap();
            assert_eq!(r.phase(), Phase::RolledBack, "crash after effect {k}");
            assert_eq!(
                commits_of(&w),
                ["5%", "10%", "revert"],
                "crash after effect {k}"
            );
            assert_eq!(r.reverted_as(), Some(w.git[2].0.as_str()));
            assert!(r.rollback().unwrap().0.evidence.contains("canary 4.1%"));
            assert!(
                w.labels.contains("deploy/rolled-back"),
                "crash after effect {k}"
            );
            assert!(w.held.contains("checkout"), "crash after effect {k}");
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_on_a_later_tick() {
        let dir = tempfile::tempdir().unwrap();
        // Effect 1 is the first CommitStep.
        let world = Arc::new(Mutex::new(World {
            fail_once: Some(1),
            ..World::default()
        }));
        let (r, _) = crash_and_resume(dir.path(), world.clone(), None).await;
        assert_eq!(r.phase(), Phase::Complete);
        assert_eq!(
            commits_of(&world.lock().unwrap()),
            ["5%", "10%", "25%", "50%", "100%"]
        );
        let store = Store::open(&dir.path().join("deploybot.sqlite3")).unwrap();
        let trail = store.history("checkout").unwrap();
        let failed = trail
            .iter()
            .position(|e| e.cause == "effect_failed")
            .unwrap();
        assert!(
            trail[failed].note.contains("retrying after 30s"),
            "{}",
            trail[failed].note
        );
        assert!(
            trail[failed + 1..].iter().any(|e| e.cause == "tick"
                && matches!(e.effects.first(), Some(Effect::CommitStep { .. }))),
            "a later tick re-issues the commit"
        );
    }

    #[tokio::test]
    async fn a_newer_version_supersedes_the_live_rollout_of_its_service_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(Mutex::new(World::default()));
        let store = Store::open(&dir.path().join("deploybot.sqlite3")).unwrap();
        let driver = Driver::new(store, FakeRunner(world.clone()));
        let assessed = || Input::Assessed {
            risk_score: 0.4,
            strategy: Strategy::Canary5,
            approval_required: false,
        };
        let first = Rollout::new(trigger("d-1", "checkout", "production"), fast(), t(0));
        driver
            .start(&first, "@alice", assessed(), t(0))
            .await
            .unwrap();
        // A plain start of a second version is refused: one live rollout per service and env.
        let second = Rollout::new(trigger("d-2", "checkout", "production"), fast(), t(10));
        assert!(
            driver
                .start(&second, "@bob", assessed(), t(10))
                .await
                .is_err()
        );
        driver
            .supersede_then_start("d-1", &second, "@bob", assessed(), t(10))
            .await
            .unwrap();
        let old = driver.store().get("d-1").unwrap().unwrap();
        assert_eq!(old.phase(), Phase::Superseded);
        let live: Vec<String> = driver
            .store()
            .live()
            .unwrap()
            .into_iter()
            .map(|r| r.deploy_id)
            .collect();
        assert_eq!(live, ["d-2"]);
        let history = driver.store().history("checkout").unwrap();
        assert!(
            history.iter().any(|e| e.rollout_id == "d-1"
                && e.cause == "superseded"
                && e.actor == "rollout d-2")
        );
        // The older rollout's step is reverted first; the newer one starts from there.
        assert_eq!(commits_of(&world.lock().unwrap()), ["5%", "revert", "5%"]);
    }

    /// An accelerated clock: every reading is 30 s after the previous one, whatever the wall
    /// clock does, so the loop's simulated time is deterministic.
    struct SteppingClock(AtomicI64);

    impl deploybot::shell::driver::Clock for SteppingClock {
        fn now(&self) -> DateTime<Utc> {
            t(self.0.fetch_add(30, Ordering::SeqCst))
        }
    }

    #[tokio::test]
    async fn the_run_loop_recovers_then_ticks_a_rollout_to_completion() {
        let dir = tempfile::tempdir().unwrap();
        let world = Arc::new(Mutex::new(World::default()));
        let db = dir.path().join("deploybot.sqlite3");
        // A rollout left mid-commit by a previous process: the record says 25% is being committed.
        {
            let store = Store::open(&db).unwrap();
            let r = Rollout::new(trigger("d-1", "checkout", "production"), fast(), t(0));
            store.create(&r, "@alice").unwrap();
            let input = Input::Assessed {
                risk_score: 0.4,
                strategy: Strategy::Canary25,
                approval_required: false,
            };
            let tr = step(&r, input.clone(), t(0));
            store.save(&r, &input, &tr).unwrap();
        }
        let store = Store::open(&db).unwrap();
        let driver = Driver::new(store.clone(), FakeRunner(world.clone()));
        let finished = async {
            // Bounded: the loop gets at most ~10 s of wall time to finish the rollout.
            for _ in 0..10_000 {
                if !store.get("d-1").unwrap().unwrap().is_live() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        let clock = SteppingClock(AtomicI64::new(0));
        driver
            .run(&clock, std::time::Duration::from_millis(1), finished)
            .await
            .unwrap();
        let r = driver.store().get("d-1").unwrap().unwrap();
        assert_eq!(r.phase(), Phase::Complete);
        assert_eq!(commits_of(&world.lock().unwrap()), ["25%", "50%", "100%"]);
    }
}

mod alerts {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Json;
    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use deploybot::adapters::alert::Alerts;
    use deploybot_core::config::AlertsSpec;
    use deploybot_core::rollout::{Level, Notice};
    use deploybot_core::secret::Secret;

    async fn hook(
        State(seen): State<Arc<Mutex<Vec<serde_json::Value>>>>,
        Json(body): Json<serde_json::Value>,
    ) -> StatusCode {
        seen.lock().unwrap().push(body);
        StatusCode::OK
    }

    /// The alerts section with `retries` and waits short enough for a test.
    fn spec(retries: u32, repeat_after: &str) -> AlertsSpec {
        deploybot::config::from_yaml(
            &format!(
                "alerts:\n  timeout: 5s\n  retries: {retries}\n  repeat_after: {repeat_after}\n"
            ),
            std::path::Path::new("t.yaml"),
        )
        .unwrap()
        .alerts
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn alerts_post_slack_compatible_text_and_keep_the_url_secret() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/services/T0/B0/s3cr3t", post(hook))
            .route("/broken", post(|| async { StatusCode::BAD_GATEWAY }))
            .route("/gone", post(|| async { StatusCode::NOT_FOUND }))
            .with_state(seen.clone());
        let base = serve(app).await;

        let url = format!("{base}/services/T0/B0/s3cr3t");
        let alerts = Alerts::new(Some(Secret::new(url)), &spec(0, "1h")).unwrap();
        let notice = Notice::RolledBack {
            reason: "judge: error_rate regressed at 10%".into(),
            evidence: "canary 4.1% vs baseline 0.3%".into(),
        };
        alerts.send("checkout/production d-1", Level::Warn, &notice);
        let body = wait_for(&seen, 1).await.pop().unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("[deploybot warning] checkout/production d-1: Rolled back"),
            "{text}"
        );
        assert!(text.contains("canary 4.1% vs baseline 0.3%"), "{text}");

        let broken =
            Alerts::new(Some(Secret::new(format!("{base}/broken"))), &spec(0, "1h")).unwrap();
        let err = broken.post("s").await.unwrap_err();
        assert!(
            err.is_transient() && err.to_string().contains("502"),
            "{err}"
        );
        let gone = Alerts::new(Some(Secret::new(format!("{base}/gone"))), &spec(3, "1h")).unwrap();
        let err = gone.post("s").await.unwrap_err();
        assert!(!err.is_transient(), "a 404 is not retried: {err}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://{}/hook/s3cr3t", listener.local_addr().unwrap());
        drop(listener);
        let err = Alerts::new(Some(Secret::new(dead)), &spec(0, "1h"))
            .unwrap()
            .post("s")
            .await
            .unwrap_err();
        assert!(err.is_transient());
        assert!(
            !err.to_string().contains("s3cr3t"),
            "the URL is a secret: {err}"
        );

        // Without a webhook, an alert is a log line only and posting always succeeds.
        let quiet = Alerts::new(None, &spec(0, "1h")).unwrap();
        quiet.send("s", Level::Info, &notice);
        quiet.post("s").await.unwrap();
    }

    /// The posts the hook received.
    type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

    /// Waits until `seen` holds `n` posts (or fails after five seconds).
    async fn wait_for(
        seen: &Arc<Mutex<Vec<serde_json::Value>>>,
        n: usize,
    ) -> Vec<serde_json::Value> {
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen.lock().unwrap().clone()
    }

    /// Issue 17.9: an alert sink that fails a few times still gets the alert (retried with
    /// backoff), and the same alert raised on every tick pages once.
    #[tokio::test]
    async fn alerts_are_retried_and_sent_once_per_incident() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(2));
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State((seen, failures)): State<(
                        Seen,
                        Arc<std::sync::atomic::AtomicUsize>,
                    )>,
                     Json(body): Json<serde_json::Value>| async move {
                        use std::sync::atomic::Ordering::SeqCst;
                        if failures.load(SeqCst) > 0 {
                            failures.fetch_sub(1, SeqCst);
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        seen.lock().unwrap().push(body);
                        StatusCode::OK
                    },
                ),
            )
            .with_state((seen.clone(), failures.clone()));
        let base = serve(app).await;
        let alerts =
            Alerts::new(Some(Secret::new(format!("{base}/hook"))), &spec(3, "1h")).unwrap();
        let paused = Notice::Paused {
            reason: "metrics unavailable".into(),
        };
        for _tick in 0..10 {
            alerts.send("checkout/production d-1", Level::Warn, &paused);
        }
        // Two 503s, then delivered: the retries wait 1 s and 2 s.
        let posted = wait_for(&seen, 1).await;
        assert_eq!(posted.len(), 1, "delivered after two failures");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(seen.lock().unwrap().len(), 1, "one page for ten ticks");
        // Another incident is another page.
        let rolled = Notice::RolledBack {
            reason: "r".into(),
            evidence: "e".into(),
        };
        alerts.send("checkout/production d-1", Level::Warn, &rolled);
        assert_eq!(wait_for(&seen, 2).await.len(), 2);
    }
}

#[test]
fn a_bad_rollout_config_names_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "gitops:\n  repo_url: file:///srv/gitops.git\n\
         argocd:\n  url: https://argocd.example.com\n\
         services:\n  - name: checkout\n    app_repo: o/checkout\n    rollout:\n      \
         canary_plan: [10, 5, 100]\n      analysis_interval: '0'\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["check-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    for want in [
        "services[0].rollout.canary_plan: weights must strictly increase, but 5 follows 10",
        "services[0].rollout.analysis_interval: must be at least 1s",
        "argocd.token_env or argocd.token_file: required with argocd.url",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// The canary judge's evidence across steps is named by the stored record: a process killed
/// between steps and started again on the same store reads the same earlier steps and the same
/// history span again (the metrics themselves stay in Prometheus; `shell::runner` re-reads them
/// over these spans at every look).
#[test]
fn a_rollout_restarted_between_steps_keeps_the_spans_of_its_evidence() {
    use deploybot_core::rollout::StepSpan;
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = seed(dir.path());
        store.get("d-live").unwrap().unwrap().judge_spans()
    };
    let store = Store::open(&dir.path().join("deploybot.sqlite3")).unwrap();
    let after = store.get("d-live").unwrap().unwrap().judge_spans();
    assert_eq!(after, before);
    // live at 10 % after the 5 % step, which ran from its commit to the 10 % one
    assert_eq!(
        after.earlier,
        vec![StepSpan {
            weight: Weight::new(5).unwrap(),
            start: t(1),
            end: t(701),
        }]
    );
    assert_eq!(after.rollout_start, Some(t(1)));
    // canary_5: 5, 10, 25, 50 before 100
    assert_eq!(after.planned_steps, 4);
    assert!(!after.last_step);
}
