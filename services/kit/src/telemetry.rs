//! Logging setup. Log lines are sentences; identifiers go in fields.

use tracing_subscriber::{EnvFilter, fmt};

/// Install the global subscriber: `CERTMESH_LOG` (or `RUST_LOG`) filters, default `info`;
/// `json` switches to one JSON object per line for log shippers.
pub fn init(json: bool) {
    let filter = std::env::var("CERTMESH_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber set earlier (tests) is fine.
    let _ = result;
}
