//! The rollout CLI (`status`, `history`) through the real binary against a seeded store, and
//! the `/api/rollouts` router through `tower::ServiceExt::oneshot`.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use deploybot::rollout::store::RolloutStore;
use deploybot::rollout::{
    Command as Cmd, Input, Observation, Rollout, Settings, Strategy, Trigger, Weight, step,
};
use deploybot::store::Store;

fn deploybot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(s)
}

fn trigger(id: &str, service: &str, env: &str) -> Trigger {
    Trigger {
        deploy_id: id.into(),
        service: service.into(),
        namespace: "shop".into(),
        environment: env.into(),
        image_tag: format!("sha-{id}"),
        previous_tag: "sha-0000000".into(),
        changed_files: vec!["src/pay.rs".into()],
        commit_message: "Faster payments".into(),
        author: "alice".into(),
        pull_request: Some(42),
    }
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
            (700, Input::Judged(Observation::Promote)),
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
                Input::Judged(Observation::Rollback {
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
            (700, Input::Judged(Observation::Promote)),
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
fn status_and_history_as_json_are_the_stored_records() {
    let dir = tempfile::tempdir().unwrap();
    drop(seed(dir.path()));
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = run(&["status", "--json", "--data-dir", data]);
    assert!(ok, "{err}");
    let rollouts: Vec<Rollout> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = rollouts.iter().map(|r| r.deploy_id.as_str()).collect();
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
        let resp = deploybot::rollout::api::api_router(store.clone())
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
