//! The agent-identity CA: one per installation, made by the first fleet replica that starts
//! (the others load it), whose key lives in the key backend. It signs each agent's short-lived
//! client certificate with the agent's SPIFFE id as the only SAN, and is the one trust root of
//! the agent listener's client authentication.

use std::sync::Arc;

use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IdentityTemplate, IssuingCa, self_signed_root},
    csr::Csr,
    keys::{KeyBackend, KeyRef, KeySpec},
    serial::Serial,
};
use certmesh_store::{Store, fleet};
use chrono::{DateTime, Duration, Utc};

use crate::{FleetError, model::AgentIdentity};

/// The row name of the identity CA.
const CA_NAME: &str = "agent-identity";
/// How long the identity CA is valid.
const CA_LIFETIME: Duration = Duration::days(3650);
/// Agent certificates start this long before they are made, for clock skew.
const BACKDATE: Duration = Duration::seconds(60);

/// The loaded identity CA.
#[derive(Debug)]
pub struct IdentityCa {
    ca: IssuingCa,
    trust_domain: String,
}

impl IdentityCa {
    /// Loads the identity CA, making it first if no replica has.
    pub async fn ensure(
        store: &Store,
        keys: &Arc<dyn KeyBackend>,
        trust_domain: &str,
        now: DateTime<Utc>,
    ) -> Result<IdentityCa, FleetError> {
        if let Some(found) = fleet::identity_ca(store.conn(), CA_NAME).await? {
            return Self::open(found, keys, trust_domain).await;
        }
        let key_ref = keys.generate(KeySpec::EcdsaP256).await?;
        let signer = keys.signer(&key_ref).await?;
        let cert = self_signed_root(
            signer,
            &CaTemplate {
                common_name: "certmesh agent identity CA".to_owned(),
                organization: Some(trust_domain.to_owned()),
                serial: Serial::random(),
                not_before: now - Duration::minutes(5),
                not_after: now + CA_LIFETIME,
                path_len: Some(0),
                permitted_dns: Vec::new(),
                excluded_dns: Vec::new(),
            },
        )?;
        let record = fleet::IdentityCaRecord {
            id: uuid::Uuid::new_v4(),
            cert_pem: cert.to_pem(),
            key_ref: key_ref.to_string(),
            created_at: now,
        };
        if !fleet::insert_identity_ca(store.conn(), CA_NAME, &record).await? {
            // Another replica made it first: use theirs, drop ours.
            let _ = keys.destroy(&key_ref).await;
            let theirs = fleet::identity_ca(store.conn(), CA_NAME)
                .await?
                .ok_or_else(|| FleetError::Corrupt("identity CA vanished".to_owned()))?;
            return Self::open(theirs, keys, trust_domain).await;
        }
        tracing::info!(serial = %cert.serial().to_hex(), "Agent identity CA created.");
        Self::open(record, keys, trust_domain).await
    }

    async fn open(
        record: fleet::IdentityCaRecord,
        keys: &Arc<dyn KeyBackend>,
        trust_domain: &str,
    ) -> Result<IdentityCa, FleetError> {
        let cert = Certificate::from_pem(&record.cert_pem)?;
        let key_ref: KeyRef = record
            .key_ref
            .parse()
            .map_err(|_| FleetError::Corrupt("identity CA key reference".to_owned()))?;
        let signer = keys.signer(&key_ref).await?;
        Ok(IdentityCa {
            ca: IssuingCa::new(cert, signer)?,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        self.ca.certificate()
    }

    /// The trust domain of agents' SPIFFE ids.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// A client certificate for `who`'s key in `csr`, valid for `lifetime` from `now`.
    pub fn sign(
        &self,
        who: AgentIdentity,
        csr: &Csr,
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<Certificate, FleetError> {
        Ok(self.ca.sign_client_identity(
            csr,
            &IdentityTemplate {
                serial: Serial::random(),
                not_before: now - BACKDATE,
                not_after: now + lifetime,
                common_name: who.agent.to_string(),
                uri: who.spiffe_id(&self.trust_domain),
            },
        )?)
    }

    /// The agent a presented client certificate (leaf DER) names, if it is one this CA
    /// issued for this trust domain. The TLS handshake already checked the chain and the
    /// private key; this reads the identity out of it.
    pub fn identify(&self, leaf_der: &[u8]) -> Result<(AgentIdentity, String), FleetError> {
        let leaf = Certificate::from_der(leaf_der.to_vec())
            .map_err(|_| FleetError::IdentityInvalid("unparsable certificate".to_owned()))?;
        if leaf.authority_key_id() != self.ca.certificate().subject_key_id() {
            return Err(FleetError::IdentityInvalid(
                "not issued by the agent identity CA".to_owned(),
            ));
        }
        let mut uris = leaf.uris();
        let who = match (uris.next(), uris.next()) {
            (Some(uri), None) => AgentIdentity::parse(uri, &self.trust_domain),
            _ => None,
        }
        .ok_or_else(|| FleetError::IdentityInvalid("no agent SPIFFE id".to_owned()))?;
        Ok((who, leaf.serial().to_hex()))
    }
}
