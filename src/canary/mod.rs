//! Canary judgement: a pure, statistical judge of canary against baseline, the reference judges it
//! is measured against, and the replay source of recorded scenarios.
//!
//! (Being built under issue 5.)

pub mod bench;
pub mod cli;
pub mod sample;

use serde::{Deserialize, Serialize};

/// The judge and its settings, per service (`services[].analysis.judge`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {}

impl JudgeConfig {
    pub fn validate(&self, _key: &str, _problems: &mut Vec<String>) {}
}
