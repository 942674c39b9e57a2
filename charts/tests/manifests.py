"""What the certmesh chart must render: Helm rendering helpers and the checks over manifests.

Each check raises `Failed` with a sentence naming the object and the rule it breaks.
charts/tests/test_chart.py runs them for every values file.
"""

from __future__ import annotations

import base64
import copy
import pathlib
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSION = "1.31.0"
RELEASE = "certmesh"
NAMESPACE = "certmesh"
ROLES = ["gateway", "issuance", "iam", "ca", "revocation", "discovery", "notification", "fleet"]
NEEDS_DATABASE = set(ROLES) - {"gateway"}
NEEDS_KEYS = {"issuance", "ca", "revocation", "fleet"}
NEEDS_KEK = {"issuance", "ca", "revocation", "fleet", "notification"}
CALLS_ROLES = {"gateway", "fleet", "discovery"}
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job"}
HOOK_EVENTS = {"pre-install", "pre-upgrade"}
# Not in the Kubernetes schemas: checked by hand below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
PLANTED_PASSWORD = "pl4nted-Passw0rd"

Doc = dict[str, Any]


class Failed(AssertionError):
    pass


def check(condition: Any, message: str) -> None:
    if not condition:
        raise Failed(message)


# --- rendering ---------------------------------------------------------------------------


def deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


def render(chart: helm.Chart, values: dict[str, Any]) -> list[Doc]:
    """Every object the chart renders (hooks included), parsed."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[Doc] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["_template"] = path
                docs.append(doc)
    return docs


def rendered_text(chart: helm.Chart, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def strip(doc: Doc) -> Doc:
    clean = {k: v for k, v in doc.items() if not k.startswith("_")}
    if not clean.get("metadata", {}).get("annotations"):
        clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k != "annotations"}
    return clean


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    check(len(found) == 1, f"expected one {kind} {name}, found {len(found)}")
    return found[0]


def component(doc: Doc) -> str:
    return doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def pod_spec(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]


def fullname(suffix: str = "") -> str:
    return f"{RELEASE}-{suffix}" if suffix else RELEASE


# --- checks every values file gets -------------------------------------------------------


def check_lint(chart_dir: pathlib.Path, values: dict[str, Any]) -> None:
    report = helm.lint(chart_dir, values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    check(not problems and not report["errors"],
          f"helm lint: {problems or report['errors']}")


def check_schemas(docs: list[Doc]) -> None:
    for doc in docs:
        what = f"{doc['kind']}/{doc['metadata']['name']} ({doc['_template']})"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            check_service_monitor(doc, docs)
            continue
        try:
            kubernetes_validate.validate(strip(doc), KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            raise Failed(f"{what} is not a valid Kubernetes {KUBE_VERSION} object: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            raise Failed(f"{what}: {e.message}")
        name = doc["metadata"]["name"]
        check(len(name) <= (63 if doc["kind"] in {"Service", "Deployment"} else 253),
              f"{what}: name too long")


def check_service_monitor(doc: Doc, docs: list[Doc]) -> None:
    spec = doc["spec"]
    selector = spec["selector"]["matchLabels"]
    services = [s for s in of_kind(docs, "Service")
                if selector.items() <= s["metadata"].get("labels", {}).items()]
    check(len(services) == 1, f"ServiceMonitor {doc['metadata']['name']} selects {len(services)} Services")
    ports = {p["name"] for p in services[0]["spec"]["ports"]}
    listener = services[0]["metadata"]["labels"].get("certmesh.io/listener")
    for endpoint in spec["endpoints"]:
        check(endpoint["port"] in ports, f"ServiceMonitor port {endpoint['port']} not on the Service")
        check(endpoint["path"] == "/metrics", "ServiceMonitor scrapes /metrics")
        if listener == "role":
            # A role's API listener demands mesh certificates: scrape its operations listener.
            check(endpoint["port"] == "ops" and endpoint["scheme"] == "http",
                  "a role's ServiceMonitor scrapes the plain operations listener")
        else:
            check(endpoint["scheme"] == "https", "the gateway's ServiceMonitor scrapes over HTTPS")


def containers_of(doc: Doc) -> list[tuple[str, Doc]]:
    spec = pod_spec(doc)
    return ([("init", c) for c in spec.get("initContainers", [])]
            + [("main", c) for c in spec["containers"]])


def check_pod_security(docs: list[Doc], values: dict[str, Any]) -> None:
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    check(workloads, "no workload rendered")
    for doc in workloads:
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        pod = spec.get("securityContext", {})
        check(pod.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{what}: pod seccompProfile RuntimeDefault")
        check(pod.get("runAsNonRoot") is True, f"{what}: pod runAsNonRoot")
        check(spec.get("automountServiceAccountToken") is False,
              f"{what}: no service account token mounted")
        tmp = [v for v in spec.get("volumes", []) if v["name"] == "tmp"]
        check(tmp and "emptyDir" in tmp[0], f"{what}: /tmp is an emptyDir")
        for where, c in containers_of(doc):
            cwhat = f"{what} {where} container {c['name']}"
            sc = c.get("securityContext", {})
            check(sc.get("allowPrivilegeEscalation") is False, f"{cwhat}: allowPrivilegeEscalation false")
            check(sc.get("readOnlyRootFilesystem") is True, f"{cwhat}: readOnlyRootFilesystem")
            check(sc.get("runAsNonRoot") is True, f"{cwhat}: runAsNonRoot")
            check(sc.get("privileged") in (None, False), f"{cwhat}: not privileged")
            check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{cwhat}: drops ALL capabilities")
            check(not sc.get("capabilities", {}).get("add"), f"{cwhat}: adds no capabilities")
            check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                  f"{cwhat}: seccompProfile RuntimeDefault")
            user = sc.get("runAsUser", pod.get("runAsUser"))
            check(user and user > 0, f"{cwhat}: runs as a non-zero uid")
            res = c.get("resources", {})
            for kind, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
                for key in keys:
                    check(res.get(kind, {}).get(key), f"{cwhat}: resources.{kind}.{key}")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            check(mounts.get("/tmp") == "tmp", f"{cwhat}: mounts /tmp")


def check_probes(docs: list[Doc]) -> None:
    for doc in docs:
        if doc["kind"] not in {"Deployment", "DaemonSet"}:
            continue
        for where, c in containers_of(doc):
            cwhat = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
            if where == "init":
                check(not any(k in c for k in ("readinessProbe", "livenessProbe")),
                      f"{cwhat}: init containers take no probes")
                continue
            check("readinessProbe" in c and "livenessProbe" in c, f"{cwhat}: readiness and liveness probes")
            if doc["kind"] == "Deployment":
                ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                check(ports.get("https") == 8443, f"{cwhat}: listener port https 8443")
                if "--ops-listen" in c.get("args", []):
                    # Kubelet holds no mesh certificate: probes use the operations listener.
                    want = ("ops", "HTTP")
                    check(ports.get("ops") == 9090 and flag(c["args"], "--ops-listen").endswith(":9090"),
                          f"{cwhat}: operations listener on 9090")
                else:
                    want = ("https", "HTTPS")
                check(ready == {"path": "/readyz", "port": want[0], "scheme": want[1]},
                      f"{cwhat}: readiness GET /readyz on {want}, got {ready}")
                check(live == {"path": "/healthz", "port": want[0], "scheme": want[1]},
                      f"{cwhat}: liveness GET /healthz on {want}, got {live}")
            else:
                check(c["readinessProbe"]["exec"]["command"][-1] == "status",
                      f"{cwhat}: agent probes run `certmesh-agent status`")


def check_secrets_stay_secret(docs: list[Doc], values: dict[str, Any]) -> None:
    """Secret material only ever reaches a container through a Secret reference."""
    for doc in docs:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        for _, c in containers_of(doc):
            for env in c.get("env", []):
                name = env["name"]
                sensitive = any(w in name for w in ("DATABASE_URL", "KEK", "TOKEN", "PASSWORD"))
                if sensitive and not name.endswith("_FILE"):
                    check("valueFrom" in env and "value" not in env,
                          f"{doc['metadata']['name']}/{c['name']}: {name} must come from a Secret")
                check("postgres://" not in str(env.get("value", "")),
                      f"{doc['metadata']['name']}/{c['name']}: a database URL in env {name}")
            for arg in c.get("args", []) + c.get("command", []):
                check("postgres" not in arg and PLANTED_PASSWORD not in arg,
                      f"{doc['metadata']['name']}/{c['name']}: a database URL in the arguments")
    given = values.get("database", {}).get("url", "") + values.get("kek", {}).get("value", "")
    for doc in of_kind(docs, "Secret"):
        if doc["metadata"]["name"] == fullname("mesh"):
            continue  # the chart's own random mesh secret (checked in check_roles)
        for value in doc.get("data", {}).values():
            plain = base64.b64decode(value).decode()
            check(plain and plain in given,
                  f"Secret {doc['metadata']['name']} holds a value not given in values")


# --- checks by mode ----------------------------------------------------------------------


def enabled_roles(values: dict[str, Any]) -> list[str]:
    roles = values.get("roles", {})
    return [r for r in ROLES if roles.get(r, {}).get("enabled", True)]


def role_deployments(docs: list[Doc]) -> dict[str, Doc]:
    return {component(d): d for d in of_kind(docs, "Deployment") if component(d) in ROLES}


def args_of(doc: Doc) -> list[str]:
    return pod_spec(doc)["containers"][0]["args"]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def check_roles(docs: list[Doc], values: dict[str, Any]) -> None:
    roles = enabled_roles(values)
    deployments = role_deployments(docs)
    check(sorted(deployments) == sorted(roles), f"one Deployment per role: {sorted(deployments)}")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    claims = {c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")}
    for role, doc in deployments.items():
        args = args_of(doc)
        spec = pod_spec(doc)
        container = spec["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        check(args[:3] == ["server", "--services", role], f"{role}: runs `certmesh server --services {role}`")
        check(flag(args, "--listen") == "0.0.0.0:8443", f"{role}: --listen 0.0.0.0:8443")
        mesh = values.get("mesh", {}).get("mode", "internal")
        check(flag(args, "--mesh") == mesh, f"{role}: --mesh {mesh}")
        public = role in ("gateway", "fleet")
        check(bool(flag(args, "--tls-cert") and flag(args, "--tls-key")) == (public or mesh != "internal"),
              f"{role}: --tls-cert iff a public listener or no internal mesh")
        check(("tls" in volumes) == (public or mesh != "internal"), f"{role}: TLS Secret mounted iff used")
        if mesh == "internal":
            secret = flag(args, "--mesh-secret-file")
            check(secret and secret.startswith(mounts["mesh"] + "/"), f"{role}: mesh secret mounted")
            check(volumes["mesh"]["secret"]["secretName"] in {
                s["metadata"]["name"] for s in of_kind(docs, "Secret")} or values["mesh"].get("existingSecret"),
                f"{role}: the mesh secret is rendered or named")
            check(flag(args, "--trust-domain"), f"{role}: --trust-domain names the mesh's role names")
            if not values["mesh"].get("existingSecret"):
                made = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == fullname("mesh")]
                check(len(made) == 1, "the chart makes the mesh secret")
                line = base64.b64decode(made[0]["data"]["mesh-secret"]).decode().strip()
                check(len(base64.b64decode(line, validate=True)) == 32, "the mesh secret is 32 random bytes, base64")
        if mesh == "files":
            check(flag(args, "--mesh-ca") == "/etc/certmesh/tls/ca.crt", f"{role}: --mesh-ca from the TLS Secret")
        check(flag(args, "--ops-listen") == "0.0.0.0:9090", f"{role}: --ops-listen 0.0.0.0:9090")
        check("--dangerous-plaintext" not in args, f"{role}: never plaintext")
        check(flag(args, "--pki-public-url"), f"{role}: --pki-public-url (every role the same)")
        check(("CERTMESH_DATABASE_URL" in env) == (role in NEEDS_DATABASE),
              f"{role}: database URL iff the role needs the store")
        check((flag(args, "--key-dir") is not None) == (role in NEEDS_KEYS), f"{role}: --key-dir iff it signs")
        if role in NEEDS_KEYS:
            claim = volumes["keys"]["persistentVolumeClaim"]["claimName"]
            check(mounts["keys"] == flag(args, "--key-dir"), f"{role}: key dir mounted at --key-dir")
            existing = values.get("keys", {}).get("persistence", {}).get("existingClaim")
            check(claim == (existing or fullname("keys")) and (existing or claim in claims),
                  f"{role}: the shared key claim")
        check((flag(args, "--kek-file") is not None) == (role in NEEDS_KEK), f"{role}: --kek-file iff needed")
        if role in NEEDS_KEK:
            check(flag(args, "--kek-file").startswith(mounts["kek"] + "/"), f"{role}: KEK file mounted")
            check("secret" in volumes["kek"], f"{role}: KEK from a Secret")
        check((flag(args, "--ca-bundle") is not None) == (role in CALLS_ROLES and mesh == "off"),
              f"{role}: --ca-bundle iff it calls other roles without a mesh")
        endpoints = [a for a in args if a.endswith("-endpoint")]
        for name in endpoints:
            host = flag(args, name).removeprefix("https://").split(":")[0]
            check(host.endswith(f".{NAMESPACE}.svc") and host.split(".")[0] in services,
                  f"{role}: {name} names a rendered Service ({host})")
        if role == "gateway":
            wanted = {f"--{r}-endpoint" for r in roles if r != "gateway"}
            check(set(endpoints) == wanted, f"gateway reaches every other role: {endpoints}")
        if role == "fleet":
            check(flag(args, "--fleet-listen") == "0.0.0.0:8444", "fleet: agent listener on 8444")
            check("--fleet-issuance-endpoint" in endpoints, "fleet: reaches the issuance role")
        if role == "revocation":
            check(flag(args, "--pki-listen") == "0.0.0.0:8080", "revocation: PKI listener on 8080")
        name = fullname(role)
        check(name in services, f"{role}: Service {name}")
        if role != "gateway":
            check(services[name]["spec"]["type"] == "ClusterIP", f"{role}: its gRPC Service is cluster-internal")
    check(fullname("pki") in services, "the PKI listener has a Service")
    check(services[fullname("pki")]["spec"]["ports"][0]["targetPort"] == "pki", "PKI Service → pki port")
    if "fleet" in roles:
        check(services[fullname("fleet-agents")]["spec"]["ports"][0]["targetPort"] == "agents",
              "the fleet agent listener has a Service")
    pdbs = {component(p) for p in of_kind(docs, "PodDisruptionBudget")}
    check(pdbs == set(roles), f"a PodDisruptionBudget per role: {sorted(pdbs)}")


def check_migration_hook(docs: list[Doc], values: dict[str, Any]) -> None:
    jobs = of_kind(docs, "Job")
    check(len(jobs) == 1, f"one migration Job, found {len(jobs)}")
    job = jobs[0]
    ann = job["metadata"]["annotations"]
    check(set(ann.get("helm.sh/hook", "").split(",")) == HOOK_EVENTS,
          f"the Job is a pre-install,pre-upgrade hook: {ann.get('helm.sh/hook')}")
    check("before-hook-creation" in ann.get("helm.sh/hook-delete-policy", ""),
          "a new hook replaces the last one")
    weight = int(ann.get("helm.sh/hook-weight", "0"))
    spec = pod_spec(job)
    container = spec["containers"][0]
    check(container["args"] == ["migrate"], f"the Job runs `certmesh migrate`: {container['args']}")
    env = {e["name"]: e for e in container["env"]}
    ref = env["CERTMESH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    check(spec["restartPolicy"] == "Never", "the Job's pod is not restarted in place")
    # What the hook needs must exist before it: a hook with a lower weight, or made by the
    # operator beforehand (an existingSecret), never a release object (created after hooks).
    hooks = {(d["kind"], d["metadata"]["name"]): d for d in docs
             if HOOK_EVENTS <= set(d["metadata"]["annotations"].get("helm.sh/hook", "").split(","))}

    def before_job(kind: str, name: str) -> bool:
        h = hooks.get((kind, name))
        return h is not None and int(h["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) < weight

    secret_is_release_object = any(s["metadata"]["name"] == ref["name"] and (s["kind"], ref["name"]) not in hooks
                                   for s in of_kind(docs, "Secret"))
    check(before_job("Secret", ref["name"]) or not secret_is_release_object,
          f"the Job's database Secret {ref['name']} exists before the hook runs")
    check(before_job("ServiceAccount", spec["serviceAccountName"]),
          "the Job's ServiceAccount is a hook created before it")
    if values.get("networkPolicy", {}).get("enabled", True):
        policies = [d for d in of_kind(docs, "NetworkPolicy")
                    if d["spec"]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()]
        check(len(policies) == 1 and before_job("NetworkPolicy", policies[0]["metadata"]["name"]),
              "the Job's NetworkPolicy is a hook created before it")


def role_mesh(peer: Doc, roles: list[str]) -> bool:
    selector = peer.get("podSelector", {})
    expressions = selector.get("matchExpressions", [])
    return (set(peer) == {"podSelector"}
            and selector.get("matchLabels", {}).get("app.kubernetes.io/instance") == RELEASE
            and len(expressions) == 1
            and expressions[0]["key"] == "app.kubernetes.io/component"
            and expressions[0]["operator"] == "In"
            and sorted(expressions[0]["values"]) == sorted(roles))


def rules_for_port(rules: list[Doc], port: int) -> list[Doc]:
    return [r for r in rules if not r.get("ports") or any(p.get("port") == port for p in r["ports"])]


def check_network_policies(docs: list[Doc], values: dict[str, Any]) -> None:
    np = values.get("networkPolicy", {})
    policies = of_kind(docs, "NetworkPolicy")
    by_component = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): p
                    for p in policies}
    for doc in docs:
        if doc["kind"] in {"Deployment", "DaemonSet"}:
            check(component(doc) in by_component, f"{doc['metadata']['name']}: a NetworkPolicy selects its pods")
    mode = values.get("mode", "distributed")
    if mode != "distributed":
        return
    roles = enabled_roles(values)
    metrics_from = np.get("metricsFrom", [])
    for role in roles:
        policy = by_component.get(role)
        check(policy, f"a NetworkPolicy for role {role}")
        spec = policy["spec"]
        check(set(spec["policyTypes"]) == {"Ingress", "Egress"}, f"{role}: ingress and egress are both limited")
        ingress = spec.get("ingress", [])
        listener = rules_for_port(ingress, 8443)
        check(listener, f"{role}: something may reach its listener")
        if role == "gateway":
            continue
        for rule in listener:
            peers = rule.get("from")
            check(peers, f"{role}: its gRPC port is not open to everyone")
            for peer in peers:
                check(role_mesh(peer, roles) or peer in metrics_from,
                      f"{role}: its gRPC port admits only the gateway and the other roles, not {peer}")
        check(any(role_mesh(p, roles) for r in listener for p in r["from"]), f"{role}: the gateway may call it")
        check(all(p["port"] in (8443, 8080, 8444, 9090) for r in ingress for p in r.get("ports", [])),
              f"{role}: no other port is open")
        for rule in rules_for_port(ingress, 9090):
            check(all(peer in metrics_from for peer in rule.get("from", [None])),
                  f"{role}: the operations listener admits only networkPolicy.metricsFrom")
        egress = spec["egress"]
        check(any(p.get("port") == 53 for r in egress for p in r.get("ports", [])), f"{role}: DNS egress")
        if role in NEEDS_DATABASE:
            db_ports = set(np.get("databasePorts", [5432]))
            check(any(db_ports <= {p.get("port") for p in r.get("ports", [])} for r in egress),
                  f"{role}: database egress")
        if role in CALLS_ROLES:
            check(any(role_mesh(p, roles) for r in egress for p in r.get("to", [])),
                  f"{role}: egress to the roles it calls")
        if role == "revocation":
            pki = rules_for_port(ingress, 8080)
            check(pki and (not pki[0].get("from") or np.get("pkiFrom")), "revocation: the PKI listener is public")
        if role == "fleet":
            agents = rules_for_port(ingress, 8444)
            check(agents, "fleet: agents may reach the agent listener")
            if agents[0].get("from"):
                check(any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "agent"
                          for p in agents[0]["from"]), "fleet: this chart's agents may reach it")
        if role in {"discovery", "notification"}:
            wanted = np.get(f"{role}Egress")
            if wanted is not None:
                for rule in wanted:
                    check(rule in egress, f"{role}: the configured egress rule {rule}")


def check_agent(docs: list[Doc], values: dict[str, Any]) -> None:
    agent = values.get("agent", {})
    daemonsets = of_kind(docs, "DaemonSet")
    if not agent.get("enabled"):
        check(not daemonsets, "no agent DaemonSet unless agent.enabled")
        return
    check(len(daemonsets) == 1, "one agent DaemonSet")
    ds = daemonsets[0]
    spec = pod_spec(ds)
    volumes = {v["name"]: v for v in spec["volumes"]}
    init = {c["name"]: c for c in spec.get("initContainers", [])}
    main = {c["name"]: c for c in spec["containers"]}
    check(set(init) == {"enroll"} and set(main) == {"agent"}, "an enroll init container, then the agent")
    enroll, run = init["enroll"], main["agent"]
    check(run["command"] == ["/usr/local/bin/certmesh-agent"] and run["args"] == ["run"],
          "the agent runs `certmesh-agent run`")
    check(run["image"] == enroll["image"], "enroll runs in the agent image")
    check(run["image"].startswith(agent["image"]["repository"] + ":"), "the agent image")
    check(enroll["command"] == ["/usr/local/bin/certmesh-agent"]
          and enroll["args"] == ["enroll", "--if-not-enrolled"],
          "enroll is a no-op when the state directory already holds an identity (no shell script)")
    state_dir = agent.get("stateDir", "/var/lib/certmesh-agent")

    def host_mount(container: Doc, path: str) -> Doc | None:
        for m in container["volumeMounts"]:
            if m["mountPath"] == path and "hostPath" in volumes[m["name"]]:
                check(volumes[m["name"]]["hostPath"]["path"] == path,
                      f"{path} is mounted from the same host path")
                return m
        return None

    for container in (enroll, run):
        check(host_mount(container, state_dir), f"{container['name']}: the state dir is a hostPath")
        env = {e["name"]: e for e in container["env"]}
        check(env["CERTMESH_AGENT_STATE_DIR"]["value"] == state_dir, "CERTMESH_AGENT_STATE_DIR")
        check(env["CERTMESH_AGENT_SERVER"]["value"].startswith("https://"), "CERTMESH_AGENT_SERVER is https")
        check(env["CERTMESH_AGENT_CA_BUNDLE"]["value"] == "/etc/certmesh-agent/ca/ca.pem", "the CA bundle")
    for entry in agent.get("hostPaths", []):
        mount = host_mount(run, entry["path"])
        check(mount, f"host path {entry['path']} is mounted")
        check(not mount.get("readOnly"), f"{entry['path']} is writable")
    for path in agent.get("discovery", {}).get("paths", []):
        check(host_mount(run, path), f"discovery path {path} is mounted from the host")
        if path not in [e["path"] for e in agent.get("hostPaths", [])]:
            check(host_mount(run, path).get("readOnly"), f"discovery path {path} is read-only")
    run_env = {e["name"] for e in run["env"]}
    check(not {"CERTMESH_AGENT_BOOTSTRAP_TOKEN", "CERTMESH_AGENT_BOOTSTRAP_TOKEN_FILE"} & run_env,
          "the bootstrap token reaches only the enroll container")
    token = agent["bootstrapToken"]
    enroll_env = {e["name"]: e for e in enroll["env"]}
    if token.get("perNode", True):
        check(enroll_env["CERTMESH_AGENT_BOOTSTRAP_TOKEN_FILE"]["value"] == "/etc/certmesh-agent/tokens/$(NODE_NAME)",
              "each node reads its own token file")
        check(volumes["tokens"]["secret"]["secretName"] == token["existingSecret"],
              "the token file comes from agent.bootstrapToken.existingSecret")
        check(any(m["name"] == "tokens" and m.get("readOnly") for m in enroll["volumeMounts"]),
              "the token Secret is mounted read-only")
        check(enroll_env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName",
              "NODE_NAME from the downward API")
    else:
        ref = enroll_env["CERTMESH_AGENT_BOOTSTRAP_TOKEN"]["valueFrom"]["secretKeyRef"]
        check(ref["name"] == token["existingSecret"], "the token comes from its Secret")
    if agent.get("tolerations"):
        check(spec["tolerations"] == agent["tolerations"], "tolerations")
    if agent.get("nodeSelector"):
        check(spec["nodeSelector"] == agent["nodeSelector"], "nodeSelector")
    check(spec.get("hostNetwork", False) == agent.get("hostNetwork", False), "hostNetwork as configured")


def check_mode(docs: list[Doc], values: dict[str, Any]) -> None:
    mode = values.get("mode", "distributed")
    deployments = of_kind(docs, "Deployment")
    if mode == "distributed":
        check_roles(docs, values)
        if values.get("migration", {}).get("enabled", True):
            check_migration_hook(docs, values)
    elif mode == "all-in-one":
        check(len(deployments) == 1 and component(deployments[0]) == "all-in-one",
              "all-in-one: exactly one Deployment")
        d = deployments[0]
        check(d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate",
              "all-in-one: one replica, replaced on upgrade")
        args = args_of(d)
        check(args[:4] == ["server", "--dev", "--data-dir", "/data"],
              f"all-in-one: `certmesh server --dev --data-dir /data`: {args[:4]}")
        mounts = {m["mountPath"]: m["name"] for m in pod_spec(d)["containers"][0]["volumeMounts"]}
        volume = {v["name"]: v for v in pod_spec(d)["volumes"]}[mounts["/data"]]
        check("persistentVolumeClaim" in volume, "all-in-one: /data is a PersistentVolumeClaim")
        check(not of_kind(docs, "Job") and not of_kind(docs, "HorizontalPodAutoscaler"),
              "all-in-one: no migration Job (SQLite migrates at start), no HPA")
        names = {s["metadata"]["name"] for s in of_kind(docs, "Service")}
        check({fullname("gateway"), fullname("pki"), fullname("fleet-agents")} <= names,
              "all-in-one: gateway, PKI and agent Services")
    elif mode == "agent-only":
        kinds = {d["kind"] for d in docs}
        check(not deployments and not of_kind(docs, "Job") and not of_kind(docs, "Service"),
              f"agent-only: nothing but the agent: {sorted(kinds)}")
        check(of_kind(docs, "DaemonSet"), "agent-only: the DaemonSet")


def check_ha(docs: list[Doc], values: dict[str, Any]) -> None:
    deployments = role_deployments(docs)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    check(hpas, "HA: some roles autoscale")
    for role, d in deployments.items():
        name = d["metadata"]["name"]
        floor = hpas[name]["spec"]["minReplicas"] if name in hpas else d["spec"]["replicas"]
        check(floor >= 2, f"HA: {role} runs at least 2 replicas ({floor})")
        check(("replicas" in d["spec"]) != (name in hpas), f"HA: {role}: replicas or an HPA, not both")
    pdbs = {component(p): p for p in of_kind(docs, "PodDisruptionBudget")}
    check(set(pdbs) == set(deployments), "HA: a PDB for every role")
    check(of_kind(docs, "Ingress") and of_kind(docs, "ServiceMonitor"), "HA: Ingress and ServiceMonitor")
