//! PR-comment commands: the first line of a comment parsed into what deploybot should do
//! (`/deploy [env]`, `/promote`, `/pause`, `/resume`, `/rollback`, `/hold`, `/hold cancel`,
//! `/status`, `/help`), with a "did you mean" for near misses.
//!
//! Pure text in, data out, and the replies deploybot posts, rendered from `templates/rollout/`.
//! Deliberately not here: ignoring bots (the webhook route), checking the commenter's permission
//! (done through the GitHub API when the command is executed), acknowledging with a reaction;
//! those belong to the shell's event handlers.

use super::input::Command;
use crate::template::{fill, line, text};

const HELP: &str = crate::template::ROLLOUT_HELP_MD;
const UNKNOWN: &str = crate::template::ROLLOUT_UNKNOWN_COMMAND_MD;
const INVALID: &str = crate::template::ROLLOUT_INVALID_COMMAND_MD;
const REPLIES: &str = crate::template::ROLLOUT_REPLIES_TXT;
const STATUS_REPLY: &str = crate::template::ROLLOUT_STATUS_REPLY_MD;

/// What a comment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The first line does not start with `/`: an ordinary comment, ignored.
    NotACommand,
    /// A command for the rollout; `environment` only for `/deploy ENV`.
    Act {
        cmd: Command,
        environment: Option<String>,
    },
    Status,
    Help,
    /// Looks like a command but is none; `suggestion` is the nearest one, if close.
    Unknown {
        given: String,
        suggestion: Option<&'static str>,
    },
    /// A known command with arguments it does not take.
    Invalid {
        given: String,
        reason: String,
    },
}

const NAMES: [&str; 9] = [
    "/deploy",
    "/promote",
    "/pause",
    "/resume",
    "/rollback",
    "/hold",
    "/hold cancel",
    "/status",
    "/help",
];

/// Parses the first line of `body`.
pub fn parse(body: &str) -> Parsed {
    let line = body.lines().next().unwrap_or("").trim();
    if !line.starts_with('/') {
        return Parsed::NotACommand;
    }
    let lower = line.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let no_args = |p: Parsed| {
        if words.len() > 1 {
            Parsed::Invalid {
                given: line.to_string(),
                reason: format!("{} takes no arguments", words[0]),
            }
        } else {
            p
        }
    };
    let act = |cmd| Parsed::Act {
        cmd,
        environment: None,
    };
    match words[0] {
        "/deploy" => match words.as_slice() {
            [_] => act(Command::Deploy),
            [_, env] if is_environment_name(env) => Parsed::Act {
                cmd: Command::Deploy,
                environment: Some((*env).to_string()),
            },
            _ => Parsed::Invalid {
                given: line.to_string(),
                reason: "/deploy takes at most one environment name (letters, digits, - and _)"
                    .into(),
            },
        },
        "/hold" => match words.as_slice() {
            [_] => act(Command::Hold),
            [_, "cancel"] => act(Command::HoldCancel),
            _ => Parsed::Invalid {
                given: line.to_string(),
                reason: "use /hold or /hold cancel".into(),
            },
        },
        "/promote" => no_args(act(Command::Promote)),
        "/pause" => no_args(act(Command::Pause)),
        "/resume" => no_args(act(Command::Resume)),
        "/rollback" => no_args(act(Command::Rollback)),
        "/status" => no_args(Parsed::Status),
        "/help" => no_args(Parsed::Help),
        other => Parsed::Unknown {
            given: other.to_string(),
            suggestion: nearest(other),
        },
    }
}

fn is_environment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The closest command within two edits, if any.
fn nearest(word: &str) -> Option<&'static str> {
    NAMES
        .iter()
        .filter(|n| !n.contains(' '))
        .map(|n| (levenshtein(word, n), *n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The reply deploybot posts for a parsed comment, when it answers in text (help, unknown,
/// invalid). Commands for the rollout are acknowledged by a reaction instead.
pub fn reply(parsed: &Parsed) -> Option<String> {
    match parsed {
        Parsed::Help => Some(HELP.to_string()),
        Parsed::Unknown { given, suggestion } => {
            let hint = suggestion
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            Some(
                UNKNOWN
                    .replace("{{given}}", given)
                    .replace("{{suggestion}}", &hint),
            )
        }
        Parsed::Invalid { given, reason } => Some(fill(
            INVALID,
            &[("given", given.as_str()), ("reason", reason.as_str())],
        )),
        Parsed::NotACommand | Parsed::Act { .. } | Parsed::Status => None,
    }
}

/// The `/status` reply: the rollout of the pull request as `deploybot rollout show` prints it
/// (`rendered`), or that there is none yet.
pub fn status_reply(rendered: Option<&str>) -> String {
    match rendered {
        Some(r) => fill(text(STATUS_REPLY), &[("rollout", r.trim_end())]),
        None => line(REPLIES, "no_rollout").to_string(),
    }
}

/// The reply to `cmd` by `author`, refused because their `permission` on `repo` is not write.
pub fn needs_write_access(author: &str, cmd: Command, repo: &str, permission: &str) -> String {
    fill(
        line(REPLIES, "needs_write_access"),
        &[
            ("author", author),
            ("command", cmd.as_str()),
            ("repo", repo),
            ("permission", permission),
        ],
    )
}

/// The reply to `cmd` by `author` that was not applied, and why (`note`).
pub fn not_applied(author: &str, cmd: Command, note: &str) -> String {
    fill(
        line(REPLIES, "not_applied"),
        &[
            ("author", author),
            ("command", cmd.as_str()),
            ("note", note),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(cmd: Command) -> Parsed {
        Parsed::Act {
            cmd,
            environment: None,
        }
    }

    #[test]
    fn commands_are_read_from_the_first_line_only() {
        let cases: &[(&str, Parsed)] = &[
            ("/promote", act(Command::Promote)),
            ("  /Rollback  \nbecause errors", act(Command::Rollback)),
            ("/pause", act(Command::Pause)),
            ("/resume", act(Command::Resume)),
            ("/hold", act(Command::Hold)),
            ("/hold   cancel", act(Command::HoldCancel)),
            ("/deploy", act(Command::Deploy)),
            (
                "/deploy production",
                Parsed::Act {
                    cmd: Command::Deploy,
                    environment: Some("production".into()),
                },
            ),
            ("/status", Parsed::Status),
            ("/help", Parsed::Help),
            ("LGTM\n/rollback", Parsed::NotACommand),
            ("", Parsed::NotACommand),
            (
                "/rollbak",
                Parsed::Unknown {
                    given: "/rollbak".into(),
                    suggestion: Some("/rollback"),
                },
            ),
            (
                "/frobnicate",
                Parsed::Unknown {
                    given: "/frobnicate".into(),
                    suggestion: None,
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(&parse(body), want, "{body:?}");
        }
    }

    #[test]
    fn arguments_a_command_does_not_take_are_refused_with_the_reason() {
        for body in [
            "/pause now",
            "/hold forever",
            "/deploy prod eu",
            "/deploy $(rm -rf)",
        ] {
            let p = parse(body);
            assert!(matches!(p, Parsed::Invalid { .. }), "{body:?}: {p:?}");
            assert!(reply(&p).unwrap().contains("/help"));
        }
    }

    #[test]
    fn replies_come_from_the_templates() {
        assert!(
            reply(&parse("/help"))
                .unwrap()
                .contains("| `/hold cancel` |")
        );
        assert_eq!(
            reply(&parse("/promte")).unwrap(),
            "`/promte` is not a deploybot command. Did you mean `/promote`? \
             Comment `/help` for the list.\n"
        );
        assert_eq!(reply(&parse("/rollback")), None);
        assert_eq!(reply(&parse("thanks!")), None);
    }
}
