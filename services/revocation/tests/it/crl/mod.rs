//! CRL publication: one CRL per CA key and shard, its entries, numbering, issuing distribution
//! point and AKI; what makes a CRL due again; one publisher at a time; openssl's verdict.

use std::collections::BTreeMap;

use certmesh_crypto::{
    crl::{ParsedCrl, parse_crl},
    revocation::RevocationReason,
};
use certmesh_revocation::crl::Published;
use certmesh_store::CaId;

use crate::support::{Ca, Fixture, Leaf, LeafSpec};

mod contents;
mod publishing;

const SHARDS: u32 = 4;

fn in_shard(shard: u32) -> LeafSpec {
    LeafSpec {
        shard: Some(shard),
        ..LeafSpec::default()
    }
}

async fn publish(f: &Fixture) -> Vec<Published> {
    f.publisher
        .publish_due()
        .await
        .unwrap_or_else(|e| panic!("{}: publish_due: {e}", f.backend))
}

/// The (CA, generation, shard) of each publication, sorted.
fn scopes(published: &[Published]) -> Vec<(CaId, u32, u32)> {
    let mut s: Vec<_> = published
        .iter()
        .map(|p| (p.ca_id, p.generation, p.shard))
        .collect();
    s.sort();
    s
}

fn all_scopes(cas: &[&Ca], shards: u32) -> Vec<(CaId, u32, u32)> {
    let mut s: Vec<_> = cas
        .iter()
        .flat_map(|ca| (0..shards).map(|shard| (ca.id(), ca.generation, shard)))
        .collect();
    s.sort();
    s
}

async fn parsed(f: &Fixture, ca: &Ca, shard: u32) -> ParsedCrl {
    let record = f
        .crl(ca, shard)
        .await
        .unwrap_or_else(|| panic!("{}: no CRL for shard {shard}", f.backend));
    let crl = parse_crl(&record.der).expect("CRL parses");
    assert_eq!(crl.number, Some(record.number), "{}", f.backend);
    assert_eq!(crl.entries.len() as u64, record.entries);
    crl
}

/// The serials a CRL lists, with their reasons.
fn entries(crl: &ParsedCrl) -> BTreeMap<String, Option<RevocationReason>> {
    crl.entries
        .iter()
        .map(|e| (e.serial.to_hex(), e.reason))
        .collect()
}

fn expect(
    list: &[(&Leaf, Option<RevocationReason>)],
) -> BTreeMap<String, Option<RevocationReason>> {
    list.iter()
        .map(|(leaf, reason)| (leaf.serial().to_owned(), *reason))
        .collect()
}

async fn revoke(f: &Fixture, leaf: &Leaf, reason: &str) {
    f.revocations
        .revoke(&f.actor, leaf.serial(), reason, "")
        .await
        .unwrap_or_else(|e| panic!("{}: revoke {reason}: {e}", f.backend));
}
