//! The Prometheus metrics source: PromQL over the HTTP API, turned into per-interval counter
//! increments for the canary judge. Missing data is reported as missing, never as zero.
//!
//! (Being built under issue 5.)

pub mod cli;

use serde::{Deserialize, Serialize};

/// The `prometheus` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus server, e.g. `http://prometheus:9090`.
    pub url: Option<String>,
}

impl PrometheusConfig {
    pub fn validate(&self, _problems: &mut Vec<String>) {}
}

/// PromQL templates of a service's analysis.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryTemplates {}

impl QueryTemplates {
    pub fn validate(&self, _key: &str, _problems: &mut Vec<String>) {}
}
