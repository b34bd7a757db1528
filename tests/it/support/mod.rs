//! Helpers shared by the integration tests, and the one fake GitHub API they all use.

use std::path::PathBuf;

/// This crate's own `fixtures/`: everything the tests read is in the repository, so a fresh
/// clone tests the same as CI.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub mod fake_github;
pub mod git_http;
pub mod golden;
pub mod prometheus;
pub mod rollout;
pub mod serve;
pub mod tool;
