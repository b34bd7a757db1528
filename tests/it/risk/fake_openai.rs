//! A fake OpenAI-compatible server (axum on 127.0.0.1:0) speaking the chat-completions wire
//! format: each request pops the next scripted reply and is recorded for assertions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One scripted reply.
#[derive(Clone)]
pub enum Reply {
    /// A chat completion whose message content is this text.
    Content(String),
    /// A chat completion with a refusal.
    Refusal(String),
    /// Any status, headers and raw body.
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Sleep, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
    /// Decide from the user prompt (e.g. a model that obeys injected instructions).
    Judge(fn(&str) -> String),
}

/// A recorded request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub body: serde_json::Value,
    pub authorization: Option<String>,
}

impl Seen {
    pub fn user_prompt(&self) -> String {
        self.body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[derive(Clone, Default)]
struct Shared {
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Used when the script is empty.
    fallback: Arc<Mutex<Option<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeOpenAi {
    pub async fn start(script: Vec<Reply>) -> FakeOpenAi {
        let shared = Shared {
            script: Arc::new(Mutex::new(script.into())),
            ..Shared::default()
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOpenAi { addr, shared }
    }

    /// The reply for every request once the script is used up.
    pub fn always(&self, reply: Reply) {
        *self.shared.fallback.lock().unwrap() = Some(reply);
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

/// The JSON a model returns for a verdict.
pub fn verdict(
    score: f64,
    strategy: &str,
    approval: bool,
    factors: &[&str],
    rationale: &str,
) -> String {
    serde_json::json!({
        "risk_score": score,
        "risk_factors": factors,
        "recommended_strategy": strategy,
        "requires_manual_approval": approval,
        "rationale": rationale,
    })
    .to_string()
}

fn completion(content: Option<&str>, refusal: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1_764_000_000u32,
        "model": "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    })
}

async fn handle(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let seen = Seen {
        body: body.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    s.seen.lock().unwrap().push(seen.clone());
    let next = s.script.lock().unwrap().pop_front();
    let reply = next.or_else(|| s.fallback.lock().unwrap().clone());
    match reply {
        Some(r) => render(r, &seen.user_prompt()).await,
        None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
    }
}

fn render(
    r: Reply,
    prompt: &str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
    Box::pin(async move {
        match r {
            Reply::Content(c) => axum::Json(completion(Some(&c), None)).into_response(),
            Reply::Refusal(t) => axum::Json(completion(None, Some(&t))).into_response(),
            Reply::Judge(f) => axum::Json(completion(Some(&f(prompt)), None)).into_response(),
            Reply::Raw {
                status,
                headers,
                body,
            } => {
                let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (k, v) in headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                render(*inner, prompt).await
            }
        }
    })
}
