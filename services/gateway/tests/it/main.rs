//! Gateway integration tests: the router driven in-process, one module per topic.

mod metrics;
mod rate_limit;
