//! Risk assessment of a pull request: a deterministic policy sets the floor, an optional LLM may
//! raise it; the result picks the rollout strategy and whether a human must approve.
//!
//! (Being built under issue 4.)

pub mod cli;

use serde::{Deserialize, Serialize};

/// The `risk` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub thresholds: RiskThresholds,
}

impl RiskConfig {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        self.thresholds
            .validate(&format!("{key}.thresholds"), problems);
    }
}

/// Score thresholds that map a risk score to a strategy and an approval requirement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskThresholds {}

impl RiskThresholds {
    pub fn validate(&self, _key: &str, _problems: &mut Vec<String>) {}
}
