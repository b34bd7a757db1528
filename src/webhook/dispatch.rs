//! Routes a parsed delivery to the concept that acts on it. Today it recognises every event the
//! intake queues and says what it will feed; the risk assessment and rollout issues plug their
//! handlers in here.

use crate::config::Config;
use crate::store::StoredDelivery;
use crate::webhook::event::{Event, Parsed, PullRequestAction};
use crate::webhook::worker::{ProcessError, Processed, Processor};

/// The production processor.
pub struct Dispatcher {
    pub config: std::sync::Arc<Config>,
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
                if relevant && self.service_for(repo).is_some() {
                    Processed::Done(format!(
                        "pull request {repo}#{} at {}: risk assessment pending (not built yet)",
                        pull_request.number, pull_request.head.sha
                    ))
                } else {
                    Processed::Ignored(format!(
                        "{action:?} on {repo}#{} needs no action",
                        pull_request.number
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
            other => Processed::Ignored(format!("no handler yet for {}", kind(other))),
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

fn kind(e: &Event) -> &'static str {
    match e {
        Event::Ping { .. } => "ping",
        Event::PullRequest { .. } => "pull_request",
        Event::IssueComment { .. } => "issue_comment",
        Event::PullRequestReview { .. } => "pull_request_review",
        Event::WorkflowRunCompleted(_) => "workflow_run",
        Event::PackagePublished(_) => "package",
        Event::CheckSuiteCompleted(_) => "check_suite",
        Event::Ignored { .. } => "ignored",
    }
}
