# certmesh — `make help` lists the targets.
SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/certmesh/target
export CARGO_TARGET_DIR
CERTMESH_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
export CERTMESH_TEST_DATABASE_URL
# Python tools used as independent verifiers (pkilint); one venv per requirements file.
VENV ?= $(HOME)/.cache/certmesh/venv-$(shell sha256sum e2e/requirements.txt | cut -c1-12)
export CERTMESH_PKILINT := $(VENV)/bin/lint_pkix_cert
export CERTMESH_PYTHON := $(VENV)/bin/python
export CERTMESH_BIN := $(CARGO_TARGET_DIR)/debug/certmesh
export CERTMESH_AGENT_BIN := $(CARGO_TARGET_DIR)/debug/certmesh-agent
ARGS ?=

.PHONY: help run build test tools nginx lint fmt clippy deny bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

run: ## build and start `certmesh server --dev` (SQLite under ./.certmesh)
	cargo run -p certmesh -- server --dev $(ARGS)

build: ## build every crate and the certmesh binary
	cargo build --workspace --all-targets

tools: $(VENV)/.ok nginx ## install the Python verifiers (pkilint) into a venv, and nginx

# The agent's end-to-end test deploys to a real nginx (Debian package).
nginx:
	@command -v nginx >/dev/null || { \
		echo "installing nginx (the agent e2e deploy target) from Debian"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq nginx; }

$(VENV)/.ok: e2e/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r e2e/requirements.txt
	touch $@

chart-test: tools ## lint, render and validate the Helm chart
	$(VENV)/bin/python charts/tests/test_chart.py

test: tools chart-test ## run every test: unit, store (SQLite + PostgreSQL), e2e with openssl, pkilint and nginx, the Helm chart
	cargo build -p certmesh -p certmesh-agent
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

lint: fmt clippy deny ## rustfmt check, clippy -D warnings, docs, cargo-deny
	cargo doc --workspace --no-deps --quiet

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

deny:
	@command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
	cargo deny check bans

bench: ## issuance and OCSP throughput, CRL generation, agent streams and renewal storms, notification relay (BENCH_SECONDS, BENCH_CLIENTS, BENCH_CONNECTIONS, BENCH_AGENTS)
	@command -v wrk >/dev/null || { \
		echo "installing wrk (the OCSP load generator) from Debian"; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq wrk; }
	cargo build --release -p certmesh
	CERTMESH_BIN=$(CARGO_TARGET_DIR)/release/certmesh cargo bench -p certmesh-e2e --bench issue
	CERTMESH_BIN=$(CARGO_TARGET_DIR)/release/certmesh cargo bench -p certmesh-e2e --bench ocsp
	cargo bench -p certmesh-revocation --bench crl
	cargo bench -p certmesh-notification --bench relay
	CERTMESH_BIN=$(CARGO_TARGET_DIR)/release/certmesh cargo bench -p certmesh-e2e --bench fleet
