//! The imperative shell: runs the core's decisions against the adapters. The webhook server and
//! its worker (`webhook`), the risk assessment of a pull request (`assess`), approvals counted
//! on a pull request's head (`approvals`), the rollout driver
//! (`driver`), its effect runner (`runner`), the pipeline of environments (`pipeline`), what
//! GitHub events mean for rollouts (`events`), `/metrics` (`metrics`) and the status page and
//! API (`status_page`, `status_api`).

pub mod approvals;
pub mod assess;
pub mod driver;
pub mod events;
pub mod metrics;
pub mod pipeline;
pub mod runner;
pub mod status_api;
pub mod status_page;
pub mod webhook;
