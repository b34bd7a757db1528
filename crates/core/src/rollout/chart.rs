//! Drawing a rollout's metric history: an inline SVG line chart per metric for the status page
//! (canary against baseline over time, traffic steps shaded, decision points marked), and a
//! Mermaid `xychart-beta` block of the error rate for the PR status comment (GitHub renders
//! Mermaid in comments).
//!
//! Pure: records in, text out, no clock. Every piece of text that reaches the SVG is escaped
//! here; the page that embeds it escapes its own text. It does not pick which metrics or marks
//! to show (the page does) and draws no JavaScript: the SVG is plain markup.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::metrics::ERROR_RATE;
use super::record::MetricPoint;

/// `text` safe inside HTML and SVG text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a decision point on the time axis was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A step's weight was committed to the GitOps repository.
    Commit,
    /// The rollout's commits were reverted.
    Revert,
    Promote,
    Rollback,
    /// The judge could not tell (no data, too little traffic).
    Inconclusive,
    /// The judge saw nothing conclusive: a small dot on the axis, not a line.
    Continue,
    /// A person's command (`/pause`, `/promote`, `/rollback`, ...).
    Command,
}

/// A decision point drawn on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: DateTime<Utc>,
    pub kind: MarkKind,
    /// Short text above the line (`10%`, `promote`, `/rollback`).
    pub label: String,
}

impl MarkKind {
    fn color(self) -> &'static str {
        match self {
            MarkKind::Commit => "#495057",
            MarkKind::Revert | MarkKind::Rollback => "#c92a2a",
            MarkKind::Promote => "#2b8a3e",
            MarkKind::Inconclusive => "#e67700",
            MarkKind::Continue => "#adb5bd",
            MarkKind::Command => "#7048e8",
        }
    }
}

pub const CANARY_COLOR: &str = "#e8590c";
pub const BASELINE_COLOR: &str = "#1971c2";

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 18.0;
const TOP: f64 = 58.0;
const BOTTOM: f64 = 44.0;
const Y_STEPS: u32 = 5;
/// At most this many labelled times on the x axis.
const X_TICKS: f64 = 6.0;

/// A round tick interval (seconds) giving at most [`X_TICKS`] ticks over `span` seconds.
fn time_step(span: f64) -> i64 {
    const STEPS: [i64; 16] = [
        10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / *s as f64 <= X_TICKS)
        .unwrap_or(604800)
}

/// How a metric's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A fraction shown as a percentage.
    Ratio,
    Seconds,
    Plain,
}

fn unit(metric: &str) -> Unit {
    if metric.ends_with("_rate") || metric.ends_with("_ratio") {
        Unit::Ratio
    } else if metric.ends_with("_seconds") {
        Unit::Seconds
    } else {
        Unit::Plain
    }
}

/// A human title for a metric name: `error_rate` -> `Error rate`.
pub fn metric_title(metric: &str) -> String {
    let words = metric
        .strip_suffix("_seconds")
        .unwrap_or(metric)
        .replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `1.250` -> `1.25`, `2.000` -> `2`.
fn trim_number(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A value as people read it: `2.5%`, `250 ms`, `1.5 s`.
fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ratio => format!("{}%", trim_number(format!("{:.3}", v * 100.0))),
        Unit::Seconds if v < 1.0 => format!("{} ms", trim_number(format!("{:.1}", v * 1000.0))),
        Unit::Seconds => format!("{} s", trim_number(format!("{v:.2}"))),
        Unit::Plain => trim_number(format!("{v:.3}")),
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is at least `v` (> 0), so the axis
/// splits into readable steps.
fn nice_ceiling(v: f64) -> f64 {
    let base = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|c| *c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * base)
}

/// The top of the y axis: a little above the highest value, never 0.
fn y_max(unit: Unit, values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max <= 0.0 {
        return match unit {
            Unit::Ratio => 0.01,
            Unit::Seconds => 0.1,
            Unit::Plain => 1.0,
        };
    }
    nice_ceiling(max * 1.08)
}

/// Maps times and values to the plot area.
struct Frame {
    t0: DateTime<Utc>,
    span_ms: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, t: DateTime<Utc>) -> f64 {
        let plot = WIDTH - LEFT - RIGHT;
        LEFT + plot * ((t - self.t0).num_milliseconds() as f64 / self.span_ms)
    }
    fn y(&self, v: f64) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        HEIGHT - BOTTOM - plot * (v / self.y_max).clamp(0.0, 1.0)
    }
}

/// An inline SVG line chart of `metric` (taken from `points`, which may hold other metrics),
/// canary against baseline, with `marks` on the time axis. A missing value breaks the line
/// instead of dropping to zero. Sized by its `viewBox`, so the page decides the width.
pub fn svg(metric: &str, points: &[MetricPoint], marks: &[Mark]) -> String {
    let mut pts: Vec<&MetricPoint> = points.iter().filter(|p| p.metric == metric).collect();
    pts.sort_by_key(|p| p.at);
    let unit = unit(metric);
    let times = pts.iter().map(|p| p.at).chain(marks.iter().map(|m| m.at));
    let (t0, t1) = match (times.clone().min(), times.max()) {
        (Some(a), Some(b)) if b > a => (a, b),
        (Some(a), _) => (a - TimeDelta::seconds(30), a + TimeDelta::seconds(30)),
        _ => {
            let now = DateTime::<Utc>::UNIX_EPOCH;
            (now, now + TimeDelta::seconds(60))
        }
    };
    let frame = Frame {
        t0,
        span_ms: (t1 - t0).num_milliseconds().max(1) as f64,
        y_max: y_max(
            unit,
            pts.iter().flat_map(|p| [p.canary, p.baseline]).flatten(),
        ),
    };
    let title = metric_title(metric);
    let mut s = String::with_capacity(8 * 1024);
    let _ = write!(
        s,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">"#,
        label = escape(&format!("{title}: canary against baseline over time")),
    );
    let _ = write!(
        s,
        r##"<title>{t}</title><rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>"##,
        t = escape(&title)
    );
    weight_bands(&mut s, &frame, &pts);
    axes(&mut s, &frame, unit);
    header(&mut s, &title, unit);
    marks_layer(&mut s, &frame, marks);
    if pts
        .iter()
        .all(|p| p.canary.is_none() && p.baseline.is_none())
    {
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" fill="#868e96">no samples yet</text>"##,
            x = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            y = TOP + (HEIGHT - TOP - BOTTOM) / 2.0
        );
    }
    series(
        &mut s,
        &frame,
        &pts,
        |p| p.baseline,
        BASELINE_COLOR,
        "baseline",
    );
    series(&mut s, &frame, &pts, |p| p.canary, CANARY_COLOR, "canary");
    s.push_str("</svg>");
    s
}

/// Title on the left, legend on the right.
fn header(s: &mut String, title: &str, unit: Unit) {
    let unit_text = match unit {
        Unit::Ratio => " (%)",
        Unit::Seconds => "",
        Unit::Plain => "",
    };
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="600" fill="#212529">{t}{unit_text}</text>"##,
        t = escape(title)
    );
    let mut x = WIDTH - RIGHT - 190.0;
    for (name, color) in [("canary", CANARY_COLOR), ("baseline", BASELINE_COLOR)] {
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="17" x2="{x2:.1}" y2="17" stroke="{color}" stroke-width="3"/><text x="{tx:.1}" y="21" fill="#343a40">{name}</text>"##,
            x2 = x + 22.0,
            tx = x + 28.0
        );
        x += 95.0;
    }
}

/// Horizontal grid with value labels, the time axis with clock labels.
fn axes(s: &mut String, f: &Frame, unit: Unit) {
    let right = WIDTH - RIGHT;
    for i in 0..=Y_STEPS {
        let v = f.y_max * f64::from(i) / f64::from(Y_STEPS);
        let y = f.y(v);
        let stroke = if i == 0 { "#adb5bd" } else { "#e9ecef" };
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="{stroke}"/><text x="{lx:.1}" y="{ty:.1}" text-anchor="end" fill="#495057">{label}</text>"##,
            lx = LEFT - 8.0,
            ty = y + 4.0,
            label = escape(&format_value(unit, v)),
        );
    }
    let step = time_step(f.span_ms / 1000.0);
    let fmt = if step < 60 { "%H:%M:%S" } else { "%H:%M" };
    let bottom = HEIGHT - BOTTOM;
    let first = f.t0.timestamp().div_euclid(step) * step;
    let mut tick = first;
    while tick as f64 * 1000.0 <= f.t0.timestamp_millis() as f64 + f.span_ms {
        let Some(t) = DateTime::<Utc>::from_timestamp(tick, 0) else {
            break;
        };
        tick += step;
        if t < f.t0 {
            continue;
        }
        let x = f.x(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{tick_end:.1}" stroke="#adb5bd"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle" fill="#495057">{label}</text>"##,
            tick_end = bottom + 5.0,
            ty = bottom + 18.0,
            label = t.format(fmt),
        );
    }
    let _ = write!(
        s,
        r##"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" fill="#868e96" font-size="11">time (UTC)</text>"##,
        x = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        y = HEIGHT - 8.0
    );
}

/// Alternate shading per run of points at one canary weight, labelled with the weight, so the
/// traffic steps read at a glance.
fn weight_bands(s: &mut String, f: &Frame, pts: &[&MetricPoint]) {
    let mut runs: Vec<(DateTime<Utc>, u8)> = Vec::new();
    for p in pts {
        if runs.last().is_none_or(|(_, w)| *w != p.weight.percent()) {
            runs.push((p.at, p.weight.percent()));
        }
    }
    let top = TOP;
    let height = HEIGHT - TOP - BOTTOM;
    for (i, (start, weight)) in runs.iter().enumerate() {
        let x0 = if i == 0 { LEFT } else { f.x(*start) };
        let x1 = runs.get(i + 1).map_or(WIDTH - RIGHT, |(t, _)| f.x(*t));
        let fill = if i % 2 == 0 { "#f8f9fa" } else { "#f1f3f5" };
        let _ = write!(
            s,
            r##"<rect x="{x0:.1}" y="{top}" width="{w:.1}" height="{height}" fill="{fill}"/>"##,
            w = (x1 - x0).max(0.0)
        );
        if x1 - x0 >= 34.0 {
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{y:.1}" fill="#868e96" font-size="11">{weight}%</text>"##,
                x = x0 + 4.0,
                y = top + 13.0
            );
        }
    }
}

/// Decision points: a vertical line with a label above the plot (labels that would overlap the
/// previous one are left out; the line stays), and the judge's `continue`s as dots on the axis.
fn marks_layer(s: &mut String, f: &Frame, marks: &[Mark]) {
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by_key(|m| m.at);
    let bottom = HEIGHT - BOTTOM;
    let mut last_label_end = f64::NEG_INFINITY;
    for m in sorted {
        let x = f.x(m.at);
        let color = m.kind.color();
        if m.kind == MarkKind::Continue {
            let _ = write!(
                s,
                r#"<circle class="mark-continue" cx="{x:.1}" cy="{bottom}" r="2.5" fill="{color}"><title>{t}</title></circle>"#,
                t = escape(&format!("{} {}", m.at.format("%H:%M:%S"), m.label))
            );
            continue;
        }
        let dash = match m.kind {
            MarkKind::Commit | MarkKind::Revert => r#" stroke-dasharray="4 3""#,
            _ => "",
        };
        let _ = write!(
            s,
            r#"<line class="mark" x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="{color}" stroke-width="1.5"{dash}><title>{t}</title></line>"#,
            t = escape(&format!("{} {}", m.at.format("%H:%M:%S"), m.label))
        );
        // About 6.5 px per character at 11 px.
        let width = m.label.chars().count() as f64 * 6.5;
        let (anchor, start) = if x + width / 2.0 > WIDTH - 2.0 {
            ("end", x - width)
        } else if x - width / 2.0 < 2.0 {
            ("start", x)
        } else {
            ("middle", x - width / 2.0)
        };
        if start > last_label_end + 4.0 {
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" fill="{color}" font-size="11" font-weight="600">{t}</text>"#,
                y = TOP - 6.0,
                t = escape(&m.label)
            );
            last_label_end = start + width;
        }
    }
}

/// One track as polylines broken at missing values, with a dot per value.
fn series(
    s: &mut String,
    f: &Frame,
    pts: &[&MetricPoint],
    value: impl Fn(&MetricPoint) -> Option<f64>,
    color: &str,
    class: &str,
) {
    // Intervals not recorded at all (a step syncing, the shell down) break the line like a
    // missing value does: more than twice the usual spacing is a hole, not a slope.
    let usual = pts
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .filter(|d| *d > 0)
        .min();
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    let mut previous: Option<DateTime<Utc>> = None;
    for p in pts {
        let hole = match (previous, usual) {
            (Some(prev), Some(usual)) => (p.at - prev).num_milliseconds() > 2 * usual,
            _ => false,
        };
        previous = Some(p.at);
        if hole && runs.last().is_some_and(|r| !r.is_empty()) {
            runs.push(Vec::new());
        }
        match value(p).filter(|v| v.is_finite()) {
            Some(v) => runs
                .last_mut()
                .expect("never empty")
                .push((f.x(p.at), f.y(v))),
            None => {
                if runs.last().is_some_and(|r| !r.is_empty()) {
                    runs.push(Vec::new());
                }
            }
        }
    }
    let _ = write!(s, r#"<g class="series-{class}">"#);
    for run in runs.iter().filter(|r| r.len() >= 2) {
        let coords: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.2" stroke-linejoin="round" stroke-linecap="round"/>"#,
            coords.join(" ")
        );
    }
    // Dots only while they stay apart; a lone value between two gaps still shows.
    let total: usize = runs.iter().map(Vec::len).sum();
    for run in &runs {
        if total <= 90 || run.len() == 1 {
            for (x, y) in run {
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.6" fill="{color}"/>"#
                );
            }
        }
    }
    s.push_str("</g>");
}

/// The most points the Mermaid chart shows; longer histories are averaged in groups.
const MERMAID_MAX_POINTS: usize = 36;

/// A fenced ```` ```mermaid ```` `xychart-beta` block of the canary's error rate (first line,
/// orange) against the baseline's (second line, blue), in percent, for the PR status comment.
/// Intervals missing either track are left out (Mermaid lines cannot have gaps); longer
/// histories are averaged in consecutive groups. Empty when fewer than 2 intervals remain.
pub fn mermaid_error_rate(points: &[MetricPoint]) -> String {
    let mut pts: Vec<(DateTime<Utc>, f64, f64)> = points
        .iter()
        .filter(|p| p.metric == ERROR_RATE)
        .filter_map(|p| match (p.canary, p.baseline) {
            (Some(c), Some(b)) if c.is_finite() && b.is_finite() => Some((p.at, c, b)),
            _ => None,
        })
        .collect();
    pts.sort_by_key(|p| p.0);
    if pts.len() < 2 {
        return String::new();
    }
    let group = pts.len().div_ceil(MERMAID_MAX_POINTS);
    let grouped: Vec<(DateTime<Utc>, f64, f64)> = pts
        .chunks(group)
        .map(|c| {
            let n = c.len() as f64;
            (
                c[c.len() - 1].0,
                c.iter().map(|p| p.1).sum::<f64>() / n,
                c.iter().map(|p| p.2).sum::<f64>() / n,
            )
        })
        .collect();
    let percent = |v: f64| trim_number(format!("{:.3}", v * 100.0));
    let labels: Vec<String> = grouped
        .iter()
        .map(|p| format!("\"{}\"", p.0.format("%H:%M")))
        .collect();
    let canary: Vec<String> = grouped.iter().map(|p| percent(p.1)).collect();
    let baseline: Vec<String> = grouped.iter().map(|p| percent(p.2)).collect();
    let top = nice_ceiling(
        grouped
            .iter()
            .flat_map(|p| [p.1, p.2])
            .fold(0.0, f64::max)
            .max(0.0001)
            * 100.0
            * 1.08,
    );
    format!(
        "```mermaid\n\
         ---\n\
         config:\n  theme: base\n  themeVariables:\n    xyChart:\n      plotColorPalette: \"{CANARY_COLOR}, {BASELINE_COLOR}\"\n\
         ---\n\
         xychart-beta\n    \
         title \"Error rate (%): canary (orange) vs baseline (blue)\"\n    \
         x-axis \"UTC\" [{}]\n    \
         y-axis \"error rate (%)\" 0 --> {}\n    \
         line [{}]\n    \
         line [{}]\n\
         ```\n",
        labels.join(", "),
        trim_number(format!("{top:.4}")),
        canary.join(", "),
        baseline.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::Weight;
    use crate::rollout::metrics::P99_LATENCY;
    use crate::rollout::testing::t;

    fn p(at: i64, w: u8, metric: &str, c: Option<f64>, b: Option<f64>) -> MetricPoint {
        MetricPoint {
            at: t(at),
            weight: Weight::new(w).unwrap(),
            metric: metric.into(),
            canary: c,
            baseline: b,
        }
    }

    /// `points="x,y x,y"` attribute values of every polyline in `svg`.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("<polyline points=\"")
            .skip(1)
            .map(|rest| {
                rest[..rest.find('"').unwrap()]
                    .split(' ')
                    .map(|xy| {
                        let (x, y) = xy.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn values_and_axes_read_as_people_read_them() {
        assert_eq!(format_value(Unit::Ratio, 0.025), "2.5%");
        assert_eq!(format_value(Unit::Ratio, 0.0), "0%");
        assert_eq!(format_value(Unit::Seconds, 0.25), "250 ms");
        assert_eq!(format_value(Unit::Seconds, 1.5), "1.5 s");
        assert_eq!(format_value(Unit::Plain, 3.0), "3");
        assert_eq!(nice_ceiling(0.021), 0.025);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(y_max(Unit::Ratio, [0.0, 0.0].into_iter()), 0.01);
        assert_eq!(metric_title("error_rate"), "Error rate");
        assert_eq!(metric_title("p99_latency_seconds"), "P99 latency");
    }

    #[test]
    fn the_svg_draws_both_tracks_broken_at_gaps_with_the_marks() {
        let points = [
            p(60, 10, ERROR_RATE, Some(0.01), Some(0.01)),
            p(120, 10, ERROR_RATE, Some(0.02), Some(0.01)),
            p(180, 25, ERROR_RATE, None, Some(0.012)),
            p(240, 25, ERROR_RATE, Some(0.04), Some(0.011)),
            p(300, 25, ERROR_RATE, Some(0.05), Some(0.01)),
            // Another metric is not drawn in this chart.
            p(300, 25, P99_LATENCY, Some(9.0), Some(9.0)),
        ];
        let marks = [
            Mark {
                at: t(0),
                kind: MarkKind::Commit,
                label: "10%".into(),
            },
            Mark {
                at: t(120),
                kind: MarkKind::Continue,
                label: "continue".into(),
            },
            Mark {
                at: t(300),
                kind: MarkKind::Rollback,
                label: "rollback".into(),
            },
        ];
        let svg = svg(ERROR_RATE, &points, &marks);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        let lines = polylines(&svg);
        // Baseline: one run of 5; canary: 2 then (gap) 2.
        assert_eq!(lines.iter().map(Vec::len).collect::<Vec<_>>(), [5, 2, 2]);
        // Time runs left to right, a higher error rate is higher up (smaller y).
        let canary_after_gap = &lines[2];
        assert!(canary_after_gap[0].0 < canary_after_gap[1].0);
        assert!(canary_after_gap[1].1 < canary_after_gap[0].1);
        // The axis goes to a round value above 5 %, and the marks are there.
        assert!(svg.contains(">6%<") || svg.contains(">10%<"), "{svg}");
        assert!(svg.contains(r#"class="mark""#) && svg.contains(">rollback<"));
        assert!(svg.contains("mark-continue"));
        assert!(svg.contains(">25%<"), "weight band label");
        assert!(svg.contains("time (UTC)"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn unrecorded_stretches_break_the_line_and_ticks_are_round() {
        // Two steps recorded a minute apart each, with five minutes of nothing between them.
        let points = [
            p(60, 10, ERROR_RATE, Some(0.01), Some(0.01)),
            p(120, 10, ERROR_RATE, Some(0.01), Some(0.01)),
            p(420, 25, ERROR_RATE, Some(0.02), Some(0.01)),
            p(480, 25, ERROR_RATE, Some(0.02), Some(0.01)),
        ];
        let svg = svg(ERROR_RATE, &points, &[]);
        assert_eq!(
            polylines(&svg).iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 2]
        );
        // 7 minutes: a tick every 2 minutes, on the minute.
        assert_eq!(time_step(420.0), 120);
        assert!(svg.contains(">10:02<") && svg.contains(">10:06<"), "{svg}");
        assert!(!svg.contains(">10:01<"));
        assert_eq!(time_step(50.0), 10);
        assert_eq!(time_step(3.0 * 3600.0), 1800);
    }

    #[test]
    fn marks_and_metric_names_are_escaped() {
        let points = [
            p(60, 10, "<b>_rate", Some(0.01), Some(0.01)),
            p(120, 10, "<b>_rate", Some(0.02), Some(0.01)),
        ];
        let marks = [Mark {
            at: t(90),
            kind: MarkKind::Command,
            label: "/pause by @<script>alert(1)</script>".into(),
        }];
        let svg = svg("<b>_rate", &points, &marks);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn an_empty_history_is_an_empty_chart_not_a_broken_one() {
        let svg = svg(ERROR_RATE, &[], &[]);
        assert!(svg.contains("no samples yet"));
        assert!(polylines(&svg).is_empty());
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn mermaid_needs_two_points_and_stays_small() {
        assert_eq!(mermaid_error_rate(&[]), "");
        assert_eq!(
            mermaid_error_rate(&[
                p(60, 10, ERROR_RATE, Some(0.01), Some(0.01)),
                p(120, 10, ERROR_RATE, Some(0.01), None),
                p(120, 10, P99_LATENCY, Some(0.01), Some(0.01)),
            ]),
            ""
        );
        let long: Vec<MetricPoint> = (0..100)
            .map(|i| p(60 * i, 10, ERROR_RATE, Some(0.01), Some(0.02)))
            .collect();
        let chart = mermaid_error_rate(&long);
        let line = chart
            .lines()
            .find(|l| l.trim_start().starts_with("line ["))
            .unwrap();
        let n = line.matches(',').count() + 1;
        assert!((2..=MERMAID_MAX_POINTS).contains(&n), "{n} points");
        // Averages of constant series stay those constants.
        assert!(line.contains("[1, 1"), "{line}");
        assert!(chart.contains("line [2, 2"), "{chart}");
    }
}
