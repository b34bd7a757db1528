//! `deploybot bench canary`: scores the configured judge and the three reference judges on a
//! directory of scenarios (and on a freshly generated suite the judge never saw), per family and
//! overall, prints the trade-off curves behind the defaults and the cost of one decision; and the
//! same on whole rollouts (`bench::rollouts`: a directory of rollout files and generated rollout
//! suites, the references replayed step after step).
//!
//! Scoring follows `../shared/canary-bench/README.md`: the scenario is fed step by step, the
//! first rollback or promote is final, none by the last step counts as inconclusive. Only this scorer
//! reads a scenario's answer key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::adapters::scenario;
use deploybot_core::canary::generate::{self, is_gross, is_subtle};
use deploybot_core::canary::scenario::{Scenario, Truth};
use deploybot_core::canary::settings::{JudgeConfig, JudgeMethod};
use deploybot_core::canary::{Verdict, judge, replay};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Directory of scenario files (`*.json`). Without it only the generated suite is scored.
    pub dir: Option<PathBuf>,
    /// Judge settings (a deploybot config or a bare judge section); defaults without it.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Also score a generated suite with this many scenarios per family (0: none).
    #[arg(long, default_value_t = 20)]
    pub generate: usize,
    /// Seed of the generated suite.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Print the trade-off curves (tolerance, alpha, soak time).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub curves: bool,
    /// Directory of whole-rollout files (`deploybot-canary-rollout/1`, e.g.
    /// `fixtures/canary-bench/rollouts`), replayed step after step.
    #[arg(long, value_name = "DIR")]
    pub rollouts: Option<PathBuf>,
    /// Also score generated rollout suites with this many rollouts per family (0: none).
    #[arg(long, default_value_t = 10)]
    pub generate_rollouts: usize,
    /// Seed of a generated rollout suite (repeat for several suites).
    #[arg(long = "rollout-seed", default_values_t = [2026])]
    pub rollout_seeds: Vec<u64>,
}

/// One scored scenario.
#[derive(Debug, Clone)]
pub struct Case {
    pub scenario: Scenario,
    pub family: String,
    pub truth: Truth,
    pub onset: usize,
}

/// The `*.json` files of a directory of `what` (for the error), sorted by name.
pub fn json_files(dir: &Path, what: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {what} directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads every `*.json` of a directory with its answer key, sorted by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Case>> {
    json_files(dir, "scenario")?
        .iter()
        .map(|p| {
            let scenario = scenario::load(p)?;
            let labels = scenario::load_labels(p)?;
            Ok(Case {
                scenario,
                family: labels.family,
                truth: labels.truth,
                onset: labels.effect.and_then(|e| e.onset_step).unwrap_or(0),
            })
        })
        .collect()
}

/// The generated suite as cases.
pub fn generated(per_family: usize, seed: u64) -> Vec<Case> {
    generate::suite(per_family, seed)
        .into_iter()
        .map(|g| Case {
            scenario: g.scenario,
            family: g.family,
            truth: g.truth,
            onset: g.onset,
        })
        .collect()
}

/// Counts of one judge over a set of cases.
#[derive(Debug, Clone, Default)]
pub struct Score {
    pub healthy: usize,
    pub regressions: usize,
    pub unverifiable: usize,
    pub false_rollbacks: usize,
    pub healthy_promoted: usize,
    pub detected: usize,
    pub regressions_promoted: usize,
    pub unverifiable_promoted: usize,
    pub gross: usize,
    pub gross_detected: usize,
    pub subtle: usize,
    pub subtle_detected: usize,
    pub steps_to_rollback: Vec<usize>,
    pub steps_to_promote: Vec<usize>,
    /// Steps from the onset of the regression to its rollback, gross regressions only.
    pub gross_delay: Vec<usize>,
}

impl Score {
    fn add(&mut self, case: &Case, verdict: &Verdict, step: usize) {
        let (rolled, promoted) = (
            matches!(verdict, Verdict::Rollback { .. }),
            matches!(verdict, Verdict::Promote),
        );
        match case.truth {
            Truth::Promote => {
                self.healthy += 1;
                self.false_rollbacks += rolled as usize;
                self.healthy_promoted += promoted as usize;
                if promoted {
                    self.steps_to_promote.push(step);
                }
            }
            Truth::Rollback => {
                self.regressions += 1;
                self.detected += rolled as usize;
                self.regressions_promoted += promoted as usize;
                if rolled {
                    self.steps_to_rollback.push(step);
                }
                if is_gross(&case.family) {
                    self.gross += 1;
                    self.gross_detected += rolled as usize;
                    if rolled {
                        self.gross_delay.push(step.saturating_sub(case.onset));
                    }
                }
                if is_subtle(&case.family) {
                    self.subtle += 1;
                    self.subtle_detected += rolled as usize;
                }
            }
            Truth::Unverifiable => {
                self.unverifiable += 1;
                self.unverifiable_promoted += promoted as usize;
            }
        }
    }

    pub fn false_rollback_rate(&self) -> f64 {
        ratio(self.false_rollbacks, self.healthy)
    }
    pub fn detection_rate(&self) -> f64 {
        ratio(self.detected, self.regressions)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Median of a list of steps (`None` when empty).
pub fn median(v: &[usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2] as f64
    } else {
        (s[n / 2 - 1] + s[n / 2]) as f64 / 2.0
    })
}

/// Scores one judge: overall and per family.
pub fn score(cases: &[Case], config: &JudgeConfig) -> (Score, BTreeMap<String, Score>) {
    let mut all = Score::default();
    let mut families: BTreeMap<String, Score> = BTreeMap::new();
    for case in cases {
        let d = replay(&case.scenario.window, config);
        all.add(case, &d.verdict, d.interval);
        families
            .entry(case.family.clone())
            .or_default()
            .add(case, &d.verdict, d.interval);
    }
    (all, families)
}

fn med(v: &[usize]) -> String {
    median(v)
        .map(|m| format!("{m}"))
        .unwrap_or_else(|| "-".into())
}

fn pct(a: usize, b: usize) -> String {
    format!("{:.1} %", 100.0 * ratio(a, b))
}

fn config_for(base: &JudgeConfig, method: JudgeMethod) -> JudgeConfig {
    JudgeConfig {
        method,
        ..base.clone()
    }
}

fn overall_table(cases: &[Case], base: &JudgeConfig) -> String {
    let mut out = String::from(
        "| judge | false rollbacks | detected | gross detected | subtle detected | regressions promoted | unverifiable promoted | healthy promoted | median steps to rollback / promote | median steps onset->rollback (gross) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut methods = vec![base.method];
    methods.extend(JudgeMethod::ALL.iter().filter(|m| **m != base.method));
    for m in methods {
        let (s, _) = score(cases, &config_for(base, m));
        out += &format!(
            "| {}{} | {} ({}/{}) | {} | {}/{} | {}/{} | {}/{} | {}/{} | {}/{} | {} / {} | {} |\n",
            m.name(),
            if m == base.method {
                " (configured)"
            } else {
                ""
            },
            pct(s.false_rollbacks, s.healthy),
            s.false_rollbacks,
            s.healthy,
            pct(s.detected, s.regressions),
            s.gross_detected,
            s.gross,
            s.subtle_detected,
            s.subtle,
            s.regressions_promoted,
            s.regressions,
            s.unverifiable_promoted,
            s.unverifiable,
            s.healthy_promoted,
            s.healthy,
            med(&s.steps_to_rollback),
            med(&s.steps_to_promote),
            med(&s.gross_delay),
        );
    }
    out
}

fn family_table(cases: &[Case], base: &JudgeConfig) -> String {
    let mut methods = vec![base.method];
    methods.extend(JudgeMethod::ALL.iter().filter(|m| **m != base.method));
    let per: Vec<BTreeMap<String, Score>> = methods
        .iter()
        .map(|m| score(cases, &config_for(base, *m)).1)
        .collect();
    let mut out = String::from("| family | n |");
    for m in &methods {
        out += &format!(
            " {} rollback/promote/inconclusive (median step) |",
            m.name()
        );
    }
    out += "\n| --- | --- |";
    out += &" --- |".repeat(methods.len());
    out += "\n";
    for (family, first) in &per[0] {
        let n = first.healthy + first.regressions + first.unverifiable;
        out += &format!("| {family} | {n} |");
        for fams in &per {
            let s = &fams[family];
            let rolled = s.false_rollbacks + s.detected;
            let promoted = s.healthy_promoted + s.regressions_promoted + s.unverifiable_promoted;
            let held = n - rolled - promoted;
            let steps: Vec<usize> = s
                .steps_to_rollback
                .iter()
                .chain(&s.steps_to_promote)
                .copied()
                .collect();
            out += &format!(" {rolled}/{promoted}/{held} ({}) |", med(&steps));
        }
        out += "\n";
    }
    out
}

/// The trade-off curves: one knob at a time around the configured judge.
fn curves(cases: &[Case], base: &JudgeConfig) -> String {
    let mut base = base.clone();
    base.method = JudgeMethod::Sequential;
    let mut out = String::from(
        "| setting | false rollbacks | detected | subtle detected | regressions promoted | healthy promoted | median steps to promote |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut row = |label: String, cfg: &JudgeConfig| {
        let (s, _) = score(cases, cfg);
        out += &format!(
            "| {label} | {} | {} | {}/{} | {}/{} | {}/{} | {} |\n",
            pct(s.false_rollbacks, s.healthy),
            pct(s.detected, s.regressions),
            s.subtle_detected,
            s.subtle,
            s.regressions_promoted,
            s.regressions,
            s.healthy_promoted,
            s.healthy,
            med(&s.steps_to_promote),
        );
    };
    for tol in [1.1, 1.2, 1.3, 1.5, 2.0] {
        let mut c = base.clone();
        c.errors.tolerance = tol;
        row(format!("errors.tolerance {tol}"), &c);
    }
    for abs in [0.0, 0.0005, 0.001, 0.002] {
        let mut c = base.clone();
        c.errors.absolute_tolerance = abs;
        row(format!("errors.absolute_tolerance {abs}"), &c);
    }
    for margin in [1.0, 1.05, 1.1, 1.15, 1.25] {
        let mut c = base.clone();
        c.errors.rollback_margin = margin;
        row(format!("errors.rollback_margin {margin}"), &c);
    }
    for prior in [0.4, 0.6, 0.8, 1.0, 1.5] {
        let mut c = base.clone();
        c.errors.dispersion_prior = prior;
        row(format!("errors.dispersion_prior {prior}"), &c);
    }
    for tol in [1.05, 1.1, 1.2, 1.3] {
        let mut c = base.clone();
        c.latency.tolerance = tol;
        row(format!("latency.tolerance {tol}"), &c);
    }
    for alpha in [0.001, 0.005, 0.01, 0.05] {
        let mut c = base.clone();
        c.alpha = alpha;
        row(format!("alpha {alpha}"), &c);
    }
    for pa in [0.01, 0.05, 0.1, 0.2] {
        let mut c = base.clone();
        c.promote_alpha = pa;
        row(format!("promote_alpha {pa}"), &c);
    }
    for min in [4, 6, 8, 10, 12] {
        let mut c = base.clone();
        c.min_intervals = min;
        row(format!("min_intervals {min}"), &c);
    }
    out
}

/// Microseconds per decision of each judge, over every prefix of every case, and the ratio to
/// the judge of the article deploybot started from (docs/decisions.md names it), measured in
/// the same run.
fn cost(cases: &[Case], base: &JudgeConfig) -> String {
    let mut out = String::from(
        "| judge | decisions | µs per decision | vs article-mann-whitney |\n| --- | --- | --- | --- |\n",
    );
    let mut timings = Vec::new();
    for m in JudgeMethod::ALL {
        let cfg = config_for(base, m);
        let mut decisions = 0u64;
        let mut sink = 0usize;
        let start = Instant::now();
        for _ in 0..3 {
            for case in cases {
                for t in 1..=case.scenario.window.intervals.len() {
                    let d = judge(&case.scenario.window, t, &cfg);
                    sink += d.interval;
                    decisions += 1;
                }
            }
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / decisions.max(1) as f64;
        std::hint::black_box(sink);
        timings.push((m, decisions, us));
    }
    let article = timings
        .iter()
        .find(|t| t.0 == JudgeMethod::ArticleMannWhitney)
        .map(|t| t.2)
        .unwrap_or(1.0);
    for (m, n, us) in timings {
        out += &format!("| {} | {n} | {us:.2} | {:.2}x |\n", m.name(), us / article);
    }
    out
}

fn report(title: &str, cases: &[Case], config: &JudgeConfig, curves_too: bool) -> String {
    let mut out = format!("## {title}: {} scenarios\n\n", cases.len());
    out += &overall_table(cases, config);
    out += "\nPer family (rollback/promote/inconclusive, median decision step):\n\n";
    out += &family_table(cases, config);
    if curves_too {
        out += "\nTrade-offs of the sequential judge (one setting varied, the rest as configured):\n\n";
        out += &curves(cases, config);
    }
    out += "\nCost per decision (whole window re-judged each interval):\n\n";
    out += &cost(cases, config);
    out
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(p) => crate::cli::judge::load_judge_config(p, None)?,
        None => JudgeConfig::default(),
    };
    if let Some(dir) = &args.dir {
        let cases = load_dir(dir)?;
        anyhow::ensure!(
            !cases.is_empty(),
            "no scenarios (*.json) in {}",
            dir.display()
        );
        println!(
            "{}",
            report(&dir.display().to_string(), &cases, &config, args.curves)
        );
    }
    if args.generate > 0 {
        let cases = generated(args.generate, args.seed);
        let title = format!(
            "generated suite (seed {}, {} per family)",
            args.seed, args.generate
        );
        println!("{}", report(&title, &cases, &config, args.curves));
    }
    if let Some(dir) = &args.rollouts {
        let cases = super::rollouts::load_dir(dir)?;
        anyhow::ensure!(
            !cases.is_empty(),
            "no rollouts (*.json) in {}",
            dir.display()
        );
        let title = format!("rollouts {}", dir.display());
        println!(
            "{}",
            super::rollouts::report(&title, &cases, &config, args.curves)
        );
    }
    if args.generate_rollouts > 0 {
        for seed in &args.rollout_seeds {
            let cases = super::rollouts::generated(args.generate_rollouts, *seed);
            let title = format!(
                "generated rollouts (seed {seed}, {} per family)",
                args.generate_rollouts
            );
            println!(
                "{}",
                super::rollouts::report(&title, &cases, &config, args.curves)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
