//! What the replicas did, read from the shared database with psql and from the PKI
//! listeners with openssl: leases, fleet jobs, published and served CRLs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::revocation::http;
use crate::support::{run, tool, write};

/// The rows `sql` returns, tab-separated columns.
pub(super) fn rows(db: &str, sql: &str) -> Vec<Vec<String>> {
    let out = run(Command::new(tool("psql")).arg(db).args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-F",
        "\t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The number in the first column of the first row `sql` returns.
pub(super) fn number(db: &str, sql: &str) -> f64 {
    let got = rows(db, sql);
    got.first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: no number in {got:?}"))
}

/// The database's clock, in seconds since the epoch.
pub(super) fn db_now(db: &str) -> f64 {
    number(db, "select extract(epoch from now())::float8")
}

/// Each lease's holder, if unexpired.
pub(super) fn leases(db: &str) -> BTreeMap<String, String> {
    rows(
        db,
        "select name, holder from leases where expires_at > now() order by name",
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect()
}

/// Published CRLs: (CA, generation, shard) → (cRLNumber, thisUpdate) in number order.
pub(super) type Crls = BTreeMap<(String, u64, u64), Vec<(u64, f64)>>;

/// One fleet job as stored.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) state: String,
    pub(super) attempts: u32,
    pub(super) serial: String,
    pub(super) created_at: f64,
    pub(super) cert_renew_at: Option<f64>,
}

pub(super) fn jobs(db: &str, binding: &str) -> Vec<Job> {
    let sql = format!(
        "select id, kind, state, attempts, serial, extract(epoch from created_at)::float8, \
         coalesce(extract(epoch from cert_renew_at)::float8::text, '') \
         from fleet_jobs where binding_id = '{binding}' order by created_at, id"
    );
    rows(db, &sql)
        .into_iter()
        .map(|r| Job {
            id: r[0].clone(),
            kind: r[1].clone(),
            state: r[2].clone(),
            attempts: r[3].parse().expect("attempts"),
            serial: r[4].clone(),
            created_at: r[5].parse().expect("created_at"),
            cert_renew_at: r[6].parse().ok(),
        })
        .collect()
}

/// The CRL `pki` serves at `path`: its cRLNumber (read by openssl) and DER.
pub(super) fn fetch_crl(pki: &str, path: &str, dir: &Path) -> (u64, Vec<u8>) {
    let reply = http(pki, "GET", path, &[], b"");
    assert_eq!(reply.status, 200, "GET {pki}{path}");
    let file = write(&dir.join("fetched.crl"), &reply.body);
    let out = run(Command::new(tool("openssl"))
        .args(["crl", "-inform", "DER", "-noout", "-crlnumber", "-in"])
        .arg(&file));
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .trim()
        .strip_prefix("crlNumber=")
        .map(|n| n.trim_start_matches("0x"))
        .unwrap_or_else(|| panic!("no crlNumber from openssl: {text}"));
    let number = u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("crlNumber {hex:?}"));
    (number, reply.body)
}

/// Every CRL published, from the outbox: (CA, generation, shard) → (number, thisUpdate).
pub(super) fn published_crls(db: &str) -> Crls {
    let mut by_scope = Crls::new();
    for row in rows(
        db,
        "select payload from outbox where event_type = 'ca.crl.published'",
    ) {
        let p: Value = serde_json::from_str(&row[0]).expect("a JSON payload");
        let this_update =
            chrono::DateTime::parse_from_rfc3339(p["this_update"].as_str().expect("this_update"))
                .expect("an RFC 3339 thisUpdate")
                .timestamp() as f64;
        let scope = (
            p["ca_id"].as_str().expect("ca_id").to_owned(),
            p["generation"].as_u64().expect("generation"),
            p["shard"].as_u64().expect("shard"),
        );
        let number = p["number"].as_u64().expect("number");
        by_scope
            .entry(scope)
            .or_default()
            .push((number, this_update));
    }
    for list in by_scope.values_mut() {
        list.sort_by_key(|(n, _)| *n);
    }
    by_scope
}
