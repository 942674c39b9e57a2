//! The fleet's records: the agent-identity CA (global), bootstrap tokens and agents
//! ([`enrollment`]), and bindings, jobs and deployments ([`work`]). Every call but the identity
//! CA's and [`enrollment::claim_bootstrap_token`] is tenant-scoped.

pub mod enrollment;
pub mod work;

pub use enrollment::*;
pub use work::*;
