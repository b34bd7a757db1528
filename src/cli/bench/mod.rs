//! `deploybot bench ...` and `deploybot manifest bench`: benchmarks that print ratios against a
//! baseline measured in the same run, so a noisy machine still gives a true answer.

pub mod canary;
pub mod git;
pub mod lanes;
pub mod manifest;
pub mod risk;
pub mod rollouts;
pub mod soak;
pub mod webhook;
