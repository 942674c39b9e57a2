//! Generates the gRPC code, the proto3 JSON (serde) impls and the REST route table.
//!
//! The route table comes from the project-owned `certmesh.api.v1.http` method option. prost
//! drops extension fields when it decodes descriptors, so the descriptor set is decoded a second
//! time through the few messages below, which name only the fields the table needs.

use std::{env, fmt::Write as _, fs, io, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "certmesh/api/v1/annotations.proto",
    "certmesh/common/v1/common.proto",
    "certmesh/issuance/v1/issuance.proto",
    "certmesh/iam/v1/iam.proto",
    "certmesh/ca/v1/ca.proto",
    "certmesh/revocation/v1/revocation.proto",
    "certmesh/fleet/v1/fleet.proto",
    "certmesh/discovery/v1/discovery.proto",
    "certmesh/notification/v1/notification.proto",
];

fn main() -> io::Result<()> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    let descriptor_path = out.join("certmesh_descriptor.bin");
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let wkt_include = protoc_bin_vendored::include_path().map_err(io::Error::other)?;

    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_with_config(config, &protos, &[PathBuf::from("."), wkt_include])?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".certmesh"])?;

    fs::write(out.join("routes.rs"), route_table(&descriptors)?)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}

fn route_table(descriptors: &[u8]) -> io::Result<String> {
    let set = FileDescriptorSet::decode(descriptors).map_err(io::Error::other)?;
    let mut table = String::from(
        "/// Every RPC with a REST mapping, from the `certmesh.api.v1.http` option.\n",
    );
    table.push_str("pub const ROUTES: &[HttpRoute] = &[\n");
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let Some(rule) = method.options.as_ref().and_then(|o| o.http.as_ref()) else {
                    continue;
                };
                writeln!(
                    table,
                    "    HttpRoute {{ service: {:?}, method: {:?}, http_method: {:?}, path: {:?}, body: {} }},",
                    format!("{}.{}", file.package, service.name),
                    method.name,
                    rule.method,
                    rule.path,
                    rule.body == "*",
                )
                .map_err(io::Error::other)?;
            }
        }
    }
    table.push_str("];\n");
    Ok(table)
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorProto {
    #[prost(string, tag = "2")]
    package: String,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ServiceDescriptorProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, repeated, tag = "2")]
    method: Vec<MethodDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodDescriptorProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "4")]
    options: Option<MethodOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct MethodOptions {
    #[prost(message, optional, tag = "50801")]
    http: Option<HttpRule>,
}

#[derive(Clone, PartialEq, Message)]
struct HttpRule {
    #[prost(string, tag = "1")]
    method: String,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(string, tag = "3")]
    body: String,
}
