//! Golden files pin the user-visible text: the PR comment and the model prompt. Refresh them with
//! `UPDATE_GOLDEN=1 cargo test --test it risk::golden` and review the diff.

use deploybot_core::risk::combine::{ModelOutcome, combine};
use deploybot_core::risk::diff::parse_unified_diff;
use deploybot_core::risk::model::ModelVerdict;
use deploybot_core::risk::{Policy, Thresholds, comment, prompt};

use crate::support::fixtures_dir;
use crate::support::golden::check;

fn migration() -> deploybot_core::risk::Change {
    let text =
        std::fs::read_to_string(fixtures_dir().join("diffs/migration-deploybot-deliveries.diff"))
            .unwrap();
    parse_unified_diff(&text).unwrap().into_change()
}

#[test]
fn policy_only_comment() {
    let a = Policy::default().assess(&migration(), &Thresholds::default());
    check(
        "golden/risk_comment_policy.md",
        &comment::render(
            &a,
            "example-org/checkout",
            42,
            "ac30d055fb371f1a70fcfdd914e853b2e01845ee",
            "`checkout` (released when merged)",
        ),
    );
}

#[test]
fn comment_with_model_factors_and_rationale() {
    let t = Thresholds::default();
    let floor = Policy::default().assess(&migration(), &t);
    let a = combine(
        floor,
        ModelOutcome::Answered {
            model: "smollm2-135m-instruct".into(),
            prompt_version: prompt::prompt_version().into(),
            verdict: ModelVerdict {
                risk_score: 0.82,
                risk_factors: vec!["new table on the delivery path".into(), "no down-migration".into()],
                recommended_strategy: deploybot_core::risk::Strategy::Canary5,
                requires_manual_approval: true,
                rationale: "The migration creates the durable queue table.\nRolling it back loses queued deliveries.".into(),
            },
        },
        &t,
    );
    check(
        "golden/risk_comment_llm.md",
        &comment::render(
            &a,
            "example-org/checkout",
            42,
            "ac30d055fb371f1a70fcfdd914e853b2e01845ee",
            "`checkout` (released when merged)",
        ),
    );
}

#[test]
fn comment_when_the_model_failed() {
    let t = Thresholds::default();
    let css = std::fs::read_to_string(fixtures_dir().join("diffs/css-syn-token.diff")).unwrap();
    let floor = Policy::default().assess(&parse_unified_diff(&css).unwrap().into_change(), &t);
    let a = combine(
        floor,
        ModelOutcome::Failed {
            model: "gpt-4o-mini".into(),
            prompt_version: prompt::prompt_version().into(),
            reason: "the model did not answer within 30s".into(),
        },
        &t,
    );
    check(
        "golden/risk_comment_model_failed.md",
        &comment::render(
            &a,
            "example-org/checkout",
            7,
            "0123456789abcdef",
            "`checkout` (released when merged)",
        ),
    );
}

#[test]
fn prompt_for_a_migration() {
    let p = Policy::default();
    let change = migration();
    let floor = p.assess(&change, &Thresholds::default());
    let built = prompt::build(&change, &floor, &p, 12_000);
    check(
        "golden/risk_prompt_migration.txt",
        &format!(
            "=== system ===\n{}\n=== user ===\n{}\n",
            built.system, built.user
        ),
    );
}
