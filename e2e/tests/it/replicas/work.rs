//! Work given to the replicas through their REST APIs: configuration, issuances, bindings,
//! redeploys.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use super::state::{Job, jobs};
use super::{HOOK_SECRET, PKI_URL, WAIT, processes::Ports};
use crate::support::{Api, assert_eventually, csr, web_spec, write, x509};

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Profiles, a webhook channel with a rule for issuances and CRL publications, and scan
/// targets, through `api`; the scan targets' ids.
pub(super) fn configure(api: &Api, hook_port: u16, ports: &[Ports]) -> Vec<String> {
    api.create_profile("web", &web_spec());
    api.create_profile(
        "fleet",
        &json!({"allowed_key_algorithms": ["ECDSA"], "min_ecdsa_bits": 256, "min_rsa_bits": 2048,
                "allowed_ekus": ["serverAuth"], "max_validity": "2160h",
                "permitted_dns_suffixes": ["localhost"], "require_sans": true}),
    );
    let channel = json!({"name": "hook", "kind": "webhook",
        "config": {"url": format!("http://127.0.0.1:{hook_port}/certmesh")},
        "secrets": {"hmac_secret": HOOK_SECRET}});
    let channel = api
        .post(
            "/api/v1/notifications/channels",
            channel.to_string().as_bytes(),
            &[],
        )
        .ok();
    let rule = json!({"name": "issued-and-crls", "event_types": ["ca.issue", "ca.crl.published"],
                      "channel_ids": [id_of(&channel)]});
    api.post(
        "/api/v1/notifications/rules",
        rule.to_string().as_bytes(),
        &[],
    )
    .ok();
    let mut targets = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        for (kind, port) in [("api", p.api), ("fleet", p.fleet)] {
            let target = json!({"name": format!("replica-{i}-{kind}"), "hosts": ["127.0.0.1"],
                                "ports": [port], "interval": "1m"});
            let made = api.post(
                "/api/v1/discovery/targets",
                target.to_string().as_bytes(),
                &[],
            );
            targets.push(id_of(&made.ok()));
        }
    }
    targets
}

/// Issues a certificate for `name`.example.com through `api`; its serial (lower-case).
pub(super) fn issue(api: &Api, dir: &Path, name: &str) -> String {
    let request = csr(dir, &format!("{name}.example.com"), "P-256", &[]);
    let body = api.issue(&request, "web", None, None).ok();
    body["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_ascii_lowercase()
}

/// A binding of `agent` to files under `dir`/`name`, made through `api`; its id.
pub(super) fn bind(
    api: &Api,
    dir: &Path,
    name: &str,
    agent: &str,
    validity: &str,
    reload: &str,
) -> String {
    let target = dir.join("deployed").join(name);
    fs::create_dir_all(&target).expect("creating the target directory");
    let body = json!({
        "name": name,
        "agent_id": agent,
        "certificate": {"dns_names": [format!("{name}.localhost")], "profile": "fleet",
                        "validity": validity},
        "target": {"cert_path": target.join("tls.pem"), "key_path": target.join("tls.key"),
                   "reload_command": reload},
    });
    let made = api.post("/api/v1/fleet/bindings", body.to_string().as_bytes(), &[]);
    id_of(&made.ok())
}

/// Waits until the binding has a succeeded job satisfying `pick`; returns it.
pub(super) fn succeeded(db: &str, binding: &str, what: &str, pick: impl Fn(&Job) -> bool) -> Job {
    let timeout = WAIT + WAIT / 2;
    assert_eventually(what, timeout, || {
        let all = jobs(db, binding);
        let open: Vec<String> = all
            .iter()
            .map(|j| format!("{}:{}", j.kind, j.state))
            .collect();
        all.into_iter()
            .find(|j| j.state == "succeeded" && pick(j))
            .ok_or_else(|| format!("jobs {open:?}"))
    })
}

/// Redeploys `binding` through `api` (retried while another job of it is open); the job's id.
pub(super) fn redeploy(api: &Api, binding: &str) -> String {
    assert_eventually("a redeploy job is made", WAIT, || {
        let made = api
            .post(
                &format!("/api/v1/fleet/bindings/{binding}/redeploy"),
                b"{}",
                &[],
            )
            .ok();
        made["jobs"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| made.to_string())
    })
}

/// The path of the issuing CA's CRL (shard 0) on the PKI listeners, from a leaf's CDP.
pub(super) fn crl_path(api: &Api, dir: &Path) -> String {
    let request = csr(dir, "crl-pointer.example.com", "P-256", &[]);
    let body = api.issue(&request, "web", None, None).ok();
    let leaf = write(
        &dir.join("crl-pointer.pem"),
        body["certificate"]["certificate_pem"]
            .as_str()
            .expect("certificate_pem"),
    );
    let text = x509(&leaf, &["-ext", "crlDistributionPoints"]);
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no CRL URI in {text}"));
    url.strip_prefix(PKI_URL)
        .unwrap_or_else(|| panic!("{url} is not under {PKI_URL}"))
        .to_owned()
}
