//! Logging set-up: human-readable lines by default, JSON lines with `--log-format json`.
//! Verbosity follows `RUST_LOG` (default `info`). Logs go to stderr so stdout stays for output.

use tracing_subscriber::EnvFilter;

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
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
