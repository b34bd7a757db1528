//! Risk assessment: real diffs through the policy, the `assess` CLI, the LLM adapter against a
//! fake OpenAI-compatible server, and the pull-request flow against a fake GitHub.

mod cli;
mod fake_openai;
mod fixtures;
mod github;
mod golden;
mod llm;
mod local_models;
