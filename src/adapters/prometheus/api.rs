//! The Prometheus HTTP API client: `/api/v1/query` and `/api/v1/query_range`, their JSON parsed
//! into plain series, and one classification ([`classify`]). A 4xx (bad query, bad auth) is
//! permanent and never retried; a 5xx, 429, timeout or connection error is transient and
//! retried by the retry policy (`prometheus.retries`, doubling waits from `prometheus.backoff`
//! up to `prometheus.max_backoff`), after which the server is reported unavailable.
//!
//! Deliberately knows nothing about canaries, tracks or counters: it returns what Prometheus said
//! (including `NaN` and `+Inf`) and leaves the meaning to [`crate::adapters::prometheus::source`].

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::adapters::retry::retry;
use crate::adapters::secrets::Resolve;
use deploybot_core::config::{Config, EnvironmentSpec, PrometheusSpec};
use deploybot_core::failure::{Class, Failure};
use deploybot_core::retry::RetryPolicy;
use deploybot_core::secret::Secret;

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
    retry: RetryPolicy,
}

impl PrometheusClient {
    /// Builds a client from the `prometheus` config section; `token` is the bearer token read at
    /// start-up.
    pub fn from_config(config: &PrometheusSpec, token: Option<Secret>) -> Result<Self, String> {
        let base = config.url.clone().ok_or(
            "prometheus.url: not set (deploybot needs a Prometheus server to judge canaries)",
        )?;
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
            retry: RetryPolicy::doubling(
                config.retries.saturating_add(1),
                config.backoff.as_duration(),
                config.max_backoff.as_duration(),
            ),
        })
    }

    /// The client of `env`'s Prometheus: its own server (`services[].environments[].prometheus`,
    /// its token read now) with the top-level settings, else `prometheus.url` with `top_token`
    /// (`prometheus.bearer_token`, read at start-up).
    pub fn for_environment(
        config: &Config,
        service: &str,
        env: &EnvironmentSpec,
        top_token: Option<Secret>,
    ) -> Result<Self, String> {
        let Some(server) = config.prometheus_server(env) else {
            // Neither: the error that says prometheus.url is not set.
            return PrometheusClient::from_config(&config.prometheus, None);
        };
        let token = match &env.prometheus {
            // A server of the environment's own gets its own token, never the top-level one.
            Some(_) => server
                .bearer_token
                .as_ref()
                .map(|t| {
                    t.resolve().map_err(|e| {
                        format!(
                            "the Prometheus bearer token of {service}/{} ({}): {e}",
                            env.name, server.url
                        )
                    })
                })
                .transpose()?,
            None => top_token,
        };
        let spec = PrometheusSpec {
            url: Some(server.url),
            ..config.prometheus.clone()
        };
        PrometheusClient::from_config(&spec, token)
    }

    /// The server's base URL (for messages).
    pub fn url(&self) -> &Url {
        &self.base
    }

    /// An instant query evaluated at `time` (unix seconds).
    pub async fn query(&self, promql: &str, time: i64) -> Result<QueryResult, Failure> {
        let params = vec![
            ("query", promql.to_string()),
            ("time", time.to_string()),
            ("timeout", server_timeout(self.timeout)),
        ];
        self.get_with_retries("api/v1/query", promql, &params).await
    }

    /// A range query: one point per step from `range.start` to `range.end` inclusive.
    pub async fn query_range(&self, promql: &str, range: Range) -> Result<QueryResult, Failure> {
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
    ) -> Result<QueryResult, Failure> {
        let url = self.base.join(path).map_err(|e| {
            Failure::permanent(format!("building URL {}{path}", self.base), e.to_string())
        })?;
        let doing = format!("querying {url} for `{promql}`");
        let result = retry(&self.retry, tokio::time::sleep, |_| async {
            let (class, cause) = match self.attempt(&url, params).await {
                Ok(result) => return Ok(result),
                Err(failed) => failed,
            };
            Err(Failure::new(class, doing.as_str(), cause))
        })
        .await;
        match result {
            Ok(result) => {
                for w in &result.warnings {
                    tracing::warn!(url = %url, query = promql, warning = %w, "Prometheus warning");
                }
                Ok(result)
            }
            // Tried as often as the policy allows: the server is unavailable.
            Err(f) if f.is_transient() => Err(Failure {
                cause: format!(
                    "{} (gave up after {} attempts)",
                    f.cause, self.retry.max_attempts
                ),
                ..f
            }),
            Err(f) => Err(f),
        }
    }

    /// The retry policy of transient failures (for tests of its numbers).
    #[cfg(test)]
    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    async fn attempt(
        &self,
        url: &Url,
        params: &[(&str, String)],
    ) -> Result<QueryResult, (Class, String)> {
        let mut request = self.http.get(url.clone()).query(params);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            (
                Class::Transient,
                if e.is_timeout() {
                    format!("no answer within {}", server_timeout(self.timeout))
                } else {
                    format!("sending request: {}", error_chain(&e))
                },
            )
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            (
                Class::Transient,
                if e.is_timeout() {
                    format!("no complete answer within {}", server_timeout(self.timeout))
                } else {
                    format!("reading response body: {}", error_chain(&e))
                },
            )
        })?;
        classify(status, &body)
    }
}

/// Prometheus's one classification, from status and body: a result, or a failure that is
/// transient (5xx, 429; as are timeouts and connection errors, above) or permanent (any other
/// 4xx, an answer that is not Prometheus's).
fn classify(status: StatusCode, body: &[u8]) -> Result<QueryResult, (Class, String)> {
    if status.is_success() {
        return parse_response(body).map_err(|e| (Class::Permanent, e));
    }
    let detail = api_error_detail(body).unwrap_or_else(|| snippet(body));
    let message = format!("HTTP {status}: {detail}");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err((Class::Transient, message))
    } else {
        Err((Class::Permanent, message))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::prometheus::fake::{FakePrometheus, Reply, matrix};
    use deploybot_core::config::base_url;

    /// Verbatim shape of a Prometheus 2.x range answer with a warning.
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"le":"0.1"},"values":[[1700000060,"12"],[1700000120,"NaN"],[1700000180.5,"+Inf"]]},
        {"metric":{"le":"+Inf"},"values":[[1700000060,"-Inf"],[1700000120,"1e3"]]}]},
        "warnings":["PromQL info: metric might not be a counter"]}"#;

    #[test]
    fn parses_matrix_with_special_values_and_warnings() {
        let r = parse_response(MATRIX.as_bytes()).unwrap();
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.series[0].labels["le"], "0.1");
        let v: Vec<f64> = r.series[0].points.iter().map(|p| p.value).collect();
        assert_eq!(v[0], 12.0);
        assert!(v[1].is_nan());
        assert_eq!(v[2], f64::INFINITY);
        assert_eq!(r.series[0].points[2].t_ms, 1_700_000_180_500);
        assert_eq!(r.series[1].points[0].value, f64::NEG_INFINITY);
        assert_eq!(r.series[1].points[1].value, 1000.0);
        assert_eq!(
            r.warnings,
            vec!["PromQL info: metric might not be a counter"]
        );
    }

    #[test]
    fn parses_vector_scalar_and_empty() {
        let v = parse_response(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"track":"canary"},"value":[1700000000.123,"42"]}]}}"#,
        )
        .unwrap();
        assert_eq!(v.series[0].points[0].t_ms, 1_700_000_000_123);
        assert_eq!(v.series[0].points[0].value, 42.0);
        let s = parse_response(
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}"#,
        )
        .unwrap();
        assert_eq!(s.series[0].points[0].value, 1.0);
        let e =
            parse_response(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .unwrap();
        assert!(e.series.is_empty());
    }

    #[test]
    fn rejects_what_is_not_a_prometheus_answer() {
        assert!(
            parse_response(b"<html>login</html>")
                .unwrap_err()
                .contains("not a Prometheus API response")
        );
        assert!(
            parse_response(br#"{"status":"error","errorType":"bad_data","error":"x"}"#)
                .unwrap_err()
                .contains("bad_data")
        );
        assert!(parse_value("twelve").is_err());
    }

    #[tokio::test]
    async fn bad_query_is_permanent_and_not_retried() {
        let fake = FakePrometheus::start(|_, _| {
            Reply::status(
                400,
                r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \"}\""}"#,
            )
        })
        .await;
        let e = fake
            .client()
            .query("sum(x}", 1_700_000_000)
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "expected permanent, got {e:?}");
        let m = e.to_string();
        assert!(
            m.contains("bad_data") && m.contains("parse error") && m.contains("sum(x}"),
            "{m}"
        );
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_unavailable() {
        let fake = FakePrometheus::start(|_, _| {
            Reply::status(503, r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#)
        })
        .await;
        let range = Range {
            start: 60,
            end: 180,
            step_seconds: 60,
        };
        let e = fake.client().query_range("up", range).await.unwrap_err();
        assert!(e.is_transient(), "expected unavailable, got {e:?}");
        let m = e.to_string();
        assert!(
            m.contains("503") && m.contains("timed out") && m.contains("4 attempts"),
            "{m}"
        );
        // The first attempt plus the 3 retries of the default config, and no more.
        assert_eq!(fake.requests().len(), 4);
    }

    #[tokio::test]
    async fn transient_failure_then_success_returns_the_data() {
        let fake = FakePrometheus::start(|_, i| {
            if i < 2 {
                Reply::status(502, "Bad Gateway")
            } else {
                Reply::ok(matrix(&[(&[], vec![(120, "7")])]))
            }
        })
        .await;
        let range = Range {
            start: 120,
            end: 120,
            step_seconds: 60,
        };
        let r = fake.client().query_range("x", range).await.unwrap();
        assert_eq!(r.series[0].points[0].value, 7.0);
        let seen = fake.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].path, "/api/v1/query_range");
        assert_eq!(seen[2].params["query"], "x");
        assert_eq!(seen[2].params["start"], "120");
        assert_eq!(seen[2].params["end"], "120");
        assert_eq!(seen[2].params["step"], "60s");
    }

    #[tokio::test]
    async fn slow_server_times_out_and_is_unavailable_not_a_hang() {
        let fake = FakePrometheus::start(|_, _| Reply {
            delay: Duration::from_secs(5),
            ..Reply::ok(matrix(&[]))
        })
        .await;
        let e = fake.client().query("up", 0).await.unwrap_err();
        assert!(e.is_transient(), "expected unavailable, got {e:?}");
        assert!(e.to_string().contains("no answer within 300ms"), "{e}");
        assert_eq!(fake.requests().len(), 4);
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let config = PrometheusSpec {
            url: Some(base_url(&url).unwrap()),
            retries: 1,
            backoff: deploybot_core::duration::PromDuration::from_millis(5),
            ..PrometheusSpec::default()
        };
        let e = PrometheusClient::from_config(&config, None)
            .unwrap()
            .query("up", 0)
            .await
            .unwrap_err();
        assert!(
            e.is_transient() && e.to_string().contains("2 attempts"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn bearer_token_is_sent_and_never_printed() {
        let fake = FakePrometheus::start(|_, _| Reply::ok(matrix(&[]))).await;
        let client =
            PrometheusClient::from_config(&fake.config(), Some(Secret::new("s3cr3t"))).unwrap();
        client.query("up", 0).await.unwrap();
        assert_eq!(
            fake.requests()[0].authorization.as_deref(),
            Some("Bearer s3cr3t")
        );
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[test]
    fn base_url_keeps_a_path_prefix() {
        let u = base_url("http://h:9090/prom").unwrap();
        assert_eq!(
            u.join("api/v1/query").unwrap().as_str(),
            "http://h:9090/prom/api/v1/query"
        );
        assert!(base_url("file:///x").is_err());
        assert!(base_url("not a url").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = PrometheusSpec {
            url: Some(base_url("http://127.0.0.1:1").unwrap()),
            backoff: deploybot_core::duration::PromDuration::from_millis(100),
            max_backoff: deploybot_core::duration::PromDuration::from_millis(300),
            retries: 4,
            ..PrometheusSpec::default()
        };
        let c = PrometheusClient::from_config(&config, None).unwrap();
        let waits: Vec<u128> = (0..4)
            .map(|a| c.retry_policy().delay(a + 1, 0.0).unwrap().as_millis())
            .collect();
        assert_eq!(waits, vec![100, 200, 300, 300]);
        assert_eq!(c.retry_policy().delay(5, 0.0), None, "1 try + 4 retries");
    }
}
