//! The operator's own CA tree through the dev server's gateway: a 4-level hierarchy (root with
//! path length 3 → policy CA permitting `example.com` → issuing CA A → issuing CA B with path
//! length 0), each CA made through a 3-of-5 key ceremony whose custodians sign with their own
//! Ed25519 and P-256 keys, some with openssl and some with `certmesh ceremony approve`; then
//! leaves through a profile backed by B, verified by `openssl verify -x509_strict`, by Python
//! `cryptography`'s path validation and by pkilint; every refusal on the way; rotation; and
//! drain-first retirement.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{Value, json};

use crate::support::{
    Api, DevServer, csr, openssl_verify, pem_blocks, pkilint, python_verify_path, run, tool,
    unique, web_spec, write,
};

/// A custodian: a principal with the custodian role, its own key, and its own token.
#[derive(Debug)]
struct Custodian {
    name: String,
    key: PathBuf,
    ed25519: bool,
    api: Api,
}

/// The dev server, its admin, and five custodians (c1–c3 Ed25519, c4–c5 P-256).
struct World {
    server: DevServer,
    custodians: Vec<Custodian>,
}

impl World {
    fn start() -> Self {
        let server = DevServer::start();
        let admin = &server.api;
        let mut custodians = Vec::new();
        for i in 1..=5 {
            let name = format!("c{i}");
            let ed25519 = i <= 3;
            let key = private_key(&server, &name, ed25519);
            let body = json!({ "name": name, "roles": ["custodian"] });
            post(admin, "/api/v1/principals", &body).ok();
            let body = json!({ "public_key_pem": public_key(&key) });
            post(admin, &format!("/api/v1/principals/{name}/keys"), &body).ok();
            let body = json!({ "principal": name, "name": format!("{name}-token") });
            let minted = post(admin, "/api/v1/tokens", &body).ok();
            let token = minted["token"].as_str().expect("a token").to_string();
            let api = Api {
                token_file: write(&server.path(&format!("{name}.token")), &token),
                token,
                ..admin.clone()
            };
            custodians.push(Custodian {
                name,
                key,
                ed25519,
                api,
            });
        }
        Self { server, custodians }
    }

    fn admin(&self) -> &Api {
        &self.server.api
    }

    fn custodian(&self, name: &str) -> &Custodian {
        self.custodians
            .iter()
            .find(|c| c.name == name)
            .expect("a custodian of the world")
    }

    /// Starts a 3-of-5 ceremony; its JSON.
    fn ceremony(&self, purpose: &str, params: Value) -> Value {
        let names: Vec<&str> = self.custodians.iter().map(|c| c.name.as_str()).collect();
        let body = json!({
            "purpose": purpose,
            "threshold": 3,
            "custodians": names,
            "params": params,
        });
        let ceremony = post(self.admin(), "/api/v1/ceremonies", &body).ok();
        assert_eq!(ceremony["status"], "open", "{ceremony}");
        let message = ceremony["signing_message"]
            .as_str()
            .expect("signing_message");
        let digest = ceremony["digest"].as_str().expect("digest");
        assert_eq!(message, format!("certmesh-ceremony-v1:{digest}"));
        ceremony
    }

    /// A ceremony approved by c1 (the CLI, Ed25519), c2 (openssl, Ed25519) and c4 (openssl,
    /// P-256); its id.
    fn approved(&self, purpose: &str, params: Value) -> String {
        let ceremony = self.ceremony(purpose, params);
        let id = ceremony["id"].as_str().expect("id").to_string();
        approve_with_cli(self.custodian("c1"), &id);
        approve_with_openssl(self.custodian("c2"), &ceremony).ok();
        let last = approve_with_openssl(self.custodian("c4"), &ceremony).ok();
        assert_eq!(
            (last["approvals"].as_u64(), last["threshold"].as_u64()),
            (Some(3), Some(3))
        );
        id
    }

    /// Runs a gated operation; the CA.
    fn operate(&self, path: &str, ceremony: &str, params: &Value) -> Value {
        let body = json!({ "ceremony_id": ceremony, "params": params });
        post(self.admin(), path, &body).ok()
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        write(&self.server.path(name), contents)
    }
}

#[test]
fn a_four_level_tree_from_three_of_five_ceremonies_issues_leaves_that_verify_independently() {
    let world = World::start();
    let admin = world.admin();

    // The root, and every way its ceremony can be refused on the way.
    let root_params = json!({
        "name": "e2e-root",
        "subject_cn": "certmesh e2e Root CA",
        "subject_o": "certmesh e2e",
        "key_spec": "ecdsa-p384",
        "path_len": 3,
        "validity_days": 3650,
    });
    let ceremony = world.ceremony("create_root", root_params.clone());
    let id = ceremony["id"].as_str().expect("id");
    let create = |params: &Value| {
        let body = json!({ "ceremony_id": id, "params": params });
        post(admin, "/api/v1/cas", &body)
    };
    approve_with_cli(world.custodian("c1"), id);
    let early = create(&root_params).error(412, "FAILED_PRECONDITION", "QUORUM_NOT_MET");
    assert!(early.contains("1 of 3"), "{early}");
    let again = approve_with_openssl(world.custodian("c1"), &ceremony).ok();
    assert_eq!(again["already_approved"], true, "{again}");
    assert_eq!(again["approvals"], 1, "an approval counts once: {again}");
    // The dev admin holds the custodian role but is not listed on this ceremony.
    let outsider = Custodian {
        name: "admin".into(),
        key: world.server.dir.path().join("dev/custodian.key"),
        ed25519: true,
        api: admin.clone(),
    };
    approve_with_openssl(&outsider, &ceremony).error(403, "PERMISSION_DENIED", "NOT_A_CUSTODIAN");
    // c3 signs with a key that is not the one registered on c3.
    let forger = Custodian {
        key: private_key(&world.server, "forged", true),
        ..clone_custodian(world.custodian("c3"))
    };
    approve_with_openssl(&forger, &ceremony).error(
        403,
        "PERMISSION_DENIED",
        "CEREMONY_SIGNATURE_INVALID",
    );
    approve_with_openssl(world.custodian("c5"), &ceremony).ok();
    approve_with_openssl(world.custodian("c3"), &ceremony).ok();
    let mut widened = root_params.clone();
    widened["path_len"] = json!(9);
    create(&widened).error(412, "FAILED_PRECONDITION", "CEREMONY_PARAMS_MISMATCH");
    let root = create(&root_params).ok()["ca"].clone();
    assert_eq!(
        (&root["kind"], &root["path_len"]),
        (&json!("root"), &json!(3))
    );
    create(&root_params).error(412, "FAILED_PRECONDITION", "CEREMONY_ALREADY_USED");
    let shown = admin.get(&format!("/api/v1/ceremonies/{id}")).ok();
    assert_eq!(shown["status"], "completed", "{shown}");
    assert_eq!(shown["result_ca_id"], root["id"], "{shown}");

    // Policy CA → issuing A → issuing B, each under the last.
    let child = |name: &str, parent: &Value, extra: Value| {
        let mut params = json!({
            "name": name,
            "parent_ca_id": parent["id"],
            "subject_cn": format!("certmesh e2e {name}"),
            "subject_o": "certmesh e2e",
            "key_spec": "ecdsa-p256",
            "permitted_dns": ["example.com"],
            "validity_days": 1825,
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            params[k] = v.clone();
        }
        let ceremony = world.approved("create_intermediate", params.clone());
        let path = format!(
            "/api/v1/cas/{}/intermediates",
            parent["id"].as_str().expect("id")
        );
        world.operate(&path, &ceremony, &params)["ca"].clone()
    };
    let policy = child("policy", &root, json!({}));
    let issuing_a = child("issuing-a", &policy, json!({}));
    let issuing_b = child("issuing-b", &issuing_a, json!({ "path_len": 0 }));
    assert_eq!(
        [&policy, &issuing_a, &issuing_b].map(|ca| ca["path_len"].as_u64().unwrap_or(0)),
        [2, 1, 0],
        "path lengths default to the parent's minus one"
    );
    assert_eq!(issuing_b["permitted_dns"], json!(["example.com"]));

    // RFC 5280 §4.2.1.9: nothing under a CA with path length 0, even with a full quorum.
    let params = json!({
        "name": "too-deep",
        "parent_ca_id": issuing_b["id"],
        "subject_cn": "too deep",
        "key_spec": "ecdsa-p256",
        "permitted_dns": ["example.com"],
    });
    let ceremony = world.approved("create_intermediate", params.clone());
    let path = format!(
        "/api/v1/cas/{}/intermediates",
        issuing_b["id"].as_str().expect("id")
    );
    let body = json!({ "ceremony_id": ceremony, "params": params });
    post(admin, &path, &body).error(412, "FAILED_PRECONDITION", "PATH_LEN_EXCEEDED");
    // §4.2.1.10: a child may not permit more than its parent.
    let params = json!({
        "name": "wider",
        "parent_ca_id": policy["id"],
        "subject_cn": "wider",
        "key_spec": "ecdsa-p256",
        "permitted_dns": ["example.org"],
    });
    let ceremony = world.approved("create_intermediate", params.clone());
    let path = format!(
        "/api/v1/cas/{}/intermediates",
        policy["id"].as_str().expect("id")
    );
    let body = json!({ "ceremony_id": ceremony, "params": params });
    post(admin, &path, &body).error(412, "FAILED_PRECONDITION", "NAME_CONSTRAINT_EXCEEDED");
    let names: Vec<String> = cas(admin).iter().map(|ca| text(&ca["name"])).collect();
    assert!(
        !names.iter().any(|n| n == "too-deep" || n == "wider"),
        "{names:?}"
    );

    // The chain of B, CA first, and every CA certificate linted.
    let b_id = text(&issuing_b["id"]);
    let chain = admin.get(&format!("/api/v1/cas/{b_id}/chain")).ok();
    let blocks = pem_blocks(chain["chain_pem"].as_str().expect("chain_pem"));
    assert_eq!(blocks.len(), 4, "B, A, policy, root");
    assert_eq!(blocks[3], text(&root["certificate_pem"]));
    for (i, block) in blocks.iter().enumerate() {
        pkilint(
            &world.file(&format!("ca-{i}.pem"), block),
            &format!("CA certificate {i}"),
        );
    }
    let root_pem = world.file("root.pem", &blocks[3]);

    // Leaves through a profile backed by B.
    let mut spec = web_spec();
    spec["issuer_ca_id"] = json!(b_id);
    spec["permitted_dns_suffixes"] = json!(["example.com", "example.org"]);
    admin.create_profile("tree-web", &spec);
    let leaf = issue_and_verify(&world, "www.example.com", &root_pem, &blocks[..3]);
    assert_eq!(leaf["issuer_ca_id"], json!(b_id));
    let dir = world.server.dir.path();
    let outside = admin.issue(
        &csr(dir, "www.example.org", "P-256", &[]),
        "tree-web",
        None,
        None,
    );
    let why = outside.error(412, "FAILED_PRECONDITION", "NAME_CONSTRAINT_EXCEEDED");
    assert!(why.contains("www.example.org"), "{why}");

    // Rotation of B: new key, same name; the old leaf keeps verifying with its old chain.
    let params = json!({ "ca_id": b_id, "key_spec": "ecdsa-p256", "validity_days": 730 });
    let ceremony = world.approved("rotate", params.clone());
    let rotated =
        world.operate(&format!("/api/v1/cas/{b_id}/rotate"), &ceremony, &params)["ca"].clone();
    assert_eq!(rotated["generation"], 2, "{rotated}");
    assert_eq!(rotated["subject"], issuing_b["subject"]);
    assert_ne!(rotated["certificate_pem"], issuing_b["certificate_pem"]);
    let old_leaf = world.file("old-leaf.pem", &text(&leaf["certificate_pem"]));
    let old_chain = world.file("old-chain.pem", &text(&leaf["chain_pem"]));
    openssl_verify(&root_pem, &old_chain, &old_leaf);
    let new_chain: Vec<String> = {
        let chain = admin.get(&format!("/api/v1/cas/{b_id}/chain")).ok();
        pem_blocks(chain["chain_pem"].as_str().expect("chain_pem"))
    };
    assert_eq!(new_chain[0], text(&rotated["certificate_pem"]));
    let new_leaf = issue_and_verify(&world, "api.example.com", &root_pem, &new_chain[..3]);
    assert_eq!(
        pem_blocks(&text(&new_leaf["chain_pem"]))[0],
        text(&rotated["certificate_pem"]),
        "issuance moved to the new key"
    );

    // Drain first: A retires only once B, its child, has.
    let a_id = text(&issuing_a["id"]);
    let retire = |id: &str, confirm: bool| {
        let body = json!({ "confirm": confirm });
        post(admin, &format!("/api/v1/cas/{id}/retire"), &body)
    };
    assert_eq!(retire(&a_id, false).ok()["status"], "retiring");
    retire(&a_id, true).error(409, "ABORTED", "CA_HAS_ACTIVE_CHILDREN");
    assert_eq!(retire(&b_id, false).ok()["status"], "retiring");
    let drained = admin.issue(
        &csr(dir, "late.example.com", "P-256", &[]),
        "tree-web",
        None,
        None,
    );
    drained.error(412, "FAILED_PRECONDITION", "CA_NOT_ACTIVE");
    assert_eq!(retire(&b_id, true).ok()["status"], "retired");
    assert_eq!(retire(&a_id, true).ok()["status"], "retired");
    retire(&text(&policy["id"]), true).error(412, "FAILED_PRECONDITION", "CA_NOT_RETIRING");
    // Leaves issued before keep verifying: retirement removes no trust already given.
    openssl_verify(&root_pem, &old_chain, &old_leaf);
}

#[test]
fn the_dev_ca_was_made_through_recorded_one_of_one_ceremonies() {
    let server = DevServer::start();
    let api = &server.api;
    let ceremonies = api.get("/api/v1/ceremonies").ok();
    let list = ceremonies["ceremonies"].as_array().expect("ceremonies");
    let purposes: Vec<String> = list.iter().map(|c| text(&c["purpose"])).collect();
    assert_eq!(purposes, ["create_root", "create_intermediate"]);
    for c in list {
        assert_eq!(c["status"], "completed", "{c}");
        assert_eq!(
            (&c["threshold"], &c["custodians"]),
            (&json!(1), &json!(["admin"]))
        );
        assert_eq!(c["approved_by"], json!(["admin"]), "{c}");
    }
    let names: Vec<String> = cas(api).iter().map(|ca| text(&ca["name"])).collect();
    assert_eq!(names, ["builtin-root", "builtin-issuing"]);
    let audit = api.get("/api/v1/audit?action=ceremonies.approve").ok();
    let events = audit["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{audit}");
    for e in events {
        let details: Value = serde_json::from_str(e["details_json"].as_str().unwrap_or("{}"))
            .unwrap_or_else(|err| panic!("details_json of {e}: {err}"));
        let signature = details["signature"].as_str().unwrap_or_default();
        assert_eq!(signature.len(), 88, "a base64 Ed25519 signature: {e}");
        assert!(details["key_fingerprint"].as_str().is_some(), "{e}");
    }
    // A restart reuses the CA: no new ceremony.
    let dir = {
        let server = server;
        server.stop()
    };
    let again = DevServer::start_in(dir);
    let list = again.api.get("/api/v1/ceremonies").ok();
    assert_eq!(list["ceremonies"].as_array().map(Vec::len), Some(2));
}

/// Issues a leaf for `dns` under `tree-web` and verifies it three ways; the certificate JSON.
fn issue_and_verify(world: &World, dns: &str, root: &Path, chain: &[String]) -> Value {
    let dir = world.server.dir.path();
    let issued = world
        .admin()
        .issue(&csr(dir, dns, "P-256", &[]), "tree-web", None, None)
        .ok();
    let cert = issued["certificate"].clone();
    let leaf = world.file(&format!("{dns}.pem"), &text(&cert["certificate_pem"]));
    let served_chain = pem_blocks(&text(&cert["chain_pem"]));
    assert_eq!(
        served_chain, chain,
        "the reply's chain: issuing CA up to, not including, the root"
    );
    let untrusted = world.file(&format!("{dns}.chain.pem"), &chain.concat());
    openssl_verify(root, &untrusted, &leaf);
    let path = python_verify_path(root, &untrusted, &leaf, dns);
    assert_eq!(path.len(), 5, "leaf, B, A, policy, root: {path:?}");
    assert!(path[4].contains("certmesh e2e Root CA"), "{path:?}");
    pkilint(&leaf, dns);
    cert
}

fn cas(api: &Api) -> Vec<Value> {
    api.get("/api/v1/cas").ok()["cas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn post(api: &Api, path: &str, body: &Value) -> crate::support::Reply {
    api.post(path, body.to_string().as_bytes(), &[])
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn clone_custodian(c: &Custodian) -> Custodian {
    Custodian {
        name: c.name.clone(),
        key: c.key.clone(),
        ed25519: c.ed25519,
        api: c.api.clone(),
    }
}

/// A new private key made by openssl, as a custodian would on their own machine.
fn private_key(server: &DevServer, name: &str, ed25519: bool) -> PathBuf {
    let path = server.path(&format!("{name}-{}.key", unique("k")));
    let mut cmd = Command::new(tool("openssl"));
    cmd.arg("genpkey");
    if ed25519 {
        cmd.args(["-algorithm", "ed25519"]);
    } else {
        cmd.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    cmd.arg("-out").arg(&path);
    run(&mut cmd);
    path
}

fn public_key(private: &Path) -> String {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["pkey", "-pubout", "-in"]).arg(private);
    String::from_utf8_lossy(&run(&mut cmd).stdout).to_string()
}

/// The custodian signs the ceremony's signing message with openssl and posts the approval.
fn approve_with_openssl(c: &Custodian, ceremony: &Value) -> crate::support::Reply {
    let id = text(&ceremony["id"]);
    let dir = c.key.parent().expect("a key directory");
    let message = write(
        &dir.join(format!("{}.msg", unique("m"))),
        text(&ceremony["signing_message"]),
    );
    let signature = dir.join(format!("{}.sig", unique("s")));
    let mut cmd = Command::new(tool("openssl"));
    if c.ed25519 {
        cmd.args(["pkeyutl", "-sign", "-rawin", "-inkey"])
            .arg(&c.key)
            .arg("-in")
            .arg(&message)
            .arg("-out")
            .arg(&signature);
    } else {
        cmd.args(["dgst", "-sha256", "-sign"])
            .arg(&c.key)
            .arg("-out")
            .arg(&signature)
            .arg(&message);
    }
    run(&mut cmd);
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        fs::read(&signature).expect("the signature"),
    );
    let body = json!({ "signature": signature });
    post(&c.api, &format!("/api/v1/ceremonies/{id}/approvals"), &body)
}

/// `certmesh ceremony approve ID --key FILE` as the custodian: the CLI signs locally.
fn approve_with_cli(c: &Custodian, id: &str) {
    let key = c.key.to_string_lossy().to_string();
    let out = run(&mut c.api.cli(&["ceremony", "approve", id, "--key", &key]));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`ceremony approve` printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let approved_by = reply["ceremony"]["approved_by"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(approved_by.contains(&json!(c.name)), "{reply}");
}
