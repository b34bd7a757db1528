//! deploybot's functional core: every decision deploybot makes, as plain functions over plain
//! data, and the ports (traits in domain types) through which the shell reaches the world.
//!
//! This crate cannot do I/O: its `Cargo.toml` has no async runtime, HTTP, git, SQL or LLM client
//! crate, and `clippy.toml` bans the wall clock, the environment and the file system. Time comes
//! in as an argument, text comes in as `&str`, and effects go out as data.

pub mod canary;
pub mod clock;
pub mod config;
pub mod deprecated;
pub mod duration;
pub mod failure;
pub mod github;
pub mod gitops;
pub mod manifest;
pub mod retry;
pub mod risk;
pub mod rollout;
pub mod secret;
pub mod template;
pub mod webhook;
