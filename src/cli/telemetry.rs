//! Logging set-up: human-readable lines by default, JSON lines with `--log-format json`.
//! Verbosity follows `RUST_LOG` (default `info`). Logs go to stderr so stdout stays for output.
//!
//! A logged value may come from a payload (a repository name, a comment, a reason quoting
//! either), so no value is written raw: in text every control character (a line break, a
//! terminal escape) is written escaped, and one event stays one line; JSON escapes by itself.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;

use crate::cli::LogFormat;

/// `default_level` applies when `RUST_LOG` is unset (benchmarks default to `warn` so that logging
/// a line per request does not become what they measure).
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests and embedding callers may have installed a subscriber already.
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(escaped_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Text fields as `name=value`, the message bare, every value with its control characters
/// escaped.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = escape_controls(&format!("{value:?}"));
        match field.name() {
            "message" => w.write_str(&text),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

/// `text` with each control character written as its escape (`\n`, `\u{1b}`).
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        let rows = [
            ("plain", "acme/shop", "acme/shop"),
            ("line break", "a\nINFO forged", "a\\nINFO forged"),
            ("carriage return", "a\r\nb", "a\\r\\nb"),
            ("terminal escape", "\u{1b}[31mred", "\\u{1b}[31mred"),
            ("non-ASCII stays", "café ✓", "café ✓"),
        ];
        for (name, input, want) in rows {
            assert_eq!(escape_controls(input), want, "row {name:?}");
        }
    }
}
