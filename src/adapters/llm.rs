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
    LlmError, ModelVerdict, RiskModel, parse_verdict, verdict_schema,
};

use crate::adapters::retry::retry;
use deploybot_core::clock::Clock as _;
use deploybot_core::config::ModelSpec;
use deploybot_core::retry::RetryPolicy;
use deploybot_core::secret::Secret;

/// The OpenAI-compatible client.
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<Secret>,
    timeout: Duration,
    retry: RetryPolicy,
    max_output_tokens: u32,
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
        Ok(LlmClient {
            http,
            endpoint: format!(
                "{}/chat/completions",
                spec.base_url.as_str().trim_end_matches('/')
            ),
            model: spec.model.clone(),
            api_key,
            timeout,
            retry: retry_policy(spec),
            max_output_tokens: spec.max_output_tokens,
        })
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
        let mut req = self.http.post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
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
