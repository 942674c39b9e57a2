//! The tenancy wall through every REST route: two tenants, acme and globex, on one PostgreSQL
//! database behind one gateway. Acme fills its tenant with profiles, certificates (one under an
//! idempotency key), a pending approval, a principal with a public key, and tokens; then
//! globex's admin goes through every route in `certmesh_proto::ROUTES` and can never see, list,
//! change or decide any of it. A refusal must also say no more about acme's resource than about
//! one that exists nowhere, and what globex reuses (profile and principal names, idempotency
//! keys, public keys) stays separate.
//!
//! A route added to the proto without a case here fails `every_rest_route_has_a_tenancy_case`.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use certmesh_proto::ROUTES;
use chrono::{DateTime, Duration};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{
    Api, Csr, PgDatabase, Process, Reply, certmesh, csr, free_port, health, kek_file, run, scratch,
    tls_identity, tool, unique, web_spec, write,
};

mod watch;

/// The RPCs this file drives across the wall: the RPC names of `certmesh_proto::ROUTES`.
const COVERED: &[&str] = &[
    "Issue",
    "GetCertificate",
    "ListCertificates",
    "CreateProfile",
    "GetProfile",
    "GetProfileVersion",
    "ListProfiles",
    "ListApprovals",
    "Approve",
    "Reject",
    "CreatePrincipal",
    "GetPrincipal",
    "ListPrincipals",
    "AddPrincipalKey",
    "ListPrincipalKeys",
    "CreateToken",
    "ListTokens",
    "RevokeToken",
    "ListAuditEvents",
    "VerifyAudit",
    "StartCeremony",
    "GetCeremony",
    "ListCeremonies",
    "ApproveCeremony",
    "CreateRoot",
    "CreateIntermediate",
    "RotateCa",
    "CrossSignCa",
    "RetireCa",
    "ListCas",
    "GetCa",
    "GetCaChain",
    "Revoke",
    "BulkRevoke",
    "GetStatus",
    "CreateBootstrapToken",
    "ListBootstrapTokens",
    "ListAgents",
    "GetAgent",
    "RetireAgent",
    "CreateBinding",
    "ListBindings",
    "DeleteBinding",
    "ListJobs",
    "GetJob",
    "ListDeployments",
    "RenewNow",
    "Redeploy",
    "CreateScanTarget",
    "ListScanTargets",
    "DeleteScanTarget",
    "StartScan",
    "ListScans",
    "GetScan",
    "ListDiscovered",
    "GetDiscovered",
    "ClaimDiscovered",
    "DismissDiscovered",
    "CreateChannel",
    "ListChannels",
    "DeleteChannel",
    "TestChannel",
    "CreateRule",
    "ListRules",
    "DeleteRule",
    "ListDeliveries",
    "RequeueDelivery",
];

const ADD_A_CASE: &str = "every REST route needs a tenancy case: in e2e/tests/it/tenancy.rs, \
    make globex's admin try the new route on acme's resources (it must see, list, change and \
    decide nothing of acme's) and add the RPC to COVERED";

/// Acme's idempotency key, which globex then uses for its own request.
const SHARED_KEY: &str = "tenancy-shared-key-1";
/// Ids that exist in no tenant: the twin of every refused lookup.
const ABSENT_SERIAL: &str = "7e2a19c4d05b88f1";
const ABSENT_UUID: &str = "5f0c6a1e-9d7b-4c35-8e21-3b6f0d9a7c44";
const ABSENT_NAME: &str = "nemo";

fn route_names() -> BTreeSet<&'static str> {
    ROUTES.iter().map(|r| r.method).collect()
}

#[test]
fn every_rest_route_has_a_tenancy_case() {
    let routes = route_names();
    assert_eq!(
        routes.len(),
        ROUTES.len(),
        "RPC names in ROUTES are no longer unique: key COVERED by service and method"
    );
    let covered: BTreeSet<&str> = COVERED.iter().copied().collect();
    let missing: Vec<_> = routes.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&routes).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{ADD_A_CASE}. Routes without a case: {missing:?}; cases without a route: {stale:?}"
    );
}

#[test]
fn a_tenant_never_sees_lists_changes_or_decides_another_tenants_resources() {
    let world = World::start();
    let acme = seed_acme(&world);
    // Before globex has anything of its own, so no name can resolve to globex's resource.
    issuance_refuses_globex_on_acme(&world.gina, &acme);
    iam_refuses_globex_on_acme(&world.gina, &acme, &world.public_key());
    ca_refuses_globex_on_acme(&world.gina, &acme);
    let acme_agent = fleet_refuses_globex_on_acme(&world, &acme);
    watch::discovery_refuses_globex_on_acme(&world);
    watch::notification_refuses_globex_on_acme(&world);
    let globex = seed_globex(&world, &acme);
    globex_lists_only_its_own(&world.gina, &acme, &globex);
    acme_keeps_its_resources(&world, &acme, &globex, &acme_agent);
    acme_still_owns_its_token_and_approval(&world, &acme);
    audit_trails_stay_apart(&world, &acme, &globex);

    let sent = world.gina.sent.borrow().clone();
    let missing: Vec<_> = route_names().difference(&sent).copied().collect();
    assert!(
        missing.is_empty(),
        "globex never called {missing:?} across the wall; {ADD_A_CASE}"
    );
}

// ---------------------------------------------------------------------------------------------
// The server and its callers
// ---------------------------------------------------------------------------------------------

/// One gateway (every role in one process) on a fresh database with two tenants.
#[derive(Debug)]
struct World {
    // Fields drop in order: the server stops before its directory and database go.
    _server: Process,
    dir: TempDir,
    /// The agent listener, and the CA bundle that signs its certificate.
    fleet: String,
    ca: PathBuf,
    _db: PgDatabase,
    acme_id: String,
    globex_id: String,
    /// acme's admins: alice does the work, bob is the second person for approvals.
    alice: Caller,
    bob: Caller,
    /// globex's admin, the caller trying to cross the wall.
    gina: Caller,
}

impl World {
    fn start() -> Self {
        let db = PgDatabase::create();
        let dir = scratch();
        let acme_id = tenant_create(&db.url, "acme");
        let globex_id = tenant_create(&db.url, "globex");
        assert_ne!(acme_id, globex_id, "two tenants, two ids");
        let tokens = [("acme", "alice"), ("acme", "bob"), ("globex", "gina")]
            .map(|(tenant, principal)| bootstrap_token(&db.url, tenant, principal));

        fs::create_dir_all(dir.path().join("keys")).expect("creating the key directory");
        let kek = kek_file(dir.path());
        let (ca, chain, key) = tls_identity(dir.path());
        let tls = [chain, key];
        // The server bootstraps acme's built-in CA at start; globex gets its own on its first
        // issuance.
        let (server, base, fleet) = serve(&db.url, dir.path(), "acme", &kek, &tls, &ca);
        let api = |who: &str, token: &str| Api {
            base: base.clone(),
            ca: ca.clone(),
            token: token.to_string(),
            token_file: write(&dir.path().join(format!("{who}.token")), token),
        };
        let [alice, bob, gina] = tokens;
        Self {
            alice: Caller::new("acme/alice", api("alice", &alice)),
            bob: Caller::new("acme/bob", api("bob", &bob)),
            gina: Caller::new("globex/gina", api("gina", &gina)),
            _server: server,
            dir,
            fleet,
            ca: ca.clone(),
            _db: db,
            acme_id,
            globex_id,
        }
    }

    /// A caller on the same gateway with another token.
    fn caller(&self, who: &'static str, token: &str) -> Caller {
        Caller::new(
            who,
            Api {
                token: token.to_string(),
                ..self.alice.api.clone()
            },
        )
    }

    fn csr(&self, dns: &str) -> Csr {
        csr(self.dir.path(), dns, "P-256", &[])
    }

    /// A fresh Ed25519 public key, PEM, made the way a custodian makes one.
    fn public_key(&self) -> String {
        let key = self.dir.path().join(format!("{}.key", unique("custodian")));
        let openssl = tool("openssl");
        run(Command::new(&openssl)
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key));
        let public = run(Command::new(&openssl)
            .args(["pkey", "-pubout", "-in"])
            .arg(&key));
        String::from_utf8(public.stdout).expect("openssl writes PEM")
    }
}

/// `certmesh tenant create`: the tenant's id.
fn tenant_create(url: &str, name: &str) -> String {
    let out = run(certmesh().args(["tenant", "create", "--database-url", url, name]));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !id.is_empty(),
        "`certmesh tenant create {name}` printed no id"
    );
    id
}

/// `certmesh token create --database-url`: an admin principal in `tenant` and its token.
fn bootstrap_token(url: &str, tenant: &str, principal: &str) -> String {
    let out = run(certmesh().args([
        "token",
        "create",
        "--database-url",
        url,
        "--tenant",
        tenant,
        "--principal",
        principal,
        "--role",
        "admin",
        "--name",
        &format!("{principal}-bootstrap"),
    ]));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("cmt_"), "one token line, got {token:?}");
    token
}

/// `certmesh server` with every role on `url`, bootstrapping `tenant`'s CA; waits for
/// /healthz over TLS.
fn serve(
    url: &str,
    dir: &Path,
    tenant: &str,
    kek: &Path,
    [chain, key]: &[PathBuf; 2],
    ca: &Path,
) -> (Process, String, String) {
    let port = free_port();
    let fleet_port = free_port();
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "issuance,iam,ca,revocation,fleet,discovery,notification,gateway",
        "--dangerous-scan-loopback",
        "--listen",
    ])
    .arg(format!("127.0.0.1:{port}"))
    .arg("--fleet-listen")
    .arg(format!("127.0.0.1:{fleet_port}"))
    .arg("--pki-listen")
    .arg(format!("127.0.0.1:{}", free_port()))
    .args(["--database-url", url, "--tenant", tenant, "--key-dir"])
    .arg(dir.join("keys"))
    .arg("--kek-file")
    .arg(kek)
    .arg("--tls-cert")
    .arg(chain)
    .arg("--tls-key")
    .arg(key);
    let mut process = Process::spawn(&format!("certmesh-{tenant}"), cmd, dir);
    let base = format!("https://127.0.0.1:{port}");
    process.wait_until("/healthz over TLS", || health(&base, ca));
    (process, base, format!("https://127.0.0.1:{fleet_port}"))
}

/// One principal calling REST routes by RPC name. Each call is checked against its route in
/// `ROUTES` and recorded, so the coverage check counts only what was really sent.
#[derive(Debug)]
struct Caller {
    who: &'static str,
    api: Api,
    sent: RefCell<BTreeSet<&'static str>>,
}

impl Caller {
    fn new(who: &'static str, api: Api) -> Self {
        Self {
            who,
            api,
            sent: RefCell::default(),
        }
    }

    fn call(
        &self,
        rpc: &'static str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let route = ROUTES
            .iter()
            .find(|r| r.method == rpc)
            .unwrap_or_else(|| panic!("no REST route for {rpc}"));
        let bare = path.split('?').next().unwrap_or(path);
        assert!(
            matches_template(route.path, bare),
            "{rpc} is {} {}, not {bare}",
            route.http_method,
            route.path
        );
        self.sent.borrow_mut().insert(rpc);
        let file = body.map(|body| {
            let file = tempfile::NamedTempFile::new().expect("a temporary request body file");
            write(file.path(), body.to_string());
            file
        });
        let mut reply = self.api.send(
            route.http_method,
            path,
            Some(&self.api.token),
            headers,
            file.as_ref().map(|f| f.path()),
        );
        reply.request = format!("{} as {}", reply.request, self.who);
        reply
    }

    fn get(&self, rpc: &'static str, path: &str) -> Reply {
        self.call(rpc, path, None, &[])
    }

    fn post(&self, rpc: &'static str, path: &str, body: &Value) -> Reply {
        self.call(rpc, path, Some(body), &[])
    }

    fn issue(&self, csr: &Csr, profile: &str, key: Option<&str>) -> Reply {
        let headers: Vec<_> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        let body = json!({ "csr": csr.pem, "profile": profile });
        self.call("Issue", "/api/v1/certificates", Some(&body), &headers)
    }

    fn create_profile(&self, name: &str, spec: Value) -> Value {
        let body = json!({ "name": name, "spec": spec });
        self.post("CreateProfile", "/api/v1/profiles", &body).ok()
    }

    /// `field` of every item in the `list` a GET of `path` answers.
    fn list(&self, rpc: &'static str, path: &str, list: &str, field: &str) -> BTreeSet<String> {
        field_set(&self.get(rpc, path).ok(), list, field)
    }

    /// Every serial ListCertificates pages through.
    fn serials(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        let mut token = String::new();
        loop {
            let path = format!("/api/v1/certificates?page_size=1&page_token={token}");
            let page = self.get("ListCertificates", &path).ok();
            all.extend(field_set(&page, "certificates", "serial"));
            token = page["next_page_token"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                return all;
            }
            assert!(all.len() < 100, "ListCertificates does not end: {page}");
        }
    }

    /// Every audit event ListAuditEvents pages through, oldest first.
    fn audit_events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let path = format!("/api/v1/audit?page_size=10&page_token={token}");
            let page = self.get("ListAuditEvents", &path).ok();
            all.extend(page["events"].as_array().cloned().unwrap_or_default());
            token = page["next_page_token"].as_str().unwrap_or("").to_string();
            if token.is_empty() {
                return all;
            }
            assert!(all.len() < 1000, "ListAuditEvents does not end: {page}");
        }
    }

    /// Send `request(acme)` and `request(ABSENT…)`: both must be the same 404 with `reason`, so
    /// the refusal tells this caller nothing about whether acme's resource exists.
    fn assert_hidden(
        &self,
        rpc: &'static str,
        reason: &str,
        [acme, absent]: [&str; 2],
        request: impl Fn(&str) -> (String, Option<Value>),
    ) {
        let send = |id: &str| {
            let (path, body) = request(id);
            let reply = self.call(rpc, &path, body.as_ref(), &[]);
            reply.error(404, "NOT_FOUND", reason).replace(id, "<id>")
        };
        assert_eq!(
            send(acme),
            send(absent),
            "{rpc} as {}: the refusal for acme's {acme} differs from one for {absent}, which \
             exists nowhere",
            self.who
        );
    }
}

/// Whether `path` fills the `{field}` segments of `template`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// `body[list][*][field]` as strings; proto3 JSON leaves an empty list out.
fn field_set(body: &Value, list: &str, field: &str) -> BTreeSet<String> {
    let items = match &body[list] {
        Value::Null => &Vec::new(),
        items => items
            .as_array()
            .unwrap_or_else(|| panic!("{list} is not a list in {body}")),
    };
    items
        .iter()
        .map(|item| match &item[field] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// `not_after - not_before` of a certificate.
fn lifetime(cert: &Value) -> Duration {
    let at = |field: &str| {
        let text = cert[field].as_str().unwrap_or_default();
        DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{field} {text:?}: {e}"))
    };
    at("not_after") - at("not_before")
}

/// Owned strings, for comparing with [`field_set`].
fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.into_iter().map(String::from).collect()
}

/// A uint64 in proto3 JSON: a string, or a number.
fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

// ---------------------------------------------------------------------------------------------
// Acme's resources
// ---------------------------------------------------------------------------------------------

/// What acme owns, recorded for the attempts from globex.
#[derive(Debug)]
struct AcmeSeed {
    tenant_id: String,
    keyed_csr: Csr,
    /// The certificate issued under [`SHARED_KEY`].
    keyed: Value,
    plain_serial: String,
    approval: String,
    robot_id: String,
    /// The public key registered for acme's robot, and its id there.
    robot_key_pem: String,
    robot_key_id: String,
    robot_token_id: String,
    robot_token: String,
    alice_token_id: String,
    page_token: String,
    /// Acme's CAs (its built-in root and issuing CA) and its open ceremony.
    ca_ids: Vec<String>,
    ceremony: String,
}

impl AcmeSeed {
    fn keyed_serial(&self) -> &str {
        self.keyed["serial"].as_str().expect("certificate.serial")
    }

    fn serials(&self) -> BTreeSet<String> {
        set([self.keyed_serial(), &self.plain_serial])
    }

    /// Strings only acme's resources carry.
    fn marks(&self) -> Vec<&str> {
        let ids = [
            &self.plain_serial,
            &self.approval,
            &self.robot_id,
            &self.robot_key_id,
        ];
        let more = [
            &self.robot_token_id,
            &self.alice_token_id,
            &self.tenant_id,
            &self.ceremony,
        ];
        let names = [self.keyed_serial(), "alice", "bob", "acme-held"];
        ids.into_iter()
            .chain(more)
            .chain(&self.ca_ids)
            .map(String::as_str)
            .chain(names)
            .collect()
    }
}

fn seed_acme(world: &World) -> AcmeSeed {
    let alice = &world.alice;
    assert_eq!(alice.create_profile("web", web_spec())["version"], 1);
    let mut v2 = web_spec();
    v2["max_validity"] = json!("1440h");
    assert_eq!(alice.create_profile("web", v2)["version"], 2);
    let mut held = web_spec();
    held["requires_approval"] = json!(true);
    alice.create_profile("acme-held", held);

    let keyed_csr = world.csr("www.example.com");
    let keyed = alice.issue(&keyed_csr, "web", Some(SHARED_KEY)).ok();
    assert_eq!(keyed["status"], "issued", "{keyed}");
    let plain = alice.issue(&world.csr("api.example.com"), "web", None).ok();
    let held_csr = world.csr("held.example.com");
    let pending = alice.issue(&held_csr, "acme-held", None).ok();
    assert_eq!(pending["status"], "pending_approval", "{pending}");

    let robot = json!({ "name": "robot", "roles": ["viewer"] });
    let robot = alice
        .post("CreatePrincipal", "/api/v1/principals", &robot)
        .ok();
    let robot_key_pem = world.public_key();
    let key = json!({ "public_key_pem": robot_key_pem });
    let robot_key = alice
        .post("AddPrincipalKey", "/api/v1/principals/robot/keys", &key)
        .ok();
    let minted = json!({ "principal": "robot", "name": "robot-ci" });
    let minted = alice.post("CreateToken", "/api/v1/tokens", &minted).ok();
    let mut own = alice.list("ListTokens", "/api/v1/tokens", "tokens", "id");
    let page = alice.get("ListCertificates", "/api/v1/certificates?page_size=1");
    let page_token = page.ok()["next_page_token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!page_token.is_empty(), "two certificates in pages of one");

    let keeper = json!({ "name": "keeper", "roles": ["custodian"] });
    alice
        .post("CreatePrincipal", "/api/v1/principals", &keeper)
        .ok();
    let ceremony = json!({
        "purpose": "create_root",
        "threshold": 1,
        "custodians": ["keeper"],
        "params": { "name": "acme-root", "subject_cn": "Acme Root", "key_spec": "ecdsa-p256" },
    });
    let ceremony = alice
        .post("StartCeremony", "/api/v1/ceremonies", &ceremony)
        .ok();
    let ca_ids = alice.list("ListCas", "/api/v1/cas", "cas", "id");
    assert_eq!(ca_ids.len(), 2, "acme's built-in root and issuing CA");

    let text = |v: &Value| v.as_str().expect("a string field").to_string();
    AcmeSeed {
        tenant_id: world.acme_id.clone(),
        keyed: keyed["certificate"].clone(),
        keyed_csr,
        plain_serial: text(&plain["certificate"]["serial"]),
        approval: text(&pending["approval_id"]),
        robot_id: text(&robot["id"]),
        robot_key_pem,
        robot_key_id: text(&robot_key["id"]),
        robot_token_id: text(&minted["info"]["id"]),
        robot_token: text(&minted["token"]),
        alice_token_id: own.pop_first().expect("alice's bootstrap token"),
        page_token,
        ca_ids: ca_ids.into_iter().collect(),
        ceremony: text(&ceremony["id"]),
    }
}

// ---------------------------------------------------------------------------------------------
// Globex against acme's resources
// ---------------------------------------------------------------------------------------------

/// Acme's certificates, profiles and approval, by serial, name and id: each is the 404 a
/// resource that exists nowhere gets, and nothing is issued or decided.
fn issuance_refuses_globex_on_acme(gina: &Caller, acme: &AcmeSeed) {
    for serial in [acme.keyed_serial(), &acme.plain_serial] {
        let hidden = [serial, ABSENT_SERIAL];
        gina.assert_hidden("GetCertificate", "CERTIFICATE_NOT_FOUND", hidden, |s| {
            (format!("/api/v1/certificates/{s}"), None)
        });
        gina.assert_hidden("GetStatus", "CERTIFICATE_NOT_FOUND", hidden, |s| {
            (format!("/api/v1/certificates/{s}/status"), None)
        });
        gina.assert_hidden("Revoke", "CERTIFICATE_NOT_FOUND", hidden, |s| {
            let body = json!({ "reason": "keyCompromise" });
            (format!("/api/v1/certificates/{s}/revoke"), Some(body))
        });
    }
    for name in ["web", "acme-held"] {
        let hidden = [name, ABSENT_NAME];
        gina.assert_hidden("GetProfile", "PROFILE_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/profiles/{n}"), None)
        });
        gina.assert_hidden("GetProfileVersion", "PROFILE_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/profiles/{n}/versions/1"), None)
        });
        gina.assert_hidden("Issue", "PROFILE_NOT_FOUND", hidden, |n| {
            let body = json!({ "csr": acme.keyed_csr.pem, "profile": n });
            ("/api/v1/certificates".to_string(), Some(body))
        });
    }
    let v2 = gina.get("GetProfileVersion", "/api/v1/profiles/web/versions/2");
    v2.error(404, "NOT_FOUND", "PROFILE_NOT_FOUND");
    // Acme's exact request under acme's key: a key shared across tenants would replay acme's
    // certificate here instead of looking for a profile globex does not have.
    let replay = gina.issue(&acme.keyed_csr, "web", Some(SHARED_KEY));
    replay.error(404, "NOT_FOUND", "PROFILE_NOT_FOUND");

    let approval = [acme.approval.as_str(), ABSENT_UUID];
    gina.assert_hidden("Approve", "APPROVAL_NOT_FOUND", approval, |id| {
        (format!("/api/v1/approvals/{id}/approve"), None)
    });
    gina.assert_hidden("Reject", "APPROVAL_NOT_FOUND", approval, |id| {
        let note = json!({ "note": "globex says no" });
        (format!("/api/v1/approvals/{id}/reject"), Some(note))
    });
}

/// Acme's principals and tokens, by name and id: the same 404 as for ones that exist nowhere;
/// globex cannot register `key` for, or list the keys of, any of acme's principals, nor mint a
/// token for, list the tokens of, or revoke a token of acme's.
fn iam_refuses_globex_on_acme(gina: &Caller, acme: &AcmeSeed, key: &str) {
    let key = json!({ "public_key_pem": key });
    for name in ["robot", "alice", "bob"] {
        let hidden = [name, ABSENT_NAME];
        gina.assert_hidden("GetPrincipal", "PRINCIPAL_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/principals/{n}"), None)
        });
        gina.assert_hidden("AddPrincipalKey", "PRINCIPAL_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/principals/{n}/keys"), Some(key.clone()))
        });
        gina.assert_hidden("ListPrincipalKeys", "PRINCIPAL_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/principals/{n}/keys"), None)
        });
        gina.assert_hidden("CreateToken", "PRINCIPAL_NOT_FOUND", hidden, |n| {
            let body = json!({ "principal": n, "name": "stolen" });
            ("/api/v1/tokens".to_string(), Some(body))
        });
        gina.assert_hidden("ListTokens", "PRINCIPAL_NOT_FOUND", hidden, |n| {
            (format!("/api/v1/tokens?principal={n}"), None)
        });
    }
    for token in [&acme.robot_token_id, &acme.alice_token_id] {
        let hidden = [token.as_str(), ABSENT_UUID];
        gina.assert_hidden("RevokeToken", "TOKEN_NOT_FOUND", hidden, |id| {
            (format!("/api/v1/tokens/{id}/revoke"), None)
        });
    }
}

/// Acme's CAs and ceremony, by id: each is the 404 one that exists nowhere gets; globex can
/// neither approve acme's ceremony nor run an operation with it, nor retire, rotate,
/// cross-sign or extend acme's CAs, nor name acme's custodian on a ceremony of its own.
fn ca_refuses_globex_on_acme(gina: &Caller, acme: &AcmeSeed) {
    let ceremony = [acme.ceremony.as_str(), ABSENT_UUID];
    gina.assert_hidden("GetCeremony", "CEREMONY_NOT_FOUND", ceremony, |id| {
        (format!("/api/v1/ceremonies/{id}"), None)
    });
    gina.assert_hidden("ApproveCeremony", "CEREMONY_NOT_FOUND", ceremony, |id| {
        let body = json!({ "signature": "AAAA" });
        (format!("/api/v1/ceremonies/{id}/approvals"), Some(body))
    });
    gina.assert_hidden("CreateRoot", "CEREMONY_NOT_FOUND", ceremony, |id| {
        let params =
            json!({ "name": "acme-root", "subject_cn": "Acme Root", "key_spec": "ecdsa-p256" });
        let body = json!({ "ceremony_id": id, "params": params });
        ("/api/v1/cas".to_string(), Some(body))
    });
    for ca in &acme.ca_ids {
        let hidden = [ca.as_str(), ABSENT_UUID];
        gina.assert_hidden("GetCa", "CA_NOT_FOUND", hidden, |id| {
            (format!("/api/v1/cas/{id}"), None)
        });
        gina.assert_hidden("BulkRevoke", "CA_NOT_FOUND", hidden, |id| {
            let body = json!({ "issuer_ca_id": id, "reason": "cACompromise" });
            ("/api/v1/certificates:bulk-revoke".to_string(), Some(body))
        });
        gina.assert_hidden("GetCaChain", "CA_NOT_FOUND", hidden, |id| {
            (format!("/api/v1/cas/{id}/chain"), None)
        });
        for confirm in [false, true] {
            gina.assert_hidden("RetireCa", "CA_NOT_FOUND", hidden, |id| {
                let body = json!({ "confirm": confirm });
                (format!("/api/v1/cas/{id}/retire"), Some(body))
            });
        }
        // With acme's ceremony, on acme's CA and on one that exists nowhere: the same refusal.
        gina.assert_hidden("CreateIntermediate", "CEREMONY_NOT_FOUND", hidden, |id| {
            let params = json!({ "name": "sub", "subject_cn": "Sub", "key_spec": "ecdsa-p256" });
            let body = json!({ "ceremony_id": acme.ceremony, "params": params });
            (format!("/api/v1/cas/{id}/intermediates"), Some(body))
        });
        gina.assert_hidden("RotateCa", "CEREMONY_NOT_FOUND", hidden, |id| {
            let params = json!({ "key_spec": "ecdsa-p256", "validity_days": 30 });
            let body = json!({ "ceremony_id": acme.ceremony, "params": params });
            (format!("/api/v1/cas/{id}/rotate"), Some(body))
        });
        gina.assert_hidden("CrossSignCa", "CEREMONY_NOT_FOUND", hidden, |id| {
            // An issuer that exists nowhere either, and is not the CA itself.
            let issuer = "0d4b9e57-2c81-4f6a-9b3e-71a5c8e2f390";
            let params = json!({ "issuer_ca_id": issuer, "validity_days": 30 });
            let body = json!({ "ceremony_id": acme.ceremony, "params": params });
            (format!("/api/v1/cas/{id}/cross-sign"), Some(body))
        });
    }
    // Acme's custodian is no principal of globex's: named like one that exists nowhere.
    let start = |name: &str| {
        let body = json!({
            "purpose": "create_root",
            "threshold": 1,
            "custodians": [name],
            "params": { "name": "g-root", "subject_cn": "G Root", "key_spec": "ecdsa-p256" },
        });
        gina.post("StartCeremony", "/api/v1/ceremonies", &body)
            .error(400, "INVALID_ARGUMENT", "REQUEST_INVALID")
            .replace(name, "<name>")
    };
    assert_eq!(
        start("keeper"),
        start(ABSENT_NAME),
        "acme's custodian shows through"
    );
}

// ---------------------------------------------------------------------------------------------
// The fleet
// ---------------------------------------------------------------------------------------------

/// Acme's fleet: a bootstrap token, an agent enrolled with it (over the agent listener, the
/// real agent binary), a binding for that agent and the job it made. Globex's admin sees none of
/// it, and what it tries on it is the refusal a resource that exists nowhere gets. Returns the
/// agent's id.
fn fleet_refuses_globex_on_acme(world: &World, acme: &AcmeSeed) -> String {
    let (alice, gina) = (&world.alice, &world.gina);
    let created = alice
        .post(
            "CreateBootstrapToken",
            "/api/v1/fleet/bootstrap-tokens",
            &json!({"group": "edge"}),
        )
        .ok();
    let secret = created["secret"].as_str().expect("secret").to_string();
    let agent_id = crate::fleet::enroll_with(&world.fleet, &world.ca, world.dir.path(), &secret);
    let binding = json!({
        "name": "acme-edge",
        "agent_id": agent_id,
        "certificate": {"dns_names": ["edge.example.com"], "profile": "web"},
        "target": {"cert_path": "/etc/edge/tls.pem", "key_path": "/etc/edge/tls.key"},
    });
    let binding = alice
        .post("CreateBinding", "/api/v1/fleet/bindings", &binding)
        .ok();
    let binding_id = binding["id"].as_str().expect("binding id").to_string();
    let jobs = alice
        .get(
            "ListJobs",
            &format!("/api/v1/fleet/jobs?agent_id={agent_id}"),
        )
        .ok();
    let job_id = jobs["jobs"][0]["id"]
        .as_str()
        .expect("a job for the new binding")
        .to_string();

    let hidden = [agent_id.as_str(), ABSENT_UUID];
    gina.assert_hidden("GetAgent", "AGENT_NOT_FOUND", hidden, |id| {
        (format!("/api/v1/fleet/agents/{id}"), None)
    });
    gina.assert_hidden("RetireAgent", "AGENT_NOT_FOUND", hidden, |id| {
        (format!("/api/v1/fleet/agents/{id}/retire"), Some(json!({})))
    });
    gina.assert_hidden("CreateBinding", "AGENT_NOT_FOUND", hidden, |id| {
        let body = json!({
            "name": unique("g-edge"),
            "agent_id": id,
            "certificate": {"dns_names": ["edge.example.com"], "profile": "web"},
            "target": {"cert_path": "/etc/edge/tls.pem", "key_path": "/etc/edge/tls.key"},
        });
        ("/api/v1/fleet/bindings".to_string(), Some(body))
    });
    gina.assert_hidden(
        "DeleteBinding",
        "BINDING_NOT_FOUND",
        [&binding_id, ABSENT_UUID],
        |id| (format!("/api/v1/fleet/bindings/{id}"), None),
    );
    gina.assert_hidden(
        "Redeploy",
        "BINDING_NOT_FOUND",
        [&binding_id, ABSENT_UUID],
        |id| {
            (
                format!("/api/v1/fleet/bindings/{id}/redeploy"),
                Some(json!({})),
            )
        },
    );
    gina.assert_hidden("GetJob", "JOB_NOT_FOUND", [&job_id, ABSENT_UUID], |id| {
        (format!("/api/v1/fleet/jobs/{id}"), None)
    });
    gina.assert_hidden(
        "RenewNow",
        "CERTIFICATE_NOT_FOUND",
        [acme.keyed_serial(), ABSENT_SERIAL],
        |s| {
            (
                format!("/api/v1/certificates/{s}/renew-now"),
                Some(json!({})),
            )
        },
    );
    for (rpc, path, list, field) in [
        (
            "ListBootstrapTokens",
            "/api/v1/fleet/bootstrap-tokens",
            "tokens",
            "id",
        ),
        ("ListAgents", "/api/v1/fleet/agents", "agents", "id"),
        ("ListBindings", "/api/v1/fleet/bindings", "bindings", "id"),
        (
            "ListDeployments",
            "/api/v1/fleet/deployments",
            "deployments",
            "agent_id",
        ),
    ] {
        let body = gina.get(rpc, path).ok();
        assert_eq!(body[list], json!([]), "{rpc} as globex: {body}");
        let _ = field;
    }
    let theirs = gina
        .get(
            "ListJobs",
            &format!("/api/v1/fleet/jobs?agent_id={agent_id}"),
        )
        .ok();
    assert_eq!(
        theirs["jobs"],
        json!([]),
        "globex lists acme's agent's jobs"
    );
    // Globex's own token is its own.
    let own = gina
        .post(
            "CreateBootstrapToken",
            "/api/v1/fleet/bootstrap-tokens",
            &json!({"group": "edge"}),
        )
        .ok();
    let own_id = own["token"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        gina.list(
            "ListBootstrapTokens",
            "/api/v1/fleet/bootstrap-tokens",
            "tokens",
            "id"
        ),
        set([own_id.as_str()])
    );
    // Acme's things are as they were.
    let still = alice
        .get("GetAgent", &format!("/api/v1/fleet/agents/{agent_id}"))
        .ok();
    assert_ne!(still["status"], "retired");
    let bindings = alice.list("ListBindings", "/api/v1/fleet/bindings", "bindings", "id");
    assert!(bindings.contains(&binding_id));
    let job = alice
        .get("GetJob", &format!("/api/v1/fleet/jobs/{job_id}"))
        .ok();
    assert_eq!(job["state"], "pending", "{job}");
    assert_eq!(
        alice.list(
            "ListDeployments",
            "/api/v1/fleet/deployments",
            "deployments",
            "agent_id"
        ),
        BTreeSet::new()
    );
    agent_id
}

// ---------------------------------------------------------------------------------------------
// Globex's own resources, under acme's names and key
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct GlobexSeed {
    tenant_id: String,
    serial: String,
    approval: String,
    robot_id: String,
    robot_token_id: String,
}

impl GlobexSeed {
    /// Strings only globex's resources carry.
    fn marks(&self) -> Vec<&str> {
        let ids = [&self.serial, &self.approval, &self.robot_id];
        let more = [&self.robot_token_id, &self.tenant_id];
        let names = ["gina", "globex-held"];
        ids.into_iter()
            .chain(more)
            .map(String::as_str)
            .chain(names)
            .collect()
    }
}

fn seed_globex(world: &World, acme: &AcmeSeed) -> GlobexSeed {
    globex_reuses_acme_profile_name(&world.gina);
    let (serial, approval) = globex_reuses_acme_idempotency_key(world, acme);
    let (robot_id, robot_token_id) = globex_reuses_acme_principal_name(world, acme, &serial);
    GlobexSeed {
        tenant_id: world.globex_id.clone(),
        serial,
        approval,
        robot_id,
        robot_token_id,
    }
}

/// Globex's `web` is its own version 1 with its own spec; acme's v2 stays out of reach.
fn globex_reuses_acme_profile_name(gina: &Caller) {
    let mut web = web_spec();
    web["max_validity"] = json!("720h");
    let created = gina.create_profile("web", web);
    assert_eq!(created["version"], 1, "globex's first `web` is its own v1");
    let latest = gina.get("GetProfile", "/api/v1/profiles/web").ok();
    assert_eq!(
        (&latest["version"], &latest["spec"]["max_validity"]),
        (&json!(1), &json!("720h"))
    );
    let v1 = gina
        .get("GetProfileVersion", "/api/v1/profiles/web/versions/1")
        .ok();
    assert_eq!(v1["spec"]["max_validity"], "720h", "globex's v1: {v1}");
    let v2 = gina.get("GetProfileVersion", "/api/v1/profiles/web/versions/2");
    v2.error(404, "NOT_FOUND", "PROFILE_NOT_FOUND");
    let mut held = web_spec();
    held["requires_approval"] = json!(true);
    gina.create_profile("globex-held", held);
}

/// Acme's key with acme's exact request: keys are per tenant, so this is a new certificate
/// from globex's CA under globex's `web`, not a replay of acme's. Returns it and globex's
/// own pending approval.
fn globex_reuses_acme_idempotency_key(world: &World, acme: &AcmeSeed) -> (String, String) {
    let gina = &world.gina;
    let issued = gina.issue(&acme.keyed_csr, "web", Some(SHARED_KEY)).ok();
    assert_eq!(issued["status"], "issued", "{issued}");
    let cert = &issued["certificate"];
    assert_ne!(
        cert["serial"], acme.keyed["serial"],
        "acme's replay: {cert}"
    );
    assert_ne!(cert["issuer_ca_id"], acme.keyed["issuer_ca_id"], "{cert}");
    assert_eq!(cert["profile_version"], 1, "{cert}");
    let off = (lifetime(cert) - Duration::hours(720)).abs();
    assert!(off <= Duration::seconds(1), "globex's 720h profile: {cert}");
    let again = gina.issue(&acme.keyed_csr, "web", Some(SHARED_KEY)).ok();
    assert_eq!(
        again["certificate"]["serial"], cert["serial"],
        "globex's replay"
    );

    let held_csr = world.csr("held.example.com");
    let pending = gina.issue(&held_csr, "globex-held", None).ok();
    assert_eq!(pending["status"], "pending_approval", "{pending}");
    let text = |v: &Value| v.as_str().expect("a string field").to_string();
    (text(&cert["serial"]), text(&pending["approval_id"]))
}

/// Globex's `robot` is another principal; its token reads globex's certificates only.
/// Returns the principal's id and its token's id.
fn globex_reuses_acme_principal_name(
    world: &World,
    acme: &AcmeSeed,
    globex_serial: &str,
) -> (String, String) {
    let gina = &world.gina;
    let robot = json!({ "name": "robot", "roles": ["auditor"] });
    let robot = gina
        .post("CreatePrincipal", "/api/v1/principals", &robot)
        .ok();
    assert_ne!(robot["id"], json!(acme.robot_id), "{robot}");
    let got = gina.get("GetPrincipal", "/api/v1/principals/robot").ok();
    assert_eq!(
        (&got["id"], &got["roles"]),
        (&robot["id"], &json!(["auditor"]))
    );
    // Keys are unique per tenant: acme holding this one must neither block nor show here.
    let key = json!({ "public_key_pem": acme.robot_key_pem });
    let key = gina
        .post("AddPrincipalKey", "/api/v1/principals/robot/keys", &key)
        .ok();
    assert_ne!(key["id"], json!(acme.robot_key_id), "{key}");
    let keys = gina.list(
        "ListPrincipalKeys",
        "/api/v1/principals/robot/keys",
        "keys",
        "id",
    );
    assert_eq!(keys, set([key["id"].as_str().expect("an id")]));
    let minted = json!({ "principal": "robot", "name": "robot-ci" });
    let minted = gina.post("CreateToken", "/api/v1/tokens", &minted).ok();

    let as_robot = world.caller("globex/robot", minted["token"].as_str().expect("token"));
    assert_eq!(as_robot.serials(), set([globex_serial]));
    let path = format!("/api/v1/certificates/{}", acme.keyed_serial());
    let stolen = as_robot.get("GetCertificate", &path);
    stolen.error(404, "NOT_FOUND", "CERTIFICATE_NOT_FOUND");
    let text = |v: &Value| v.as_str().expect("a string field").to_string();
    (text(&robot["id"]), text(&minted["info"]["id"]))
}

/// Every list globex can call holds globex's resources and none of acme's.
fn globex_lists_only_its_own(gina: &Caller, acme: &AcmeSeed, globex: &GlobexSeed) {
    assert_eq!(gina.serials(), set([globex.serial.as_str()]));
    // Acme's page token is a cursor, not a capability: at most globex's own certificates.
    let path = format!("/api/v1/certificates?page_token={}", acme.page_token);
    let paged = gina.get("ListCertificates", &path);
    if paged.status == 200 {
        let serials = field_set(&paged.json(), "certificates", "serial");
        assert!(
            serials.is_subset(&set([globex.serial.as_str()])),
            "{serials:?}"
        );
    } else {
        paged.error(400, "INVALID_ARGUMENT", "PAGE_TOKEN_INVALID");
    }

    let profiles = gina.get("ListProfiles", "/api/v1/profiles").ok();
    let names = field_set(&profiles, "profiles", "name");
    assert_eq!(names, set(["web", "globex-held"]));
    for profile in profiles["profiles"].as_array().into_iter().flatten() {
        assert_eq!(profile["version"], 1, "acme's versions leak: {profile}");
    }
    for path in ["/api/v1/approvals", "/api/v1/approvals?status=pending"] {
        let ids = gina.list("ListApprovals", path, "approvals", "id");
        assert_eq!(ids, set([globex.approval.as_str()]), "{path}");
    }

    let principals = gina.get("ListPrincipals", "/api/v1/principals").ok();
    assert_eq!(
        field_set(&principals, "principals", "name"),
        set(["gina", "robot"])
    );
    let ids = field_set(&principals, "principals", "id");
    assert!(ids.contains(&globex.robot_id) && !ids.contains(&acme.robot_id));

    let cas = gina.list("ListCas", "/api/v1/cas", "cas", "id");
    assert_eq!(cas.len(), 2, "globex's own built-in CAs: {cas:?}");
    assert!(acme.ca_ids.iter().all(|id| !cas.contains(id)), "{cas:?}");
    let ceremonies = gina.list("ListCeremonies", "/api/v1/ceremonies", "ceremonies", "id");
    assert!(ceremonies.is_empty(), "globex started none: {ceremonies:?}");

    let own = gina.list("ListTokens", "/api/v1/tokens", "tokens", "id");
    assert_eq!(own.len(), 1, "gina's bootstrap token only: {own:?}");
    assert!(!own.contains(&acme.robot_token_id) && !own.contains(&acme.alice_token_id));
    let robots = gina.list(
        "ListTokens",
        "/api/v1/tokens?principal=robot",
        "tokens",
        "id",
    );
    assert_eq!(robots, set([globex.robot_token_id.as_str()]));
}

// ---------------------------------------------------------------------------------------------
// Acme afterwards, and both audit trails
// ---------------------------------------------------------------------------------------------

/// Nothing globex did changed acme's certificates, key, profiles or principals.
fn acme_keeps_its_resources(world: &World, acme: &AcmeSeed, globex: &GlobexSeed, agent: &str) {
    let alice = &world.alice;
    assert_eq!(
        alice.serials(),
        acme.serials(),
        "globex's attempts issued here"
    );
    let replay = alice.issue(&acme.keyed_csr, "web", Some(SHARED_KEY)).ok();
    assert_eq!(replay["certificate"]["serial"], acme.keyed["serial"]);
    for serial in [acme.keyed_serial(), &acme.plain_serial] {
        let status = alice
            .get(
                "GetStatus",
                &format!("/api/v1/certificates/{serial}/status"),
            )
            .ok();
        assert_eq!(
            status["status"], "good",
            "globex's revocations reached acme: {status}"
        );
    }

    let latest = alice.get("GetProfile", "/api/v1/profiles/web").ok();
    assert_eq!(
        (&latest["version"], &latest["spec"]["max_validity"]),
        (&json!(2), &json!("1440h"))
    );
    let v1 = alice
        .get("GetProfileVersion", "/api/v1/profiles/web/versions/1")
        .ok();
    assert_eq!(v1["spec"]["max_validity"], web_spec()["max_validity"]);
    let names = alice.list("ListProfiles", "/api/v1/profiles", "profiles", "name");
    assert_eq!(names, set(["web", "acme-held"]));

    let robot = alice.get("GetPrincipal", "/api/v1/principals/robot").ok();
    assert_eq!(
        (&robot["id"], &robot["roles"]),
        (&json!(acme.robot_id), &json!(["viewer"]))
    );
    let principals = alice.get("ListPrincipals", "/api/v1/principals").ok();
    assert_eq!(
        field_set(&principals, "principals", "name"),
        set(["alice", "bob", "keeper", "robot", &format!("agent-{agent}")]),
        "acme's principals: its people and its enrolled agent"
    );
    assert!(!field_set(&principals, "principals", "id").contains(&globex.robot_id));
    for (name, keys) in [
        ("robot", set([acme.robot_key_id.as_str()])),
        ("alice", set([])),
        ("bob", set([])),
    ] {
        let path = format!("/api/v1/principals/{name}/keys");
        let got = alice.list("ListPrincipalKeys", &path, "keys", "id");
        assert_eq!(got, keys, "{name}'s keys after globex's attempts");
    }

    let cas = alice.get("ListCas", "/api/v1/cas").ok();
    let ids: BTreeSet<String> = acme.ca_ids.iter().cloned().collect();
    assert_eq!(field_set(&cas, "cas", "id"), ids, "{cas}");
    assert_eq!(field_set(&cas, "cas", "status"), set(["active"]), "{cas}");
    assert_eq!(field_set(&cas, "cas", "generation"), set(["1"]), "{cas}");
    let path = format!("/api/v1/ceremonies/{}", acme.ceremony);
    let ceremony = alice.get("GetCeremony", &path).ok();
    assert_eq!(ceremony["status"], "open", "{ceremony}");
    assert!(
        ceremony.get("approved_by").is_none_or(|a| a == &json!([])),
        "{ceremony}"
    );
}

/// The token globex tried to revoke still works, and the approval globex tried to approve and
/// reject is still pending, and still acme's to decide.
fn acme_still_owns_its_token_and_approval(world: &World, acme: &AcmeSeed) {
    let alice = &world.alice;
    let tokens = alice
        .get("ListTokens", "/api/v1/tokens?principal=robot")
        .ok();
    assert_eq!(
        field_set(&tokens, "tokens", "id"),
        set([acme.robot_token_id.as_str()])
    );
    let revoked = tokens["tokens"][0].get("revoked_at");
    assert!(
        revoked.is_none_or(Value::is_null),
        "globex revoked it: {tokens}"
    );
    let as_robot = world.caller("acme/robot", &acme.robot_token);
    assert_eq!(
        as_robot.serials(),
        acme.serials(),
        "acme's robot, after the revoke"
    );

    let approvals = alice.get("ListApprovals", "/api/v1/approvals").ok();
    let ids = field_set(&approvals, "approvals", "id");
    assert_eq!(ids, set([acme.approval.as_str()]));
    let held = &approvals["approvals"][0];
    assert_eq!(held["status"], "pending", "globex decided it: {held}");
    assert!(
        held["decided_by"].as_str().unwrap_or("").is_empty(),
        "{held}"
    );
    let path = format!("/api/v1/approvals/{}/approve", acme.approval);
    let approved = world.bob.call("Approve", &path, None, &[]).ok();
    assert_eq!(approved["approval"]["status"], "approved", "{approved}");
    assert_eq!(approved["approval"]["decided_by"], "bob", "{approved}");
    let issued = approved["certificate"]["serial"]
        .as_str()
        .expect("a serial");
    let mut serials = acme.serials();
    serials.insert(issued.to_string());
    assert_eq!(alice.serials(), serials, "bob's approval issued in acme");
}

/// Each tenant's trail holds its own events only, and VerifyAudit walks that chain alone.
fn audit_trails_stay_apart(world: &World, acme: &AcmeSeed, globex: &GlobexSeed) {
    let (alice, gina) = (&world.alice, &world.gina);
    let acme_trail = alice.audit_events();
    let globex_trail = gina.audit_events();
    for (who, trail, foreign) in [
        ("globex", &globex_trail, acme.marks()),
        ("acme", &acme_trail, globex.marks()),
    ] {
        assert!(trail.len() >= 5, "{who}'s own trail is there: {trail:?}");
        for event in trail {
            let text = event.to_string();
            let leaked: Vec<_> = foreign.iter().filter(|m| text.contains(**m)).collect();
            assert!(leaked.is_empty(), "{who}'s trail names {leaked:?}: {event}");
        }
    }
    let own = globex_trail.iter().any(|e| {
        (e["actor"].as_str(), e["action"].as_str()) == (Some("gina"), Some("principals.create"))
    });
    assert!(
        own,
        "globex's trail holds gina's own actions: {globex_trail:?}"
    );

    for query in [
        "actor=alice",
        &format!("resource=approval:{}", acme.approval),
    ] {
        let path = format!("/api/v1/audit?{query}");
        let found = gina.list("ListAuditEvents", &path, "events", "seq");
        assert!(
            found.is_empty(),
            "globex filtering for acme's {query}: {found:?}"
        );
    }

    for (caller, trail) in [(gina, &globex_trail), (alice, &acme_trail)] {
        let verdict = caller.get("VerifyAudit", "/api/v1/audit/verify").ok();
        assert_eq!(verdict["intact"], true, "{}: {verdict}", caller.who);
        assert_eq!(
            count(&verdict["rows"]),
            trail.len() as u64,
            "{} verified another chain than its own trail: {verdict}",
            caller.who
        );
    }
}
