//! What the writer applies to a file: the [`FileEdit`] trait, and [`ManifestEdit`], its
//! implementation over the pure manifest editor.
//!
//! The writer re-applies the same `FileEdit` on a new tip after a lost race, so an edit is a
//! semantic change ("set image X to tag T"), never a precomputed text or patch.

use crate::manifest::{self, Change, EditError, EditOptions, Edited, ValueChange};

/// A semantic edit of one file in the GitOps repository.
pub trait FileEdit: Send + Sync {
    /// Path of the file inside the repository (`/`-separated, no leading `/`).
    fn path(&self) -> &str;
    /// Applies the edit to the current text of the file. `changes` empty means the file is
    /// already at the target.
    fn apply(&self, text: &str) -> Result<Edited, EditError>;
}

/// A manifest change (set image, set weight, set replicas) on one file.
#[derive(Debug, Clone)]
pub struct ManifestEdit {
    pub path: String,
    pub change: Change,
    pub options: EditOptions,
}

impl FileEdit for ManifestEdit {
    fn path(&self) -> &str {
        &self.path
    }

    fn apply(&self, text: &str) -> Result<Edited, EditError> {
        manifest::apply(&self.path, text, &self.change, &self.options)
    }
}

/// The values an edit changed in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub changes: Vec<ValueChange>,
}
