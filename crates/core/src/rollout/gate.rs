//! The gate a release passes before its rollout starts: the risk assessment's word (score,
//! strategy, whether a person must approve) in rollout terms. A release parked until its checks
//! pass is stored with its gate, so the type sits here, below both the pipeline that decides with
//! it and the store that keeps it.

use super::plan::Strategy;
use crate::risk::{self, Assessment};

/// The risk assessment's word, in rollout terms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gate {
    pub risk_score: f64,
    pub strategy: Strategy,
    pub approval_required: bool,
}

impl Gate {
    pub fn from_assessment(a: &Assessment) -> Gate {
        Gate {
            risk_score: a.risk_score,
            strategy: match a.recommended_strategy {
                risk::Strategy::Direct => Strategy::Direct,
                risk::Strategy::Canary25 => Strategy::Canary25,
                risk::Strategy::Canary10 => Strategy::Canary10,
                risk::Strategy::Canary5 => Strategy::Canary5,
            },
            approval_required: a.requires_manual_approval,
        }
    }
}
