//! A fake Prometheus for unit tests: a real axum server on 127.0.0.1:0 whose answers a test
//! scripts, in the JSON shapes of the real `/api/v1/query` and `/api/v1/query_range`. It records
//! every request so tests can check what was asked and how often (retries).
//!
//! It does not evaluate PromQL; `tests/it/prometheus.rs` runs the real server for that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::adapters::prometheus::{PromDuration, PrometheusClient, PrometheusSpec};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Self {
        Reply {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

/// What the fake saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub params: HashMap<String, String>,
    pub authorization: Option<String>,
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct FakeState {
    script: Arc<Script>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct FakePrometheus {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakePrometheus {
    /// Starts a server that answers each request with `script(request, index_of_request)`.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState {
            script: Arc::new(script),
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakePrometheus { url, seen, server }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A client with short timeouts and backoff, so retry tests take milliseconds.
    pub fn client(&self) -> PrometheusClient {
        PrometheusClient::from_config(&self.config(), None).unwrap()
    }

    pub fn config(&self) -> PrometheusSpec {
        PrometheusSpec {
            url: Some(deploybot_core::config::base_url(&self.url).unwrap()),
            timeout: PromDuration::from_millis(300),
            backoff: PromDuration::from_millis(10),
            max_backoff: PromDuration::from_millis(40),
            ..PrometheusSpec::default()
        }
    }
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    State(state): State<FakeState>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let seen = Seen {
        path: uri.path().to_string(),
        params,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let index = {
        let mut all = state.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let reply = (state.script)(&seen, index);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", "application/json")],
        reply.body,
    )
        .into_response()
}

/// Labels of a scripted series, e.g. `&[("le", "0.5")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A `matrix` answer: each series is its labels and its `(unix seconds, value)` points, values
/// spelled as Prometheus spells them (`"NaN"`, `"+Inf"`).
pub fn matrix(series: &[(Labels<'_>, Vec<(i64, &str)>)]) -> String {
    let result: Vec<serde_json::Value> = series
        .iter()
        .map(|(labels, points)| {
            let metric: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            let values: Vec<serde_json::Value> = points
                .iter()
                .map(|(t, v)| serde_json::json!([*t, *v]))
                .collect();
            serde_json::json!({"metric": metric, "values": values})
        })
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
        .to_string()
}
