//! The risk service: runs an assessment end to end (policy, optional model, combination) for a
//! diff or a pull request. This is the imperative shell around the pure `policy` and `combine`.

use anyhow::Context;

use super::{Assessment, Policy};
use crate::config::Config;

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
    Ok(policy.assess(&change, &thresholds))
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
