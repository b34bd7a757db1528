//! A sample deploy step for the tests of the texts the writer commits and proposes (and of the
//! writer around them): `checkout` 1.4.2 to production at 20 %, one image changed. Compiled only
//! for tests and for the `test-support` feature.

use super::FileChange;
use super::commit_message::CommitInfo;
use crate::manifest::ValueChange;

/// The step's commit info: every trailer present.
pub fn info() -> CommitInfo {
    CommitInfo {
        summary: "ship ghcr.io/acme/checkout:1.4.2".into(),
        deploy_id: "d-20261126-0042".into(),
        service: "checkout".into(),
        environment: "production".into(),
        step: Some("canary 2/5".into()),
        weight: Some(20),
        image: Some("ghcr.io/acme/checkout:1.4.2".into()),
        risk_score: Some(37),
        source_pr: Some("acme/checkout#42".into()),
    }
}

/// The step's one change: the production deployment's image.
pub fn changes() -> Vec<FileChange> {
    vec![FileChange {
        path: "apps/checkout/production/deployment.yaml".into(),
        changes: vec![ValueChange {
            location: "doc 0: spec.template.spec.containers[0].image".into(),
            line: 21,
            old: "ghcr.io/acme/checkout:1.4.1".into(),
            new: "ghcr.io/acme/checkout:1.4.2".into(),
        }],
    }]
}
