//! `deploybot judge`: replay scenarios through the judge.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct JudgeArgs {}

pub async fn run(_args: JudgeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the canary judge is not built yet (issue 5)")
}
