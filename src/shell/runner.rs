//! The production `EffectRunner`: where a rollout's effects meet the world. Commits and reverts
//! go through the git port (`GitopsRepo`, one per repository), approval PRs through PR mode,
//! comments, labels and statuses through GitHub's roles, sync waits through Argo CD (or a settle
//! time), judgements through a metrics source and the canary judge, alerts through `alert`.
//! Every failure comes back classified (`Failure`); `step` decides what a transient one costs.
//!
//! Every effect is idempotent, because the driver re-issues what a record still owes after a
//! crash: a commit whose values are already on the branch makes no commit, a revert already
//! applied changes nothing, the status comment is found by its marker and edited, an approval PR
//! is reused, a merged approval PR answers with its merge commit. Nothing here blocks for long:
//! a sync that is not live yet answers nothing and is asked again on the next tick.
//!
//! It decides nothing: what to do next is `rollout::step`'s, on the inputs this returns.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::adapters::argocd::ArgoCdServers;
use crate::adapters::gitops::pull_request::{
    Proposal, ProposeRequest, bot_branch, open_or_reuse, revert_branch, step_branch,
};
use crate::adapters::gitops::{FileEdit, ManifestEdit, Writers};
use crate::adapters::secrets::Secrets;
use crate::adapters::store::Store;
use crate::adapters::store::{approval_prs, holds};
use crate::config::{Config, EnvironmentSpec, ImageRepository, SecretKey, ServiceSpec, WriteMode};
use crate::shell::driver::{Clock, EffectRunner};
use deploybot_core::canary::sample::{AnalysisTarget, Interval, MetricsSource, Window};
use deploybot_core::canary::{Decision, JudgeConfig, Look, Verdict};
use deploybot_core::failure::Failure;
use deploybot_core::github::{BotPullRequest, CommitStatus, Github, LabelSpec, Merge, RepoName};
use deploybot_core::gitops::commit_message::{
    CommitInfo, render_revert_pull_request, revert_reason, step_summary,
};
use deploybot_core::gitops::live::{
    AppStatus, FileAtRevision, Lineage, Liveness, deployed, liveness,
};
use deploybot_core::gitops::repo::{BotWrite, GitopsRepo, GitopsRepos};
use deploybot_core::rollout::evidence::Evidence;
use deploybot_core::rollout::input::{Closing, Effect, Input, Judgement, Notice, StatusState};
use deploybot_core::rollout::plan::Weight;
use deploybot_core::rollout::record::Observation;
use deploybot_core::rollout::record::{Phase, Progress, Rollout, secs};
use deploybot_core::rollout::store::RolloutStore;

/// Where the runner reads a rollout's metrics: Prometheus in production, a replay in the demo.
pub trait WindowSource: Send + Sync {
    /// The intervals of `step_secs` of `rollout`'s service and environment from `start` to
    /// `end` (unix seconds), with the canary weight the rollout committed.
    fn window(
        &self,
        rollout: &Rollout,
        start: i64,
        end: i64,
        step_secs: u64,
    ) -> impl Future<Output = Result<Window, Failure>> + Send;
}

/// Intervals of the stable version's history before a rollout the judge reads (the shared
/// rollout suite's 60: an hour of one-minute intervals).
const HISTORY_INTERVALS: i64 = 60;

/// The rollout's evidence before the current step, as [`Look`] borrows it.
struct RolloutEvidence {
    history: Vec<Interval>,
    earlier: Vec<Window>,
    last_step: bool,
    planned_steps: usize,
}

/// Prometheus, with each service's own query templates. The clients (and their bearer tokens,
/// read at start-up) are built once: `prometheus.url`'s, and one for each environment naming its
/// own server. Without a URL no client can be built, which `problem` reports at start-up and
/// which makes every query fail as permanent, pausing the rollouts that need it.
pub struct PrometheusWindows {
    config: Arc<Config>,
    client: Result<crate::adapters::prometheus::PrometheusClient, String>,
    /// Environments' own servers, by `(service, environment)`.
    own: std::collections::HashMap<
        (String, String),
        Result<crate::adapters::prometheus::PrometheusClient, String>,
    >,
}

impl PrometheusWindows {
    pub fn new(config: Arc<Config>, secrets: &Secrets) -> Self {
        use crate::adapters::prometheus::PrometheusClient;
        let top_token = secrets.get(SecretKey::PrometheusBearerToken).cloned();
        let client = PrometheusClient::from_config(&config.prometheus, top_token.clone());
        let mut own = std::collections::HashMap::new();
        for service in &config.services {
            for env in service.environments() {
                if env.prometheus.is_some() {
                    let made = PrometheusClient::for_environment(
                        &config,
                        &service.name,
                        env,
                        top_token.clone(),
                    );
                    own.insert((service.name.clone(), env.name.clone()), made);
                }
            }
        }
        PrometheusWindows {
            config,
            client,
            own,
        }
    }

    /// Why no canary can be judged with this configuration, if so.
    pub fn problem(&self) -> Option<&str> {
        let all_own = self
            .config
            .services
            .iter()
            .all(|s| s.environments().iter().all(|e| e.prometheus.is_some()));
        let top = (!all_own).then_some(&self.client);
        top.into_iter()
            .chain(self.own.values())
            .find_map(|c| c.as_ref().err())
            .map(String::as_str)
    }

    /// The Prometheus client of `rollout`'s environment: its own, else `prometheus.url`'s.
    pub fn client_for(
        &self,
        rollout: &Rollout,
    ) -> Result<&crate::adapters::prometheus::PrometheusClient, Failure> {
        let own = self.own.get(&(
            rollout.service().to_string(),
            rollout.environment().to_string(),
        ));
        own.unwrap_or(&self.client)
            .as_ref()
            .map_err(|e| Failure::refused(e.clone()))
    }
}

impl WindowSource for PrometheusWindows {
    async fn window(
        &self,
        rollout: &Rollout,
        start: i64,
        end: i64,
        step_secs: u64,
    ) -> Result<Window, Failure> {
        let service = service_of(&self.config, rollout)?;
        let client = self.client_for(rollout)?.clone();
        crate::adapters::prometheus::PrometheusSource::new(
            client,
            service.analysis.queries.clone(),
            &self.config.prometheus,
        )
        .with_canary_weight(f64::from(rollout.traffic().percent()) / 100.0)
        .window(&analysis_target(rollout), start, end, step_secs)
        .await
    }
}

pub fn analysis_target(r: &Rollout) -> AnalysisTarget {
    AnalysisTarget {
        service: r.service().to_string(),
        namespace: r.target.namespace.clone(),
        environment: r.environment().to_string(),
    }
}

/// The edges the runner talks to. `github` is optional so the demo runs without an account:
/// comments and labels are then only logged.
pub struct RunnerParts<W> {
    pub config: Arc<Config>,
    pub store: Store,
    /// The GitOps repositories, by URL.
    pub gitops: Arc<dyn GitopsRepos>,
    pub github: Option<Arc<dyn Github>>,
    /// Whether GitHub calls are authenticated (a token or the App), which approval PRs require
    /// (they are opened through `github`).
    pub github_authenticated: bool,
    /// The Argo CD servers (the top-level one, environments' own); empty without Argo CD.
    pub argocd: ArgoCdServers,
    pub alerts: crate::adapters::alert::Alerts,
    pub windows: W,
    pub clock: Arc<dyn Clock + Send + Sync>,
    /// Where alerts are counted for `/metrics`, when served.
    pub metrics: Option<Arc<crate::shell::metrics::Metrics>>,
}

impl<W> RunnerParts<W> {
    /// Parts with no GitHub, no Argo CD (the settle time), alerts as log lines only and no
    /// `/metrics`: the demo's, and a base for tests to add edges to.
    pub fn offline(
        config: Arc<Config>,
        store: Store,
        windows: W,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Self {
        RunnerParts {
            gitops: gitops_writers(&config, None),
            config,
            store,
            github: None,
            github_authenticated: false,
            argocd: ArgoCdServers::default(),
            alerts: crate::adapters::alert::Alerts::log_only(),
            windows,
            clock,
            metrics: None,
        }
    }
}

/// The git writers of `config`'s GitOps repositories (clones under the data directory).
/// `token` is where `https://` remotes get their token: the `gitops.token_*`, else the GitHub
/// App's installation tokens or the `github.token_*`.
pub fn gitops_writers(
    config: &Config,
    token: Option<Arc<dyn deploybot_core::github::token::TokenSource>>,
) -> Arc<dyn GitopsRepos> {
    let environments = config.services.iter().flat_map(|s| s.environments());
    let names = environments
        .filter_map(|e| Some((e.repo.url.as_str().to_string(), e.repo.github.clone()?)))
        .collect();
    Arc::new(
        Writers::new(
            config.gitops.clone(),
            config.store.data_dir.join("gitops"),
            token,
        )
        .with_github_names(names),
    )
}

/// What a `Revert` effect names: recorded commits, the deploy ids whose commits are found on
/// the branch, and merges of the approval PR.
struct RevertList<'a> {
    commits: &'a [String],
    find: &'a [String],
    merges: &'a [String],
}

/// The production runner.
pub struct LiveRunner<W> {
    parts: RunnerParts<W>,
    /// PR mode: when each revert PR (by bot branch) was first refused, which bounds its wait
    /// for the required checks. A restart gives a waiting revert a fresh wait; a step's wait is
    /// counted from its record (`Progress::Committing::since`) instead.
    revert_waits: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

/// What became of PR mode's attempt to merge a step's or a revert's PR.
enum Landing {
    /// On the environment branch as this commit (the merge response's `sha`).
    Merged(String),
    /// Refused for now (checks pending, the head just moved): asked again after `retry_after`.
    Waiting(String),
    /// Refused for good within the rules: a person must act. GitHub's words included.
    Blocked(String),
}

/// Whether GitHub's refusal asks for something only a person can give (a review): no wait
/// for checks makes that pass.
fn needs_a_person(why: &str) -> bool {
    why.to_ascii_lowercase().contains("review")
}

/// The configured service of a rollout. A live rollout whose service was removed from the
/// config cannot go on: the message says so rather than "unknown service".
fn service_of<'a>(config: &'a Config, r: &Rollout) -> Result<&'a ServiceSpec, Failure> {
    config.service(r.service()).ok_or_else(|| {
        Failure::refused(format!(
            "service {:?} was removed from the configuration while rollout {} was live; put it \
             back to let the rollout finish or roll back",
            r.service(),
            r.deploy_id
        ))
    })
}

/// The configured service and environment of a rollout, and the image it deploys.
fn environment_of<'a>(
    config: &'a Config,
    r: &Rollout,
) -> Result<(&'a ServiceSpec, &'a ImageRepository, &'a EnvironmentSpec), Failure> {
    let service = service_of(config, r)?;
    match (&service.deploy, service.environment(r.environment())) {
        (Some(deploy), Some(env)) => Ok((service, &deploy.image, env)),
        _ => Err(Failure::refused(format!(
            "environment {:?} of service {:?} was removed from the configuration while rollout \
             {} was live; put it back to let the rollout finish or roll back",
            r.environment(),
            r.service(),
            r.deploy_id
        ))),
    }
}

/// The manifest edits of a step of `service` to `weight` (see `TargetConfig::step_change`).
pub fn step_edits(
    service: &str,
    image: &ImageRepository,
    env: &EnvironmentSpec,
    tag: &str,
    weight: Weight,
) -> Result<Vec<Arc<dyn FileEdit>>, Failure> {
    let image = image.with_tag(tag);
    let edits: Vec<Arc<dyn FileEdit>> = env
        .targets
        .iter()
        .filter_map(|t| {
            t.step_change(&image, weight.percent()).map(|change| {
                Arc::new(ManifestEdit {
                    path: t.path.clone(),
                    change,
                    options: t.edit_options(),
                }) as Arc<dyn FileEdit>
            })
        })
        .collect();
    if edits.is_empty() {
        return Err(Failure::refused(format!(
            "{service}/{}: no target changes at {weight} (set services[].environments[].targets)",
            env.name
        )));
    }
    Ok(edits)
}

fn step_label(r: &Rollout, weight: Weight) -> String {
    match r
        .course()
        .map(|c| &c.plan)
        .and_then(|p| p.position(weight).map(|i| (i, p.len())))
    {
        Some(_) if weight.is_full() => "promote to 100%".into(),
        Some((i, n)) => format!("canary {}/{n}", i + 1),
        None => format!("step {weight}"),
    }
}

/// The verification verdict at 100 %: the new version now serves as the stable track, so there
/// is no baseline to compare with; it must serve traffic and stay under the error guardrail.
pub fn verification_observation(window: &Window, judge: &JudgeConfig) -> Observation {
    let Some(last) = window.intervals.last() else {
        return Observation::Inconclusive {
            reason: "no metrics for the verification interval yet".into(),
            escalate: false,
        };
    };
    let Some(sample) = last.baseline.as_ref() else {
        return Observation::Inconclusive {
            reason: "no metrics for the new version's stable series".into(),
            escalate: false,
        };
    };
    // Too little traffic verifies nothing: hold rather than complete on a handful of requests.
    if sample.requests < judge.guardrails.min_requests.max(1) {
        return Observation::Inconclusive {
            reason: format!(
                "the new version served {} requests, fewer than the {} needed to verify it",
                sample.requests,
                judge.guardrails.min_requests.max(1)
            ),
            escalate: false,
        };
    }
    let rate = sample.errors as f64 / sample.requests as f64;
    let limit = judge.guardrails.max_canary_error_rate.unwrap_or(0.2);
    if rate > limit {
        return Observation::Rollback {
            metric: "error_rate".into(),
            evidence: format!(
                "at 100 % the new version failed {} of {} requests ({:.2} %), above the {:.2} % guardrail",
                sample.errors,
                sample.requests,
                rate * 100.0,
                limit * 100.0
            ),
        };
    }
    Observation::Promote
}

/// The judge's decision in the rollout's terms.
pub fn observation(decision: &Decision) -> Observation {
    match &decision.verdict {
        Verdict::Continue => Observation::Continue,
        Verdict::Promote => Observation::Promote,
        Verdict::Rollback { metric, evidence } => Observation::Rollback {
            metric: metric.clone(),
            evidence: evidence.clone(),
        },
        Verdict::Inconclusive { reason, escalate } => Observation::Inconclusive {
            reason: reason.to_string(),
            escalate: *escalate,
        },
    }
}

impl<W: WindowSource> LiveRunner<W> {
    pub fn new(parts: RunnerParts<W>) -> Self {
        LiveRunner {
            parts,
            revert_waits: Default::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.parts.store
    }

    fn now(&self) -> DateTime<Utc> {
        self.parts.clock.now()
    }

    /// The GitOps repository of an environment; one per URL, shared by every rollout.
    fn repo(&self, env: &EnvironmentSpec) -> Result<Arc<dyn GitopsRepo>, Failure> {
        self.parts.gitops.repo(&env.repo.url)
    }

    fn commit_info(&self, r: &Rollout, weight: Weight, image: &str, summary: String) -> CommitInfo {
        let service = self.parts.config.service(r.service());
        CommitInfo {
            summary,
            deploy_id: r.deploy_id.clone(),
            service: r.service().to_string(),
            environment: r.environment().to_string(),
            step: Some(step_label(r, weight)),
            weight: Some(weight.percent()),
            image: Some(image.to_string()),
            risk_score: r.course().map(|c| (c.risk_score * 100.0).round() as u32),
            source_pr: match (service, r.release.pull_request) {
                (Some(s), Some(n)) => Some(format!("{}#{n}", s.app_repo)),
                _ => None,
            },
        }
    }

    async fn commit_step(&self, r: &Rollout, weight: Weight, tag: &str) -> Result<Input, Failure> {
        if self.parts.config.gitops.mode == WriteMode::PullRequest {
            return self.commit_step_via_pr(r, weight, tag).await;
        }
        let (service, image, env) = environment_of(&self.parts.config, r)?;
        let edits = step_edits(&service.name, image, env, tag, weight)?;
        let image = image.with_tag(tag);
        let summary = step_summary(
            &image.to_string(),
            r.environment(),
            &weight.to_string(),
            false,
        );
        let info = self.commit_info(r, weight, &image, summary);
        let outcome = self.repo(env)?.write(&env.branch, edits, info).await?;
        tracing::info!(rollout = %r.deploy_id, %weight, head = outcome.head(), "step committed");
        Ok(Input::Committed {
            sha: outcome.head().to_string(),
            weight,
        })
    }

    /// PR mode's step: the step's own bot branch and PR into the environment branch, merged
    /// (with `gitops.merge_method`, at the head the bot pushed) once GitHub allows it. The
    /// merged commit is the step's commit: after a squash or rebase it is not the bot's own.
    /// Re-issued after a crash it finds what it did: a merged PR answers with its merge, an
    /// open one is reused.
    async fn commit_step_via_pr(
        &self,
        r: &Rollout,
        weight: Weight,
        tag: &str,
    ) -> Result<Input, Failure> {
        let config = &self.parts.config;
        let (service, image, env) = environment_of(config, r)?;
        let repo = self.gitops_repo(env)?;
        let github = self.github()?;
        let branch = step_branch(
            &config.gitops.branch_prefix,
            r.service(),
            r.environment(),
            &r.deploy_id,
            weight.percent(),
        );
        let base = env.branch.to_string();
        if let Some(sha) = github.merged_pull_request(&repo, &branch, &base).await? {
            tracing::info!(rollout = %r.deploy_id, %branch, %sha, "the step's PR was merged already");
            self.delete_bot_branch(&repo, &branch).await;
            return Ok(Input::Committed { sha, weight });
        }
        let edits = step_edits(&service.name, image, env, tag, weight)?;
        let image = image.with_tag(tag).to_string();
        let req = ProposeRequest {
            repo: repo.clone(),
            base: base.clone(),
            branch: branch.clone(),
            edits,
            info: self.commit_info(
                r,
                weight,
                &image,
                step_summary(&image, r.environment(), &weight.to_string(), false),
            ),
            labels: config.gitops.pr_labels.clone(),
            human_edited_label: config.gitops.human_edited_label.clone(),
        };
        let gitops = self.repo(env)?;
        let (pr, head) = match crate::adapters::gitops::pull_request::propose(
            gitops.as_ref(),
            github.as_ref(),
            req,
        )
        .await?
        {
            Proposal::Opened { pr, write } | Proposal::Reused { pr, write } => {
                (pr, write.head().to_string())
            }
            Proposal::HumanEdited { pr, who, branch } => {
                let pr = pr
                    .map(|p| format!(" (PR #{})", p.number))
                    .unwrap_or_default();
                return Ok(Input::MergeBlocked {
                    reason: format!(
                        "{who} pushed to the bot branch {branch}{pr}; deploybot never builds on \
                         or force-pushes over a person's commit: merge or close the PR \
                         yourself, then /resume"
                    ),
                });
            }
            Proposal::NothingToPropose { head } => {
                return Ok(Input::Committed { sha: head, weight });
            }
        };
        let since = match r.step().map(|s| &s.progress) {
            Some(Progress::Committing { since, .. }) => *since,
            _ => self.now(),
        };
        match self.land(&repo, &pr, &head, since).await? {
            Landing::Merged(sha) => {
                tracing::info!(rollout = %r.deploy_id, pr = pr.number, %sha, %weight, "step merged");
                Ok(Input::Committed { sha, weight })
            }
            Landing::Waiting(why) => Err(Failure::transient(
                format!("merging {repo}#{} ({branch})", pr.number),
                why,
            )),
            Landing::Blocked(reason) => Ok(Input::MergeBlocked { reason }),
        }
    }

    /// Merges `pr` at `head` with the configured method, if GitHub allows it. A refusal is a wait
    /// until `gitops.checks_timeout` has passed since `since` (the checks may still report), then
    /// blocked; one asking for a review is blocked at once. Never bypassed.
    async fn land(
        &self,
        repo: &RepoName,
        pr: &BotPullRequest,
        head: &str,
        since: DateTime<Utc>,
    ) -> Result<Landing, Failure> {
        let github = self.github()?;
        let gitops = &self.parts.config.gitops;
        let merged = github
            .merge_pull_request(repo, pr.number, head, gitops.merge_method)
            .await?;
        Ok(match merged {
            Merge::Merged(sha) => {
                self.delete_bot_branch(repo, &pr.head).await;
                Landing::Merged(sha)
            }
            // Someone pushed to the bot branch since: the next attempt sees whose commit it is.
            Merge::HeadMoved(why) => Landing::Waiting(why),
            Merge::NotMergeable(why) => {
                let rule = format!(
                    "{repo}#{} ({}) cannot be merged into {} (GitHub: {})",
                    pr.number,
                    pr.url,
                    pr.base,
                    why.trim_end_matches('.')
                );
                self.refused(rule, &why, since)
            }
        })
    }

    /// What GitHub's refusal to merge (`why`, described as `rule`) means for a PR whose wait
    /// began at `since`: asked again until `gitops.checks_timeout` has passed (the required
    /// checks may still report), then blocked; one asking for a review is blocked at once.
    fn refused(&self, rule: String, why: &str, since: DateTime<Utc>) -> Landing {
        let gitops = &self.parts.config.gitops;
        let timeout = chrono::Duration::from_std(gitops.checks_timeout.as_duration())
            .unwrap_or(chrono::Duration::MAX);
        let deadline = since + timeout;
        if needs_a_person(why) {
            Landing::Blocked(format!(
                "{rule}; deploybot never bypasses branch protection: give what the rule asks \
                 (or merge the PR yourself), then /resume"
            ))
        } else if self.now() >= deadline {
            Landing::Blocked(format!(
                "{rule}, still after gitops.checks_timeout ({}); deploybot never bypasses branch \
                 protection: make the required checks pass (or merge the PR yourself), then \
                 /resume",
                gitops.checks_timeout
            ))
        } else {
            Landing::Waiting(format!(
                "{rule}; waiting for the GitOps repository's required checks until {}",
                deadline.to_rfc3339()
            ))
        }
    }

    /// Deletes a merged bot branch; a branch left behind only costs a stale ref, so a failure
    /// is logged and nothing more.
    async fn delete_bot_branch(&self, repo: &RepoName, branch: &str) {
        let Ok(github) = self.github() else { return };
        if let Err(e) = github.delete_branch(repo, branch).await {
            tracing::warn!(%repo, %branch, "deleting a merged bot branch: {e}");
        }
    }

    fn gitops_repo(&self, env: &EnvironmentSpec) -> Result<RepoName, Failure> {
        env.repo.github.clone().ok_or_else(|| {
            Failure::refused(format!(
                "approval PRs need the GitOps repository on GitHub: {} is not a repository URL \
                 on {}; set the environment's github_repo (or gitops.github_repo)",
                env.repo.url.redacted(),
                self.parts.config.github.web_host()
            ))
        })
    }

    async fn open_approval_pr(
        &self,
        r: &Rollout,
        weight: Weight,
        tag: &str,
    ) -> Result<(), Failure> {
        let config = &self.parts.config;
        let (service, image, env) = environment_of(config, r)?;
        let repo = self.gitops_repo(env)?;
        if !self.parts.github_authenticated {
            return Err(Failure::refused(
                "approval PRs need a GitHub App (github.app_id) or token (github.token_env)",
            ));
        }
        let github = self.github()?;
        let edits = step_edits(&service.name, image, env, tag, weight)?;
        let image = image.with_tag(tag).to_string();
        let branch = bot_branch(
            &config.gitops.branch_prefix,
            r.service(),
            r.environment(),
            &r.deploy_id,
        );
        let req = ProposeRequest {
            repo: repo.clone(),
            base: env.branch.to_string(),
            branch: branch.clone(),
            edits,
            info: self.commit_info(
                r,
                weight,
                &image,
                step_summary(&image, r.environment(), &weight.to_string(), true),
            ),
            labels: config.gitops.pr_labels.clone(),
            human_edited_label: config.gitops.human_edited_label.clone(),
        };
        let gitops = self.repo(env)?;
        let pr = match crate::adapters::gitops::pull_request::propose(
            gitops.as_ref(),
            github.as_ref(),
            req,
        )
        .await?
        {
            Proposal::Opened { pr, .. } | Proposal::Reused { pr, .. } => pr,
            Proposal::HumanEdited { pr: Some(pr), .. } => pr,
            Proposal::HumanEdited { pr: None, who, .. } => {
                return Err(Failure::refused(format!(
                    "the approval branch {branch} has a commit by {who} and no open PR"
                )));
            }
            Proposal::NothingToPropose { head } => {
                return Err(Failure::refused(format!(
                    "{} is already at {image} ({head}): nothing to approve",
                    env.branch
                )));
            }
        };
        approval_prs::record_approval_pr(
            &self.parts.store,
            &approval_prs::ApprovalPr {
                deploy_id: r.deploy_id.clone(),
                repo: repo.to_string(),
                number: pr.number,
                branch,
            },
        )?;
        tracing::info!(rollout = %r.deploy_id, pr = pr.number, "approval PR open");
        Ok(())
    }

    /// Merges the approval PR at `head`, the commit the approvals were counted on, and nothing
    /// else: GitHub refuses (409) when the head moved, which is `ApprovalOutdated` and a recount.
    /// A PR already merged at `head` (by a person, or by deploybot before a crash) is that merge;
    /// merged at another head, it is outdated too, and the merge is judged where merges are
    /// (`events::on_approval_merged`, also on the reconcile).
    async fn merge_approval_pr(&self, r: &Rollout, head: Option<&str>) -> Result<Input, Failure> {
        let github = self.github()?;
        let link = approval_prs::approval_pr(&self.parts.store, &r.deploy_id)?
            .ok_or_else(|| Failure::refused("no approval PR is recorded for this rollout"))?;
        let repo: RepoName = link.repo.parse().map_err(Failure::refused)?;
        let weight = r
            .step()
            .map(|s| s.weight)
            .ok_or_else(|| Failure::refused("no step is in flight"))?;
        let Some(head) = head else {
            return Ok(Input::ApprovalOutdated {
                reason: "the approval was recorded without the head it approved".into(),
            });
        };
        let mut pr = github.pull_request(&repo, link.number).await?;
        if !pr.merged {
            let method = self.parts.config.gitops.merge_method;
            match github
                .merge_pull_request(&repo, link.number, head, method)
                .await?
            {
                Merge::Merged(sha) => {
                    tracing::info!(rollout = %r.deploy_id, pr = link.number, %sha, %head, "approval PR merged");
                    return Ok(Input::Committed { sha, weight });
                }
                Merge::HeadMoved(why) => return Ok(Input::ApprovalOutdated { reason: why }),
                Merge::NotMergeable(why) => {
                    // Merged by a person meanwhile? Then that merge is judged below.
                    pr = github.pull_request(&repo, link.number).await?;
                    if !pr.merged {
                        // Branch protection on the GitOps repository (checks still running, a
                        // rule the bot cannot meet): waited for as a PR-mode step is, then the
                        // rollout pauses naming the rule. Never bypassed.
                        let rule = format!(
                            "the approval PR {repo}#{} cannot be merged at {head} (GitHub: {})",
                            link.number,
                            why.trim_end_matches('.')
                        );
                        let since = match r.step().map(|s| &s.progress) {
                            Some(Progress::Committing { since, .. }) => *since,
                            _ => self.now(),
                        };
                        return match self.refused(rule, &why, since) {
                            Landing::Blocked(reason) => Ok(Input::MergeBlocked { reason }),
                            Landing::Merged(sha) => Ok(Input::Committed { sha, weight }),
                            Landing::Waiting(why) => Err(Failure::transient(
                                format!("merging {repo}#{} at {head}", link.number),
                                why,
                            )),
                        };
                    }
                }
            }
        }
        match pr.merge_commit_sha {
            Some(sha) if pr.head_sha == head => {
                tracing::info!(rollout = %r.deploy_id, pr = link.number, %sha, "approval PR was merged at the approved head");
                Ok(Input::Committed { sha, weight })
            }
            _ => Ok(Input::ApprovalOutdated {
                reason: format!(
                    "{repo}#{} was merged at {}, not at the approved {head}",
                    link.number, pr.head_sha
                ),
            }),
        }
    }

    /// Reverts what the rollout put in the environment, newest first as the branch has it: the
    /// commits listed, every bot commit carrying one of the `find` deploy ids (read from the
    /// branch, so one the record missed is reverted too), and merges of the approval PR as a
    /// whole, against their first parent.
    async fn revert(
        &self,
        r: &Rollout,
        listed: &RevertList<'_>,
        reason: &str,
        evidence: &str,
    ) -> Result<Input, Failure> {
        let (_, _, env) = environment_of(&self.parts.config, r)?;
        let gitops = self.repo(env)?;
        let why = revert_reason(reason, evidence);
        // The approval PR may have been merged by a process killed before it could record the
        // merge: the merge is then this rollout's change all the same (with whatever else its
        // approved head carried), and is reverted as a whole, as a recorded one would be.
        let mut merges = listed.merges.to_vec();
        if let Some(sha) = self.unrecorded_approval_merge(r).await?
            && !merges.contains(&sha)
        {
            tracing::warn!(rollout = %r.deploy_id, %sha, "the approval PR was merged before its merge was recorded: reverting it with the rest");
            merges.push(sha);
        }
        let listed = &RevertList {
            commits: listed.commits,
            find: listed.find,
            merges: &merges,
        };
        let known: Vec<String> = listed
            .commits
            .iter()
            .chain(listed.merges)
            .cloned()
            .collect();
        let order = gitops.revert_list(&env.branch, listed.find, &known).await?;
        if self.parts.config.gitops.mode == WriteMode::PullRequest {
            return self.revert_via_pr(r, env, &order, listed, &why).await;
        }
        let mut head = None;
        for sha in &order {
            let outcome = if listed.merges.contains(sha) {
                gitops.revert_merge(&env.branch, sha, &why).await?
            } else {
                gitops.revert(&env.branch, sha, &why).await?
            };
            head = Some(outcome.head().to_string());
        }
        let sha = match head {
            Some(h) => h,
            None => gitops.tip(&env.branch).await?.unwrap_or_default(),
        };
        tracing::warn!(rollout = %r.deploy_id, %sha, reverted = order.len(), "rolled back through git: {reason}");
        Ok(Input::Reverted { sha })
    }

    /// The merge commit of this rollout's approval PR when GitHub says it was merged but the
    /// rollout's record does not have it.
    async fn unrecorded_approval_merge(&self, r: &Rollout) -> Result<Option<String>, Failure> {
        let Some(link) = approval_prs::approval_pr(&self.parts.store, &r.deploy_id)? else {
            return Ok(None);
        };
        let repo: RepoName = link.repo.parse().map_err(Failure::refused)?;
        let pr = self.github()?.pull_request(&repo, link.number).await?;
        Ok(match pr.merge_commit_sha {
            Some(sha) if pr.merged && !r.commits.iter().any(|c| c.sha == sha) => Some(sha),
            _ => None,
        })
    }

    /// PR mode's revert: every commit of `order` reverted on one bot branch, whose PR is opened
    /// and merged at once (no approval), once GitHub allows it. The merged commit is what
    /// `Reverted` records. Refused past `gitops.checks_timeout` (or for a review), it fails
    /// naming the rule, which alerts: never bypassed.
    async fn revert_via_pr(
        &self,
        r: &Rollout,
        env: &EnvironmentSpec,
        order: &[String],
        listed: &RevertList<'_>,
        why: &str,
    ) -> Result<Input, Failure> {
        let config = &self.parts.config;
        let gitops = self.repo(env)?;
        let base = env.branch.to_string();
        let Some(newest) = order.first() else {
            let sha = gitops.tip(&base).await?.unwrap_or_default();
            return Ok(Input::Reverted { sha });
        };
        let repo = self.gitops_repo(env)?;
        let github = self.github()?;
        let branch = revert_branch(
            &config.gitops.branch_prefix,
            r.service(),
            r.environment(),
            &r.deploy_id,
            newest,
        );
        if let Some(sha) = github.merged_pull_request(&repo, &branch, &base).await? {
            tracing::warn!(rollout = %r.deploy_id, %branch, %sha, "the revert PR was merged already");
            self.delete_bot_branch(&repo, &branch).await;
            self.forget_revert_wait(&branch);
            return Ok(Input::Reverted { sha });
        }
        for sha in order {
            let whole = listed.merges.contains(sha);
            let written = gitops
                .revert_on_bot_branch(&branch, &base, sha, why, whole)
                .await?;
            if let BotWrite::HumanEdited { who } = written {
                return Err(Failure::refused(format!(
                    "the revert branch {branch} has a commit by {who}; deploybot never builds on \
                     or force-pushes over it: revert {} on {base} by hand",
                    order.join(", ")
                )));
            }
        }
        let Some(head) = gitops.tip(&branch).await? else {
            // Nothing to revert any more: the environment branch has the earlier values.
            let sha = gitops.tip(&base).await?.unwrap_or_default();
            return Ok(Input::Reverted { sha });
        };
        let info = CommitInfo {
            summary: why.lines().next().unwrap_or_default().to_string(),
            deploy_id: r.deploy_id.clone(),
            service: r.service().to_string(),
            environment: r.environment().to_string(),
            step: Some("revert".into()),
            ..CommitInfo::default()
        };
        let text = render_revert_pull_request(
            &info,
            order,
            &branch,
            &base,
            &config.gitops.human_edited_label,
        );
        let (pr, _) = open_or_reuse(
            github.as_ref(),
            &repo,
            &branch,
            &base,
            &text,
            &config.gitops.pr_labels,
        )
        .await?;
        let since = *self
            .revert_waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(branch.clone())
            .or_insert_with(|| self.now());
        match self.land(&repo, &pr, &head, since).await? {
            Landing::Merged(sha) => {
                self.forget_revert_wait(&branch);
                tracing::warn!(rollout = %r.deploy_id, pr = pr.number, %sha, reverted = order.len(), "rolled back through a revert PR");
                Ok(Input::Reverted { sha })
            }
            Landing::Waiting(why) => Err(Failure::transient(
                format!("merging the revert PR {repo}#{}", pr.number),
                why,
            )),
            Landing::Blocked(reason) => {
                self.forget_revert_wait(&branch);
                Err(Failure::refused(reason))
            }
        }
    }

    fn forget_revert_wait(&self, branch: &str) {
        self.revert_waits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(branch);
    }

    /// Ends the rollout's approval PR: says why on it (once: the comment is found by its
    /// marker), closes it if still open, deletes its bot branch, and records that it is done
    /// (the reconcile finishes what a crash interrupted).
    async fn close_approval_pr(&self, r: &Rollout, why: &Closing) -> Result<(), Failure> {
        let Some(link) = approval_prs::approval_pr(&self.parts.store, &r.deploy_id)? else {
            return Ok(());
        };
        let github = self.github()?;
        let repo: RepoName = link.repo.parse().map_err(Failure::refused)?;
        let pr = github.pull_request(&repo, link.number).await?;
        if pr.open || matches!(why, Closing::MergedUnapproved { .. }) {
            deploybot_core::github::upsert_marked_comment(
                github.as_ref(),
                &repo,
                link.number,
                &deploybot_core::rollout::comment::approval_pr_marker(&r.deploy_id),
                &self.parts.config.github.bot_login,
                &deploybot_core::rollout::comment::approval_pr_closed(&r.deploy_id, why),
            )
            .await?;
        }
        if pr.open {
            github.close_pull_request(&repo, link.number).await?;
        }
        github.delete_branch(&repo, &link.branch).await?;
        approval_prs::mark_closed(&self.parts.store, &r.deploy_id, self.now())?;
        tracing::info!(rollout = %r.deploy_id, pr = link.number, why = why.kind(), "approval PR closed, branch deleted");
        Ok(())
    }

    fn github(&self) -> Result<&Arc<dyn Github>, Failure> {
        self.parts
            .github
            .as_ref()
            .ok_or_else(|| Failure::refused("GitHub is not configured"))
    }

    fn app_repo(&self, r: &Rollout) -> Result<RepoName, Failure> {
        Ok(service_of(&self.parts.config, r)?.app_repo.clone())
    }

    async fn comment(&self, r: &Rollout, notice: &Notice) -> Result<(), Failure> {
        let points = self.parts.store.metrics(&r.deploy_id).unwrap_or_default();
        let body = deploybot_core::rollout::comment::status_comment_with_chart(
            r,
            notice,
            &points,
            self.parts
                .config
                .server
                .public_url
                .as_ref()
                .map(|u| u.as_str()),
        );
        let (Some(github), Some(pr)) = (self.parts.github.as_ref(), r.release.pull_request) else {
            tracing::info!(rollout = %r.deploy_id, "{}", deploybot_core::rollout::comment::notice_text(notice));
            return Ok(());
        };
        let repo = self.app_repo(r)?;
        deploybot_core::github::upsert_marked_comment(
            github.as_ref(),
            &repo,
            pr,
            &deploybot_core::rollout::comment::marker(&r.deploy_id),
            &self.parts.config.github.bot_login,
            &body,
        )
        .await?;
        Ok(())
    }

    async fn label(&self, r: &Rollout, name: &str) -> Result<(), Failure> {
        let (Some(github), Some(pr)) = (self.parts.github.as_ref(), r.release.pull_request) else {
            return Ok(());
        };
        let repo = self.app_repo(r)?;
        let spec = LabelSpec {
            name: name.to_string(),
            color: "b60205".into(),
            description: "deploybot rolled this change back".into(),
        };
        github.ensure_label(&repo, &spec).await?;
        github
            .add_labels(&repo, pr, std::slice::from_ref(&spec.name))
            .await
    }

    async fn set_status(
        &self,
        r: &Rollout,
        state: StatusState,
        phase: &Phase,
    ) -> Result<(), Failure> {
        let (Some(github), Some(sha)) =
            (self.parts.github.as_ref(), r.release.commit_sha.as_deref())
        else {
            return Ok(());
        };
        let repo = self.app_repo(r)?;
        let status = CommitStatus {
            state: match state {
                StatusState::Pending => deploybot_core::github::StatusState::Pending,
                StatusState::Success => deploybot_core::github::StatusState::Success,
                StatusState::Failure => deploybot_core::github::StatusState::Failure,
                StatusState::Error => deploybot_core::github::StatusState::Error,
            },
            context: format!("deploybot/{}", r.environment()),
            description: deploybot_core::rollout::comment::commit_status(r.environment(), phase),
            target_url: self
                .parts
                .config
                .server
                .public_url
                .as_ref()
                .map(|u| deploybot_core::rollout::page::rollout_page_url(u.as_str(), &r.deploy_id)),
        };
        github.set_commit_status(&repo, sha, &status).await
    }

    /// What the judge needs besides the current step: the earlier canary steps of this rollout
    /// and the stable version's history before it, read again from the metrics source over the
    /// spans the stored record names (so a restart loses nothing). A failing earlier step is
    /// "metrics unavailable" like the current one; a missing history only costs the judge its
    /// history prior.
    async fn rollout_evidence(&self, r: &Rollout, step: u64) -> Result<RolloutEvidence, String> {
        let spans = r.judge_spans();
        let whole = |start: i64, end: i64| start + (end - start).max(0) / step as i64 * step as i64;
        let mut earlier = Vec::with_capacity(spans.earlier.len());
        for (k, span) in spans.earlier.iter().enumerate() {
            let (start, end) = (span.start.timestamp(), span.end.timestamp());
            let mut w = self
                .parts
                .windows
                .window(r, start, whole(start, end), step)
                .await
                .map_err(|f| {
                    format!(
                        "reading the metrics of step {} ({}): {f}",
                        k + 1,
                        span.weight
                    )
                })?;
            w.canary_weight = f64::from(span.weight.percent()) / 100.0;
            earlier.push(w);
        }
        let history = match spans.rollout_start {
            Some(at) => {
                let end = at.timestamp();
                let start = end - HISTORY_INTERVALS * step as i64;
                match self.parts.windows.window(r, start, end, step).await {
                    Ok(w) => w.intervals,
                    Err(e) => {
                        tracing::warn!(rollout = %r.deploy_id, "reading the history before the rollout: {e}");
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        Ok(RolloutEvidence {
            history,
            earlier,
            last_step: spans.last_step,
            planned_steps: spans.planned_steps,
        })
    }

    async fn query_metrics(&self, r: &Rollout) -> Result<Input, Failure> {
        let since = match r.step().map(|s| &s.progress) {
            Some(deploybot_core::rollout::record::Progress::Live { since, .. }) => *since,
            _ => return Err(Failure::refused("metrics asked for with no live step")),
        };
        if let Some(overwrite) = self.overwritten_under_analysis(r).await? {
            return Ok(overwrite);
        }
        let step = r.settings.analysis_interval_secs.max(1);
        let start = since.timestamp();
        let now = self.now().timestamp();
        // Whole intervals only: a partial one would read as a traffic drop.
        let end = start + (now - start).max(0) / step as i64 * step as i64;
        let service = service_of(&self.parts.config, r)?;
        let window = match self.parts.windows.window(r, start, end, step).await {
            Ok(w) => w,
            Err(f) if f.is_transient() => {
                return Ok(Input::MetricsUnavailable {
                    reason: f.to_string(),
                });
            }
            Err(f) => {
                return Ok(Input::MetricsUnavailable {
                    reason: format!("the metrics query is wrong: {f}"),
                });
            }
        };
        // The history the status page and the PR chart draw; losing it must not stop a rollout.
        if let Some(end_at) = DateTime::from_timestamp(end, 0) {
            let points =
                deploybot_core::rollout::metrics::points_from_window(&window, end_at, r.traffic());
            if let Err(e) = self.parts.store.record_metrics(&r.deploy_id, &points) {
                tracing::warn!(rollout = %r.deploy_id, "recording metric history: {e}");
            }
        }
        let judge = &service.analysis.judge;
        // 100 % live (verification, or paused in it): no baseline is left to compare with.
        let verifying = r
            .step()
            .is_some_and(|s| s.weight.is_full() && matches!(s.progress, Progress::Live { .. }));
        let judgement = if verifying {
            verification_observation(&window, judge).into()
        } else {
            let evidence = match self.rollout_evidence(r, step).await {
                Ok(e) => e,
                Err(reason) => return Ok(Input::MetricsUnavailable { reason }),
            };
            let look = Look {
                history: &evidence.history,
                earlier: &evidence.earlier,
                current: &window,
                t: window.intervals.len(),
                last_step: evidence.last_step,
                planned_steps: evidence.planned_steps,
            };
            let decision = deploybot_core::canary::judge_look(&look, judge);
            tracing::info!(
                rollout = %r.deploy_id,
                intervals = window.intervals.len(),
                verdict = decision.verdict.name(),
                "judged: {}", decision.reason()
            );
            Judgement {
                observation: observation(&decision),
                accumulated: Evidence::of(&decision),
            }
        };
        Ok(Input::Judged(judgement))
    }

    async fn wait_for_sync(&self, r: &Rollout, revision: &str) -> Result<Option<Input>, Failure> {
        let config = &self.parts.config;
        let env = environment_of(config, r).map(|(_, _, env)| env);
        // An environment removed from the config while its rollout was live: with Argo CD
        // configured that is the refusal `environment_of` words, not a settle time.
        let server = match &env {
            Ok(env) => config.argocd_server(env),
            Err(_) => config.argocd.server.as_ref(),
        };
        let Some(server) = server else {
            let settle = secs(config.argocd.settle_time.as_millis().div_ceil(1000));
            let committed = r
                .commits
                .iter()
                .rev()
                .find(|c| c.sha == revision)
                .map(|c| c.at)
                .unwrap_or(r.updated_at);
            return Ok((committed + settle <= self.now()).then(|| Input::Synced {
                revision: revision.to_string(),
            }));
        };
        let env = env?;
        let Some((app, live)) = self.argocd_liveness(r, env, server, revision).await? else {
            // Asked again on the next tick; the deadline in the record bounds the wait.
            return Ok(None);
        };
        Ok(match live {
            Liveness::Live { revision: at } => {
                if at != revision {
                    tracing::info!(rollout = %r.deploy_id, %app, %at, "synced to a later commit that carries the step");
                }
                Some(Input::Synced {
                    revision: revision.to_string(),
                })
            }
            Liveness::Failed(reason) => Some(Input::SyncFailed {
                reason: format!("Argo CD application {app}: {reason}"),
            }),
            Liveness::Overwritten {
                revision: at,
                path,
                detail,
            } => Some(overwritten(&app, &at, revision, &path, &detail)),
            Liveness::Waiting(why) => {
                tracing::debug!(rollout = %r.deploy_id, %app, "waiting for sync: {why}");
                None
            }
        })
    }

    /// What Argo CD's Application for `r` in `env` reports of `revision` (the step's commit), as
    /// the shared-branch rule reads it; `None` when Argo CD could not be read for now (logged).
    async fn argocd_liveness(
        &self,
        r: &Rollout,
        env: &EnvironmentSpec,
        server: &deploybot_core::config::ArgoCdServer,
        revision: &str,
    ) -> Result<Option<(String, Liveness)>, Failure> {
        let config = &self.parts.config;
        let argocd = self.parts.argocd.client(server).ok_or_else(|| {
            Failure::refused(format!(
                "no Argo CD client for {} ({}/{}): it was not built at start-up",
                server.url,
                r.service(),
                r.environment()
            ))
        })?;
        let app = config.application_name(r.service(), env);
        let status = match argocd.application(&app, config.argocd.refresh).await {
            Ok(status) => status,
            Err(e) if e.is_transient() => {
                tracing::warn!(rollout = %r.deploy_id, %app, "reading Argo CD: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (lineage, files) = self.lineage_and_files(r, env, &status, revision).await?;
        let live = liveness(&status, revision, &lineage, &files);
        Ok(Some((app, live)))
    }

    /// Before a canary judgement: the revision Argo CD runs must still carry the step's values.
    /// A later commit that changed them (a person's merge, a revert by hand) makes the canary
    /// someone else's version, which is not judged: `Overwritten` pauses instead. Anything else
    /// (Argo CD unreachable, a sync in progress) leaves the judgement to the metrics.
    async fn overwritten_under_analysis(&self, r: &Rollout) -> Result<Option<Input>, Failure> {
        let config = &self.parts.config;
        let Ok((_, _, env)) = environment_of(config, r) else {
            return Ok(None);
        };
        let (Some(server), Some(step)) = (config.argocd_server(env), r.step()) else {
            return Ok(None);
        };
        let Some(ours) = r
            .commits
            .iter()
            .rev()
            .find(|c| c.weight == step.weight)
            .or(r.commits.last())
        else {
            return Ok(None);
        };
        match self.argocd_liveness(r, env, server, &ours.sha).await {
            Ok(Some((
                app,
                Liveness::Overwritten {
                    revision: at,
                    path,
                    detail,
                },
            ))) => Ok(Some(overwritten(&app, &at, &ours.sha, &path, &detail))),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(rollout = %r.deploy_id, "checking the step's values before judging: {e}");
                Ok(None)
            }
        }
    }

    /// What the GitOps repository says of the revisions `status` reports: whether each contains
    /// `ours`, and the step's files at the one that does (its edits applied again: a value that
    /// differs is someone else's).
    async fn lineage_and_files(
        &self,
        r: &Rollout,
        env: &EnvironmentSpec,
        status: &AppStatus,
        ours: &str,
    ) -> Result<(Vec<Lineage>, Vec<FileAtRevision>), Failure> {
        let repo = self.repo(env)?;
        let mut lineage: Vec<Lineage> = Vec::new();
        let reported = status.revisions.iter().chain(&status.operation_revision);
        for revision in reported {
            if revision == ours || lineage.iter().any(|l| &l.revision == revision) {
                continue;
            }
            let contains_ours = repo.contains(&env.branch, revision, ours).await?;
            lineage.push(Lineage {
                revision: revision.clone(),
                contains_ours,
            });
        }
        let Some(at) = deployed(status, ours, &lineage) else {
            return Ok((lineage, Vec::new()));
        };
        let (service, image, _) = environment_of(&self.parts.config, r)?;
        let Some(weight) = r.step().map(|s| s.weight) else {
            return Ok((lineage, Vec::new()));
        };
        let mut files = Vec::new();
        for edit in step_edits(&service.name, image, env, r.image_tag(), weight)? {
            let differs = match repo.read_file(&env.branch, at, edit.path()).await? {
                None => Err(format!("{} is not in the repository at {at}", edit.path())),
                Some(text) => edit
                    .apply(&text)
                    .map(|edited| edited.changes)
                    .map_err(|e| e.to_string()),
            };
            files.push(FileAtRevision {
                path: edit.path().to_string(),
                differs,
            });
        }
        Ok((lineage, files))
    }
}

impl<W: WindowSource> EffectRunner for LiveRunner<W> {
    async fn run(&self, r: &Rollout, effect: &Effect) -> Result<Option<Input>, Failure> {
        let subject = format!("{}/{} {}", r.service(), r.environment(), r.deploy_id);
        match effect {
            Effect::CommitStep { weight, image_tag } => {
                self.commit_step(r, *weight, image_tag).await.map(Some)
            }
            Effect::OpenApprovalPr { weight, image_tag } => {
                self.open_approval_pr(r, *weight, image_tag).await?;
                Ok(None)
            }
            Effect::MergeApprovalPr { head } => {
                self.merge_approval_pr(r, head.as_deref()).await.map(Some)
            }
            Effect::Revert {
                commits,
                reason,
                evidence,
                find,
                merges,
                ..
            } => {
                let listed = RevertList {
                    commits,
                    find,
                    merges,
                };
                self.revert(r, &listed, reason, evidence).await.map(Some)
            }
            Effect::CloseApprovalPr { why } => self.close_approval_pr(r, why).await.map(|()| None),
            Effect::Comment { notice } => self.comment(r, notice).await.map(|()| None),
            Effect::Label { name } => self.label(r, name).await.map(|()| None),
            Effect::SetStatus { state, phase } => {
                self.set_status(r, *state, phase).await.map(|()| None)
            }
            Effect::QueryMetrics { .. } => self.query_metrics(r).await.map(Some),
            Effect::WaitForSync { revision, .. } => self.wait_for_sync(r, revision).await,
            Effect::Notify { level, notice } => {
                if let Some(m) = &self.parts.metrics {
                    m.rollout_alert(level.as_str(), notice.kind());
                }
                // An alert that cannot be delivered must not stop the rollout: it is posted in
                // the background, and logged if it fails for good.
                self.parts.alerts.send(&subject, *level, notice);
                Ok(None)
            }
            Effect::HoldService { reason } => {
                holds::hold(
                    &self.parts.store,
                    r.service(),
                    r.environment(),
                    &r.deploy_id,
                    reason,
                    self.now(),
                )?;
                Ok(None)
            }
            Effect::ReleaseService => {
                holds::release(&self.parts.store, r.service(), r.environment())?;
                Ok(None)
            }
        }
    }
}

/// The pause of a step whose values someone else's commit changed at the revision Argo CD runs.
fn overwritten(app: &str, at: &str, ours: &str, path: &str, detail: &str) -> Input {
    Input::Overwritten {
        reason: format!(
            "Argo CD application {app} is synced to {at}, which contains deploybot's commit \
             {ours}, but {path} no longer carries the step's values ({detail}); someone else's \
             version is not judged: restore the value and /resume, or /rollback"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::canary::sample::{Interval, TrackSample};

    fn window(baseline: Option<(u64, u64)>) -> Window {
        Window {
            step_seconds: 60,
            canary_weight: 0.0,
            latency_buckets_le: vec![],
            intervals: vec![Interval {
                baseline: baseline.map(|(requests, errors)| TrackSample {
                    requests,
                    errors,
                    latency_buckets: vec![],
                    extra: Default::default(),
                }),
                canary: None,
            }],
        }
    }

    #[test]
    fn verification_holds_without_traffic_and_rolls_back_over_the_guardrail() {
        let judge = JudgeConfig::default();
        let hold = |w: &Window| {
            matches!(
                verification_observation(w, &judge),
                Observation::Inconclusive { .. }
            )
        };
        assert!(hold(&Window {
            intervals: vec![],
            ..window(None)
        }));
        assert!(hold(&window(None)), "a missing series is not a pass");
        assert!(hold(&window(Some((0, 0)))), "no traffic is not a pass");
        assert_eq!(
            verification_observation(&window(Some((1000, 3))), &judge),
            Observation::Promote
        );
        match verification_observation(&window(Some((1000, 300))), &judge) {
            Observation::Rollback { metric, evidence } => {
                assert_eq!(metric, "error_rate");
                assert!(evidence.contains("300 of 1000"), "{evidence}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            hold(&window(Some((10, 5)))),
            "ten requests verify nothing, whatever they say"
        );
    }

    fn service(yaml: &str) -> ServiceSpec {
        let text = format!(
            "gitops:\n  repo_url: file:///srv/g.git\nservices:\n  - {}",
            yaml.replace('\n', "\n    ")
        );
        crate::config::from_yaml(&text, std::path::Path::new("t.yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .services
            .remove(0)
    }

    /// (The image a step needs is required when the config resolves: see
    /// `deploybot_core::config`'s tests.)
    #[test]
    fn step_edits_need_a_target_that_changes() {
        let with_targets = service(
            "name: s\napp_repo: o/s\nimage: ghcr.io/o/s\nenvironments:\n  - name: staging\n    \
             targets:\n      - path: c.yaml\n        track: canary\n      - path: r.yaml\n        \
             kind: weight\n        canary: s-canary\n",
        );
        let deploy = with_targets.deploy.as_ref().unwrap();
        let env = &deploy.environments[0];
        let w = |p| Weight::new(p).unwrap();
        let paths = |edits: Vec<Arc<dyn FileEdit>>| {
            edits
                .iter()
                .map(|e| e.path().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(step_edits("s", &deploy.image, env, "v2", w(5)).unwrap()),
            ["c.yaml", "r.yaml"]
        );
        let stable_only = service(
            "name: s\napp_repo: o/s\nimage: ghcr.io/o/s\nenvironments:\n  - name: staging\n    \
             targets:\n      - path: d.yaml\n",
        );
        let deploy = stable_only.deploy.as_ref().unwrap();
        let env = &deploy.environments[0];
        let err = step_edits("s", &deploy.image, env, "v2", w(5))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no target changes at 5%"), "{err}");
        assert!(!err.is_transient());
        assert_eq!(
            paths(step_edits("s", &deploy.image, env, "v2", w(100)).unwrap()),
            ["d.yaml"]
        );
    }

    #[test]
    fn judge_verdicts_map_onto_observations() {
        let d = |verdict| Decision {
            interval: 1,
            verdict,
            verified_intervals: 1,
            steps: 1,
            metrics: vec![],
            canary_share: None,
            note: None,
        };
        assert_eq!(observation(&d(Verdict::Promote)), Observation::Promote);
        assert_eq!(
            observation(&d(Verdict::Inconclusive {
                reason: deploybot_core::canary::InconclusiveReason::NoCanaryTraffic,
                escalate: true
            })),
            Observation::Inconclusive {
                reason: deploybot_core::canary::InconclusiveReason::NoCanaryTraffic.to_string(),
                escalate: true
            }
        );
    }
}
