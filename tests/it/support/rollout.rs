//! Rollout records for the integration tests: a fixed clock and the usual change.

use chrono::{DateTime, TimeDelta, Utc};
use deploybot_core::rollout::{Release, Target, Trigger};

/// `s` seconds after 2026-11-26 10:00 UTC.
pub fn t(s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::seconds(s)
}

/// `sha-<id>` of `service` to `env` (was `sha-0000000`), "Faster payments" by alice, PR #42.
pub fn trigger(id: &str, service: &str, env: &str) -> Trigger {
    Trigger {
        deploy_id: id.into(),
        target: Target {
            environment: env.into(),
            namespace: "shop".into(),
        },
        release: Release {
            service: service.into(),
            image_tag: format!("sha-{id}"),
            previous_tag: "sha-0000000".into(),
            changed_files: vec!["src/pay.rs".into()],
            commit_message: "Faster payments".into(),
            author: "alice".into(),
            pull_request: Some(42),
            commit_sha: None,
        },
    }
}
