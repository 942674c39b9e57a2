//! Wire ↔ domain conversions and the validations the IAM role applies.

use certmesh_crypto::ceremony::ApproverKey;
use certmesh_kit::rbac::Role;
use certmesh_proto::iam as pb;
use certmesh_store::{
    audit::AuditRecord, principal_keys::PrincipalKey, principals::PrincipalRecord,
    tokens::TokenInfo,
};
use chrono::{DateTime, Utc};

use crate::error::IamError;

pub fn timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Principal names: 1-128 characters of `a-z 0-9 - _ . @`.
pub fn principal_name(name: &str) -> Result<String, IamError> {
    let name = name.trim();
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.@".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(IamError::InvalidField {
            field: "name",
            problem: "must be 1-128 characters of a-z, 0-9, '-', '_', '.', '@'".into(),
        })
    }
}

/// `user` (default) or `service`.
pub fn kind(kind: &str) -> Result<String, IamError> {
    match kind.trim() {
        "" | "user" => Ok("user".into()),
        "service" => Ok("service".into()),
        other => Err(IamError::InvalidField {
            field: "kind",
            problem: format!("{other:?} is not user or service"),
        }),
    }
}

/// At least one role, each known; deduplicated, in matrix order.
pub fn roles(names: &[String]) -> Result<Vec<String>, IamError> {
    if names.is_empty() {
        return Err(IamError::InvalidField {
            field: "roles",
            problem: "name at least one role".into(),
        });
    }
    let mut roles = names
        .iter()
        .map(|n| {
            n.trim()
                .parse::<Role>()
                .map_err(|e| IamError::InvalidField {
                    field: "roles",
                    problem: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles.iter().map(|r| r.as_str().to_string()).collect())
}

pub fn principal(p: &PrincipalRecord) -> pb::Principal {
    pb::Principal {
        id: p.id.to_string(),
        name: p.name.clone(),
        kind: p.kind.clone(),
        roles: p.roles.clone(),
        created_at: Some(timestamp(p.created_at)),
    }
}

/// A custodian's public key: a PEM `PUBLIC KEY` of an Ed25519 or ECDSA P-256 key.
pub fn public_key(pem: &str) -> Result<ApproverKey, IamError> {
    ApproverKey::from_pem(pem).map_err(|e| IamError::PublicKeyInvalid {
        detail: e.to_string(),
    })
}

/// `principal` is the owner's name; the store knows the owner by id only.
pub fn principal_key(k: &PrincipalKey, principal: &str) -> Result<pb::PrincipalKey, IamError> {
    let key = ApproverKey::from_spki_der(&k.public_key_der).map_err(|e| {
        IamError::StoredKeyUnreadable {
            id: k.id,
            detail: e.to_string(),
        }
    })?;
    Ok(pb::PrincipalKey {
        id: k.id.to_string(),
        principal: principal.to_string(),
        algorithm: k.algorithm.clone(),
        fingerprint_sha256: k.fingerprint.clone(),
        public_key_pem: key.to_pem(),
        created_at: Some(timestamp(k.created_at)),
        revoked_at: k.revoked_at.map(timestamp),
    })
}

pub fn token(t: &TokenInfo) -> pb::Token {
    pb::Token {
        id: t.id.to_string(),
        name: t.name.clone(),
        principal_id: t.principal_id.map(|p| p.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(t.created_at)),
        expires_at: t.expires_at.map(timestamp),
        revoked_at: t.revoked_at.map(timestamp),
    }
}

pub fn audit_event(r: &AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        seq: r.seq,
        created_at: Some(timestamp(r.created_at)),
        actor: r.actor.clone(),
        action: r.action.clone(),
        resource: r.resource.clone(),
        request_id: r.request_id.clone(),
        outcome: r.outcome.as_str().to_string(),
        details_json: r.details.to_string(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

/// An RFC 3339 instant, or `None` for an empty field.
pub fn instant(field: &'static str, text: &str) -> Result<Option<DateTime<Utc>>, IamError> {
    match text.trim() {
        "" => Ok(None),
        t => DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| IamError::InvalidField {
                field,
                problem: format!("{t:?} is not an RFC 3339 time"),
            }),
    }
}
