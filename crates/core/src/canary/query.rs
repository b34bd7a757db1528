//! PromQL templates: `{{service}}`, `{{namespace}}`, `{{environment}}`, `{{track}}` and
//! `{{interval}}` replaced by the values of one query. Checked when the config loads, so a typo in
//! a placeholder is a config error, not a query that silently matches nothing.
//!
//! Deliberately not a template engine: no conditionals, no filters, no other placeholders.

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
}
