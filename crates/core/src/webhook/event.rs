//! GitHub webhook events as a closed enum: exactly the events and actions deploybot acts on.
//! Anything else parses to [`Event::Ignored`] (recorded, not an error). A payload that does not
//! have its event's shape is an error: the intake answers 400 and stores nothing.
//!
//! Only the fields deploybot uses are read; GitHub adds fields freely, so unknown fields are fine.

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A parsed delivery: what happened, and the repository it happened in.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub event: Event,
    pub action: Option<String>,
    /// `owner/name`; absent for organisation-level deliveries such as an org hook's `ping`.
    pub repository: Option<String>,
    pub sender: Option<Actor>,
}

/// The events deploybot acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Ping {
        zen: Option<String>,
        hook_id: Option<u64>,
    },
    PullRequest {
        action: PullRequestAction,
        pull_request: PullRequest,
    },
    /// A comment created on an issue or a pull request (commands only count on pull requests).
    IssueComment {
        issue_number: u64,
        on_pull_request: bool,
        comment: Comment,
    },
    PullRequestReview {
        action: ReviewAction,
        pull_request: PullRequest,
        review: Review,
    },
    WorkflowRunCompleted(WorkflowRun),
    /// `registry_package` or `package` published: an image may now exist.
    PackagePublished(Package),
    CheckSuiteCompleted(CheckSuite),
    /// An event or action deploybot does not act on. Recorded, never processed.
    Ignored {
        event: String,
    },
}

impl Event {
    pub fn is_ignored(&self) -> bool {
        matches!(self, Event::Ignored { .. })
    }

    /// The variant's name, as the `X-GitHub-Event` header names it (`package` also stands for
    /// `registry_package`; `ignored` for everything deploybot does not act on).
    pub fn kind(&self) -> &'static str {
        match self {
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullRequestAction {
    Opened,
    Synchronize,
    Reopened,
    ReadyForReview,
    Closed { merged: bool },
    Labeled { label: String },
    Unlabeled { label: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewAction {
    Submitted,
    Dismissed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Actor {
    pub login: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl Actor {
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Label {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitRef {
    pub sha: String,
    #[serde(rename = "ref")]
    pub branch: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Actor,
    pub head: GitRef,
    pub base: GitRef,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    pub user: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Review {
    pub id: u64,
    pub state: String,
    pub user: Actor,
    #[serde(default)]
    pub commit_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRun {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    pub head_sha: String,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PackageVersion {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub target_oid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Package {
    pub name: String,
    #[serde(default)]
    pub package_type: Option<String>,
    #[serde(default)]
    pub package_version: Option<PackageVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// Why a payload could not be parsed. The message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} payload: {message}")]
pub struct EventError {
    pub event: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    repository: Option<Repository>,
    #[serde(default)]
    sender: Option<Actor>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct PingBody {
    #[serde(default)]
    zen: Option<String>,
    #[serde(default)]
    hook_id: Option<u64>,
}

#[derive(Deserialize)]
struct PullRequestBody {
    pull_request: PullRequest,
    #[serde(default)]
    label: Option<Label>,
}

#[derive(Deserialize)]
struct IssueRef {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IssueCommentBody {
    issue: IssueRef,
    comment: Comment,
}

#[derive(Deserialize)]
struct ReviewBody {
    pull_request: PullRequest,
    review: Review,
}

#[derive(Deserialize)]
struct WorkflowRunBody {
    workflow_run: WorkflowRun,
}

#[derive(Deserialize)]
struct RegistryPackageBody {
    registry_package: Package,
}

#[derive(Deserialize)]
struct PackageBody {
    package: Package,
}

#[derive(Deserialize)]
struct CheckSuiteBody {
    check_suite: CheckSuite,
}

/// The `X-GitHub-Event` names [`parse`] reads into an [`Event`] other than `Ignored`: the closed
/// set the metrics count deliveries under (any other name is `other`).
pub const EVENTS: [&str; 8] = [
    "ping",
    "pull_request",
    "issue_comment",
    "pull_request_review",
    "workflow_run",
    "registry_package",
    "package",
    "check_suite",
];

/// Parses a delivery body given its `X-GitHub-Event` header.
pub fn parse(event: &str, body: &[u8]) -> Result<Parsed, EventError> {
    let err = |message: String| EventError {
        event: event.to_string(),
        message,
    };
    // One parse to a Value, then typed views of it: the body is read once, and a shape error
    // names the missing field rather than a byte offset in a 25 MB body.
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| err(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(err("expected a JSON object".into()));
    }
    let envelope: Envelope = view(&value).map_err(err)?;
    let action = envelope.action.clone();
    let act = action.as_deref().unwrap_or("");
    let ignored = || Event::Ignored {
        event: match &action {
            Some(a) => format!("{event}.{a}"),
            None => event.to_string(),
        },
    };
    let parsed = match event {
        "ping" => {
            let b: PingBody = view(&value).map_err(err)?;
            Event::Ping {
                zen: b.zen,
                hook_id: b.hook_id,
            }
        }
        "pull_request" => {
            let b: PullRequestBody = view(&value).map_err(err)?;
            let label = || {
                b.label
                    .as_ref()
                    .map(|l| l.name.clone())
                    .ok_or_else(|| err(format!("{act} without a label")))
            };
            let pr_action = match act {
                "opened" => Some(PullRequestAction::Opened),
                "synchronize" => Some(PullRequestAction::Synchronize),
                "reopened" => Some(PullRequestAction::Reopened),
                "ready_for_review" => Some(PullRequestAction::ReadyForReview),
                "closed" => Some(PullRequestAction::Closed {
                    merged: b.pull_request.merged.unwrap_or(false),
                }),
                "labeled" => Some(PullRequestAction::Labeled { label: label()? }),
                "unlabeled" => Some(PullRequestAction::Unlabeled { label: label()? }),
                _ => None,
            };
            match pr_action {
                Some(action) => Event::PullRequest {
                    action,
                    pull_request: b.pull_request,
                },
                None => ignored(),
            }
        }
        "issue_comment" => {
            let b: IssueCommentBody = view(&value).map_err(err)?;
            if act == "created" {
                Event::IssueComment {
                    issue_number: b.issue.number,
                    on_pull_request: b.issue.pull_request.is_some(),
                    comment: b.comment,
                }
            } else {
                ignored()
            }
        }
        "pull_request_review" => {
            let b: ReviewBody = view(&value).map_err(err)?;
            let review_action = match act {
                "submitted" => Some(ReviewAction::Submitted),
                "dismissed" => Some(ReviewAction::Dismissed),
                _ => None,
            };
            match review_action {
                Some(action) => Event::PullRequestReview {
                    action,
                    pull_request: b.pull_request,
                    review: b.review,
                },
                None => ignored(),
            }
        }
        "workflow_run" => {
            let b: WorkflowRunBody = view(&value).map_err(err)?;
            if act == "completed" {
                Event::WorkflowRunCompleted(b.workflow_run)
            } else {
                ignored()
            }
        }
        "registry_package" => {
            let b: RegistryPackageBody = view(&value).map_err(err)?;
            if act == "published" {
                Event::PackagePublished(b.registry_package)
            } else {
                ignored()
            }
        }
        "package" => {
            let b: PackageBody = view(&value).map_err(err)?;
            if act == "published" {
                Event::PackagePublished(b.package)
            } else {
                ignored()
            }
        }
        "check_suite" => {
            let b: CheckSuiteBody = view(&value).map_err(err)?;
            if act == "completed" {
                Event::CheckSuiteCompleted(b.check_suite)
            } else {
                ignored()
            }
        }
        _ => ignored(),
    };
    Ok(Parsed {
        event: parsed,
        action,
        repository: envelope.repository.map(|r| r.full_name),
        sender: envelope.sender,
    })
}

fn view<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    T::deserialize(value).map_err(|e| format!("unexpected shape: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_json_and_not_object_are_errors() {
        assert!(parse("ping", b"{").is_err());
        assert!(parse("ping", b"[]").is_err());
    }

    #[test]
    fn pull_request_without_head_is_a_shape_error_naming_the_field() {
        let body = br#"{"action":"opened","pull_request":{"number":1,"user":{"login":"a"},"base":{"sha":"x","ref":"main"}}}"#;
        let e = parse("pull_request", body).unwrap_err();
        assert!(e.message.contains("head"), "{e}");
    }

    #[test]
    fn the_closed_event_list_is_what_the_parser_reads() {
        for name in EVENTS {
            // `{}` lacks every field but a ping's: a read event fails on its shape, an unread one
            // would be `Ignored`.
            let read = match parse(name, b"{}") {
                Ok(p) => !matches!(p.event, Event::Ignored { .. }),
                Err(_) => true,
            };
            assert!(read, "{name} is listed but not parsed");
        }
        assert!(matches!(
            parse("star", b"{}").unwrap().event,
            Event::Ignored { .. }
        ));
    }

    #[test]
    fn unknown_event_is_ignored_not_an_error() {
        let p = parse("star", br#"{"action":"created"}"#).unwrap();
        assert_eq!(
            p.event,
            Event::Ignored {
                event: "star.created".into()
            }
        );
    }
}
