//! deploybot: a GitOps deployment bot. It risk-scores pull requests, ships changes by committing
//! to a GitOps repository, judges canaries from Prometheus and reverts through git.
//!
//! See ARCHITECTURE.md for the module map and the path a webhook takes through them.

pub mod alert;
pub mod argocd;
pub mod canary;
pub mod cli;
pub mod config;
pub mod demo;
pub mod github;
pub mod gitops;
pub mod llm;
pub mod manifest;
pub mod metrics;
pub mod prometheus;
pub mod risk;
pub mod rollout;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod webhook;
