//! Routes a parsed delivery to the concept that acts on it. Pull requests of configured services
//! are risk-assessed (comment, labels, status); the other events the intake queues are
//! recognised and recorded until the rollout driver consumes them.

use std::sync::Arc;

use crate::config::Config;
use crate::github::{Github, RepoName};
use crate::llm::RiskModel;
use crate::risk::service::assess_pull_request;
use crate::store::Store;
use crate::store::StoredDelivery;
use crate::webhook::event::{Event, Parsed, PullRequestAction};
use crate::webhook::worker::{ProcessError, Processed, Processor};

/// The production processor.
pub struct Dispatcher {
    pub config: Arc<Config>,
    /// The GitHub port the assessment reads the PR through and publishes to.
    pub github: Arc<dyn Github>,
    /// The optional LLM; without one the policy alone decides.
    pub model: Option<Arc<dyn RiskModel>>,
    pub store: Store,
}

impl Processor for Dispatcher {
    async fn process(
        &self,
        _delivery: &StoredDelivery,
        parsed: &Parsed,
    ) -> Result<Processed, ProcessError> {
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
                if !relevant || self.service_for(repo).is_none() {
                    Processed::Ignored(format!(
                        "{action:?} on {repo}#{} needs no action",
                        pull_request.number
                    ))
                } else {
                    let name: RepoName = repo.parse().map_err(ProcessError::Permanent)?;
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
                        let what = format!("assessing {repo}#{}: {e}", pull_request.number);
                        if e.is_transient() {
                            ProcessError::Transient(what)
                        } else {
                            ProcessError::Permanent(what)
                        }
                    })?;
                    let a = &done.assessment;
                    Processed::Done(format!(
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
                        }
                    ))
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
            Event::Ignored { event } => {
                Processed::Ignored(format!("deploybot does not act on {event}"))
            }
            other => Processed::Ignored(format!("no handler yet for {}", other.kind())),
        })
    }
}

impl Dispatcher {
    fn service_for(&self, repo: &str) -> Option<&crate::config::ServiceConfig> {
        self.config
            .services
            .iter()
            .find(|s| s.app_repo.eq_ignore_ascii_case(repo))
    }
}
