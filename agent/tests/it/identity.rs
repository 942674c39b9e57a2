//! Finishing an identity swap that a crash interrupted, at each point it can stop.

use std::fs;

use certmesh_agent::identity::{finish_swap, load, renewal_csr};
use certmesh_agent::state::StateDir;
use certmesh_crypto::keys::KeySpec;
use certmesh_crypto::tls::host_key_and_csr;

use crate::support::{Pki, install_provider, not_after};

const URI: &str = "spiffe://certmesh.test/tenant/tn-1/agent/ag-1";

/// A state directory holding a current identity; returns it and the CA.
fn enrolled() -> (tempfile::TempDir, StateDir, Pki) {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let pki = Pki::new("Agent Identity CA");
    let (key, csr) = host_key_and_csr(KeySpec::EcdsaP256, Some("host"), &[], &[]).expect("key");
    let cert = pki.identity(&csr, URI, not_after());
    state
        .write_private(&state.identity_key(), key.as_bytes())
        .expect("key");
    state
        .write_private(&state.identity_pem(), cert.to_pem().as_bytes())
        .expect("cert");
    (dir, state, pki)
}

#[test]
fn a_swap_stopped_before_either_rename_is_completed() {
    let (_dir, state, pki) = enrolled();
    let csr = renewal_csr(&state, KeySpec::EcdsaP256, "host").expect("csr");
    let next_key = fs::read_to_string(state.identity_key_next()).expect("next key");
    let renewed = pki.identity(&csr, URI, not_after());
    state
        .write_private(&state.identity_pem_next(), renewed.to_pem().as_bytes())
        .expect("stage");
    assert!(finish_swap(&state).expect("finish"));
    let identity = load(&state).expect("a matching pair");
    assert_eq!(identity.cert_pem, renewed.to_pem());
    assert_eq!(*identity.key_pem, next_key);
    assert!(!state.identity_key_next().exists());
    assert!(!state.identity_pem_next().exists());
}

#[test]
fn a_swap_stopped_between_the_renames_is_completed() {
    let (_dir, state, pki) = enrolled();
    let csr = renewal_csr(&state, KeySpec::EcdsaP256, "host").expect("csr");
    let renewed = pki.identity(&csr, URI, not_after());
    state
        .write_private(&state.identity_pem_next(), renewed.to_pem().as_bytes())
        .expect("stage");
    fs::rename(state.identity_key_next(), state.identity_key()).expect("first rename");
    assert!(
        load(&state).is_err(),
        "the new key with the old certificate does not pair"
    );
    assert!(finish_swap(&state).expect("finish"));
    assert_eq!(load(&state).expect("pair").cert_pem, renewed.to_pem());
}

#[test]
fn a_staged_certificate_for_no_key_is_dropped() {
    let (_dir, state, pki) = enrolled();
    let before = load(&state).expect("pair").cert_pem;
    let (_, stranger) = host_key_and_csr(KeySpec::EcdsaP256, Some("x"), &[], &[]).expect("csr");
    let foreign = pki.identity(&stranger, URI, not_after());
    state
        .write_private(&state.identity_pem_next(), foreign.to_pem().as_bytes())
        .expect("stage");
    assert!(!finish_swap(&state).expect("finish"));
    assert!(!state.identity_pem_next().exists());
    assert_eq!(load(&state).expect("pair").cert_pem, before);
}
