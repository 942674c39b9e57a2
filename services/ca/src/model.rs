//! Domain → wire conversions.

use certmesh_crypto::{cert::pem_from_der, digest::sha256_hex};
use certmesh_proto::ca as pb;
use certmesh_store::cas::CaRecord;
use chrono::{DateTime, Utc};

use crate::ceremony::CeremonyView;

pub fn timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn ca(r: &CaRecord) -> pb::Ca {
    pb::Ca {
        id: r.id.to_string(),
        name: r.name.clone(),
        kind: r.kind.clone(),
        parent_id: r.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        status: r.status.clone(),
        subject: r.subject.clone(),
        not_before: Some(timestamp(r.not_before)),
        not_after: Some(timestamp(r.not_after)),
        path_len: r.path_len.map(u32::from),
        key_spec: r.key_spec.clone(),
        permitted_dns: r.permitted_dns.clone(),
        excluded_dns: r.excluded_dns.clone(),
        generation: r.generation,
        key_offline: r.key_offline,
        certificate_pem: pem_from_der(&r.certificate_der),
        fingerprint_sha256: sha256_hex(&r.certificate_der),
        created_at: Some(timestamp(r.created_at)),
    }
}

pub fn ceremony(v: &CeremonyView) -> pb::Ceremony {
    let r = &v.record;
    pb::Ceremony {
        id: r.id.to_string(),
        purpose: r.purpose.clone(),
        params: Some(v.params.to_proto()),
        digest: r.digest.clone(),
        signing_message: String::from_utf8_lossy(&certmesh_crypto::ceremony::signing_message(
            &r.digest,
        ))
        .into_owned(),
        threshold: r.threshold,
        custodians: v.custodians.clone(),
        approved_by: v.approved_by.clone(),
        status: r.status.as_str().to_owned(),
        created_by: v.created_by.clone(),
        created_at: Some(timestamp(r.created_at)),
        expires_at: Some(timestamp(r.expires_at)),
        completed_at: r.completed_at.map(timestamp),
        result_ca_id: r.result_ca_id.map(|c| c.to_string()).unwrap_or_default(),
    }
}
