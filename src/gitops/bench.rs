//! `deploybot bench git`: the git2 writer against the git CLI.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the git benchmark is not built yet (issue 3)")
}
