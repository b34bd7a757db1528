//! Byte-preserving manifest edits: set an image, set a canary weight, set replica ratios.
//! Pure functions from text to text; no file or git I/O here (`deploybot manifest` and the GitOps
//! writer, in the root package, do the files).
//!
//! An edit locates scalars with a position-aware parse (`yaml`) and splices only their bytes;
//! nothing is ever re-serialized, so comments, quoting, indentation, `---`, CRLF, flow style and
//! non-ASCII text outside the changed scalars stay byte-identical.
//!
//! The types and the `apply` signature are the contract the GitOps writer codes against: extend
//! them, do not rename them.

mod image;
pub mod patch;
mod replicas;
mod target;
mod weight;
pub mod yaml;

use serde::{Deserialize, Serialize};

pub use image::ImageChange;
pub use replicas::canary_replicas;
pub use target::{TargetConfig, TargetKind, Track};

use yaml::{Kind, Node, ScalarProblem, Splice};

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

/// Options that depend on the repository layout rather than on the change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditOptions {
    /// Add an `images:` entry to a kustomization.yaml when the name is absent.
    pub add_missing_kustomize_image: bool,
    /// Treat the file as Helm values with these key paths. `None`: files named `values*.yaml`
    /// (that are not Kubernetes objects) are Helm values with [`HelmImagePaths::default`].
    pub helm_values: Option<HelmImagePaths>,
    /// When a new value written plain would be read as another type (tag `1.20` is a float,
    /// `yes` a boolean), write it double-quoted instead of refusing. Off by default: the edit
    /// then refuses and says to quote the value in the file once.
    pub quote_ambiguous: bool,
}

/// Where a Helm values file keeps the image, as dotted key paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmImagePaths {
    /// Path of the repository (image name); matched against the change's name, set to its
    /// new name. `None` for charts that keep only a tag.
    #[serde(default = "default_helm_repository")]
    pub repository: Option<String>,
    /// Path of the tag.
    #[serde(default = "default_helm_tag")]
    pub tag: String,
    /// Path of the digest, for charts that have one.
    #[serde(default)]
    pub digest: Option<String>,
}

fn default_helm_repository() -> Option<String> {
    Some("image.repository".into())
}

fn default_helm_tag() -> String {
    "image.tag".into()
}

impl Default for HelmImagePaths {
    fn default() -> Self {
        HelmImagePaths {
            repository: default_helm_repository(),
            tag: default_helm_tag(),
            digest: None,
        }
    }
}

/// One scalar the edit changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChange {
    /// Where, for people: document index and key path.
    pub location: String,
    /// 1-based line of the scalar.
    pub line: usize,
    /// The previous value; empty when the key was added.
    pub old: String,
    /// The new value; empty when the key was removed.
    pub new: String,
}

/// The result of an edit: the new text and what changed (empty when already at the target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub changes: Vec<ValueChange>,
    /// The byte splices over the original text that made `text` (sorted, not overlapping): what
    /// [`patch::unified`] prints the diff from.
    pub splices: Vec<yaml::Splice>,
}

/// The largest manifest an edit accepts. The editor holds a tree of the whole file (about 40
/// times its size: a 50 MB file needed 1.9 GB); a manifest beyond this is not something to edit
/// in place (a generated bundle, or not a manifest at all).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;

/// Why an edit could not be made. Every variant names the file and, where there is one, the
/// place in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// A change that makes no sense on its own (weight over 100, an empty image name).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "{path}: {bytes} bytes, more than the {limit} a manifest edit accepts; edit a file this \
         large (a generated bundle?) where it is generated"
    )]
    TooLarge {
        path: String,
        bytes: usize,
        limit: usize,
    },
    #[error("{path}:{line}:{col}: not YAML: {message}")]
    NotYaml {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error(
        "{path}: is a Helm template (Go templating `{{{{ }}}}`), not YAML; set the value in the chart's values file instead"
    )]
    HelmTemplate { path: String },
    #[error("{path}: {what} not found; found {}", list_or_nothing(.found))]
    NotFound {
        path: String,
        what: String,
        found: Vec<String>,
    },
    #[error("{path}: {what} matches more than one place: {}", .matches.join("; "))]
    Ambiguous {
        path: String,
        what: String,
        matches: Vec<String>,
    },
    #[error(
        "{path}:{line}: {location}: {value:?} written unquoted would be read as {reads_as}; quote the existing value in the file (e.g. tag: \"v1\") or allow quoting (--quote)"
    )]
    WouldChangeType {
        path: String,
        line: usize,
        location: String,
        value: String,
        reads_as: String,
    },
    /// A place the editor will not touch (alias, block scalar, flow mapping needing a new key...).
    #[error("{path}:{line}: {location}: {message}")]
    Unsupported {
        path: String,
        line: usize,
        location: String,
        message: String,
    },
}

fn list_or_nothing(found: &[String]) -> String {
    if found.is_empty() {
        "nothing that could be a target".into()
    } else {
        found.join("; ")
    }
}

/// Applies `change` to the text of the manifest at `path` (the path picks the file kind, e.g.
/// kustomization.yaml or a Helm values file, and appears in errors).
pub fn apply(
    path: &str,
    text: &str,
    change: &Change,
    options: &EditOptions,
) -> Result<Edited, EditError> {
    if text.len() > MAX_BYTES {
        return Err(EditError::TooLarge {
            path: path.into(),
            bytes: text.len(),
            limit: MAX_BYTES,
        });
    }
    let templated = text.contains("{{");
    if templated && path.replace('\\', "/").split('/').any(|c| c == "templates") {
        return Err(EditError::HelmTemplate { path: path.into() });
    }
    let docs = yaml::parse(text).map_err(|e| {
        if templated {
            EditError::HelmTemplate { path: path.into() }
        } else {
            EditError::NotYaml {
                path: path.into(),
                line: e.line,
                col: e.col,
                message: e.message,
            }
        }
    })?;
    let mut plan = Plan {
        path,
        text,
        options,
        splices: Vec::new(),
        changes: Vec::new(),
    };
    match change {
        Change::SetImage(image) => image::set_image(&mut plan, &docs, image)?,
        Change::SetWeight {
            canary,
            weight,
            stable,
        } => weight::set_weight(&mut plan, &docs, canary, *weight, stable.as_deref())?,
        Change::SetReplicas {
            canary,
            stable,
            weight,
            total,
        } => replicas::set_replicas(&mut plan, &docs, canary, stable, *weight, *total)?,
    }
    plan.finish()
}

/// The edits collected for one file, applied at once so every span refers to the original text.
pub(crate) struct Plan<'a> {
    pub path: &'a str,
    pub text: &'a str,
    pub options: &'a EditOptions,
    splices: Vec<Splice>,
    changes: Vec<ValueChange>,
}

impl Plan<'_> {
    pub fn invalid(&self, message: impl Into<String>) -> EditError {
        EditError::Invalid {
            path: self.path.into(),
            message: message.into(),
        }
    }

    pub fn not_found(&self, what: impl Into<String>, found: Vec<String>) -> EditError {
        EditError::NotFound {
            path: self.path.into(),
            what: what.into(),
            found,
        }
    }

    pub fn ambiguous(&self, what: impl Into<String>, matches: Vec<String>) -> EditError {
        EditError::Ambiguous {
            path: self.path.into(),
            what: what.into(),
            matches,
        }
    }

    pub fn unsupported(
        &self,
        node: &Node,
        location: &str,
        message: impl Into<String>,
    ) -> EditError {
        EditError::Unsupported {
            path: self.path.into(),
            line: node.line,
            location: location.into(),
            message: message.into(),
        }
    }

    /// Sets the scalar `node` to `new` (no-op when it already is).
    pub fn set(
        &mut self,
        node: &Node,
        new: &str,
        kind: Kind,
        location: String,
    ) -> Result<(), EditError> {
        let old = match node.as_str() {
            Some(old) if old == new => return Ok(()),
            Some(old) => old.to_string(),
            None => String::new(),
        };
        let splice = yaml::replace_scalar(self.text, node, new, kind, self.options.quote_ambiguous)
            .map_err(|problem| match problem {
                ScalarProblem::WouldChangeType { reads_as } => EditError::WouldChangeType {
                    path: self.path.into(),
                    line: node.line,
                    location: location.clone(),
                    value: new.into(),
                    reads_as: reads_as.into(),
                },
                ScalarProblem::NotAScalar(what) => self.unsupported(
                    node,
                    &location,
                    format!("is {what}, not a plain value; edit it by hand"),
                ),
                ScalarProblem::BlockScalar => self.unsupported(
                    node,
                    &location,
                    "is a block scalar (| or >); write it as a one-line value first",
                ),
                ScalarProblem::SpanMismatch { found } => self.unsupported(
                    node,
                    &location,
                    format!(
                        "the text there ({found:?}) is not the single-line value {old:?}; not editing a value written across lines or with escapes"
                    ),
                ),
                ScalarProblem::Unrepresentable => self.unsupported(
                    node,
                    &location,
                    format!("{new:?} cannot be written in the value's quoting style"),
                ),
            })?;
        self.splices.push(splice);
        self.changes.push(ValueChange {
            location,
            line: node.line,
            old,
            new: new.into(),
        });
        Ok(())
    }

    /// Adds `key: new` as the last entry of the block mapping `map`.
    pub fn insert(
        &mut self,
        map: &Node,
        key: &str,
        new: &str,
        kind: Kind,
        location: String,
    ) -> Result<(), EditError> {
        let rendered = render_new(new, kind);
        let splice = yaml::insert_entry(self.text, map, key, &rendered).ok_or_else(|| {
            self.unsupported(
                map,
                &location,
                format!("has no {key:?} and is not a non-empty block mapping to add it to; add `{key}:` by hand once"),
            )
        })?;
        let line = self.text[..splice.start].matches('\n').count() + 1;
        self.splices.push(splice);
        self.changes.push(ValueChange {
            location,
            line,
            old: String::new(),
            new: new.into(),
        });
        Ok(())
    }

    /// Removes the entry `key: value` (kustomize drops a digest when a tag is set, and back).
    pub fn remove(&mut self, key: &Node, value: &Node, location: String) -> Result<(), EditError> {
        let splice = yaml::remove_entry(self.text, key, value).ok_or_else(|| {
            self.unsupported(
                key,
                &location,
                "must be removed but does not sit on a line of its own; remove it by hand",
            )
        })?;
        self.splices.push(splice);
        self.changes.push(ValueChange {
            location,
            line: key.line,
            old: value.as_str().unwrap_or_default().into(),
            new: String::new(),
        });
        Ok(())
    }

    /// Adds raw text at a byte offset (a new list item).
    pub fn insert_text(&mut self, at: usize, with: String, change: ValueChange) {
        self.splices.push(Splice {
            start: at,
            end: at,
            with,
        });
        self.changes.push(change);
    }

    fn finish(mut self) -> Result<Edited, EditError> {
        if self.splices.is_empty() {
            return Ok(Edited {
                text: self.text.into(),
                changes: Vec::new(),
                splices: Vec::new(),
            });
        }
        let mut splices = std::mem::take(&mut self.splices);
        splices.sort_by_key(|s| (s.start, s.end));
        if splices.windows(2).any(|w| w[0].end > w[1].start) {
            return Err(self.invalid("two edits overlap (the same value targeted twice)"));
        }
        let text = yaml::splice_all(self.text, splices.clone());
        // A last guard: an edit that breaks the file is a bug here, and must never be committed.
        if let Err(e) = yaml::check(&text) {
            return Err(self.invalid(format!(
                "the edit would produce invalid YAML at line {}: {} (a bug in deploybot; nothing written)",
                e.line, e.message
            )));
        }
        let mut changes = self.changes;
        changes.sort_by_key(|c| c.line);
        Ok(Edited {
            text,
            changes,
            splices,
        })
    }
}

/// How a new key's value is written: plain when that reads back as the same string, else
/// double-quoted (choosing a style for a new key changes nothing that was there).
pub(crate) fn render_new(value: &str, kind: Kind) -> String {
    let plain_ok = match kind {
        Kind::Int => true,
        Kind::Str => yaml::reads_as(value).is_none() && yaml::plain_safe(value, false),
    };
    if plain_ok {
        value.into()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
