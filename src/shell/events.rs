//! What GitHub events mean for rollouts: a merged change becomes a release (once its required
//! checks pass), a PR comment becomes a command (after the commenter's permission is checked), a
//! review on an approval PR may approve its rollout. Also the periodic reconcile, which re-reads
//! what webhooks would have said (approvals, checks), so a lost delivery only delays things.
//!
//! The shell between the webhook dispatch and the pipeline; the decisions it relies on are pure
//! (`command::parse`, `approval::count_approvals`, `trigger::required_checks`). Its failures are
//! `Failure`s classified where they happened (GitHub, the store, the pipeline); the webhook
//! worker retries the transient ones.

use chrono::{DateTime, Utc};

use crate::adapters::store::approval_prs;
use crate::adapters::store::parked::{self, PendingRelease};
use crate::config::{ApprovalAuthority, ApprovalRule, Config, ServiceSpec};
use crate::shell::approvals::{Approvers, count_on_head};
use crate::shell::driver::EffectRunner;
use crate::shell::pipeline::{CommandOutcome, Gate, Pipeline, PipelineError, Release};
use deploybot_core::failure::Failure;
use deploybot_core::github::{Github, Merge, PullRequest, Reaction, RepoName};
use deploybot_core::rollout::approval::{ApprovalOutcome, ReviewState};
use deploybot_core::rollout::command::{self, Parsed};
use deploybot_core::rollout::input::{Command, Input};
use deploybot_core::rollout::record::{Phase, Rollout};
use deploybot_core::rollout::trigger::{ChecksGate, required_checks};
use deploybot_core::webhook::route::Comment;

/// The rollout side of GitHub events.
pub struct RolloutEvents<'a, R> {
    pub config: &'a Config,
    pub github: &'a dyn Github,
    /// The LLM the risk assessment uses, so `/deploy` finds (or makes) the same assessment the
    /// PR got, never a policy-only one that forgot what the model raised.
    pub model: Option<&'a dyn deploybot_core::risk::model::RiskModel>,
    pub pipeline: &'a Pipeline<R>,
}

/// A merged app PR, as the webhook gives it.
pub struct Merged<'a> {
    pub repo: &'a RepoName,
    pub number: u64,
    /// The service whose application repository `repo` is (the route found it).
    pub service: &'a str,
    pub merge_sha: &'a str,
    pub title: &'a str,
    pub author: &'a str,
    pub merged_by: &'a str,
    /// The paths the pull request changed, as its assessment read them.
    pub files: &'a [String],
}

impl<R: EffectRunner> RolloutEvents<'_, R> {
    fn service_named(&self, name: &str) -> Option<&ServiceSpec> {
        self.config.service(name)
    }

    /// A merged PR: its release starts once the required checks pass (parked until then).
    pub async fn on_merged(
        &self,
        m: Merged<'_>,
        gate: Gate,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let Some(service) = self.service_named(m.service) else {
            return Ok(format!("{} deploys no service", m.repo));
        };
        if service.deploy.is_none() {
            return Ok(format!(
                "{}: no environments configured; assessed only",
                service.name
            ));
        }
        let tag = service
            .image_tag
            .render(m.merge_sha, Some(m.number))
            .map_err(Failure::refused)?;
        let release = Release {
            service: service.name.clone(),
            image_tag: tag,
            previous_tag: String::new(),
            changed_files: m.files.to_vec(),
            commit_message: m.title.to_string(),
            author: m.author.to_string(),
            pull_request: Some(m.number),
            commit_sha: Some(m.merge_sha.to_string()),
        };
        let pending = PendingRelease {
            release,
            gate,
            waiting: "required checks".into(),
        };
        parked::park_release(self.pipeline.store(), &pending, now)?;
        tracing::info!(service = %service.name, sha = m.merge_sha, merged_by = m.merged_by, "release parked until its checks pass");
        self.release_parked(now).await
    }

    /// Starts every parked release whose checks passed; drops those whose checks failed.
    pub async fn release_parked(&self, now: DateTime<Utc>) -> Result<String, Failure> {
        let mut notes = Vec::new();
        for p in parked::parked_releases(self.pipeline.store())? {
            let Some(service) = self.config.service(&p.release.service) else {
                continue;
            };
            let repo = &service.app_repo;
            let sha = p.release.commit_sha.clone().unwrap_or_default();
            let gate = if service.required_checks.is_empty() {
                ChecksGate::Ready
            } else {
                let runs = self.github.check_runs(repo, &sha).await?;
                required_checks(&service.required_checks, &runs)
            };
            match gate {
                ChecksGate::Ready => {
                    let id = match self
                        .pipeline
                        .start(&p.release, p.gate, None, "github", now)
                        .await
                    {
                        Ok(id) => id,
                        Err(PipelineError::Busy { live, .. }) => {
                            notes.push(self.repark(&p, format!("queued behind {live}"), now)?);
                            continue;
                        }
                        Err(e @ PipelineError::Held { .. }) => {
                            parked::unpark_release(self.pipeline.store(), &service.name, &sha)?;
                            notes.push(format!("{} not started: {e}", p.release.image_tag));
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    parked::unpark_release(self.pipeline.store(), &service.name, &sha)?;
                    notes.push(format!("started {id}"));
                }
                ChecksGate::Waiting { pending } => {
                    let waiting = format!("waiting for {}", pending.join(", "));
                    notes.push(self.repark(&p, waiting, now)?);
                }
                ChecksGate::Failed { check, conclusion } => {
                    parked::unpark_release(self.pipeline.store(), &service.name, &sha)?;
                    tracing::warn!(service = %service.name, %sha, %check, %conclusion, "not deploying: a required check failed");
                    notes.push(format!(
                        "{} not deployed: required check {check} is {conclusion}",
                        p.release.image_tag
                    ));
                }
            }
        }
        Ok(if notes.is_empty() {
            "no release waiting".into()
        } else {
            notes.join("; ")
        })
    }

    /// Keeps `p` parked, saying what it waits for now; returns the note for the log.
    fn repark(
        &self,
        p: &PendingRelease,
        waiting: String,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let note = format!("{}: {waiting}", p.release.image_tag);
        parked::park_release(
            self.pipeline.store(),
            &PendingRelease {
                waiting,
                ..p.clone()
            },
            now,
        )?;
        Ok(note)
    }

    /// A comment on a PR: a command for its rollout, if it is one.
    pub async fn on_comment(&self, c: &Comment, now: DateTime<Utc>) -> Result<String, Failure> {
        let (repo, number, comment_id, author) = (&c.repo, c.number, c.comment_id, &c.author);
        let parsed = command::parse(&c.body);
        let (cmd, environment) = match &parsed {
            Parsed::NotACommand => return Ok("not a command".into()),
            Parsed::Help | Parsed::Unknown { .. } | Parsed::Invalid { .. } => {
                if let Some(text) = command::reply(&parsed) {
                    self.github.create_comment(repo, number, &text).await?;
                }
                self.github
                    .add_reaction(repo, comment_id, Reaction::Eyes)
                    .await?;
                return Ok(format!("answered {parsed:?}"));
            }
            Parsed::Status => {
                let rollout = self.pipeline.rollout_for_pr(repo, number)?;
                let rendered = rollout
                    .as_ref()
                    .map(deploybot_core::rollout::summary::render_rollout);
                let text = command::status_reply(rendered.as_deref());
                self.github.create_comment(repo, number, &text).await?;
                return Ok("status posted".into());
            }
            Parsed::Act { cmd, environment } => (*cmd, environment.clone()),
        };
        // Checked when executed, not when parsed: permissions may have changed since.
        let permission = self.github.collaborator_permission(repo, author).await?;
        if !permission.can_write() {
            self.github
                .add_reaction(repo, comment_id, Reaction::Confused)
                .await?;
            let text =
                command::needs_write_access(author, cmd, &repo.to_string(), permission.as_str());
            self.github.create_comment(repo, number, &text).await?;
            tracing::warn!(%repo, number, %author, command = cmd.as_str(), "command refused: no write access");
            return Ok(format!(
                "refused {} by {author}: no write access",
                cmd.as_str()
            ));
        }
        let outcome = if cmd == Command::Deploy {
            let of_app_repo = c.service.is_some();
            self.deploy(
                repo,
                number,
                of_app_repo,
                author,
                environment.as_deref(),
                now,
            )
            .await?
        } else {
            self.pipeline
                .command(repo, number, cmd, author, now)
                .await?
        };
        let (reaction, note) = match &outcome {
            CommandOutcome::Applied { deploy_id, note } => {
                (Reaction::PlusOne, format!("{deploy_id}: {note}"))
            }
            CommandOutcome::Rejected { deploy_id, note } => {
                (Reaction::Confused, format!("{deploy_id}: {note}"))
            }
            CommandOutcome::NoRollout => (
                Reaction::Confused,
                "no rollout of this pull request".to_string(),
            ),
        };
        self.github.add_reaction(repo, comment_id, reaction).await?;
        if reaction == Reaction::Confused {
            let text = command::not_applied(author, cmd, &note);
            self.github.create_comment(repo, number, &text).await?;
        }
        Ok(format!("{} by {author}: {note}", cmd.as_str()))
    }

    /// `/deploy [SERVICE | ENV]` on a merged PR: starts its release now (checks are the human's
    /// call). A word naming one of the repository's services deploys that one; otherwise every
    /// service whose paths the change touches is deployed (to ENV, when given), each on the
    /// risk of its own files.
    async fn deploy(
        &self,
        repo: &RepoName,
        number: u64,
        // The routing found the PR in a service's application repository; which services it
        // deploys is decided below, from its files or the service named.
        of_app_repo: bool,
        author: &str,
        arg: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CommandOutcome, Failure> {
        let pr = self.github.pull_request(repo, number).await?;
        let (true, Some(sha)) = (pr.merged, pr.merge_commit_sha.clone()) else {
            return Ok(CommandOutcome::Rejected {
                deploy_id: "-".into(),
                note: "only a merged pull request can be deployed".into(),
            });
        };
        if !of_app_repo {
            return Ok(CommandOutcome::NoRollout);
        }
        let stored = crate::shell::assess::assess_pull_request(
            self.config,
            self.github,
            self.model,
            self.pipeline.store(),
            repo,
            number,
            &pr.head_sha,
        )
        .await?;
        let touched = crate::shell::assess::touched_paths(&stored.change);
        let (services, environment) = self.config.deploy_targets(repo, &touched, arg);
        if services.is_empty() {
            return Ok(CommandOutcome::Rejected {
                deploy_id: "-".into(),
                note: format!(
                    "this change touches none of the paths of the services of {repo}; name \
                     one: /deploy SERVICE"
                ),
            });
        }
        let mut started = Vec::new();
        for service in services {
            let release = Release {
                service: service.name.clone(),
                image_tag: service
                    .image_tag
                    .render(&sha, Some(number))
                    .map_err(Failure::refused)?,
                previous_tag: String::new(),
                changed_files: Vec::new(),
                commit_message: pr.title.clone(),
                author: pr.author.clone(),
                pull_request: Some(number),
                commit_sha: Some(sha.clone()),
            };
            let own = crate::shell::assess::assess_service(
                self.config,
                self.model,
                service,
                &stored.change,
                &stored.assessment,
            )
            .await;
            match self
                .pipeline
                .start(
                    &release,
                    Gate::from_assessment(&own),
                    environment.as_deref(),
                    author,
                    now,
                )
                .await
            {
                Ok(id) => started.push(id),
                // Refused here: said as the whole answer when nothing started before it.
                Err(
                    e @ (PipelineError::Held { .. }
                    | PipelineError::Busy { .. }
                    | PipelineError::UnknownEnvironment { .. }),
                ) => {
                    if started.is_empty() {
                        return Ok(CommandOutcome::Rejected {
                            deploy_id: "-".into(),
                            note: e.to_string(),
                        });
                    }
                    started.push(format!("{} not started: {e}", service.name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(CommandOutcome::Applied {
            deploy_id: started.join(", "),
            note: format!("/deploy by @{author}"),
        })
    }

    /// An approval PR merged by a person. It is the approval only when the approvals on the
    /// merged head satisfy the environment's rule (with `approvals_counted_by:
    /// branch_protection`, GitHub enforced the rule at the merge); otherwise, or when its rollout
    /// was no longer waiting for it, it is an out-of-band change: the rollout gets
    /// `UnapprovedMerge` (it pauses, alerts, and reverts the merge unless
    /// `revert_unapproved_merges: false`). deploybot's own merge is recognised as such.
    pub async fn on_approval_merged(
        &self,
        repo: &RepoName,
        number: u64,
        merged_by: &str,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let Some(rollout) = self.approval_rollout(repo, number)? else {
            return Ok(format!("{repo}#{number} is not an approval PR"));
        };
        let pr = self.github.pull_request(repo, number).await?;
        self.judge_merge(repo, number, &pr, &rollout, merged_by, now)
            .await
    }

    /// The rollout whose approval PR `repo#number` is, if any.
    fn approval_rollout(&self, repo: &RepoName, number: u64) -> Result<Option<Rollout>, Failure> {
        let store = self.pipeline.store();
        let Some(link) = approval_prs::approval_pr_by_number(store, &repo.to_string(), number)?
        else {
            return Ok(None);
        };
        Ok(
            deploybot_core::rollout::store::RolloutStore::get(store, &link.deploy_id)
                .map_err(PipelineError::from)?,
        )
    }

    /// Decides what the merge of approval PR `pr` is for `rollout`, and feeds it.
    async fn judge_merge(
        &self,
        repo: &RepoName,
        number: u64,
        pr: &PullRequest,
        rollout: &Rollout,
        merged_by: &str,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let id = &rollout.deploy_id;
        let (true, Some(merge_sha)) = (pr.merged, pr.merge_commit_sha.clone()) else {
            return Ok(format!("{repo}#{number} is not merged"));
        };
        if rollout.commits.iter().any(|c| c.sha == merge_sha) {
            return Ok(format!("{id}: {repo}#{number} was merged as approved"));
        }
        let rule = self.approval_rule(rollout)?;
        let verdict = if !rollout.awaits_approval_pr() {
            Err(format!(
                "rollout {id} is {}, no longer waiting for this approval",
                rollout.phase()
            ))
        } else if rule.counted_by == ApprovalAuthority::BranchProtection {
            Ok(self
                .approvers_of(repo, number, &pr.head_sha, merged_by)
                .await?)
        } else {
            match self.count(repo, number, pr, rollout, rule).await? {
                ApprovalOutcome::Approved { by } => Ok(by.join(", ")),
                other => Err(describe(&other)),
            }
        };
        let input = match verdict {
            Ok(by) => Input::Approved {
                by,
                head: Some(pr.head_sha.clone()),
            },
            Err(reason) => Input::UnapprovedMerge {
                by: pr
                    .merged_by
                    .clone()
                    .unwrap_or_else(|| merged_by.to_string()),
                merge_sha,
                reason,
                revert: rule.revert_unapproved_merges,
            },
        };
        let t = self.pipeline.feed(id, input, now).await?;
        let note = t.first().map(|t| t.note.clone()).unwrap_or_default();
        Ok(format!("{id} merged by {merged_by}: {note}"))
    }

    /// A review (or any change) on an approval PR: approves its rollout when the reviews count.
    pub async fn on_review(
        &self,
        repo: &RepoName,
        number: u64,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        match self.approval_rollout(repo, number)? {
            Some(rollout) => self.check_approval(repo, number, rollout, now).await,
            None => Ok(format!("{repo}#{number} is not an approval PR")),
        }
    }

    /// The approval rule of the rollout's environment. Looked up, never assumed: an
    /// environment removed from the config while its rollout waits must not silently fall back
    /// to one approval by anybody with write access.
    fn approval_rule(&self, rollout: &Rollout) -> Result<&ApprovalRule, Failure> {
        self.config
            .service(rollout.service())
            .and_then(|s| s.environment(rollout.environment()))
            .map(|e| &e.approval)
            .ok_or_else(|| {
                Failure::refused(format!(
                    "{} awaits approval in {}/{}, which was removed from the configuration \
                     while the rollout was live; put it back to count the approvals, or roll \
                     the rollout back",
                    rollout.deploy_id,
                    rollout.service(),
                    rollout.environment()
                ))
            })
    }

    /// Counts the approvals of approval PR `pr` (at its head) by the environment's `rule`.
    async fn count(
        &self,
        repo: &RepoName,
        number: u64,
        pr: &PullRequest,
        rollout: &Rollout,
        rule: &ApprovalRule,
    ) -> Result<ApprovalOutcome, Failure> {
        let who = Approvers {
            teams: &rule.teams,
            author: &rollout.release.author,
            required: rule.count,
        };
        count_on_head(self.github, repo, number, &pr.head_sha, &who).await
    }

    /// Counts the approvals of a rollout awaiting them and approves it at the counted head. When
    /// the head moved before the merge (the approval came back outdated), counts once more on
    /// the new head. A PR found merged (a webhook lost) is judged as a merge.
    async fn check_approval(
        &self,
        repo: &RepoName,
        number: u64,
        mut rollout: Rollout,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        let mut notes = Vec::new();
        for _ in 0..2 {
            if rollout.phase() != Phase::AwaitingApproval {
                notes.push(format!(
                    "{} is {}, not awaiting approval",
                    rollout.deploy_id,
                    rollout.phase()
                ));
                break;
            }
            let rule = self.approval_rule(&rollout)?;
            let pr = self.github.pull_request(repo, number).await?;
            if pr.merged {
                let by = pr.merged_by.clone().unwrap_or_else(|| "-".into());
                return self
                    .judge_merge(repo, number, &pr, &rollout, &by, now)
                    .await;
            }
            if rule.counted_by == ApprovalAuthority::BranchProtection {
                return self
                    .merge_if_protection_allows(repo, number, &pr, &rollout, now)
                    .await;
            }
            let outcome = self.count(repo, number, &pr, &rollout, rule).await?;
            let ApprovalOutcome::Approved { by } = outcome else {
                notes.push(format!("{}: {}", rollout.deploy_id, describe(&outcome)));
                break;
            };
            let input = Input::Approved {
                by: by.join(", "),
                head: Some(pr.head_sha.clone()),
            };
            let t = self.pipeline.feed(&rollout.deploy_id, input, now).await?;
            let note = t
                .iter()
                .map(|t| t.note.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            notes.push(format!(
                "{} approved by {}: {note}",
                rollout.deploy_id,
                by.join(", ")
            ));
            match deploybot_core::rollout::store::RolloutStore::get(
                self.pipeline.store(),
                &rollout.deploy_id,
            )
            .map_err(PipelineError::from)?
            {
                // The head moved under the merge: count again on the new one.
                Some(after) if after.phase() == Phase::AwaitingApproval => rollout = after,
                _ => break,
            }
        }
        Ok(notes.join("; "))
    }

    /// Branch protection decides: try the merge at the reviewed head; GitHub refuses (405) until
    /// the rules are met. A merge is the approval, by whoever approved the head.
    async fn merge_if_protection_allows(
        &self,
        repo: &RepoName,
        number: u64,
        pr: &PullRequest,
        rollout: &Rollout,
        now: DateTime<Utc>,
    ) -> Result<String, Failure> {
        match self
            .github
            .merge_pull_request(repo, number, &pr.head_sha, self.config.gitops.merge_method)
            .await?
        {
            Merge::Merged(_) => {}
            Merge::HeadMoved(why) | Merge::NotMergeable(why) => {
                return Ok(format!(
                    "{}: branch protection does not allow the merge yet: {why}",
                    rollout.deploy_id
                ));
            }
        }
        let by = self
            .approvers_of(repo, number, &pr.head_sha, "branch protection")
            .await?;
        let input = Input::Approved {
            by: by.clone(),
            head: Some(pr.head_sha.clone()),
        };
        let t = self.pipeline.feed(&rollout.deploy_id, input, now).await?;
        let note = t.first().map(|t| t.note.clone()).unwrap_or_default();
        Ok(format!(
            "{} approved by {by} (branch protection): {note}",
            rollout.deploy_id
        ))
    }

    /// Who approved `head` (GitHub's branch protection counted them), or `otherwise`.
    async fn approvers_of(
        &self,
        repo: &RepoName,
        number: u64,
        head: &str,
        otherwise: &str,
    ) -> Result<String, Failure> {
        let reviews = self.github.pull_request_reviews(repo, number).await?;
        let mut approvers: Vec<String> = reviews
            .iter()
            .filter(|r| r.state == ReviewState::Approved && r.commit_sha == head)
            .map(|r| r.reviewer.clone())
            .collect();
        approvers.sort();
        approvers.dedup();
        Ok(if approvers.is_empty() {
            otherwise.to_string()
        } else {
            approvers.join(", ")
        })
    }

    /// What webhooks would have said, re-read: approvals (and merges) of rollouts awaiting one,
    /// parked releases, and the approval PRs of ended rollouts a crash left open. A failure is
    /// logged and retried on the next reconcile.
    pub async fn reconcile(&self, now: DateTime<Utc>) {
        if let Err(e) = self.release_parked(now).await {
            tracing::warn!("reconcile: parked releases: {e}");
        }
        let store = self.pipeline.store();
        let live = match deploybot_core::rollout::store::RolloutStore::live(store) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("reconcile: reading rollouts: {e}");
                return;
            }
        };
        for r in live
            .into_iter()
            .filter(|r| r.phase() == Phase::AwaitingApproval)
        {
            let Ok(Some(link)) = approval_prs::approval_pr(store, &r.deploy_id) else {
                continue;
            };
            let Ok(repo) = link.repo.parse::<RepoName>() else {
                continue;
            };
            let id = r.deploy_id.clone();
            match self.check_approval(&repo, link.number, r, now).await {
                Ok(note) => tracing::debug!(rollout = %id, "reconcile: {note}"),
                Err(e) => tracing::warn!(rollout = %id, "reconcile: approval: {e}"),
            }
        }
        if let Err(e) = self.pipeline.close_stale_approval_prs(now).await {
            tracing::warn!("reconcile: closing approval PRs of ended rollouts: {e}");
        }
    }
}

/// What an approval count that did not approve says, for notes and the unapproved-merge reason.
fn describe(outcome: &ApprovalOutcome) -> String {
    match outcome {
        ApprovalOutcome::Approved { by } => format!("approved by {}", by.join(", ")),
        ApprovalOutcome::Waiting {
            have,
            need,
            ignored,
        } => format!(
            "{have} of {need} approvals{}",
            if ignored.is_empty() {
                String::new()
            } else {
                format!(
                    " (not counted: {})",
                    ignored
                        .iter()
                        .map(|(who, why)| format!("{who} {why}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        ),
        ApprovalOutcome::Blocked { by } => format!("changes requested by {by}"),
    }
}
