//! Helpers shared by the integration tests, and the one fake GitHub API they all use.

use std::path::PathBuf;

/// This crate's own `fixtures/`: everything the tests read is in the repository, so a fresh
/// clone tests the same as CI.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs the binary with `args`; its stdout, once it exited 0 (else the test fails with both
/// streams).
pub fn deploybot_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .output()
        .expect("running deploybot");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploybot {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub mod fake_argocd;
pub mod fake_github;
pub mod git_http;
pub mod golden;
pub mod openapi;
pub mod postgres;
pub mod prometheus;
pub mod rollout;
pub mod serve;
pub mod tool;
