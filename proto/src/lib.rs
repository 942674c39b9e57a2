//! The certmesh API, generated at build time from `proto/`.
//!
//! Every message implements `prost::Message` and serde's proto3 JSON mapping with the proto field
//! names (snake_case), so the gateway's REST/JSON surface and gRPC share one schema. [`ROUTES`]
//! lists the REST mapping of every annotated RPC.

#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// The serialized `FileDescriptorSet` of every certmesh proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/certmesh_descriptor.bin"));

/// One REST mapping, declared next to its RPC with `option (certmesh.api.v1.http)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRoute {
    /// Fully qualified gRPC service, e.g. `certmesh.issuance.v1.IssuanceService`.
    pub service: &'static str,
    /// RPC name within the service, e.g. `Issue`.
    pub method: &'static str,
    /// HTTP method, upper case.
    pub http_method: &'static str,
    /// Path template; `{field}` segments bind to request fields.
    pub path: &'static str,
    /// Whether the JSON body is read into the request message.
    pub body: bool,
}

impl HttpRoute {
    /// The gRPC path, `/package.Service/Method`.
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

include!(concat!(env!("OUT_DIR"), "/routes.rs"));

pub mod certmesh {
    pub mod api {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.api.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.api.v1.serde.rs"));
        }
    }
    pub mod ca {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.ca.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.ca.v1.serde.rs"));
        }
    }
    pub mod common {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.common.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.common.v1.serde.rs"));
        }
    }
    pub mod iam {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.iam.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.iam.v1.serde.rs"));
        }
    }
    pub mod issuance {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.issuance.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.issuance.v1.serde.rs"));
        }
    }
    pub mod discovery {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.discovery.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.discovery.v1.serde.rs"));
        }
    }
    pub mod notification {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.notification.v1.rs"));
            include!(concat!(
                env!("OUT_DIR"),
                "/certmesh.notification.v1.serde.rs"
            ));
        }
    }
    pub mod fleet {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.fleet.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.fleet.v1.serde.rs"));
        }
    }
    pub mod revocation {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/certmesh.revocation.v1.rs"));
            include!(concat!(env!("OUT_DIR"), "/certmesh.revocation.v1.serde.rs"));
        }
    }
}

pub use certmesh::{
    ca::v1 as ca, common::v1 as common, discovery::v1 as discovery, fleet::v1 as fleet,
    iam::v1 as iam, issuance::v1 as issuance, notification::v1 as notification,
    revocation::v1 as revocation,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_carries_the_declared_rest_mappings() {
        let issue = ROUTES
            .iter()
            .find(|r| r.method == "Issue")
            .expect("Issue is annotated");
        assert_eq!(issue.service, "certmesh.issuance.v1.IssuanceService");
        assert_eq!(issue.http_method, "POST");
        assert_eq!(issue.path, "/api/v1/certificates");
        assert!(issue.body);
        assert_eq!(
            issue.grpc_path(),
            "/certmesh.issuance.v1.IssuanceService/Issue"
        );
        let version = ROUTES
            .iter()
            .find(|r| r.method == "GetProfileVersion")
            .expect("GetProfileVersion is annotated");
        assert_eq!(version.path, "/api/v1/profiles/{name}/versions/{version}");
        assert!(!version.body);
        assert_eq!(ROUTES.len(), 67);
    }

    #[test]
    fn json_uses_proto_field_names() {
        let req = issuance::IssueRequest {
            csr: "pem".into(),
            profile: "web".into(),
            validity: "24h".into(),
            idempotency_key: String::new(),
        };
        let json = serde_json::to_value(&req).expect("serializes");
        assert_eq!(json["idempotency_key"], "");
        let back: issuance::ListCertificatesRequest =
            serde_json::from_value(serde_json::json!({"page_size": "10"})).expect("string u32");
        assert_eq!(back.page_size, 10);
    }
}
