//! All integration tests build into this one binary (one link instead of one per file).
//! Each concept has its own module; shared fakes and helpers live in `support`.

mod argocd;
mod bounded;
mod canary;
mod cli;
mod demo;
mod e2e;
mod errors;
mod gates;
mod github;
mod github_app;
mod gitops;
mod golden;
mod lanes;
mod layering;
mod live_canary;
mod manifest;
mod org;
mod packaging;
mod pipeline;
mod ports;
mod prometheus;
mod risk;
mod rollout;
mod status_page;
mod store;
mod store_contract;
mod support;
mod tidy;
mod webhook;
