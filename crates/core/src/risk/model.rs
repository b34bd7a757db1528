//! The language-model port and the strict reading of its answer: what a model may conclude about
//! a change ([`ModelVerdict`]), the schema it must answer in, and the validation that refuses
//! anything else. The adapter that calls a model is the root package's (`deploybot::adapters::llm`); `combine` decides what a
//! verdict may change (only add caution).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Strategy;
use crate::failure::{Class, Classified};

/// What the model concluded, after validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVerdict {
    pub risk_score: f64,
    pub risk_factors: Vec<String>,
    pub recommended_strategy: Strategy,
    pub requires_manual_approval: bool,
    pub rationale: String,
}

/// Why the model gave no usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rate limited (HTTP 429){}", .retry_after.map(|d| format!(", server asked to wait {d:?}")).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("HTTP {status}: {body}")]
    Http {
        status: u16,
        body: String,
        /// The server's `Retry-After`, if it sent one (a 503 may).
        retry_after: Option<Duration>,
    },
    #[error("connecting to the model endpoint: {0}")]
    Transport(String),
    #[error("the reply is not a valid chat completion: {0}")]
    Malformed(String),
    #[error("the reply does not match the assessment schema: {0}")]
    Schema(String),
    #[error("the model refused: {0}")]
    Refused(String),
    #[error("llm config: {0}")]
    Config(String),
}

/// The model's one classification: a timeout, a rate limit, a dropped connection or a 5xx is
/// worth another attempt; a bad answer, a refusal or a configuration problem is not.
impl Classified for LlmError {
    fn class(&self) -> Class {
        match self {
            LlmError::Timeout(_) | LlmError::RateLimited { .. } | LlmError::Transport(_) => {
                Class::Transient
            }
            LlmError::Http { status, .. } if *status >= 500 => Class::Transient,
            _ => Class::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after } | LlmError::Http { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// The model port: one structured assessment per call.
pub trait RiskModel: Send + Sync {
    /// The model name recorded with every assessment.
    fn model(&self) -> &str;
    fn assess<'a>(
        &'a self,
        system: &'a str,
        user: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ModelVerdict, LlmError>> + Send + 'a>>;
}

/// The JSON schema the reply must follow (sent as `response_format`, and enforced on receipt).
pub fn verdict_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["risk_score", "risk_factors", "recommended_strategy", "requires_manual_approval", "rationale"],
        "properties": {
            "risk_score": {"type": "number", "minimum": 0, "maximum": 1},
            "risk_factors": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FACTORS},
            "recommended_strategy": {"type": "string", "enum": ["direct", "canary_25", "canary_10", "canary_5"]},
            "requires_manual_approval": {"type": "boolean"},
            "rationale": {"type": "string"}
        }
    })
}

const MAX_FACTORS: usize = 20;
const MAX_FACTOR_CHARS: usize = 300;
const MAX_RATIONALE_CHARS: usize = 4000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireVerdict {
    risk_score: f64,
    risk_factors: Vec<String>,
    recommended_strategy: String,
    requires_manual_approval: bool,
    rationale: String,
}

/// Validates the content of a reply against the schema, strictly: unknown keys, missing keys,
/// out-of-range numbers, unknown strategies and oversized text are all errors.
pub fn parse_verdict(content: &str) -> Result<ModelVerdict, LlmError> {
    let content = content.trim();
    if content.is_empty() {
        return Err(LlmError::Malformed("empty content".into()));
    }
    let value: serde_json::Value = serde_json::from_str(content)
        .map_err(|e| LlmError::Malformed(format!("content is not JSON ({e})")))?;
    let w: WireVerdict =
        serde_json::from_value(value).map_err(|e| LlmError::Schema(e.to_string()))?;
    if !w.risk_score.is_finite() || !(0.0..=1.0).contains(&w.risk_score) {
        return Err(LlmError::Schema(format!(
            "risk_score {} is outside [0, 1]",
            w.risk_score
        )));
    }
    let strategy = Strategy::parse(&w.recommended_strategy).ok_or_else(|| {
        LlmError::Schema(format!(
            "recommended_strategy {:?} is not one of direct, canary_25, canary_10, canary_5",
            w.recommended_strategy.chars().take(40).collect::<String>()
        ))
    })?;
    if w.risk_factors.len() > MAX_FACTORS {
        return Err(LlmError::Schema(format!(
            "{} risk_factors (at most {MAX_FACTORS})",
            w.risk_factors.len()
        )));
    }
    if let Some(f) = w
        .risk_factors
        .iter()
        .find(|f| f.trim().is_empty() || f.chars().count() > MAX_FACTOR_CHARS)
    {
        return Err(LlmError::Schema(format!(
            "a risk factor is empty or longer than {MAX_FACTOR_CHARS} characters ({} chars)",
            f.chars().count()
        )));
    }
    if w.rationale.chars().count() > MAX_RATIONALE_CHARS {
        return Err(LlmError::Schema(format!(
            "rationale longer than {MAX_RATIONALE_CHARS} characters"
        )));
    }
    Ok(ModelVerdict {
        risk_score: w.risk_score,
        risk_factors: w
            .risk_factors
            .into_iter()
            .map(|f| f.trim().to_string())
            .collect(),
        recommended_strategy: strategy,
        requires_manual_approval: w.requires_manual_approval,
        rationale: w.rationale.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_rate_limits_and_5xx_are_transient_the_rest_permanent() {
        let wait = Some(Duration::from_secs(3));
        for transient in [
            LlmError::Timeout(Duration::from_secs(30)),
            LlmError::RateLimited { retry_after: wait },
            LlmError::Transport("connection reset".into()),
            LlmError::Http {
                status: 503,
                body: String::new(),
                retry_after: None,
            },
        ] {
            assert_eq!(transient.class(), Class::Transient, "{transient}");
        }
        for permanent in [
            LlmError::Http {
                status: 404,
                body: String::new(),
                retry_after: None,
            },
            LlmError::Malformed("no choices".into()),
            LlmError::Schema("extra key".into()),
            LlmError::Refused("no".into()),
            LlmError::Config("llm.model".into()),
        ] {
            assert_eq!(permanent.class(), Class::Permanent, "{permanent}");
        }
        assert_eq!(
            LlmError::RateLimited { retry_after: wait }.retry_after(),
            wait
        );
        let busy = LlmError::Http {
            status: 503,
            body: String::new(),
            retry_after: wait,
        };
        assert_eq!(busy.retry_after(), wait, "a 503 may name its wait too");
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "risk_score": 0.4, "risk_factors": ["touches payments"],
            "recommended_strategy": "canary_10", "requires_manual_approval": false,
            "rationale": "moderate change"
        })
    }

    #[test]
    fn a_valid_reply_parses() {
        let v = parse_verdict(&valid().to_string()).unwrap();
        assert_eq!(v.recommended_strategy, Strategy::Canary10);
        assert_eq!(v.risk_factors, ["touches payments"]);
    }

    #[test]
    fn every_schema_violation_is_rejected() {
        let mut cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("not json".into(), "not JSON"),
            ("```json\n{}\n```".into(), "not JSON"),
            ("[1,2]".into(), "invalid type"),
        ];
        let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = valid();
            f(&mut v);
            v.to_string()
        };
        cases.push((
            mutate(&|v| v["risk_score"] = serde_json::json!(1.5)),
            "outside",
        ));
        cases.push((
            mutate(&|v| v["risk_score"] = serde_json::json!(-0.1)),
            "outside",
        ));
        cases.push((
            mutate(&|v| v["risk_score"] = serde_json::json!("0.2")),
            "invalid type",
        ));
        cases.push((
            mutate(&|v| v["recommended_strategy"] = serde_json::json!("yolo")),
            "not one of",
        ));
        cases.push((
            mutate(&|v| v["extra"] = serde_json::json!(1)),
            "unknown field",
        ));
        cases.push((
            mutate(&|v| {
                v.as_object_mut().unwrap().remove("rationale");
            }),
            "missing field",
        ));
        cases.push((
            mutate(&|v| v["risk_factors"] = serde_json::json!(vec!["x"; 21])),
            "at most",
        ));
        cases.push((
            mutate(&|v| v["risk_factors"] = serde_json::json!([" "])),
            "empty",
        ));
        cases.push((
            mutate(&|v| v["rationale"] = serde_json::json!("x".repeat(5000))),
            "rationale",
        ));
        for (content, want) in cases {
            let e = parse_verdict(&content).unwrap_err().to_string();
            assert!(e.contains(want), "{content:.60}: {e}");
        }
    }
}
