//! The CAs of a fixture: a root and intermediates made with keys in the key backend and
//! recorded as the CA role records them (generation 1, its primary `ca_certificates` row named
//! by the CA id), and a stranger root recorded nowhere.

use std::sync::Arc;

use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IssuingCa, self_signed_root},
    keys::{KeyBackend, KeyRef, KeySpec, Signer},
    serial::Serial,
};
use certmesh_store::{
    CaId, Store, TenantId,
    cas::{self, CaRecord, NewCa},
};
use chrono::Duration;

use super::start;

/// A CA as recorded, with its key ready to sign.
pub struct Ca {
    pub record: CaRecord,
    pub issuer: Arc<IssuingCa>,
    /// The public id of the key: the id of its generation's primary `ca_certificates` row.
    pub key_id: uuid::Uuid,
    pub generation: u32,
}

impl Ca {
    pub fn id(&self) -> CaId {
        self.record.id
    }

    pub fn certificate(&self) -> &Certificate {
        self.issuer.certificate()
    }
}

pub(super) fn ca_template(common_name: &str, path_len: Option<u8>) -> CaTemplate {
    CaTemplate {
        common_name: common_name.to_owned(),
        organization: Some("Corp".to_owned()),
        serial: Serial::random(),
        not_before: start() - Duration::days(1),
        not_after: start() + Duration::days(3650),
        path_len,
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
    }
}

pub(super) async fn new_key(keys: &Arc<dyn KeyBackend>) -> (KeyRef, Arc<dyn Signer>) {
    let key_ref = keys.generate(KeySpec::EcdsaP256).await.expect("key");
    let signer = keys.signer(&key_ref).await.expect("signer");
    (key_ref, signer)
}

async fn record_ca(
    store: &Store,
    tenant: TenantId,
    name: &str,
    parent: Option<&Ca>,
    key_ref: &KeyRef,
    cert: &Certificate,
) -> CaRecord {
    let new = NewCa {
        tenant_id: tenant,
        name: name.to_owned(),
        parent_id: parent.map(Ca::id),
        kind: if parent.is_some() {
            cas::KIND_INTERMEDIATE
        } else {
            cas::KIND_ROOT
        }
        .to_owned(),
        path_len: cert.basic_constraints().and_then(|b| b.path_len),
        key_spec: KeySpec::EcdsaP256.as_str().to_owned(),
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
        key_offline: false,
        key_ref: key_ref.to_string(),
        certificate_der: cert.der().to_vec(),
        subject: cert.subject().to_owned(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    };
    store
        .in_tenant(tenant, async |tx| cas::insert(tx, new, start()).await)
        .await
        .expect("CA recorded")
}

pub(super) async fn new_root(
    store: &Store,
    keys: &Arc<dyn KeyBackend>,
    tenant: TenantId,
    name: &str,
    common_name: &str,
) -> Ca {
    let (key_ref, signer) = new_key(keys).await;
    let cert = self_signed_root(signer.clone(), &ca_template(common_name, Some(1))).expect("root");
    let record = record_ca(store, tenant, name, None, &key_ref, &cert).await;
    Ca {
        key_id: record.id.0,
        generation: 1,
        record,
        issuer: Arc::new(IssuingCa::new(cert, signer).expect("issuing CA")),
    }
}

pub(super) async fn new_intermediate(
    store: &Store,
    keys: &Arc<dyn KeyBackend>,
    tenant: TenantId,
    parent: &Ca,
    name: &str,
    common_name: &str,
) -> Ca {
    let template = ca_template(common_name, Some(0));
    intermediate_from(store, keys, tenant, parent, name, &template).await
}

pub(super) async fn intermediate_from(
    store: &Store,
    keys: &Arc<dyn KeyBackend>,
    tenant: TenantId,
    parent: &Ca,
    name: &str,
    template: &CaTemplate,
) -> Ca {
    let (key_ref, signer) = new_key(keys).await;
    let cert = parent
        .issuer
        .sign_intermediate(signer.public_key_spki_der(), template)
        .expect("intermediate");
    let record = record_ca(store, tenant, name, Some(parent), &key_ref, &cert).await;
    Ca {
        key_id: record.id.0,
        generation: 1,
        record,
        issuer: Arc::new(IssuingCa::new(cert, signer).expect("issuing CA")),
    }
}

/// A root CA made with a fresh key and never recorded anywhere.
pub async fn unrecorded_root(keys: &Arc<dyn KeyBackend>) -> Ca {
    let (_key_ref, signer) = new_key(keys).await;
    let cert =
        self_signed_root(signer.clone(), &ca_template("Stranger Root CA", None)).expect("root");
    Ca {
        key_id: uuid::Uuid::new_v4(),
        generation: 1,
        record: CaRecord {
            id: CaId(uuid::Uuid::new_v4()),
            tenant_id: TenantId(uuid::Uuid::nil()),
            name: "stranger".into(),
            parent_id: None,
            kind: cas::KIND_ROOT.into(),
            path_len: None,
            key_spec: KeySpec::EcdsaP256.as_str().into(),
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
            generation: 1,
            key_offline: false,
            key_ref: String::new(),
            certificate_der: cert.der().to_vec(),
            subject: cert.subject().to_owned(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            status: cas::STATUS_ACTIVE.into(),
            created_at: start(),
        },
        issuer: Arc::new(IssuingCa::new(cert, signer).expect("issuing CA")),
    }
}
