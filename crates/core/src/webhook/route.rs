//! What a delivery means, decided once: [`route`] maps a parsed event and the repositories
//! deploybot watches ([`Repos`]) to one [`Route`]. The intake records a delivery whose route is
//! [`Route::Ignore`] without queueing it; the worker computes the route again from the stored
//! payload (it is pure and cheap) and executes it. Nothing downstream asks again which kind of
//! repository a delivery came from or whether its sender is a bot.
//!
//! Repository names are compared case-insensitively, as GitHub compares them.

use crate::github::RepoName;
use crate::webhook::event::{Actor, Event, Parsed, PullRequestAction};

/// The repositories deploybot watches and its own login: all the routing needs from the config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repos {
    /// `(owner/name, service)` in config order: the first service of a repository deploys it.
    apps: Vec<(String, String)>,
    gitops: Vec<String>,
    bot_login: String,
}

impl Repos {
    /// No repositories yet; `bot_login` is `github.bot_login`, whose comments and reviews are
    /// never read as commands or approvals.
    pub fn new(bot_login: impl Into<String>) -> Self {
        Repos {
            apps: Vec::new(),
            gitops: Vec::new(),
            bot_login: bot_login.into(),
        }
    }

    /// `repo` (`owner/name`) is the application repository of `service`.
    pub fn with_app(mut self, repo: impl Into<String>, service: impl Into<String>) -> Self {
        self.apps.push((repo.into(), service.into()));
        self
    }

    /// `repo` (`owner/name`) is a GitOps repository (approval PRs are opened there).
    pub fn with_gitops(mut self, repo: impl Into<String>) -> Self {
        self.gitops.push(repo.into());
        self
    }

    /// The service whose application repository `repo` is.
    pub fn service_of(&self, repo: &str) -> Option<&str> {
        self.apps
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(repo))
            .map(|(_, s)| s.as_str())
    }

    /// Whether `repo` is a GitOps repository and no service's application repository (an app
    /// repository that also holds manifests is treated as an app repository).
    pub fn is_gitops(&self, repo: &str) -> bool {
        self.service_of(repo).is_none() && self.gitops.iter().any(|r| r.eq_ignore_ascii_case(repo))
    }

    fn knows(&self, repo: &str) -> bool {
        self.service_of(repo).is_some() || self.is_gitops(repo)
    }

    /// deploybot itself, or any other bot: what it writes is never a command or an approval.
    fn is_bot(&self, actor: &Actor) -> bool {
        actor.is_bot() || actor.login.eq_ignore_ascii_case(&self.bot_login)
    }
}

/// What a delivery means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A webhook's test delivery: acknowledged, nothing else. Organisation hooks name no
    /// repository.
    Ping {
        repo: Option<String>,
        zen: Option<String>,
    },
    /// A pull request of a service's application repository that was opened, got new commits,
    /// was reopened, marked ready for review or merged: its risk is assessed and published; a
    /// merged one also becomes a release.
    Assess {
        repo: RepoName,
        number: u64,
        service: String,
        head_sha: String,
        merged: Option<Merged>,
    },
    /// A pull request of a GitOps repository was merged: if it is a rollout's approval PR, the
    /// merge is the approval.
    ApprovalMerged {
        repo: RepoName,
        number: u64,
        merged_by: String,
    },
    /// A person commented on a pull request: maybe a command for its rollout.
    Command(Comment),
    /// A person reviewed a pull request (or dismissed a review), or a GitOps pull request got
    /// new commits: if it is an approval PR, its approvals are counted again on its head (a
    /// push makes the earlier approvals stale).
    Review { repo: RepoName, number: u64 },
    /// Checks finished or an image was published: releases waiting for their checks may start.
    ChecksChanged,
    /// Nothing to do; the reason is recorded with the delivery.
    Ignore { reason: String },
}

/// A person's comment on a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub repo: RepoName,
    pub number: u64,
    /// Set on an application repository's pull request (only those can be `/deploy`ed).
    pub service: Option<String>,
    pub comment_id: u64,
    pub author: String,
    pub body: String,
}

/// What a merged application PR's release needs, as the webhook gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// GitHub sets it on every merged PR; `None` only in a malformed delivery, which the shell
    /// refuses when it would start the release.
    pub merge_sha: Option<String>,
    pub title: String,
    pub author: String,
    /// Who merged it (the delivery's sender; `-` when the payload names none).
    pub merged_by: String,
}

fn ignore(reason: impl Into<String>) -> Route {
    Route::Ignore {
        reason: reason.into(),
    }
}

fn not_acted_on(event: &str) -> Route {
    ignore(format!("deploybot does not act on {event}"))
}

/// Decides what `parsed` means for deploybot, given the repositories it watches.
pub fn route(parsed: &Parsed, repos: &Repos) -> Route {
    let repo = match (&parsed.event, parsed.repository.as_deref()) {
        (Event::Ignored { event }, _) => return not_acted_on(event),
        // An organisation hook's ping names no repository; it is still a ping.
        (Event::Ping { zen, .. }, None) => {
            return Route::Ping {
                repo: None,
                zen: zen.clone(),
            };
        }
        (_, None) => return ignore("delivery names no repository"),
        (_, Some(repo)) if !repos.knows(repo) => {
            return ignore(format!("repository {repo} is not configured"));
        }
        (_, Some(repo)) => repo,
    };
    // A configured repository always has a valid name; a delivery that disagrees is not ours.
    let name: RepoName = match repo.parse() {
        Ok(n) => n,
        Err(e) => return ignore(format!("repository {repo}: {e}")),
    };
    let sender = || {
        parsed
            .sender
            .as_ref()
            .map_or("-", |s| s.login.as_str())
            .to_string()
    };
    match &parsed.event {
        Event::PullRequest {
            action,
            pull_request: pr,
        } => {
            let merged = matches!(action, PullRequestAction::Closed { merged: true });
            if merged && repos.is_gitops(repo) {
                return Route::ApprovalMerged {
                    repo: name,
                    number: pr.number,
                    merged_by: sender(),
                };
            }
            if *action == PullRequestAction::Synchronize && repos.is_gitops(repo) {
                return Route::Review {
                    repo: name,
                    number: pr.number,
                };
            }
            let assessed = merged
                || matches!(
                    action,
                    PullRequestAction::Opened
                        | PullRequestAction::Synchronize
                        | PullRequestAction::Reopened
                        | PullRequestAction::ReadyForReview
                );
            match repos.service_of(repo) {
                Some(service) if assessed => Route::Assess {
                    repo: name,
                    number: pr.number,
                    service: service.to_string(),
                    head_sha: pr.head.sha.clone(),
                    merged: merged.then(|| Merged {
                        merge_sha: pr.merge_commit_sha.clone(),
                        title: pr.title.clone(),
                        author: pr.user.login.clone(),
                        merged_by: sender(),
                    }),
                },
                _ => ignore(format!(
                    "{action:?} on {repo}#{} needs no action",
                    pr.number
                )),
            }
        }
        Event::IssueComment {
            on_pull_request: false,
            issue_number,
            ..
        } => ignore(format!(
            "comment on issue {repo}#{issue_number}, not a pull request"
        )),
        Event::IssueComment { comment, .. } if repos.is_bot(&comment.user) => {
            ignore(format!("comment by bot {}", comment.user.login))
        }
        Event::IssueComment {
            issue_number,
            comment,
            ..
        } => Route::Command(Comment {
            repo: name,
            number: *issue_number,
            service: repos.service_of(repo).map(str::to_string),
            comment_id: comment.id,
            author: comment.user.login.clone(),
            body: comment.body.clone(),
        }),
        Event::PullRequestReview {
            pull_request,
            review,
            ..
        } if repos.is_bot(&review.user) => ignore(format!(
            "review on {repo}#{} by bot {}",
            pull_request.number, review.user.login
        )),
        Event::PullRequestReview { pull_request, .. } => Route::Review {
            repo: name,
            number: pull_request.number,
        },
        Event::CheckSuiteCompleted(_)
        | Event::WorkflowRunCompleted(_)
        | Event::PackagePublished(_) => Route::ChecksChanged,
        Event::Ping { zen, .. } => Route::Ping {
            repo: Some(repo.to_string()),
            zen: zen.clone(),
        },
        Event::Ignored { event } => not_acted_on(event),
    }
}

#[cfg(test)]
mod tests {
    //! The routing table over real GitHub payloads (`fixtures/github-webhooks/`, embedded so the
    //! core reads no files). Variants GitHub sends but the fixtures lack (a merged PR, a comment
    //! on a PR, a bot's comment) are the real payload with the one field changed.

    use super::*;
    use crate::webhook::event::parse;
    use serde_json::{Value, json};

    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!("../../../../fixtures/github-webhooks/", $path))
        };
    }

    const REPO: &str = "Codertocat/Hello-World";
    const HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
    const MERGE: &str = "c4295bd74fb0f4fda03689c3df3f2803b658fd85";
    const ZEN: &str = "Anything added dilutes everything else.";

    struct Row {
        name: &'static str,
        event: &'static str,
        payload: &'static str,
        edit: fn(&mut Value),
        repos: Repos,
        want: Route,
    }

    fn row(name: &'static str, event: &'static str, payload: &'static str) -> Row {
        Row {
            name,
            event,
            payload,
            edit: |_| {},
            repos: app(),
            want: ignore("unset"),
        }
    }

    impl Row {
        fn edit(mut self, edit: fn(&mut Value)) -> Self {
            self.edit = edit;
            self
        }
        fn repos(mut self, repos: Repos) -> Self {
            self.repos = repos;
            self
        }
        fn want(mut self, want: Route) -> Self {
            self.want = want;
            self
        }
        fn ignored(self, reason: &str) -> Self {
            self.want(ignore(reason))
        }
    }

    /// The fixtures' repository as the app repository of `hello` (spelled in another case, as a
    /// config may).
    fn app() -> Repos {
        Repos::new("deploybot[bot]").with_app("codertocat/hello-world", "hello")
    }

    fn gitops() -> Repos {
        Repos::new("deploybot[bot]")
            .with_app("acme/checkout", "checkout")
            .with_gitops("CODERTOCAT/HELLO-WORLD")
    }

    fn elsewhere() -> Repos {
        Repos::new("deploybot[bot]").with_app("acme/checkout", "checkout")
    }

    /// Every repository the check and package fixtures come from.
    fn all() -> Repos {
        app()
            .with_app("octo-org/octo-repo", "octo")
            .with_app("Codertocat/hello-world-npm", "npm")
            .with_app("Octocoders/Hello-World", "ping")
    }

    fn name() -> RepoName {
        REPO.parse().unwrap()
    }

    fn assess(merged: Option<Merged>) -> Route {
        Route::Assess {
            repo: name(),
            number: 2,
            service: "hello".into(),
            head_sha: HEAD.into(),
            merged,
        }
    }

    fn merged(merge_sha: Option<&str>) -> Option<Merged> {
        Some(Merged {
            merge_sha: merge_sha.map(str::to_string),
            title: "Update the README with new information.".into(),
            author: "Codertocat".into(),
            merged_by: "Codertocat".into(),
        })
    }

    fn command(service: Option<&str>) -> Route {
        Route::Command(Comment {
            repo: name(),
            number: 1,
            service: service.map(str::to_string),
            comment_id: 492700400,
            author: "Codertocat".into(),
            body: "You are totally right! I'll get this fixed right away.".into(),
        })
    }

    fn merge(v: &mut Value) {
        v["pull_request"]["merged"] = json!(true);
    }

    fn on_pull_request(v: &mut Value) {
        v["issue"]["pull_request"] =
            json!({ "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1" });
    }

    fn rows() -> Vec<Row> {
        let comment = fixture!("issue_comment/created.payload.json");
        let closed = fixture!("pull_request/closed.payload.json");
        let review = fixture!("pull_request_review/submitted.payload.json");
        vec![
            // Decided before the repository is looked at.
            row(
                "an event deploybot does not act on",
                "push",
                fixture!("push/payload.json"),
            )
            .ignored("deploybot does not act on push"),
            row(
                "an action deploybot does not act on",
                "pull_request",
                fixture!("pull_request/assigned.payload.json"),
            )
            .ignored("deploybot does not act on pull_request.assigned"),
            row(
                "an edited comment",
                "issue_comment",
                fixture!("issue_comment/edited.payload.json"),
            )
            .ignored("deploybot does not act on issue_comment.edited"),
            row(
                "a check suite that only started",
                "check_suite",
                fixture!("check_suite/requested.payload.json"),
            )
            .ignored("deploybot does not act on check_suite.requested"),
            row(
                "an installation event names no repository",
                "installation",
                fixture!("installation/created.payload.json"),
            )
            .repos(elsewhere())
            .ignored("deploybot does not act on installation.created"),
            row(
                "an organisation hook's ping",
                "ping",
                fixture!("ping/with-organization.payload.json"),
            )
            .repos(elsewhere())
            .want(Route::Ping {
                repo: None,
                zen: Some(ZEN.into()),
            }),
            row(
                "a ping of an unconfigured repository",
                "ping",
                fixture!("ping/payload.json"),
            )
            .repos(elsewhere())
            .ignored("repository Octocoders/Hello-World is not configured"),
            row(
                "a ping of a configured repository",
                "ping",
                fixture!("ping/with-app_id.payload.json"),
            )
            .repos(all())
            .want(Route::Ping {
                repo: Some("Octocoders/Hello-World".into()),
                zen: Some(ZEN.into()),
            }),
            row(
                "an event in an unconfigured repository",
                "pull_request",
                fixture!("pull_request/opened.payload.json"),
            )
            .repos(elsewhere())
            .ignored("repository Codertocat/Hello-World is not configured"),
            row(
                "an event that names no repository",
                "check_suite",
                fixture!("check_suite/completed.payload.json"),
            )
            .edit(|v| {
                v.as_object_mut().unwrap().remove("repository");
            })
            .ignored("delivery names no repository"),
            // Pull requests of an application repository.
            row(
                "an opened app PR",
                "pull_request",
                fixture!("pull_request/opened.payload.json"),
            )
            .want(assess(None)),
            row(
                "an opened app PR with no body",
                "pull_request",
                fixture!("pull_request/opened.with-null-body.json"),
            )
            .want(assess(None)),
            row(
                "new commits on an app PR",
                "pull_request",
                fixture!("pull_request/synchronize.payload.json"),
            )
            .want(assess(None)),
            row(
                "a reopened app PR",
                "pull_request",
                fixture!("pull_request/reopened.payload.json"),
            )
            .want(assess(None)),
            row(
                "an app PR ready for review",
                "pull_request",
                fixture!("pull_request/ready_for_review.with-organization.payload.json"),
            )
            .want(assess(None)),
            row("a merged app PR", "pull_request", closed)
                .edit(merge)
                .want(assess(merged(Some(MERGE)))),
            row(
                "a merged app PR without a merge commit",
                "pull_request",
                closed,
            )
            .edit(|v| {
                merge(v);
                v["pull_request"]["merge_commit_sha"] = Value::Null;
            })
            .want(assess(merged(None))),
            row(
                "a merged app PR whose sender is missing",
                "pull_request",
                closed,
            )
            .edit(|v| {
                merge(v);
                v.as_object_mut().unwrap().remove("sender");
            })
            .want(assess(Some(Merged {
                merged_by: "-".into(),
                ..merged(Some(MERGE)).unwrap()
            }))),
            row("a closed, unmerged app PR", "pull_request", closed)
                .ignored("Closed { merged: false } on Codertocat/Hello-World#2 needs no action"),
            row(
                "a label on an app PR",
                "pull_request",
                fixture!("pull_request/labeled.payload.json"),
            )
            .ignored("Labeled { label: \"bug\" } on Codertocat/Hello-World#2 needs no action"),
            row(
                "a label removed from an app PR",
                "pull_request",
                fixture!("pull_request/unlabeled.with-organization.payload.json"),
            )
            .ignored("Unlabeled { label: \"bug\" } on Codertocat/Hello-World#2 needs no action"),
            // Pull requests of the GitOps repository.
            row("a merged GitOps PR", "pull_request", closed)
                .edit(merge)
                .repos(gitops())
                .want(Route::ApprovalMerged {
                    repo: name(),
                    number: 2,
                    merged_by: "Codertocat".into(),
                }),
            row(
                "an opened GitOps PR",
                "pull_request",
                fixture!("pull_request/opened.payload.json"),
            )
            .repos(gitops())
            .ignored("Opened on Codertocat/Hello-World#2 needs no action"),
            row(
                "new commits on a GitOps PR: its approvals are counted again",
                "pull_request",
                fixture!("pull_request/synchronize.payload.json"),
            )
            .repos(gitops())
            .want(Route::Review {
                repo: name(),
                number: 2,
            }),
            row(
                "a merged PR of a repository that is both: the app wins",
                "pull_request",
                closed,
            )
            .edit(merge)
            .repos(app().with_gitops(REPO))
            .want(assess(merged(Some(MERGE)))),
            // Comments.
            row("a comment on an issue", "issue_comment", comment)
                .ignored("comment on issue Codertocat/Hello-World#1, not a pull request"),
            row("a comment on an app PR", "issue_comment", comment)
                .edit(on_pull_request)
                .want(command(Some("hello"))),
            row(
                "a comment on a GitOps PR",
                "issue_comment",
                fixture!("issue_comment/created.with-organization.payload.json"),
            )
            .edit(on_pull_request)
            .repos(gitops())
            .want(command(None)),
            row("a bot's comment", "issue_comment", comment)
                .edit(|v| {
                    on_pull_request(v);
                    v["comment"]["user"]["type"] = json!("Bot");
                })
                .ignored("comment by bot Codertocat"),
            row(
                "a comment by github.bot_login, a machine user",
                "issue_comment",
                comment,
            )
            .edit(on_pull_request)
            .repos(Repos {
                bot_login: "codertocat".into(),
                ..app()
            })
            .ignored("comment by bot Codertocat"),
            // Reviews.
            row("a review on a GitOps PR", "pull_request_review", review)
                .repos(gitops())
                .want(Route::Review {
                    repo: name(),
                    number: 2,
                }),
            row(
                "a dismissed review",
                "pull_request_review",
                fixture!("pull_request_review/dismissed.payload.json"),
            )
            .repos(gitops())
            .want(Route::Review {
                repo: name(),
                number: 2,
            }),
            row(
                "a review on an app PR",
                "pull_request_review",
                fixture!("pull_request_review/submitted.with-organization.payload.json"),
            )
            .want(Route::Review {
                repo: name(),
                number: 2,
            }),
            row("a bot's review", "pull_request_review", review)
                .edit(|v| v["review"]["user"]["login"] = json!("ci[bot]"))
                .repos(gitops())
                .ignored("review on Codertocat/Hello-World#2 by bot ci[bot]"),
            // Checks and packages.
            row(
                "a completed check suite",
                "check_suite",
                fixture!("check_suite/completed.with-organization.payload.json"),
            )
            .want(Route::ChecksChanged),
            row(
                "a completed workflow run",
                "workflow_run",
                fixture!("workflow_run/completed.with-pull-requests.payload.json"),
            )
            .repos(all())
            .want(Route::ChecksChanged),
            row(
                "a published package",
                "package",
                fixture!("package/published.docker.payload.json"),
            )
            .repos(all())
            .want(Route::ChecksChanged),
            row(
                "a published registry package",
                "registry_package",
                fixture!("registry_package/published.docker.payload.json"),
            )
            .repos(all())
            .want(Route::ChecksChanged),
            row(
                "a completed workflow run of an unconfigured repository",
                "workflow_run",
                fixture!("workflow_run/completed.payload.json"),
            )
            .ignored("repository octo-org/octo-repo is not configured"),
        ]
    }

    /// The route of one row, or why it is not the expected one (naming the row).
    fn check(row: &Row) -> Result<(), String> {
        let mut payload: Value = serde_json::from_str(row.payload)
            .map_err(|e| format!("{}: fixture is not JSON: {e}", row.name))?;
        (row.edit)(&mut payload);
        let body = serde_json::to_vec(&payload).map_err(|e| format!("{}: {e}", row.name))?;
        let parsed = parse(row.event, &body).map_err(|e| format!("{}: {e}", row.name))?;
        let got = route(&parsed, &row.repos);
        if got == row.want {
            Ok(())
        } else {
            Err(format!(
                "{}:\n  want {:?}\n  got  {got:?}",
                row.name, row.want
            ))
        }
    }

    #[test]
    fn the_routing_table() {
        let rows = rows();
        let failures: Vec<String> = rows.iter().filter_map(|r| check(r).err()).collect();
        assert!(
            failures.is_empty(),
            "{} of {} rows failed:\n{}",
            failures.len(),
            rows.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn repository_names_compare_case_insensitively() {
        let repos = gitops();
        assert_eq!(repos.service_of("ACME/Checkout"), Some("checkout"));
        assert!(repos.is_gitops("codertocat/hello-world"));
        assert!(!repos.is_gitops("acme/checkout"));
        assert_eq!(repos.service_of("acme/checkout-v2"), None);
    }
}
