//! The Prometheus metrics source: PromQL over the HTTP API, turned into per-interval counter
//! increments for the canary judge. Missing data is reported as missing, never as zero.
//!
//! - [`api`]: the HTTP client (`/api/v1/query`, `/api/v1/query_range`), JSON parsing, retries.
//! - [`source`]: [`PrometheusSource`], the [`deploybot_core::canary::sample::MetricsSource`] that
//!   builds a [`deploybot_core::canary::sample::Window`] from the query results, rendering the
//!   `{{service}}`/`{{track}}`/... PromQL templates of `deploybot_core::canary::query`.
//!
//! `deploybot analyze` (`cli::analyze`) is the command line over it.
//!
//! This module does not judge: the verdict belongs to `deploybot_core::canary`.

pub mod api;
#[cfg(test)]
mod fake;
pub mod source;

pub use api::PrometheusClient;
pub use deploybot_core::canary::query::QueryTemplates;
pub use deploybot_core::config::PrometheusSpec;
pub use deploybot_core::duration::PromDuration;
pub use source::PrometheusSource;
