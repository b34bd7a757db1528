//! Rollout records for the integration tests: the core's fixed clock and usual change
//! (`deploybot_core::rollout::testing`), with an image tag of each rollout's own.

use deploybot_core::rollout::Trigger;
pub use deploybot_core::rollout::testing::t;

/// `sha-<id>` of `service` to `env` (was `sha-0000000`), "Faster payments" by alice, PR #42.
pub fn trigger(id: &str, service: &str, env: &str) -> Trigger {
    let mut tr = deploybot_core::rollout::testing::trigger(id, service, env);
    tr.release.image_tag = format!("sha-{id}");
    tr
}
