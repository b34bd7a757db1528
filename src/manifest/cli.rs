//! `deploybot manifest ...`: edit manifest files in place, or print the diff with `--dry-run`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Set a container image (kustomize `edit set image` semantics).
    SetImage,
}

pub async fn run(_cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("manifest editing is not built yet (issue 3)")
}
