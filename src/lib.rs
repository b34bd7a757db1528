//! deploybot: a GitOps deployment bot. It risk-scores pull requests, ships changes by committing
//! to a GitOps repository, judges canaries from Prometheus and reverts through git.
//!
//! This package is the imperative shell around `deploybot_core` (every decision, no I/O):
//! `adapters` talk to the world behind the core's ports, `shell` runs the core's decisions
//! against them (the webhook server, the worker, the rollout driver and pipeline), `demo` runs
//! the same shell on replayed metrics and a virtual clock, and `cli` is the command line.
//! ARCHITECTURE.md maps the modules and the path a webhook takes through them.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod demo;
pub mod shell;
