//! The imperative shell around `step`: loads a rollout, steps it, persists the transition, runs
//! the effects through an `EffectRunner`, and feeds their results back in.
//!
//! Crash safety comes from the order of things: a transition (and the effects it asks for) is on
//! disk before any effect runs; an effect's result is fed back only after every effect of its
//! batch ran; and on start `recover` re-issues what each live record still owes
//! (`step::outstanding`). Effects are idempotent, so re-running one after a crash changes nothing
//! that already happened. The driver reads no clock (`now` is given) and keeps no state of its
//! own beyond its locks.
//!
//! One task at a time drives a rollout: every entry point (`feed`, `recover`, `tick_all`,
//! `reissue`) takes the rollout's lock (`adapters::lock`) for the whole chain of an input and
//! the effects it causes, so a `/rollback` that arrives while a step's commit is in flight waits
//! for that commit's result and then reverts it too. With a lock directory, processes sharing it
//! (`serve` and `deploybot rollout`) wait for each other as well.
//!
//! Across replicas sharing a PostgreSQL store (`with_leases`), a rollout is driven only under its
//! lease (`core::rollout::lease`): every entry point takes or renews it first, renews it before
//! each step of a chain, and saves with its fencing token, so a replica whose lease another took
//! over stops at its next step (`Fenced`) instead of writing over the new owner's work; a
//! rollout another replica holds answers `HeldElsewhere`. The effects themselves are not checked
//! against the token yet.
//!
//! `run` is a bare loop (recover, then tick on an interval) for the driver's own tests; `serve`
//! runs `shell::webhook::server::rollout_loop`, which also promotes releases to the next
//! environment and reconciles. The production `EffectRunner` is `shell::runner::LiveRunner`.

use std::collections::VecDeque;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::adapters::lock::{LockError, RolloutLocks};
use deploybot_core::failure::Failure;
use deploybot_core::rollout::input::{Effect, Input};
use deploybot_core::rollout::lease::{Acquire, Lease};
use deploybot_core::rollout::record::Rollout;
use deploybot_core::rollout::step::{Transition, outstanding, step};
use deploybot_core::rollout::store::{RolloutStore, RolloutStoreError};

/// Most inputs one `feed` processes (its own plus the effects' results), so a runner that
/// keeps answering can never spin the driver forever.
const MAX_CHAIN: usize = 64;

/// Runs effects. Implementations must be idempotent: running an effect twice (after a crash)
/// must leave the world as running it once did, and answer the same. A failed effect is a
/// classified `Failure`: a transient one is re-issued after `settings.retry_after` by `step`.
pub trait EffectRunner: Send + Sync {
    /// Runs `effect` for `rollout`; returns the input its outcome produces, if any
    /// (`CommitStep` and `MergeApprovalPr` -> `Committed` with the weight in flight,
    /// `Revert` -> `Reverted`, `WaitForSync` -> `Synced` or
    /// `SyncFailed`, `QueryMetrics` -> `Judged` or `MetricsUnavailable`).
    fn run(
        &self,
        rollout: &Rollout,
        effect: &Effect,
    ) -> impl Future<Output = Result<Option<Input>, Failure>> + Send;
}

// The clock port and the wall clock, where the driver's users have always found them.
pub use crate::adapters::clock::SystemClock;
pub use deploybot_core::clock::Clock;

/// What the driver could not do.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Store(#[from] RolloutStoreError),
    #[error("driving rollout {0}: no such rollout")]
    NotFound(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "rollout {0} is superseded but still reverting what it shipped; the newer rollout \
         starts once that is done"
    )]
    StillReverting(String),
    /// Another replica holds the rollout's lease: it drives the rollout, this one does not.
    #[error("rollout {id} is driven by replica {holder} (its lease runs until {until} ms)")]
    HeldElsewhere {
        id: String,
        holder: String,
        until: i64,
    },
}

/// Who this driver is among the replicas sharing its store, and how long a rollout lease lasts
/// without renewal (the longest a dead replica's rollouts wait for another to take them over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTerms {
    pub holder: String,
    pub ttl: std::time::Duration,
}

/// The rollout shell over a store and an effect runner.
pub struct Driver<S, R> {
    store: S,
    runner: R,
    locks: RolloutLocks,
    /// Set when replicas share the store: rollouts are then driven under their leases.
    lease_terms: Option<LeaseTerms>,
}

impl<S: RolloutStore, R: EffectRunner> Driver<S, R> {
    /// A driver whose rollouts are locked within this process.
    pub fn new(store: S, runner: R) -> Self {
        Driver {
            store,
            runner,
            locks: RolloutLocks::in_process(),
            lease_terms: None,
        }
    }

    /// The driver driving each rollout only under its lease, as replica `terms.holder`.
    pub fn with_leases(mut self, terms: LeaseTerms) -> Self {
        self.lease_terms = Some(terms);
        self
    }

    /// Takes or renews the lease of `id` (with leases on); `held` is the one this chain holds,
    /// whose token a renewal must keep, or the chain was taken over and must stop.
    fn lease(
        &self,
        id: &str,
        now: DateTime<Utc>,
        held: Option<&Lease>,
    ) -> Result<Option<Lease>, DriverError> {
        let Some(terms) = &self.lease_terms else {
            return Ok(None);
        };
        let ttl = i64::try_from(terms.ttl.as_millis()).unwrap_or(i64::MAX);
        let acquired = self
            .store
            .acquire_lease(id, &terms.holder, now.timestamp_millis(), ttl)?;
        match (acquired, held) {
            (Acquire::Granted(l), Some(h)) if l.fence != h.fence => {
                Err(RolloutStoreError::Fenced {
                    id: id.to_string(),
                    fence: h.fence,
                }
                .into())
            }
            (Acquire::Granted(l), _) => Ok(Some(l)),
            (Acquire::Held { holder, .. }, Some(h)) => {
                tracing::warn!(rollout = id, %holder, "lease taken over; stopping this chain");
                Err(RolloutStoreError::Fenced {
                    id: id.to_string(),
                    fence: h.fence,
                }
                .into())
            }
            (Acquire::Held { holder, until }, None) => Err(DriverError::HeldElsewhere {
                id: id.to_string(),
                holder,
                until,
            }),
        }
    }

    /// The driver with `locks` (shared with other processes when they have a directory).
    pub fn with_locks(mut self, locks: RolloutLocks) -> Self {
        self.locks = locks;
        self
    }

    pub fn runner(&self) -> &R {
        &self.runner
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Stores a new rollout and feeds it its first input (usually `Assessed`).
    pub async fn start(
        &self,
        rollout: &Rollout,
        actor: &str,
        first: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Transition>, DriverError> {
        self.store.create(rollout, actor)?;
        self.feed(&rollout.deploy_id, first, now).await
    }

    /// Supersedes rollout `old` (admission decided it must go) and starts `rollout`. The old
    /// one moves first, through `step` and the audit trail like any other input, and reverts
    /// what it shipped; only once that revert is in does the new one start (`StillReverting`
    /// otherwise: the caller retries later, as for a queued release). A crash between the two
    /// leaves the old one superseded and the trigger (a durable webhook delivery) retried, which
    /// then starts the new one.
    pub async fn supersede_then_start(
        &self,
        old: &str,
        rollout: &Rollout,
        actor: &str,
        first: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Transition>, DriverError> {
        let by = Input::Superseded {
            by_deploy_id: rollout.deploy_id.clone(),
        };
        let mut done = self.feed(old, by, now).await?;
        if self.store.get(old)?.is_some_and(|r| r.is_live()) {
            return Err(DriverError::StillReverting(old.to_string()));
        }
        done.extend(self.start(rollout, actor, first, now).await?);
        Ok(done)
    }

    /// Applies `input` to rollout `id`, persists, runs the effects, and feeds their results
    /// back until nothing more follows, holding the rollout's lock throughout. Returns every
    /// transition made, in order.
    pub async fn feed(
        &self,
        id: &str,
        input: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Transition>, DriverError> {
        let _driving = self.locks.lock(id).await?;
        let lease = self.lease(id, now, None)?;
        self.feed_locked(id, input, now, lease).await
    }

    /// [`Driver::feed`] by a caller that holds the rollout's lock.
    async fn feed_locked(
        &self,
        id: &str,
        input: Input,
        now: DateTime<Utc>,
        mut lease: Option<Lease>,
    ) -> Result<Vec<Transition>, DriverError> {
        let mut queue = VecDeque::from([input]);
        let mut done = Vec::new();
        while let Some(input) = queue.pop_front() {
            if done.len() >= MAX_CHAIN {
                tracing::warn!(rollout = id, "stopping a chain of {MAX_CHAIN} inputs");
                break;
            }
            if !done.is_empty() && lease.is_some() {
                // The effects may have taken a while: renew, or learn it was taken over.
                lease = self.lease(id, now, lease.as_ref())?;
            }
            let before = self
                .store
                .get(id)?
                .ok_or_else(|| DriverError::NotFound(id.to_string()))?;
            let t = step(&before, input.clone(), now);
            match &lease {
                Some(l) => self.store.save_fenced(&before, &input, &t, l)?,
                None => self.store.save(&before, &input, &t)?,
            }
            queue.extend(self.run_all(&t.next, &t.effects).await);
            done.push(t);
        }
        Ok(done)
    }

    /// On start: every live rollout re-issues what its record says is still owed, and the
    /// results are fed back. Safe to call any number of times.
    pub async fn recover(&self, now: DateTime<Utc>) -> Result<usize, DriverError> {
        let live = self.store.live()?;
        for r in &live {
            let _driving = self.locks.lock(&r.deploy_id).await?;
            let lease = match self.lease(&r.deploy_id, now, None) {
                Ok(lease) => lease,
                // Another replica drives it, and recovers it.
                Err(DriverError::HeldElsewhere { .. }) => continue,
                Err(e) => return Err(e),
            };
            // Read again under the lock: another task may have moved it since the listing.
            let Some(r) = self.store.get(&r.deploy_id)? else {
                continue;
            };
            let owed = outstanding(&r);
            if owed.is_empty() {
                continue;
            }
            tracing::info!(rollout = %r.deploy_id, effects = owed.len(), "re-issuing owed effects");
            for input in self.run_all(&r, &owed).await {
                self.feed_locked(&r.deploy_id, input, now, lease.clone())
                    .await?;
            }
        }
        Ok(live.len())
    }

    /// Runs `effects` for rollout `id` as it is stored (under its lock) and feeds their results
    /// back: what the reconcile re-issues that no record owes any more (closing the approval PR
    /// of an ended rollout).
    pub async fn reissue(
        &self,
        id: &str,
        effects: &[Effect],
        now: DateTime<Utc>,
    ) -> Result<Vec<Transition>, DriverError> {
        let _driving = self.locks.lock(id).await?;
        let lease = self.lease(id, now, None)?;
        let r = self
            .store
            .get(id)?
            .ok_or_else(|| DriverError::NotFound(id.to_string()))?;
        let mut done = Vec::new();
        for input in self.run_all(&r, effects).await {
            done.extend(self.feed_locked(id, input, now, lease.clone()).await?);
        }
        Ok(done)
    }

    /// Feeds a `Tick` to every live rollout. One rollout's failure (say, a write conflict) is
    /// logged and does not keep the others from their tick.
    pub async fn tick_all(&self, now: DateTime<Utc>) -> Result<(), DriverError> {
        for r in self.store.live()? {
            match self.feed(&r.deploy_id, Input::Tick, now).await {
                Ok(_) => {}
                // Its owner ticks it.
                Err(DriverError::HeldElsewhere { .. }) => {}
                Err(e) => tracing::warn!(rollout = %r.deploy_id, "ticking: {e}"),
            }
        }
        Ok(())
    }

    /// The shell's loop: `recover`, then a `tick_all` every `every`, until `shutdown` resolves.
    /// Time comes from `clock`, so tests run it on tokio's paused clock.
    pub async fn run(
        &self,
        clock: &impl Clock,
        every: std::time::Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DriverError> {
        self.recover(clock.now()).await?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = interval.tick() => {
                    if let Err(e) = self.tick_all(clock.now()).await {
                        tracing::warn!("ticking rollouts: {e}");
                    }
                }
            }
        }
    }

    /// Runs every effect of a batch, collecting the inputs their outcomes produce. Results are
    /// fed back only after the whole batch ran, so a crash mid-batch leaves the record saying
    /// what is owed.
    async fn run_all(&self, rollout: &Rollout, effects: &[Effect]) -> Vec<Input> {
        let mut results = Vec::new();
        for effect in effects {
            match self.runner.run(rollout, effect).await {
                Ok(Some(input)) => results.push(input),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        rollout = %rollout.deploy_id,
                        effect = ?effect.kind(),
                        transient = e.is_transient(),
                        "effect failed: {e}"
                    );
                    results.push(Input::EffectFailed {
                        effect: effect.kind(),
                        transient: e.is_transient(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        results
    }
}
