//! The status page: a read-only, server-rendered HTML view of the rollout store. `GET /` lists
//! the rollouts in progress and the recent ones; `GET /rollouts/{id}` shows one rollout: its
//! facts, an inline SVG chart per judged metric of canary against baseline with the decision
//! points marked (`rollout::chart`), and the timeline of its audit trail.
//!
//! Rendering is pure (records in, HTML out, `now` given), from the skeletons in
//! `templates/page/`. Every stored string (service, author, commit message, notes, metric names)
//! is HTML-escaped; the pages carry no JavaScript and a Content-Security-Policy that forbids
//! it, load nothing from elsewhere, and show nothing the store does not hold (no config, so no
//! secret). It never changes a rollout; the shell serves it (`deploybot::shell::status_page`).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::chart::{self, Mark, MarkKind, escape};
use super::input::{Input, Judgement};
use super::metrics::{ERROR_RATE, P99_LATENCY};
use super::record::{MetricPoint, Observation, Progress, Revert, Rollout, Step};
use super::store::AuditEvent;
use crate::template::fill;

const LAYOUT: &str = crate::template::PAGE_LAYOUT_HTML;
const INDEX: &str = crate::template::PAGE_INDEX_HTML;
const ROLLOUT: &str = crate::template::PAGE_ROLLOUT_HTML;
const MESSAGE: &str = crate::template::PAGE_MESSAGE_HTML;

/// How many finished rollouts the index lists.
pub const RECENT: usize = 30;
/// Pages showing something live reload themselves this often (a meta refresh, not a script).
const REFRESH_SECS: u32 = 30;

/// `id` as one URL path segment (RFC 3986 unreserved characters kept, the rest percent-encoded).
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The rollout's page under the public base URL (`server.public_url`), for links from the PR.
pub fn rollout_page_url(public_url: &str, deploy_id: &str) -> String {
    format!(
        "{}/rollouts/{}",
        public_url.trim_end_matches('/'),
        path_segment(deploy_id)
    )
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn page(title: &str, location: &str, content: &str, refresh: bool, now: DateTime<Utc>) -> String {
    let refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n")
    } else {
        String::new()
    };
    fill(
        LAYOUT,
        &[
            ("title", &escape(title)),
            ("where", &escape(location)),
            ("refresh", &refresh),
            ("content", content),
            ("rendered_at", &time(now)),
        ],
    )
}

fn phase_badge(r: &Rollout) -> String {
    format!(
        r#"<span class="phase phase-{}">{}</span>"#,
        r.phase().name(),
        escape(&r.phase().to_string())
    )
}

fn traffic(r: &Rollout) -> String {
    let w = r.traffic().percent();
    // The record keeps the last synced weight; once the revert is in git, that is history.
    if let Some((_, Some(Revert::Done { sha }))) = r.rollback() {
        return format!(
            r#"<span class="nowrap"><span class="bar"><span style="width:0%"></span></span>0% <span class="muted">(was {w}%, reverted in <code>{}</code>)</span></span>"#,
            escape(sha)
        );
    }
    let moving = match r.step() {
        Some(Step {
            weight,
            progress: Progress::Committing { .. },
        }) => format!(" <span class=\"muted\">→ {weight}</span>"),
        Some(Step {
            weight,
            progress: Progress::Syncing { .. },
        }) => format!(" <span class=\"muted\">→ {weight} syncing</span>"),
        _ => String::new(),
    };
    format!(
        r#"<span class="nowrap"><span class="bar"><span style="width:{w}%"></span></span>{w}%{moving}</span>"#
    )
}

fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

fn change(r: &Rollout) -> String {
    let pr = r
        .release
        .pull_request
        .map(|n| format!(" · PR #{n}"))
        .unwrap_or_default();
    format!(
        r#"{}<br><span class="muted">by {}{}</span>"#,
        escape(&first_line(&r.release.commit_message, 80)),
        escape(&r.release.author),
        pr
    )
}

fn index_rows(rollouts: &[&Rollout], empty: &str) -> String {
    if rollouts.is_empty() {
        return format!(r#"<tr><td class="empty" colspan="7">{empty}</td></tr>"#);
    }
    let mut out = String::new();
    for r in rollouts {
        let _ = writeln!(
            out,
            r#"<tr><td><a href="/rollouts/{href}"><strong>{service}</strong></a></td><td>{env}</td><td>{phase}</td><td>{traffic}</td><td><code>{image}</code></td><td>{change}</td><td class="nowrap">{updated}</td></tr>"#,
            href = escape(&path_segment(&r.deploy_id)),
            service = escape(r.service()),
            env = escape(r.environment()),
            phase = phase_badge(r),
            traffic = traffic(r),
            image = escape(r.image_tag()),
            change = change(r),
            updated = time(r.updated_at),
        );
    }
    out
}

/// The index: rollouts the shell still works on (`live`), then the most recent others.
pub fn render_index(live: &[Rollout], recent: &[Rollout], now: DateTime<Utc>) -> String {
    let live_refs: Vec<&Rollout> = live.iter().collect();
    let recent_refs: Vec<&Rollout> = recent
        .iter()
        .filter(|r| !live.iter().any(|l| l.deploy_id == r.deploy_id))
        .collect();
    let content = fill(
        INDEX,
        &[
            ("live_count", &live_refs.len().to_string()),
            ("recent_count", &recent_refs.len().to_string()),
            (
                "live_rows",
                &index_rows(&live_refs, "No rollout in progress."),
            ),
            ("recent_rows", &index_rows(&recent_refs, "No rollout yet.")),
        ],
    );
    page(
        "deploybot: rollouts",
        "rollouts",
        &content,
        !live.is_empty(),
        now,
    )
}

/// The decision points of one rollout's audit trail, for the charts: commits (with their
/// weight), reverts, the judge's words and people's commands. Rejected inputs changed nothing
/// and are not marked.
pub fn marks(events: &[AuditEvent]) -> Vec<Mark> {
    events
        .iter()
        .filter(|e| e.decision != "rejected")
        .filter_map(|e| {
            let (kind, label) = match e.input.as_ref()? {
                Input::Committed { weight, .. } => (MarkKind::Commit, format!("→{weight}")),
                Input::Reverted { .. } => (MarkKind::Revert, "revert".to_string()),
                Input::Judged(Judgement {
                    observation: Observation::Continue,
                    ..
                }) => (MarkKind::Continue, "continue".to_string()),
                Input::Judged(Judgement {
                    observation: Observation::Promote,
                    ..
                }) => (MarkKind::Promote, "promote".to_string()),
                Input::Judged(Judgement {
                    observation: Observation::Rollback { metric, .. },
                    ..
                }) => (MarkKind::Rollback, format!("rollback ({metric})")),
                Input::Judged(Judgement {
                    observation: Observation::Inconclusive { .. },
                    ..
                }) => (MarkKind::Inconclusive, "inconclusive".to_string()),
                Input::Command { cmd, .. } => (MarkKind::Command, cmd.as_str().to_string()),
                _ => return None,
            };
            Some(Mark {
                at: e.at,
                kind,
                label,
            })
        })
        .collect()
}

fn fact(out: &mut String, name: &str, value_html: &str) {
    let _ = writeln!(out, "<dt>{}</dt><dd>{value_html}</dd>", escape(name));
}

fn facts(r: &Rollout) -> String {
    let mut f = String::new();
    fact(
        &mut f,
        "Image",
        &format!(
            "<code>{}</code> <span class=\"muted\">(was <code>{}</code>)</span>",
            escape(r.image_tag()),
            escape(&r.release.previous_tag)
        ),
    );
    fact(&mut f, "Traffic to canary", &traffic(r));
    let strategy = match r.course() {
        Some(c) => escape(&format!(
            "{} (risk {:.2}): {}",
            c.strategy, c.risk_score, c.plan
        )),
        None => "<span class=\"muted\">not assessed yet</span>".into(),
    };
    fact(&mut f, "Strategy", &strategy);
    let judge = match &r.latest {
        None => "<span class=\"muted\">no analysis yet</span>".to_string(),
        Some(s) => {
            let text = match &s.observation {
                Observation::Continue => "continue".to_string(),
                Observation::Promote => "promote".to_string(),
                Observation::Rollback { metric, evidence } => {
                    format!("rollback: {metric}: {evidence}")
                }
                Observation::Inconclusive { reason, .. } => format!("inconclusive: {reason}"),
            };
            format!(
                "{} <span class=\"muted\">at {}, {} UTC</span>",
                escape(&text),
                s.weight,
                time(s.at)
            )
        }
    };
    fact(&mut f, "Judge (latest)", &judge);
    if let Some(e) = r.latest.as_ref().and_then(|s| s.evidence.as_ref()) {
        let lines: String = e
            .metric_lines()
            .iter()
            .map(|l| format!("<li>{}</li>", escape(l)))
            .collect();
        fact(
            &mut f,
            "Evidence",
            &format!(
                "{}<ul class=\"evidence\">{lines}</ul>",
                escape(&e.headline())
            ),
        );
    }
    let commits = if r.commits.is_empty() {
        "<span class=\"muted\">none</span>".to_string()
    } else {
        r.commits
            .iter()
            .map(|c| format!("<code>{}</code> ({})", escape(&c.sha), c.weight))
            .collect::<Vec<_>>()
            .join(", ")
    };
    fact(&mut f, "Commits", &commits);
    if let Some((v, revert)) = r.rollback() {
        let state = match revert {
            Some(Revert::Done { sha }) => format!("reverted as <code>{}</code>", escape(sha)),
            Some(Revert::Failed { reason }) => format!("revert failed: {}", escape(reason)),
            Some(Revert::NotNeeded) => "nothing to revert".into(),
            None => "revert in progress".into(),
        };
        fact(
            &mut f,
            "Rollback",
            &format!(
                "{}: {} <span class=\"muted\">({state})</span>",
                escape(&v.reason),
                escape(&v.evidence)
            ),
        );
    }
    let pr = r
        .release
        .pull_request
        .map(|n| format!(" · PR #{n}"))
        .unwrap_or_default();
    let sha = r
        .release
        .commit_sha
        .as_deref()
        .map(|s| {
            let short: String = s.chars().take(12).collect();
            format!(" · <code>{}</code>", escape(&short))
        })
        .unwrap_or_default();
    fact(
        &mut f,
        "Change",
        &format!(
            "{}<br><span class=\"muted\">by {}{pr}{sha}</span>",
            escape(&first_line(&r.release.commit_message, 200)),
            escape(&r.release.author)
        ),
    );
    if let Some(by) = r.approved_by() {
        fact(&mut f, "Approved by", &escape(by));
    }
    fact(
        &mut f,
        "Namespace",
        &format!("<code>{}</code>", escape(&r.target.namespace)),
    );
    fact(
        &mut f,
        "Created / updated",
        &format!("{} / {} UTC", time(r.created_at), time(r.updated_at)),
    );
    f
}

/// Metrics in a stable order: error rate, p99 latency, then the others by name.
fn metric_order(points: &[MetricPoint]) -> Vec<String> {
    let mut names: Vec<String> = points.iter().map(|p| p.metric.clone()).collect();
    names.sort_by_key(|m| {
        let rank = match m.as_str() {
            ERROR_RATE => 0,
            P99_LATENCY => 1,
            _ => 2,
        };
        (rank, m.clone())
    });
    names.dedup();
    names
}

fn charts(points: &[MetricPoint], marks: &[Mark]) -> String {
    let names = metric_order(points);
    if names.is_empty() {
        return "<p class=\"muted\">No metrics recorded yet: charts appear once a step is live \
                and judged.</p>"
            .into();
    }
    let mut out = String::from("<div class=\"charts\">\n");
    for m in names {
        let _ = writeln!(out, "<figure>{}</figure>", chart::svg(&m, points, marks));
    }
    out.push_str("</div>");
    out
}

fn timeline(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return r#"<tr><td class="empty" colspan="6">No events.</td></tr>"#.into();
    }
    let mut out = String::new();
    for e in events {
        let _ = writeln!(
            out,
            r#"<tr><td class="nowrap mono">{at}</td><td class="nowrap"><code>{cause}</code></td><td>{actor}</td><td><span class="decision decision-{dclass}">{decision}</span></td><td>{phase}</td><td>{note}</td></tr>"#,
            at = time(e.at),
            cause = escape(&e.cause),
            actor = escape(&e.actor),
            dclass = match e.decision.as_str() {
                "applied" => "applied",
                "rejected" => "rejected",
                _ => "unchanged",
            },
            decision = escape(&e.decision),
            phase = escape(&e.phase),
            note = escape(&e.note),
        );
    }
    out
}

/// One rollout's page. `events` are its audit rows (oldest first), `points` its metric history.
pub fn render_rollout(
    r: &Rollout,
    events: &[AuditEvent],
    points: &[MetricPoint],
    now: DateTime<Utc>,
) -> String {
    let marks = marks(events);
    let content = fill(
        ROLLOUT,
        &[
            ("service", &escape(r.service())),
            ("environment", &escape(r.environment())),
            ("phase_name", r.phase().name()),
            ("phase", &escape(&r.phase().to_string())),
            ("deploy_id", &escape(&r.deploy_id)),
            ("facts", &facts(r)),
            ("charts", &charts(points, &marks)),
            ("event_count", &events.len().to_string()),
            ("timeline", &timeline(events)),
        ],
    );
    page(
        &format!("deploybot: {} to {}", r.service(), r.environment()),
        &format!("rollouts / {} / {}", r.service(), r.deploy_id),
        &content,
        r.is_live(),
        now,
    )
}

/// The page for a rollout id the store does not know (or any other page-level error).
pub fn render_message(title: &str, message: &str, now: DateTime<Utc>) -> String {
    let content = fill(
        MESSAGE,
        &[("heading", &escape(title)), ("message", &escape(message))],
    );
    page(title, title, &content, false, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::Strategy;
    use crate::rollout::testing::{t, trigger};
    use crate::rollout::{Command, Release, Settings, Trigger, Weight, step};

    const EVIL: &str = "<script>alert('x')</script>";

    fn rollout(id: &str, service: &str) -> Rollout {
        Rollout::new(
            Trigger {
                release: Release {
                    changed_files: vec![],
                    commit_message: format!("Faster payments {EVIL}\n\nbody"),
                    author: format!("mallory\"{EVIL}"),
                    ..trigger(id, service, "production").release
                },
                ..trigger(id, service, "production")
            },
            Settings::default(),
            t(0),
        )
    }

    /// Runs `inputs` from `r`, returning the record and the audit rows a store would keep.
    fn drive(mut r: Rollout, inputs: Vec<(i64, Input)>) -> (Rollout, Vec<AuditEvent>) {
        let mut events = vec![];
        for (seq, (at, input)) in inputs.into_iter().enumerate() {
            let tr = step(&r, input.clone(), t(at));
            events.push(AuditEvent {
                seq: seq as i64,
                rollout_id: r.deploy_id.clone(),
                at: t(at),
                actor: input.actor(),
                cause: input.name(),
                input: Some(input),
                decision: tr.outcome.as_str().to_string(),
                note: tr.note.clone(),
                effects: tr.effects.clone(),
                phase: tr.next.phase().name().into(),
            });
            r = tr.next;
        }
        (r, events)
    }

    fn canary_history() -> (Rollout, Vec<AuditEvent>, Vec<MetricPoint>) {
        let w = |p| Weight::new(p).unwrap();
        let (r, events) = drive(
            rollout("d-1", &format!("checkout{EVIL}")),
            vec![
                (
                    0,
                    Input::Assessed {
                        risk_score: 0.4,
                        strategy: Strategy::Canary10,
                        approval_required: false,
                    },
                ),
                (
                    5,
                    Input::Committed {
                        sha: "c0ffee1".into(),
                        weight: w(10),
                    },
                ),
                (
                    20,
                    Input::Synced {
                        revision: "c0ffee1".into(),
                    },
                ),
                (80, Input::judged(Observation::Continue)),
                // Rejected: not a decision point.
                (
                    90,
                    Input::Committed {
                        sha: "nope".into(),
                        weight: w(50),
                    },
                ),
                (
                    140,
                    Input::judged(Observation::Rollback {
                        metric: "error_rate".into(),
                        evidence: format!("canary 4% vs 0.5% {EVIL}"),
                    }),
                ),
                (
                    150,
                    Input::Reverted {
                        sha: "r3v3rt0".into(),
                    },
                ),
            ],
        );
        let points = (1..=3)
            .map(|i| MetricPoint {
                at: t(20 + 60 * i),
                weight: w(10),
                metric: ERROR_RATE.into(),
                canary: Some(0.01 * i as f64),
                baseline: Some(0.005),
            })
            .chain([MetricPoint {
                at: t(80),
                weight: w(10),
                metric: P99_LATENCY.into(),
                canary: Some(0.25),
                baseline: Some(0.25),
            }])
            .collect();
        (r, events, points)
    }

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(path_segment("d-1_a.b~"), "d-1_a.b~");
        assert_eq!(path_segment("a/b \"c\""), "a%2Fb%20%22c%22");
        assert_eq!(
            rollout_page_url("https://deploybot.example.com/", "pr 7"),
            "https://deploybot.example.com/rollouts/pr%207"
        );
    }

    #[test]
    fn the_rollout_page_escapes_every_stored_string() {
        let (r, events, points) = canary_history();
        let html = render_rollout(&r, &events, &points, t(200));
        assert!(!html.contains("<script"), "unescaped script tag");
        assert!(!html.contains("mallory\""), "unescaped quote in author");
        assert!(html.contains("checkout&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("Faster payments &lt;script&gt;"));
        assert!(
            html.contains("canary 4% vs 0.5% &lt;script&gt;"),
            "evidence"
        );
        // Whatever the store says, the page stays one document.
        assert_eq!(html.matches("<html").count(), 1);
        assert_eq!(html.matches("</html>").count(), 1);
    }

    #[test]
    fn the_rollout_page_shows_facts_charts_and_timeline() {
        let (r, events, points) = canary_history();
        assert_eq!(r.phase().name(), "rolled_back");
        let html = render_rollout(&r, &events, &points, t(200));
        // One chart per metric, error rate first.
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
        let err = html.find("Error rate").unwrap();
        let lat = html.find("P99 latency").unwrap();
        assert!(err < lat);
        assert!(html.contains("<polyline points="));
        // The decision points: the commit and the rollback, not the rejected commit.
        assert!(html.contains(">rollback (error_rate)<"));
        assert!(html.contains(">→10%<"));
        assert!(!html.contains(">→50%<"));
        assert!(html.contains("phase-rolled_back"));
        assert!(html.contains("<code>c0ffee1</code> (10%)"));
        // Every audit row is in the timeline, the rejected one as rejected.
        assert_eq!(html.matches("<tr><td class=\"nowrap mono\">").count(), 7);
        assert!(html.contains("reverted as <code>r3v3rt0</code>"));
        assert!(html.contains("0% <span class=\"muted\">(was 10%, reverted in"));
        assert!(html.contains("decision-rejected"));
        // A finished rollout does not reload itself; a live one does.
        assert!(!html.contains("http-equiv=\"refresh\""));
        let live = rollout("d-2", "cart");
        let html = render_rollout(&live, &[], &[], t(0));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("No metrics recorded yet"));
        assert!(!html.contains("{{"), "unfilled placeholder");
    }

    #[test]
    fn the_index_lists_live_then_recent_without_duplicates() {
        let (done, _, _) = canary_history();
        let live = rollout("d/2", "cart");
        let html = render_index(
            std::slice::from_ref(&live),
            &[live.clone(), done.clone()],
            t(300),
        );
        assert!(!html.contains("<script"));
        let in_progress = html.find("In progress").unwrap();
        let recent = html.find("Recent").unwrap();
        let cart = html.find("href=\"/rollouts/d%2F2\"").unwrap();
        let checkout = html.find("href=\"/rollouts/d-1\"").unwrap();
        assert!(in_progress < cart && cart < recent && recent < checkout);
        assert_eq!(html.matches("href=\"/rollouts/d%2F2\"").count(), 1);
        assert!(html.contains("PR #42"));
        let empty = render_index(&[], &[], t(0));
        assert!(empty.contains("No rollout in progress."));
        assert!(empty.contains("No rollout yet."));
        assert!(!empty.contains("{{"));
    }

    #[test]
    fn marks_follow_the_audit_trail() {
        let (_, events, _) = canary_history();
        let marks = marks(&events);
        let kinds: Vec<(MarkKind, &str)> =
            marks.iter().map(|m| (m.kind, m.label.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (MarkKind::Commit, "→10%"),
                (MarkKind::Continue, "continue"),
                (MarkKind::Rollback, "rollback (error_rate)"),
                (MarkKind::Revert, "revert"),
            ]
        );
        let (_, events) = drive(
            rollout("d-3", "cart"),
            vec![(
                1,
                Input::Command {
                    cmd: Command::Pause,
                    by: "ops".into(),
                },
            )],
        );
        assert_eq!(
            marks_of(&events),
            [(MarkKind::Command, "/pause".to_string())]
        );
    }

    fn marks_of(events: &[AuditEvent]) -> Vec<(MarkKind, String)> {
        marks(events)
            .into_iter()
            .map(|m| (m.kind, m.label))
            .collect()
    }
}
