//! Secret redaction: the pass every piece of untrusted text (diff, title, body, commit messages,
//! file names) goes through before it may leave for a language model.
//!
//! It replaces what looks like a credential with `[REDACTED:<kind>]` and counts what it removed.
//! It errs on the side of removing too much (a variable named `password` loses its value even if
//! that value was harmless): the model judges structure, not literal values. It does not promise
//! to catch every secret; it is one layer, and the model endpoint is chosen by the operator.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Text with secrets replaced, and how many of each kind were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    pub found: BTreeMap<&'static str, usize>,
}

impl Redacted {
    pub fn total(&self) -> usize {
        self.found.values().sum()
    }
}

struct Rule {
    kind: &'static str,
    re: Regex,
    /// Capture group kept verbatim before the redacted part (0 = none).
    keep_prefix: usize,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |kind, pattern: &str, keep_prefix| Rule {
        kind,
        re: Regex::new(pattern).expect("redaction pattern compiles"),
        keep_prefix,
    };
    vec![
        // Whole PEM blocks, including diff prefixes on each line; an unterminated block (a cut
        // diff) is redacted to the end.
        rule(
            "private_key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----(?s:.*?)(-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
            0,
        ),
        rule(
            "github_token",
            r"\b(gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
            0,
        ),
        rule(
            "aws_access_key_id",
            r"\b(AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
            0,
        ),
        rule("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0),
        rule(
            "api_key",
            r"\b(sk|rk|pk)[-_](live|test|proj|ant)?[-_]?[A-Za-z0-9_-]{20,}",
            0,
        ),
        rule("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0),
        rule(
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            0,
        ),
        // `scheme://user:password@host`: keep the scheme and user, drop the password.
        rule(
            "url_password",
            r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(@)",
            1,
        ),
        rule(
            "bearer_token",
            r"(?i)(\b(?:bearer|token|basic)\s+)[A-Za-z0-9._~+/=-]{16,}",
            1,
        ),
        // `password = "x"`, `API_KEY: x`, `"client_secret": "x"`, `--password=x`.
        rule(
            "assignment",
            r#"(?i)([A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential)s?[A-Za-z0-9_.-]*["']?\s*(?:[:=]|=>)\s*["']?)[^\s"',;)}\]]{3,}"#,
            1,
        ),
    ]
});

/// Redacts `input`.
pub fn redact(input: &str) -> Redacted {
    let mut text = input.to_string();
    let mut found = BTreeMap::new();
    for rule in RULES.iter() {
        let mut n = 0usize;
        let replaced = rule.re.replace_all(&text, |c: &Captures<'_>| {
            let whole = &c[0];
            let prefix_len = if rule.keep_prefix > 0 {
                c.get(rule.keep_prefix).map_or(0, |m| m.len())
            } else {
                0
            };
            if whole[prefix_len..].starts_with("[REDACTED:") {
                return whole.to_string(); // already redacted by an earlier rule or pass
            }
            n += 1;
            let prefix = if rule.keep_prefix > 0 {
                c.get(rule.keep_prefix).map_or("", |m| m.as_str())
            } else {
                ""
            };
            let suffix = if rule.kind == "url_password" {
                c.get(2).map_or("", |m| m.as_str())
            } else {
                ""
            };
            format!("{prefix}[REDACTED:{}]{suffix}", rule.kind)
        });
        if n > 0 {
            text = replaced.into_owned();
            *found.entry(rule.kind).or_insert(0) += n;
        }
    }
    Redacted { text, found }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, the secret that must disappear, the kind, text that must survive)
    #[test]
    fn each_kind_of_secret_is_removed_and_the_rest_survives() {
        let gh = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
        let pat = format!("github_pat_11ABCDEFG0{}", "x".repeat(40));
        let cases: Vec<(String, String, &str, &str)> = vec![
            (format!("+const T = \"{gh}\"; // keep me"), gh.clone(), "github_token", "keep me"),
            (format!("+token {pat}"), pat.clone(), "github_token", "+token"),
            ("+aws_key_id = AKIAIOSFODNN7EXAMPLE\n".into(), "AKIAIOSFODNN7EXAMPLE".into(), "aws_access_key_id", "aws_key_id"),
            (
                "+aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n".into(),
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                "assignment",
                "aws_secret_access_key",
            ),
            ("+DB_PASSWORD=hunter22 # prod\n".into(), "hunter22".into(), "assignment", "# prod"),
            ("+  \"client_secret\": \"s3cr3t-value\",\n".into(), "s3cr3t-value".into(), "assignment", "client_secret"),
            ("+password: correcthorsebattery\n".into(), "correcthorsebattery".into(), "assignment", "password:"),
            (
                "+url = \"postgres://app:Sup3rSecret@db.internal:5432/app\"\n".into(),
                "Sup3rSecret".into(),
                "url_password",
                "db.internal:5432",
            ),
            (
                "+curl -H 'Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345'\n".into(),
                "abcdefghijklmnopqrstuvwxyz012345".into(),
                "bearer_token",
                "Authorization: Bearer",
            ),
            ("+SLACK=xoxb-123456789012-abcdefghij\n".into(), "xoxb-123456789012-abcdefghij".into(), "slack_token", "SLACK"),
            ("+key = sk-proj-abcdefghijklmnopqrstuvwx\n".into(), "sk-proj-abcdefghijklmnopqrstuvwx".into(), "api_key", "+key"),
            (
                "+t = eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n".into(),
                "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(),
                "jwt",
                "+t =",
            ),
            (
                "+-----BEGIN RSA PRIVATE KEY-----\n+MIIEowIBAAKCAQEA7bq\n+c2VjcmV0\n+-----END RSA PRIVATE KEY-----\n+after\n".into(),
                "MIIEowIBAAKCAQEA7bq".into(),
                "private_key",
                "+after",
            ),
            (
                "+-----BEGIN OPENSSH PRIVATE KEY-----\n+b3BlbnNzaC1rZXktdjEAAAAA\n".into(),
                "b3BlbnNzaC1rZXktdjEAAAAA".into(),
                "private_key",
                "",
            ),
        ];
        for (input, secret, kind, keep) in cases {
            let r = redact(&input);
            assert!(!r.text.contains(&secret), "{kind}: {:?}", r.text);
            assert!(
                r.found.get(kind).is_some_and(|&n| n >= 1),
                "{kind}: {:?} {:?}",
                r.found,
                r.text
            );
            assert!(r.text.contains(keep), "{kind}: lost {keep:?}: {:?}", r.text);
            assert!(
                r.text.contains(&format!("[REDACTED:{kind}]")),
                "{:?}",
                r.text
            );
        }
    }

    #[test]
    fn ordinary_code_passes_unchanged() {
        let code = "+fn total(items: &[Item]) -> u64 {\n+    items.iter().map(|i| i.price).sum()\n+}\n+let url = \"https://example.com/a\";\n";
        let r = redact(code);
        assert_eq!(r.text, code);
        assert_eq!(r.total(), 0);
    }

    #[test]
    fn redaction_is_idempotent() {
        let once = redact("+PASSWORD=abcdef ghp_0123456789abcdefghij0123456789abcdef");
        let twice = redact(&once.text);
        assert_eq!(once.text, twice.text);
    }
}
