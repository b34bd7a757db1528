//! A generator of fresh canary scenarios of the same families as `../shared/canary-bench`, so the
//! judge is measured on data it was never tuned on. It models what the shared suite shows:
//! Poisson traffic (flat, bursty or ramping, shared by both tracks), error rates that wobble
//! multiplicatively from interval to interval on each track independently (gamma, squared CV
//! 0.05-0.8), log-normal latency bucketed into the Prometheus histogram with load-driven shifts
//! shared by both tracks, and the injected regressions (error ratio, latency ratio, heavy tail,
//! slow leak, late onset) or missing data. Plain seeded sampling; no external distributions crate.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::sample::{Interval, TrackSample, Window};
use super::scenario::{RolloutScenario, Scenario, Truth};

/// The families generated, with their truth.
pub const FAMILIES: &[(&str, Truth)] = &[
    ("healthy-flat", Truth::Promote),
    ("healthy-bursty", Truth::Promote),
    ("healthy-ramp", Truth::Promote),
    ("healthy-low-traffic", Truth::Promote),
    ("healthy-high-traffic", Truth::Promote),
    ("healthy-gaps", Truth::Promote),
    ("errors-x1.5", Truth::Rollback),
    ("errors-x2.0", Truth::Rollback),
    ("errors-x5.0", Truth::Rollback),
    ("errors-x20.0", Truth::Rollback),
    ("errors-x3-low-traffic", Truth::Rollback),
    ("errors-x2-bursty", Truth::Rollback),
    ("errors-x5-late-onset", Truth::Rollback),
    ("latency-x1.15", Truth::Rollback),
    ("latency-x1.3", Truth::Rollback),
    ("latency-x2.0", Truth::Rollback),
    ("latency-tail", Truth::Rollback),
    ("latency-leak", Truth::Rollback),
    ("canary-no-traffic", Truth::Unverifiable),
    ("canary-metrics-missing", Truth::Unverifiable),
    ("baseline-metrics-missing", Truth::Unverifiable),
];

/// Families whose regression the goals call gross (all must be rolled back, quickly).
pub fn is_gross(family: &str) -> bool {
    matches!(
        family,
        "errors-x2.0"
            | "errors-x5.0"
            | "errors-x20.0"
            | "errors-x3-low-traffic"
            | "errors-x2-bursty"
            | "errors-x5-late-onset"
            | "errors-x5-later-step"
            | "errors-x5-second-step"
            | "latency-x1.3"
            | "latency-x2.0"
            | "latency-tail"
            | "latency-leak"
    )
}

/// Families whose regression the goals call subtle.
pub fn is_subtle(family: &str) -> bool {
    matches!(family, "errors-x1.5" | "latency-x1.15")
}

/// A generated scenario with its answer key.
#[derive(Debug, Clone)]
pub struct Generated {
    pub scenario: Scenario,
    pub family: String,
    pub truth: Truth,
    /// The (0-based) step at which the regression starts.
    pub onset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Flat,
    Bursty,
    Ramp,
}

struct Params {
    rps: f64,
    load: Load,
    error_ratio: f64,
    latency_ratio: f64,
    tail_fraction: f64,
    tail_multiplier: f64,
    drift_per_step: f64,
    onset: usize,
    no_traffic: bool,
    canary_missing: bool,
    baseline_missing: bool,
    gaps: f64,
    /// The canary's share of the traffic relative to its weight (broken routing below 1).
    share_factor: f64,
}

impl Params {
    fn healthy() -> Params {
        Params {
            rps: 200.0,
            load: Load::Flat,
            error_ratio: 1.0,
            latency_ratio: 1.0,
            tail_fraction: 0.0,
            tail_multiplier: 1.0,
            drift_per_step: 0.0,
            onset: 0,
            no_traffic: false,
            canary_missing: false,
            baseline_missing: false,
            gaps: 0.0,
            share_factor: 1.0,
        }
    }
}

pub const LATENCY_BUCKETS_LE: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const STEPS: usize = 30;

/// `per_family` scenarios of every family, reproducible from `seed`.
pub fn suite(per_family: usize, seed: u64) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (family, truth) in FAMILIES {
        for i in 0..per_family {
            out.push(scenario(family, *truth, i, &mut rng));
        }
    }
    out
}

/// Sets the parameters a family changes; late onsets draw their onset interval from `rng`.
fn family_params(family: &str, rng: &mut StdRng) -> Params {
    let mut p = Params::healthy();
    match family {
        "healthy-bursty" => p.load = Load::Bursty,
        "healthy-ramp" => p.load = Load::Ramp,
        "healthy-low-traffic" => p.rps = 20.0,
        "healthy-high-traffic" => p.rps = 2000.0,
        "healthy-gaps" => p.gaps = 0.1,
        "errors-x1.5" => p.error_ratio = 1.5,
        "errors-x2.0" => p.error_ratio = 2.0,
        "errors-x5.0" | "errors-x5-later-step" => p.error_ratio = 5.0,
        "errors-x20.0" => p.error_ratio = 20.0,
        "errors-x3-low-traffic" => {
            p.error_ratio = 3.0;
            p.rps = 20.0;
        }
        "errors-x2-bursty" => {
            p.error_ratio = 2.0;
            p.load = Load::Bursty;
        }
        "errors-x5-late-onset" => {
            p.error_ratio = 5.0;
            p.onset = rng.random_range(8..=12);
        }
        "latency-x1.15" => p.latency_ratio = 1.15,
        "latency-x1.3" => p.latency_ratio = 1.3,
        "latency-x2.0" => p.latency_ratio = 2.0,
        "latency-tail" => {
            p.tail_fraction = 0.05;
            p.tail_multiplier = 6.0;
        }
        "latency-leak" => p.drift_per_step = 0.03,
        "canary-no-traffic" => p.no_traffic = true,
        "canary-metrics-missing" => p.canary_missing = true,
        "baseline-metrics-missing" => p.baseline_missing = true,
        "canary-sample-ratio" => p.share_factor = 0.5,
        _ => {}
    }
    p
}

fn scenario(family: &str, truth: Truth, index: usize, rng: &mut StdRng) -> Generated {
    let p = family_params(family, rng);
    let weight = [0.05, 0.1, 0.25][rng.random_range(0..3)];
    let base_rate = [0.002, 0.005, 0.01][rng.random_range(0..3)];
    let cv2 = rng.random_range(0.05..0.8);
    let service = Service { base_rate, cv2 };
    let intervals = intervals(rng, &p, &service, weight, 0, STEPS);
    Generated {
        scenario: Scenario {
            name: format!("gen-{family}-{index:02}"),
            window: Window {
                step_seconds: 60,
                canary_weight: weight,
                latency_buckets_le: LATENCY_BUCKETS_LE.to_vec(),
                intervals,
            },
        },
        family: family.to_string(),
        truth,
        onset: p.onset,
    }
}

/// What stays the same for a service from one interval (and step) to the next.
struct Service {
    base_rate: f64,
    /// Squared CV of each track's error rate from interval to interval.
    cv2: f64,
}

/// Log-normal latency: ln-seconds mean and spread of the stable version.
const LATENCY_MU: f64 = -2.51;
const LATENCY_SIGMA: f64 = 0.59;

/// The load of interval `i` of `n` and what it does to both tracks alike: (traffic multiplier,
/// error-rate multiplier, shift of ln latency).
fn load(rng: &mut StdRng, p: &Params, burst: bool, i: usize, n: usize) -> (f64, f64, f64) {
    match p.load {
        Load::Flat => (1.0, 1.0, 0.0),
        Load::Bursty if burst => {
            let m = rng.random_range(1.5..3.0);
            (m, m, 0.15 * m)
        }
        Load::Bursty => (1.0, 1.0, normal(rng) * 0.05),
        Load::Ramp => {
            let m = 1.0 + i as f64 / (n.max(2) - 1) as f64;
            (m, m * m, 0.12 * (m - 1.0) * 2.0)
        }
    }
}

/// `n` intervals of one window at `weight`. The effect is active from interval `p.onset` on;
/// `elapsed` intervals of it came before this window (a leak keeps growing across steps).
fn intervals(
    rng: &mut StdRng,
    p: &Params,
    service: &Service,
    weight: f64,
    elapsed: usize,
    n: usize,
) -> Vec<Interval> {
    let bursts: Vec<bool> = (0..n)
        .map(|_| p.load == Load::Bursty && rng.random_bool(0.2))
        .collect();
    let canary_share = weight * p.share_factor;
    let mut out = Vec::with_capacity(n);
    for (i, &burst) in bursts.iter().enumerate() {
        // shared by both tracks: load, and what load does to error rate and latency
        let (load, shared_err, shared_lat) = load(rng, p, burst, i, n);
        let active = i >= p.onset;
        let lat_mult = if active {
            p.latency_ratio * (1.0 + p.drift_per_step * (elapsed + i - p.onset) as f64)
        } else {
            1.0
        };
        let err_mult = if active { p.error_ratio } else { 1.0 };
        let expected = p.rps * 60.0 * load;
        let b = track(
            rng,
            expected * (1.0 - canary_share),
            service.base_rate * shared_err,
            service.cv2,
            LATENCY_MU + shared_lat,
            LATENCY_SIGMA,
            1.0,
            (0.0, 1.0),
        );
        let c = if p.no_traffic {
            TrackSample {
                requests: 0,
                errors: 0,
                latency_buckets: vec![0; LATENCY_BUCKETS_LE.len() + 1],
                extra: Default::default(),
            }
        } else {
            track(
                rng,
                expected * canary_share,
                service.base_rate * shared_err * err_mult,
                service.cv2,
                LATENCY_MU + shared_lat,
                LATENCY_SIGMA,
                lat_mult,
                if active {
                    (p.tail_fraction, p.tail_multiplier)
                } else {
                    (0.0, 1.0)
                },
            )
        };
        let gap = |rng: &mut StdRng| p.gaps > 0.0 && rng.random_bool(p.gaps);
        out.push(Interval {
            baseline: (!p.baseline_missing && !gap(rng)).then_some(b),
            canary: (!p.canary_missing && !gap(rng)).then_some(c),
        });
    }
    out
}

/// The rollout families generated, with their truth: the single-step families as whole
/// rollouts, onsets in a later step, and the ways a rollout cannot be verified (no canary
/// traffic, canary metrics that vanish after the first step, a canary that gets half its share).
pub const ROLLOUT_FAMILIES: &[(&str, Truth)] = &[
    ("healthy-flat", Truth::Promote),
    ("healthy-bursty", Truth::Promote),
    ("healthy-ramp", Truth::Promote),
    ("healthy-low-traffic", Truth::Promote),
    ("healthy-high-traffic", Truth::Promote),
    ("healthy-gaps", Truth::Promote),
    ("errors-x1.5", Truth::Rollback),
    ("errors-x2.0", Truth::Rollback),
    ("errors-x5.0", Truth::Rollback),
    ("errors-x20.0", Truth::Rollback),
    ("errors-x3-low-traffic", Truth::Rollback),
    ("errors-x2-bursty", Truth::Rollback),
    ("errors-x5-later-step", Truth::Rollback),
    ("latency-x1.15", Truth::Rollback),
    ("latency-x1.3", Truth::Rollback),
    ("latency-x2.0", Truth::Rollback),
    ("latency-tail", Truth::Rollback),
    ("latency-leak", Truth::Rollback),
    ("canary-no-traffic", Truth::Unverifiable),
    ("canary-metrics-vanish", Truth::Unverifiable),
    ("canary-sample-ratio", Truth::Unverifiable),
];

/// The plans a generated rollout follows (canary weights below 100 %), as the shared rollout
/// suite's: most start at 5 %, some at 10 % or 25 %.
const PLANS: &[&[f64]] = &[&[0.05, 0.1, 0.25, 0.5], &[0.1, 0.25, 0.5], &[0.25, 0.5]];

/// Intervals of the stable version's history before a generated rollout.
pub const HISTORY_INTERVALS: usize = 60;

/// A generated rollout with its answer key.
#[derive(Debug, Clone)]
pub struct GeneratedRollout {
    pub scenario: RolloutScenario,
    pub family: String,
    pub truth: Truth,
    /// The step (0-based) from which the canary is worse (0 for healthy and unverifiable ones).
    pub onset_step: usize,
}

/// `per_family` rollouts of every rollout family, reproducible from `seed`.
pub fn rollout_suite(per_family: usize, seed: u64) -> Vec<GeneratedRollout> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (family, truth) in ROLLOUT_FAMILIES {
        for i in 0..per_family {
            out.push(rollout(family, *truth, i, &mut rng));
        }
    }
    out
}

fn rollout(family: &str, truth: Truth, index: usize, rng: &mut StdRng) -> GeneratedRollout {
    let mut p = family_params(family, rng);
    let plan = PLANS[[0, 0, 0, 1, 1, 2][rng.random_range(0..6)]];
    let base_rate = [0.002, 0.005, 0.01][rng.random_range(0..3)];
    let cv2 = rng.random_range(0.05..0.8);
    let service = Service { base_rate, cv2 };
    // A later onset falls in a step after the first, early in it (more traffic brings it out).
    let (onset_step, onset) = if family == "errors-x5-later-step" {
        (rng.random_range(1..plan.len()), rng.random_range(0..=5))
    } else {
        (0, 0)
    };
    let history_params = Params {
        rps: p.rps,
        load: p.load,
        ..Params::healthy()
    };
    let mut history = intervals(rng, &history_params, &service, 0.0, 0, HISTORY_INTERVALS);
    for iv in &mut history {
        iv.canary = None;
    }
    let window = |weight, intervals| Window {
        step_seconds: 60,
        canary_weight: weight,
        latency_buckets_le: LATENCY_BUCKETS_LE.to_vec(),
        intervals,
    };
    let mut steps = Vec::with_capacity(plan.len());
    for (k, &weight) in plan.iter().enumerate() {
        p.onset = match k.cmp(&onset_step) {
            std::cmp::Ordering::Less => usize::MAX,
            std::cmp::Ordering::Equal => onset,
            std::cmp::Ordering::Greater => 0,
        };
        p.canary_missing = family == "canary-metrics-vanish" && k > 0;
        let elapsed = if k > onset_step {
            (k - onset_step) * STEPS - onset
        } else {
            0
        };
        steps.push(window(
            weight,
            intervals(rng, &p, &service, weight, elapsed, STEPS),
        ));
    }
    GeneratedRollout {
        scenario: RolloutScenario {
            name: format!("gen-{family}-{index:02}"),
            history: window(0.0, history),
            steps,
        },
        family: family.to_string(),
        truth,
        onset_step,
    }
}

#[allow(clippy::too_many_arguments)]
fn track(
    rng: &mut StdRng,
    expected_requests: f64,
    error_rate: f64,
    cv2: f64,
    mu: f64,
    sigma: f64,
    latency_mult: f64,
    (tail_fraction, tail_mult): (f64, f64),
) -> TrackSample {
    let requests = poisson(rng, expected_requests);
    let wobble = gamma(rng, 1.0 / cv2) * cv2;
    let rate = (error_rate * wobble).min(1.0);
    let errors = binomial(rng, requests, rate);
    // bucket probabilities of a log-normal, with a slow tail mixed in
    let mu = mu + latency_mult.ln();
    let cdf = |x: f64, m: f64| normal_cdf((x.ln() - m) / sigma);
    let mut probs = Vec::with_capacity(LATENCY_BUCKETS_LE.len() + 1);
    let mut prev = 0.0;
    for &le in &LATENCY_BUCKETS_LE {
        let c = (1.0 - tail_fraction) * cdf(le, mu) + tail_fraction * cdf(le, mu + tail_mult.ln());
        probs.push((c - prev).max(0.0));
        prev = c;
    }
    probs.push((1.0 - prev).max(0.0));
    let mut left = requests;
    let mut mass = 1.0;
    let mut latency_buckets = Vec::with_capacity(probs.len());
    for (i, p) in probs.iter().enumerate() {
        let n = if i + 1 == probs.len() || mass <= 0.0 {
            left
        } else {
            binomial(rng, left, (p / mass).clamp(0.0, 1.0))
        };
        latency_buckets.push(n);
        left -= n;
        mass -= p;
    }
    TrackSample {
        requests,
        errors,
        latency_buckets,
        extra: Default::default(),
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn normal_cdf(z: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().cdf(z)
}

fn poisson(rng: &mut StdRng, lambda: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= rng.random::<f64>();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u64
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let mean = n as f64 * p;
    if n < 60 {
        return (0..n).filter(|_| rng.random_bool(p)).count() as u64;
    }
    if mean < 20.0 {
        return poisson(rng, mean).min(n);
    }
    if (n as f64 - mean) < 20.0 {
        return n - poisson(rng, n as f64 - mean).min(n);
    }
    let sd = (mean * (1.0 - p)).sqrt();
    (mean + sd * normal(rng)).round().clamp(0.0, n as f64) as u64
}

/// Gamma(shape, 1) by Marsaglia and Tsang.
fn gamma(rng: &mut StdRng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_scenarios_are_reproducible_and_well_formed() {
        let a = suite(1, 42);
        let b = suite(1, 42);
        assert_eq!(a.len(), FAMILIES.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.scenario, y.scenario);
            for iv in &x.scenario.window.intervals {
                for s in [&iv.baseline, &iv.canary].into_iter().flatten() {
                    assert!(s.errors <= s.requests);
                    assert_eq!(s.latency_buckets.iter().sum::<u64>(), s.requests);
                }
            }
        }
        let missing = a
            .iter()
            .find(|g| g.family == "canary-metrics-missing")
            .unwrap();
        assert!(
            missing
                .scenario
                .window
                .intervals
                .iter()
                .all(|iv| iv.canary.is_none())
        );
    }

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 4000;
        let mean = |f: &mut dyn FnMut(&mut StdRng) -> f64, rng: &mut StdRng| {
            (0..n).map(|_| f(rng)).sum::<f64>() / n as f64
        };
        let m = mean(&mut |r| poisson(r, 3.0) as f64, &mut rng);
        assert!((m - 3.0).abs() < 0.15, "{m}");
        let m = mean(&mut |r| binomial(r, 1000, 0.3) as f64, &mut rng);
        assert!((m - 300.0).abs() < 3.0, "{m}");
        let m = mean(&mut |r| gamma(r, 2.5), &mut rng);
        assert!((m - 2.5).abs() < 0.15, "{m}");
        let m = mean(&mut |r| gamma(r, 0.5), &mut rng);
        assert!((m - 0.5).abs() < 0.06, "{m}");
    }
}
