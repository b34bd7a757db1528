//! The risk service: runs an assessment end to end (policy, optional model, combination) for a
//! diff or a pull request, and publishes a pull request's result (comment, labels, status).
//! This is the imperative shell around the pure `policy`, `combine`, `prompt` and `comment`.
//!
//! The webhook dispatch calls [`assess_pull_request`] for the pull requests its route sends here
//! (`deploybot_core::webhook::route`: opened, synchronize, reopened, ready_for_review and
//! closed-as-merged, of a service's application repository).

use crate::adapters::secrets::Secrets;
use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::adapters::llm::LlmClient;
use crate::adapters::store::assessments::{AssessmentKey, AssessmentStore};
use crate::config::{Config, SecretKey, ServiceSpec};
use deploybot_core::failure::Failure;
use deploybot_core::github::{
    Approvals, Checks, CommentAction, Comments, CommitStatus, LabelSpec, Labels, PullFile,
    PullRequest, PullRequests, RepoName, StatusState,
};
use deploybot_core::risk::combine::{ModelOutcome, combine};
use deploybot_core::risk::model::RiskModel;
use deploybot_core::risk::{
    Assessment, Change, ChangedFile, FactorKind, Policy, RiskStatusGate, RiskTier, Thresholds,
};
use deploybot_core::rollout::approval::ApprovalOutcome;

use crate::shell::approvals::{Approvers, count_on_head};

/// The commit status context deploybot sets on the head commit.
pub const STATUS_CONTEXT: &str = "deploybot/risk";
/// The label that says a human must approve before the change ships.
pub const NEEDS_APPROVAL: &str = "needs-approval";

/// The result of assessing a pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct PrAssessment {
    pub assessment: Assessment,
    /// The head SHA that was assessed (the PR's current head, re-read from the API).
    pub head_sha: String,
    pub comment: CommentAction,
    /// A stored result for the same head and inputs was reused; the model was not asked.
    pub reused: bool,
    /// What was assessed: the files, the title, the commits.
    pub change: Change,
}

/// The repository paths a change touches (a rename's old path too).
pub fn touched_paths(change: &Change) -> Vec<String> {
    change
        .files
        .iter()
        .flat_map(|f| std::iter::once(f.path.clone()).chain(f.previous_path.clone()))
        .collect()
}

/// The assessment of `service`'s own part of `change` (its `paths`), with its thresholds: in a
/// repository several services share, each ships on the risk of what it changed. A service that
/// owns the whole repository ships on `whole`, the pull request's assessment.
pub async fn assess_service(
    config: &Config,
    model: Option<&dyn RiskModel>,
    service: &ServiceSpec,
    change: &Change,
    whole: &Assessment,
) -> Assessment {
    if service.paths.is_whole_repository() {
        return whole.clone();
    }
    let own = Change {
        files: change
            .files
            .iter()
            .filter(|f| {
                service.paths.owns(&f.path)
                    || f.previous_path
                        .as_deref()
                        .is_some_and(|p| service.paths.owns(p))
            })
            .cloned()
            .collect(),
        ..change.clone()
    };
    assess_change(
        &config.risk.policy,
        &service.thresholds,
        &own,
        model,
        config.llm.max_prompt_tokens,
    )
    .await
}

/// The comment's "Services" cell: which services of `repo` merging the change releases.
fn services_text(config: &Config, repo: &RepoName, change: &Change) -> String {
    let all: Vec<&str> = config
        .services_by_app_repo(repo)
        .map(|s| s.name.as_str())
        .collect();
    if all.is_empty() {
        return "none configured for this repository".into();
    }
    let released: Vec<String> = config
        .released_by(repo, &touched_paths(change))
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect();
    if released.is_empty() {
        format!(
            "none: this change touches none of the paths of {}, so merging it releases nothing",
            all.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("{} (released when merged)", released.join(", "))
    }
}

/// Assesses a change: the policy floor, then the model (if any) asked with a redacted, budgeted
/// prompt, then the combination. Never fails: a model problem becomes a factor and an approval.
pub async fn assess_change(
    policy: &Policy,
    thresholds: &Thresholds,
    change: &Change,
    model: Option<&dyn RiskModel>,
    max_prompt_tokens: usize,
) -> Assessment {
    let floor = policy.assess(change, thresholds);
    let Some(model) = model else {
        return floor;
    };
    let budget = model.prompt_budget(max_prompt_tokens).await;
    let prompt = deploybot_core::risk::prompt::build(change, &floor, policy, budget);
    if prompt.redactions > 0 {
        tracing::info!(
            redactions = prompt.redactions,
            "secrets redacted from the model prompt"
        );
    }
    let outcome = match model.assess(&prompt.system, &prompt.user).await {
        Ok(verdict) => ModelOutcome::Answered {
            model: model.model().to_string(),
            prompt_version: prompt.version,
            verdict,
        },
        Err(e) => {
            tracing::warn!(model = model.model(), error = %e, "model assessment unavailable");
            ModelOutcome::Failed {
                model: model.model().to_string(),
                prompt_version: prompt.version,
                reason: e.to_string(),
            }
        }
    };
    combine(floor, outcome, thresholds)
}

/// The configured model client, if any; its API key comes from the secrets read at start-up.
pub fn model_client(config: &Config, secrets: &Secrets) -> anyhow::Result<Option<LlmClient>> {
    let Some(spec) = &config.llm.model else {
        return Ok(None);
    };
    let key = secrets.get(SecretKey::LlmApiKey).cloned();
    if spec.api_key.is_some() && key.is_none() {
        anyhow::bail!("setting up the llm client: llm.api_key was not read at start-up");
    }
    LlmClient::new(spec, key)
        .map(Some)
        .context("setting up the llm client")
}

/// The thresholds of `service` (by name) over the global ones.
pub fn thresholds_for(config: &Config, service: Option<&str>) -> anyhow::Result<Thresholds> {
    Ok(match service {
        Some(name) => {
            config
                .service(name)
                .with_context(|| format!("no service named {name:?} in the config"))?
                .thresholds
        }
        None => config.risk.thresholds,
    })
}

/// The thresholds of the service whose `app_repo` is `repo`.
pub fn thresholds_for_repo(config: &Config, repo: &RepoName) -> Thresholds {
    config
        .service_by_app_repo(repo)
        .map_or(config.risk.thresholds, |s| s.thresholds)
}

/// Assesses a unified diff.
pub async fn assess_diff(
    config: &Config,
    secrets: &Secrets,
    service: Option<&str>,
    diff: &str,
) -> anyhow::Result<Assessment> {
    let policy = &config.risk.policy;
    let thresholds = thresholds_for(config, service)?;
    let change = deploybot_core::risk::diff::parse_unified_diff(diff)
        .context("parsing the diff")?
        .into_change();
    let client = model_client(config, secrets)?;
    Ok(assess_change(
        policy,
        &thresholds,
        &change,
        client.as_ref().map(|c| c as &dyn RiskModel),
        config.llm.max_prompt_tokens,
    )
    .await)
}

/// A pull request's change as the policy sees it.
pub fn change_from_pull(pr: &PullRequest, files: Vec<PullFile>, commits: Vec<String>) -> Change {
    let listed = files.len();
    let files: Vec<ChangedFile> = files.into_iter().map(changed_file).collect();
    Change {
        files,
        title: pr.title.clone(),
        body: pr.body.clone(),
        commit_messages: commits,
        author: Some(pr.author.clone()),
        // deploybot's own labels are its output, not an input: feeding them back would change
        // the inputs digest after every publication.
        labels: pr
            .labels
            .iter()
            .filter(|l| !is_managed_label(l))
            .cloned()
            .collect(),
        truncated_patches: 0,
    }
    .with_unlisted_files((pr.changed_files as usize).saturating_sub(listed))
}

fn changed_file(f: PullFile) -> ChangedFile {
    let mut c = ChangedFile::new(f.path, f.status);
    c.previous_path = f.previous_path;
    c.additions = f.additions;
    c.deletions = f.deletions;
    match f.patch {
        Some(patch) => match deploybot_core::risk::diff::parse_patch_hunks(&patch) {
            Ok((hunks, truncated)) => {
                c.hunks = hunks;
                c.patch_truncated = truncated;
            }
            Err(_) => c.patch_truncated = true,
        },
        // GitHub leaves the patch out of binaries (no line counts) and of huge text diffs
        // (line counts but no patch): the latter is content nobody has seen.
        None if c.lines_changed() > 0 => c.patch_truncated = true,
        None => c.binary = c.status != deploybot_core::risk::FileStatus::Renamed,
    }
    c
}

/// Reads a pull request and its change from GitHub.
pub async fn load_pull<G: PullRequests + ?Sized>(
    github: &G,
    repo: &RepoName,
    number: u64,
) -> Result<(PullRequest, Change), Failure> {
    let pr = github.pull_request(repo, number).await?;
    let files = github.pull_request_files(repo, number).await?;
    let commits = github.pull_request_commits(repo, number).await?;
    let change = change_from_pull(&pr, files, commits);
    Ok((pr, change))
}

/// The digest of everything that decides an assessment.
pub fn inputs_digest(
    config: &Config,
    thresholds: &Thresholds,
    change: &Change,
    model: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(change).unwrap_or_default());
    h.update(serde_json::to_vec(&config.risk.config).unwrap_or_default());
    h.update(format!("{thresholds:?}"));
    h.update(model.unwrap_or("-"));
    h.update(deploybot_core::risk::prompt::prompt_version());
    hex::encode(h.finalize())
}

/// The labels a result calls for.
pub fn desired_labels(a: &Assessment) -> Vec<LabelSpec> {
    let (color, description) = match a.tier {
        RiskTier::Low => ("0e8a16", "deploybot: low deployment risk"),
        RiskTier::Medium => ("fbca04", "deploybot: medium deployment risk"),
        RiskTier::High => ("d93f0b", "deploybot: high deployment risk"),
        RiskTier::Critical => ("b60205", "deploybot: critical deployment risk"),
    };
    let mut labels = vec![LabelSpec {
        name: a.tier.label(),
        color: color.into(),
        description: description.into(),
    }];
    if a.requires_manual_approval {
        labels.push(LabelSpec {
            name: NEEDS_APPROVAL.into(),
            color: "5319e7".into(),
            description: "deploybot: a human must approve before this ships".into(),
        });
    }
    labels
}

/// Labels deploybot owns (and may remove): the four tiers and `needs-approval`. Labels humans
/// set, such as `risk/override-*`, are never touched.
pub fn is_managed_label(label: &str) -> bool {
    label.eq_ignore_ascii_case(NEEDS_APPROVAL)
        || RiskTier::ALL
            .iter()
            .any(|t| t.label().eq_ignore_ascii_case(label))
}

/// Assesses pull request `number` of `repo` and publishes the result on it: one status comment
/// (created once, edited afterwards), the risk labels and the `deploybot/risk` commit status.
/// The PR is re-read from the API, so a stale event assesses the current head. A stored result
/// for the same head and inputs is reused without asking the model, unless the model failed then.
///
/// A failure is classified where it happened: GitHub's by its adapter, the store's as transient,
/// an invalid risk policy as permanent.
pub async fn assess_pull_request<G>(
    config: &Config,
    github: &G,
    model: Option<&dyn RiskModel>,
    store: &dyn AssessmentStore,
    repo: &RepoName,
    number: u64,
    head_sha: &str,
) -> Result<PrAssessment, Failure>
where
    G: PullRequests + Comments + Labels + Checks + Approvals + ?Sized,
{
    let policy = &config.risk.policy;
    let thresholds = thresholds_for_repo(config, repo);
    let (pr, change) = load_pull(github, repo, number).await?;
    if pr.head_sha != head_sha {
        tracing::info!(%repo, number, event_sha = head_sha, current_sha = %pr.head_sha,
            "the event's head is stale; assessing the current head");
    }
    let key = AssessmentKey {
        repository: repo.to_string(),
        pr_number: number,
        head_sha: pr.head_sha.clone(),
        inputs_digest: inputs_digest(config, &thresholds, &change, model.map(|m| m.model())),
    };
    let stored = store.find(&key).map_err(storing)?.filter(|a| {
        !a.risk_factors
            .iter()
            .any(|f| f.category == FactorKind::ModelUnavailable)
    });
    let reused = stored.is_some();
    let assessment = match stored {
        Some(a) => a,
        None => {
            let a = assess_change(
                policy,
                &thresholds,
                &change,
                model,
                config.llm.max_prompt_tokens,
            )
            .await;
            store.save(&key, &a).map_err(storing)?;
            a
        }
    };
    let services = services_text(config, repo, &change);
    let comment = publish(config, github, repo, &pr, &assessment, &services).await?;
    Ok(PrAssessment {
        assessment,
        head_sha: pr.head_sha,
        comment,
        reused,
        change,
    })
}

/// A store failure while keeping assessments.
fn storing(e: crate::adapters::store::StoreError) -> Failure {
    Failure::from(e).context("storing the assessment")
}

/// Posts the result on the pull request. Every step is idempotent.
pub async fn publish<G: Comments + Labels + Checks + Approvals + ?Sized>(
    config: &Config,
    github: &G,
    repo: &RepoName,
    pr: &PullRequest,
    a: &Assessment,
    services: &str,
) -> Result<CommentAction, Failure> {
    let body = deploybot_core::risk::comment::render(
        a,
        &repo.to_string(),
        pr.number,
        &pr.head_sha,
        services,
    );
    let comment = deploybot_core::github::upsert_marked_comment(
        github,
        repo,
        pr.number,
        deploybot_core::risk::comment::MARKER,
        &config.github.bot_login,
        &body,
    )
    .await?;
    deploybot_core::github::sync_labels(
        github,
        repo,
        pr.number,
        &pr.labels,
        &desired_labels(a),
        is_managed_label,
    )
    .await?;
    let gate = config.risk.config.status_until_approved;
    // Reviews are read only when the status could gate: the default never asks GitHub.
    let approved = if gate != RiskStatusGate::Success && a.requires_manual_approval {
        let who = Approvers {
            teams: &[],
            author: &pr.author,
            required: 1,
        };
        matches!(
            count_on_head(github, repo, pr.number, &pr.head_sha, &who).await?,
            ApprovalOutcome::Approved { .. }
        )
    } else {
        false
    };
    let state = match gate.state(a, approved) {
        RiskStatusGate::Success => StatusState::Success,
        RiskStatusGate::Pending => StatusState::Pending,
        RiskStatusGate::Failure => StatusState::Failure,
    };
    github
        .set_commit_status(
            repo,
            &pr.head_sha,
            &CommitStatus {
                state,
                context: STATUS_CONTEXT.into(),
                description: deploybot_core::risk::comment::status_description(a, approved),
                target_url: None,
            },
        )
        .await?;
    Ok(comment)
}

/// `assess --repo --pr`: read-only unless `publish`, which also stores and posts the result.
pub async fn assess_pr_from_cli(
    config: &Config,
    secrets: &Secrets,
    repo: &str,
    pr: u64,
    publish: bool,
) -> anyhow::Result<Assessment> {
    let repo: RepoName = repo.parse().map_err(anyhow::Error::msg)?;
    let tokens = crate::adapters::github_auth::from_config(
        &config.github,
        std::sync::Arc::new(crate::adapters::clock::SystemClock),
    )
    .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let github =
        crate::adapters::github::GithubRest::with_tokens(config.github.api_base(), tokens)?
            .with_timeout(config.github.timeout.as_duration());
    let client = model_client(config, secrets)?;
    let model = client.as_ref().map(|c| c as &dyn RiskModel);
    if publish {
        use crate::adapters::store::{Location, Store};
        let password = secrets.get(SecretKey::StorePassword).cloned();
        let store = Store::open_at(&Location::of(&config.store, password))?;
        let (current, _) = load_pull(&github, &repo, pr).await?;
        let done =
            assess_pull_request(config, &github, model, &store, &repo, pr, &current.head_sha)
                .await
                .with_context(|| format!("assessing {repo}#{pr}"))?;
        return Ok(done.assessment);
    }
    let policy = &config.risk.policy;
    let thresholds = thresholds_for_repo(config, &repo);
    let (_, change) = load_pull(&github, &repo, pr)
        .await
        .with_context(|| format!("assessing {repo}#{pr}"))?;
    Ok(assess_change(
        policy,
        &thresholds,
        &change,
        model,
        config.llm.max_prompt_tokens,
    )
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploybot_core::risk::FileStatus;

    fn pr(changed_files: u64) -> PullRequest {
        PullRequest {
            number: 1,
            title: "t".into(),
            body: "b".into(),
            author: "a".into(),
            labels: vec!["x".into(), "risk/high".into()],
            head_sha: "h".into(),
            merged: false,
            merge_commit_sha: None,
            merged_by: None,
            open: true,
            draft: false,
            changed_files,
        }
    }

    fn file(path: &str, add: u32, patch: Option<&str>) -> PullFile {
        PullFile {
            path: path.into(),
            previous_path: None,
            status: FileStatus::Modified,
            additions: add,
            deletions: 0,
            patch: patch.map(String::from),
        }
    }

    #[test]
    fn github_files_become_a_change_with_unknown_content_counted() {
        let files = vec![
            file("src/a.rs", 1, Some("@@ -1 +1,2 @@\n a\n+b")),
            file("src/huge.rs", 90_000, None),
            file("logo.png", 0, None),
            file("src/bad.rs", 1, Some("@@ nonsense @@\n+x")),
        ];
        let c = change_from_pull(&pr(6), files, vec!["m".into()]);
        assert_eq!(c.files[0].hunks.len(), 1);
        assert!(!c.files[0].patch_truncated);
        assert!(c.files[1].patch_truncated);
        assert!(c.files[2].binary && !c.files[2].patch_truncated);
        assert!(c.files[3].patch_truncated);
        // two unreadable patches plus two files GitHub did not list
        assert_eq!(c.truncated_patches, 4);
        assert_eq!(c.labels, ["x"]);
    }

    #[test]
    fn the_example_config_drives_the_policy_and_per_service_thresholds() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploybot.yaml");
        let config = crate::config::load_shape(&path).unwrap();
        let policy = &config.risk.policy;
        assert_eq!(
            policy.classify("db/schema-changes/1.rb"),
            FactorKind::Migration,
            "extra_patterns apply"
        );
        let checkout = thresholds_for(&config, Some("checkout")).unwrap();
        assert_eq!(checkout.approval_at, 0.6);
        assert_eq!(checkout.canary_5_at, 0.6);
        let repo: RepoName = "Example-Org/Checkout".parse().unwrap();
        assert_eq!(thresholds_for_repo(&config, &repo), checkout);
        assert_eq!(thresholds_for(&config, None).unwrap().approval_at, 0.7);
        assert!(thresholds_for(&config, Some("nope")).is_err());
        let change = Change {
            files: vec![ChangedFile::new("README.md", FileStatus::Modified)],
            labels: vec!["hotfix".into()],
            ..Change::default()
        };
        let a = policy.assess(&change, &checkout);
        assert_eq!(
            a.recommended_strategy,
            deploybot_core::risk::Strategy::Canary25
        );
        assert!(a.requires_manual_approval);
    }

    #[test]
    fn managed_labels_are_only_ours() {
        assert!(is_managed_label("risk/high"));
        assert!(is_managed_label("Needs-Approval"));
        assert!(!is_managed_label("risk/override-low"));
        assert!(!is_managed_label("bug"));
    }
}
