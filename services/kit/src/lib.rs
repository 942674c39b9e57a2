//! Service plumbing shared by every certmesh role: the injected clock, error reasons and their
//! mapping to `tonic::Status`, the bearer-token auth layer that puts an [`auth::AuthContext`] on
//! each request, TLS settings and the HTTP/2 + HTTP/1 server loop, metrics, logging, and
//! redacted secrets.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod duration;
pub mod grpc;
pub mod limit;
pub mod mesh;
pub mod metrics;
pub mod pki;
pub mod rbac;
pub mod reason;
pub mod rpc_metrics;
pub mod secret;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod trace;

pub use clock::{Clock, SharedClock, SystemClock};
pub use reason::Reason;
pub use secret::Secret;
