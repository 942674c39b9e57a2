//! The OCSP responder: statuses from the store (good only for what the CA key signed), the
//! cache replaced at once by a revocation on this replica and by polling on others, nonces,
//! CertID hash algorithms, re-signing at half-life, errors, and openssl's verdict.

use certmesh_crypto::{
    cert::Certificate,
    ocsp::{HashAlgorithm, OcspErrorStatus},
};
use certmesh_revocation::ocsp::{Answer, Responders};

use crate::der::{self, Reply, Status, request};
use crate::support::{Fixture, Leaf};

mod answers;
mod freshness;

const SHA1: HashAlgorithm = HashAlgorithm::Sha1;
const SHA256: HashAlgorithm = HashAlgorithm::Sha256;

async fn ask_der(responders: &Responders, req: &[u8]) -> (Answer, Reply) {
    let answer = responders.answer(req).await;
    let reply = der::parse(&answer.body());
    (answer, reply)
}

/// Asks `responders` about `serial` of `issuer` (no nonce); the answer and its one status.
async fn ask(
    responders: &Responders,
    issuer: &Certificate,
    serial: &[u8],
    hash: HashAlgorithm,
) -> (Answer, Status) {
    let (answer, reply) = ask_der(responders, &request(issuer, serial, hash, None)).await;
    assert_eq!(reply.status, 0, "not successful: {answer:?}");
    let status = reply.single().status.clone();
    (answer, status)
}

async fn status(f: &Fixture, issuer: &Certificate, leaf: &Leaf) -> Status {
    ask(&f.responders, issuer, &leaf.serial_bytes(), SHA1)
        .await
        .1
}

async fn revoke(f: &Fixture, leaf: &Leaf, reason: &str) {
    f.revocations
        .revoke(&f.actor, leaf.serial(), reason, "")
        .await
        .unwrap_or_else(|e| panic!("{}: revoke {reason}: {e}", f.backend));
}

fn error(answer: &Answer) -> Option<OcspErrorStatus> {
    match answer {
        Answer::Error(status) => Some(*status),
        Answer::Response { .. } => None,
    }
}
