//! The shape of a rollout: traffic weights (`Weight`) and the steps a rollout walks through
//! (`Plan`), which the strategy the risk assessment picks (`risk::Strategy`) selects.
//!
//! These are newtypes that hold their invariants at construction, so the state machine never has
//! to re-check them. They do not know about time, phases or I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::risk::Strategy;

/// A share of traffic in percent, always within `0..=100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Weight(u8);

impl Weight {
    pub const ZERO: Weight = Weight(0);
    pub const FULL: Weight = Weight(100);

    /// A weight, or `None` when `percent` is above 100.
    pub fn new(percent: u8) -> Option<Weight> {
        (percent <= 100).then_some(Weight(percent))
    }

    pub fn percent(self) -> u8 {
        self.0
    }

    pub fn is_full(self) -> bool {
        self.0 == 100
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u8::deserialize(d)?;
        Weight::new(n)
            .ok_or_else(|| serde::de::Error::custom(format!("weight {n} is above 100 percent")))
    }
}

/// Why a list of weights is not a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan needs at least one step")]
    Empty,
    #[error("weight {0} is above 100 percent")]
    OutOfRange(u32),
    #[error("weights must strictly increase, but {next} follows {prev}")]
    NotIncreasing { prev: u8, next: u8 },
    #[error("the last step must be 100 percent, not {0}")]
    DoesNotEndAtFull(u8),
    #[error("a step of 0 percent sends no traffic to the new version")]
    ZeroStep,
}

/// The weights a rollout walks through: non-empty, strictly increasing, every step above zero,
/// ending at 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Plan(Vec<Weight>);

impl Plan {
    /// Validates `percents` as a plan.
    pub fn new(percents: &[u32]) -> Result<Plan, PlanError> {
        let mut weights = Vec::with_capacity(percents.len());
        for &p in percents {
            let w = u8::try_from(p)
                .ok()
                .and_then(Weight::new)
                .ok_or(PlanError::OutOfRange(p))?;
            if w == Weight::ZERO {
                return Err(PlanError::ZeroStep);
            }
            if let Some(prev) = weights.last().copied()
                && w <= prev
            {
                return Err(PlanError::NotIncreasing {
                    prev: prev.percent(),
                    next: w.percent(),
                });
            }
            weights.push(w);
        }
        match weights.last() {
            None => Err(PlanError::Empty),
            Some(last) if !last.is_full() => Err(PlanError::DoesNotEndAtFull(last.percent())),
            Some(_) => Ok(Plan(weights)),
        }
    }

    /// The default canary plan: 5 -> 10 -> 25 -> 50 -> 100.
    pub fn default_canary() -> Plan {
        Plan::new(&[5, 10, 25, 50, 100]).expect("static plan is valid")
    }

    /// One step straight to 100 percent.
    pub fn direct() -> Plan {
        Plan(vec![Weight::FULL])
    }

    pub fn weights(&self) -> &[Weight] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a plan has at least one step. Present because clippy expects it beside `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, step: usize) -> Option<Weight> {
        self.0.get(step).copied()
    }

    /// The index of `weight` in the plan.
    /// The plan as `total` pods can carry it: each weight becomes the share its canary pods
    /// really get (`manifest::canary_replicas`), and steps that land on the same share merge.
    /// Steps, comments, the page and the sample-ratio check then all see the real share.
    pub fn in_pods(&self, total: u32) -> Plan {
        let mut weights: Vec<Weight> = Vec::with_capacity(self.0.len());
        for w in &self.0 {
            let share = if total == 0 || w.is_full() {
                *w
            } else {
                let pods = u64::from(crate::manifest::canary_replicas(w.percent(), total));
                let percent = (pods * 100 + u64::from(total) / 2) / u64::from(total);
                Weight(u8::try_from(percent.min(100)).unwrap_or(100))
            };
            // A share with no canary pod sends nothing to the new version: not a step.
            if share > Weight::ZERO && weights.last().is_none_or(|last| share > *last) {
                weights.push(share);
            }
        }
        Plan(weights)
    }

    pub fn position(&self, weight: Weight) -> Option<usize> {
        self.0.iter().position(|w| *w == weight)
    }

    /// The plan a strategy follows, given the service's canary plan: `direct` is one step to 100;
    /// `canary_N` starts at N and continues with the service plan's weights above N.
    pub fn for_strategy(strategy: Strategy, service_plan: &Plan) -> Plan {
        let first = Weight(strategy.first_weight());
        if first.is_full() {
            return Plan::direct();
        }
        let mut weights = vec![first];
        weights.extend(service_plan.0.iter().copied().filter(|w| *w > first));
        // The service plan ends at 100, so `weights` does too; strictly increasing by filter.
        Plan(weights)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|w| w.percent().to_string()).collect();
        write!(f, "{}", parts.join(" -> "))
    }
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let percents = Vec::<u32>::deserialize(d)?;
        Plan::new(&percents).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replica-ratio plans: each row names the pod count, the plan asked for, and the plan the
    /// pods can give.
    #[test]
    fn a_plan_in_pods_uses_the_shares_whole_pods_give() {
        for (pods, asked, want) in [
            (10, &[5, 10, 25, 50, 100][..], "10 -> 30 -> 50 -> 100"),
            (20, &[5, 10, 25, 50, 100][..], "5 -> 10 -> 25 -> 50 -> 100"),
            (3, &[5, 10, 25, 50, 100][..], "33 -> 67 -> 100"),
            (4, &[10, 100][..], "25 -> 100"),
            (1, &[5, 50, 100][..], "100"),
            (10, &[100][..], "100"),
        ] {
            let plan = Plan::new(asked).unwrap();
            assert_eq!(
                plan.in_pods(pods).to_string(),
                want,
                "{pods} pods, asked {plan}"
            );
        }
    }

    #[test]
    fn weight_rejects_above_100() {
        assert_eq!(Weight::new(100), Some(Weight::FULL));
        assert_eq!(Weight::new(101), None);
    }

    #[test]
    fn plan_validation_names_the_problem() {
        assert_eq!(Plan::new(&[]), Err(PlanError::Empty));
        assert_eq!(Plan::new(&[5, 150]), Err(PlanError::OutOfRange(150)));
        assert_eq!(
            Plan::new(&[10, 10, 100]),
            Err(PlanError::NotIncreasing { prev: 10, next: 10 })
        );
        assert_eq!(
            Plan::new(&[25, 10, 100]),
            Err(PlanError::NotIncreasing { prev: 25, next: 10 })
        );
        assert_eq!(Plan::new(&[5, 50]), Err(PlanError::DoesNotEndAtFull(50)));
        assert_eq!(Plan::new(&[0, 100]), Err(PlanError::ZeroStep));
        assert_eq!(Plan::new(&[100]).unwrap(), Plan::direct());
    }

    #[test]
    fn strategies_start_at_their_weight_and_follow_the_service_plan() {
        let service = Plan::default_canary();
        let cases = [
            (Strategy::Direct, "100"),
            (Strategy::Canary5, "5 -> 10 -> 25 -> 50 -> 100"),
            (Strategy::Canary10, "10 -> 25 -> 50 -> 100"),
            (Strategy::Canary25, "25 -> 50 -> 100"),
        ];
        for (strategy, want) in cases {
            assert_eq!(
                Plan::for_strategy(strategy, &service).to_string(),
                want,
                "{strategy}"
            );
        }
        // A first weight the service plan does not contain is inserted before the rest.
        let coarse = Plan::new(&[20, 60, 100]).unwrap();
        assert_eq!(
            Plan::for_strategy(Strategy::Canary10, &coarse).to_string(),
            "10 -> 20 -> 60 -> 100"
        );
    }

    #[test]
    fn plan_deserialization_validates() {
        let ok: Plan = serde_json::from_str("[5, 50, 100]").unwrap();
        assert_eq!(ok.len(), 3);
        let err = serde_json::from_str::<Plan>("[50, 5, 100]").unwrap_err();
        assert!(err.to_string().contains("strictly increase"), "{err}");
        assert!(serde_json::from_str::<Weight>("101").is_err());
    }
}
