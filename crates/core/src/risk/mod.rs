//! Risk assessment of a change: a deterministic policy sets the floor, an optional LLM may raise
//! it; the result picks the rollout strategy and whether a human must approve.
//!
//! The decisions (`policy`, `combine`) are pure functions over plain data. The edges (GitHub, the
//! model, the store) are reached only from the shell (`deploybot::shell::assess`), through
//! ports. Nothing here lowers a score
//! the policy computed, except a label rule a team configured on purpose.

pub mod change;
pub mod combine;
pub mod comment;
pub mod diff;
pub mod model;
pub mod policy;
pub mod prompt;
pub mod redact;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use change::{Change, ChangedFile, FileStatus, Hunk};
pub use policy::{Policy, PolicyError};

/// How a change ships: all at once, or a canary whose first step carries this share of traffic.
/// Ordered from the least to the most careful, so `max` picks the stricter one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Direct,
    // The aliases read rollout records and audit rows stored before the rollout and the risk
    // assessment shared this one type (the rollout's copy spelled them `canary25`).
    #[serde(rename = "canary_25", alias = "canary25")]
    Canary25,
    #[serde(rename = "canary_10", alias = "canary10")]
    Canary10,
    #[serde(rename = "canary_5", alias = "canary5")]
    Canary5,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Direct,
        Strategy::Canary25,
        Strategy::Canary10,
        Strategy::Canary5,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Direct => "direct",
            Strategy::Canary25 => "canary_25",
            Strategy::Canary10 => "canary_10",
            Strategy::Canary5 => "canary_5",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Percent of traffic the first step sends to the new version.
    pub fn first_weight(self) -> u8 {
        match self {
            Strategy::Direct => 100,
            Strategy::Canary25 => 25,
            Strategy::Canary10 => 10,
            Strategy::Canary5 => 5,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The coarse band a score falls in; it names the `risk/*` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskTier {
    pub const ALL: [RiskTier; 4] = [
        RiskTier::Low,
        RiskTier::Medium,
        RiskTier::High,
        RiskTier::Critical,
    ];

    /// Fixed bands: quarters of the score range.
    pub fn of(score: f64) -> RiskTier {
        if score >= 0.75 {
            RiskTier::Critical
        } else if score >= 0.5 {
            RiskTier::High
        } else if score >= 0.25 {
            RiskTier::Medium
        } else {
            RiskTier::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
            RiskTier::Critical => "critical",
        }
    }

    /// The PR label for this tier.
    pub fn label(self) -> String {
        format!("risk/{}", self.as_str())
    }
}

/// What a factor is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    Migration,
    ApiContract,
    Infrastructure,
    Application,
    Frontend,
    Tests,
    Docs,
    /// Content the assessment could not see (truncated patches, unreadable binaries).
    UnknownContent,
    /// A configured label rule applied.
    Label,
    /// A concern the model raised.
    Model,
    /// The model was configured but gave no usable answer.
    ModelUnavailable,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Migration => "migration",
            FactorKind::ApiContract => "api_contract",
            FactorKind::Infrastructure => "infrastructure",
            FactorKind::Application => "application",
            FactorKind::Frontend => "frontend",
            FactorKind::Tests => "tests",
            FactorKind::Docs => "docs",
            FactorKind::UnknownContent => "unknown_content",
            FactorKind::Label => "label",
            FactorKind::Model => "model",
            FactorKind::ModelUnavailable => "model_unavailable",
        }
    }
}

/// Who produced a factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorSource {
    Policy,
    Llm,
}

/// One reason behind a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    pub category: FactorKind,
    pub summary: String,
    pub files: Vec<String>,
    /// Contribution in [0, 1].
    pub weight: f64,
    pub source: FactorSource,
}

/// Which parts decided the result: the policy alone (no model, or the model failed), the model
/// raised something above the policy, or the model answered and agreed with the policy floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentSource {
    Policy,
    Llm,
    Both,
}

/// The outcome of an assessment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub risk_score: f64,
    pub tier: RiskTier,
    pub recommended_strategy: Strategy,
    pub requires_manual_approval: bool,
    pub risk_factors: Vec<Factor>,
    pub source: AssessmentSource,
    /// The model's explanation, when a model answered.
    pub rationale: Option<String>,
    /// The model that answered (or was asked), when one is configured.
    pub model: Option<String>,
    /// The prompt template version the model saw.
    pub prompt_version: Option<String>,
}

/// The `risk` config section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Score thresholds; each service may override single keys under `services[].risk`.
    pub thresholds: RiskThresholds,
    /// Glob patterns and weights per file category.
    pub categories: policy::CategoryRules,
    /// How application code is scaled by size.
    pub application: policy::ApplicationRule,
    /// Weight of content the assessment cannot see (truncated patches, binaries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_content_weight: Option<f64>,
    /// Labels honoured by the policy; no label is honoured unless listed here.
    pub labels: Vec<policy::LabelRule>,
    /// What the `deploybot/risk` status says on a pull request the risk sends to a human, until
    /// someone who may approve has approved its head. Left out of the written section (and so
    /// of the assessment digest) at its default.
    #[serde(skip_serializing_if = "RiskStatusGate::is_default")]
    pub status_until_approved: RiskStatusGate,
}

/// The `deploybot/risk` status of a pull request that needs an approval, before it has one:
/// `success` (the status only reports), or `pending` / `failure`, so that branch protection can
/// require the status and with it the approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskStatusGate {
    #[default]
    Success,
    Pending,
    Failure,
}

impl RiskStatusGate {
    fn is_default(&self) -> bool {
        *self == RiskStatusGate::Success
    }

    /// The state the `deploybot/risk` status takes for `a`, given whether the pull request's
    /// head is approved: the gate's state only while an approval is required and missing.
    pub fn state(self, a: &Assessment, approved: bool) -> RiskStatusGate {
        if a.requires_manual_approval && !approved {
            self
        } else {
            RiskStatusGate::Success
        }
    }
}

impl RiskConfig {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        self.thresholds
            .validate(&format!("{key}.thresholds"), problems);
        if let Some(w) = self.unknown_content_weight {
            check_unit(&format!("{key}.unknown_content_weight"), w, problems);
        }
        self.categories
            .validate(&format!("{key}.categories"), problems);
        self.application
            .validate(&format!("{key}.application"), problems);
        for (i, l) in self.labels.iter().enumerate() {
            l.validate(&format!("{key}.labels[{i}]"), problems);
        }
    }
}

pub(crate) fn check_unit(key: &str, v: f64, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&v) {
        problems.push(format!("{key}: must be between 0 and 1, got {v}"));
    }
}

/// Score thresholds that map a risk score to a strategy and an approval requirement. Unset keys
/// fall back to the global `risk.thresholds`, then to the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskThresholds {
    /// Scores at or above this ship as `canary_25` (below: `direct`). Default 0.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_25_at: Option<f64>,
    /// Scores at or above this ship as `canary_10`. Default 0.4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_10_at: Option<f64>,
    /// Scores at or above this ship as `canary_5`. Default 0.6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_5_at: Option<f64>,
    /// Scores at or above this need a human approval. Default 0.7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_at: Option<f64>,
}

impl RiskThresholds {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        for (name, v) in [
            ("canary_25_at", self.canary_25_at),
            ("canary_10_at", self.canary_10_at),
            ("canary_5_at", self.canary_5_at),
            ("approval_at", self.approval_at),
        ] {
            if let Some(v) = v {
                check_unit(&format!("{key}.{name}"), v, problems);
            }
        }
        let t = self.resolve(None);
        if !(t.canary_25_at <= t.canary_10_at && t.canary_10_at <= t.canary_5_at) {
            problems.push(format!(
                "{key}: canary_25_at ({}) <= canary_10_at ({}) <= canary_5_at ({}) must hold",
                t.canary_25_at, t.canary_10_at, t.canary_5_at
            ));
        }
    }

    /// The effective thresholds: `service` keys over these keys over the defaults.
    pub fn resolve(&self, service: Option<&RiskThresholds>) -> Thresholds {
        let d = Thresholds::default();
        let pick = |f: fn(&RiskThresholds) -> Option<f64>, dv: f64| {
            service.and_then(f).or(f(self)).unwrap_or(dv)
        };
        Thresholds {
            canary_25_at: pick(|t| t.canary_25_at, d.canary_25_at),
            canary_10_at: pick(|t| t.canary_10_at, d.canary_10_at),
            canary_5_at: pick(|t| t.canary_5_at, d.canary_5_at),
            approval_at: pick(|t| t.approval_at, d.approval_at),
        }
    }
}

/// Effective thresholds (see [`RiskThresholds`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub canary_25_at: f64,
    pub canary_10_at: f64,
    pub canary_5_at: f64,
    pub approval_at: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            canary_25_at: 0.2,
            canary_10_at: 0.4,
            canary_5_at: 0.6,
            approval_at: 0.7,
        }
    }
}

impl Thresholds {
    pub fn strategy_for(&self, score: f64) -> Strategy {
        if score >= self.canary_5_at {
            Strategy::Canary5
        } else if score >= self.canary_10_at {
            Strategy::Canary10
        } else if score >= self.canary_25_at {
            Strategy::Canary25
        } else {
            Strategy::Direct
        }
    }

    pub fn approval_for(&self, score: f64) -> bool {
        score >= self.approval_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: the gate, whether the risk asks for an approval, whether the head is approved,
    /// and the status state.
    #[test]
    fn the_risk_status_gates_only_while_a_required_approval_is_missing() {
        use RiskStatusGate::*;
        for (row, gate, required, approved, want) in [
            ("reporting only", Success, true, false, Success),
            ("pending until approved", Pending, true, false, Pending),
            ("failure until approved", Failure, true, false, Failure),
            ("approved", Pending, true, true, Success),
            ("approved, failure gate", Failure, true, true, Success),
            ("no approval needed", Pending, false, false, Success),
            (
                "no approval needed, failure gate",
                Failure,
                false,
                false,
                Success,
            ),
        ] {
            let a = Assessment {
                risk_score: 0.8,
                tier: RiskTier::High,
                recommended_strategy: Strategy::Canary5,
                requires_manual_approval: required,
                risk_factors: Vec::new(),
                source: AssessmentSource::Policy,
                rationale: None,
                model: None,
                prompt_version: None,
            };
            assert_eq!(gate.state(&a, approved), want, "row {row}");
        }
    }

    #[test]
    fn the_default_gate_leaves_the_written_section_unchanged() {
        let yaml = yaml_serde::to_string(&RiskConfig::default()).unwrap();
        assert!(!yaml.contains("status_until_approved"), "{yaml}");
        let pending: RiskConfig = yaml_serde::from_str("status_until_approved: pending\n").unwrap();
        assert_eq!(pending.status_until_approved, RiskStatusGate::Pending);
    }

    #[test]
    fn strategies_order_from_least_to_most_careful() {
        assert!(Strategy::Direct < Strategy::Canary25);
        assert!(Strategy::Canary25 < Strategy::Canary10);
        assert!(Strategy::Canary10 < Strategy::Canary5);
        assert_eq!(
            serde_json::to_string(&Strategy::Canary10).unwrap(),
            "\"canary_10\""
        );
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn thresholds_map_scores_and_service_keys_override_single_values() {
        let t = Thresholds::default();
        let cases = [
            (0.0, Strategy::Direct, false),
            (0.19, Strategy::Direct, false),
            (0.2, Strategy::Canary25, false),
            (0.45, Strategy::Canary10, false),
            (0.6, Strategy::Canary5, false),
            (0.7, Strategy::Canary5, true),
            (1.0, Strategy::Canary5, true),
        ];
        for (score, s, a) in cases {
            assert_eq!(t.strategy_for(score), s, "{score}");
            assert_eq!(t.approval_for(score), a, "{score}");
        }
        let global = RiskThresholds {
            approval_at: Some(0.9),
            ..Default::default()
        };
        let service = RiskThresholds {
            canary_25_at: Some(0.1),
            ..Default::default()
        };
        let r = global.resolve(Some(&service));
        assert_eq!(r.canary_25_at, 0.1);
        assert_eq!(r.approval_at, 0.9);
        assert_eq!(r.canary_5_at, 0.6);
    }

    #[test]
    fn bad_thresholds_are_reported_with_their_key() {
        let mut p = Vec::new();
        RiskThresholds {
            canary_25_at: Some(0.5),
            canary_10_at: Some(0.3),
            approval_at: Some(1.5),
            ..Default::default()
        }
        .validate("services[0].risk", &mut p);
        let all = p.join("\n");
        assert!(all.contains("services[0].risk.approval_at"), "{all}");
        assert!(all.contains("services[0].risk: canary_25_at"), "{all}");
    }
}
