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

use crate::adapters::store::Store;
use crate::adapters::store::links;
use crate::config::{Config, ServiceSpec};
use crate::shell::driver::{Driver, DriverError, EffectRunner};
use deploybot_core::github::RepoName;
use deploybot_core::rollout::input::{Command, Input};
use deploybot_core::rollout::plan::Strategy;
pub use deploybot_core::rollout::record::Release;
use deploybot_core::rollout::record::{Phase, Rollout, Trigger};
use deploybot_core::rollout::step::Transition;
use deploybot_core::rollout::store::RolloutStore;

/// The risk assessment's word, in rollout terms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gate {
    pub risk_score: f64,
    pub strategy: Strategy,
    pub approval_required: bool,
}

impl Gate {
    pub fn from_assessment(a: &deploybot_core::risk::Assessment) -> Gate {
        Gate {
            risk_score: a.risk_score,
            strategy: match a.recommended_strategy {
                deploybot_core::risk::Strategy::Direct => Strategy::Direct,
                deploybot_core::risk::Strategy::Canary25 => Strategy::Canary25,
                deploybot_core::risk::Strategy::Canary10 => Strategy::Canary10,
                deploybot_core::risk::Strategy::Canary5 => Strategy::Canary5,
            },
            approval_required: a.requires_manual_approval,
        }
    }
}

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
        "{service}/{environment} is busy with rollout {live}, and new versions queue \
         (rollout.on_new_version: queue); it starts when that one finishes"
    )]
    Busy {
        service: String,
        environment: String,
        live: String,
    },
    #[error("{0}")]
    Driver(#[from] DriverError),
    #[error("{0}")]
    Store(#[from] crate::adapters::store::StoreError),
    #[error("{0}")]
    RolloutStore(#[from] deploybot_core::rollout::store::RolloutStoreError),
}

impl PipelineError {
    /// Worth retrying later (the store was busy), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PipelineError::Store(_) | PipelineError::RolloutStore(_) | PipelineError::Driver(_)
        )
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

pub struct Pipeline<R> {
    config: Arc<Config>,
    store: Store,
    driver: Driver<Store, R>,
}

/// The id of the `n`th rollout (from 1) of `tag` to `environment`: readable and deterministic,
/// so a redelivered trigger finds the rollout it already started.
pub fn deploy_id(service: &str, environment: &str, tag: &str, n: u32) -> String {
    let base = format!("{service}-{environment}-{tag}");
    if n <= 1 { base } else { format!("{base}-{n}") }
}

impl<R: EffectRunner> Pipeline<R> {
    pub fn new(config: Arc<Config>, store: Store, runner: R) -> Self {
        Pipeline {
            driver: Driver::new(store.clone(), runner),
            config,
            store,
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
    /// deploy id either way.
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
        if let Some(h) = links::hold_of(&self.store, &service.name, &env.name)? {
            return Err(PipelineError::Held {
                service: h.service,
                environment: h.environment,
                deploy_id: h.deploy_id,
                reason: h.reason,
                since: h.since,
            });
        }
        let mut n = 1;
        let id = loop {
            let id = deploy_id(&service.name, &env.name, &release.image_tag, n);
            match self.store.get(&id)? {
                Some(r) if r.is_live() => {
                    tracing::info!(rollout = %id, "already rolling out; not starting it again");
                    return Ok(id);
                }
                Some(_) => n += 1,
                None => break id,
            }
        };
        if service.on_new_version == deploybot_core::rollout::config::OnNewVersion::Queue
            && let Some(live) = self.store.live()?.into_iter().find(|r| {
                r.service == service.name && r.environment == env.name && !r.phase.is_terminal()
            })
        {
            return Err(PipelineError::Busy {
                service: service.name.clone(),
                environment: env.name.clone(),
                live: live.deploy_id,
            });
        }
        // "Was" what deploybot last completed here, when the trigger did not say.
        let previous_tag = if release.previous_tag.is_empty() {
            self.store
                .recent(Some(&service.name), 200)?
                .into_iter()
                .find(|r| r.environment == env.name && r.phase == Phase::Complete)
                .map(|r| r.image_tag)
                .unwrap_or_default()
        } else {
            release.previous_tag.clone()
        };
        let rollout = Rollout::new(
            Trigger {
                deploy_id: id.clone(),
                namespace: service.namespace.clone(),
                environment: env.name.clone(),
                release: Release {
                    previous_tag,
                    ..release.clone()
                },
            },
            service.settings.clone(),
            now,
        );
        let first = Input::Assessed {
            risk_score: gate.risk_score,
            strategy: gate.strategy,
            approval_required: gate.approval_required || env.approval.required,
        };
        tracing::info!(rollout = %id, strategy = %gate.strategy, "starting rollout");
        self.driver
            .start_superseding(&rollout, actor, first, now)
            .await?;
        Ok(id)
    }

    /// One turn of the loop: every live rollout gets a tick, then completed environments
    /// promote the release to the next one.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        self.driver.tick_all(now).await?;
        self.promote_completed(now).await
    }

    /// Starts the next environment of every release whose rollout completed, once.
    pub async fn promote_completed(&self, now: DateTime<Utc>) -> Result<(), PipelineError> {
        let recent = self.store.recent(None, 200)?;
        for done in recent.iter().filter(|r| r.phase == Phase::Complete) {
            let Ok(service) = self.service(&done.service) else {
                continue;
            };
            let environments = service.environments();
            let Some(pos) = environments.iter().position(|e| e.name == done.environment) else {
                continue;
            };
            let Some(next) = environments.get(pos + 1) else {
                continue;
            };
            let started = recent.iter().any(|r| {
                r.service == done.service
                    && r.environment == next.name
                    && r.image_tag == done.image_tag
                    && r.created_at >= done.created_at
            });
            if started {
                continue;
            }
            let (Some(risk_score), Some(strategy)) = (done.risk_score, done.strategy) else {
                continue;
            };
            let release = done.release();
            let gate = Gate {
                risk_score,
                strategy,
                approval_required: done.approval_required,
            };
            match self
                .start(&release, gate, Some(&next.name), "pipeline", now)
                .await
            {
                Ok(id) => tracing::info!(
                    from = %done.deploy_id, rollout = %id,
                    "{} verified in {}; promoting to {}", done.image_tag, done.environment, next.name
                ),
                Err(e) => tracing::warn!(from = %done.deploy_id, "promoting to {}: {e}", next.name),
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
        if let Some(link) = links::approval_pr_by_number(&self.store, &repo.to_string(), number)? {
            return Ok(self.store.get(&link.deploy_id)?);
        }
        let services: Vec<&str> = self
            .config
            .services_by_app_repo(repo)
            .map(|s| s.name.as_str())
            .collect();
        let recent = self.store.recent(None, 500)?;
        // The live one first; else the newest (a terminal rollout still answers /status).
        let mine =
            |r: &&Rollout| r.pull_request == Some(number) && services.contains(&r.service.as_str());
        Ok(recent
            .iter()
            .filter(mine)
            .find(|r| r.is_live() && !r.phase.is_terminal())
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
        if cmd == Command::HoldCancel && r.phase.is_terminal() {
            let released = links::release(&self.store, &r.service, &r.environment)?;
            let note = if released {
                format!("{}/{} released by @{by}", r.service, r.environment)
            } else {
                format!("{}/{} was not held", r.service, r.environment)
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
        Some(t) if t.decision == deploybot_core::rollout::step::Decision::Rejected => {
            CommandOutcome::Rejected {
                deploy_id,
                note: t.note.clone(),
            }
        }
        Some(t) => CommandOutcome::Applied {
            deploy_id,
            note: t.note.clone(),
        },
        None => CommandOutcome::NoRollout,
    }
}
