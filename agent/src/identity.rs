//! The agent's mTLS identity: loading it for a connection, deciding when to renew it, making
//! the next key, and swapping the renewed certificate in.
//!
//! Two files cannot be replaced in one atomic step, so a renewal goes through staged files:
//! the new key is made at `identity.key.next` before the CSR is sent; the renewed certificate
//! is written to `identity.pem.next`; then `identity.key.next` → `identity.key` and
//! `identity.pem.next` → `identity.pem` are renamed. [`finish_swap`] redoes whatever part a
//! crash interrupted, checking that the staged certificate belongs to the key it pairs with,
//! and runs before every connection.

use certmesh_crypto::ca_checks::check_key_match;
use certmesh_crypto::cert::Certificate;
use certmesh_crypto::csr::Csr;
use certmesh_crypto::keys::KeySpec;
use certmesh_crypto::tls::{csr_for_key, host_key_and_csr, public_key_of};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::error::{AgentError, Result};
use crate::files;
use crate::state::StateDir;

/// The identity a connection presents.
#[derive(Debug)]
pub struct Identity {
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: Zeroizing<String>,
    /// The parsed certificate.
    pub cert: Certificate,
}

/// Reads `identity.pem` and `identity.key` and checks that they belong together.
pub fn load(state: &StateDir) -> Result<Identity> {
    let missing = || AgentError::NotEnrolled {
        state_dir: state.root().to_path_buf(),
    };
    let cert_pem = state
        .read_text(&state.identity_pem())?
        .ok_or_else(missing)?;
    let key_pem = Zeroizing::new(
        state
            .read_text(&state.identity_key())?
            .ok_or_else(missing)?,
    );
    let cert = Certificate::from_pem(&cert_pem)
        .map_err(|e| AgentError::crypto("reading identity.pem", e))?;
    check_pair(&cert, &key_pem).map_err(|_| {
        AgentError::protocol("identity.pem is not the certificate of identity.key; enroll again")
    })?;
    Ok(Identity {
        cert_pem,
        key_pem,
        cert,
    })
}

/// Whether the identity should be renewed now: at `renew_after` when the server named a time,
/// else once two thirds of the certificate's lifetime have passed.
pub fn renewal_due(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let at = renew_after.unwrap_or_else(|| not_before + (not_after - not_before) * 2 / 3);
    now >= at
}

/// A CSR for the next identity: the key at `identity.key.next` (made 0600 if absent, reused
/// if a previous attempt left it) with `common_name`.
pub fn renewal_csr(state: &StateDir, spec: KeySpec, common_name: &str) -> Result<Csr> {
    let path = state.identity_key_next();
    if let Some(key) = state.read_text(&path)?.map(Zeroizing::new) {
        return csr_for_key(&key, Some(common_name), &[], &[])
            .map_err(|e| AgentError::crypto("identity.key.next", e));
    }
    let (key, csr) = host_key_and_csr(spec, Some(common_name), &[], &[])
        .map_err(|e| AgentError::crypto("making the next identity key", e))?;
    state.write_private(&path, key.as_bytes())?;
    Ok(csr)
}

/// Installs a renewed identity certificate for the key at `identity.key.next`, updating
/// `agent.json`; the next connection presents it.
pub fn install_renewed(state: &StateDir, cert_pem: &str) -> Result<Certificate> {
    let cert = Certificate::from_pem(cert_pem)
        .map_err(|e| AgentError::crypto("reading the renewed identity", e))?;
    let next = state
        .read_text(&state.identity_key_next())?
        .map(Zeroizing::new)
        .ok_or_else(|| {
            AgentError::protocol("a renewed identity arrived but no renewal is pending")
        })?;
    check_pair(&cert, &next)
        .map_err(|_| AgentError::protocol("the renewed identity is not for identity.key.next"))?;
    state.write_private(&state.identity_pem_next(), cert_pem.as_bytes())?;
    finish_swap(state)?;
    Ok(cert)
}

/// Completes a staged swap, if one is there; `true` if it installed a certificate. A staged
/// certificate that matches neither key is dropped.
pub fn finish_swap(state: &StateDir) -> Result<bool> {
    let Some(pem) = state.read_text(&state.identity_pem_next())? else {
        return Ok(false);
    };
    let cert = Certificate::from_pem(&pem).ok();
    let next = state
        .read_text(&state.identity_key_next())?
        .map(Zeroizing::new);
    let current = state.read_text(&state.identity_key())?.map(Zeroizing::new);
    let pairs = |key: &Option<Zeroizing<String>>| match (&cert, key) {
        (Some(cert), Some(key)) => check_pair(cert, key).is_ok(),
        _ => false,
    };
    let rename = |from: std::path::PathBuf, to: std::path::PathBuf| {
        files::rename_durably(&from, &to)
            .map_err(|e| AgentError::io(format!("installing {}", to.display()), e))
    };
    if pairs(&next) {
        rename(state.identity_key_next(), state.identity_key())?;
    } else if !pairs(&current) {
        state.remove(&state.identity_pem_next())?;
        return Ok(false);
    }
    rename(state.identity_pem_next(), state.identity_pem())?;
    if let (Some(cert), Ok(mut record)) = (cert, state.load_agent()) {
        record.not_after = cert.not_after();
        state.save_agent(&record)?;
    }
    Ok(true)
}

/// Whether `cert` is the certificate of the private key `key_pem`.
pub fn check_pair(cert: &Certificate, key_pem: &str) -> Result<()> {
    let spki = public_key_of(key_pem).map_err(|e| AgentError::crypto("reading a key", e))?;
    check_key_match(cert, &spki)
        .map_err(|_| AgentError::protocol("the certificate is not for this key"))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn renewal_is_due_at_the_servers_time_or_two_thirds_of_the_lifetime() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let end = start + Duration::days(30);
        let two_thirds = start + Duration::days(20);
        assert!(!renewal_due(
            start,
            end,
            None,
            two_thirds - Duration::seconds(1)
        ));
        assert!(renewal_due(start, end, None, two_thirds));
        let server = start + Duration::days(5);
        assert!(!renewal_due(
            start,
            end,
            Some(server),
            server - Duration::seconds(1)
        ));
        assert!(renewal_due(start, end, Some(server), server));
    }

    #[test]
    fn the_renewal_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let first = renewal_csr(&state, KeySpec::EcdsaP256, "host").expect("csr");
        let again = renewal_csr(&state, KeySpec::EcdsaP256, "host").expect("csr");
        assert_eq!(first.public_key_spki_der(), again.public_key_spki_der());
        assert_eq!(first.common_name(), Some("host"));
        let meta = std::fs::metadata(state.identity_key_next()).expect("meta");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        assert!(!finish_swap(&state).expect("nothing staged"));
    }
}
