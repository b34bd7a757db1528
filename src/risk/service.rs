//! The risk service: runs an assessment end to end (policy, optional model, combination) for a
//! diff or a pull request. This is the imperative shell around the pure `policy` and `combine`.

use anyhow::Context;

use super::combine::{ModelOutcome, combine};
use super::{Assessment, Change, Policy, Thresholds};
use crate::config::Config;
use crate::llm::{LlmClient, RiskModel};

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
    let prompt = super::prompt::build(change, &floor, policy, max_prompt_tokens);
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

/// The configured model client, if any.
pub fn model_client(config: &Config) -> anyhow::Result<Option<LlmClient>> {
    LlmClient::from_config(&config.llm).context("setting up the llm client")
}

/// The thresholds of `service` (by name) over the global ones.
pub fn thresholds_for(config: &Config, service: Option<&str>) -> anyhow::Result<super::Thresholds> {
    let over = match service {
        Some(name) => {
            let s = config
                .services
                .iter()
                .find(|s| s.name == name)
                .with_context(|| format!("no service named {name:?} in the config"))?;
            s.risk.as_ref()
        }
        None => None,
    };
    Ok(config.risk.thresholds.resolve(over))
}

/// Assesses a unified diff.
pub async fn assess_diff(
    config: &Config,
    service: Option<&str>,
    diff: &str,
) -> anyhow::Result<Assessment> {
    let policy = Policy::new(&config.risk)?;
    let thresholds = thresholds_for(config, service)?;
    let change = super::diff::parse_unified_diff(diff)
        .context("parsing the diff")?
        .into_change();
    let client = model_client(config)?;
    Ok(assess_change(
        &policy,
        &thresholds,
        &change,
        client.as_ref().map(|c| c as &dyn RiskModel),
        config.llm.max_prompt_tokens,
    )
    .await)
}

/// `assess --repo --pr`.
pub async fn assess_pr_from_cli(
    _config: &Config,
    repo: &str,
    pr: u64,
    _publish: bool,
) -> anyhow::Result<Assessment> {
    anyhow::bail!("assessing {repo}#{pr}: the GitHub port is not built yet")
}
