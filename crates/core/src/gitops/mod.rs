//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, and the commit messages, revert messages
//! and pull request texts it writes (from `templates/`); and where the repository is
//! (`remote`: its URL and the branch names git accepts, checked when the config resolves).

pub mod commit_message;
pub mod edit;
pub mod remote;
/// A sample step for tests of the texts and of the writer; compiled only for tests and for the
/// `test-support` feature.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use edit::{FileChange, FileEdit, ManifestEdit};
