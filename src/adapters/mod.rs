//! The edges: each module talks to one thing outside the process (GitHub, the GitOps repository
//! through git, the language model, Prometheus, Argo CD, the alert webhook, the SQLite store,
//! secrets in the environment or files, lock files shared with other processes, the files a
//! person hands the CLI) and translates it into the core's types. Nothing here decides what to
//! do; the shell does, with the core.

pub mod alert;
pub mod argocd;
pub mod clock;
pub mod github;
pub mod github_auth;
pub mod gitops;
pub mod input;
pub mod llm;
pub mod lock;
pub mod prometheus;
pub mod retry;
pub mod scenario;
pub mod secrets;
pub mod store;
