//! `deploybot bench canary`: score the judges on a scenario directory.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the canary benchmark is not built yet (issue 5)")
}
