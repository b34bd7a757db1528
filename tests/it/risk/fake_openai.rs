//! A fake OpenAI-compatible server (axum on 127.0.0.1:0) speaking the chat-completions wire
//! format: each request pops the next scripted reply and is recorded for assertions. As a local
//! server ([`Flavor`]) it also says its context the way llama.cpp and Ollama do
//! (fixtures/llm) and, like them, cuts a reply that does not fit in it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The server the fake stands for.
#[derive(Clone, Debug)]
pub enum Flavor {
    /// OpenAI: chat completions only, any context.
    OpenAi,
    /// Azure OpenAI's v1 API: under `/openai/v1`, authenticated by an `api-key` header with this
    /// key (a request without it gets Azure's 401).
    Azure { key: String },
    /// llama.cpp's `llama-server` with a context of `n_ctx` tokens: `GET /props`.
    LlamaCpp { n_ctx: u32 },
    /// Ollama: `POST /api/show`; the context is `num_ctx` (what the Modelfile sets; Ollama's
    /// default 2048 when unset), capped by the model's trained context.
    Ollama { num_ctx: Option<u32>, trained: u32 },
}

impl Flavor {
    /// The tokens one request can hold, prompt and reply together.
    fn context(&self) -> Option<u32> {
        match self {
            Flavor::OpenAi | Flavor::Azure { .. } => None,
            Flavor::LlamaCpp { n_ctx } => Some(*n_ctx),
            Flavor::Ollama { num_ctx, trained } => Some(num_ctx.unwrap_or(2048).min(*trained)),
        }
    }
}

/// Tokens as a small model's tokenizer counts a prompt: diffs and code run at about 3
/// characters a token (denser than the 4 deploybot estimates with), plus the chat template's
/// few tokens per message.
pub fn prompt_tokens(body: &serde_json::Value) -> u32 {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let chars: usize = messages
        .iter()
        .map(|m| m["content"].as_str().map_or(0, |c| c.chars().count()))
        .sum();
    u32::try_from(chars.div_ceil(3)).unwrap_or(u32::MAX) + 4 * messages.len() as u32 + 3
}

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
    pub api_key: Option<String>,
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
    flavor: Arc<Mutex<Option<Flavor>>>,
    /// Introspection requests (`GET /props`, `POST /api/show`), in order.
    probes: Arc<Mutex<Vec<String>>>,
}

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeOpenAi {
    pub async fn start(script: Vec<Reply>) -> FakeOpenAi {
        FakeOpenAi::start_as(Flavor::OpenAi, script).await
    }

    /// A fake of the `flavor` server.
    pub async fn start_as(flavor: Flavor, script: Vec<Reply>) -> FakeOpenAi {
        let shared = Shared {
            script: Arc::new(Mutex::new(script.into())),
            flavor: Arc::new(Mutex::new(Some(flavor.clone()))),
            ..Shared::default()
        };
        let chat = match flavor {
            Flavor::Azure { .. } => "/openai/v1/chat/completions",
            _ => "/v1/chat/completions",
        };
        let mut app = Router::new().route(chat, post(handle));
        match flavor {
            Flavor::LlamaCpp { .. } => app = app.route("/props", get(props)),
            Flavor::Ollama { .. } => app = app.route("/api/show", post(show)),
            Flavor::OpenAi | Flavor::Azure { .. } => {}
        }
        let app = app.with_state(shared.clone());
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
        match self.flavor() {
            Flavor::Azure { .. } => format!("http://{}/openai/v1", self.addr),
            _ => format!("http://{}/v1", self.addr),
        }
    }

    fn flavor(&self) -> Flavor {
        self.shared
            .flavor
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Flavor::OpenAi)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The introspection requests the server received.
    pub fn probes(&self) -> Vec<String> {
        self.shared.probes.lock().unwrap().clone()
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

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/fixtures/llm/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn props(State(s): State<Shared>) -> Response {
    s.probes.lock().unwrap().push("GET /props".into());
    let Some(Flavor::LlamaCpp { n_ctx }) = s.flavor.lock().unwrap().clone() else {
        unreachable!("routed for llama.cpp only")
    };
    let mut p = fixture("llama-cpp-props.json");
    p["default_generation_settings"]["n_ctx"] = n_ctx.into();
    axum::Json(p).into_response()
}

async fn show(State(s): State<Shared>, body: String) -> Response {
    s.probes
        .lock()
        .unwrap()
        .push(format!("POST /api/show {body}"));
    let Some(Flavor::Ollama { num_ctx, trained }) = s.flavor.lock().unwrap().clone() else {
        unreachable!("routed for Ollama only")
    };
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if asked["model"].as_str().is_none() {
        return (StatusCode::BAD_REQUEST, r#"{"error":"model is required"}"#).into_response();
    }
    let mut p = fixture("ollama-show.json");
    let params = p["parameters"].as_str().unwrap().to_string();
    let kept: Vec<&str> = params
        .lines()
        .filter(|l| !l.starts_with("num_ctx"))
        .collect();
    let mut lines: Vec<String> = kept.iter().map(|l| l.to_string()).collect();
    if let Some(n) = num_ctx {
        lines.insert(0, format!("num_ctx                        {n}"));
    }
    p["parameters"] = lines.join("\n").into();
    p["model_info"]["qwen2.context_length"] = trained.into();
    axum::Json(p).into_response()
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
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let seen = Seen {
        body: body.clone(),
        authorization: header("authorization"),
        api_key: header("api-key"),
    };
    s.seen.lock().unwrap().push(seen.clone());
    let flavor = s.flavor.lock().unwrap().clone().unwrap_or(Flavor::OpenAi);
    if let Flavor::Azure { key } = &flavor
        && seen.api_key.as_deref() != Some(key)
    {
        return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": {"code": "401", "message":
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}})),
            )
                .into_response();
    }
    let next = s.script.lock().unwrap().pop_front();
    let reply = next.or_else(|| s.fallback.lock().unwrap().clone());
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    if let Some(n_ctx) = flavor.context() {
        let prompt = prompt_tokens(&body);
        if prompt >= n_ctx {
            // llama.cpp's answer to a prompt larger than the slot.
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({"error": {"code": 400, "message":
                    "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error", "n_prompt_tokens": prompt, "n_ctx": n_ctx}})),
            )
                .into_response();
        }
        // Generation stops where the context ends: a reply longer than the room left is cut.
        let room = n_ctx - prompt;
        let content = match &reply {
            Reply::Content(c) => Some(c.clone()),
            Reply::Judge(f) => Some(f(&seen.user_prompt())),
            _ => None,
        };
        if let Some(content) = content.filter(|c| c.chars().count().div_ceil(3) > room as usize) {
            let kept: String = content.chars().take(room as usize * 3).collect();
            let mut c = completion(Some(&kept), None);
            c["choices"][0]["finish_reason"] = "length".into();
            return axum::Json(c).into_response();
        }
    }
    render(reply, &seen.user_prompt()).await
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
