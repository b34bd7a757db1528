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

    /// The prompt budget in tokens for this model, `configured` (`llm.max_prompt_tokens`) at
    /// most: an adapter that can learn the model's context lowers it to fit
    /// ([`fit_prompt_budget`]).
    fn prompt_budget(&self, configured: usize) -> Pin<Box<dyn Future<Output = usize> + Send + '_>> {
        Box::pin(std::future::ready(configured))
    }
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
    let (mut risk_factors, mark) = distinct_factors(&w.risk_factors);
    if risk_factors.len() > MAX_FACTORS {
        return Err(LlmError::Schema(format!(
            "{} distinct risk_factors (at most {MAX_FACTORS})",
            risk_factors.len()
        )));
    }
    if let Some(f) = risk_factors
        .iter()
        .find(|f| f.chars().count() > MAX_FACTOR_CHARS)
    {
        return Err(LlmError::Schema(format!(
            "a risk factor is longer than {MAX_FACTOR_CHARS} characters ({} chars)",
            f.chars().count()
        )));
    }
    if w.rationale.chars().count() > MAX_RATIONALE_CHARS {
        return Err(LlmError::Schema(format!(
            "rationale longer than {MAX_RATIONALE_CHARS} characters"
        )));
    }
    risk_factors.extend(mark);
    Ok(ModelVerdict {
        risk_score: w.risk_score,
        risk_factors,
        recommended_strategy: strategy,
        requires_manual_approval: w.requires_manual_approval,
        rationale: w.rationale.trim().to_string(),
    })
}

/// The factor that stands for what [`collapse_factors`] dropped; it starts with this.
pub const DEGENERATE_MARK: &str = "(deploybot note)";

/// A model's factors as the comment shows them: trimmed, each distinct one once (compared without
/// case and runs of white space), in the model's order. Small local models sometimes repeat one
/// factor many times or answer empty strings; what was dropped is said once, in a factor marked
/// [`DEGENERATE_MARK`], instead of being posted twenty times (or failing the whole reply).
pub fn collapse_factors(factors: &[String]) -> Vec<String> {
    let (mut kept, mark) = distinct_factors(factors);
    kept.extend(mark);
    kept
}

/// Each distinct factor once, and the marked factor saying what was dropped, if anything was.
fn distinct_factors(factors: &[String]) -> (Vec<String>, Option<String>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    let (mut repeated, mut empty) = (0usize, 0usize);
    for f in factors {
        let f = f.trim();
        if f.is_empty() {
            empty += 1;
            continue;
        }
        let key = f
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if seen.insert(key) {
            kept.push(f.to_string());
        } else {
            repeated += 1;
        }
    }
    let what = match (repeated, empty) {
        (0, 0) => return (kept, None),
        (r, 0) => format!("repeated {r}"),
        (0, e) => format!("left {e} empty"),
        (r, e) => format!("repeated {r} and left {e} empty"),
    };
    let mark = format!(
        "{DEGENERATE_MARK} the model's reply was degenerate: it {what} of its {} factors; \
         each distinct factor is shown once",
        factors.len()
    );
    (kept, Some(mark))
}

/// The prompt's size is estimated at 4 bytes a token, but code and diffs tokenize denser (about
/// 3 characters a token on the small local models measured), and the chat template adds its own
/// tokens: of the context left after the reply and the template, the budget takes this share, so
/// that a prompt at 3 characters a token still fits.
const CONTEXT_SHARE: (u64, u64) = (3, 4);

/// Tokens the chat template wraps around the messages (role markers, a generation prompt).
const TEMPLATE_TOKENS: u64 = 64;

/// The smallest prompt budget worth sending: below it the diff is summarised to nothing useful.
pub const MIN_PROMPT_TOKENS: usize = 512;

/// The prompt budget for a model: the configured one, lowered to fit the model's context when
/// the server says how large it is (`context_tokens`), leaving room for the reply
/// (`reply_tokens`) and for the estimate's error. The note says why it was lowered, if it was.
pub fn fit_prompt_budget(
    configured: usize,
    context_tokens: Option<u32>,
    reply_tokens: u32,
) -> (usize, Option<String>) {
    let Some(context) = context_tokens else {
        return (configured, None);
    };
    let left = u64::from(context).saturating_sub(u64::from(reply_tokens) + TEMPLATE_TOKENS);
    let fits = usize::try_from(left * CONTEXT_SHARE.0 / CONTEXT_SHARE.1).unwrap_or(usize::MAX);
    if fits >= configured {
        return (configured, None);
    }
    let budget = fits.max(MIN_PROMPT_TOKENS);
    let mut note = format!(
        "the model's context holds {context} tokens: the prompt budget is {budget} instead of \
         {configured} (after {reply_tokens} for the reply and {TEMPLATE_TOKENS} for the chat \
         template, {}/{} of the rest, as prompts are estimated at 4 bytes a token and diffs \
         tokenize denser)",
        CONTEXT_SHARE.0, CONTEXT_SHARE.1
    );
    if fits < MIN_PROMPT_TOKENS {
        note.push_str(&format!(
            "; even {MIN_PROMPT_TOKENS} may not fit: lower llm.max_output_tokens or give the \
             model a larger context"
        ));
    }
    (budget, Some(note))
}

/// Context windows of hosted models whose size is public, by name prefix (longest first), for
/// the config check: a configured budget larger than the context would cut every reply. Local
/// servers are asked at run time instead (`RiskModel::prompt_budget`).
const KNOWN_CONTEXTS: &[(&str, u32)] = &[
    ("gpt-4o-mini", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4-turbo", 128_000),
    ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385),
    ("o4-mini", 200_000),
    ("o3", 200_000),
    ("o1", 200_000),
];

/// The context window of a hosted model named `model`, when it is one of the known ones.
pub fn known_context(model: &str) -> Option<u32> {
    let model = model.to_ascii_lowercase();
    KNOWN_CONTEXTS
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, n)| *n)
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
        let many: Vec<String> = (0..21).map(|i| format!("factor {i}")).collect();
        cases.push((
            mutate(&|v| v["risk_factors"] = serde_json::json!(many)),
            "at most",
        ));
        cases.push((
            mutate(&|v| v["risk_factors"] = serde_json::json!(["y".repeat(301)])),
            "longer than",
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

    #[test]
    fn degenerate_factors_collapse_into_one_marked_factor() {
        let twenty: Vec<String> = vec!["Touches the  payments table".into(); 20];
        let v = parse_verdict(
            &serde_json::json!({
                "risk_score": 0.4, "risk_factors": twenty,
                "recommended_strategy": "canary_10", "requires_manual_approval": false,
                "rationale": "r"
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(v.risk_factors.len(), 2, "{:?}", v.risk_factors);
        assert_eq!(v.risk_factors[0], "Touches the  payments table");
        assert!(
            v.risk_factors[1].starts_with(DEGENERATE_MARK)
                && v.risk_factors[1].contains("repeated 19 of its 20 factors"),
            "{}",
            v.risk_factors[1]
        );
        let f =
            |xs: &[&str]| collapse_factors(&xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            f(&["a", "b"]),
            ["a", "b"],
            "nothing degenerate, nothing added"
        );
        assert_eq!(
            f(&["a", "A ", " a"]).len(),
            2,
            "case and spaces do not make a new factor"
        );
        let empties = f(&["", "  "]);
        assert_eq!(empties.len(), 1);
        assert!(
            empties[0].contains("left 2 empty of its 2 factors"),
            "{empties:?}"
        );
        let both = f(&["a", "", "a"]);
        assert!(
            both[1].contains("repeated 1 and left 1 empty of its 3"),
            "{both:?}"
        );
    }

    #[test]
    fn the_prompt_budget_fits_the_models_context() {
        // A 4k local model (the case that overflowed): 3/4 of what the reply and template leave.
        let (b, note) = fit_prompt_budget(12_000, Some(4096), 800);
        assert_eq!(b, 2424);
        let note = note.unwrap();
        assert!(
            note.contains("4096 tokens") && !note.contains("may not fit"),
            "{note}"
        );
        assert_eq!(
            fit_prompt_budget(12_000, None, 800),
            (12_000, None),
            "unknown: configured"
        );
        assert_eq!(
            fit_prompt_budget(12_000, Some(128_000), 800),
            (12_000, None)
        );
        let (b, note) = fit_prompt_budget(12_000, Some(1024), 800);
        assert_eq!(b, MIN_PROMPT_TOKENS);
        assert!(note.unwrap().contains("may not fit"));
        assert_eq!(known_context("gpt-4o-2024-08-06"), Some(128_000));
        assert_eq!(known_context("gpt-4-0613"), Some(8_192));
        assert_eq!(known_context("qwen2.5:3b"), None);
    }
}
