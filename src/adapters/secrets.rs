//! Resolving the secrets the config references: reads the environment variable or the file a
//! `SecretRef` names. The core holds only references and masked values; reading them is I/O, so
//! it happens here, at start-up.

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

/// Reads an optional reference (as the config's `*_ref` methods return it); errors start with
/// `key`, so they say which setting is at fault.
pub fn resolve_optional(
    r: Result<Option<SecretRef>, String>,
    key: &str,
) -> Result<Option<Secret>, String> {
    match r? {
        Some(r) => r.resolve().map(Some).map_err(|e| format!("{key}: {e}")),
        None => Ok(None),
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
}
