//! The deterministic risk policy: a pure function from a [`Change`] to a score, factors, a
//! strategy and an approval flag. It is the floor nothing else may lower.
//!
//! Every file falls in one category, found by glob patterns tried in a fixed order (tests,
//! migration, API contract, docs, infrastructure, frontend; anything else is application code).
//! Each category present contributes a weight; application code grows with its size. Weights are
//! combined as independent chances of trouble: `score = 1 - Π(1 - w)`, so adding a risky file
//! never lowers the score and two medium risks together are riskier than either.
//!
//! The order and the defaults follow the rubric of the article the project started from
//! (*Building a Deployment Agent: CI/CD Orchestration with AI-Powered Decision Making*; docs/decisions.md):
//! migrations and API contracts high, infrastructure/config medium, application medium scaled by
//! size, frontend/cosmetic low, tests and docs minimal, unknown content riskier.
//! No I/O, no clock, no randomness.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::{
    Assessment, AssessmentSource, Change, Factor, FactorKind, FactorSource, RiskTier, Strategy,
    Thresholds, check_unit,
};

/// The file categories the patterns decide, in the order they are tried.
pub const CATEGORY_ORDER: [FactorKind; 6] = [
    FactorKind::Tests,
    FactorKind::Migration,
    FactorKind::ApiContract,
    FactorKind::Docs,
    FactorKind::Infrastructure,
    FactorKind::Frontend,
];

/// Built-in patterns and weight of a category.
pub fn default_rule(kind: FactorKind) -> (f64, &'static [&'static str]) {
    match kind {
        FactorKind::Tests => (
            0.03,
            &[
                "**/tests/**",
                "**/test/**",
                "**/__tests__/**",
                "**/spec/**",
                "**/testdata/**",
                "**/*_test.go",
                "**/*_test.py",
                "**/test_*.py",
                "**/*_test.rs",
                "**/*.test.{js,jsx,ts,tsx,mjs,cjs}",
                "**/*.spec.{js,jsx,ts,tsx,mjs,cjs}",
                "**/*_spec.rb",
                "**/*Test.{java,kt,scala}",
                "**/*Tests.{java,kt,cs}",
            ],
        ),
        FactorKind::Migration => (
            0.7,
            &[
                "**/migrations/**",
                "**/migration/**",
                "**/migrate/**",
                "**/alembic/**",
                "**/flyway/**",
                "**/liquibase/**",
                "**/*.sql",
                "**/db/schema.rb",
            ],
        ),
        FactorKind::ApiContract => (
            0.65,
            &[
                "**/*.proto",
                "**/openapi*.{yaml,yml,json}",
                "**/swagger*.{yaml,yml,json}",
                "**/asyncapi*.{yaml,yml,json}",
                "**/*.graphql",
                "**/*.graphqls",
                "**/*.gql",
                "**/*.avsc",
                "**/*.thrift",
                "**/crds/**",
                "**/*crd*.{yaml,yml}",
                "**/*customresourcedefinition*.{yaml,yml}",
            ],
        ),
        FactorKind::Docs => (
            0.02,
            &[
                "**/*.md",
                "**/*.markdown",
                "**/*.rst",
                "**/*.adoc",
                "**/docs/**",
                "**/doc/**",
                "**/LICENSE*",
                "**/COPYING*",
                "**/CHANGELOG*",
                "**/AUTHORS*",
                "**/CODEOWNERS",
            ],
        ),
        FactorKind::Infrastructure => (
            0.45,
            &[
                "**/Dockerfile",
                "**/Dockerfile.*",
                "**/*.dockerfile",
                "**/docker-compose*.{yml,yaml}",
                "**/compose.{yml,yaml}",
                "**/k8s/**",
                "**/kubernetes/**",
                "**/manifests/**",
                "**/deploy/**",
                "**/deployment/**",
                "**/charts/**",
                "**/helm/**",
                "**/kustomization.{yaml,yml}",
                "**/values*.{yaml,yml}",
                "**/*.tf",
                "**/*.tfvars",
                "**/.env",
                "**/.env.*",
                "**/*.env",
                "**/config/**",
                "**/*.{yaml,yml,toml,ini,conf,cfg,properties,hcl}",
                "**/.github/workflows/**",
                "**/requirements*.txt",
                "**/Makefile",
                "**/*.{sh,bash}",
            ],
        ),
        FactorKind::Frontend => (
            0.12,
            &[
                "**/*.{css,scss,sass,less,styl}",
                "**/*.{png,jpg,jpeg,gif,svg,ico,webp,avif,bmp}",
                "**/*.{woff,woff2,ttf,otf,eot}",
                "**/*.{html,htm,hbs,handlebars,mustache,ejs,njk,jinja,jinja2,j2,erb,haml,pug}",
            ],
        ),
        // Not pattern-driven: application is the fallback, the rest are not file categories.
        _ => (0.0, &[]),
    }
}

/// `risk.categories`: per-category overrides. Unset keys keep the built-in defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategoryRules {
    pub tests: CategoryRule,
    pub migration: CategoryRule,
    pub api_contract: CategoryRule,
    pub docs: CategoryRule,
    pub infrastructure: CategoryRule,
    pub frontend: CategoryRule,
}

impl CategoryRules {
    fn get(&self, kind: FactorKind) -> &CategoryRule {
        match kind {
            FactorKind::Tests => &self.tests,
            FactorKind::Migration => &self.migration,
            FactorKind::ApiContract => &self.api_contract,
            FactorKind::Docs => &self.docs,
            FactorKind::Infrastructure => &self.infrastructure,
            FactorKind::Frontend => &self.frontend,
            other => unreachable!("{other:?} is not a pattern category"),
        }
    }

    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        for kind in CATEGORY_ORDER {
            let rule = self.get(kind);
            let key = format!("{key}.{}", kind.as_str());
            if let Some(w) = rule.weight {
                check_unit(&format!("{key}.weight"), w, problems);
            }
            let pats = rule.patterns.iter().flatten().chain(&rule.extra_patterns);
            for (i, p) in pats.enumerate() {
                if let Err(e) = glob(p) {
                    problems.push(format!("{key}: pattern {i} {p:?}: {e}"));
                }
            }
        }
    }
}

/// One category's overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategoryRule {
    /// Weight in [0, 1] a change in this category contributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Replaces the built-in patterns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<String>>,
    /// Added to the (built-in or replaced) patterns.
    pub extra_patterns: Vec<String>,
}

/// `risk.application`: application code (every file no pattern claims), scaled by size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApplicationRule {
    /// Weight of the smallest application change. Default 0.3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Weight added at full size. Default 0.25.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_weight: Option<f64>,
    /// Changed lines (deletions counted `deletion_factor` times) that count as full size.
    /// Default 1000; the scale is logarithmic below it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines_for_full_size: Option<u32>,
    /// Files touched that count as full size. Default 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_for_full_size: Option<u32>,
    /// How much more a deleted line counts than an added one. Default 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_factor: Option<f64>,
}

impl ApplicationRule {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if let Some(w) = self.weight {
            check_unit(&format!("{key}.weight"), w, problems);
        }
        if let Some(w) = self.size_weight {
            check_unit(&format!("{key}.size_weight"), w, problems);
        }
        if self.lines_for_full_size == Some(0) {
            problems.push(format!("{key}.lines_for_full_size: must be at least 1"));
        }
        if self.files_for_full_size == Some(0) {
            problems.push(format!("{key}.files_for_full_size: must be at least 1"));
        }
        if let Some(d) = self.deletion_factor
            && !(0.0..=10.0).contains(&d)
        {
            problems.push(format!(
                "{key}.deletion_factor: must be between 0 and 10, got {d}"
            ));
        }
    }
}

/// `risk.labels[]`: what a pull-request label does. A label can raise the score and force a
/// strategy; it can add an approval requirement but never remove one. Anyone with triage access
/// sets labels, so a label never lowers the score: a lower score could drop a required approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRule {
    /// Label name, compared case-insensitively (e.g. `hotfix`, `risk/override-low`).
    pub label: String,
    /// Added to the score, then clamped to [0, 1]; never negative (`validate` refuses it).
    #[serde(default)]
    pub adjust: f64,
    /// Forces this strategy regardless of the score.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Requires a human approval when the label is present.
    #[serde(default)]
    pub require_approval: bool,
}

impl LabelRule {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if self.label.trim().is_empty() {
            problems.push(format!("{key}.label: must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.adjust) {
            problems.push(format!(
                "{key}.adjust: must be between 0 and 1, got {}; a label can raise the score but \
                 never lower it (anyone with triage access sets labels, and a lower score could \
                 drop a required approval)",
                self.adjust
            ));
        }
    }
}

/// A policy whose patterns did not compile.
#[derive(Debug, thiserror::Error)]
#[error("risk.categories.{category}: pattern {pattern:?}: {message}")]
pub struct PolicyError {
    pub category: &'static str,
    pub pattern: String,
    pub message: String,
}

fn glob(p: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .case_insensitive(true)
        .build()
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    categories: Vec<(FactorKind, f64, GlobSet)>,
    app_weight: f64,
    size_weight: f64,
    lines_full: f64,
    files_full: f64,
    deletion_factor: f64,
    unknown_weight: f64,
    labels: Vec<LabelRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(&super::RiskConfig::default()).expect("built-in patterns compile")
    }
}

impl Policy {
    pub fn new(config: &super::RiskConfig) -> Result<Policy, PolicyError> {
        let mut categories = Vec::new();
        for kind in CATEGORY_ORDER {
            let rule = config.categories.get(kind);
            let (default_weight, default_patterns) = default_rule(kind);
            let patterns: Vec<String> = match &rule.patterns {
                Some(p) => p.clone(),
                None => default_patterns.iter().map(|s| s.to_string()).collect(),
            };
            let mut set = GlobSetBuilder::new();
            for p in patterns.iter().chain(&rule.extra_patterns) {
                set.add(glob(p).map_err(|e| PolicyError {
                    category: kind.as_str(),
                    pattern: p.clone(),
                    message: e.to_string(),
                })?);
            }
            let set = set.build().map_err(|e| PolicyError {
                category: kind.as_str(),
                pattern: String::new(),
                message: e.to_string(),
            })?;
            categories.push((kind, rule.weight.unwrap_or(default_weight), set));
        }
        let a = &config.application;
        Ok(Policy {
            categories,
            app_weight: a.weight.unwrap_or(0.3),
            size_weight: a.size_weight.unwrap_or(0.25),
            lines_full: f64::from(a.lines_for_full_size.unwrap_or(1000).max(1)),
            files_full: f64::from(a.files_for_full_size.unwrap_or(20).max(1)),
            deletion_factor: a.deletion_factor.unwrap_or(2.0),
            unknown_weight: config.unknown_content_weight.unwrap_or(0.5),
            labels: config.labels.clone(),
        })
    }

    /// The category of one path.
    pub fn classify(&self, path: &str) -> FactorKind {
        let path = path.trim_start_matches("./");
        self.categories
            .iter()
            .find(|(_, _, set)| set.is_match(path))
            .map_or(FactorKind::Application, |(k, _, _)| *k)
    }

    fn weight_of(&self, kind: FactorKind) -> f64 {
        match kind {
            FactorKind::Application => self.app_weight,
            k => self
                .categories
                .iter()
                .find(|(c, _, _)| *c == k)
                .map_or(0.0, |(_, w, _)| *w),
        }
    }

    /// The category weight of a file, for ordering files riskiest first.
    pub fn file_weight(&self, f: &super::ChangedFile) -> f64 {
        self.weight_of(self.file_category(f))
    }

    /// The riskier category of a file's new and old path (moving a migration is a migration).
    pub fn file_category(&self, f: &super::ChangedFile) -> FactorKind {
        let new = self.classify(&f.path);
        match &f.previous_path {
            Some(old) => {
                let old = self.classify(old);
                if self.weight_of(old) > self.weight_of(new) {
                    old
                } else {
                    new
                }
            }
            None => new,
        }
    }

    /// Assesses a change. Pure: the same change and thresholds always give the same result.
    pub fn assess(&self, change: &Change, thresholds: &Thresholds) -> Assessment {
        let mut groups: BTreeMap<FactorKind, Vec<&super::ChangedFile>> = BTreeMap::new();
        for f in &change.files {
            groups.entry(self.file_category(f)).or_default().push(f);
        }

        let mut factors = Vec::new();
        for (kind, files) in &groups {
            let names: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
            let added: u64 = files.iter().map(|f| u64::from(f.additions)).sum();
            let deleted: u64 = files.iter().map(|f| u64::from(f.deletions)).sum();
            let (weight, summary) = if *kind == FactorKind::Application {
                let size = self.application_size(files.len(), added, deleted);
                (
                    self.app_weight + self.size_weight * size,
                    format!(
                        "application code: {} file(s), +{added} -{deleted} (size {:.0}% of full scale)",
                        files.len(),
                        size * 100.0
                    ),
                )
            } else {
                (
                    self.weight_of(*kind),
                    format!(
                        "{}: {} file(s), +{added} -{deleted}",
                        describe(*kind),
                        files.len()
                    ),
                )
            };
            factors.push(Factor {
                category: *kind,
                summary,
                files: names,
                weight: round3(weight.clamp(0.0, 1.0)),
                source: FactorSource::Policy,
            });
        }

        let unseen: Vec<String> = change
            .files
            .iter()
            .filter(|f| {
                f.patch_truncated
                    || (f.binary
                        && !matches!(
                            self.file_category(f),
                            FactorKind::Frontend | FactorKind::Docs | FactorKind::Tests
                        ))
            })
            .map(|f| f.path.clone())
            .collect();
        let unlisted = change
            .truncated_patches
            .saturating_sub(change.files.iter().filter(|f| f.patch_truncated).count());
        if !unseen.is_empty() || unlisted > 0 {
            let mut summary = format!(
                "content not visible for {} file(s): scored as unknown, not as harmless",
                unseen.len() + unlisted
            );
            if unlisted > 0 {
                summary.push_str(&format!(" ({unlisted} not listed by the source)"));
            }
            factors.push(Factor {
                category: FactorKind::UnknownContent,
                summary,
                files: unseen,
                weight: round3(self.unknown_weight),
                source: FactorSource::Policy,
            });
        }

        let mut score = 1.0 - factors.iter().map(|f| 1.0 - f.weight).product::<f64>();

        let mut forced: Option<Strategy> = None;
        let mut label_approval = false;
        for rule in &self.labels {
            if change
                .labels
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&rule.label))
            {
                // Refused by the config already; a rule built in code cannot lower it either.
                let adjust = rule.adjust.max(0.0);
                score += adjust;
                if let Some(s) = rule.strategy {
                    forced = Some(forced.map_or(s, |f| f.max(s)));
                }
                label_approval |= rule.require_approval;
                let mut what = Vec::new();
                if adjust != 0.0 {
                    what.push(format!("score {adjust:+.2}"));
                }
                if let Some(s) = rule.strategy {
                    what.push(format!("strategy {s}"));
                }
                if rule.require_approval {
                    what.push("approval required".into());
                }
                if what.is_empty() {
                    what.push("no effect configured".into());
                }
                factors.push(Factor {
                    category: FactorKind::Label,
                    summary: format!("label `{}`: {}", rule.label, what.join(", ")),
                    files: Vec::new(),
                    weight: adjust,
                    source: FactorSource::Policy,
                });
            }
        }

        let score = round3(score.clamp(0.0, 1.0));
        Assessment {
            risk_score: score,
            tier: RiskTier::of(score),
            // A label may ask for more care, never less: anyone with triage access sets labels.
            recommended_strategy: forced.map_or(thresholds.strategy_for(score), |f| {
                f.max(thresholds.strategy_for(score))
            }),
            requires_manual_approval: thresholds.approval_for(score) || label_approval,
            risk_factors: factors,
            source: AssessmentSource::Policy,
            rationale: None,
            model: None,
            prompt_version: None,
        }
    }

    /// Size in [0, 1]: the larger of the line scale (logarithmic, deletions weighted) and the
    /// file scale (linear).
    fn application_size(&self, files: usize, added: u64, deleted: u64) -> f64 {
        let lines = added as f64 + deleted as f64 * self.deletion_factor;
        let by_lines = ((1.0 + lines).ln() / (1.0 + self.lines_full).ln()).min(1.0);
        let by_files = (files as f64 / self.files_full).min(1.0);
        by_lines.max(by_files)
    }
}

fn describe(kind: FactorKind) -> &'static str {
    match kind {
        FactorKind::Migration => "database migration",
        FactorKind::ApiContract => "API contract",
        FactorKind::Infrastructure => "infrastructure or runtime configuration",
        FactorKind::Application => "application code",
        FactorKind::Frontend => "frontend or cosmetic",
        FactorKind::Tests => "tests only",
        FactorKind::Docs => "documentation",
        _ => kind.as_str(),
    }
}

/// Three decimals keep JSON, comments and golden files stable across platforms.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{ChangedFile, FileStatus, RiskConfig};

    fn file(path: &str, add: u32, del: u32) -> ChangedFile {
        let mut f = ChangedFile::new(path, FileStatus::Modified);
        f.additions = add;
        f.deletions = del;
        f
    }

    fn change(files: Vec<ChangedFile>) -> Change {
        Change {
            files,
            ..Change::default()
        }
    }

    fn assess(files: Vec<ChangedFile>) -> Assessment {
        Policy::default().assess(&change(files), &Thresholds::default())
    }

    #[test]
    fn each_path_lands_in_its_category() {
        let p = Policy::default();
        let cases = [
            ("db/migrate/20240101_add_orders.rb", FactorKind::Migration),
            ("app/migrations/0002_auto.py", FactorKind::Migration),
            ("alembic/versions/abc.py", FactorKind::Migration),
            ("schema/001.sql", FactorKind::Migration),
            ("api/v1/orders.proto", FactorKind::ApiContract),
            ("openapi.yaml", FactorKind::ApiContract),
            ("docs/api/swagger.json", FactorKind::ApiContract),
            ("graph/schema.graphql", FactorKind::ApiContract),
            ("charts/app/crds/rollout.yaml", FactorKind::ApiContract),
            ("Dockerfile", FactorKind::Infrastructure),
            ("deploy/k8s/deployment.yaml", FactorKind::Infrastructure),
            ("charts/app/values-prod.yaml", FactorKind::Infrastructure),
            (
                "overlays/prod/kustomization.yaml",
                FactorKind::Infrastructure,
            ),
            (".env.production", FactorKind::Infrastructure),
            ("config/settings.toml", FactorKind::Infrastructure),
            ("src/main.rs", FactorKind::Application),
            ("pkg/server/handler.go", FactorKind::Application),
            ("web/src/App.tsx", FactorKind::Application),
            ("web/styles/site.css", FactorKind::Frontend),
            ("static/logo.svg", FactorKind::Frontend),
            ("templates/index.html", FactorKind::Frontend),
            ("tests/it/orders.rs", FactorKind::Tests),
            ("pkg/server/handler_test.go", FactorKind::Tests),
            ("web/src/App.test.tsx", FactorKind::Tests),
            ("tests/fixtures/seed.sql", FactorKind::Tests),
            ("README.md", FactorKind::Docs),
            ("docs/guide/intro.rst", FactorKind::Docs),
            ("LICENSE", FactorKind::Docs),
        ];
        for (path, want) in cases {
            assert_eq!(p.classify(path), want, "{path}");
        }
    }

    /// (files, expected tier, strategy, approval)
    #[test]
    fn categories_and_mixtures_land_in_their_bands() {
        use FactorKind as K;
        type Case = (
            &'static str,
            Vec<ChangedFile>,
            RiskTier,
            Strategy,
            bool,
            FactorKind,
        );
        let cases: Vec<Case> = vec![
            (
                "docs only",
                vec![file("README.md", 10, 2)],
                RiskTier::Low,
                Strategy::Direct,
                false,
                K::Docs,
            ),
            (
                "tests only",
                vec![file("tests/a.rs", 200, 50), file("src/b_test.go", 10, 0)],
                RiskTier::Low,
                Strategy::Direct,
                false,
                K::Tests,
            ),
            (
                "css only",
                vec![file("web/site.css", 40, 30)],
                RiskTier::Low,
                Strategy::Direct,
                false,
                K::Frontend,
            ),
            (
                "small app change",
                vec![file("src/lib.rs", 5, 2)],
                RiskTier::Medium,
                Strategy::Canary25,
                false,
                K::Application,
            ),
            (
                "big app change",
                vec![file("src/lib.rs", 900, 400)],
                RiskTier::High,
                Strategy::Canary10,
                false,
                K::Application,
            ),
            (
                "infra",
                vec![file("deploy/app.yaml", 3, 1)],
                RiskTier::Medium,
                Strategy::Canary10,
                false,
                K::Infrastructure,
            ),
            (
                "proto",
                vec![file("api/orders.proto", 3, 1)],
                RiskTier::High,
                Strategy::Canary5,
                false,
                K::ApiContract,
            ),
            (
                "migration",
                vec![file("migrations/0003.sql", 3, 0)],
                RiskTier::High,
                Strategy::Canary5,
                true,
                K::Migration,
            ),
            (
                "migration + app",
                vec![file("migrations/0003.sql", 3, 0), file("src/db.rs", 20, 5)],
                RiskTier::Critical,
                Strategy::Canary5,
                true,
                K::Migration,
            ),
            (
                "app + infra",
                vec![file("src/a.rs", 10, 0), file("Dockerfile", 1, 1)],
                RiskTier::High,
                Strategy::Canary5,
                false,
                K::Infrastructure,
            ),
            (
                "docs + tests",
                vec![file("README.md", 1, 0), file("tests/a.rs", 1, 0)],
                RiskTier::Low,
                Strategy::Direct,
                false,
                K::Docs,
            ),
        ];
        for (name, files, tier, strategy, approval, kind) in cases {
            let a = assess(files);
            assert_eq!(a.tier, tier, "{name}: {a:#?}");
            assert_eq!(a.recommended_strategy, strategy, "{name}: {a:#?}");
            assert_eq!(a.requires_manual_approval, approval, "{name}: {a:#?}");
            assert!(a.risk_factors.iter().any(|f| f.category == kind), "{name}");
            assert!((0.0..=1.0).contains(&a.risk_score));
            assert_eq!(a.source, AssessmentSource::Policy);
        }
    }

    #[test]
    fn application_risk_grows_with_size_files_and_deletions() {
        let small = assess(vec![file("src/a.rs", 10, 0)]).risk_score;
        let more_lines = assess(vec![file("src/a.rs", 300, 0)]).risk_score;
        let deletions = assess(vec![file("src/a.rs", 150, 150)]).risk_score;
        let many_files = assess(
            (0..20)
                .map(|i| file(&format!("src/m{i}.rs"), 1, 0))
                .collect(),
        )
        .risk_score;
        assert!(small < more_lines, "{small} {more_lines}");
        assert!(more_lines < deletions, "{more_lines} {deletions}");
        assert!(small < many_files, "{small} {many_files}");
        assert!(assess(vec![file("src/a.rs", 100_000, 100_000)]).risk_score <= 0.55 + 1e-9);
    }

    #[test]
    fn adding_a_file_never_lowers_the_score() {
        let base = vec![file("src/a.rs", 40, 3), file("Dockerfile", 2, 1)];
        let before = assess(base.clone()).risk_score;
        for extra in ["README.md", "tests/x.rs", "a.css", "m/0001.sql", "src/b.rs"] {
            let mut files = base.clone();
            files.push(file(extra, 1, 0));
            assert!(assess(files).risk_score >= before, "{extra}");
        }
    }

    #[test]
    fn renaming_a_migration_is_still_a_migration() {
        let mut f = file("archive/old.txt", 0, 0);
        f.previous_path = Some("migrations/0001.sql".into());
        f.status = FileStatus::Renamed;
        assert_eq!(
            assess(vec![f]).risk_factors[0].category,
            FactorKind::Migration
        );
    }

    #[test]
    fn unknown_content_raises_risk() {
        let seen = assess(vec![file("README.md", 1, 0)]);
        let mut hidden = file("README.md", 1, 0);
        hidden.patch_truncated = true;
        let mut c = change(vec![hidden]);
        c.truncated_patches = 3; // two more the source did not list
        let a = Policy::default().assess(&c, &Thresholds::default());
        assert!(a.risk_score > seen.risk_score + 0.4, "{a:#?}");
        let f = a
            .risk_factors
            .iter()
            .find(|f| f.category == FactorKind::UnknownContent)
            .unwrap();
        assert!(f.summary.contains("3 file(s)"), "{}", f.summary);
        let mut bin = file("lib/native.so", 0, 0);
        bin.binary = true;
        assert!(
            assess(vec![bin])
                .risk_factors
                .iter()
                .any(|f| f.category == FactorKind::UnknownContent)
        );
        let mut img = file("static/a.png", 0, 0);
        img.binary = true;
        assert!(
            !assess(vec![img])
                .risk_factors
                .iter()
                .any(|f| f.category == FactorKind::UnknownContent)
        );
    }

    /// A label's strategy can make a rollout more careful than its score asks, never less.
    #[test]
    fn a_label_strategy_only_ever_adds_care() {
        let cfg = RiskConfig {
            labels: vec![LabelRule {
                label: "careful".into(),
                adjust: 0.0,
                strategy: Some(Strategy::Canary5),
                require_approval: false,
            }],
            ..RiskConfig::default()
        };
        let mut c = change(vec![file("README.md", 1, 1)]);
        c.labels = vec!["careful".into()];
        let a = Policy::new(&cfg)
            .unwrap()
            .assess(&c, &Thresholds::default());
        assert_eq!(a.recommended_strategy, Strategy::Canary5);
    }

    #[test]
    fn labels_count_only_when_configured_and_never_drop_approval() {
        let files = vec![file("migrations/0001.sql", 3, 0)];
        let mut c = change(files);
        c.labels = vec!["hotfix".into(), "risk/override-low".into()];
        let plain = Policy::default().assess(&c, &Thresholds::default());
        assert!(
            !plain
                .risk_factors
                .iter()
                .any(|f| f.category == FactorKind::Label)
        );

        let cfg = RiskConfig {
            labels: vec![
                LabelRule {
                    label: "HOTFIX".into(),
                    adjust: 0.0,
                    strategy: Some(Strategy::Direct),
                    require_approval: true,
                },
                LabelRule {
                    label: "risk/override-low".into(),
                    adjust: -0.5,
                    strategy: None,
                    require_approval: false,
                },
            ],
            ..RiskConfig::default()
        };
        let a = Policy::new(&cfg)
            .unwrap()
            .assess(&c, &Thresholds::default());
        // `hotfix` asks for direct; the migration's threshold strategy is more careful and wins.
        assert_eq!(
            a.recommended_strategy,
            Thresholds::default().strategy_for(a.risk_score)
        );
        assert_ne!(a.recommended_strategy, Strategy::Direct);
        assert!(
            (a.risk_score - 0.7).abs() < 1e-9,
            "a negative adjust (refused by the config) lowers nothing: {}",
            a.risk_score
        );
        assert!(a.requires_manual_approval, "hotfix requires approval");
        assert_eq!(
            a.risk_factors
                .iter()
                .filter(|f| f.category == FactorKind::Label)
                .count(),
            2
        );
    }

    #[test]
    fn configured_patterns_replace_or_extend_the_defaults() {
        let cfg: RiskConfig = yaml_serde::from_str(
            "categories:\n  migration:\n    patterns: ['schema/**']\n    weight: 0.9\n  frontend:\n    extra_patterns: ['**/*.tsx']\n",
        )
        .unwrap();
        let p = Policy::new(&cfg).unwrap();
        assert_eq!(p.classify("migrations/0001.sql"), FactorKind::Application);
        assert_eq!(p.classify("schema/0001.sql"), FactorKind::Migration);
        assert_eq!(p.classify("web/App.tsx"), FactorKind::Frontend);
        assert_eq!(p.classify("web/a.css"), FactorKind::Frontend);
        let a = p.assess(
            &change(vec![file("schema/1.sql", 1, 0)]),
            &Thresholds::default(),
        );
        assert_eq!(a.risk_score, 0.9);
    }

    #[test]
    fn a_bad_pattern_is_a_config_problem_naming_its_key() {
        let cfg: RiskConfig =
            yaml_serde::from_str("categories:\n  docs:\n    extra_patterns: ['a/{b']\n").unwrap();
        let mut p = Vec::new();
        cfg.validate("risk", &mut p);
        assert!(
            p.iter().any(|m| m.starts_with("risk.categories.docs")),
            "{p:?}"
        );
        assert!(Policy::new(&cfg).is_err());
    }

    #[test]
    fn an_empty_change_is_direct() {
        let a = assess(vec![]);
        assert_eq!(a.risk_score, 0.0);
        assert_eq!(a.recommended_strategy, Strategy::Direct);
    }
}
