//! `deploybot bench risk`: what one assessment costs without the model (parse, policy, redacted
//! and budgeted prompt), as ratios to a baseline measured in the same run: one pass that counts
//! the `+`/`-` lines of the same diff, the least any diff reader must do.
//!
//! It prints numbers; it asserts nothing (performance is never asserted in tests).

use std::fmt::Write as _;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use deploybot_core::risk::{Policy, Thresholds};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Diff to measure; without it a synthetic diff of --files files is generated.
    #[arg(long)]
    pub diff: Option<std::path::PathBuf>,
    /// Files in the synthetic diff (each with 4 hunks of 12 lines).
    #[arg(long, default_value_t = 400)]
    pub files: usize,
    /// Timed iterations per measurement (after one warm-up).
    #[arg(long, default_value_t = 20)]
    pub iterations: u32,
}

/// A deterministic diff: application code, migrations, manifests, docs and tests, with a few
/// secrets for the redaction pass to find.
pub fn synthetic_diff(files: usize) -> String {
    let mut s = String::new();
    for i in 0..files {
        let path = match i % 5 {
            0 => format!("src/module_{i}/handler.rs"),
            1 => format!("migrations/{i:04}_change.sql"),
            2 => format!("deploy/k8s/service-{i}.yaml"),
            3 => format!("docs/page-{i}.md"),
            _ => format!("tests/case_{i}.rs"),
        };
        let _ = writeln!(
            s,
            "diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}"
        );
        for h in 0..4 {
            let start = 1 + h * 40;
            let _ = writeln!(s, "@@ -{start},10 +{start},12 @@ fn section_{h}()");
            for l in 0..4 {
                let _ = writeln!(s, " let context_{l} = compute({l}, {h});");
            }
            let _ = writeln!(s, "-let old_value = legacy_lookup(key, {h});");
            let _ = writeln!(s, "-let password = \"hunter{i}{h}\";");
            let _ = writeln!(s, "+let new_value = lookup(key, {h}).unwrap_or_default();");
            let _ = writeln!(s, "+let token = env(\"TOKEN_{h}\");");
            let _ = writeln!(s, "+audit(\"changed section {h} of file {i}\");");
            let _ = writeln!(s, "+metrics::counter(\"section_{h}\").increment(1);");
            for l in 0..4 {
                let _ = writeln!(s, " let tail_{l} = finish({l});");
            }
        }
    }
    s
}

fn time<T>(iterations: u32, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(f());
    }
    start.elapsed() / iterations.max(1)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let text = match &args.diff {
        Some(p) => String::from_utf8_lossy(
            &std::fs::read(p).with_context(|| format!("reading the diff {}", p.display()))?,
        )
        .into_owned(),
        None => synthetic_diff(args.files),
    };
    let n = args.iterations.max(1);
    let policy = Policy::default();
    let thresholds = Thresholds::default();
    let parsed =
        deploybot_core::risk::diff::parse_unified_diff(&text).context("parsing the diff")?;
    let change = parsed.into_change();
    let floor = policy.assess(&change, &thresholds);

    let baseline = time(n, || {
        text.lines()
            .filter(|l| l.starts_with('+') || l.starts_with('-'))
            .count()
    });
    let parse = time(n, || {
        deploybot_core::risk::diff::parse_unified_diff(&text).map(|d| d.files.len())
    });
    let assess = time(n, || policy.assess(&change, &thresholds).risk_score);
    let prompt = time(n, || {
        deploybot_core::risk::prompt::build(&change, &floor, &policy, 12_000)
            .user
            .len()
    });

    let mb = text.len() as f64 / 1e6;
    println!(
        "risk bench: {} bytes, {} files, {} hunks, {n} iterations each",
        text.len(),
        change.files.len(),
        change.files.iter().map(|f| f.hunks.len()).sum::<usize>()
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "step", "per run", "MB/s", "x baseline"
    );
    for (name, d) in [
        ("baseline: count +/- lines", baseline),
        ("parse unified diff", parse),
        ("policy (classify + score)", assess),
        ("prompt (redact + budget)", prompt),
    ] {
        let secs = d.as_secs_f64().max(1e-9);
        println!(
            "{name:<34} {:>12?} {:>10.1} {:>10.2}",
            d,
            mb / secs,
            secs / baseline.as_secs_f64().max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_diff_parses_into_every_category() {
        let d = deploybot_core::risk::diff::parse_unified_diff(&synthetic_diff(10)).unwrap();
        assert_eq!(d.files.len(), 10);
        assert!(
            d.files
                .iter()
                .all(|f| f.hunks.len() == 4 && !f.patch_truncated)
        );
        let a = Policy::default().assess(&d.into_change(), &Thresholds::default());
        assert_eq!(a.risk_factors.len(), 5, "{a:#?}");
    }
}
