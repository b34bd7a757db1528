//! The statistics the judges are built from, as plain functions over numbers: the within-interval
//! conditional-binomial comparison with its overdispersion estimate, the one-sided normal-mixture
//! e-value that makes it safe to look every interval, histogram quantiles, and the Mann-Whitney U
//! test of the reference judges. No verdicts here and no knowledge of metrics or config.

use statrs::distribution::{ContinuousCDF, Normal};

/// One interval of a count metric seen as "of the `total` events, `canary` fell on the canary",
/// where the canary served `share` of the requests. Conditional on `total`, `canary` is binomial
/// with the canary's share of the events; the interval's own base rate cancels.
/// `expected_total` is the number of events the interval's requests would bring at the window's
/// pooled rate: the statistic is scaled by it rather than by the random `total`, because under
/// multiplicative wobble a canary spike barely moves `total` while a baseline spike inflates it,
/// and dividing by `sqrt(total)` would bias the score toward "canary worse".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitCount {
    pub canary: u64,
    pub total: u64,
    pub share: f64,
    pub expected_total: f64,
}

impl SplitCount {
    /// Builds the rows of a window, filling `expected_total` from the pooled event rate.
    /// Each item is (canary events, canary requests, baseline events, baseline requests).
    pub fn window(rows: &[(u64, u64, u64, u64)]) -> Vec<SplitCount> {
        SplitCount::window_with(rows, (0, 0))
    }

    /// [`SplitCount::window`] with the event rate pooled over the window and `known` (events,
    /// requests) seen before it, e.g. the stable version's history: a few intervals whose
    /// baseline happened to wobble low do not make every event look many standard deviations
    /// away.
    pub fn window_with(rows: &[(u64, u64, u64, u64)], known: (u64, u64)) -> Vec<SplitCount> {
        let events: u64 = rows.iter().map(|r| r.0 + r.2).sum::<u64>() + known.0;
        let requests: u64 = rows.iter().map(|r| r.1 + r.3).sum::<u64>() + known.1;
        let rate = if requests == 0 {
            0.0
        } else {
            events as f64 / requests as f64
        };
        rows.iter()
            .filter(|r| r.1 + r.3 > 0)
            .map(|&(ce, cr, be, br)| SplitCount {
                canary: ce,
                total: ce + be,
                share: cr as f64 / (cr + br) as f64,
                expected_total: rate * (cr + br) as f64,
            })
            .collect()
    }
}

/// The canary's expected share of the events when its event rate is `ratio` times the
/// baseline's and it serves `share` of the requests.
pub fn event_share(share: f64, ratio: f64) -> f64 {
    ratio * share / (ratio * share + (1.0 - share))
}

/// The accumulated within-interval evidence of one count metric against one null ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    /// Sum of the scaled per-interval deviations of the canary's events from the null.
    pub sum: f64,
    /// Variance of `sum` under the null (about one per interval with a few expected events,
    /// less for intervals expected to carry almost none).
    pub variance: f64,
    /// Intervals that carried at least one event.
    pub intervals: usize,
    /// Estimated extra-binomial variance (per-track multiplicative wobble, squared CV).
    pub kappa: f64,
}

impl Drift {
    /// `sum / sqrt(variance)`: a z score for the whole window (0 without information).
    pub fn z(&self) -> f64 {
        if self.variance <= 0.0 {
            0.0
        } else {
            self.sum / self.variance.sqrt()
        }
    }
}

/// Prior belief about overdispersion, worth `weight` intervals of data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispersionPrior {
    pub kappa: f64,
    pub weight: f64,
}

/// Null variance of the canary's event count given the expected total `n` of the interval:
/// binomial, plus each track's rate wobbling independently with squared CV `kappa`.
fn split_variance(n: f64, q: f64, kappa: f64) -> f64 {
    let b = q * (1.0 - q);
    n * b + 2.0 * kappa * b * b * n * n
}

/// Estimates the multiplicative wobble `kappa` by the method of moments, with deviations taken
/// around the window's own ratio so a real shift does not look like noise, shrunk toward the
/// prior (which dominates while there are few intervals).
pub fn dispersion(counts: &[SplitCount], prior: DispersionPrior) -> f64 {
    let center = rate_ratio(counts).unwrap_or(1.0).max(1e-6);
    let (mut excess, mut a_sum, mut t) = (0.0, 0.0, 0.0);
    for c in counts {
        let q = event_share(c.share, center);
        let n = c.expected_total;
        let d = c.canary as f64 - c.total as f64 * q;
        let b = q * (1.0 - q);
        excess += d * d - c.total as f64 * b;
        a_sum += 2.0 * b * b * n * n;
        t += 1.0;
    }
    if t < 2.0 || a_sum <= 0.0 {
        return prior.kappa;
    }
    let a_mean = a_sum / t;
    ((prior.weight * prior.kappa * a_mean + excess) / (prior.weight * a_mean + a_sum)).max(0.0)
}

/// The per-interval deviations of the canary's events from `ratio`, each scaled by the
/// standard deviation it would have with at least one expected event per track, summed.
pub fn drift(counts: &[SplitCount], ratio: f64, kappa: f64) -> Drift {
    let (mut sum, mut variance, mut intervals) = (0.0, 0.0, 0);
    for (c, (x, v)) in counts.iter().zip(increments(counts, ratio, kappa)) {
        sum += x;
        variance += v;
        intervals += (c.total > 0) as usize;
    }
    Drift {
        sum,
        variance,
        intervals,
        kappa,
    }
}

/// Each interval's scaled deviation from `ratio` and its null variance, in order (the terms
/// [`drift`] sums); an interval that expected no events contributes `(0, 0)`.
pub fn increments(counts: &[SplitCount], ratio: f64, kappa: f64) -> Vec<(f64, f64)> {
    counts
        .iter()
        .map(|c| {
            let q = event_share(c.share, ratio);
            let n = c.expected_total;
            if n <= 0.0 {
                return (0.0, 0.0);
            }
            // Scale as if the interval expected at least one event on each side: below that the
            // split is Poisson-rare and a single event must not count as many standard
            // deviations.
            let scale = split_variance(n.max(1.0 / (q * (1.0 - q))), q, kappa);
            (
                (c.canary as f64 - c.total as f64 * q) / scale.sqrt(),
                split_variance(n, q, kappa) / scale,
            )
        })
        .collect()
}

/// Log of a change-point e-process: a mixture, over the interval `s` at which a regression may
/// have started, of the one-sided normal-mixture e-value of the increments from `s` on (each
/// `(deviation, variance)`, as from [`increments`]). Start `0` carries weight `first_weight`,
/// every later start up to `horizon` an equal share of the rest. Each component is a
/// nonnegative supermartingale under the null that equals 1 until its start, so the mixture is
/// one too, starting at 1: Ville's inequality still bounds the chance that it *ever* exceeds
/// `1/alpha` by `alpha`. A regression that starts late is then judged on the intervals since
/// its onset instead of being diluted by the healthy ones before. Returns the log e-value and
/// the start (0-based) of the component that contributes most.
pub fn log_changepoint_evalue(
    incs: &[(f64, f64)],
    tau: f64,
    first_weight: f64,
    horizon: usize,
) -> (f64, usize) {
    let weights = onset_weights(incs.len(), first_weight, horizon, (&[], 0.0, 0));
    log_changepoint_evalue_weighted(incs, tau, &weights)
}

/// The prior weight of each possible onset among `n` increments: `first_weight` on the first,
/// `step_weight` shared evenly by the `later_steps` later steps of a plan, each step's share on
/// the increment it began at (`step_starts`; the share of a step not begun stays unspent), and
/// the rest spread evenly over every later increment up to `horizon`. Each weight is fixed before
/// its increment is seen (a step's start is known when the step begins), which is what keeps the
/// mixture an e-process.
pub fn onset_weights(
    n: usize,
    first_weight: f64,
    horizon: usize,
    (step_starts, step_weight, later_steps): (&[usize], f64, usize),
) -> Vec<f64> {
    let horizon = horizon.max(1);
    if horizon <= 1 {
        return (0..n).map(|s| if s == 0 { 1.0 } else { 0.0 }).collect();
    }
    let step_weight = if later_steps == 0 { 0.0 } else { step_weight };
    let spread = (1.0 - first_weight - step_weight).max(0.0) / (horizon - 1) as f64;
    let per_step = step_weight / later_steps.max(1) as f64;
    (0..n)
        .map(|s| match s {
            0 => first_weight,
            s if s >= horizon => 0.0,
            s => spread + per_step * step_starts.iter().filter(|&&b| b == s).count() as f64,
        })
        .collect()
}

/// [`log_changepoint_evalue`] with the prior weight of each onset given (`weights[s]` for an
/// onset at increment `s`, summing to at most 1; what is not given to a reached increment is the
/// weight of onsets still to come, whose components are still 1).
pub fn log_changepoint_evalue_weighted(
    incs: &[(f64, f64)],
    tau: f64,
    weights: &[f64],
) -> (f64, usize) {
    let (mut s, mut v) = (0.0, 0.0);
    let mut terms: Vec<(f64, usize)> = Vec::with_capacity(incs.len());
    // Suffix sums, from the last interval back, give each start's statistic in one pass.
    for (start, &(x, var)) in incs.iter().enumerate().rev() {
        s += x;
        v += var;
        let weight = weights.get(start).copied().unwrap_or(0.0);
        if weight > 0.0 {
            terms.push((weight.ln() + log_mixture_evalue(s, v, tau), start));
        }
    }
    let Some(&(top, top_start)) = terms.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
        return (0.0, 0);
    };
    // log-sum-exp, plus the weight of starts not reached yet (their components are still 1)
    let reached: f64 = terms.iter().map(|(l, _)| (l - top).exp()).sum();
    let spent: f64 = weights.iter().take(incs.len()).sum();
    let pending = if incs.is_empty() {
        1.0
    } else {
        (1.0 - spent).max(0.0)
    };
    (top + (reached + pending * (-top).exp()).ln(), top_start)
}

/// Squared CV of one track's event rate from interval to interval (method of moments around the
/// track's own pooled rate, Poisson variance removed), shrunk toward the prior. Rows are
/// (events, requests) per interval.
pub fn track_dispersion<I>(rows: I, prior: DispersionPrior) -> f64
where
    I: IntoIterator<Item = (u64, u64)> + Clone,
{
    let (mut events, mut requests, mut t) = (0u64, 0u64, 0.0);
    for (e, n) in rows.clone() {
        events += e;
        requests += n;
        t += 1.0;
    }
    if requests == 0 || events == 0 || t < 2.0 {
        return prior.kappa;
    }
    let rate = events as f64 / requests as f64;
    let (mut excess, mut a_sum) = (0.0, 0.0);
    for (e, n) in rows {
        let mu = rate * n as f64;
        let d = e as f64 - mu;
        excess += d * d - mu;
        a_sum += mu * mu;
    }
    // One degree of freedom went into the rate.
    excess *= t / (t - 1.0);
    let a_mean = a_sum / t;
    ((prior.weight * prior.kappa * a_mean + excess) / (prior.weight * a_mean + a_sum)).max(0.0)
}

/// Column sums of (canary events, canary requests, baseline events, baseline requests) rows.
pub fn totals(rows: &[(u64, u64, u64, u64)]) -> (u64, u64, u64, u64) {
    rows.iter().fold((0, 0, 0, 0), |a, r| {
        (a.0 + r.0, a.1 + r.1, a.2 + r.2, a.3 + r.3)
    })
}

/// Variance of the log of a track's pooled event rate: Poisson at `expected` events (at least
/// one), plus the track's own wobble weighted by how concentrated its requests are in few
/// intervals (1/T when they are spread evenly).
fn log_rate_variance<I>(rows: I, expected: f64, prior: DispersionPrior) -> f64
where
    I: IntoIterator<Item = (u64, u64)> + Clone,
{
    let requests: u64 = rows.clone().into_iter().map(|r| r.1).sum();
    let concentration: f64 = rows
        .clone()
        .into_iter()
        .map(|r| (r.1 as f64 / requests as f64).powi(2))
        .sum();
    1.0 / expected.max(1.0) + track_dispersion(rows, prior) * concentration
}

/// Fixed-horizon z of "the canary's pooled event rate is more than `ratio` times the
/// baseline's": ln of the ratio of whole-window rates, each track's variance its Poisson part
/// at the null's expected count plus its own interval-to-interval wobble. Pooling across
/// intervals is safe here because both tracks see the same intervals with the same share; it
/// does not pay for the baseline's per-interval wobble the way the within-interval comparison
/// does, which is where it is stronger on quiet canaries next to a wobbly baseline.
/// `None` without events or requests on either side.
pub fn pooled_log_ratio_z(
    rows: &[(u64, u64, u64, u64)],
    ratio: f64,
    prior: DispersionPrior,
) -> Option<f64> {
    pooled_log_ratio(rows, ratio, prior).map(|(l, v)| l / v.sqrt())
}

/// The statistic of [`pooled_log_ratio_z`] before scaling: the observed log rate ratio minus
/// `ln(ratio)`, and its variance under the null, so several windows can be combined.
pub fn pooled_log_ratio(
    rows: &[(u64, u64, u64, u64)],
    ratio: f64,
    prior: DispersionPrior,
) -> Option<(f64, f64)> {
    let (ce, cr, be, br) = totals(rows);
    if cr == 0 || br == 0 || ce + be == 0 {
        return None;
    }
    let (cr, br) = (cr as f64, br as f64);
    let base = (ce + be) as f64 / (ratio * cr + br);
    let canary = rows.iter().map(|r| (r.0, r.1));
    let baseline = rows.iter().map(|r| (r.2, r.3));
    let variance = log_rate_variance(canary, ratio * base * cr, prior)
        + log_rate_variance(baseline, base * br, prior);
    let observed = ((ce as f64).max(0.5) / cr) / ((be as f64).max(0.5) / br);
    Some((observed.ln() - ratio.ln(), variance))
}

/// Intervals on each side of an interval whose pooled rate is its local level in
/// [`history_dispersion`].
const HISTORY_NEIGHBOURS: usize = 5;

/// Squared CV of one track's event rate from interval to interval, measured on its history
/// (rows of (events, requests)): each interval's deviation from its *local* level (the pooled
/// rate of the intervals around it), Poisson variance removed, by the method of moments. The
/// local level follows slow drifts (a load ramp moves the error rate fourfold in an hour) that
/// a deviation from the whole history's rate would count as wobble. `None` without events.
pub fn history_dispersion(rows: &[(u64, u64)]) -> Option<f64> {
    let rows: Vec<(u64, u64)> = rows.iter().copied().filter(|r| r.1 > 0).collect();
    if rows.len() < 3 || rows.iter().all(|r| r.0 == 0) {
        return None;
    }
    let (mut excess, mut a_sum) = (0.0, 0.0);
    for i in 0..rows.len() {
        let from = i.saturating_sub(HISTORY_NEIGHBOURS);
        let to = (i + HISTORY_NEIGHBOURS + 1).min(rows.len());
        let (e, n) = rows[from..to]
            .iter()
            .fold((0u64, 0u64), |a, r| (a.0 + r.0, a.1 + r.1));
        let mu = e as f64 / n as f64 * rows[i].1 as f64;
        let d = rows[i].0 as f64 - mu;
        // The local level includes the interval itself, which shrinks its deviation by about
        // one of the `to - from` intervals' worth.
        let k = (to - from) as f64;
        excess += d * d * k / (k - 1.0) - mu;
        a_sum += mu * mu;
    }
    (a_sum > 0.0).then(|| (excess / a_sum).max(0.0))
}

/// Mantel-Haenszel estimate of the canary/baseline event-rate ratio, pooled within intervals
/// (never across them, which Simpson's paradox would bias). `None` without events.
pub fn rate_ratio(counts: &[SplitCount]) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for c in counts {
        let b = (c.total - c.canary) as f64;
        num += c.canary as f64 * (1.0 - c.share);
        den += b * c.share;
    }
    (den > 0.0).then(|| num / den)
}

/// Log of the one-sided normal-mixture e-value for a sum `s` of `v` unit-variance increments
/// whose mean is 0 under the null and positive under the alternative (mixing density: a
/// half-normal of scale `tau` over the per-increment drift). Under the null its exponential is a
/// nonnegative supermartingale, so by Ville's inequality it ever exceeds `1/alpha` with
/// probability at most `alpha`: the judge may look after every interval.
pub fn log_mixture_evalue(s: f64, v: f64, tau: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let t2v = tau * tau * v;
    let normal = Normal::standard();
    let phi = normal.cdf(tau * s / (1.0 + t2v).sqrt()).max(1e-300);
    std::f64::consts::LN_2 - 0.5 * (1.0 + t2v).ln()
        + tau * tau * s * s / (2.0 * (1.0 + t2v))
        + phi.ln()
}

/// One-sided upper quantile of the standard normal (`z` with `P(Z > z) = p`).
pub fn normal_upper_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(1.0 - p)
}

/// The `q` quantile (0..1) of a histogram given as non-cumulative bucket counts with upper
/// bounds `le` (`+Inf` implied for the last count), interpolated linearly within the bucket the
/// way Prometheus' `histogram_quantile` does. `None` without observations or bounds; a quantile
/// falling in the `+Inf` bucket returns the highest finite bound.
pub fn histogram_quantile(le: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || le.is_empty() || counts.len() != le.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let mut cum = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        let prev = cum;
        cum += c;
        if cum as f64 >= rank && c > 0 {
            if i == le.len() {
                return Some(le[le.len() - 1]);
            }
            let lower = if i == 0 { 0.0 } else { le[i - 1] };
            let upper = le[i];
            return Some(lower + (upper - lower) * (rank - prev as f64) / c as f64);
        }
    }
    Some(le[le.len() - 1])
}

/// Result of a one-sided Mann-Whitney U test that `x` tends to be greater than `y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of `x` (scipy's `statistic`).
    pub u: f64,
    /// One-sided p value, normal approximation with tie correction and continuity correction.
    pub p: f64,
}

/// One-sided Mann-Whitney U test of "x stochastically greater than y", as
/// `scipy.stats.mannwhitneyu(x, y, alternative='greater', method='asymptotic',
/// use_continuity=True)`: midranks for ties, tie-corrected variance, 0.5 continuity correction.
/// `None` when either sample is empty or holds a NaN (scipy would answer NaN).
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let ties = (j - i + 1) as f64;
        let midrank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_x += midrank * all[i..=j].iter().filter(|e| e.1).count() as f64;
        tie_term += ties * ties * ties - ties;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_x - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let numerator = u - mu - 0.5;
    let p = if var <= 0.0 {
        // every value tied: scipy's z is -inf, so p = 1
        1.0
    } else {
        1.0 - Normal::standard().cdf(numerator / var.sqrt())
    };
    Some(MannWhitney { u, p })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_share_is_the_request_share_without_a_difference() {
        assert!((event_share(0.1, 1.0) - 0.1).abs() < 1e-12);
        // twice the rate on 10 % of the traffic: 0.2 / 1.1 of the events
        assert!((event_share(0.1, 2.0) - 0.2 / 1.1).abs() < 1e-12);
    }

    #[test]
    fn drift_is_zero_mean_without_a_difference_and_positive_with_one() {
        let fair: Vec<SplitCount> = (0..20)
            .map(|i| SplitCount {
                canary: if i % 2 == 0 { 9 } else { 11 },
                total: 100,
                share: 0.1,
                expected_total: 100.0,
            })
            .collect();
        let d = drift(&fair, 1.0, 0.0);
        assert!(d.sum.abs() < 1e-9, "{d:?}");
        assert_eq!(d.intervals, 20);
        assert!((d.variance - 20.0).abs() < 1e-9);
        let worse: Vec<SplitCount> = fair
            .iter()
            .map(|c| SplitCount {
                canary: c.canary * 2,
                ..*c
            })
            .collect();
        assert!(drift(&worse, 1.0, 0.0).z() > 5.0);
        let r = rate_ratio(&worse).unwrap();
        assert!((r - 20.0 * 0.9 / (80.0 * 0.1)).abs() < 1e-9, "{r}");
    }

    #[test]
    fn dispersion_sees_wobble_and_ignores_a_steady_shift() {
        let steady: Vec<SplitCount> = (0..20)
            .map(|i| SplitCount {
                canary: 20 + (i % 3),
                total: 100,
                share: 0.1,
                expected_total: 100.0,
            })
            .collect();
        let prior = DispersionPrior {
            kappa: 0.5,
            weight: 0.0,
        };
        // a steady doubling with binomial-sized spread is not overdispersion
        assert!(dispersion(&steady, prior) < 0.01);
        let wobbly: Vec<SplitCount> = (0..20)
            .map(|i| SplitCount {
                canary: if i % 2 == 0 { 2 } else { 25 },
                total: 110,
                share: 0.1,
                expected_total: 110.0,
            })
            .collect();
        assert!(dispersion(&wobbly, prior) > 0.3);
        // the prior dominates when there is little data
        assert_eq!(
            dispersion(
                &wobbly[..1],
                DispersionPrior {
                    kappa: 0.7,
                    weight: 3.0
                }
            ),
            0.7
        );
    }

    #[test]
    fn mixture_evalue_grows_with_evidence_and_stays_small_without() {
        assert!(log_mixture_evalue(0.0, 10.0, 0.5) < 0.0);
        assert!(log_mixture_evalue(-5.0, 10.0, 0.5) < 0.0);
        let strong = log_mixture_evalue(15.0, 10.0, 0.5);
        assert!(strong > (1.0f64 / 0.001).ln(), "{strong}");
        assert!(log_mixture_evalue(15.0, 10.0, 0.5) > log_mixture_evalue(10.0, 10.0, 0.5));
    }

    /// Ville's inequality in practice: over many simulated null paths of 30 looks, the e-value
    /// crosses 1/alpha in at most about alpha of them.
    #[test]
    fn mixture_evalue_is_anytime_valid_under_the_null() {
        let rate = null_crossing_rate(7, |incs| {
            log_mixture_evalue(incs.iter().map(|r| r.0).sum(), incs.len() as f64, 0.5)
        });
        assert!(rate <= NULL_ALPHA, "crossed in {rate}");
        assert!(rate > 0.0, "never crossed: the boundary is vacuous");
    }

    const NULL_ALPHA: f64 = 0.05;

    /// Of 4000 null paths of 30 standard-normal increments (variance 1 each), looked at after
    /// every increment, the share where `log_e` ever reaches `ln(1/NULL_ALPHA)`.
    fn null_crossing_rate(seed: u64, log_e: impl Fn(&[(f64, f64)]) -> f64) -> f64 {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::standard();
        let paths = 4000;
        let mut crossed = 0;
        for _ in 0..paths {
            let mut incs = Vec::with_capacity(30);
            for _ in 0..30 {
                incs.push((
                    normal.inverse_cdf(rng.random_range(1e-12..1.0 - 1e-12)),
                    1.0,
                ));
                if log_e(&incs) >= (1.0 / NULL_ALPHA).ln() {
                    crossed += 1;
                    break;
                }
            }
        }
        crossed as f64 / paths as f64
    }

    #[test]
    fn changepoint_evalue_with_all_weight_on_the_start_is_the_mixture_evalue() {
        let incs = [(0.5, 1.0), (-0.2, 0.8), (1.4, 1.0), (0.9, 0.5)];
        let (log_e, start) = log_changepoint_evalue(&incs, 0.6, 1.0, 30);
        let (s, v) = incs.iter().fold((0.0, 0.0), |a, r| (a.0 + r.0, a.1 + r.1));
        assert!((log_e - log_mixture_evalue(s, v, 0.6)).abs() < 1e-12);
        assert_eq!(start, 0);
        // nothing seen yet: the e-process has not moved from 1
        assert_eq!(log_changepoint_evalue(&[], 0.6, 0.8, 30).0, 0.0);
    }

    /// A regression that starts at interval 13 is judged on the intervals since then: the
    /// change-point e-process crosses sooner than the e-value of the whole window, and names the
    /// onset. A regression from the start costs it only `ln(1/0.8)` of evidence.
    #[test]
    fn changepoint_evalue_sees_a_late_onset_sooner() {
        let threshold = (3.0f64 / 0.005).ln();
        let path: Vec<(f64, f64)> = (0..30)
            .map(|i| if i < 12 { (0.0, 1.0) } else { (2.5, 1.0) })
            .collect();
        type Statistic<'a> = &'a dyn Fn(&[(f64, f64)]) -> f64;
        let first = |f: Statistic| (1..=path.len()).find(|&t| f(&path[..t]) >= threshold);
        let whole = first(&|p| {
            let (s, v) = p.iter().fold((0.0, 0.0), |a, r| (a.0 + r.0, a.1 + r.1));
            log_mixture_evalue(s, v, 0.6)
        })
        .unwrap();
        let change = first(&|p| log_changepoint_evalue(p, 0.6, 0.8, 30).0).unwrap();
        assert!(
            change < whole,
            "change-point at {change}, whole window at {whole}"
        );
        assert_eq!(log_changepoint_evalue(&path[..change], 0.6, 0.8, 30).1, 12);
        let from_start = [(2.5, 1.0); 6];
        let (cp, _) = log_changepoint_evalue(&from_start, 0.6, 0.8, 30);
        assert!(cp >= log_mixture_evalue(15.0, 6.0, 0.6) + 0.8f64.ln() - 1e-12);
    }

    /// Ville's inequality for the mixture over start times: over many null paths of 30 looks it
    /// crosses 1/alpha in at most about alpha of them, although it restarts at every interval.
    #[test]
    fn changepoint_evalue_is_anytime_valid_under_the_null() {
        let rate = null_crossing_rate(11, |incs| log_changepoint_evalue(incs, 0.6, 0.8, 30).0);
        assert!(rate <= NULL_ALPHA, "crossed in {rate}");
        assert!(rate > 0.0, "never crossed: the boundary is vacuous");
    }

    #[test]
    fn track_dispersion_sees_a_tracks_wobble() {
        let none = DispersionPrior {
            kappa: 0.5,
            weight: 0.0,
        };
        // 20 +- 1 errors of 1000 requests: Poisson at most, no wobble
        let steady: Vec<(u64, u64)> = (0..30).map(|i| (19 + i % 3, 1000)).collect();
        assert!(track_dispersion(steady.iter().copied(), none) < 0.01);
        // 5 and 35 in turn around a mean of 20: squared CV (15/20)^2 less Poisson's 1/20
        let wobbly: Vec<(u64, u64)> = (0..30)
            .map(|i| (if i % 2 == 0 { 5 } else { 35 }, 1000))
            .collect();
        let k = track_dispersion(wobbly.iter().copied(), none);
        assert!((k - (0.5625 - 0.05) * 30.0 / 29.0).abs() < 1e-9, "{k}");
        // one interval says nothing about wobble: the prior stands
        assert_eq!(track_dispersion(wobbly[..1].iter().copied(), none), 0.5);
    }

    /// The whole-window z on the generator's healthy windows (independent gamma wobble per
    /// track, bursts and ramps shared) is roughly standard normal in its upper tail, and it sees
    /// a 1.5x and a 2x error rate over 30 intervals.
    #[test]
    fn pooled_log_ratio_z_is_calibrated_on_wobbly_healthy_windows_and_sees_a_shift() {
        use crate::canary::generate;
        let own = DispersionPrior {
            kappa: 1.0,
            weight: 0.0,
        };
        let mut by_family: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for g in generate::suite(150, 99) {
            let rows: Vec<(u64, u64, u64, u64)> = g
                .scenario
                .window
                .intervals
                .iter()
                .filter_map(|iv| Some((iv.baseline.as_ref()?, iv.canary.as_ref()?)))
                .map(|(b, c)| (c.errors, c.requests, b.errors, b.requests))
                .collect();
            if let Some(z) = pooled_log_ratio_z(&rows, 1.0, own) {
                by_family.entry(g.family).or_default().push(z);
            }
        }
        let above = |family: &str, z: f64| {
            let v = &by_family[family];
            v.iter().filter(|&&x| x >= z).count() as f64 / v.len() as f64
        };
        let z_1pct = normal_upper_quantile(0.01);
        for healthy in [
            "healthy-flat",
            "healthy-bursty",
            "healthy-ramp",
            "healthy-high-traffic",
        ] {
            let tail = above(healthy, z_1pct);
            assert!(tail <= 0.03, "{healthy}: {tail} above the 1 % point");
            assert!(above(healthy, 0.0) > 0.3, "{healthy}: never positive");
        }
        assert!(above("errors-x1.5", z_1pct) > 0.35);
        assert!(above("errors-x2.0", z_1pct) > 0.75);
        // a canary that is better is not worse
        let better: Vec<(u64, u64, u64, u64)> = (0..30).map(|_| (1, 600, 60, 11400)).collect();
        assert!(pooled_log_ratio_z(&better, 1.0, own).unwrap() < -3.0);
        assert_eq!(pooled_log_ratio_z(&[(0, 600, 0, 11400)], 1.0, own), None);
    }

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let le = [0.1, 0.5, 1.0];
        // 100 observations: 50 <= 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1.0]
        let counts = [50, 40, 10, 0];
        assert!((histogram_quantile(&le, &counts, 0.5).unwrap() - 0.1).abs() < 1e-12);
        let p90 = histogram_quantile(&le, &counts, 0.9).unwrap();
        assert!((p90 - 0.5).abs() < 1e-12, "{p90}");
        let p99 = histogram_quantile(&le, &counts, 0.99).unwrap();
        assert!((p99 - 0.95).abs() < 1e-12, "{p99}");
        assert_eq!(histogram_quantile(&le, &[0, 0, 0, 5], 0.99), Some(1.0));
        assert_eq!(histogram_quantile(&le, &[0, 0, 0, 0], 0.99), None);
    }

    /// Computed once with scipy 1.17.1:
    /// `mannwhitneyu(x, y, alternative='greater', method='asymptotic', use_continuity=True)`.
    const SCIPY: &[(&[f64], &[f64], f64, f64)] = &[
        (
            &[0.012, 0.015, 0.011, 0.02, 0.018],
            &[0.010, 0.009, 0.011, 0.012, 0.008],
            23.0,
            0.01778941661979705,
        ),
        (
            &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0],
            &[1.0, 1.0, 2.0, 2.0, 3.0],
            25.5,
            0.10158695879254287,
        ),
        (
            &[0.0, 0.0, 0.001, 0.0, 0.002],
            &[0.0, 0.001, 0.0, 0.0, 0.0, 0.0],
            19.0,
            0.20732436651360375,
        ),
        (&[5.0, 5.0, 5.0], &[5.0, 5.0], 3.0, 1.0),
        (
            &[
                0.1, 0.3, 0.2, 0.25, 0.15, 0.35, 0.4, 0.05, 0.12, 0.5, 0.45, 0.22, 0.31, 0.18, 0.27,
            ],
            &[
                0.2, 0.1, 0.3, 0.22, 0.28, 0.19, 0.24, 0.26, 0.21, 0.33, 0.17, 0.29, 0.23, 0.25,
                0.2,
            ],
            123.0,
            0.3390159485944063,
        ),
    ];

    #[test]
    fn mann_whitney_matches_scipy() {
        for (i, (x, y, u, p)) in SCIPY.iter().enumerate() {
            let r = mann_whitney_greater(x, y).unwrap();
            assert_eq!(r.u, *u, "case {i}: U");
            assert!((r.p - p).abs() < 1e-9, "case {i}: p {} vs scipy {p}", r.p);
        }
    }

    #[test]
    fn mann_whitney_refuses_empty_or_nan_input() {
        assert_eq!(mann_whitney_greater(&[], &[1.0]), None);
        assert_eq!(mann_whitney_greater(&[f64::NAN, 1.0], &[1.0]), None);
    }
}
