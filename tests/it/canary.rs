//! The canary judge on the shared scenario suite (`fixtures/canary-bench`): the hard goals as a
//! correctness test (not a timing one), the references' published numbers as a check that the
//! scorer and the references are what they claim, and the `deploybot judge` CLI end to end.

use std::process::Command;

use deploybot::cli::bench::canary::{Case, generated, load_dir, score};
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
    let mut changed = Vec::new();
    for f in files {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
        v["truth"] = "promote".into();
        v["family"] = "misleading".into();
        v["effect"] = serde_json::json!({"error_rate_ratio": 1.0});
        let p = tmp.path().join(f);
        std::fs::write(&p, v.to_string()).unwrap();
        changed.push(p);
    }
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
