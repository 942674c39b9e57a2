//! Issuing through a CA of the operator's tree (RFC 0003), for a profile that names one by
//! `issuer_ca_id`.
//!
//! The CA row is read with the profile on every request, so retiring a CA or taking its key
//! offline stops issuance at the next request. Everything else follows from the certificate of
//! the CA's current generation and does not change while that generation is current: its
//! signer, the chain above it and the name constraints of every CA on that chain. That is
//! built once per (CA id, generation) and kept, so a rotation (which bumps the generation)
//! moves issuance to the new key on the next request and the old generation is dropped.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use certmesh_ca::CaError;
use certmesh_crypto::{
    ca_checks::{CaCheckError, check_leaf_names},
    cert::{Certificate, IssuingCa, NameConstraints, pem_bundle},
    csr::Csr,
    keys::KeyBackend,
};
use certmesh_kit::pki::LeafPointers;
use certmesh_store::{
    CaId, Store, TenantId,
    cas::{self, CaRecord},
};
use sea_orm::ConnectionTrait;

use crate::{
    error::IssuanceError,
    issuer::{Issued, Issuer, SignRequest, key_id, leaf_template, open_signer},
};

/// Generations held before the cache starts over (CAs are few; this bounds the pathological).
const CACHE_MAX: usize = 10_000;

/// The tree CAs of every tenant, each opened once per generation.
#[derive(Debug)]
pub(crate) struct TreeCa {
    store: Store,
    keys: Arc<dyn KeyBackend>,
    pointers: Option<LeafPointers>,
    opened: RwLock<HashMap<(CaId, u32), Arc<TreeIssuer>>>,
}

/// One generation of a tree CA, opened and ready to sign.
#[derive(Debug)]
pub(crate) struct TreeIssuer {
    id: CaId,
    /// The public id of the signing key, named in CRL URLs.
    key_id: uuid::Uuid,
    pointers: Option<LeafPointers>,
    ca: IssuingCa,
    /// The issuing CA's certificate and each one above it, up to and not including the root.
    chain_pem: String,
    /// The name constraints of the issuing CA's certificate and of every certificate above
    /// it, the root's included.
    constraints: Vec<NameConstraints>,
}

impl TreeCa {
    /// Tree CAs whose rows are in `store` and whose keys are in `keys`.
    pub fn new(store: Store, keys: Arc<dyn KeyBackend>, pointers: Option<LeafPointers>) -> Self {
        Self {
            store,
            keys,
            pointers,
            opened: RwLock::default(),
        }
    }

    /// The tenant's CA `id` if it may sign now. Runs in the caller's read, with the profile.
    pub async fn read<C: ConnectionTrait>(
        conn: &C,
        tenant: TenantId,
        id: CaId,
    ) -> Result<CaRecord, IssuanceError> {
        let ca = cas::get(conn, tenant, id)
            .await?
            .ok_or(IssuanceError::CaNotFound { id })?;
        let why = match ca.status.as_str() {
            cas::STATUS_ACTIVE if ca.key_offline => "its key is offline".to_string(),
            cas::STATUS_ACTIVE => return Ok(ca),
            status => format!("it is {status}"),
        };
        Err(IssuanceError::CaNotActive { id, why })
    }

    /// The signer of `ca`'s current generation: from the cache, or opened now (reading the
    /// certificates above it in a read of its own and opening its key). Call it outside any
    /// transaction.
    pub async fn open(&self, ca: &CaRecord) -> Result<Arc<TreeIssuer>, IssuanceError> {
        let key = (ca.id, ca.generation);
        if let Some(issuer) = self.read_cache().get(&key) {
            return Ok(issuer.clone());
        }
        let issuing = Certificate::from_der(ca.certificate_der.clone())?;
        let above = self.path_above(ca, &issuing).await?;
        let tenant = ca.tenant_id;
        let key_id = self
            .store
            .in_tenant(tenant, async |tx| key_id(tx, ca).await)
            .await?;
        let signer = open_signer(self.keys.as_ref(), &ca.key_ref).await?;
        let constraints = std::iter::once(&issuing)
            .chain(&above)
            .map(|c| c.name_constraints().clone())
            .collect();
        // The root is the relying party's trust anchor and is never sent, so leaves a root
        // signs itself get no chain.
        let chain_pem = match above.split_last() {
            None => String::new(),
            Some((_root, between)) => {
                let mut chain = vec![issuing.clone()];
                chain.extend_from_slice(between);
                pem_bundle(&chain)
            }
        };
        let issuer = Arc::new(TreeIssuer {
            id: ca.id,
            key_id,
            pointers: self.pointers.clone(),
            ca: IssuingCa::new(issuing, signer)?,
            chain_pem,
            constraints,
        });
        self.remember(key, issuer.clone());
        tracing::info!(ca = %ca.id, generation = ca.generation, "Tree CA opened for issuance.");
        Ok(issuer)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(CaId, u32), Arc<TreeIssuer>>> {
        self.opened.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `issuer` as its CA's generation, dropping the older ones; a request still
    /// holding an older row gets its generation opened but not kept.
    fn remember(&self, (id, generation): (CaId, u32), issuer: Arc<TreeIssuer>) {
        let mut map = self.opened.write().unwrap_or_else(|e| e.into_inner());
        if map.keys().any(|&(i, g)| i == id && g > generation) {
            return;
        }
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.retain(|&(i, _), _| i != id);
        map.insert((id, generation), issuer);
    }

    /// The certificates above `issuing`, nearest first and ending with the root's: the CA
    /// role's walk up the tree ([`certmesh_ca::tree::chain_of`]), in a read of its own.
    async fn path_above(
        &self,
        ca: &CaRecord,
        issuing: &Certificate,
    ) -> Result<Vec<Certificate>, IssuanceError> {
        let tenant = ca.tenant_id;
        let chain = self
            .store
            .in_tenant(tenant, async |tx| {
                certmesh_ca::tree::chain_of(tx, tenant, ca).await
            })
            .await
            .map_err(|e| match e {
                CaError::Store(e) => IssuanceError::Store(e),
                other => IssuanceError::CaNotReady(other.to_string()),
            })?;
        match chain.split_first() {
            Some((first, above)) if first == issuing => Ok(above.to_vec()),
            _ => Err(IssuanceError::CaNotReady(format!(
                "CA {} changed while it was being opened",
                ca.id
            ))),
        }
    }
}

impl TreeIssuer {
    /// The CA that signs.
    pub fn id(&self) -> CaId {
        self.id
    }

    /// RFC 5280 §4.2.1.10: every DNS name the leaf will carry lies within the name
    /// constraints of the issuing CA and of every CA above it; `Err` names the first that
    /// does not.
    pub fn check_names(&self, csr: &Csr) -> Result<(), String> {
        match check_leaf_names(&self.constraints, &leaf_dns_names(csr)) {
            Ok(()) => Ok(()),
            Err(CaCheckError::LeafNameNotPermitted { name }) => Err(name),
            // check_leaf_names refuses only names; any other answer refuses the request too.
            Err(other) => Err(other.to_string()),
        }
    }
}

/// The names a relying party checks against dNSName constraints: the DNS SANs, and the
/// commonName when it is a host name (OpenSSL checks such a CN too).
fn leaf_dns_names(csr: &Csr) -> Vec<String> {
    let mut names = csr.dns_names().to_vec();
    if let Some(cn) = csr.common_name().filter(|cn| is_host_name(cn))
        && !names.iter().any(|n| n.eq_ignore_ascii_case(cn))
    {
        names.push(cn.to_string());
    }
    names
}

/// A `.`-containing letter-digit-hyphen name, optionally under a `*.` wildcard, that is not
/// an IP address.
fn is_host_name(cn: &str) -> bool {
    let body = cn.strip_prefix("*.").unwrap_or(cn);
    body.contains('.')
        && body.parse::<std::net::IpAddr>().is_err()
        && body.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[async_trait]
impl Issuer for TreeIssuer {
    async fn issue(&self, request: SignRequest<'_>) -> Result<Issued, IssuanceError> {
        // RFC 5280 §6.1.3: a leaf outliving its issuer fails path validation.
        let not_after = request.not_after.min(self.ca.certificate().not_after());
        let csr = request.csr;
        let (template, crl_shard) =
            leaf_template(request, not_after, self.pointers.as_ref(), self.key_id);
        Ok(Issued {
            certificate: self.ca.sign_leaf(csr, &template)?,
            chain_pem: self.chain_pem.clone(),
            issuer_ca_id: self.id,
            crl_shard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_common_names_are_told_from_other_text() {
        assert!(is_host_name("a.example.com"));
        assert!(is_host_name("*.Example.com"));
        assert!(is_host_name("xn--bcher-kva.example"));
        assert!(!is_host_name("localhost"));
        assert!(!is_host_name("192.0.2.1"));
        assert!(!is_host_name("2001:db8::1"));
        assert!(!is_host_name("my service.example.com"));
        assert!(!is_host_name("a..example.com"));
        assert!(!is_host_name("*.com.*"));
    }
}
