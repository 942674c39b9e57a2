//! The `Issuer` trait every authority implements, the `Authority` a request is signed by,
//! and the built-in CA: a root and one issuing intermediate per tenant whose keys live in a key
//! backend. The operator's own CAs sign through the `tree` module.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IssuingCa, LeafTemplate, pem_bundle, self_signed_root},
    csr::{Csr, ExtendedKeyUsage},
    keys::{KeyBackend, KeyRef, KeySpec, Signer},
    serial::Serial,
};
use certmesh_kit::pki::LeafPointers;
use certmesh_store::{CaId, Store, StoreError, TenantId, ca_certificates, cas};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::RwLock;

use crate::{error::IssuanceError, tree::TreeIssuer};

/// What the issuance path asks an authority to sign. The profile has already allowed it.
#[derive(Debug)]
pub struct SignRequest<'a> {
    /// Tenant the certificate belongs to.
    pub tenant_id: TenantId,
    /// The verified CSR.
    pub csr: &'a Csr,
    /// Serial chosen by the issuance path.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// Requested end of validity; an authority may shorten it to its own notAfter.
    pub not_after: DateTime<Utc>,
    /// EKUs the profile granted.
    pub ekus: &'a [ExtendedKeyUsage],
}

/// What an authority returns.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf.
    pub certificate: Certificate,
    /// Intermediates from the issuer up to, not including, the root.
    pub chain_pem: String,
    /// The CA that signed.
    pub issuer_ca_id: CaId,
    /// The CRL shard the certificate names in its CRL distribution point (0 without
    /// pointers).
    pub crl_shard: u32,
}

/// An authority that signs certificates: the built-in CA, or a CA of the operator's tree;
/// external CAs later. Everything before signing (profiles, idempotency, storage, events)
/// is the issuance path's, so every authority gets it.
#[async_trait]
pub trait Issuer: Send + Sync + std::fmt::Debug {
    /// Sign `request`.
    async fn issue(&self, request: SignRequest<'_>) -> Result<Issued, IssuanceError>;
}

/// Which authority signs a request, chosen by its profile when it was checked.
#[derive(Debug, Clone)]
pub(crate) enum Authority {
    /// The tenant's built-in CA.
    Builtin,
    /// A CA of the operator's tree, at the generation that was current when the request was
    /// checked (its name constraints were checked against that generation's chain).
    Tree(Arc<TreeIssuer>),
}

impl Authority {
    /// The issuer to sign with.
    pub fn issuer<'a>(&'a self, builtin: &'a BuiltinCa) -> &'a dyn Issuer {
        match self {
            Self::Builtin => builtin,
            Self::Tree(ca) => ca.as_ref(),
        }
    }
}

/// Label of a built-in CA created on a tenant's first issuance ("certmesh Root CA", …).
pub const DEFAULT_LABEL: &str = "certmesh";
/// Name of the built-in root CA row.
pub const ROOT_NAME: &str = "builtin-root";
/// Name of the built-in issuing CA row.
pub const ISSUING_NAME: &str = "builtin-issuing";

/// An issuing CA opened and ready to sign.
#[derive(Debug)]
struct Loaded {
    id: CaId,
    /// The public id of the signing key (its primary certificate row), named in CRL URLs.
    key_id: uuid::Uuid,
    ca: IssuingCa,
    chain_pem: String,
}

/// The built-in CA: per tenant, the `builtin-issuing` intermediate under `builtin-root`.
#[derive(Debug)]
pub struct BuiltinCa {
    store: Store,
    keys: Arc<dyn KeyBackend>,
    pointers: Option<LeafPointers>,
    loaded: RwLock<HashMap<TenantId, Arc<Loaded>>>,
}

impl BuiltinCa {
    /// A built-in CA reading CA rows from `store` and keys from `keys`.
    pub fn new(store: Store, keys: Arc<dyn KeyBackend>) -> Self {
        Self {
            store,
            keys,
            pointers: None,
            loaded: RwLock::default(),
        }
    }

    /// Writes `pointers` (the OCSP URL and the shard's CRL URL) into every leaf signed through
    /// this CA and the operator's tree CAs.
    pub fn with_pointers(mut self, pointers: LeafPointers) -> Self {
        self.pointers = Some(pointers);
        self
    }

    /// The revocation pointers leaves get, if any.
    pub fn pointers(&self) -> Option<&LeafPointers> {
        self.pointers.as_ref()
    }

    /// The key backend the CA keys live in (the operator's tree CAs' keys too).
    pub fn keys(&self) -> Arc<dyn KeyBackend> {
        self.keys.clone()
    }

    /// Make sure the tenant's issuing CA is open, creating the tenant's built-in CA on its
    /// first issuance (as [`BuiltinCa::bootstrap`] at start-up does for `--tenant`), so every
    /// tenant can issue without a restart. Reads the store; call it outside any transaction.
    pub async fn ready(&self, tenant: TenantId, now: DateTime<Utc>) -> Result<(), IssuanceError> {
        if self.loaded.read().await.contains_key(&tenant) || self.load(tenant).await? {
            return Ok(());
        }
        self.bootstrap(tenant, DEFAULT_LABEL, now).await?;
        Ok(())
    }

    /// Open the tenant's issuing CA from its row; `false` if it has none yet.
    async fn load(&self, tenant: TenantId) -> Result<bool, IssuanceError> {
        let Some((issuing, key_id)) = self
            .store
            .in_tenant(tenant, async |tx| {
                let Some(issuing) = cas::by_name(tx, tenant, ISSUING_NAME).await? else {
                    return Ok(None);
                };
                let key_id = key_id(tx, &issuing).await?;
                Ok::<_, IssuanceError>(Some((issuing, key_id)))
            })
            .await?
        else {
            return Ok(false);
        };
        let signer = open_signer(self.keys.as_ref(), &issuing.key_ref).await?;
        let cert = Certificate::from_der(issuing.certificate_der)?;
        let chain_pem = pem_bundle(std::slice::from_ref(&cert));
        let ca = IssuingCa::new(cert, signer)?;
        let loaded = Arc::new(Loaded {
            id: issuing.id,
            key_id,
            ca,
            chain_pem,
        });
        self.loaded.write().await.insert(tenant, loaded);
        Ok(true)
    }

    /// Create the tenant's built-in root and issuing CA unless they exist, and return the root
    /// certificate. Safe to run from several replicas at once: the loser of the insert race
    /// destroys its own key and uses the winner's CA.
    pub async fn bootstrap(
        &self,
        tenant: TenantId,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<Certificate, IssuanceError> {
        let by_name = async |name: &str| {
            self.store
                .in_tenant(tenant, async |tx| cas::by_name(tx, tenant, name).await)
                .await
        };
        let root = match by_name(ROOT_NAME).await? {
            Some(row) => row,
            None => {
                let template = ca_template(
                    format!("{label} Root CA"),
                    now,
                    Duration::days(3650),
                    Some(1),
                );
                self.create_ca(tenant, ROOT_NAME, None, template, now)
                    .await?
            }
        };
        let root_cert = Certificate::from_der(root.certificate_der.clone())?;
        if by_name(ISSUING_NAME).await?.is_none() {
            let signer = open_signer(self.keys.as_ref(), &root.key_ref).await?;
            let parent = IssuingCa::new(root_cert.clone(), signer)?;
            let lifetime = Duration::days(1825).min(root.not_after - now);
            let template = ca_template(format!("{label} Issuing CA 1"), now, lifetime, Some(0));
            self.create_ca(
                tenant,
                ISSUING_NAME,
                Some((root.id, &parent)),
                template,
                now,
            )
            .await?;
        }
        if !self.load(tenant).await? {
            return Err(IssuanceError::CaNotReady(
                "the built-in issuing CA vanished after its creation".into(),
            ));
        }
        Ok(root_cert)
    }

    async fn create_ca(
        &self,
        tenant: TenantId,
        name: &str,
        parent: Option<(CaId, &IssuingCa)>,
        template: CaTemplate,
        now: DateTime<Utc>,
    ) -> Result<cas::CaRecord, IssuanceError> {
        let key_ref = self.keys.generate(KeySpec::EcdsaP256).await?;
        let signer = self.keys.signer(&key_ref).await?;
        let cert = match parent {
            None => self_signed_root(signer, &template)?,
            Some((_, parent)) => {
                parent.sign_intermediate(signer.public_key_spki_der(), &template)?
            }
        };
        let new = cas::NewCa {
            tenant_id: tenant,
            name: name.to_string(),
            parent_id: parent.map(|(id, _)| id),
            kind: match parent {
                None => cas::KIND_ROOT,
                Some(_) => cas::KIND_INTERMEDIATE,
            }
            .to_string(),
            path_len: template.path_len,
            key_spec: "ecdsa-p256".to_string(),
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
            key_offline: false,
            key_ref: key_ref.to_string(),
            certificate_der: cert.der().to_vec(),
            subject: cert.subject().to_string(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
        };
        let inserted = self
            .store
            .in_tenant(tenant, async |tx| cas::insert(tx, new, now).await)
            .await;
        match inserted {
            Ok(row) => {
                tracing::info!(ca = %row.id, %name, subject = %row.subject, "Built-in CA created.");
                Ok(row)
            }
            Err(StoreError::Conflict { .. }) => {
                // Another replica won; our key was never referenced by a row.
                let _ = self.keys.destroy(&key_ref).await;
                self.store
                    .in_tenant(tenant, async |tx| cas::by_name(tx, tenant, name).await)
                    .await?
                    .ok_or_else(|| {
                        IssuanceError::CaNotReady(format!("{name} vanished after a conflict"))
                    })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The signer of a CA row's key.
pub(crate) async fn open_signer(
    keys: &dyn KeyBackend,
    key_ref: &str,
) -> Result<Arc<dyn Signer>, IssuanceError> {
    let key_ref: KeyRef = key_ref.parse().map_err(|_| {
        IssuanceError::CaNotReady("the CA row holds an unreadable key reference".into())
    })?;
    keys.signer(&key_ref)
        .await
        .map_err(|e| IssuanceError::CaNotReady(format!("the CA key cannot be opened: {e}")))
}

fn ca_template(
    common_name: String,
    now: DateTime<Utc>,
    lifetime: Duration,
    path_len: Option<u8>,
) -> CaTemplate {
    CaTemplate {
        common_name,
        organization: Some("certmesh".into()),
        serial: Serial::random(),
        not_before: now - Duration::minutes(5),
        not_after: now + lifetime,
        path_len,
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
    }
}

#[async_trait]
impl Issuer for BuiltinCa {
    async fn issue(&self, request: SignRequest<'_>) -> Result<Issued, IssuanceError> {
        let request_csr = request.csr;
        let loaded = self
            .loaded
            .read()
            .await
            .get(&request.tenant_id)
            .cloned()
            .ok_or_else(|| IssuanceError::CaNotReady("the built-in CA is not open".into()))?;
        // RFC 5280 §6.1.3: a leaf outliving its issuer fails path validation.
        let not_after = request.not_after.min(loaded.ca.certificate().not_after());
        let (template, crl_shard) =
            leaf_template(request, not_after, self.pointers.as_ref(), loaded.key_id);
        let certificate = loaded.ca.sign_leaf(request_csr, &template)?;
        Ok(Issued {
            certificate,
            chain_pem: loaded.chain_pem.clone(),
            issuer_ca_id: loaded.id,
            crl_shard,
        })
    }
}

/// The public id of `ca`'s current key: the id of its generation's primary certificate row
/// (for a CA's first key, the CA id), as named in CRL URLs.
pub(crate) async fn key_id<C: sea_orm::ConnectionTrait>(
    c: &C,
    ca: &cas::CaRecord,
) -> Result<uuid::Uuid, IssuanceError> {
    let rows = ca_certificates::list(c, ca.tenant_id, ca.id).await?;
    Ok(rows
        .iter()
        .find(|r| r.relation == ca_certificates::RELATION_PRIMARY && r.generation == ca.generation)
        .map_or(ca.id.0, |r| r.id))
}

/// The leaf template of a request, with the revocation pointers when configured; and the CRL
/// shard they name.
pub(crate) fn leaf_template(
    request: SignRequest<'_>,
    not_after: DateTime<Utc>,
    pointers: Option<&LeafPointers>,
    key_id: uuid::Uuid,
) -> (LeafTemplate, u32) {
    let urls = pointers.map(|p| p.for_leaf(key_id, request.serial.as_bytes()));
    let template = LeafTemplate {
        serial: request.serial,
        not_before: request.not_before,
        not_after,
        ekus: request.ekus.to_vec(),
        ocsp_url: urls.as_ref().map(|u| u.ocsp.clone()),
        crl_url: urls.as_ref().map(|u| u.crl.clone()),
    };
    (template, urls.map_or(0, |u| u.shard))
}
