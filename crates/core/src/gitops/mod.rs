//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, and the commit messages, revert messages
//! and pull request texts it writes (from `templates/`).

pub mod commit_message;
pub mod edit;
/// A sample step for tests of the texts and of the writer; compiled only for tests and for the
/// `test-support` feature.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use edit::{FileChange, FileEdit, ManifestEdit};
