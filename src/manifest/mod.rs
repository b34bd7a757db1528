//! Byte-preserving manifest edits: set an image, set a canary weight, set replica ratios.
//! Pure functions from text to text; no file or git I/O here.
//!
//! (Being built under issue 3. The types and the `apply` signature below are the contract the
//! GitOps writer codes against: extend them, do not rename them.)

pub mod cli;

use serde::{Deserialize, Serialize};

/// One manifest target of an environment (a file and what to edit in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Path of the manifest file inside the GitOps repository.
    pub path: String,
}

impl TargetConfig {
    pub fn validate(&self, key: &str, problems: &mut Vec<String>) {
        if self.path.trim().is_empty() {
            problems.push(format!("{key}.path: must not be empty"));
        }
    }
}

/// A semantic change to one manifest file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Set a container image, with `kustomize edit set image` semantics.
    SetImage(ImageChange),
    /// Give the canary backend `weight` percent of the traffic and the stable backend the rest.
    SetWeight {
        canary: String,
        weight: u8,
        stable: Option<String>,
    },
    /// Two Deployments, no mesh: split `total` replicas so the canary gets `weight` percent.
    SetReplicas {
        canary: String,
        stable: String,
        weight: u8,
        total: u32,
    },
}

/// `NAME=NEWNAME:TAG`, `NAME=:TAG`, `NAME:TAG`, `NAME@sha256:...` as kustomize understands them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    /// The image name (repository part) to match.
    pub name: String,
    pub new_name: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Options that depend on the repository layout rather than on the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditOptions {
    /// Add an `images:` entry to a kustomization.yaml when the name is absent.
    pub add_missing_kustomize_image: bool,
}

/// One scalar the edit changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChange {
    /// Where, for people: document index and key path.
    pub location: String,
    /// 1-based line of the scalar.
    pub line: usize,
    pub old: String,
    pub new: String,
}

/// The result of an edit: the new text and what changed (empty when already at the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub changes: Vec<ValueChange>,
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Applies `change` to the text of the manifest at `path` (the path picks the file kind, e.g.
/// kustomization.yaml or a Helm values file, and appears in errors).
pub fn apply(
    path: &str,
    _text: &str,
    _change: &Change,
    _options: &EditOptions,
) -> Result<Edited, EditError> {
    Err(EditError::Invalid {
        path: path.to_string(),
        message: "manifest editing is not built yet".into(),
    })
}
