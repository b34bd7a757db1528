//! Test helpers shared by the rollout modules' unit tests and the shell's tests: a fixed clock,
//! the usual trigger and a rollback. Golden files are the root's integration tests'
//! (`tests/it/golden.rs`): the core's tests read no files.

use chrono::{DateTime, TimeDelta, Utc};

use super::input::Input;
use super::plan::Weight;
use super::record::Observation;
use super::record::{Release, Target, Trigger};
use crate::risk::Strategy;

/// `s` seconds after 2026-11-26 10:00 UTC, the tests' fixed epoch.
pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(s)
}

/// A `canary_25` rollout committed and synced at 25 % as `bad0001`, then rolled back by the
/// judge with `evidence`.
pub fn rolled_back_at_25(evidence: &str) -> Vec<Input> {
    let w25 = Weight::new(25).unwrap();
    vec![
        Input::Assessed {
            risk_score: 0.7,
            strategy: Strategy::Canary25,
            approval_required: false,
        },
        Input::Committed {
            sha: "bad0001".into(),
            weight: w25,
        },
        Input::Synced {
            revision: "bad0001".into(),
        },
        Input::judged(Observation::Rollback {
            metric: "error_rate".into(),
            evidence: evidence.into(),
        }),
    ]
}

/// The tests' usual change: `sha-abc1234` of `service` (was `sha-0000000`) by alice, PR #42.
pub fn trigger(deploy_id: &str, service: &str, environment: &str) -> Trigger {
    Trigger {
        deploy_id: deploy_id.into(),
        target: Target {
            environment: environment.into(),
            namespace: "shop".into(),
        },
        release: Release {
            service: service.into(),
            image_tag: "sha-abc1234".into(),
            previous_tag: "sha-0000000".into(),
            changed_files: vec!["src/pay.rs".into()],
            commit_message: "Faster payments".into(),
            author: "alice".into(),
            pull_request: Some(42),
            commit_sha: None,
        },
    }
}
