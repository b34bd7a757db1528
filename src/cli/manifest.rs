//! `deploybot manifest ...`: edit manifest files in place, or print the diff with `--dry-run`.
//!
//! Every file is edited in memory first; nothing is written unless all of them succeed, and each
//! write is atomic (temporary file in the same directory, then rename). Exit codes: 0 something
//! changed (or would, with --dry-run), 3 nothing to change, 1 error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use deploybot_core::manifest::{
    Change, EditError, EditOptions, Edited, HelmImagePaths, ImageChange, MAX_BYTES,
};

/// Exit code when every file already had the target values.
pub const EXIT_UNCHANGED: u8 = 3;

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Set a container image (kustomize `edit set image` semantics)
    ///
    /// Matches by image name (registry and repository, without tag or digest) in the
    /// containers and initContainers of Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
    /// CronJob, Pod and Argo Rollout; in the images: list of a kustomization.yaml; and in Helm
    /// values files (values*.yaml: image.repository + image.tag unless --helm-* say otherwise).
    /// Files where the name does not occur are left alone as long as one file matched.
    ///
    /// Examples:
    ///   deploybot manifest set-image deploy.yaml ghcr.io/acme/shop:v1.4.2
    ///   deploybot manifest set-image kustomization.yaml ghcr.io/acme/shop=:v1.4.2
    ///   deploybot manifest set-image base/*.yaml nginx=registry.local:5000/nginx:1.27
    ///   deploybot manifest set-image k.yaml ghcr.io/acme/shop@sha256:<64 hex> --dry-run
    ///   deploybot manifest set-image chart/values-prod.yaml ghcr.io/acme/shop:v2 --helm-tag app.tag
    #[command(
        verbatim_doc_comment,
        override_usage = "deploybot manifest set-image [OPTIONS] FILE... IMAGE"
    )]
    SetImage(SetImageArgs),
    /// Give a canary backend W % of the traffic and the stable backend the rest
    ///
    /// Edits Gateway API HTTPRoute/GRPCRoute backendRefs[].weight (canary W, stable 100-W, so
    /// the relative shares give W %) and Istio VirtualService http[].route[].weight (sums to
    /// 100), in every rule that routes to the canary. BACKEND is a backendRef name, or an Istio
    /// destination host, subset, or host/subset. Without --stable the stable backend is the one
    /// other backend of the rule.
    ///
    /// Examples:
    ///   deploybot manifest set-weight route.yaml --canary foo-v2=25
    ///   deploybot manifest set-weight vs.yaml --canary v2=50 --stable v1 --dry-run
    #[command(verbatim_doc_comment)]
    SetWeight(SetWeightArgs),
    /// Split a fixed number of pods between a canary and a stable Deployment (no mesh)
    ///
    /// The canary gets round(TOTAL * W / 100) replicas, at least 1 while W > 0 and at most
    /// TOTAL - 1 while W < 100; the stable gets the rest.
    ///
    /// Example:
    ///   deploybot manifest set-replicas deploy/*.yaml --canary shop-canary=25 --stable shop --total 8
    #[command(verbatim_doc_comment)]
    SetReplicas(SetReplicasArgs),
    /// Time one image edit on a large generated file against a serializer round-trip.
    Bench(crate::cli::bench::manifest::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Print a unified diff instead of writing the files.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a value that would read as another type unquoted (tag 1.20, yes) double-quoted
    /// instead of refusing.
    #[arg(long)]
    pub quote: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetImageArgs {
    /// Manifest files, then the image: NAME=NEWNAME:TAG, NAME=:TAG, NAME:TAG, NAME@sha256:...
    #[arg(required = true, num_args = 2.., value_name = "FILE|IMAGE")]
    pub args: Vec<String>,
    /// Add an images: entry to a kustomization.yaml that does not list the name yet.
    #[arg(long)]
    pub add: bool,
    /// Helm values: dotted path of the repository [default: image.repository].
    #[arg(long, value_name = "KEY")]
    pub helm_repository: Option<String>,
    /// Helm values: dotted path of the tag [default: image.tag].
    #[arg(long, value_name = "KEY")]
    pub helm_tag: Option<String>,
    /// Helm values: dotted path of the digest (only for charts that have one).
    #[arg(long, value_name = "KEY")]
    pub helm_digest: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct SetWeightArgs {
    /// Route files (HTTPRoute, GRPCRoute, VirtualService).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The canary backend and its weight in percent, e.g. foo-v2=25.
    #[arg(long, value_name = "BACKEND=WEIGHT", value_parser = parse_backend_weight)]
    pub canary: (String, u8),
    /// The stable backend (default: the one other backend of each rule).
    #[arg(long, value_name = "BACKEND")]
    pub stable: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct SetReplicasArgs {
    /// Files holding the canary and the stable Deployment.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The canary Deployment and its weight in percent, e.g. shop-canary=25.
    #[arg(long, value_name = "DEPLOYMENT=WEIGHT", value_parser = parse_backend_weight)]
    pub canary: (String, u8),
    /// The stable Deployment.
    #[arg(long, value_name = "DEPLOYMENT")]
    pub stable: String,
    /// Pods shared between the two.
    #[arg(long, value_name = "N")]
    pub total: u32,
    #[command(flatten)]
    pub common: Common,
}

fn parse_backend_weight(s: &str) -> Result<(String, u8), String> {
    let (name, weight) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected BACKEND=WEIGHT, got {s:?}"))?;
    let weight: u8 = weight
        .parse()
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| format!("weight must be an integer 0..=100, got {weight:?}"))?;
    if name.is_empty() {
        return Err(format!("expected BACKEND=WEIGHT, got {s:?}"));
    }
    Ok((name.to_string(), weight))
}

pub async fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    let (files, change, options, common) = match cmd {
        ManifestCommand::Bench(args) => {
            crate::cli::bench::manifest::run(args)?;
            return Ok(ExitCode::SUCCESS);
        }
        ManifestCommand::SetImage(a) => {
            let mut args = a.args;
            let image = args.pop().expect("clap requires two values");
            let change: ImageChange = image.parse()?;
            let helm =
                a.helm_repository.is_some() || a.helm_tag.is_some() || a.helm_digest.is_some();
            let options = EditOptions {
                add_missing_kustomize_image: a.add,
                helm_values: helm.then(|| {
                    let d = HelmImagePaths::default();
                    HelmImagePaths {
                        repository: a.helm_repository.or(d.repository),
                        tag: a.helm_tag.unwrap_or(d.tag),
                        digest: a.helm_digest,
                    }
                }),
                quote_ambiguous: a.common.quote,
            };
            let files = args.into_iter().map(PathBuf::from).collect();
            (files, Change::SetImage(change), options, a.common)
        }
        ManifestCommand::SetWeight(a) => {
            let options = EditOptions {
                quote_ambiguous: a.common.quote,
                ..EditOptions::default()
            };
            let change = Change::SetWeight {
                canary: a.canary.0,
                weight: a.canary.1,
                stable: a.stable,
            };
            (a.files, change, options, a.common)
        }
        ManifestCommand::SetReplicas(a) => {
            let change = Change::SetReplicas {
                canary: a.canary.0,
                stable: a.stable,
                weight: a.canary.1,
                total: a.total,
            };
            (a.files, change, EditOptions::default(), a.common)
        }
    };
    edit_files(&files, &change, &options, common.dry_run)
}

/// Edits every file in memory, then writes (or diffs) them; nothing is written on any error.
fn edit_files(
    files: &[PathBuf],
    change: &Change,
    options: &EditOptions,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let mut edited: Vec<(&Path, String, Edited)> = Vec::new();
    let mut not_found = Vec::new();
    for file in files {
        // Nothing past the editor's limit is read.
        let text = crate::adapters::input::read_text(file, MAX_BYTES)
            .context("reading a manifest (no file was written)")?;
        match deploybot_core::manifest::apply(&file.to_string_lossy(), &text, change, options) {
            Ok(e) => edited.push((file, text, e)),
            // With several files, a file without the target is simply not one of its homes.
            Err(e @ EditError::NotFound { .. }) => not_found.push(e),
            Err(e) => return Err(e).context("editing manifests (no file was written)"),
        }
    }
    if edited.is_empty() {
        let all: Vec<String> = not_found.iter().map(ToString::to_string).collect();
        bail!("{}", all.join("\n"));
    }
    for e in &not_found {
        eprintln!("note: {e}");
    }
    let mut changed = 0;
    for (file, old, result) in &edited {
        if result.changes.is_empty() {
            eprintln!("{}: already at the target", file.display());
            continue;
        }
        changed += 1;
        for c in &result.changes {
            eprintln!(
                "{}:{}: {}: {:?} -> {:?}",
                file.display(),
                c.line,
                c.location,
                c.old,
                c.new
            );
        }
        if dry_run {
            // From the edit's own splices: linear in the file, however many lines changed.
            print!(
                "{}",
                deploybot_core::manifest::patch::unified(
                    &file.to_string_lossy(),
                    old,
                    &result.splices,
                    &result.text
                )
            );
        } else {
            write_atomically(file, &result.text)
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(if changed == 0 {
        ExitCode::from(EXIT_UNCHANGED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Replaces `path` with `text` so a reader sees the old file or the new one, never half of one.
/// Through a symlink, the file it points to is replaced and the link stays a link.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let path = target.as_path();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.deploybot-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::metadata(path)?.permissions())?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::parse_backend_weight;

    #[test]
    fn backend_weight_arguments() {
        assert_eq!(parse_backend_weight("foo-v2=25"), Ok(("foo-v2".into(), 25)));
        assert_eq!(parse_backend_weight("a=b=0"), Ok(("a=b".into(), 0)));
        assert!(parse_backend_weight("foo=101").is_err());
        assert!(parse_backend_weight("foo").is_err());
        assert!(parse_backend_weight("=5").is_err());
    }
}
