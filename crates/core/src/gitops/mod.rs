//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, and the commit messages, revert messages
//! and pull request texts it writes (from `templates/`).

pub mod commit_message;
pub mod edit;
pub mod remote;

pub use edit::{FileChange, FileEdit, ManifestEdit};
