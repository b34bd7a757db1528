//! The rollout half of `deploybot bench canary`: whole rollouts replayed step after step
//! (`deploybot_core::canary::replay_rollout`) by the configured judge and by the three reference
//! judges applied to each step alone, scored with the columns of
//! `../shared/canary-bench/ROLLOUTS.md`, overall and per family, on a directory of rollout files
//! and on generated rollout suites the judge was not tuned on. Only this scorer reads a rollout's
//! answer key.

use std::collections::BTreeMap;
use std::path::Path;

use crate::adapters::scenario;
use deploybot_core::canary::generate::{self, is_gross};
use deploybot_core::canary::scenario::{RolloutScenario, Truth};
use deploybot_core::canary::settings::{JudgeConfig, JudgeMethod};
use deploybot_core::canary::{RolloutOutcome, RolloutReplay, replay_rollout};

/// One scored rollout.
#[derive(Debug, Clone)]
pub struct RolloutCase {
    pub scenario: RolloutScenario,
    pub family: String,
    pub truth: Truth,
}

/// Reads every `*.json` of a directory of rollout files with its answer key, sorted by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<RolloutCase>> {
    super::canary::json_files(dir, "rollout")?
        .iter()
        .map(|p| {
            let labels = scenario::load_rollout_labels(p)?;
            Ok(RolloutCase {
                scenario: scenario::load_rollout(p)?,
                family: labels.family,
                truth: labels.truth,
            })
        })
        .collect()
}

/// A generated rollout suite as cases.
pub fn generated(per_family: usize, seed: u64) -> Vec<RolloutCase> {
    generate::rollout_suite(per_family, seed)
        .into_iter()
        .map(|g| RolloutCase {
            scenario: g.scenario,
            family: g.family,
            truth: g.truth,
        })
        .collect()
}

/// Replays one case with a judge.
pub fn replay(case: &RolloutCase, config: &JudgeConfig) -> RolloutReplay {
    replay_rollout(&case.scenario.history, &case.scenario.steps, config)
}

/// Canary traffic share times minutes until the outcome, in %-minutes. A regression that
/// completes ends up serving everyone: it is charged 100 % for one whole step's minutes (of all
/// the readings of ROLLOUTS.md's rule tried, the one nearest its published mean exposures; its
/// other columns are reproduced exactly, see docs/canary.md).
pub fn exposure(case: &RolloutCase, r: &RolloutReplay) -> f64 {
    if r.outcome == RolloutOutcome::Complete && case.truth == Truth::Rollback {
        let step_minutes = case.scenario.steps.last().map_or(0, |s| s.intervals.len());
        return 100.0 * step_minutes as f64;
    }
    r.exposure.iter().map(|(w, t)| w * 100.0 * *t as f64).sum()
}

/// The counts of one judge over a set of rollouts (the columns of ROLLOUTS.md).
#[derive(Debug, Clone, Default)]
pub struct RolloutScore {
    pub healthy: usize,
    pub regressions: usize,
    pub unverifiable: usize,
    pub healthy_completed: usize,
    pub false_rollbacks: usize,
    pub regressions_completed: usize,
    pub regressions_rolled_back: usize,
    pub gross: usize,
    pub gross_rolled_back: usize,
    pub unverifiable_completed: usize,
    /// %-minutes until the rollback of each gross regression rolled back.
    pub gross_exposure: Vec<f64>,
    /// %-minutes of every regression, whatever its outcome.
    pub regression_exposure: Vec<f64>,
    /// Minutes until each healthy rollout completed.
    pub minutes_to_complete: Vec<usize>,
    /// Outcomes by name, for the per-family table.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Steps (1-based) at which the outcomes happened.
    pub steps: Vec<usize>,
}

impl RolloutScore {
    fn add(&mut self, case: &RolloutCase, r: &RolloutReplay) {
        let completed = r.outcome == RolloutOutcome::Complete;
        let rolled = r.outcome == RolloutOutcome::Rollback;
        *self.outcomes.entry(r.outcome.name()).or_default() += 1;
        self.steps.push(r.step);
        match case.truth {
            Truth::Promote => {
                self.healthy += 1;
                self.healthy_completed += completed as usize;
                self.false_rollbacks += rolled as usize;
                if completed {
                    self.minutes_to_complete.push(r.minutes);
                }
            }
            Truth::Rollback => {
                self.regressions += 1;
                self.regressions_completed += completed as usize;
                self.regressions_rolled_back += rolled as usize;
                let e = exposure(case, r);
                self.regression_exposure.push(e);
                if is_gross(&case.family) {
                    self.gross += 1;
                    self.gross_rolled_back += rolled as usize;
                    if rolled {
                        self.gross_exposure.push(e);
                    }
                }
            }
            Truth::Unverifiable => {
                self.unverifiable += 1;
                self.unverifiable_completed += completed as usize;
            }
        }
    }

    pub fn median_gross_exposure(&self) -> Option<f64> {
        median(&self.gross_exposure)
    }

    pub fn median_minutes_to_complete(&self) -> Option<f64> {
        median(
            &self
                .minutes_to_complete
                .iter()
                .map(|m| *m as f64)
                .collect::<Vec<_>>(),
        )
    }
}

/// Median of a list (`None` when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Scores one judge over `cases`: overall and per family.
pub fn score(
    cases: &[RolloutCase],
    config: &JudgeConfig,
) -> (RolloutScore, BTreeMap<String, RolloutScore>) {
    let mut all = RolloutScore::default();
    let mut families: BTreeMap<String, RolloutScore> = BTreeMap::new();
    for case in cases {
        let r = replay(case, config);
        all.add(case, &r);
        families
            .entry(case.family.clone())
            .or_default()
            .add(case, &r);
    }
    (all, families)
}

fn num(v: Option<f64>) -> String {
    v.map(|m| format!("{m:.0}")).unwrap_or_else(|| "-".into())
}

fn methods(base: &JudgeConfig) -> Vec<JudgeMethod> {
    let mut methods = vec![base.method];
    methods.extend(JudgeMethod::ALL.iter().filter(|m| **m != base.method));
    methods
}

fn with_method(base: &JudgeConfig, method: JudgeMethod) -> JudgeConfig {
    JudgeConfig {
        method,
        ..base.clone()
    }
}

/// One row of the ROLLOUTS.md columns.
pub fn row(label: &str, s: &RolloutScore) -> String {
    let mean = if s.regression_exposure.is_empty() {
        "-".to_string()
    } else {
        format!(
            "{:.0}",
            s.regression_exposure.iter().sum::<f64>() / s.regression_exposure.len() as f64
        )
    };
    format!(
        "| {label} | {}/{} | {}/{} | {}/{} | {}/{} | {} %-min | {mean} %-min | {}/{} | {} |\n",
        s.healthy_completed,
        s.healthy,
        s.false_rollbacks,
        s.healthy,
        s.regressions_completed,
        s.regressions,
        s.gross_rolled_back,
        s.gross,
        num(s.median_gross_exposure()),
        s.unverifiable_completed,
        s.unverifiable,
        num(s.median_minutes_to_complete()),
    )
}

const HEADER: &str = "| judge | healthy completed | false rollbacks | regressions completed | gross rolled back | median gross exposure | mean regression exposure | unverifiable completed | median minutes to complete |\n\
                      | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";

/// The same rollouts without the stable version's history: what the history buys.
pub fn without_history(cases: &[RolloutCase]) -> Vec<RolloutCase> {
    cases
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.scenario.history.intervals.clear();
            c
        })
        .collect()
}

fn overall_table(cases: &[RolloutCase], base: &JudgeConfig) -> String {
    let mut out = String::from(HEADER);
    for m in methods(base) {
        let (s, _) = score(cases, &with_method(base, m));
        let label = if m == base.method {
            format!("{} (configured)", m.name())
        } else {
            format!("{} step after step", m.name())
        };
        out += &row(&label, &s);
        if m == JudgeMethod::Sequential {
            let (s, _) = score(&without_history(cases), &with_method(base, m));
            out += &row("sequential, history withheld", &s);
        }
    }
    out
}

fn family_table(cases: &[RolloutCase], base: &JudgeConfig) -> String {
    let methods = methods(base);
    let per: Vec<BTreeMap<String, RolloutScore>> = methods
        .iter()
        .map(|m| score(cases, &with_method(base, *m)).1)
        .collect();
    let mut out = String::from("| family | n |");
    for m in &methods {
        out += &format!(" {} complete/rollback/paused (median step) |", m.name());
    }
    out += "\n| --- | --- |";
    out += &" --- |".repeat(methods.len());
    out += "\n";
    for (family, first) in &per[0] {
        let n = first.healthy + first.regressions + first.unverifiable;
        out += &format!("| {family} | {n} |");
        for fams in &per {
            let s = &fams[family];
            let count = |o: &str| s.outcomes.get(o).copied().unwrap_or(0);
            let steps: Vec<f64> = s.steps.iter().map(|k| *k as f64).collect();
            out += &format!(
                " {}/{}/{} ({}) |",
                count("complete"),
                count("rollback"),
                count("paused"),
                median(&steps).map_or("-".into(), |m| format!("{m}"))
            );
        }
        out += "\n";
    }
    out
}

/// The rollout-level trade-offs: the settings that decide intermediate and last promotions,
/// one at a time around the configured judge.
fn curves(cases: &[RolloutCase], base: &JudgeConfig) -> String {
    let mut base = base.clone();
    base.method = JudgeMethod::Sequential;
    let mut out = String::from(HEADER);
    let mut add = |label: String, cfg: &JudgeConfig| {
        out += &row(&label, &score(cases, cfg).0);
    };
    for w in [0.0, 10.0, 20.0, 40.0, 80.0] {
        let mut c = base.clone();
        c.history_weight = w;
        add(format!("history_weight {w}"), &c);
    }
    for g in [1.5, 2.0, 3.0] {
        let mut c = base.clone();
        c.errors.gross_tolerance = g;
        add(format!("errors.gross_tolerance {g}"), &c);
    }
    for g in [0.002, 0.005, 0.01] {
        let mut c = base.clone();
        c.errors.gross_absolute_tolerance = g;
        add(format!("errors.gross_absolute_tolerance {g}"), &c);
    }
    for g in [1.2, 1.4, 1.6] {
        let mut c = base.clone();
        c.latency.gross_tolerance = g;
        add(format!("latency.gross_tolerance {g}"), &c);
    }
    for tol in [1.2, 1.3, 1.5] {
        let mut c = base.clone();
        c.errors.tolerance = tol;
        add(format!("errors.tolerance {tol}"), &c);
    }
    for pa in [0.01, 0.05, 0.1] {
        let mut c = base.clone();
        c.promote_alpha = pa;
        add(format!("promote_alpha {pa}"), &c);
    }
    for min in [3, 6, 10] {
        let mut c = base.clone();
        c.min_intervals = min;
        add(format!("min_intervals {min}"), &c);
    }
    out
}

/// The rollout report of one suite.
pub fn report(
    title: &str,
    cases: &[RolloutCase],
    config: &JudgeConfig,
    curves_too: bool,
) -> String {
    let mut out = format!("## {title}: {} rollouts\n\n", cases.len());
    out += &overall_table(cases, config);
    out += "\nPer family (complete/rollback/paused, median step of the outcome):\n\n";
    out += &family_table(cases, config);
    if curves_too {
        out += "\nTrade-offs of the sequential judge on whole rollouts (one setting varied, the rest as configured):\n\n";
        out += &curves(cases, config);
    }
    out
}
