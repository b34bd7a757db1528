//! Golden files of the texts deploybot posts: on GitHub (the rollout status comment and its
//! chart, the replies to commands, commit status descriptions), to git (commit and revert
//! messages, approval PRs) and to the alert webhook, plus the canary verdict. One test a template
//! of `templates/`; the risk comment and prompt are pinned in `risk::golden`, manifest edits in
//! `manifest::golden`. All go through `support::golden::check`: `UPDATE_GOLDEN=1` rewrites them.

use deploybot_core::canary::scenario::Scenario;
use deploybot_core::canary::{JudgeConfig, render::verdict_markdown, replay};
use deploybot_core::gitops::commit_message::{
    render_commit, render_pull_request, render_revert, revert_reason, step_summary,
};
use deploybot_core::gitops::testing::{changes, info};
use deploybot_core::risk::Strategy;
use deploybot_core::risk::{Change, Policy, Thresholds, comment as risk_comment};
use deploybot_core::rollout::chart::mermaid_error_rate;
use deploybot_core::rollout::command::{
    self, needs_write_access, not_applied, parse, reply, status_reply,
};
use deploybot_core::rollout::comment::{
    alert_text, approval_pr_closed, commit_status, marker, notice_text, status_comment,
    status_comment_with_chart,
};
use deploybot_core::rollout::input::Closing;
use deploybot_core::rollout::metrics::{ERROR_RATE, P99_LATENCY};
use deploybot_core::rollout::testing::{rolled_back_at_25, t, trigger};
use deploybot_core::rollout::{
    Command, Effect, Input, Level, MetricPoint, Notice, Observation, Phase, Rollout, Settings,
    Weight, step,
};

use crate::support::golden::check;

fn w(percent: u8) -> Weight {
    Weight::new(percent).unwrap()
}

/// Texts of one template, each under a `=== name ===` line, so one golden file shows them all.
fn sections(parts: &[(&str, String)]) -> String {
    parts
        .iter()
        .map(|(name, text)| format!("=== {name} ===\n{text}\n"))
        .collect()
}

/// The rollout `d-42` of checkout to production after `inputs`, and the notices it commented.
fn drive(inputs: Vec<Input>) -> (Rollout, Vec<Notice>) {
    let mut r = Rollout::new(
        trigger("d-42", "checkout", "production"),
        Settings::default(),
        t(0),
    );
    let mut notices = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let tr = step(&r, input, t(i as i64 * 700));
        for e in &tr.effects {
            if let Effect::Comment { notice } = e {
                notices.push(notice.clone());
            }
        }
        r = tr.next;
    }
    (r, notices)
}

#[test]
fn status_comments_are_pinned() {
    let (r, notices) = drive(vec![
        Input::Assessed {
            risk_score: 0.42,
            strategy: Strategy::Canary5,
            approval_required: false,
        },
        Input::Committed {
            sha: "c0ffee1".into(),
            weight: w(5),
        },
        Input::Synced {
            revision: "c0ffee1".into(),
        },
        Input::judged(Observation::Promote),
    ]);
    check(
        "rollout/status-promoted.md",
        &status_comment(&r, notices.last().unwrap()),
    );
    let (r, notices) = drive(rolled_back_at_25(
        "canary 4.1% vs baseline 0.3% (Mann-Whitney p=0.001)",
    ));
    let body = status_comment(&r, notices.last().unwrap());
    assert!(body.starts_with(&marker("d-42")));
    check("rollout/status-rolled-back.md", &body);
}

#[test]
fn status_comment_with_chart_is_pinned() {
    let (r, notices) = drive(rolled_back_at_25("canary 4.1% vs baseline 0.3%"));
    let notice = notices.last().unwrap();
    let points: Vec<MetricPoint> = [(0.003, 0.003), (0.012, 0.002), (0.041, 0.003)]
        .iter()
        .enumerate()
        .map(|(i, (c, b))| MetricPoint {
            at: t(1400 + 60 * i as i64),
            weight: w(25),
            metric: ERROR_RATE.into(),
            canary: Some(*c),
            baseline: Some(*b),
        })
        .collect();
    let body =
        status_comment_with_chart(&r, notice, &points, Some("https://deploybot.example.com/"));
    assert!(body.starts_with(&marker("d-42")));
    check("rollout/status-with-chart.md", &body);
    // Nothing to add: exactly the plain comment, so existing comments do not change.
    assert_eq!(
        status_comment_with_chart(&r, notice, &points[..1], None),
        status_comment(&r, notice)
    );
    assert_eq!(
        status_comment_with_chart(&r, notice, &[], Some("  ")),
        status_comment(&r, notice)
    );
}

#[test]
fn mermaid_chart_is_pinned() {
    let p = |at: i64, percent: u8, metric: &str, c: Option<f64>, b: Option<f64>| MetricPoint {
        at: t(at),
        weight: w(percent),
        metric: metric.into(),
        canary: c,
        baseline: b,
    };
    let mut points = vec![
        p(60, 10, ERROR_RATE, Some(0.004), Some(0.005)),
        p(120, 10, ERROR_RATE, Some(0.006), Some(0.004)),
        // Missing a track: left out.
        p(180, 10, ERROR_RATE, None, Some(0.004)),
        p(240, 25, ERROR_RATE, Some(0.021), Some(0.005)),
        p(300, 25, ERROR_RATE, Some(0.043), Some(0.004)),
    ];
    points.push(p(300, 25, P99_LATENCY, Some(0.3), Some(0.2)));
    check(
        "rollout/status-chart.mermaid.md",
        &mermaid_error_rate(&points),
    );
}

/// Every notice kind has its line in `templates/rollout/notices.txt`, filled.
#[test]
fn every_notice_is_pinned() {
    let by = || "bob".to_string();
    let notices = [
        Notice::AwaitingApproval,
        Notice::StepStarted { weight: w(5) },
        Notice::Promoted {
            from: w(5),
            to: w(25),
        },
        Notice::Verifying,
        Notice::Completed,
        Notice::Paused {
            reason: "metrics unavailable".into(),
        },
        Notice::Resumed { by: by() },
        Notice::Held { by: by() },
        Notice::HoldReleased { by: by() },
        Notice::RolledBack {
            reason: "judge: error_rate regressed at 25%".into(),
            evidence: "canary 4.1% vs baseline 0.3%".into(),
        },
        Notice::RevertFailed {
            reason: "the revert conflicts with a later commit".into(),
        },
        Notice::Superseded {
            by_deploy_id: "d-43".into(),
        },
        Notice::Failed {
            reason: "the GitOps repository refused the push".into(),
        },
        Notice::ApprovalOutdated {
            reason: "the head moved past 1a2b3c4, which is what was approved".into(),
        },
        Notice::UnapprovedMerge {
            by: "erin".into(),
            reason: "0 of 1 approvals".into(),
            reverted: true,
        },
        Notice::UnapprovedMerge {
            by: "erin".into(),
            reason: "0 of 1 approvals".into(),
            reverted: false,
        },
    ];
    let parts: Vec<(&str, String)> = notices.iter().map(|n| (n.kind(), notice_text(n))).collect();
    for (kind, text) in &parts {
        assert!(text.ends_with('.'), "no template line for {kind}: {text:?}");
        assert!(!text.contains("{{"), "unfilled placeholder in {text:?}");
    }
    check("golden/rollout_notices.txt", &sections(&parts));
}

/// Every reason an approval PR is closed has its comment in
/// `templates/rollout/approval-pr-closed.txt`, filled, under the marker that keeps it single.
#[test]
fn every_approval_pr_closing_is_pinned() {
    let reasons = [
        Closing::Completed,
        Closing::RolledBack,
        Closing::Superseded {
            by_deploy_id: "d-43".into(),
        },
        Closing::Failed,
        Closing::MergedUnapproved {
            by: "erin".into(),
            reverted: true,
        },
        Closing::MergedUnapproved {
            by: "erin".into(),
            reverted: false,
        },
    ];
    let parts: Vec<(&str, String)> = reasons
        .iter()
        .map(|why| (why.kind(), approval_pr_closed("d-42", why)))
        .collect();
    for (kind, text) in &parts {
        assert!(
            text.starts_with("<!-- deploybot:approval-pr:d-42 -->\n"),
            "{kind}: {text:?}"
        );
        assert!(
            text.trim_end().ends_with('.'),
            "no template line for {kind}: {text:?}"
        );
        assert!(!text.contains("{{"), "unfilled placeholder in {text:?}");
    }
    check("golden/rollout_approval_pr_closed.txt", &sections(&parts));
}

#[test]
fn alerts_are_pinned() {
    let notice = Notice::RolledBack {
        reason: "judge: error_rate regressed at 25%".into(),
        evidence: "canary 4.1% vs baseline 0.3%".into(),
    };
    let parts: Vec<(&str, String)> = [Level::Info, Level::Warn, Level::Critical]
        .into_iter()
        .map(|l| {
            let text = alert_text("checkout/production d-42", l, &notice);
            (l.as_str(), text)
        })
        .collect();
    check("golden/alert.txt", &sections(&parts));
}

#[test]
fn commit_statuses_are_pinned() {
    let mut a = Policy::default().assess(&Change::default(), &Thresholds::default());
    let plain = risk_comment::status_description(&a, false);
    a.requires_manual_approval = true;
    let needs_approval = risk_comment::status_description(&a, false);
    let approved = risk_comment::status_description(&a, true);
    let canary = Phase::Canary {
        step: 0,
        weight: w(5),
    };
    check(
        "golden/commit_status.txt",
        &sections(&[
            ("risk", plain),
            ("risk_needs_approval", needs_approval),
            ("risk_approved", approved),
            ("rollout", commit_status("production", &canary)),
        ]),
    );
}

#[test]
fn command_replies_are_pinned() {
    check("golden/rollout_help.md", &reply(&parse("/help")).unwrap());
    check(
        "golden/rollout_unknown_command.md",
        &sections(&[
            ("near miss", reply(&parse("/promte")).unwrap()),
            ("no suggestion", reply(&parse("/frobnicate")).unwrap()),
        ]),
    );
    check(
        "golden/rollout_invalid_command.md",
        &reply(&parse("/pause now")).unwrap(),
    );
    check(
        "golden/rollout_replies.md",
        &sections(&[
            ("no_rollout", status_reply(None)),
            (
                "needs_write_access",
                needs_write_access("mallory", Command::Rollback, "acme/checkout", "read"),
            ),
            (
                "not_applied",
                not_applied(
                    "alice",
                    Command::Promote,
                    "d-42: nothing to promote while paused",
                ),
            ),
        ]),
    );
    let (r, _) = drive(rolled_back_at_25("canary 4.1% vs baseline 0.3%"));
    let rendered = deploybot::cli::rollouts::render_rollout(&r);
    check(
        "golden/rollout_status_reply.md",
        &status_reply(Some(&rendered)),
    );
    // Only the reply's frame is the template's: `command` renders no rollout itself.
    assert!(command::status_reply(Some("x\n\n")).ends_with("x\n```"));
}

#[test]
fn commit_message_golden() {
    check(
        "gitops/commit_message.golden.txt",
        &render_commit(&info(), &changes()),
    );
}

#[test]
fn revert_message_golden() {
    let original: Vec<(String, String)> = info()
        .trailers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    check(
        "gitops/revert_message.golden.txt",
        &render_revert(
            "deploy(checkout/production): ship ghcr.io/acme/checkout:1.4.2",
            "0123456789abcdef0123456789abcdef01234567",
            "Canary failed: error rate 4.1% vs 0.3% baseline (Mann-Whitney U, p=0.002, \
             window 10m, 1200 vs 1180 requests).",
            &original,
        ),
    );
}

#[test]
fn revert_reason_golden() {
    check(
        "golden/revert_reason.txt",
        &revert_reason(
            "judge: error_rate regressed at 25%",
            "canary 4.1% vs baseline 0.3% (Mann-Whitney p=0.001)",
        ),
    );
    assert_eq!(
        revert_reason("rolled back by @alice", ""),
        "rolled back by @alice"
    );
}

#[test]
fn commit_summaries_are_pinned() {
    let image = "ghcr.io/acme/checkout:sha-abc1234";
    check(
        "golden/commit_summary.txt",
        &sections(&[
            ("step", step_summary(image, "production", "25%", false)),
            ("approval", step_summary(image, "production", "5%", true)),
        ]),
    );
}

#[test]
fn pull_request_golden() {
    let t = render_pull_request(
        &info(),
        &changes(),
        "deploybot/checkout/production/d-20261126-0042",
        "main",
        "deploybot/human-edited",
    );
    check(
        "gitops/pull_request.golden.md",
        &format!("{}\n---\n{}", t.title, t.body),
    );
}

/// The verdict comment for a shared regression scenario.
#[test]
fn rollback_comment_matches_the_golden_file() {
    let scenario = Scenario::parse(include_str!(
        "../../fixtures/canary-bench/scenarios/errors-x5.0-00.json"
    ))
    .unwrap();
    let d = replay(&scenario.window, &JudgeConfig::default());
    let text = verdict_markdown(&d, scenario.window.canary_weight);
    check("canary/verdict-errors-x5.0-00.md", &text);
    assert!(text.contains("### Canary verdict: rollback"));
    assert!(!text.contains("{{"), "unfilled placeholder in {text}");
}
