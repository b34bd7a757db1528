//! Secrets referenced from the config (`*_env: VAR` or `*_file: PATH`). Resolving a reference reads
//! the environment or a file, so it is the shell's (`deploybot::adapters::secrets`); this module only
//! holds the reference and the value.
//! A [`Secret`] never prints its value: `Debug` and `Display` mask it, so it cannot leak into logs.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A secret value held in memory. Formatting shows `***` so that logs and config dumps stay clean.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value. Call sites are the few places that must hand it to a peer (HMAC, HTTP auth).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from. Config files only ever hold the reference, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Builds the reference from the `<name>_env` / `<name>_file` pair of a config section.
    /// `key` names the config key in error messages. Both set is an error; neither is `None`.
    pub fn from_pair(
        key: &str,
        env: Option<&String>,
        file: Option<&PathBuf>,
    ) -> Result<Option<SecretRef>, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err(format!(
                "{key}: set either {key}_env or {key}_file, not both"
            )),
            (Some(var), None) if var.trim().is_empty() => {
                Err(format!("{key}_env: must name an environment variable"))
            }
            (Some(var), None) => Ok(Some(SecretRef::Env(var.clone()))),
            (None, Some(path)) => Ok(Some(SecretRef::File(path.clone()))),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn pair_rejects_both_and_accepts_one() {
        let var = "X".to_string();
        let path = PathBuf::from("/x");
        assert!(SecretRef::from_pair("k", Some(&var), Some(&path)).is_err());
        assert_eq!(
            SecretRef::from_pair("k", Some(&var), None).unwrap(),
            Some(SecretRef::Env("X".into()))
        );
        assert_eq!(SecretRef::from_pair("k", None, None).unwrap(), None);
    }
}
