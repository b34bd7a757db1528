//! PromQL templates: `{{service}}`, `{{namespace}}`, `{{environment}}`, `{{track}}` and
//! `{{interval}}` replaced by the values of one query. Checked when the config loads, so a typo in
//! a placeholder is a config error, not a query that silently matches nothing. A service's set of
//! them (`services[].analysis.queries`) is [`QueryTemplates`].
//!
//! Deliberately not a template engine: no conditionals, no filters, no other placeholders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::PromDuration;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["service", "namespace", "environment", "track", "interval"];

/// The values substituted into one query.
#[derive(Debug, Clone)]
pub struct Bindings<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub environment: &'a str,
    pub track: &'a str,
    pub interval: PromDuration,
}

/// Why a template is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must not be empty")]
    Empty,
    #[error(
        "unknown placeholder {{{{{0}}}}} (known: {{{{service}}}}, {{{{namespace}}}}, {{{{environment}}}}, {{{{track}}}}, {{{{interval}}}})"
    )]
    UnknownPlaceholder(String),
    #[error("unclosed '{{{{' at byte {0}")]
    Unclosed(usize),
    #[error("must use {{{{{0}}}}}")]
    Missing(&'static str),
}

/// Checks that every `{{...}}` is a known placeholder and that `required` ones appear.
pub fn check(template: &str, required: &[&'static str]) -> Result<(), TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    let mut used = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or(TemplateError::Unclosed(offset + open))?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(TemplateError::UnknownPlaceholder(name.to_string()));
        }
        used.push(name.to_string());
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    for r in required {
        if !used.iter().any(|u| u == r) {
            return Err(TemplateError::Missing(r));
        }
    }
    Ok(())
}

/// Renders a template that passed [`check`]. Label values are escaped for a double-quoted PromQL
/// string, so a name containing `"` cannot change the query's meaning.
pub fn render(template: &str, b: &Bindings<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        match after[..close].trim() {
            "service" => out.push_str(&escape(b.service)),
            "namespace" => out.push_str(&escape(b.namespace)),
            "environment" => out.push_str(&escape(b.environment)),
            "track" => out.push_str(&escape(b.track)),
            "interval" => out.push_str(&b.interval.to_string()),
            other => {
                // Unreachable after `check`; kept visible rather than dropped so the server's
                // parse error points at it.
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Selects one service's series: the labels every default template uses.
const SELECTOR: &str = r#"service="{{service}}",namespace="{{namespace}}",environment="{{environment}}",track="{{track}}""#;

/// PromQL templates of a service's analysis (`services[].analysis.queries`). Each is evaluated
/// once per track and per interval and must return one series (or, for `latency`, one per `le`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryTemplates {
    /// Requests served by one track in one interval (a counter increment).
    pub requests: String,
    /// Failed requests of one track in one interval. Must give 0, not nothing, when the track
    /// served requests without errors: the default adds `or 0 * <requests>` for that.
    pub errors: String,
    /// Cumulative latency histogram of one track in one interval, one series per `le`.
    /// `null` disables latency analysis.
    pub latency: Option<String>,
    /// Timestamp (unix seconds) of the track's newest sample, for the staleness check.
    /// `null` disables the check.
    pub last_sample: Option<String>,
    /// Value of the `track` label ({{track}}) on the stable version's series.
    pub baseline_track: String,
    /// Value of the `track` label ({{track}}) on the canary's series.
    pub canary_track: String,
    /// Extra counters by metric name (`analysis.judge.extra`): events of one track in one
    /// interval, one series. Like `errors`, a template should give 0, not nothing, when the
    /// track served requests without such events; nothing counts as a missing sample.
    pub extra: BTreeMap<String, String>,
}

impl Default for QueryTemplates {
    fn default() -> Self {
        let requests =
            format!("sum(increase(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}]))");
        let errors = format!(
            "sum(increase(http_requests_total{{{SELECTOR},code=~\"5..\"}}[{{{{interval}}}}])) or 0 * {requests}"
        );
        QueryTemplates {
            requests,
            errors,
            latency: Some(format!(
                "sum by (le) (increase(http_request_duration_seconds_bucket{{{SELECTOR}}}[{{{{interval}}}}]))"
            )),
            last_sample: Some(format!("max(timestamp(http_requests_total{{{SELECTOR}}}))")),
            baseline_track: "baseline".into(),
            canary_track: "canary".into(),
            extra: BTreeMap::new(),
        }
    }
}

impl QueryTemplates {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        // Without {{track}} both tracks would read the same series and always look equal: a
        // canary judged against itself.
        let checks: [(&str, Option<&String>, &[&'static str]); 4] = [
            ("requests", Some(&self.requests), &["track"]),
            ("errors", Some(&self.errors), &["track"]),
            ("latency", self.latency.as_ref(), &["track"]),
            ("last_sample", self.last_sample.as_ref(), &["track"]),
        ];
        for (name, template, required) in checks {
            if let Some(t) = template
                && let Err(e) = check(t, required)
            {
                problems.push(format!("{key}.{name}: {e}"));
            }
        }
        for (name, t) in &self.extra {
            if !super::is_metric_name(name) {
                problems.push(format!("{key}.extra.{name}: {}", super::METRIC_NAME_RULE));
            }
            if let Err(e) = check(t, &["track"]) {
                problems.push(format!("{key}.extra.{name}: {e}"));
            }
        }
        for (name, value) in [
            ("baseline_track", &self.baseline_track),
            ("canary_track", &self.canary_track),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{key}.{name}: must not be empty"));
            }
        }
        if self.baseline_track == self.canary_track {
            problems.push(format!(
                "{key}.canary_track: must differ from {key}.baseline_track ({:?})",
                self.baseline_track
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bindings() -> Bindings<'static> {
        Bindings {
            service: "checkout",
            namespace: "shop",
            environment: "production",
            track: "canary",
            interval: PromDuration::from_secs(60),
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t = r#"sum(increase(x{service="{{service}}",namespace="{{ namespace }}",env="{{environment}}",track="{{track}}"}[{{interval}}]))"#;
        assert_eq!(
            render(t, &bindings()),
            r#"sum(increase(x{service="checkout",namespace="shop",env="production",track="canary"}[1m]))"#
        );
    }

    #[test]
    fn label_values_cannot_break_out_of_their_string() {
        let b = Bindings {
            service: r#"a"}or vector(1)#"#,
            ..bindings()
        };
        assert_eq!(
            render(r#"x{s="{{service}}"}"#, &b),
            r#"x{s="a\"}or vector(1)#"}"#
        );
    }

    #[test]
    fn check_names_the_problem() {
        assert_eq!(check(" ", &[]), Err(TemplateError::Empty));
        assert_eq!(
            check("x{a=\"{{servce}}\"}", &[]),
            Err(TemplateError::UnknownPlaceholder("servce".into()))
        );
        assert_eq!(check("x{{track", &[]), Err(TemplateError::Unclosed(1)));
        assert_eq!(
            check("x{t=\"{{service}}\"}", &["track"]),
            Err(TemplateError::Missing("track"))
        );
        assert_eq!(
            check("x{t=\"{{track}}\"}[{{interval}}]", &["track"]),
            Ok(())
        );
        assert!(
            TemplateError::UnknownPlaceholder("servce".into())
                .to_string()
                .contains("{{servce}}")
        );
    }

    #[test]
    fn default_templates_are_valid() {
        let mut p = Vec::new();
        QueryTemplates::default().validate("q", &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn templates_without_track_or_with_typos_are_rejected() {
        let q: QueryTemplates = yaml_serde::from_str(
            "requests: sum(increase(x[{{interval}}]))\nerrors: 'x{a=\"{{servce}}\"}'\ncanary_track: baseline\n",
        )
        .unwrap();
        let mut p = Vec::new();
        q.validate("services[0].analysis.queries", &mut p);
        let p = p.join("\n");
        assert!(
            p.contains("services[0].analysis.queries.requests: must use {{track}}"),
            "{p}"
        );
        assert!(
            p.contains("services[0].analysis.queries.errors: unknown placeholder {{servce}}"),
            "{p}"
        );
        assert!(
            p.contains("services[0].analysis.queries.canary_track"),
            "{p}"
        );
    }

    #[test]
    fn latency_can_be_disabled_with_null() {
        let q: QueryTemplates = yaml_serde::from_str("latency: null\n").unwrap();
        assert_eq!(q.latency, None);
        assert_eq!(q.requests, QueryTemplates::default().requests);
    }
}
