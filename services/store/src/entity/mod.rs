//! sea-orm entities, one per table; private to the crate so every access goes through a
//! tenant-scoped repository function.

pub(crate) mod agent_identity_cas;
pub(crate) mod agents;
pub(crate) mod api_tokens;
pub(crate) mod approvals;
pub(crate) mod audit_events;
pub(crate) mod audit_heads;
pub(crate) mod bindings;
pub(crate) mod bootstrap_tokens;
pub(crate) mod ca_certificates;
pub(crate) mod cas;
pub(crate) mod ceremonies;
pub(crate) mod ceremony_approvals;
pub(crate) mod certificates;
pub(crate) mod crl_counters;
pub(crate) mod crls;
pub(crate) mod deployments;
pub(crate) mod discovered_certificates;
pub(crate) mod expiry_alerts;
pub(crate) mod fleet_jobs;
pub(crate) mod idempotency_keys;
pub(crate) mod leases;
pub(crate) mod notification_channels;
pub(crate) mod notification_deliveries;
pub(crate) mod notification_rules;
pub(crate) mod outbox;
pub(crate) mod principal_keys;
pub(crate) mod principals;
pub(crate) mod profile_versions;
pub(crate) mod profiles;
pub(crate) mod revocations;
pub(crate) mod scan_targets;
pub(crate) mod scans;
pub(crate) mod tenants;
