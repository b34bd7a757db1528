//! `deploybot assess`: assess a unified diff or a pull request.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AssessArgs {}

pub async fn run(_args: AssessArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("risk assessment is not built yet (issue 4)")
}
