//! The language-model adapter: an OpenAI-compatible chat-completions client that asks for a
//! structured risk assessment and validates the answer strictly.
//!
//! Request and response bodies are async-openai's types; the HTTP exchange is reqwest's, so that
//! the timeout, the retry bound and `Retry-After` are ours to decide (async-openai's built-in retry
//! layer would wait as long as a server asks). Nothing here decides risk: `risk::combine` takes the
//! verdict and may only use it to add caution.

use crate::adapters::clock::SystemClock;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, CreateChatCompletionResponse,
    FinishReason, ResponseFormat, ResponseFormatJsonSchema,
};
use deploybot_core::risk::model::{
    LlmError, ModelVerdict, RiskModel, fit_prompt_budget, known_context, parse_verdict,
    verdict_schema,
};

use crate::adapters::retry::retry;
use deploybot_core::clock::Clock as _;
use deploybot_core::config::{ModelAuth, ModelSpec};
use deploybot_core::retry::RetryPolicy;
use deploybot_core::secret::Secret;

/// The OpenAI-compatible client.
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: String,
    /// The server's root (the base URL without `/v1`), where llama.cpp and Ollama say how large
    /// the model's context is.
    origin: String,
    model: String,
    api_key: Option<Secret>,
    auth: ModelAuth,
    timeout: Duration,
    retry: RetryPolicy,
    max_output_tokens: u32,
    /// The model's context in tokens, asked once per process (`None`: the server did not say).
    context: tokio::sync::OnceCell<Option<u32>>,
    /// The lowered budget is logged at info once, not on every assessment.
    budget_logged: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// The client for the configured model; `api_key` is the `llm.api_key` read at start-up.
    pub fn new(spec: &ModelSpec, api_key: Option<Secret>) -> Result<LlmClient, LlmError> {
        let timeout = spec.timeout.as_duration();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("deploybot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("building the HTTP client: {e}")))?;
        let base = spec.base_url.as_str().trim_end_matches('/');
        Ok(LlmClient {
            http,
            endpoint: format!("{base}/chat/completions"),
            origin: base.strip_suffix("/v1").unwrap_or(base).to_string(),
            model: spec.model.clone(),
            api_key,
            auth: spec.auth,
            timeout,
            retry: retry_policy(spec),
            max_output_tokens: spec.max_output_tokens,
            context: tokio::sync::OnceCell::new(),
            budget_logged: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `req` with the API key, sent the way `llm.auth` says.
    fn authorized(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.api_key, self.auth) {
            (None, _) => req,
            (Some(key), ModelAuth::Bearer) => req.bearer_auth(key.expose()),
            (Some(key), ModelAuth::ApiKey) => req.header("api-key", key.expose()),
        }
    }

    /// The model's context in tokens: what the server says (llama.cpp's `GET /props`, then
    /// Ollama's `POST /api/show`), else the published size of a known hosted model, else `None`.
    /// Asked once; a server that answers neither costs two failed requests per process.
    pub async fn context_tokens(&self) -> Option<u32> {
        *self
            .context
            .get_or_init(|| async {
                let asked = match self.llama_cpp_context().await {
                    Some(n) => Some((n, "llama.cpp /props")),
                    None => self.ollama_context().await.map(|n| (n, "Ollama /api/show")),
                };
                let found = asked.or_else(|| known_context(&self.model).map(|n| (n, "known")));
                match found {
                    Some((n, source)) => {
                        tracing::info!(model = %self.model, context_tokens = n, source, "model context");
                    }
                    None => tracing::info!(
                        model = %self.model,
                        "the server does not say the model's context; llm.max_prompt_tokens is used as it is"
                    ),
                }
                found.map(|(n, _)| n)
            })
            .await
    }

    /// llama.cpp's server: `default_generation_settings.n_ctx` (the context of one slot, which
    /// is what one request gets), or a top-level `n_ctx` on older builds.
    async fn llama_cpp_context(&self) -> Option<u32> {
        let req = self.authorized(self.http.get(format!("{}/props", self.origin)));
        let props: serde_json::Value = self.probe(req).await?;
        let n = props["default_generation_settings"]["n_ctx"]
            .as_u64()
            .or_else(|| props["n_ctx"].as_u64())?;
        u32::try_from(n).ok().filter(|n| *n > 0)
    }

    /// Ollama: the `num_ctx` the model's Modelfile sets, else Ollama's smallest default (2048;
    /// its OpenAI-compatible endpoint takes no per-request context), never more than the
    /// model's trained `*.context_length`.
    async fn ollama_context(&self) -> Option<u32> {
        let req = self
            .authorized(self.http.post(format!("{}/api/show", self.origin)))
            .json(&serde_json::json!({ "model": self.model }));
        let show: serde_json::Value = self.probe(req).await?;
        if !show.is_object()
            || (show.get("parameters").is_none() && show.get("model_info").is_none())
        {
            return None;
        }
        const OLLAMA_DEFAULT_NUM_CTX: u32 = 2048;
        let num_ctx = show["parameters"].as_str().and_then(|p| {
            p.lines().find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("num_ctx"))
                    .then(|| words.next()?.parse::<u32>().ok())
                    .flatten()
            })
        });
        let trained = show["model_info"].as_object().and_then(|info| {
            info.iter()
                .find(|(k, _)| k.ends_with(".context_length"))
                .and_then(|(_, v)| u32::try_from(v.as_u64()?).ok())
        });
        let n = num_ctx.unwrap_or(OLLAMA_DEFAULT_NUM_CTX);
        Some(trained.map_or(n, |t| n.min(t)))
    }

    /// A JSON answer to an introspection request, or `None` for anything else: servers that do
    /// not have the endpoint answer 404 and that is not a problem.
    async fn probe(&self, req: reqwest::RequestBuilder) -> Option<serde_json::Value> {
        let resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::debug!(
                    status = r.status().as_u16(),
                    "model server introspection: not there"
                );
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %without_url(&e), "model server introspection failed");
                return None;
            }
        };
        resp.json().await.ok()
    }

    /// The request body: temperature 0, the schema as `response_format`.
    pub fn request(
        &self,
        system: &str,
        user: &str,
    ) -> Result<CreateChatCompletionRequest, LlmError> {
        let build = |e: async_openai::error::OpenAIError| LlmError::Config(e.to_string());
        CreateChatCompletionRequestArgs::default()
            .model(self.model.clone())
            .temperature(0.0)
            .max_completion_tokens(self.max_output_tokens)
            .response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: Some("Deployment risk assessment".into()),
                    name: "risk_assessment".into(),
                    schema: verdict_schema(),
                    strict: Some(true),
                },
            })
            .messages(vec![
                ChatCompletionRequestSystemMessageArgs::default()
                    .content(system)
                    .build()
                    .map_err(build)?
                    .into(),
                ChatCompletionRequestUserMessageArgs::default()
                    .content(user)
                    .build()
                    .map_err(build)?
                    .into(),
            ])
            .build()
            .map_err(build)
    }

    async fn attempt(&self, body: &CreateChatCompletionRequest) -> Result<ModelVerdict, LlmError> {
        let req = self.authorized(self.http.post(&self.endpoint).json(body));
        let resp = req.send().await.map_err(|e| self.classify(&e))?;
        let status = resp.status();
        // The wait is slept in real time, so a date is measured against the wall clock.
        let retry_after = retry_after(resp.headers(), SystemClock.now());
        let bytes = resp.bytes().await.map_err(|e| self.classify(&e))?;
        if status.as_u16() == 429 {
            return Err(LlmError::RateLimited { retry_after });
        }
        if !status.is_success() {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Err(LlmError::Http {
                status: status.as_u16(),
                body,
                retry_after,
            });
        }
        let reply: CreateChatCompletionResponse =
            serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed(e.to_string()))?;
        let choice = reply
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Malformed("no choices".into()))?;
        if let Some(r) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
            return Err(LlmError::Refused(r.chars().take(200).collect()));
        }
        if choice.finish_reason == Some(FinishReason::Length) {
            return Err(LlmError::Malformed(
                "the reply was cut at the token limit".into(),
            ));
        }
        if choice.finish_reason == Some(FinishReason::ContentFilter) {
            return Err(LlmError::Refused("content filter".into()));
        }
        let content = choice.message.content.unwrap_or_default();
        parse_verdict(&content)
    }

    fn classify(&self, e: &reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout(self.timeout)
        } else {
            LlmError::Transport(without_url(e))
        }
    }

    /// Asks once, retrying transient failures as the retry policy says.
    pub async fn ask(&self, system: &str, user: &str) -> Result<ModelVerdict, LlmError> {
        let body = self.request(system, user)?;
        retry(&self.retry, tokio::time::sleep, |_| self.attempt(&body)).await
    }
}

impl RiskModel for LlmClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn assess<'a>(
        &'a self,
        system: &'a str,
        user: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ModelVerdict, LlmError>> + Send + 'a>> {
        Box::pin(self.ask(system, user))
    }

    fn prompt_budget(&self, configured: usize) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(async move {
            let context = self.context_tokens().await;
            let (budget, note) = fit_prompt_budget(configured, context, self.max_output_tokens);
            if let Some(note) = note {
                use std::sync::atomic::Ordering;
                if !self.budget_logged.swap(true, Ordering::Relaxed) {
                    tracing::info!(model = %self.model, "{note}");
                }
            }
            budget
        })
    }
}

/// The model's retry policy: `llm.max_retries` retries after the first try, waits doubling from
/// 200 ms (or what the server asks in `Retry-After`) up to `llm.max_retry_wait`; a server
/// asking for longer ends the retries.
fn retry_policy(spec: &ModelSpec) -> RetryPolicy {
    RetryPolicy::doubling(
        spec.max_retries.saturating_add(1),
        Duration::from_millis(200),
        spec.max_retry_wait.as_duration(),
    )
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// reqwest errors print the URL; a URL may carry credentials, so it is dropped.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<endpoint>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_temperature_zero_with_the_schema() {
        let spec = ModelSpec::new("http://127.0.0.1:9/v1/".parse().unwrap(), "m");
        let c = LlmClient::new(&spec, None).unwrap();
        let body = serde_json::to_value(c.request("sys", "usr").unwrap()).unwrap();
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            verdict_schema()
        );
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "usr");
        assert_eq!(c.endpoint, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(c.origin, "http://127.0.0.1:9");
        let azure = "https://x.openai.azure.com/openai/v1".parse().unwrap();
        let c = LlmClient::new(&ModelSpec::new(azure, "m"), None).unwrap();
        assert_eq!(c.origin, "https://x.openai.azure.com/openai");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
