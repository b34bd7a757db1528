//! Scenario files on disk: the recorded canary analyses (`deploybot-canary-scenario/1`, e.g.
//! `fixtures/canary-bench/scenarios/*.json`) and whole rollouts (`deploybot-canary-rollout/1`,
//! `fixtures/canary-bench/rollouts/*.json`) that `deploybot judge`, `bench canary` and the demo
//! replay. This module reads the file; the core (`deploybot_core::canary::scenario`) parses the
//! text and never touches the file system.

use std::path::{Path, PathBuf};

use deploybot_core::canary::scenario::{
    ParseError, RolloutLabels, RolloutScenario, Scenario, ScenarioLabels,
};

/// Why a scenario file could not be read. Each message carries its cause, so none has a
/// `source()` to print a second time.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading scenario {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("parsing scenario {path}: {cause}")]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("scenario {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads one scenario file (what a judge may see).
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&read(path)?).map_err(|e| parse_error(path, e))
}

/// Reads the answer key of a scenario file (for scoring only).
pub fn load_labels(path: &Path) -> Result<ScenarioLabels, ScenarioError> {
    ScenarioLabels::parse(&read(path)?).map_err(|e| parse_error(path, e))
}

/// Reads one rollout file (what a judge may see).
pub fn load_rollout(path: &Path) -> Result<RolloutScenario, ScenarioError> {
    RolloutScenario::parse(&read(path)?).map_err(|e| parse_error(path, e))
}

/// Reads the answer key of a rollout file (for scoring only).
pub fn load_rollout_labels(path: &Path) -> Result<RolloutLabels, ScenarioError> {
    RolloutLabels::parse(&read(path)?).map_err(|e| parse_error(path, e))
}

fn read(path: &Path) -> Result<String, ScenarioError> {
    std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read {
        path: path.to_path_buf(),
        cause,
    })
}

fn parse_error(path: &Path, e: ParseError) -> ScenarioError {
    match e {
        ParseError::Json(cause) => ScenarioError::Parse {
            path: path.to_path_buf(),
            cause,
        },
        ParseError::Invalid(message) => ScenarioError::Invalid {
            path: path.to_path_buf(),
            message,
        },
    }
}
