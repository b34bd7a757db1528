//! Helpers shared by the integration tests, and the one fake GitHub API they all use.

use std::path::PathBuf;

/// `../shared/fixtures` beside the checkout, as CI lays it out.
#[allow(dead_code)]
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// This crate's own `fixtures/`.
#[allow(dead_code)]
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub mod fake_github;
pub mod git_http;
pub mod golden;
pub mod prometheus;
pub mod rollout;
