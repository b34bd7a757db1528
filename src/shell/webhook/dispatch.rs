//! Executes a delivery's route (`deploybot_core::webhook::route`, which decided what it means):
//! pull requests of configured services are risk-assessed (comment, labels, status) and, once
//! merged, become releases; comments on pull requests are commands; reviews and merges may
//! approve an approval PR; completed checks and published packages release what waited for its
//! checks. `shell::events` does the rollout side.

use std::sync::Arc;

use crate::adapters::store::Store;
use crate::adapters::store::StoredDelivery;
use crate::config::Config;
use crate::shell::assess::{assess_pull_request, assess_service, touched_paths};
use crate::shell::driver::Clock;
use crate::shell::events::{Merged, RolloutEvents};
use crate::shell::pipeline::{Gate, Pipeline};
use crate::shell::runner::{LiveRunner, PrometheusWindows, WindowSource};
use crate::shell::webhook::repos;
use crate::shell::webhook::worker::{Processed, Processor};
use deploybot_core::failure::Failure;
use deploybot_core::github::{Github, RepoName};
use deploybot_core::risk::RiskStatusGate;
use deploybot_core::risk::model::RiskModel;
use deploybot_core::webhook::event::Parsed;
use deploybot_core::webhook::route::{self, Route, route};

/// The production processor. `W` is where rollouts read metrics (Prometheus in production).
pub struct Dispatcher<W = PrometheusWindows> {
    pub config: Arc<Config>,
    /// The GitHub port the assessment reads the PR through and publishes to.
    pub github: Arc<dyn Github>,
    /// Who GitHub calls are made as; told which App installation a delivery came from.
    pub tokens: Arc<dyn deploybot_core::github::token::TokenSource>,
    /// The optional LLM; without one the policy alone decides.
    pub model: Option<Arc<dyn RiskModel>>,
    pub store: Store,
    /// The rollout pipeline; without one, merged changes are assessed but not deployed.
    pub pipeline: Option<Arc<Pipeline<LiveRunner<W>>>>,
    pub clock: Arc<dyn Clock + Send + Sync>,
}

/// The App installation a delivery names (`installation.id`, present on every delivery to an
/// App); the payload was verified before it was stored.
#[derive(serde::Deserialize)]
struct WireDelivery {
    installation: Option<WireInstallation>,
}

#[derive(serde::Deserialize)]
struct WireInstallation {
    id: u64,
}

impl<W> Dispatcher<W> {
    /// Tells the token source which installation serves the delivery's repository, so that its
    /// calls need no lookup.
    fn learn_installation(&self, delivery: &StoredDelivery, parsed: &Parsed) {
        let Some(repo) = parsed
            .repository
            .as_deref()
            .and_then(|r| r.parse::<RepoName>().ok())
        else {
            return;
        };
        if let Ok(WireDelivery {
            installation: Some(i),
        }) = serde_json::from_slice(&delivery.payload)
        {
            self.tokens.learn(&repo, i.id);
        }
    }
}

/// A rollout handler's note, or its failure (classified where it happened).
fn done(result: Result<String, Failure>) -> Result<Processed, Failure> {
    result.map(Processed::Done)
}

fn no_pipeline() -> Processed {
    Processed::Ignored("no rollout pipeline".into())
}

impl<W: WindowSource + 'static> Processor for Dispatcher<W> {
    async fn process(
        &self,
        delivery: &StoredDelivery,
        parsed: &Parsed,
    ) -> Result<Processed, Failure> {
        self.learn_installation(delivery, parsed);
        let events = self.pipeline.as_ref().map(|p| self.events(p));
        Ok(match route(parsed, &repos(&self.config)) {
            Route::Ignore { reason } => Processed::Ignored(reason),
            Route::Ping { repo, zen } => Processed::Done(format!(
                "ping from {}: {}",
                repo.as_deref().unwrap_or("-"),
                zen.as_deref().unwrap_or("(no zen)")
            )),
            Route::Assess {
                repo,
                number,
                service,
                head_sha,
                merged,
            } => {
                self.assess(&repo, number, &service, &head_sha, merged.as_ref())
                    .await?
            }
            Route::ApprovalMerged {
                repo,
                number,
                merged_by,
            } => match &events {
                Some(e) => done(
                    e.on_approval_merged(&repo, number, &merged_by, self.clock.now())
                        .await,
                )?,
                None => no_pipeline(),
            },
            Route::Command(comment) => match &events {
                Some(e) => done(e.on_comment(&comment, self.clock.now()).await)?,
                None => no_pipeline(),
            },
            Route::Review { repo, number } => {
                let status = self.risk_status_on_review(&repo, number).await?;
                match (&events, status) {
                    (Some(e), status) => {
                        let note = e.on_review(&repo, number, self.clock.now()).await?;
                        Processed::Done(match status {
                            Some(s) => format!("{s}; {note}"),
                            None => note,
                        })
                    }
                    (None, Some(s)) => Processed::Done(s),
                    (None, None) => no_pipeline(),
                }
            }
            // CI finished or an image landed: a parked release may be ready now.
            Route::ChecksChanged => match &events {
                Some(e) => done(e.release_parked(self.clock.now()).await)?,
                None => no_pipeline(),
            },
        })
    }
}

impl<W: WindowSource> Dispatcher<W> {
    fn events<'a>(
        &'a self,
        pipeline: &'a Pipeline<LiveRunner<W>>,
    ) -> RolloutEvents<'a, LiveRunner<W>> {
        RolloutEvents {
            config: &self.config,
            github: self.github.as_ref(),
            model: self.model.as_deref(),
            pipeline,
        }
    }

    /// A review on an open application PR may be the approval its `deploybot/risk` status waits
    /// for (`risk.status_until_approved`): the result is published again, with the approvals
    /// counted on the head. The stored assessment of that head is reused, so the model is not
    /// asked again.
    async fn risk_status_on_review(
        &self,
        repo: &RepoName,
        number: u64,
    ) -> Result<Option<String>, Failure> {
        if self.config.risk.config.status_until_approved == RiskStatusGate::Success
            || self.config.service_by_app_repo(repo).is_none()
        {
            return Ok(None);
        }
        let pr = self.github.pull_request(repo, number).await?;
        if !pr.open {
            return Ok(None);
        }
        let done = assess_pull_request(
            &self.config,
            self.github.as_ref(),
            self.model.as_deref(),
            &self.store,
            repo,
            number,
            &pr.head_sha,
        )
        .await
        .map_err(|e| e.context(format!("publishing the risk status of {repo}#{number}")))?;
        Ok(Some(format!(
            "risk status of {repo}#{number} at {} published again after a review",
            &done.head_sha[..done.head_sha.len().min(12)]
        )))
    }

    /// Assesses an app PR and publishes the result; a merged one then becomes a release (when
    /// there is a pipeline to start it).
    async fn assess(
        &self,
        repo: &RepoName,
        number: u64,
        service: &str,
        head_sha: &str,
        merged: Option<&route::Merged>,
    ) -> Result<Processed, Failure> {
        let done = assess_pull_request(
            &self.config,
            self.github.as_ref(),
            self.model.as_deref(),
            &self.store,
            repo,
            number,
            head_sha,
        )
        .await
        .map_err(|e| e.context(format!("assessing {repo}#{number}")))?;
        let a = &done.assessment;
        let shipped = match (merged, &self.pipeline) {
            (Some(m), Some(pipeline)) => {
                let merge_sha = m.merge_sha.as_deref().ok_or_else(|| {
                    Failure::refused(format!(
                        "{repo}#{number} is merged but has no merge_commit_sha"
                    ))
                })?;
                // Every service whose paths the change touches is released, each on the risk of
                // its own files (parking is idempotent per service and commit, so a retried
                // delivery re-parks what it already parked).
                let released = self.config.released_by(repo, &touched_paths(&done.change));
                if released.is_empty() {
                    return Ok(Processed::Done(format!(
                        "assessed {repo}#{number}: merged, but it touches none of the paths of \
                         the services of {repo}; nothing released (route named {service})"
                    )));
                }
                // Read once by the assessment, not again per service.
                let files: Vec<String> = done.change.files.iter().map(|f| f.path.clone()).collect();
                let mut notes = Vec::new();
                for s in released {
                    let own =
                        assess_service(&self.config, self.model.as_deref(), s, &done.change, a)
                            .await;
                    let note = self
                        .events(pipeline)
                        .on_merged(
                            Merged {
                                repo,
                                number,
                                service: &s.name,
                                merge_sha,
                                title: &m.title,
                                author: &m.author,
                                merged_by: &m.merged_by,
                                files: &files,
                            },
                            Gate::from_assessment(&own),
                            self.clock.now(),
                        )
                        .await?;
                    notes.push(note);
                }
                format!("; merged: {}", notes.join("; "))
            }
            _ => String::new(),
        };
        Ok(Processed::Done(
            format!(
                "assessed {repo}#{number} at {}: score {:.2}, {}, approval {}{}",
                done.head_sha,
                a.risk_score,
                a.recommended_strategy.as_str(),
                if a.requires_manual_approval {
                    "required"
                } else {
                    "not required"
                },
                if done.reused {
                    " (stored result reused)"
                } else {
                    ""
                },
            ) + &shipped,
        ))
    }
}
