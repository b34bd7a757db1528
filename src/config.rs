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

    /// Where a documentation block sits in a config: the whole file, under a path (the line
    /// before the fence says `<!-- config at services[0] -->`), or not a deploybot config at
    /// all (`<!-- not a deploybot config -->`, e.g. a kustomization).
    fn doc_snippets(page: &str) -> Vec<(usize, Option<String>, String)> {
        let lines: Vec<&str> = page.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim_end() != "```yaml" {
                i += 1;
                continue;
            }
            let marker = i
                .checked_sub(1)
                .map(|p| lines[p].trim())
                .unwrap_or_default();
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].starts_with("```"))
                .unwrap_or_else(|| panic!("line {}: unclosed yaml block", i + 1));
            let body = lines[i + 1..end].join("\n");
            if marker != "<!-- not a deploybot config -->" {
                let at = marker
                    .strip_prefix("<!-- config at ")
                    .and_then(|m| m.strip_suffix(" -->"))
                    .map(str::to_string);
                out.push((i + 1, at, body));
            }
            i = end + 1;
        }
        out
    }

    /// `over` laid on `base`: maps merge key by key, lists item by item, anything else replaces.
    fn merge(base: &mut yaml_serde::Value, over: yaml_serde::Value) {
        use yaml_serde::Value;
        match (base, over) {
            (Value::Mapping(b), Value::Mapping(o)) => {
                for (k, v) in o {
                    match b.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (Value::Sequence(b), Value::Sequence(o)) => {
                for (i, v) in o.into_iter().enumerate() {
                    match b.get_mut(i) {
                        Some(slot) => merge(slot, v),
                        None => b.push(v),
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// Every YAML block of the docs is laid over a small valid config (at the path its marker
    /// names) and must resolve without a problem: a snippet people copy cannot be refused.
    #[test]
    fn every_config_snippet_in_the_docs_resolves() {
        const BASE: &str = "gitops:\n  repo_url: https://github.com/example-org/gitops.git\n\
                            services:\n  - name: checkout\n    app_repo: example-org/checkout\n    \
                            image: ghcr.io/example-org/checkout\n";
        let mut pages: Vec<PathBuf> = std::fs::read_dir(repo_file("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        pages.push(repo_file("README.md"));
        pages.sort();
        let mut checked = 0;
        let mut failures = Vec::new();
        for page in &pages {
            let text = std::fs::read_to_string(page).unwrap();
            for (line, at, body) in doc_snippets(&text) {
                let name = format!("{}:{line}", page.display());
                let snippet: yaml_serde::Value = match yaml_serde::from_str(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        failures.push(format!("{name}: not YAML: {e}"));
                        continue;
                    }
                };
                let snippet = match at.as_deref() {
                    None => snippet,
                    Some("services[0]") => yaml_serde::from_str("services:\n  - {}\n")
                        .map(|mut v: yaml_serde::Value| {
                            v["services"][0] = snippet;
                            v
                        })
                        .unwrap(),
                    Some(other) => panic!("{name}: unknown snippet path {other}"),
                };
                let mut config: yaml_serde::Value = yaml_serde::from_str(BASE).unwrap();
                merge(&mut config, snippet);
                let text = yaml_serde::to_string(&config).unwrap();
                if let Err(e) = resolve_text(&text, Path::new(&name), &ShapeOnly) {
                    failures.push(format!("{e}"));
                }
                checked += 1;
            }
        }
        assert!(checked >= 7, "only {checked} snippets found");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn doc_snippet_markers_place_or_skip_a_block() {
        let page = "a\n```yaml\nx: 1\n```\n<!-- config at services[0] -->\n```yaml\ny: 2\n```\n\
                    <!-- not a deploybot config -->\n```yaml\nkind: Kustomization\n```\n";
        assert_eq!(
            doc_snippets(page),
            [
                (2, None, "x: 1".to_string()),
                (6, Some("services[0]".to_string()), "y: 2".to_string()),
            ]
        );
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
