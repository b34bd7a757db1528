//! The per-service `rollout:` config section: the canary plan, bake and analysis timing, how
//! long an inconclusive judge is tolerated, and sync limits. Parsed and validated at start-up; turned into the `Settings` a new rollout
//! copies into its record (so a config change never alters a rollout already under way).

use serde::{Deserialize, Serialize};

use super::plan::Plan;
use super::record::{Settings, SyncFailurePolicy};
use crate::duration::PromDuration;

/// `services[].rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Canary weights in percent, strictly increasing, ending at 100. A strategy `canary_N`
    /// starts at N and continues with the weights above it.
    pub canary_plan: Vec<u32>,
    /// Minimum time each canary step is live before it may be promoted.
    pub bake: PromDuration,
    /// How often a live step is judged (also the metrics window of each judgement).
    pub analysis_interval: PromDuration,
    /// How long 100 % is judged before the rollout is complete.
    pub verification: PromDuration,
    /// Consecutive inconclusive judgements tolerated before the rollout pauses.
    pub max_inconclusive_intervals: u32,
    /// Deprecated spelling of `max_inconclusive_intervals` (a "hold" is a held service now);
    /// resolution moves it there, with a warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_hold_intervals: Option<u32>,
    /// How long a commit may take to be reported synced and healthy.
    pub sync_timeout: PromDuration,
    /// `pause` or `rollback` when a commit is not synced and healthy in time.
    pub on_sync_failure: SyncFailurePolicy,
    /// Wait before re-issuing an effect that failed transiently (git push, GitHub API).
    pub retry_after: PromDuration,
    /// A new version while one rolls out in the same environment: `supersede` it (the newer
    /// wins at once) or `queue` behind it (starts when it finishes).
    pub on_new_version: OnNewVersion,
}

/// What a new version does to a rollout already under way in its environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNewVersion {
    #[default]
    Supersede,
    Queue,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        let s = Settings::default();
        RolloutConfig {
            canary_plan: s
                .canary_plan
                .weights()
                .iter()
                .map(|w| u32::from(w.percent()))
                .collect(),
            bake: PromDuration::from_secs(s.bake_secs),
            analysis_interval: PromDuration::from_secs(s.analysis_interval_secs),
            verification: PromDuration::from_secs(s.verification_secs),
            max_inconclusive_intervals: s.max_inconclusive_intervals,
            max_hold_intervals: None,
            sync_timeout: PromDuration::from_secs(s.sync_timeout_secs),
            on_sync_failure: s.on_sync_failure,
            retry_after: PromDuration::from_secs(s.retry_after_secs),
            on_new_version: OnNewVersion::Supersede,
        }
    }
}

fn secs(d: PromDuration) -> u64 {
    d.as_millis().div_ceil(1000)
}

impl RolloutConfig {
    /// Moves a deprecated `max_hold_intervals` (under `key`) into
    /// `max_inconclusive_intervals`; the warning to show, or the problem when both disagree.
    pub fn renamed(&mut self, key: &str) -> Result<Option<crate::deprecated::Warning>, String> {
        let (v, warning) = crate::deprecated::renamed(
            &format!("{key}.max_hold_intervals"),
            &format!("{key}.max_inconclusive_intervals"),
            self.max_hold_intervals.take(),
            self.max_inconclusive_intervals,
            RolloutConfig::default().max_inconclusive_intervals,
        )?;
        self.max_inconclusive_intervals = v;
        Ok(warning)
    }

    /// Appends every problem, each naming its full key under `key`.
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if let Err(e) = Plan::new(&self.canary_plan) {
            problems.push(format!("{key}.canary_plan: {e}"));
        }
        for (name, d) in [
            ("analysis_interval", self.analysis_interval),
            ("sync_timeout", self.sync_timeout),
            ("retry_after", self.retry_after),
        ] {
            if secs(d) == 0 {
                problems.push(format!("{key}.{name}: must be at least 1s"));
            }
        }
    }

    /// The settings a new rollout of this service follows. Call after `validate`.
    pub fn settings(&self) -> Result<Settings, String> {
        Ok(Settings {
            canary_plan: Plan::new(&self.canary_plan).map_err(|e| format!("canary_plan: {e}"))?,
            bake_secs: secs(self.bake),
            analysis_interval_secs: secs(self.analysis_interval),
            verification_secs: secs(self.verification),
            max_inconclusive_intervals: self.max_inconclusive_intervals,
            sync_timeout_secs: secs(self.sync_timeout),
            on_sync_failure: self.on_sync_failure,
            retry_after_secs: secs(self.retry_after),
            pods: None,
            no_canary: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RolloutConfig, String> {
        yaml_serde::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_default_settings() {
        assert_eq!(
            RolloutConfig::default().settings().unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn durations_and_plan_parse_into_settings() {
        let c = parse(
            "canary_plan: [10, 50, 100]\nbake: 5m\nanalysis_interval: 30s\n\
             on_sync_failure: rollback\n",
        )
        .unwrap();
        let s = c.settings().unwrap();
        assert_eq!(s.canary_plan.to_string(), "10 -> 50 -> 100");
        assert_eq!((s.bake_secs, s.analysis_interval_secs), (300, 30));
        assert_eq!(s.on_sync_failure, SyncFailurePolicy::Rollback);
        assert_eq!(s.verification_secs, 600, "unset keys keep their defaults");
    }

    #[test]
    fn problems_name_the_full_key() {
        let c = parse("canary_plan: [50, 25]\nanalysis_interval: '0'\n").unwrap();
        let mut p = Vec::new();
        c.validate("services[0].rollout", &mut p);
        assert_eq!(
            p,
            [
                "services[0].rollout.canary_plan: weights must strictly increase, but 25 follows 50",
                "services[0].rollout.analysis_interval: must be at least 1s",
            ]
        );
        let err = parse("bake_time: 5m\n").unwrap_err();
        assert!(err.contains("unknown field `bake_time`"), "{err}");
        let err = parse("on_sync_failure: explode\n").unwrap_err();
        assert!(err.contains("explode"), "{err}");
    }
}
