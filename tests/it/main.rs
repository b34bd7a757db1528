//! All integration tests build into this one binary (one link instead of one per file).
//! Each concept has its own module; shared fakes and helpers live in `support`.

mod argocd;
mod cli;
mod prometheus;
mod rollout;
mod support;
mod webhook;
