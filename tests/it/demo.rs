//! `deploybot demo` as a newcomer runs it: the real binary, the real git repository it leaves
//! behind, the real store it writes, and its exit code as the verdict.

use std::path::Path;
use std::process::{Command, Output};

use deploybot_core::rollout::store::RolloutStore;
use deploybot_core::rollout::{Phase, Rollout};

fn demo(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["demo", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    deploybot(&args)
}

fn rollouts(dir: &Path) -> Vec<Rollout> {
    let store =
        deploybot::adapters::store::Store::open(&dir.join("data/deploybot.sqlite3")).unwrap();
    store.recent(None, 100).unwrap()
}

fn git_log(dir: &Path) -> String {
    let out = Command::new("git")
        .args(["-C"])
        .arg(dir.join("gitops.git"))
        .args(["log", "--format=%H%n%an%n%B%n--end--", "main"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_default_demo_promotes_the_healthy_change_and_reverts_the_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ws");
    let out = demo(&dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("The demo behaved as designed."), "{stdout}");

    // The store says what happened, environment by environment.
    let all = rollouts(&dir);
    let find = |env: &str, tag: &str| {
        all.iter()
            .find(|r| r.environment() == env && r.image_tag() == tag)
            .unwrap_or_else(|| panic!("no rollout of {tag} in {env}: {all:#?}"))
    };
    assert_eq!(find("staging", "1.5.0").phase(), Phase::Complete);
    assert_eq!(find("production", "1.5.0").phase(), Phase::Complete);
    let bad = find("staging", "1.5.1");
    assert_eq!(bad.phase(), Phase::RolledBack);
    assert!(
        !all.iter()
            .any(|r| r.environment() == "production" && r.image_tag() == "1.5.1"),
        "a regression must never reach production"
    );

    // Git says the same: bot commits with trailers, and a revert carrying the judge's evidence.
    let log = git_log(&dir);
    let revert = bad.reverted_as().unwrap().to_string();
    let revert_msg = log
        .split("--end--")
        .find(|c| c.trim_start().starts_with(&revert))
        .unwrap();
    assert!(
        revert_msg.contains("Revert \"deploy(checkout/staging)"),
        "{revert_msg}"
    );
    assert!(revert_msg.contains("Evidence: canary "), "{revert_msg}");
    assert!(
        revert_msg.contains("Deploy-Id: checkout-staging-1.5.1"),
        "{revert_msg}"
    );
    let bot_commits = log.matches("\ndeploybot\n").count();
    // 1.5.0: 25, 50, 100 in two environments; 1.5.1: 5 and its revert.
    assert_eq!(bot_commits, 8, "{log}");

    // After the revert, staging's manifests are exactly what 1.5.0 left there.
    let show = |rev: &str, path: &str| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.join("gitops.git"))
            .args(["show", &format!("{rev}:{path}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    for file in [
        "deployment-canary.yaml",
        "httproute.yaml",
        "deployment.yaml",
    ] {
        let path = format!("apps/checkout/overlays/staging/{file}");
        assert_eq!(show("main", &path), show("main~2", &path), "{path}");
    }
    let route = show("main", "apps/checkout/overlays/production/httproute.yaml");
    assert!(
        route.contains("weight: 0  # deploybot: canary weight"),
        "{route}"
    );
    assert!(
        route.contains("# Gateway API traffic split"),
        "comments survive: {route}"
    );
}

fn scenario(name: &str) -> String {
    let p = crate::support::fixtures_dir().join(format!("canary-bench/scenarios/{name}.json"));
    assert!(p.exists(), "{}", p.display());
    p.display().to_string()
}

#[test]
fn an_unverifiable_canary_pauses_and_a_wrong_expectation_fails_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    // The shared suite's canary without metrics: the demo expects a hold and gets one.
    let dir = tmp.path().join("hold");
    let out = demo(
        &dir,
        &["--scenario", &scenario("canary-metrics-missing-00")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let all = rollouts(&dir);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(
        matches!(&all[0].phase(), Phase::Paused { reason } if reason.contains("canary")),
        "{:?}",
        all[0].phase()
    );
    assert!(
        all[0].commits.len() == 1,
        "paused at its first step, nothing promoted"
    );

    // A regressed recording labelled healthy: the demo must say it did not go as expected.
    let text = std::fs::read_to_string(scenario("errors-x5.0-00")).unwrap();
    let lying = tmp.path().join("lying.json");
    std::fs::write(
        &lying,
        text.replace("\"truth\":\"rollback\"", "\"truth\":\"promote\""),
    )
    .unwrap();
    assert!(
        std::fs::read_to_string(&lying)
            .unwrap()
            .contains("\"truth\":\"promote\"")
    );
    let out = demo(
        &tmp.path().join("lying"),
        &["--scenario", lying.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("UNEXPECTED rolled back in staging"),
        "{stdout}"
    );
}

#[test]
fn a_used_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let out = demo(tmp.path(), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

fn deploybot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .env_remove("DEPLOYBOT_CONFIG")
        .output()
        .unwrap()
}

/// The operator CLI against the workspace the demo leaves behind: start a tag by hand, steer
/// it, roll it back through git, and find the service held until released.
#[test]
fn operators_start_steer_and_roll_back_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ws");
    assert!(demo(&dir, &[]).status.success());
    let config = dir.join("deploybot.yaml");
    let config = config.to_str().unwrap();
    let before = git_log(&dir).matches("--end--").count();

    let out = deploybot(&[
        "rollout",
        "start",
        "--config",
        config,
        "checkout",
        "2.0.0",
        "--strategy",
        "canary_10",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checkout-staging-2.0.0"), "{stdout}");
    let log = git_log(&dir);
    assert_eq!(
        log.matches("--end--").count(),
        before + 1,
        "the first step is committed"
    );
    assert!(log.contains("Weight: 10"), "{log}");

    // Refused commands say why and exit 3; accepted ones move the rollout.
    let out = deploybot(&[
        "rollout",
        "resume",
        "--config",
        config,
        "checkout-staging-2.0.0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = deploybot(&[
        "rollout",
        "pause",
        "--config",
        config,
        "checkout-staging-2.0.0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = deploybot(&[
        "rollout",
        "rollback",
        "--config",
        config,
        "checkout-staging-2.0.0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let log = git_log(&dir);
    assert_eq!(log.matches("--end--").count(), before + 2, "{log}");
    let newest = log.split("--end--").next().unwrap();
    assert!(
        newest.contains("Revert \"deploy(checkout/staging)"),
        "{newest}"
    );
    assert!(
        newest.contains("Deploy-Id: checkout-staging-2.0.0"),
        "{newest}"
    );
    let r = rollouts(&dir)
        .into_iter()
        .find(|r| r.deploy_id == "checkout-staging-2.0.0")
        .unwrap();
    assert_eq!(r.phase(), Phase::RolledBack);
    assert!(r.reverted_as().is_some());

    // Held: nothing ships to staging until someone releases it.
    let out = deploybot(&["rollout", "start", "--config", config, "checkout", "2.0.1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("checkout/staging is held"), "{stderr}");
    assert_eq!(git_log(&dir).matches("--end--").count(), before + 2);
    let out = deploybot(&[
        "rollout", "release", "--config", config, "checkout", "staging",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("released"));
    let out = deploybot(&["rollout", "start", "--config", config, "checkout", "2.0.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = deploybot(&["rollout", "pause", "--config", config, "no-such-rollout"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rollout \"no-such-rollout\""));
}
