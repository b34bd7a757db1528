//! The pipeline: what turns a release (a merged change, `/deploy`, `deploybot rollout start`)
//! into rollouts, environment after environment, and routes commands to the rollout they are
//! about. It owns the driver and is what `serve`, the CLI and the demo hold.
//!
//! Environments follow the configured order: the first one starts at once; each next one starts
//! when the previous one's rollout is `Complete` (checked on every tick, so a crash between the
//! two only delays the promotion by one tick). A rollback holds the service in that environment,
//! and nothing starts there until a human releases it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::adapters::lock::RolloutLocks;
use crate::adapters::store::Store;
use crate::adapters::store::{approval_prs, holds};
use crate::config::{Config, ServiceSpec};
use crate::shell::driver::{Driver, DriverError, EffectRunner, LeaseTerms};
use deploybot_core::failure::{Class, Failure};
use deploybot_core::github::RepoName;
pub use deploybot_core::rollout::admission::Gate;
use deploybot_core::rollout::admission::{
    Admission, Destination, Environment, admit, deploy_id, promotions,
};
use deploybot_core::rollout::input::{Closing, Command, Effect, Input};
pub use deploybot_core::rollout::record::Release;
use deploybot_core::rollout::record::{Phase, Rollout, Settings, State, Target};
use deploybot_core::rollout::step::{Outcome, Transition, closing};
use deploybot_core::rollout::store::RolloutStore;

/// Why a release did not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("service {0:?} is not in the configuration")]
    UnknownService(String),
    #[error("service {service:?} has no environment {environment:?}")]
    UnknownEnvironment {
        service: String,
        environment: String,
    },
    #[error("service {0:?} has no environments to deploy to")]
    NoEnvironments(String),
    #[error(
        "{service}/{environment} is held since {since} by rollout {deploy_id} ({reason}); \
         release it with `/hold cancel` on that PR or `deploybot rollout release`"
    )]
    Held {
        service: String,
        environment: String,
        deploy_id: String,
        reason: String,
        since: String,
    },
    #[error(
        "{service}/{environment} is busy with rollout {live} (new versions queue with \
         rollout.on_new_version: queue, and any wait while a superseded or rolled-back rollout \
         still reverts what it shipped); it starts when that one finishes"
    )]
    Busy {
        service: String,
        environment: String,
        live: String,
    },
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Store(#[from] crate::adapters::store::StoreError),
    #[error(transparent)]
    RolloutStore(#[from] deploybot_core::rollout::store::RolloutStoreError),
}

/// The pipeline's one classification: the store being busy is worth retrying later; a refusal
/// (unknown service or environment, held, busy) is not.
impl From<PipelineError> for Failure {
    fn from(e: PipelineError) -> Failure {
        let class = match e {
            PipelineError::Store(_) | PipelineError::RolloutStore(_) | PipelineError::Driver(_) => {
                Class::Transient
            }
            PipelineError::UnknownService(_)
            | PipelineError::UnknownEnvironment { .. }
            | PipelineError::NoEnvironments(_)
            | PipelineError::Held { .. }
            | PipelineError::Busy { .. } => Class::Permanent,
        };
        Failure::new(class, "", e.to_string())
    }
}

/// What happened to a command given on a PR.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// Fed to rollout `deploy_id`; the transition says what became of it.
    Applied { deploy_id: String, note: String },
    /// Refused by the state machine (e.g. `/promote` while syncing).
    Rejected { deploy_id: String, note: String },
    /// No rollout of this PR is live.
    NoRollout,
}

/// How long a replica's rollout lease lasts without renewal: the longest a rollout of a replica
/// that died waits for another to take it over (issue 16 asks for at most 30 s).
pub const ROLLOUT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Pipeline<R> {
    config: Arc<Config>,
    store: Store,
    driver: Driver<Store, R>,
    /// The rollouts' locks, also taken per environment while a release is admitted there.
    locks: RolloutLocks,
}

impl<R: EffectRunner> Pipeline<R> {
    /// The pipeline over `store`, driving rollouts with `runner`; rollouts are locked through
    /// files under `store.data_dir`, so `serve` and `deploybot rollout` never drive one rollout
    /// at the same time.
    pub fn new(config: Arc<Config>, store: Store, runner: R) -> Self {
        let locks = RolloutLocks::in_dir(config.store.data_dir.join("locks"));
        let mut driver = Driver::new(store.clone(), runner).with_locks(locks.clone());
        // Replicas sharing a PostgreSQL store drive each rollout under its lease.
        if let Some(replica) = store.replica() {
            driver = driver.with_leases(LeaseTerms {
                holder: replica.to_string(),
                ttl: ROLLOUT_LEASE,
            });
        }
        Pipeline {
            driver,
            config,
            store,
            locks,
        }
    }

    pub fn driver(&self) -> &Driver<Store, R> {
        &self.driver
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn service(&self, name: &str) -> Result<&ServiceSpec, PipelineError> {
        self.config
            .service(name)
            .ok_or_else(|| PipelineError::UnknownService(name.to_string()))
    }

    /// Starts `release` in `environment` (default: the first), superseding the live rollout
    /// there. A trigger delivered twice finds its rollout and starts nothing new; returns the
    /// deploy id either way. What it gets is `admission::admit`'s decision; this only reads the
    /// environment from the store and carries the answer out.
    pub async fn start(
        &self,
        release: &Release,
        gate: Gate,
        environment: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<String, PipelineError> {
        let service = self.service(&release.service)?;
        let env = match environment {
            Some(name) => {
                service
                    .environment(name)
                    .ok_or_else(|| PipelineError::UnknownEnvironment {
                        service: service.name.clone(),
                        environment: name.to_string(),
                    })?
            }
            None => service
                .environments()
                .first()
                .ok_or_else(|| PipelineError::NoEnvironments(service.name.clone()))?,
        };
        // One release admitted at a time per environment (the webhook worker, the tick loop's
        // promotions and `deploybot rollout start` all start rollouts): two that read the same
        // live rollout would both supersede it. Taken before any rollout's lock, never after.
        let _admitting = self
            .locks
            .lock(&format!("environment {}/{}", service.name, env.name))
            .await
            .map_err(DriverError::from)?;
        let hold = holds::hold_of(&self.store, &service.name, &env.name)?;
        let live = self
            .store
            .live()?
            .into_iter()
            .find(|r| r.service() == service.name && r.environment() == env.name);
        let mut same_tag = Vec::new();
        while let Some(r) = self.store.get(&deploy_id(
            &service.name,
            &env.name,
            &release.image_tag,
            same_tag.len() + 1,
        ))? {
            same_tag.push(r);
        }
        let last_completed = self
            .store
            .recent(Some(&service.name), 200)?
            .into_iter()
            .find(|r| r.environment() == env.name && r.phase() == Phase::Complete);
        let dest = Destination {
            target: Target {
                environment: env.name.clone(),
                namespace: service.namespace.clone(),
            },
            settings: Settings {
                pods: env.pods(),
                no_canary: !env.carries_canary(),
                ..service.settings.clone()
            },
            require_approval: env.approval.required,
            on_new_version: service.on_new_version,
        };
        let environment = Environment {
            hold: hold.as_ref(),
            live: live.as_ref(),
            same_tag: &same_tag,
            last_completed_tag: last_completed.as_ref().map(|r| r.image_tag()),
        };
        match admit(environment, release, gate, &dest, now) {
            Admission::Held { hold } => Err(PipelineError::Held {
                service: hold.service,
                environment: hold.environment,
                deploy_id: hold.deploy_id,
                reason: hold.reason,
                since: hold.since,
            }),
            Admission::Queue { behind } => Err(PipelineError::Busy {
                service: service.name.clone(),
                environment: env.name.clone(),
                live: behind,
            }),
            Admission::AlreadyRunning { deploy_id } => {
                tracing::info!(rollout = %deploy_id, "already rolling out; not starting it again");
                Ok(deploy_id)
            }
            Admission::Start { rollout, first } => {
                tracing::info!(rollout = %rollout.deploy_id, strategy = %gate.strategy, "starting rollout");
                self.driver.start(&rollout, actor, first, now).await?;
                Ok(rollout.deploy_id)
            }
            Admission::Supersede {
                rollout,
                first,
                superseded,
            } => {
                tracing::info!(rollout = %rollout.deploy_id, %superseded, strategy = %gate.strategy, "starting rollout, superseding the live one");
                match self
                    .driver
                    .supersede_then_start(&superseded, &rollout, actor, first, now)
                    .await
                {
                    Ok(_) => Ok(rollout.deploy_id),
                    // Its revert failed for now (retried on a tick): this release waits, as a
                    // queued one does.
                    Err(DriverError::StillReverting(live)) => Err(PipelineError::Busy {
                        service: service.name.clone(),
                        environment: env.name.clone(),
                        live,
                    }),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// One turn of the loop: every live rollout gets a tick, then completed environments
    /// promote the release to the next one.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        self.driver.tick_all(now).await?;
        self.promote_completed(now).await
    }

    /// Starts the next environment of every release whose rollout completed, once
    /// (`admission::promotions` decides which).
    pub async fn promote_completed(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        let recent = self.store.recent(None, 200)?;
        let order: std::collections::BTreeMap<&str, Vec<String>> = self
            .config
            .services
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.environments().iter().map(|e| e.name.clone()).collect(),
                )
            })
            .collect();
        for p in promotions(&recent, |service| order.get(service).map(Vec::as_slice)) {
            match self
                .start(&p.release, p.gate, Some(&p.environment), "pipeline", now)
                .await
            {
                Ok(id) => tracing::info!(
                    from = %p.from, rollout = %id,
                    "{} verified; promoting to {}", p.release.image_tag, p.environment
                ),
                Err(e) => tracing::warn!(from = %p.from, "promoting to {}: {e}", p.environment),
            }
        }
        Ok(())
    }

    /// The live rollout a PR command is about: the app PR's rollout, or the one whose approval
    /// PR it is.
    pub fn rollout_for_pr(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Option<Rollout>, PipelineError> {
        if let Some(link) =
            approval_prs::approval_pr_by_number(&self.store, &repo.to_string(), number)?
        {
            return Ok(self.store.get(&link.deploy_id)?);
        }
        let services: Vec<&str> = self
            .config
            .services_by_app_repo(repo)
            .map(|s| s.name.as_str())
            .collect();
        let recent = self.store.recent(None, 500)?;
        // The live one first; else the newest (a terminal rollout still answers /status).
        let mine = |r: &&Rollout| {
            r.release.pull_request == Some(number) && services.contains(&r.service())
        };
        Ok(recent
            .iter()
            .filter(mine)
            .find(|r| r.is_live() && !r.phase().is_terminal())
            .or_else(|| recent.iter().find(mine))
            .cloned())
    }

    /// Gives `cmd` (already permission-checked) to the rollout of `repo#number`.
    pub async fn command(
        &self,
        repo: &RepoName,
        number: u64,
        cmd: Command,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<CommandOutcome, PipelineError> {
        let Some(r) = self.rollout_for_pr(repo, number)? else {
            return Ok(CommandOutcome::NoRollout);
        };
        // `/hold cancel` also releases the hold a rollback left behind, on a finished rollout.
        if cmd == Command::HoldCancel && r.phase().is_terminal() {
            let released = holds::release(&self.store, r.service(), r.environment())?;
            let note = if released {
                format!("{}/{} released by @{by}", r.service(), r.environment())
            } else {
                format!("{}/{} was not held", r.service(), r.environment())
            };
            tracing::info!(rollout = %r.deploy_id, "{note}");
            return Ok(CommandOutcome::Applied {
                deploy_id: r.deploy_id,
                note,
            });
        }
        let input = Input::Command {
            cmd,
            by: by.to_string(),
        };
        let transitions = self.driver.feed(&r.deploy_id, input, now).await?;
        Ok(outcome(r.deploy_id, &transitions))
    }

    /// Closes the approval PRs of rollouts that ended (or roll back) while the close is not
    /// recorded as done: what the reconcile finishes after a crash, or after GitHub was down.
    pub async fn close_stale_approval_prs(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        for link in approval_prs::unclosed(&self.store)? {
            let Some(r) = self.store.get(&link.deploy_id)? else {
                continue;
            };
            let why = match &r.state {
                State::Ended { end, .. } => closing(end),
                State::RollingBack { .. } => Closing::RolledBack,
                State::Superseding { by, .. } => Closing::Superseded {
                    by_deploy_id: by.clone(),
                },
                State::Running { .. } | State::Paused { .. } => continue,
            };
            let effects = [Effect::CloseApprovalPr { why }];
            self.driver.reissue(&r.deploy_id, &effects, now).await?;
        }
        Ok(())
    }

    /// Feeds `input` to rollout `id` (approvals, CLI steering).
    pub async fn feed(
        &self,
        id: &str,
        input: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Transition>, PipelineError> {
        Ok(self.driver.feed(id, input, now).await?)
    }
}

fn outcome(deploy_id: String, transitions: &[Transition]) -> CommandOutcome {
    match transitions.first() {
        Some(t) if t.outcome == Outcome::Rejected => CommandOutcome::Rejected {
            deploy_id,
            note: t.note.clone(),
        },
        Some(t) => CommandOutcome::Applied {
            deploy_id,
            note: t.note.clone(),
        },
        None => CommandOutcome::NoRollout,
    }
}
