//! `deploybot analyze`: run the judge on live Prometheus data.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {}

pub async fn run(_args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("live analysis is not built yet (issue 5)")
}
