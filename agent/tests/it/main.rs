//! The agent's integration tests: one binary, a module per topic.

mod deploy;
mod fleet;
mod identity;
mod jobs;
mod session;
mod support;
