//! What deploybot writes to the GitOps repository, decided without touching it: the semantic
//! file edits the writer re-applies after a lost race, the commit messages, revert messages
//! and pull request texts it writes (from `templates/`), where the repository is (`remote`: its
//! URL and the branch names git accepts, checked when the config resolves), whether a step is
//! live on a shared branch (`live`), and the git port (`repo`) the writer implements.

pub mod commit_message;
pub mod edit;
pub mod live;
pub mod remote;
pub mod repo;
/// A sample step for tests of the texts and of the writer; compiled only for tests and for the
/// `test-support` feature.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use edit::{FileChange, FileEdit, ManifestEdit};
pub use repo::{BotWrite, GitopsRepo, GitopsRepos, WriteOutcome};
