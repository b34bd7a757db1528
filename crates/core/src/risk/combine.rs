//! Combining the policy floor with what the model said. Pure.
//!
//! The model may only add caution: the final score is `max(policy, model)`, the stricter strategy
//! wins, approval is required if either asks for it, and a model that gave no usable answer makes
//! approval mandatory. Whatever the diff persuaded the model to say, the result is never below the
//! policy result in any of the three.

use super::model::ModelVerdict;
use super::{Assessment, AssessmentSource, Factor, FactorKind, FactorSource, RiskTier, Thresholds};

/// What happened when the model was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelOutcome {
    /// No model configured: the policy alone decides.
    NotConfigured,
    Answered {
        model: String,
        prompt_version: String,
        verdict: ModelVerdict,
    },
    Failed {
        model: String,
        prompt_version: String,
        reason: String,
    },
}

/// The final assessment.
pub fn combine(policy: Assessment, outcome: ModelOutcome, thresholds: &Thresholds) -> Assessment {
    match outcome {
        ModelOutcome::NotConfigured => policy,
        ModelOutcome::Failed {
            model,
            prompt_version,
            reason,
        } => {
            let mut a = policy;
            a.requires_manual_approval = true;
            a.risk_factors.push(Factor {
                category: FactorKind::ModelUnavailable,
                summary: format!(
                    "the model gave no usable answer ({reason}); the policy result stands and a human must approve"
                ),
                files: Vec::new(),
                weight: 0.0,
                source: FactorSource::Policy,
            });
            a.source = AssessmentSource::Policy;
            a.model = Some(model);
            a.prompt_version = Some(prompt_version);
            a
        }
        ModelOutcome::Answered {
            model,
            prompt_version,
            verdict,
        } => {
            let p = policy;
            let llm_strategy = verdict
                .recommended_strategy
                .max(thresholds.strategy_for(verdict.risk_score));
            let llm_approval =
                verdict.requires_manual_approval || thresholds.approval_for(verdict.risk_score);
            let score = p.risk_score.max(verdict.risk_score);
            let strategy = p.recommended_strategy.max(llm_strategy);
            let approval = p.requires_manual_approval || llm_approval;
            let raised = score > p.risk_score
                || strategy > p.recommended_strategy
                || approval != p.requires_manual_approval;
            let mut factors = p.risk_factors;
            for f in &verdict.risk_factors {
                factors.push(Factor {
                    category: FactorKind::Model,
                    summary: f.clone(),
                    files: Vec::new(),
                    weight: verdict.risk_score,
                    source: FactorSource::Llm,
                });
            }
            Assessment {
                risk_score: score,
                tier: RiskTier::of(score),
                recommended_strategy: strategy,
                requires_manual_approval: approval,
                risk_factors: factors,
                source: if raised {
                    AssessmentSource::Llm
                } else {
                    AssessmentSource::Both
                },
                rationale: Some(verdict.rationale).filter(|r| !r.is_empty()),
                model: Some(model),
                prompt_version: Some(prompt_version),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{Strategy, policy::round3};
    use proptest::prelude::*;

    fn policy(score: f64, strategy: Strategy, approval: bool) -> Assessment {
        Assessment {
            risk_score: score,
            tier: RiskTier::of(score),
            recommended_strategy: strategy,
            requires_manual_approval: approval,
            risk_factors: vec![],
            source: AssessmentSource::Policy,
            rationale: None,
            model: None,
            prompt_version: None,
        }
    }

    fn answered(score: f64, strategy: Strategy, approval: bool) -> ModelOutcome {
        ModelOutcome::Answered {
            model: "m".into(),
            prompt_version: "v".into(),
            verdict: ModelVerdict {
                risk_score: score,
                risk_factors: vec!["f".into()],
                recommended_strategy: strategy,
                requires_manual_approval: approval,
                rationale: "r".into(),
            },
        }
    }

    #[test]
    fn the_model_can_raise_but_not_lower() {
        let t = Thresholds::default();
        let low = combine(
            policy(0.7, Strategy::Canary5, true),
            answered(0.0, Strategy::Direct, false),
            &t,
        );
        assert_eq!(
            (
                low.risk_score,
                low.recommended_strategy,
                low.requires_manual_approval
            ),
            (0.7, Strategy::Canary5, true)
        );
        assert_eq!(low.source, AssessmentSource::Both);
        let high = combine(
            policy(0.1, Strategy::Direct, false),
            answered(0.8, Strategy::Canary25, false),
            &t,
        );
        assert_eq!(high.risk_score, 0.8);
        assert_eq!(
            high.recommended_strategy,
            Strategy::Canary5,
            "the score's strategy, not the model's looser one"
        );
        assert!(high.requires_manual_approval);
        assert_eq!(high.tier, RiskTier::Critical);
        assert_eq!(high.source, AssessmentSource::Llm);
        assert!(
            high.risk_factors
                .iter()
                .any(|f| f.source == FactorSource::Llm)
        );
    }

    #[test]
    fn a_failed_model_means_approval() {
        let a = combine(
            policy(0.05, Strategy::Direct, false),
            ModelOutcome::Failed {
                model: "m".into(),
                prompt_version: "v".into(),
                reason: "timeout".into(),
            },
            &Thresholds::default(),
        );
        assert!(a.requires_manual_approval);
        assert_eq!(a.risk_score, 0.05);
        assert_eq!(a.source, AssessmentSource::Policy);
        assert!(
            a.risk_factors.iter().any(
                |f| f.category == FactorKind::ModelUnavailable && f.summary.contains("timeout")
            )
        );
    }

    proptest! {
        #[test]
        fn never_below_the_floor(
            ps in 0.0f64..=1.0, pi in 0usize..4, pa: bool,
            ms in 0.0f64..=1.0, mi in 0usize..4, ma: bool,
        ) {
            let p = policy(round3(ps), Strategy::ALL[pi], pa);
            let a = combine(p.clone(), answered(ms, Strategy::ALL[mi], ma), &Thresholds::default());
            prop_assert!(a.risk_score >= p.risk_score);
            prop_assert!(a.recommended_strategy >= p.recommended_strategy);
            prop_assert!(a.requires_manual_approval || !p.requires_manual_approval);
            prop_assert!(a.risk_score >= ms);
        }
    }
}
