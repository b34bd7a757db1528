//! The canary judge on the shared scenario suite (`fixtures/canary-bench`): the hard goals as a
//! correctness test (not a timing one), the references' published numbers as a check that the
//! scorer and the references are what they claim, and the `deploybot judge` CLI end to end; the
//! same for whole rollouts (`fixtures/canary-bench/rollouts`, issue 14's goals).

use std::process::Command;
use std::sync::{Arc, Mutex};

use deploybot::cli::bench::canary::{Case, generated, load_dir, score};
use deploybot::cli::bench::rollouts;
use deploybot_core::canary::scenario::Truth;
use deploybot_core::canary::{JudgeConfig, JudgeMethod};

fn shared_suite() -> Vec<Case> {
    let dir = crate::support::fixtures_dir().join("canary-bench/scenarios");
    let cases = load_dir(&dir).expect("loading the shared canary suite");
    assert_eq!(cases.len(), 185, "the shared suite has 185 scenarios");
    cases
}

#[test]
fn the_judge_meets_the_hard_goals_on_the_shared_suite() {
    let cases = shared_suite();
    let (s, families) = score(&cases, &JudgeConfig::default());
    assert_eq!(s.unverifiable, 15);
    assert_eq!(
        s.unverifiable_promoted, 0,
        "a canary that cannot be seen was promoted"
    );
    assert!(
        s.false_rollback_rate() <= 0.01,
        "false rollbacks {}/{}",
        s.false_rollbacks,
        s.healthy
    );
    assert!(
        s.regressions_promoted as f64 <= 0.05 * s.regressions as f64,
        "regressions promoted {}/{}",
        s.regressions_promoted,
        s.regressions
    );
    // the unmistakable regressions are all caught
    for family in [
        "errors-x5.0",
        "errors-x20.0",
        "latency-x2.0",
        "latency-tail",
        "latency-leak",
        "latency-x1.3",
    ] {
        let f = &families[family];
        assert_eq!(
            f.detected, f.regressions,
            "{family}: {}/{}",
            f.detected, f.regressions
        );
    }
    // and the whole set of gross regressions mostly
    assert!(
        s.gross_detected as f64 >= 0.85 * s.gross as f64,
        "gross {}/{}",
        s.gross_detected,
        s.gross
    );
    // it beats every reference on the dangerous error while detecting more than most
    for m in [
        JudgeMethod::ArticleMannWhitney,
        JudgeMethod::FixedThresholds,
        JudgeMethod::FixedHorizonMannWhitney,
    ] {
        let (r, _) = score(
            &cases,
            &JudgeConfig {
                method: m,
                ..Default::default()
            },
        );
        assert!(s.false_rollbacks <= r.false_rollbacks, "{}", m.name());
        assert!(
            s.regressions_promoted < r.regressions_promoted,
            "{}",
            m.name()
        );
        // and the subtle regressions are rolled back at least as often as by any reference
        assert!(
            s.subtle_detected >= r.subtle_detected,
            "subtle {}/{} against {} for {}",
            s.subtle_detected,
            s.subtle,
            r.subtle_detected,
            m.name()
        );
    }
}

#[test]
fn the_references_reproduce_the_published_numbers() {
    // ../shared/canary-bench/README.md: article 17.9 % / 86.0 % / 16 / 15; thresholds 35.7 % /
    // 69.3 % / 35 / 3; fixed horizon 7.1 % / 69.3 % / 35 / 0.
    let cases = shared_suite();
    let judge = |m| {
        score(
            &cases,
            &JudgeConfig {
                method: m,
                ..Default::default()
            },
        )
        .0
    };
    let a = judge(JudgeMethod::ArticleMannWhitney);
    assert_eq!((a.false_rollbacks, a.healthy), (10, 56));
    assert_eq!((a.detected, a.regressions), (98, 114));
    assert_eq!((a.regressions_promoted, a.unverifiable_promoted), (16, 15));
    let f = judge(JudgeMethod::FixedThresholds);
    assert_eq!(f.false_rollbacks, 20);
    assert_eq!(f.detected, 79);
    assert_eq!((f.regressions_promoted, f.unverifiable_promoted), (35, 3));
    let k = judge(JudgeMethod::FixedHorizonMannWhitney);
    assert_eq!(k.false_rollbacks, 4);
    assert_eq!(k.detected, 79);
    assert_eq!((k.regressions_promoted, k.unverifiable_promoted), (35, 0));
}

#[test]
fn the_judge_holds_its_false_rollback_rate_on_a_suite_it_never_saw() {
    let cases = generated(8, 4242);
    let (s, _) = score(&cases, &JudgeConfig::default());
    assert_eq!(s.unverifiable_promoted, 0);
    assert!(
        s.false_rollbacks <= 1,
        "false rollbacks {}/{}",
        s.false_rollbacks,
        s.healthy
    );
    assert!(s.regressions_promoted as f64 <= 0.05 * s.regressions as f64);
    assert!(
        s.detection_rate() >= 0.7,
        "detection {}",
        s.detection_rate()
    );
    assert!(cases.iter().any(|c| c.truth == Truth::Unverifiable));
}

fn deploybot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
}

#[test]
fn judge_cli_prints_one_json_object_per_scenario_and_ignores_the_answer_key() {
    let dir = crate::support::fixtures_dir().join("canary-bench/scenarios");
    let files = [
        "errors-x20.0-00.json",
        "canary-no-traffic-00.json",
        "healthy-ramp-00.json",
    ];
    let out = deploybot()
        .arg("judge")
        .arg("--json")
        .args(files.iter().map(|f| dir.join(f)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["decision", "reason", "scenario", "step"]);
    }
    assert_eq!(lines[0]["scenario"], "errors-x20.0-00");
    assert_eq!(lines[0]["decision"], "rollback");
    assert_eq!(lines[1]["decision"], "inconclusive");
    assert!(lines[1]["reason"].as_str().unwrap().contains("no traffic"));

    // Rewriting the answer key must not change a single byte of the output.
    let tmp = tempfile::tempdir().unwrap();
    let changed = with_a_misleading_answer_key(&dir, &files, tmp.path(), "promote");
    let again = deploybot()
        .arg("judge")
        .arg("--json")
        .args(&changed)
        .output()
        .unwrap();
    let first: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let second: Vec<String> = String::from_utf8(again.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(first, second);
}

#[test]
fn judge_cli_reports_bad_input_and_bad_config_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"format": "something-else/1"}"#).unwrap();
    let out = deploybot().arg("judge").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json"), "{err}");

    let scenario =
        crate::support::fixtures_dir().join("canary-bench/scenarios/healthy-flat-00.json");
    let cfg = tmp.path().join("judge.yaml");
    std::fs::write(&cfg, "alpha: 2\nerrors: {tolerance: 0.5}\n").unwrap();
    let out = deploybot()
        .arg("judge")
        .arg("--config")
        .arg(&cfg)
        .arg(&scenario)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("judge.alpha") && err.contains("judge.errors.tolerance"),
        "{err}"
    );

    // a selectable reference through the config file
    std::fs::write(&cfg, "method: article-mann-whitney\n").unwrap();
    let out = deploybot()
        .arg("judge")
        .arg("--config")
        .arg(&cfg)
        .arg(&scenario)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("promote at step 10") && text.contains("Mann-Whitney"),
        "{text}"
    );
}

fn shared_rollouts() -> Vec<rollouts::RolloutCase> {
    let dir = crate::support::fixtures_dir().join("canary-bench/rollouts");
    let cases = rollouts::load_dir(&dir).expect("loading the shared rollout suite");
    assert_eq!(
        cases.len(),
        146,
        "the shared rollout suite has 146 rollouts"
    );
    cases
}

/// Issue 14's hard goals on whole rollouts: no healthy rollout rolled back, at most 2 % of the
/// regressions completed, nothing unverifiable completed. "Every gross regression rolled back"
/// (75/76, the other paused) and the healthy-completion goal (95 %; 43/46) are not met
/// (docs/canary.md); their measured levels are pinned so that a change losing them shows here.
#[test]
fn the_judge_meets_the_hard_rollout_goals_on_the_shared_rollout_suite() {
    let cases = shared_rollouts();
    let (s, _) = rollouts::score(&cases, &JudgeConfig::default());
    assert_eq!((s.healthy, s.regressions, s.unverifiable), (46, 92, 8));
    assert!(
        s.false_rollbacks as f64 <= 0.01 * s.healthy as f64,
        "false rollbacks {}/{}",
        s.false_rollbacks,
        s.healthy
    );
    assert!(
        s.regressions_completed as f64 <= 0.02 * s.regressions as f64,
        "regressions completed {}/{}",
        s.regressions_completed,
        s.regressions
    );
    assert_eq!(
        s.unverifiable_completed, 0,
        "an unverifiable rollout was completed"
    );
    // errors-x3-low-traffic-02 pauses after 30 intervals of its first step instead (the last
    // look's budget is split over the plan's steps, docs/canary.md)
    assert!(
        s.gross_rolled_back + 1 >= s.gross,
        "gross rolled back {}/{}",
        s.gross_rolled_back,
        s.gross
    );
    assert!(
        s.healthy_completed >= 43,
        "healthy completed {}/{}",
        s.healthy_completed,
        s.healthy
    );
    assert!(s.median_minutes_to_complete().unwrap() <= 45.0);
}

#[test]
fn the_references_replayed_step_after_step_reproduce_the_published_rollout_numbers() {
    // ../shared/canary-bench/ROLLOUTS.md: healthy completed, false rollbacks, regressions
    // completed, gross rolled back, median gross exposure, unverifiable completed, median
    // minutes to complete.
    let cases = shared_rollouts();
    for (m, want) in [
        (
            JudgeMethod::ArticleMannWhitney,
            (29, 17, 1, 75, 50.0, 8, 25.0),
        ),
        (
            JudgeMethod::FixedThresholds,
            (26, 20, 18, 63, 15.0, 0, 30.0),
        ),
        (
            JudgeMethod::FixedHorizonMannWhitney,
            (45, 1, 19, 64, 75.0, 0, 60.0),
        ),
    ] {
        let (s, _) = rollouts::score(
            &cases,
            &JudgeConfig {
                method: m,
                ..Default::default()
            },
        );
        let got = (
            s.healthy_completed,
            s.false_rollbacks,
            s.regressions_completed,
            s.gross_rolled_back,
            s.median_gross_exposure().unwrap(),
            s.unverifiable_completed,
            s.median_minutes_to_complete().unwrap(),
        );
        assert_eq!(got, want, "{}", m.name());
    }
}

/// On a generated rollout suite the defaults were not chosen on, the hard goals hold too.
#[test]
fn the_judge_holds_the_hard_rollout_goals_on_rollouts_it_never_saw() {
    let cases = rollouts::generated(4, 4343);
    let (s, _) = rollouts::score(&cases, &JudgeConfig::default());
    assert!(s.unverifiable > 0);
    assert_eq!(s.unverifiable_completed, 0);
    assert!(
        s.false_rollbacks <= 1,
        "false rollbacks {}/{}",
        s.false_rollbacks,
        s.healthy
    );
    assert!(
        s.regressions_completed as f64 <= 0.02 * s.regressions as f64,
        "regressions completed {}/{}",
        s.regressions_completed,
        s.regressions
    );
}

#[test]
fn judge_cli_replays_whole_rollouts_in_the_issues_line_format() {
    let dir = crate::support::fixtures_dir().join("canary-bench/rollouts");
    let files = [
        "errors-x20.0-00.json",
        "canary-no-traffic-00.json",
        "healthy-flat-00.json",
    ];
    let run = |paths: &[std::path::PathBuf], json: bool| {
        let mut cmd = deploybot();
        cmd.arg("judge").arg("--rollout");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.args(paths).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
    let text = run(&paths, true);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // exactly the keys of the issue, in its order
    let key_order = keys_in_written_order(lines[2]);
    assert_eq!(
        key_order,
        ["scenario", "outcome", "step", "interval", "minutes"],
        "{}",
        lines[2]
    );
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["scenario"], "errors-x20.0-00");
    assert_eq!(v[0]["outcome"], "rollback");
    assert_eq!(v[0]["step"], 1);
    assert_eq!(v[1]["outcome"], "paused");
    assert_eq!(v[2]["outcome"], "complete");
    // a 4-step plan completes at its last step; minutes count every interval judged
    assert_eq!(v[2]["step"], 4);
    let (interval, minutes) = (
        v[2]["interval"].as_u64().unwrap(),
        v[2]["minutes"].as_u64().unwrap(),
    );
    assert!(interval >= 1 && minutes >= interval + 3, "{}", lines[2]);

    // Without --json: a readable table with a header and one row per file.
    let table = run(&paths, false);
    assert!(table.starts_with("rollout"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("healthy-flat-00") && table.contains("complete"));

    // Rewriting the answer key must not change a single byte of the output.
    let tmp = tempfile::tempdir().unwrap();
    let changed = with_a_misleading_answer_key(&dir, &files, tmp.path(), "complete");
    assert_eq!(run(&changed, true), text);
}

/// The top-level keys of one JSON object line, in the order they are written.
fn keys_in_written_order(line: &str) -> Vec<String> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .keys()
        .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// Copies `files` of `dir` into `to` with their answer key (truth, family, effect) rewritten.
fn with_a_misleading_answer_key(
    dir: &std::path::Path,
    files: &[&str],
    to: &std::path::Path,
    truth: &str,
) -> Vec<std::path::PathBuf> {
    files
        .iter()
        .map(|f| {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
            v["truth"] = truth.into();
            v["family"] = "misleading".into();
            v["effect"] = serde_json::json!({"error_rate_ratio": 1.0});
            let p = to.join(f);
            std::fs::write(&p, v.to_string()).unwrap();
            p
        })
        .collect()
}

/// What the runner asks the metrics source for, answered from a replay.
struct Recording {
    replay: Arc<deploybot::demo::ReplayWindows>,
    asked: Arc<Mutex<Vec<(i64, i64)>>>,
}

impl deploybot::shell::runner::WindowSource for Recording {
    async fn window(
        &self,
        rollout: &deploybot_core::rollout::Rollout,
        start: i64,
        end: i64,
        step_secs: u64,
    ) -> Result<deploybot_core::canary::sample::Window, deploybot_core::failure::Failure> {
        self.asked.lock().unwrap().push((start, end));
        self.replay.window(rollout, start, end, step_secs).await
    }
}

/// The production runner judges a rollout's later step on the earlier steps and the history
/// too, and a process killed between steps and started again on the same store asks for the
/// same evidence: the spans come from the stored record.
#[tokio::test]
async fn a_rollout_restarted_between_steps_is_judged_on_its_earlier_steps_again() {
    use deploybot::demo::{ReplayWindows, VirtualClock};
    use deploybot::shell::driver::Clock;
    use deploybot::shell::pipeline::{Gate, Pipeline, Release};
    use deploybot::shell::runner::{LiveRunner, RunnerParts};
    use deploybot_core::rollout::store::RolloutStore;

    let tmp = tempfile::tempdir().unwrap();
    let ws = deploybot::demo::workspace::Workspace::create(&tmp.path().join("ws")).unwrap();
    let config =
        Arc::new(deploybot::config::from_yaml(&ws.config_text(), &ws.config_path).unwrap());
    std::fs::create_dir_all(&ws.data_dir).unwrap();
    let db = config.store.database_path();
    let healthy = generated(1, 7)
        .into_iter()
        .find(|c| c.family == "healthy-flat")
        .unwrap()
        .scenario
        .window;
    let replay = Arc::new(ReplayWindows::new(vec![("1.0.0".into(), healthy)]));
    let clock = VirtualClock::starting_at(
        chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let pipeline = |asked: &Arc<Mutex<Vec<(i64, i64)>>>| {
        let store = deploybot::adapters::store::Store::open(&db).unwrap();
        let windows = Recording {
            replay: replay.clone(),
            asked: asked.clone(),
        };
        let parts = RunnerParts::offline(
            config.clone(),
            store.clone(),
            windows,
            Arc::new(clock.clone()),
        );
        Pipeline::new(config.clone(), store, LiveRunner::new(parts))
    };
    let release = Release {
        service: "checkout".into(),
        image_tag: "1.0.0".into(),
        previous_tag: "0.9.0".into(),
        changed_files: vec![],
        commit_message: "ship 1.0.0".into(),
        author: "dana".into(),
        pull_request: None,
        commit_sha: None,
    };
    let gate = Gate {
        risk_score: 0.3,
        strategy: deploybot_core::risk::Strategy::Canary25,
        approval_required: false,
    };

    // First process: until the rollout is live at its second step (50 %).
    let first_asked = Arc::new(Mutex::new(Vec::new()));
    let id = {
        let p = pipeline(&first_asked);
        let id = p
            .start(&release, gate, Some("staging"), "t", clock.now())
            .await
            .unwrap();
        for _ in 0..120 {
            p.tick(clock.advance(30)).await.unwrap();
            let r = p.store().get(&id).unwrap().unwrap();
            if r.step().is_some_and(|s| s.weight.percent() == 50) && r.commits.len() == 2 {
                break;
            }
        }
        id
    };
    // Second process on the same store: it judges the 50 % step on the 25 % one again.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let p = pipeline(&asked);
    let r = p.store().get(&id).unwrap().unwrap();
    assert_eq!(r.commits.len(), 2, "not at its second step: {r:#?}");
    let (first, second) = (r.commits[0].at.timestamp(), r.commits[1].at.timestamp());
    for _ in 0..40 {
        p.tick(clock.advance(30)).await.unwrap();
        if asked.lock().unwrap().iter().any(|&(s, _)| s == first) {
            break;
        }
    }
    let asked = asked.lock().unwrap().clone();
    let step_secs = r.settings.analysis_interval_secs as i64;
    assert!(
        asked
            .iter()
            .any(|&(s, e)| s == first && e <= second && e > s),
        "the 25 % step ({first}..{second}) was not read again: {asked:?}"
    );
    assert!(
        asked.contains(&(first - 60 * step_secs, first)),
        "the hour before the rollout was not read: {asked:?}"
    );
}
