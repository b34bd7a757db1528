//! Loading the configuration file: this module reads it; `deploybot_core::config` parses the text
//! and resolves it into the typed `Config` the rest of deploybot runs on (every problem listed at
//! once, each naming the key, the value and the fix).
//!
//! `serve` loads with [`load`], which also checks that every secret the config references can be
//! read here; the other commands load the shape ([`load_shape`]) and read the secrets they use
//! through `adapters::secrets::Secrets`, which names every one it cannot read. Either way a
//! missing secret stops the command before it starts. Deprecated keys are logged as warnings
//! when the file loads.

use std::path::{Path, PathBuf};

pub use deploybot_core::config::*;

/// A configuration that could not be loaded, with every problem found (not only the first).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is part of the message, so not also the `source()` (printed once).
    #[error("reading config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("parsing config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Reads, parses and resolves a config file, and checks that the secrets it references can be
/// read here. Warnings are logged.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    logged(
        path,
        resolve_text(&text, path, &crate::adapters::secrets::Present)?.1,
    )
}

/// [`load`] without the secrets check, for commands that read none or read their own.
pub fn load_shape(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    logged(path, resolve_text(&text, path, &ShapeOnly)?.1)
}

/// Parses and resolves YAML text (shape only); `path` is only used in messages.
pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
    logged(path, resolve_text(text, path, &ShapeOnly)?.1)
}

/// The file as written and what it resolves to, secrets checked through `secrets`; what
/// `check-config` prints from. Warnings are returned, not logged.
pub fn check(
    path: &Path,
    secrets: &dyn SecretPresence,
) -> Result<(RawConfig, Resolved), ConfigError> {
    resolve_text(&read(path)?, path, secrets)
}

/// A config larger than this is not one (every key of the example fits in 20 KB).
const MAX_CONFIG_BYTES: usize = 1024 * 1024;

fn read(path: &Path) -> Result<String, ConfigError> {
    use crate::adapters::input::{InputError, read_text};
    read_text(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        cause: match e {
            InputError::Read { cause, .. } => cause,
            too_large @ InputError::TooLarge { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{too_large}"))
            }
        },
    })
}

fn resolve_text(
    text: &str,
    path: &Path,
    secrets: &dyn SecretPresence,
) -> Result<(RawConfig, Resolved), ConfigError> {
    let raw = RawConfig::from_yaml(text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })?;
    let resolved = resolve(&raw, secrets).map_err(|p| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems: p.0,
    })?;
    Ok((raw, resolved))
}

fn logged(path: &Path, resolved: Resolved) -> Result<Config, ConfigError> {
    for w in &resolved.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    Ok(resolved.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
    }

    /// The three configs the project ships resolve without a problem or a warning: they speak
    /// today's spelling.
    #[test]
    fn the_shipped_configs_resolve_without_warnings() {
        let demo = std::fs::read_to_string(repo_file("demo/deploybot.yaml"))
            .unwrap()
            .replace("{{repo_url}}", "file:///srv/gitops.git")
            .replace("{{data_dir}}", "/tmp/deploybot-demo");
        for (name, text) in [
            (
                "examples/deploybot.yaml",
                read(&repo_file("examples/deploybot.yaml")).unwrap(),
            ),
            ("demo/deploybot.yaml", demo),
            (
                "deploy/deploybot.yaml",
                read(&repo_file("deploy/deploybot.yaml")).unwrap(),
            ),
        ] {
            let (_, resolved) =
                resolve_text(&text, Path::new(name), &ShapeOnly).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                resolved.warnings.is_empty(),
                "{name}: {:?}",
                resolved.warnings
            );
        }
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let config = load_shape(&repo_file("examples/deploybot.yaml")).unwrap();
        assert!(!config.services.is_empty());
        assert_eq!(
            config.services[0].analysis.judge,
            deploybot_core::canary::JudgeConfig::default()
        );
        assert_eq!(
            config.services[0].analysis.queries,
            deploybot_core::canary::query::QueryTemplates::default()
        );
        let (p, d) = (&config.prometheus, PrometheusSpec::default());
        assert!(p.url.is_some());
        assert_eq!(
            (
                p.timeout,
                p.retries,
                p.backoff,
                p.max_backoff,
                p.staleness_limit
            ),
            (
                d.timeout,
                d.retries,
                d.backoff,
                d.max_backoff,
                d.staleness_limit
            )
        );
    }

    #[test]
    fn a_missing_file_says_which() {
        let e = load(Path::new("/nonexistent/deploybot.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading config file /nonexistent/deploybot.yaml"),
            "{e}"
        );
    }
}
