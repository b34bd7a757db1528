//! Reading the secrets the config references: the environment variable or the file a
//! `SecretRef` names. The core holds only references and masked values; reading them is I/O, so
//! it happens here, once, at start-up: [`Present`] answers resolution's question whether a
//! secret can be read, [`Secrets`] holds the values a command goes on to use.

use std::collections::BTreeMap;

use deploybot_core::config::{Config, SecretKey, SecretPresence};
use deploybot_core::secret::{Secret, SecretRef};

/// Reading a referenced secret. Errors name the variable or file, never the value.
pub trait Resolve {
    fn resolve(&self) -> Result<Secret, String>;
}

impl Resolve for SecretRef {
    fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            SecretRef::File(path) => match std::fs::read_to_string(path) {
                // Files written by `echo` or Kubernetes secret mounts often end in a newline.
                Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => {
                    Ok(Secret::new(v.trim_end_matches(['\n', '\r'])))
                }
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("reading secret file {}: {e}", path.display())),
            },
        }
    }
}

/// Resolution's secrets check against this process's environment and file system: a secret is
/// present when it can be read and is not empty.
pub struct Present;

impl SecretPresence for Present {
    fn check(&self, r: &SecretRef) -> Result<(), String> {
        r.resolve().map(drop)
    }
}

/// The secret values a command uses, read once at start-up. Formatting shows only the keys.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<SecretKey, Secret>,
}

impl Secrets {
    /// No secrets: every lookup answers `None` (the demo, tests).
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// Reads those of `wanted` that `config` references. Fails listing every one that cannot be
    /// read, each by its key and reference, never its value.
    pub fn read(config: &Config, wanted: &[SecretKey]) -> Result<Secrets, String> {
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        for (key, reference) in config.secrets() {
            if !wanted.contains(key) {
                continue;
            }
            match reference.resolve() {
                Ok(v) => {
                    values.insert(*key, v);
                }
                Err(e) => problems.push(format!("{}: {e}", key.written(reference))),
            }
        }
        if problems.is_empty() {
            Ok(Secrets { values })
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn get(&self, key: SecretKey) -> Option<&Secret> {
        self.values.get(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_drops_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(SecretRef::File(p).resolve().unwrap().expose(), "abc");
    }

    #[test]
    fn every_unreadable_secret_is_named_and_no_value_is_printed() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "ghs_value\n").unwrap();
        let yaml = format!(
            "server:\n  webhook_secret_env: DEPLOYBOT_TEST_UNSET_4411\n\
             github:\n  token_file: {}\n\
             alerts:\n  webhook_url_file: {}\n",
            token.display(),
            dir.path().join("missing").display()
        );
        let raw = deploybot_core::config::RawConfig::from_yaml(&yaml).unwrap();
        let config = deploybot_core::config::resolve(&raw, &deploybot_core::config::ShapeOnly)
            .unwrap()
            .config;
        let e = Secrets::read(&config, &SecretKey::ALL).unwrap_err();
        assert!(
            e.contains("server.webhook_secret_env: environment variable DEPLOYBOT_TEST_UNSET_4411 is not set"),
            "{e}"
        );
        assert!(
            e.contains("alerts.webhook_url_file: reading secret file"),
            "{e}"
        );
        assert!(!e.contains("ghs_value"), "{e}");
        let only_github = Secrets::read(&config, &[SecretKey::GithubToken]).unwrap();
        assert_eq!(
            only_github.get(SecretKey::GithubToken).unwrap().expose(),
            "ghs_value"
        );
        assert!(!format!("{only_github:?}").contains("ghs_value"));
        assert!(Present.check(&SecretRef::File(token)).is_ok());
    }
}
