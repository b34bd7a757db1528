//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, and the commit messages, revert messages
//! and pull request texts it writes (from `templates/`); and where the repository is
//! (`remote`: its URL and the branch names git accepts, checked when the config resolves).

pub mod commit_message;
pub mod edit;
pub mod remote;

pub use edit::{FileChange, FileEdit, ManifestEdit};
