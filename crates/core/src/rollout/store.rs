//! The rollout persistence port: what the shell needs from a store of rollouts (create, save a
//! transition with its audit row, read live and recent ones, the audit trail, the metric
//! history), in the core's types. The implementations (SQLite and PostgreSQL) are the shell's
//! (`deploybot::adapters::store`).

use chrono::{DateTime, Utc};

use super::input::{Effect, Input};
use super::lease::{Acquire, Lease};
use super::record::{MetricPoint, Rollout};
use super::step::Transition;

/// What the rollout store could not do.
#[derive(Debug, thiserror::Error)]
pub enum RolloutStoreError {
    /// The store itself failed (disk, lock, database); the cause is kept.
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error(
        "starting rollout {id}: {service}/{environment} already has a live rollout ({existing})"
    )]
    LiveConflict {
        id: String,
        service: String,
        environment: String,
        existing: String,
    },
    #[error("saving rollout {id}: it changed since it was read (another writer moved it)")]
    Conflict { id: String },
    #[error("saving rollout {id}: no such rollout")]
    NotFound { id: String },
    /// The writer's lease was taken over (`rollout::lease`): it must stop driving the rollout.
    #[error(
        "saving rollout {id}: fenced out; token {fence} is no longer the rollout's lease \
         (another replica took it over)"
    )]
    Fenced { id: String, fence: i64 },
    #[error("reading rollout {id}: stored record is not valid: {message}")]
    Corrupt { id: String, message: String },
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEvent {
    pub seq: i64,
    pub rollout_id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `Input::name()`, or `created`.
    pub cause: String,
    pub input: Option<Input>,
    pub decision: String,
    pub note: String,
    pub effects: Vec<Effect>,
    /// The phase after the event.
    pub phase: String,
}

/// The rollout persistence port.
pub trait RolloutStore {
    /// Stores a new rollout and its `created` audit row. Fails with `LiveConflict` when its
    /// service and environment already have a live rollout.
    fn create(&self, rollout: &Rollout, actor: &str) -> Result<(), RolloutStoreError>;
    /// Stores `transition` (which `step` computed from `before` and `input`) and its audit row in
    /// one transaction. Unchanged ticks are not recorded (they would drown the trail).
    fn save(
        &self,
        before: &Rollout,
        input: &Input,
        transition: &Transition,
    ) -> Result<(), RolloutStoreError>;
    /// Every rollout the shell still has work for (see `Rollout::is_live`), oldest first.
    fn live(&self) -> Result<Vec<Rollout>, RolloutStoreError>;
    fn get(&self, id: &str) -> Result<Option<Rollout>, RolloutStoreError>;
    /// The most recently updated rollouts, of one service or all, newest first.
    fn recent(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Rollout>, RolloutStoreError>;
    /// The audit trail of a service's rollouts, oldest first.
    fn history(&self, service: &str) -> Result<Vec<AuditEvent>, RolloutStoreError>;
    /// Records what the judge saw for `deploy_id`, in one transaction. Idempotent: a point whose
    /// (time, metric) is already stored updates that row (consecutive queries overlap), and a
    /// value already known is not replaced by a missing one. `NotFound` for an unknown rollout.
    fn record_metrics(
        &self,
        deploy_id: &str,
        points: &[MetricPoint],
    ) -> Result<(), RolloutStoreError>;
    /// The metric history of `deploy_id`, oldest first (then by metric name).
    fn metrics(&self, deploy_id: &str) -> Result<Vec<MetricPoint>, RolloutStoreError>;
    /// Takes or renews the lease of rollout `deploy_id` for `holder` until `now + ttl` (Unix
    /// ms), as `lease::claim` decides. A store only one process uses has nobody to share a
    /// rollout with: it grants every lease, with token 0.
    fn acquire_lease(
        &self,
        deploy_id: &str,
        holder: &str,
        now: i64,
        ttl: i64,
    ) -> Result<Acquire, RolloutStoreError> {
        Ok(Acquire::Granted(Lease {
            deploy_id: deploy_id.to_string(),
            holder: holder.to_string(),
            fence: 0,
            expires_at: now.saturating_add(ttl),
        }))
    }
    /// [`RolloutStore::save`], only while `lease`'s token is the rollout's current one
    /// (`Fenced` otherwise). A store only one process uses saves as `save` does.
    fn save_fenced(
        &self,
        before: &Rollout,
        input: &Input,
        t: &Transition,
        lease: &Lease,
    ) -> Result<(), RolloutStoreError> {
        let _ = lease;
        self.save(before, input, t)
    }
}
