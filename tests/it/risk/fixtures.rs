//! Real upstream diffs (fixtures/diffs, sources in its README) land in the right bands.

use deploybot_core::risk::diff::parse_unified_diff;
use deploybot_core::risk::{FactorKind, Policy, RiskTier, Strategy, Thresholds};

use crate::support::fixtures_dir;

fn assess(name: &str) -> deploybot_core::risk::Assessment {
    let text = std::fs::read_to_string(fixtures_dir().join("diffs").join(name)).unwrap();
    let change = parse_unified_diff(&text).unwrap().into_change();
    Policy::default().assess(&change, &Thresholds::default())
}

#[test]
fn real_diffs_land_in_their_bands() {
    // (fixture, tier, strategy, approval, the factor that must be present)
    let cases = [
        (
            "migration-deploybot-deliveries.diff",
            RiskTier::High,
            Strategy::Canary5,
            true,
            FactorKind::Migration,
        ),
        (
            "proto-pubsub-schema.diff",
            RiskTier::High,
            Strategy::Canary5,
            false,
            FactorKind::ApiContract,
        ),
        (
            "app-base64-src.diff",
            RiskTier::High,
            Strategy::Canary10,
            false,
            FactorKind::Application,
        ),
        (
            "css-syn-token.diff",
            RiskTier::Low,
            Strategy::Direct,
            false,
            FactorKind::Frontend,
        ),
        (
            "tests-hashbrown.diff",
            RiskTier::Low,
            Strategy::Direct,
            false,
            FactorKind::Tests,
        ),
        (
            "readme-base64.diff",
            RiskTier::Low,
            Strategy::Direct,
            false,
            FactorKind::Docs,
        ),
    ];
    for (name, tier, strategy, approval, kind) in cases {
        let a = assess(name);
        assert_eq!(a.tier, tier, "{name}: {a:#?}");
        assert_eq!(a.recommended_strategy, strategy, "{name}: {a:#?}");
        assert_eq!(a.requires_manual_approval, approval, "{name}: {a:#?}");
        assert_eq!(a.risk_factors.len(), 1, "{name}: one category only: {a:#?}");
        assert_eq!(a.risk_factors[0].category, kind, "{name}");
    }
}

#[test]
fn real_diffs_parse_to_upstream_line_counts() {
    let text = std::fs::read_to_string(fixtures_dir().join("diffs/app-base64-src.diff")).unwrap();
    let d = parse_unified_diff(&text).unwrap();
    // `git diff --stat` of the same diff: 19 files changed, 2483 insertions(+), 559 deletions(-)
    assert_eq!(d.files.len(), 19);
    assert_eq!(d.files.iter().map(|f| f.additions).sum::<u32>(), 2483);
    assert_eq!(d.files.iter().map(|f| f.deletions).sum::<u32>(), 559);
    assert!(d.files.iter().all(|f| !f.patch_truncated));

    let text =
        std::fs::read_to_string(fixtures_dir().join("diffs/migration-deploybot-deliveries.diff"))
            .unwrap();
    let c = parse_unified_diff(&text).unwrap().into_change();
    assert_eq!(
        c.title,
        "Lay out the deploybot crate: config, secrets, store, CLI skeleton"
    );
    assert_eq!(c.files[0].additions, 16);
}

#[test]
fn a_truncated_real_diff_is_riskier_than_the_whole() {
    let text = std::fs::read_to_string(fixtures_dir().join("diffs/readme-base64.diff")).unwrap();
    let whole = assess("readme-base64.diff");
    let cut: String = text
        .lines()
        .take(text.lines().count() - 2)
        .map(|l| format!("{l}\n"))
        .collect();
    let change = parse_unified_diff(&cut).unwrap().into_change();
    assert_eq!(change.truncated_patches, 1);
    let a = Policy::default().assess(&change, &Thresholds::default());
    assert!(a.risk_score > whole.risk_score, "{a:#?}");
    assert!(
        a.risk_factors
            .iter()
            .any(|f| f.category == FactorKind::UnknownContent)
    );
}
