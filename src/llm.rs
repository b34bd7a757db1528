//! The language-model adapter: an OpenAI-compatible chat-completions client (async-openai) that
//! asks for a structured risk assessment. It may raise risk, never lower it (see `risk`).
//!
//! (Being built under issue 4.)

use serde::{Deserialize, Serialize};

/// The `llm` config section. Without `base_url` no model is called: the policy alone decides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// OpenAI-compatible API base URL (e.g. `http://127.0.0.1:8081/v1`).
    pub base_url: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
}

impl LlmConfig {
    pub fn validate(&self, _problems: &mut Vec<String>) {}
}
