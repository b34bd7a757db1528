//! Routes a parsed delivery to the concept that acts on it. Pull requests of configured services
//! are risk-assessed (comment, labels, status) and, once merged, become releases; comments on
//! pull requests are commands; reviews may approve an approval PR; completed check suites and
//! workflow runs release what waited for its checks. `rollout::events` does the rollout side.

use std::sync::Arc;

use crate::adapters::store::Store;
use crate::adapters::store::StoredDelivery;
use crate::config::Config;
use crate::shell::assess::assess_pull_request;
use crate::shell::driver::Clock;
use crate::shell::events::{Merged, RolloutEvents};
use crate::shell::pipeline::{Gate, Pipeline};
use crate::shell::runner::{LiveRunner, PrometheusWindows, WindowSource};
use crate::shell::webhook::worker::{Processed, Processor};
use deploybot_core::failure::Failure;
use deploybot_core::github::{Github, RepoName};
use deploybot_core::risk::model::RiskModel;
use deploybot_core::webhook::event::{Event, Parsed, PullRequestAction};

/// The production processor. `W` is where rollouts read metrics (Prometheus in production).
pub struct Dispatcher<W = PrometheusWindows> {
    pub config: Arc<Config>,
    /// The GitHub port the assessment reads the PR through and publishes to.
    pub github: Arc<dyn Github>,
    /// The optional LLM; without one the policy alone decides.
    pub model: Option<Arc<dyn RiskModel>>,
    pub store: Store,
    /// The rollout pipeline; without one, merged changes are assessed but not deployed.
    pub pipeline: Option<Arc<Pipeline<LiveRunner<W>>>>,
    pub clock: Arc<dyn Clock + Send + Sync>,
}

/// Who sent the event (the merger, for a merged pull request).
fn sender(parsed: &Parsed) -> &str {
    parsed.sender.as_ref().map_or("-", |s| s.login.as_str())
}

impl<W: WindowSource + 'static> Processor for Dispatcher<W> {
    async fn process(
        &self,
        _delivery: &StoredDelivery,
        parsed: &Parsed,
    ) -> Result<Processed, Failure> {
        let repo = parsed.repository.as_deref().unwrap_or("-");
        Ok(match &parsed.event {
            Event::Ping { zen, .. } => Processed::Done(format!(
                "ping from {repo}: {}",
                zen.as_deref().unwrap_or("(no zen)")
            )),
            Event::PullRequest {
                action,
                pull_request,
            } => {
                let relevant = matches!(
                    action,
                    PullRequestAction::Opened
                        | PullRequestAction::Synchronize
                        | PullRequestAction::Reopened
                        | PullRequestAction::ReadyForReview
                        | PullRequestAction::Closed { merged: true }
                );
                let approval_merged = matches!(action, PullRequestAction::Closed { merged: true })
                    && self.is_gitops(repo);
                if let (true, Some(pipeline)) = (approval_merged, &self.pipeline) {
                    let name: RepoName = repo.parse().map_err(Failure::refused)?;
                    let merged_by = sender(parsed);
                    let note = self
                        .events(pipeline)
                        .on_approval_merged(&name, pull_request.number, merged_by, self.clock.now())
                        .await?;
                    return Ok(Processed::Done(note));
                }
                if !relevant || self.service_for(repo).is_none() {
                    Processed::Ignored(format!(
                        "{action:?} on {repo}#{} needs no action",
                        pull_request.number
                    ))
                } else {
                    let name: RepoName = repo.parse().map_err(Failure::refused)?;
                    let done = assess_pull_request(
                        &self.config,
                        self.github.as_ref(),
                        self.model.as_deref(),
                        &self.store,
                        &name,
                        pull_request.number,
                        &pull_request.head.sha,
                    )
                    .await
                    .map_err(|e| {
                        e.context(format_args!("assessing {repo}#{}", pull_request.number))
                    })?;
                    let a = &done.assessment;
                    let shipped = match (action, &self.pipeline) {
                        (PullRequestAction::Closed { merged: true }, Some(pipeline)) => {
                            let merge_sha =
                                pull_request.merge_commit_sha.as_deref().ok_or_else(|| {
                                    Failure::refused(format!(
                                        "{repo}#{} is merged but has no merge_commit_sha",
                                        pull_request.number
                                    ))
                                })?;
                            let merged_by = sender(parsed);
                            let note = self
                                .events(pipeline)
                                .on_merged(
                                    Merged {
                                        repo: &name,
                                        number: pull_request.number,
                                        merge_sha,
                                        title: &pull_request.title,
                                        author: &pull_request.user.login,
                                        merged_by,
                                    },
                                    Gate::from_assessment(a),
                                    self.clock.now(),
                                )
                                .await?;
                            format!("; merged: {note}")
                        }
                        _ => String::new(),
                    };
                    Processed::Done(
                        format!(
                            "assessed {repo}#{} at {}: score {:.2}, {}, approval {}{}",
                            pull_request.number,
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
                    )
                }
            }
            Event::IssueComment {
                on_pull_request: false,
                issue_number,
                ..
            } => Processed::Ignored(format!(
                "comment on issue {repo}#{issue_number}, not a pull request"
            )),
            Event::IssueComment { comment, .. } if comment.user.is_bot() => {
                Processed::Ignored(format!("comment by bot {}", comment.user.login))
            }
            Event::IssueComment {
                issue_number,
                comment,
                ..
            } => match &self.pipeline {
                Some(pipeline) if self.service_for(repo).is_some() || self.is_gitops(repo) => {
                    let name: RepoName = repo.parse().map_err(Failure::refused)?;
                    let note = self
                        .events(pipeline)
                        .on_comment(
                            &name,
                            *issue_number,
                            comment.id,
                            &comment.user.login,
                            &comment.body,
                            self.clock.now(),
                        )
                        .await?;
                    Processed::Done(note)
                }
                _ => Processed::Ignored(format!(
                    "comment on {repo}#{issue_number}: no rollouts here"
                )),
            },
            Event::PullRequestReview {
                pull_request,
                review,
                ..
            } if review.user.is_bot() => Processed::Ignored(format!(
                "review on {repo}#{} by bot {}",
                pull_request.number, review.user.login
            )),
            Event::PullRequestReview { pull_request, .. } => match &self.pipeline {
                Some(pipeline) => {
                    let name: RepoName = repo.parse().map_err(Failure::refused)?;
                    let note = self
                        .events(pipeline)
                        .on_review(&name, pull_request.number, self.clock.now())
                        .await?;
                    Processed::Done(note)
                }
                None => Processed::Ignored("no rollout pipeline".into()),
            },
            // CI finished or an image landed: a parked release may be ready now.
            Event::CheckSuiteCompleted(_)
            | Event::WorkflowRunCompleted(_)
            | Event::PackagePublished(_) => match &self.pipeline {
                Some(pipeline) => Processed::Done(
                    self.events(pipeline)
                        .release_parked(self.clock.now())
                        .await?,
                ),
                None => Processed::Ignored("no rollout pipeline".into()),
            },
            Event::Ignored { event } => {
                Processed::Ignored(format!("deploybot does not act on {event}"))
            }
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

    fn is_gitops(&self, repo: &str) -> bool {
        self.config.knows_repo(repo) && self.service_for(repo).is_none()
    }

    fn service_for(&self, repo: &str) -> Option<&crate::config::ServiceConfig> {
        self.config
            .services
            .iter()
            .find(|s| s.app_repo.eq_ignore_ascii_case(repo))
    }
}
