//! The Prometheus HTTP API client: `/api/v1/query` and `/api/v1/query_range`, their JSON parsed
//! into plain series, and one error policy. A 4xx (bad query, bad auth) is permanent and never
//! retried; a 5xx, 429, timeout or connection error is transient and retried with bounded
//! exponential backoff, after which the server is reported unavailable.
//!
//! Deliberately knows nothing about canaries, tracks or counters: it returns what Prometheus said
//! (including `NaN` and `+Inf`) and leaves the meaning to [`super::source`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::PrometheusConfig;
use crate::canary::sample::MetricsError;
use crate::secret::Secret;

/// One series of a query result: its labels and its points, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// One sample: evaluation time in milliseconds since the epoch and the value as Prometheus sent
/// it (`NaN` and infinities included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_ms: i64,
    pub value: f64,
}

/// The series of a result and the warnings Prometheus attached (e.g. partial data from a
/// federated or remote-read store).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

/// A range query: evaluated at `start`, `start + step`, ... up to `end` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i64,
    pub end: i64,
    pub step_seconds: u64,
}

/// A client for one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
}

/// The outcome of one attempt, before the retry policy looks at it.
enum AttemptError {
    Permanent(String),
    Transient(String),
}

impl PrometheusClient {
    /// Builds a client from the `prometheus` config section; resolves the bearer token (if any)
    /// now, so a missing secret is reported at start-up and not at the first canary.
    pub fn from_config(config: &PrometheusConfig) -> Result<Self, String> {
        let url = config.url.as_deref().ok_or(
            "prometheus.url: not set (deploybot needs a Prometheus server to judge canaries)",
        )?;
        let base = parse_base_url(url).map_err(|e| format!("prometheus.url: {e}"))?;
        let token = match config.bearer_token_ref()? {
            Some(r) => Some(
                r.resolve()
                    .map_err(|e| format!("prometheus.bearer_token: {e}"))?,
            ),
            None => None,
        };
        let timeout = config.timeout.as_duration();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("deploybot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the Prometheus HTTP client: {e}"))?;
        Ok(PrometheusClient {
            http,
            base,
            token,
            timeout,
            retries: config.retries,
            backoff: config.backoff.as_duration(),
            max_backoff: config.max_backoff.as_duration(),
        })
    }

    /// The server's base URL (for messages).
    pub fn url(&self) -> &Url {
        &self.base
    }

    /// An instant query evaluated at `time` (unix seconds).
    pub async fn query(&self, promql: &str, time: i64) -> Result<QueryResult, MetricsError> {
        let params = vec![
            ("query", promql.to_string()),
            ("time", time.to_string()),
            ("timeout", server_timeout(self.timeout)),
        ];
        self.get_with_retries("api/v1/query", promql, &params).await
    }

    /// A range query: one point per step from `range.start` to `range.end` inclusive.
    pub async fn query_range(
        &self,
        promql: &str,
        range: Range,
    ) -> Result<QueryResult, MetricsError> {
        let params = vec![
            ("query", promql.to_string()),
            ("start", range.start.to_string()),
            ("end", range.end.to_string()),
            ("step", format!("{}s", range.step_seconds)),
            ("timeout", server_timeout(self.timeout)),
        ];
        self.get_with_retries("api/v1/query_range", promql, &params)
            .await
    }

    async fn get_with_retries(
        &self,
        path: &str,
        promql: &str,
        params: &[(&str, String)],
    ) -> Result<QueryResult, MetricsError> {
        let url = self.base.join(path).map_err(|e| {
            MetricsError::Permanent(format!("building URL {}{path}: {e}", self.base))
        })?;
        let mut last = String::new();
        for attempt in 0..=self.retries {
            match self.attempt(&url, params).await {
                Ok(result) => {
                    for w in &result.warnings {
                        tracing::warn!(url = %url, query = promql, warning = %w, "Prometheus warning");
                    }
                    return Ok(result);
                }
                Err(AttemptError::Permanent(m)) => {
                    return Err(MetricsError::Permanent(format!(
                        "querying {url} for `{promql}`: {m}"
                    )));
                }
                Err(AttemptError::Transient(m)) => {
                    tracing::warn!(url = %url, attempt = attempt + 1, error = %m, "Prometheus query failed, will retry if attempts remain");
                    last = m;
                    if attempt < self.retries {
                        tokio::time::sleep(self.backoff_before_retry(attempt)).await;
                    }
                }
            }
        }
        Err(MetricsError::Unavailable(format!(
            "querying {url} for `{promql}`: {last} (gave up after {} attempts)",
            self.retries + 1
        )))
    }

    /// Exponential backoff: `backoff`, `2 x backoff`, ... capped at `max_backoff`.
    fn backoff_before_retry(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }

    async fn attempt(
        &self,
        url: &Url,
        params: &[(&str, String)],
    ) -> Result<QueryResult, AttemptError> {
        let mut request = self.http.get(url.clone()).query(params);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            AttemptError::Transient(if e.is_timeout() {
                format!("no answer within {}", server_timeout(self.timeout))
            } else {
                format!("sending request: {}", error_chain(&e))
            })
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            AttemptError::Transient(if e.is_timeout() {
                format!("no complete answer within {}", server_timeout(self.timeout))
            } else {
                format!("reading response body: {}", error_chain(&e))
            })
        })?;
        classify(status, &body)
    }
}

/// Decides from status and body whether an answer is a result, a permanent or a transient error.
fn classify(status: StatusCode, body: &[u8]) -> Result<QueryResult, AttemptError> {
    if status.is_success() {
        return parse_response(body).map_err(AttemptError::Permanent);
    }
    let detail = api_error_detail(body).unwrap_or_else(|| snippet(body));
    let message = format!("HTTP {status}: {detail}");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(AttemptError::Transient(message))
    } else {
        Err(AttemptError::Permanent(message))
    }
}

/// The wire format of every API answer.
#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    // Absent when the sample is a native histogram, which this client does not read.
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// Parses a successful (2xx) API answer.
pub fn parse_response(body: &[u8]) -> Result<QueryResult, String> {
    let response: ApiResponse = serde_json::from_slice(body)
        .map_err(|e| format!("not a Prometheus API response ({e}): {}", snippet(body)))?;
    if response.status != "success" {
        return Err(format!(
            "status {:?}, {}: {}",
            response.status,
            response.error_type.as_deref().unwrap_or("no errorType"),
            response.error.as_deref().unwrap_or("no error message")
        ));
    }
    let data = response
        .data
        .ok_or("status \"success\" but no \"data\" in the response")?;
    let series = match data.result_type.as_str() {
        "matrix" => {
            let raw: Vec<MatrixSeries> = serde_json::from_value(data.result)
                .map_err(|e| format!("reading matrix result: {e}"))?;
            raw.into_iter()
                .map(|s| {
                    let points = s
                        .values
                        .iter()
                        .map(|(t, v)| point(*t, v))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Series {
                        labels: s.metric,
                        points,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?
        }
        "vector" => {
            let raw: Vec<VectorSample> = serde_json::from_value(data.result)
                .map_err(|e| format!("reading vector result: {e}"))?;
            raw.into_iter()
                .filter_map(|s| {
                    let (t, v) = s.value?;
                    Some(point(t, &v).map(|p| Series {
                        labels: s.metric,
                        points: vec![p],
                    }))
                })
                .collect::<Result<Vec<_>, String>>()?
        }
        "scalar" => {
            let (t, v): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| format!("reading scalar result: {e}"))?;
            vec![Series {
                labels: BTreeMap::new(),
                points: vec![point(t, &v)?],
            }]
        }
        other => return Err(format!("unsupported resultType {other:?}")),
    };
    Ok(QueryResult {
        series,
        warnings: response.warnings,
    })
}

fn point(t: f64, v: &str) -> Result<Point, String> {
    Ok(Point {
        t_ms: (t * 1000.0).round() as i64,
        value: parse_value(v)?,
    })
}

/// Prometheus sends values as strings, using Go's spellings of the special values.
pub fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => v
            .parse::<f64>()
            .map_err(|_| format!("sample value {v:?} is not a number")),
    }
}

/// `errorType: error` of an error answer, when the body is Prometheus JSON.
fn api_error_detail(body: &[u8]) -> Option<String> {
    let r: ApiResponse = serde_json::from_slice(body).ok()?;
    Some(format!(
        "{}: {}",
        r.error_type.as_deref().unwrap_or("error"),
        r.error.as_deref().unwrap_or("no message")
    ))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// The duration as the API's `timeout` parameter (Go duration syntax).
fn server_timeout(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Checks and normalises the base URL: http(s), and a trailing `/` so that joining
/// `api/v1/query` keeps a path prefix (Prometheus behind `--web.route-prefix=/prom`).
pub fn parse_base_url(url: &str) -> Result<Url, String> {
    let mut base = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if base.scheme() != "http" && base.scheme() != "https" {
        return Err(format!("{url:?}: scheme must be http or https"));
    }
    if base.host_str().is_none() {
        return Err(format!("{url:?}: no host"));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}
