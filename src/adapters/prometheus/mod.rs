//! The Prometheus metrics source: PromQL over the HTTP API, turned into per-interval counter
//! increments for the canary judge. Missing data is reported as missing, never as zero.
//!
//! - [`api`]: the HTTP client (`/api/v1/query`, `/api/v1/query_range`), JSON parsing, retries.
//! - [`template`]: the `{{service}}`/`{{track}}`/... PromQL templates.
//! - [`source`]: [`PrometheusSource`], the [`deploybot_core::canary::sample::MetricsSource`] that builds
//!   a [`deploybot_core::canary::sample::Window`] from the query results.
//! - [`cli`]: `deploybot analyze`.
//!
//! This module does not judge: the verdict belongs to `deploybot_core::canary`.

pub mod api;
#[cfg(test)]
mod fake;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use api::PrometheusClient;
pub use deploybot_core::duration::PromDuration;
pub use source::PrometheusSource;

use deploybot_core::secret::SecretRef;

/// The `prometheus` config section: where the server is and how patiently to ask it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus server, e.g. `http://prometheus:9090` (a path prefix such as
    /// `http://host/prometheus` is kept).
    pub url: Option<String>,
    /// Time allowed for one HTTP request, also sent to Prometheus as the query `timeout`.
    pub timeout: PromDuration,
    /// How many times a transient failure (5xx, 429, timeout, connection refused) is retried
    /// before the source reports Prometheus unavailable. Bad queries (4xx) are never retried.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: PromDuration,
    /// Upper bound of the wait between retries.
    pub max_backoff: PromDuration,
    /// Environment variable holding a bearer token (Prometheus behind an auth proxy).
    pub bearer_token_env: Option<String>,
    /// File holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// An interval whose newest request-counter sample is older than this at the interval's end
    /// is stale and reported as missing (a dead scrape target must not look like a quiet one).
    pub staleness_limit: PromDuration,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: None,
            timeout: PromDuration::from_secs(10),
            retries: 3,
            backoff: PromDuration::from_millis(500),
            max_backoff: PromDuration::from_secs(5),
            bearer_token_env: None,
            bearer_token_file: None,
            staleness_limit: PromDuration::from_secs(120),
        }
    }
}

/// Retrying more than this only delays the moment a human learns that Prometheus is down.
const MAX_RETRIES: u32 = 10;

impl PrometheusConfig {
    pub fn bearer_token_ref(&self) -> Result<Option<SecretRef>, String> {
        SecretRef::from_pair(
            "prometheus.bearer_token",
            self.bearer_token_env.as_ref(),
            self.bearer_token_file.as_ref(),
        )
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        if let Some(url) = &self.url
            && let Err(e) = api::parse_base_url(url)
        {
            problems.push(format!("prometheus.url: {e}"));
        }
        if self.timeout.is_zero() {
            problems.push("prometheus.timeout: must be greater than 0s".into());
        }
        if self.retries > MAX_RETRIES {
            problems.push(format!(
                "prometheus.retries: at most {MAX_RETRIES}, got {}",
                self.retries
            ));
        }
        if self.backoff.is_zero() {
            problems.push("prometheus.backoff: must be greater than 0s".into());
        }
        if self.max_backoff < self.backoff {
            problems.push(format!(
                "prometheus.max_backoff: must be at least prometheus.backoff ({}), got {}",
                self.backoff, self.max_backoff
            ));
        }
        if self.staleness_limit.is_zero() {
            problems.push("prometheus.staleness_limit: must be greater than 0s".into());
        }
        if let Err(e) = self.bearer_token_ref() {
            problems.push(e);
        }
    }
}

/// Selects one service's series: the labels every default template uses.
const SELECTOR: &str = r#"service="{{service}}",namespace="{{namespace}}",track="{{track}}""#;

/// PromQL templates of a service's analysis (`services[].analysis.queries`). Each is evaluated
/// once per track and per interval and must return one series (or, for `latency`, one per `le`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryTemplates {
    /// Requests served by one track in one interval (a counter increment).
    pub requests: String,
    /// Failed requests of one track in one interval. Must give 0, not nothing, when the track
    /// served requests without errors: the default adds `or 0 * <requests>` for that.
    pub errors: String,
    /// Cumulative latency histogram of one track in one interval, one series per `le`.
    /// `null` disables latency analysis.
    pub latency: Option<String>,
    /// Timestamp (unix seconds) of the track's newest sample, for the staleness check.
    /// `null` disables the check.
    pub last_sample: Option<String>,
    /// Value of the `track` label ({{track}}) on the stable version's series.
    pub baseline_track: String,
    /// Value of the `track` label ({{track}}) on the canary's series.
    pub canary_track: String,
    /// Extra counters by metric name (`analysis.judge.extra`): events of one track in one
    /// interval, one series. Like `errors`, a template should give 0, not nothing, when the
    /// track served requests without such events; nothing counts as a missing sample.
    pub extra: BTreeMap<String, String>,
}

impl Default for QueryTemplates {
    fn default() -> Self {
        let requests =
            format!("sum(increase(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}]))");
        let errors = format!(
            "sum(increase(http_requests_total{{{SELECTOR},code=~\"5..\"}}[{{{{interval}}}}])) or 0 * {requests}"
        );
        QueryTemplates {
            requests,
            errors,
            latency: Some(format!(
                "sum by (le) (increase(http_request_duration_seconds_bucket{{{SELECTOR}}}[{{{{interval}}}}]))"
            )),
            last_sample: Some(format!("max(timestamp(http_requests_total{{{SELECTOR}}}))")),
            baseline_track: "baseline".into(),
            canary_track: "canary".into(),
            extra: BTreeMap::new(),
        }
    }
}

impl QueryTemplates {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        // Without {{track}} both tracks would read the same series and always look equal: a
        // canary judged against itself.
        let checks: [(&str, Option<&String>, &[&'static str]); 4] = [
            ("requests", Some(&self.requests), &["track"]),
            ("errors", Some(&self.errors), &["track"]),
            ("latency", self.latency.as_ref(), &["track"]),
            ("last_sample", self.last_sample.as_ref(), &["track"]),
        ];
        for (name, template, required) in checks {
            if let Some(t) = template
                && let Err(e) = deploybot_core::canary::query::check(t, required)
            {
                problems.push(format!("{key}.{name}: {e}"));
            }
        }
        for (name, t) in &self.extra {
            if !deploybot_core::canary::is_metric_name(name) {
                problems.push(format!(
                    "{key}.extra.{name}: {}",
                    deploybot_core::canary::METRIC_NAME_RULE
                ));
            }
            if let Err(e) = deploybot_core::canary::query::check(t, &["track"]) {
                problems.push(format!("{key}.extra.{name}: {e}"));
            }
        }
        for (name, value) in [
            ("baseline_track", &self.baseline_track),
            ("canary_track", &self.canary_track),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{key}.{name}: must not be empty"));
            }
        }
        if self.baseline_track == self.canary_track {
            problems.push(format!(
                "{key}.canary_track: must differ from {key}.baseline_track ({:?})",
                self.baseline_track
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(yaml: &str) -> Vec<String> {
        let c: PrometheusConfig = yaml_serde::from_str(yaml).unwrap();
        let mut p = Vec::new();
        c.validate(&mut p);
        p
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = PrometheusConfig::default();
        assert_eq!(c.retries, 3);
        assert!(problems_of("url: http://127.0.0.1:9090\n").is_empty());
        let mut p = Vec::new();
        QueryTemplates::default().validate("q", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn every_problem_names_its_key() {
        let p = problems_of(
            "url: ftp://x\ntimeout: 0s\nretries: 99\nbackoff: 2s\nmax_backoff: 1s\nbearer_token_env: A\nbearer_token_file: /b\n",
        )
        .join("\n");
        for key in [
            "prometheus.url",
            "prometheus.timeout",
            "prometheus.retries",
            "prometheus.max_backoff",
            "prometheus.bearer_token",
        ] {
            assert!(p.contains(key), "{key} missing in {p}");
        }
    }

    #[test]
    fn bad_duration_is_a_parse_error_naming_the_value() {
        let e = crate::config::Config::from_yaml(
            "prometheus:\n  timeout: 10\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"10\"") && e.contains("unit"), "{e}");
    }

    #[test]
    fn templates_without_track_or_with_typos_are_rejected() {
        let q: QueryTemplates = yaml_serde::from_str(
            "requests: sum(increase(x[{{interval}}]))\nerrors: 'x{a=\"{{servce}}\"}'\ncanary_track: baseline\n",
        )
        .unwrap();
        let mut p = Vec::new();
        q.validate("services[0].analysis.queries", &mut p);
        let p = p.join("\n");
        assert!(
            p.contains("services[0].analysis.queries.requests: must use {{track}}"),
            "{p}"
        );
        assert!(
            p.contains("services[0].analysis.queries.errors: unknown placeholder {{servce}}"),
            "{p}"
        );
        assert!(
            p.contains("services[0].analysis.queries.canary_track"),
            "{p}"
        );
    }

    #[test]
    fn latency_can_be_disabled_with_null() {
        let q: QueryTemplates = yaml_serde::from_str("latency: null\n").unwrap();
        assert_eq!(q.latency, None);
        assert_eq!(q.requests, QueryTemplates::default().requests);
    }

    #[test]
    fn the_example_config_documents_the_true_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploybot.yaml");
        let c = crate::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.services[0].analysis.queries, QueryTemplates::default());
        let p = &c.prometheus;
        let d = PrometheusConfig::default();
        assert!(p.url.is_some());
        assert_eq!(
            (
                p.timeout,
                p.retries,
                p.backoff,
                p.max_backoff,
                p.staleness_limit
            ),
            (
                d.timeout,
                d.retries,
                d.backoff,
                d.max_backoff,
                d.staleness_limit
            )
        );
    }
}
