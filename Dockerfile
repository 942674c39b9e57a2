# syntax=docker/dockerfile:1
# certmesh and certmesh-agent in one image, built from this workspace.
#
#   docker build -t ghcr.io/certmesh/certmesh:0.1.0 .                            # servers
#   docker build --target agent -t ghcr.io/certmesh/certmesh-agent:0.1.0 .     # the agent
#
# The default image is distroless (glibc and libgcc, no shell, no package manager), runs as
# the nonroot user 65532, and holds both binaries with certmesh as the entrypoint. The
# `agent` target puts certmesh-agent on distroless's debug-nonroot base, which adds busybox:
# the agent runs each binding's validate and reload commands with `sh -c`.
# docs/install/kubernetes.md says how to build and push both.

ARG RUST_VERSION=1.95

# Bookworm, to match the glibc of distroless/cc-debian12 (a newer Debian's glibc would
# link symbols the runtime does not have).
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# protoc comes from protoc-bin-vendored and SQLite is compiled in: no apt step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p certmesh -p certmesh-agent \
    && install -D -m 0755 target/release/certmesh /out/certmesh \
    && install -D -m 0755 target/release/certmesh-agent /out/certmesh-agent

FROM gcr.io/distroless/cc-debian12:debug-nonroot AS agent
LABEL org.opencontainers.image.title="certmesh-agent" \
      org.opencontainers.image.description="certmesh fleet agent, with busybox for binding commands" \
      org.opencontainers.image.source="https://github.com/certmesh/certmesh" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/certmesh-agent /usr/local/bin/
# Binding commands run as `sh -c …`: busybox's sh (and kill, wget, …) must be on the PATH.
ENV PATH=/usr/local/bin:/usr/bin:/bin:/busybox
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/certmesh-agent"]
CMD ["run"]

# The default target (last stage).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="certmesh" \
      org.opencontainers.image.description="certmesh certificate-lifecycle control plane and certmesh-agent" \
      org.opencontainers.image.source="https://github.com/certmesh/certmesh" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/certmesh /out/certmesh-agent /usr/local/bin/
USER 65532:65532
# 8443 every role's listener (TLS), 8080 the PKI listener (HTTP), 8444 the agent listener.
EXPOSE 8443 8080 8444
ENTRYPOINT ["/usr/local/bin/certmesh"]
CMD ["--help"]
