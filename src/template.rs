//! `{{name}}` substitution for the text deploybot writes (commit messages, PR bodies and comments,
//! the LLM prompt), whose templates live in `templates/`.
//!
//! One pass over the template: a value is never scanned again, so untrusted text that happens to
//! contain `{{name}}` (a PR title, a diff) stays literal and cannot pull in another value. Unknown
//! names are left as written, which the golden tests of each template would show.

/// Replaces each `{{name}}` of `template` with its value from `values`.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn substitutes_once_and_keeps_unknown_and_unclosed_placeholders() {
        assert_eq!(
            fill("a {{x}} {{ y }} {{z}} {{", &[("x", "1"), ("y", "2")]),
            "a 1 2 {{z}} {{"
        );
        // A value that looks like a placeholder is not expanded again.
        assert_eq!(
            fill("{{a}} {{b}}", &[("a", "{{b}}"), ("b", "B")]),
            "{{b}} B"
        );
    }
}
