//! `deploybot assess` run as a binary.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::fixtures_dir;

fn deploybot() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deploybot"));
    c.env_remove("DEPLOYBOT_CONFIG");
    c
}

/// The JSON a successful `--json` run printed; a failed run fails the test with its stderr.
fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn assess_json_reports_the_policy_result() {
    let out = deploybot()
        .args(["assess", "--json", "--diff"])
        .arg(fixtures_dir().join("diffs/migration-deploybot-deliveries.diff"))
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["risk_score"], 0.7);
    assert_eq!(v["recommended_strategy"], "canary_5");
    assert_eq!(v["requires_manual_approval"], true);
    assert_eq!(v["source"], "policy");
    assert_eq!(v["risk_factors"][0]["category"], "migration");
    assert_eq!(v["risk_factors"][0]["source"], "policy");
}

#[test]
fn assess_reads_stdin_and_prints_a_summary() {
    let diff = std::fs::read(fixtures_dir().join("diffs/css-syn-token.diff")).unwrap();
    let mut child = deploybot()
        .args(["assess", "--diff", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&diff).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("risk score  0.120 (low)"), "{text}");
    assert!(text.contains("strategy    direct"), "{text}");
    assert!(text.contains("[policy] frontend"), "{text}");
}

#[test]
fn config_thresholds_and_patterns_apply() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        "risk:\n  thresholds:\n    approval_at: 0.1\n  categories:\n    frontend:\n      weight: 0.3\n",
    )
    .unwrap();
    let out = deploybot()
        .args(["assess", "--json", "--config"])
        .arg(&cfg)
        .arg("--diff")
        .arg(fixtures_dir().join("diffs/css-syn-token.diff"))
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["risk_score"], 0.3);
    assert_eq!(v["recommended_strategy"], "canary_25");
    assert_eq!(v["requires_manual_approval"], true);
}

#[test]
fn bad_inputs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_diff = dir.path().join("x.diff");
    std::fs::write(&not_a_diff, "just some text\n").unwrap();
    let bad_cfg = dir.path().join("c.yaml");
    std::fs::write(&bad_cfg, "risk:\n  thresholds:\n    approval_at: 3\n").unwrap();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["--diff".into(), dir.path().join("missing.diff").into()],
            "reading the diff",
        ),
        (
            vec!["--diff".into(), not_a_diff.clone().into()],
            "contains no file changes",
        ),
        (
            vec![
                "--diff".into(),
                not_a_diff.into(),
                "--config".into(),
                bad_cfg.into(),
            ],
            "risk.thresholds.approval_at",
        ),
        (vec![], "required"),
    ];
    for (args, want) in cases {
        let out = deploybot().arg("assess").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn assess_uses_the_configured_model_and_reports_both_sources() {
    use super::fake_openai::{FakeOpenAi, Reply, verdict};
    let server = FakeOpenAi::start(vec![Reply::Content(verdict(
        0.45,
        "canary_10",
        false,
        &["restyles the checkout button"],
        "Visible on the revenue path.",
    ))])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "llm:\n  base_url: {}\n  model: fake-model\n  timeout_ms: 5000\n",
            server.base_url()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .env_remove("DEPLOYBOT_CONFIG")
        .args(["assess", "--json", "--config"])
        .arg(&cfg)
        .arg("--diff")
        .arg(fixtures_dir().join("diffs/css-syn-token.diff"))
        .output()
        .await
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["risk_score"], 0.45);
    assert_eq!(v["recommended_strategy"], "canary_10");
    assert_eq!(v["source"], "llm");
    assert_eq!(v["model"], "fake-model");
    let sources: Vec<&str> = v["risk_factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["policy", "llm"]);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn assess_a_pull_request_through_the_github_api() {
    use crate::support::fake_github::{FakeGithub, file, webhook};
    let opened = webhook("pull_request", "opened");
    let gh = FakeGithub::start_with_pr(&opened).await;
    gh.push(
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        vec![file("api/orders.proto", "modified", 3, 1, Some("@@ -1,2 +1,4 @@\n message Order {\n+  string note = 7;\n+  int64 total = 8;\n-  int32 total = 3;\n+  reserved 3;\n }"))],
        &["Add order notes"],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "ghs_clitoken\n").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "github:\n  api_url: {}\n  token_file: {}\nstore:\n  data_dir: {}\n",
            gh.url(),
            dir.path().join("token").display(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let run = |publish: bool| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_deploybot"));
        c.env_remove("DEPLOYBOT_CONFIG")
            .args([
                "assess",
                "--json",
                "--repo",
                "Codertocat/Hello-World",
                "--pr",
                "2",
                "--config",
            ])
            .arg(&cfg);
        if publish {
            c.arg("--publish");
        }
        c.output()
    };
    let out = run(false).await.unwrap();
    let v = json_of(&out);
    assert_eq!(v["risk_factors"][0]["category"], "api_contract");
    assert_eq!(v["recommended_strategy"], "canary_5");
    assert!(gh.comments().is_empty(), "read-only without --publish");

    let out = run(true).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gh.comments().len(), 1);
    assert_eq!(gh.pr_labels(), ["bug", "risk/high"]);
    assert!(
        gh.state
            .lock()
            .unwrap()
            .authorization
            .iter()
            .all(|a| a == "Bearer ghs_clitoken")
    );
    assert!(dir.path().join("data/deploybot.sqlite3").exists());

    // A malformed repository name is refused before any request.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .env_remove("DEPLOYBOT_CONFIG")
        .args(["assess", "--repo", "not a repo", "--pr", "2"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("OWNER/NAME"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
