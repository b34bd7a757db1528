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

/// The largest scenario file read (a recorded day of one-minute steps is about 1 MB).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The most steps a scenario may have. A replay judges every prefix of the window, so its cost
/// grows with the square of the steps (50,000 steps took a minute); two days of one-minute
/// intervals is far beyond any analysis (`max_intervals` defaults to 30).
pub const MAX_STEPS: usize = 2880;

/// Reads one scenario file (what a judge may see), refusing what a judge cannot judge safely:
/// more than [`MAX_STEPS`] steps, or latency bucket bounds that are not increasing (the judge
/// would read its threshold from the wrong bucket).
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let scenario = Scenario::parse(&read(path)?).map_err(|e| parse_error(path, e))?;
    let invalid = |message: String| ScenarioError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let steps = scenario.window.intervals.len();
    if steps > MAX_STEPS {
        return Err(invalid(format!(
            "{steps} steps, more than the {MAX_STEPS} a replay accepts; split the recording"
        )));
    }
    let bounds = &scenario.window.latency_buckets_le;
    if let Some(i) = bounds.iter().position(|b| !(b.is_finite() && *b > 0.0)) {
        return Err(invalid(format!(
            "latency_buckets_le[{i}] is {}, not a positive number of seconds",
            bounds[i]
        )));
    }
    if let Some(i) = bounds.windows(2).position(|w| w[0] >= w[1]) {
        return Err(invalid(format!(
            "latency_buckets_le must increase, but [{i}] = {} is not below [{}] = {}",
            bounds[i],
            i + 1,
            bounds[i + 1]
        )));
    }
    Ok(scenario)
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
    use crate::adapters::input::{InputError, read_text};
    read_text(path, MAX_BYTES).map_err(|e| match e {
        InputError::Read { cause, .. } => ScenarioError::Read {
            path: path.to_path_buf(),
            cause,
        },
        InputError::TooLarge { limit, .. } => ScenarioError::Invalid {
            path: path.to_path_buf(),
            message: format!("larger than {limit} bytes, the most a scenario may be"),
        },
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
