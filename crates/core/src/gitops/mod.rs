//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, the commit messages, revert messages
//! and pull request texts it writes (from `templates/`), and the git port (`repo`) the writer
//! implements.

pub mod commit_message;
pub mod edit;
pub mod repo;

pub use edit::{FileChange, FileEdit, ManifestEdit};
pub use repo::{BotWrite, GitopsRepo, GitopsRepos, WriteOutcome};
