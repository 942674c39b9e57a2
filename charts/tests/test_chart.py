#!/usr/bin/env python3
"""Lint, render and validate the certmesh Helm chart, then check what it renders.

For each values file under charts/certmesh/ci/ this lints the chart and renders it with Helm's
own engine (helm-python-sdk embeds Helm v4; no helm binary), validates every manifest offline
against the Kubernetes 1.31 schemas in strict mode (kubernetes-validate ships them), and
asserts over the manifests: probes, resources and pod security on every container, the
migration hook, the agent DaemonSet's mounts and token, the NetworkPolicies, and that no
secret leaks into a manifest. Values that must be refused are rendered too, and must fail.

Run with the venv `make tools` builds: `make chart-test`, or
`$VENV/bin/python charts/tests/test_chart.py [--chart DIR]`. Exits non-zero on any failure. The
checks over manifests are in manifests.py beside it.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import sys
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

# manifests.py sits beside this script (first on sys.path); leave no __pycache__ in the tree.
sys.dont_write_bytecode = True
from manifests import (  # noqa: E402
    KUBE_VERSION,
    PLANTED_PASSWORD,
    Failed,
    check,
    check_agent,
    check_ha,
    check_lint,
    check_mode,
    check_network_policies,
    check_pod_security,
    check_probes,
    check_schemas,
    check_secrets_stay_secret,
    deep_merge,
    fullname,
    of_kind,
    render,
    rendered_text,
    strip,
)

# --- values that must be refused, and secrets given in values -----------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    # (what, values over default-values.yaml, a fragment the refusal must contain)
    ("an unknown mesh mode", {"mesh": {"mode": "spiffe"}}, "/mesh/mode"),
    ("a mesh certificate lifetime that is not a duration", {"mesh": {"certValidity": "a day"}}, "/mesh/certValidity"),
    ("no TLS Secret for an inner role without the internal mesh",
     {"mesh": {"mode": "off"}, "tls": {"existingSecret": ""}, "roles": {"gateway": {"tlsSecret": "gw-tls"},
                                                                       "fleet": {"tlsSecret": "fleet-tls"}},
      "agent": {"caBundle": {"existingSecret": "fleet-tls"}}}, "has no TLS Secret"),
    ("negative replicas", {"roles": {"gateway": {"replicas": -1}}}, "/roles/gateway/replicas"),
    ("zero replicas", {"roles": {"ca": {"replicas": 0}}}, "/roles/ca/replicas"),
    ("an unknown role", {"roles": {"billing": {"replicas": 1}}}, "'billing' not allowed"),
    ("an unknown key in a role", {"roles": {"issuance": {"replica": 2}}}, "'replica' not allowed"),
    ("an unknown top-level key", {"postgresql": {"enabled": True}}, "'postgresql' not allowed"),
    ("an unknown mode", {"mode": "bogus"}, "/mode"),
    ("a bad pull policy", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("a duration without a unit", {"roles": {"fleet": {"agentHeartbeat": "15"}}}, "/roles/fleet/agentHeartbeat"),
    ("minAvailable and maxUnavailable",
     {"roles": {"iam": {"pdb": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}}}, "/roles/iam/pdb"),
    ("resources without limits",
     {"roles": {"gateway": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}}},
     "missing property 'limits'"),
    ("root", {"podSecurity": {"runAsUser": 0}}, "/podSecurity/runAsUser"),
    ("a non-PostgreSQL database", {"database": {"existingSecret": "", "url": "sqlite:///data/x.db"}}, "/database/url"),
    ("a KEK that is not 32 bytes", {"kek": {"existingSecret": "", "value": "c2hvcnQ="}}, "/kek/value"),
    ("no database", {"database": {"existingSecret": ""}}, "needs an external PostgreSQL"),
    ("two databases", {"database": {"url": "postgres://db/certmesh"}}, "not both"),
    ("no KEK", {"kek": {"existingSecret": ""}}, "kek: set kek.existingSecret"),
    ("no TLS Secret", {"tls": {"existingSecret": ""}}, "has no TLS Secret"),
    ("minReplicas above maxReplicas",
     {"roles": {"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}},
     "minReplicas 5 is above maxReplicas 2"),
    ("CRL shards out of range", {"pki": {"crlShards": 2000}}, "/pki/crlShards"),
    ("a key volume no two pods can share", {"keys": {"persistence": {"accessModes": ["ReadWriteOncePod"]}}},
     "/keys/persistence/accessModes"),
    ("an agent without tokens", {"agent": {"enabled": True}}, "agent.bootstrapToken.existingSecret"),
    ("an agent speaking HTTP", {"agent": {"enabled": True, "server": "http://fleet:8444",
                                          "bootstrapToken": {"existingSecret": "t"}}}, "/agent/server"),
    ("a relative host path", {"agent": {"enabled": True, "bootstrapToken": {"existingSecret": "t"},
                                        "hostPaths": [{"name": "x", "path": "etc/x"}]}}, "/agent/hostPaths/0/path"),
    ("a host path over the state dir", {"agent": {"enabled": True, "bootstrapToken": {"existingSecret": "t"},
                                                  "hostPaths": [{"name": "x", "path": "/var/lib/certmesh-agent"}]}},
     "mounted twice"),
    ("agent-only without a server", {"mode": "agent-only", "agent": {"enabled": True,
                                     "bootstrapToken": {"existingSecret": "t"},
                                     "caBundle": {"existingConfigMap": "ca"}}}, "agent.server"),
    ("agent-only without the agent", {"mode": "agent-only"}, "set agent.enabled=true"),
]


# Other valid shapes over default-values.yaml: rendered, schema-checked and checked like the
# ci files (pod security too, unless the variant opts out of it on purpose).
VARIANTS: list[tuple[str, dict[str, Any], bool]] = [
    ("optional roles off", {"roles": {"discovery": {"enabled": False}, "notification": {"enabled": False},
                                      "fleet": {"enabled": False}}}, True),
    ("the database URL and KEK in values",
     {"database": {"existingSecret": "", "url": "postgres://u:p@db/certmesh"},
      "kek": {"existingSecret": "", "value": "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="}}, True),
    ("an existing key claim, per-role TLS, NodePorts",
     {"keys": {"persistence": {"existingClaim": "ca-keys"}},
      "roles": {"gateway": {"tlsSecret": "gateway-tls"}},
      "services": {"gateway": {"type": "NodePort", "port": 8443, "nodePort": 30443}}}, True),
    ("no network policies, no migration Job", {"networkPolicy": {"enabled": False},
                                               "migration": {"enabled": False}}, True),
    ("one bootstrap token from an env var",
     {"agent": {"enabled": True, "bootstrapToken": {"existingSecret": "t", "perNode": False, "key": "token"}}}, True),
    ("an agent as root", {"agent": {"enabled": True, "bootstrapToken": {"existingSecret": "t"},
                                    "dangerousRunAsRoot": True}}, False),
    ("a mesh from mounted files", {"mesh": {"mode": "files"}}, True),
    ("no mesh", {"mesh": {"mode": "off"}}, True),
    ("an existing mesh secret", {"mesh": {"existingSecret": "certmesh-mesh", "existingSecretKey": "s"}}, True),
    ("an internal mesh with TLS only for the gateway and fleet",
     {"tls": {"existingSecret": ""}, "roles": {"gateway": {"tlsSecret": "gw-tls"}, "fleet": {"tlsSecret": "fleet-tls"}},
      "agent": {"caBundle": {"existingSecret": "fleet-tls"}}}, True),
    ("all-in-one with agents", {"mode": "all-in-one", "serviceMonitor": {"enabled": True},
                                "agent": {"enabled": True, "bootstrapToken": {"existingSecret": "t"},
                                          "caBundle": {"existingSecret": "dev-ca"}}}, True),
]


def check_variant(chart: helm.Chart, base: dict[str, Any], overrides: dict[str, Any], secure: bool) -> None:
    values = deep_merge(base, overrides)
    merged = chart.merge_values(values)
    docs = render(chart, values)
    check_schemas(docs)
    if secure:
        check_pod_security(docs, merged)
    check_probes(docs)
    check_secrets_stay_secret(docs, values)
    check_mode(docs, merged)
    if merged["networkPolicy"]["enabled"]:
        check_network_policies(docs, merged)
    else:
        check(not of_kind(docs, "NetworkPolicy"), "no NetworkPolicy when disabled")
    check_agent(docs, merged)


def check_invalid(chart: helm.Chart, base: dict[str, Any], overrides: dict[str, Any], why: str) -> None:
    values = deep_merge(base, overrides)
    try:
        rendered_text(chart, values)
    except (helm.HelmValuesError, helm.HelmRenderError) as e:
        check(why in str(e), f"refused, but not for {why!r}: {' '.join(str(e).split())}")
        return
    raise Failed(f"rendered although invalid: {overrides}")


def check_planted_password(chart: helm.Chart, base: dict[str, Any]) -> None:
    """A database URL given in values lands in Secrets only (and nowhere without it)."""
    url = f"postgres://certmesh:{PLANTED_PASSWORD}@db.example.com:5432/certmesh"
    values = deep_merge(base, {"database": {"existingSecret": "", "url": url}})
    docs = render(chart, values)
    check_secrets_stay_secret(docs, values)
    encoded = base64.b64encode(url.encode()).decode()
    holders = set()
    for doc in docs:
        text = yaml.safe_dump(strip(doc))
        if doc["kind"] == "Secret":
            if encoded in text:
                holders.add(doc["metadata"]["name"])
            continue
        check(PLANTED_PASSWORD not in text and encoded not in text,
              f"{doc['kind']}/{doc['metadata']['name']} carries the database password")
    check(holders == {fullname("database"), fullname("migrate-database")},
          f"the URL is in the roles' Secret and the migration hook's copy: {holders}")
    for text in rendered_text(chart, base).values():
        check(PLANTED_PASSWORD not in text and "postgres://" not in text,
              "with existingSecret no database URL is rendered at all")


def check_dockerfile(root: pathlib.Path, values: dict[str, Any]) -> None:
    """The images the chart names by default are the ones the Dockerfile builds."""
    text = (root / "Dockerfile").read_text()
    stages = [line.split() for line in text.splitlines() if line.upper().startswith("FROM ")]
    check(stages[-1][1] == "gcr.io/distroless/cc-debian12:nonroot",
          "the default target is distroless, nonroot")
    check(any(s[-1] == "agent" for s in stages), "an `agent` target for agent.image")
    check('ENTRYPOINT ["/usr/local/bin/certmesh"]' in text.split("FROM ")[-1], "certmesh is the entrypoint")
    check(text.count("USER 65532:65532") == len(stages) - 1, "every image runs as 65532")
    check("cargo build --release --locked -p certmesh -p certmesh-agent" in text, "both binaries are built")
    check(values["image"]["repository"] == "ghcr.io/certmesh/certmesh"
          and values["agent"]["image"]["repository"] == "ghcr.io/certmesh/certmesh-agent",
          "the chart's default images")
    check(values["podSecurity"]["runAsUser"] == 65532, "the chart runs as the image's user")


# --- the run -----------------------------------------------------------------------------


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=pathlib.Path, default=here.parent / "certmesh")
    args = parser.parse_args()
    chart_dir = args.chart.resolve()
    ci_files = sorted((chart_dir / "ci").glob("*-values.yaml"))
    names = {f.name for f in ci_files}
    required = {"default-values.yaml", "ha-values.yaml", "all-in-one-values.yaml", "agent-only-values.yaml"}
    passed = failed = 0

    def run(label: str, fn: Callable[[], None]) -> None:
        nonlocal passed, failed
        try:
            fn()
        except Failed as e:
            failed += 1
            print(f"FAIL {label}: {e}")
        except helm.HelmError as e:
            failed += 1
            print(f"FAIL {label}: helm: {e}")
        else:
            passed += 1
            print(f"ok   {label}")

    run("ci values files", lambda: check(required <= names, f"missing {sorted(required - names)}"))
    print(f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {KUBE_VERSION}")
    with helm.Chart.load(chart_dir) as chart:
        for path in ci_files:
            values = yaml.safe_load(path.read_text()) or {}
            merged = chart.merge_values(values)
            label = path.name
            run(f"{label}: helm lint --strict", lambda: check_lint(chart_dir, values))
            try:
                docs = render(chart, values)
            except helm.HelmError as e:
                failed += 1
                print(f"FAIL {label}: render: {e}")
                continue
            passed += 1
            print(f"ok   {label}: renders {len(docs)} objects")
            run(f"{label}: Kubernetes {KUBE_VERSION} schemas (strict)", lambda: check_schemas(docs))
            run(f"{label}: pod security and resources", lambda: check_pod_security(docs, merged))
            run(f"{label}: probes", lambda: check_probes(docs))
            run(f"{label}: secrets stay in Secrets", lambda: check_secrets_stay_secret(docs, values))
            run(f"{label}: {merged['mode']} layout", lambda: check_mode(docs, merged))
            run(f"{label}: network policies", lambda: check_network_policies(docs, merged))
            run(f"{label}: agent DaemonSet", lambda: check_agent(docs, merged))
            if path.name == "ha-values.yaml":
                run(f"{label}: replicas, HPAs and PDBs", lambda: check_ha(docs, merged))
        run("values.yaml passes its own schema", lambda: chart.validate_schema({}))
        root = here.parent.parent
        run("Dockerfile and the chart's default images", lambda: check_dockerfile(root, chart.values))
        base = yaml.safe_load((chart_dir / "ci" / "default-values.yaml").read_text())
        for what, overrides, secure in VARIANTS:
            run(f"renders: {what}", lambda: check_variant(chart, base, overrides, secure))
        for what, overrides, why in INVALID:
            run(f"refused: {what}", lambda: check_invalid(chart, base, overrides, why))
        run("a database URL given in values stays in Secrets", lambda: check_planted_password(chart, base))
    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
