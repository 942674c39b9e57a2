//! The inventory: sightings in (network scans and agents' filesystem reports), listing with
//! filters, dismiss, and claim (a fleet binding so certmesh issues and renews a replacement).

use certmesh_crypto::cert::Certificate;
use certmesh_kit::auth::AuthContext;
use certmesh_proto::discovery as pb;
use certmesh_proto::fleet::{self as fleet_pb, fleet_service_client::FleetServiceClient};
use certmesh_store::discovery::{self, FoundFilter, FoundRecord, Sighting, status};
use certmesh_store::{Store, StoreError, TenantId, certificates, outbox};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::model::file_location;
use crate::targets::parse_id;
use crate::{Discovery, DiscoveryError};

/// Most finds one listing returns.
pub const LIST_MAX: u32 = 1000;
/// Most files one agent report may name; the agent splits larger scans.
pub const REPORT_MAX_FILES: usize = 1000;
/// Most certificates one reported file may hold.
const FILE_MAX_CERTIFICATES: usize = 64;

/// What `cert` adds to the inventory at `location`: `managed` when certmesh issued exactly
/// this certificate (same serial and fingerprint in the tenant's certificates).
pub(crate) async fn sighting<C: sea_orm::ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    cert: &Certificate,
    location: String,
    now: DateTime<Utc>,
) -> Result<Sighting, DiscoveryError> {
    let s = cert.summary();
    let ours = certificates::get(c, tenant, &s.serial)
        .await?
        .is_some_and(|rec| rec.fingerprint_sha256 == s.fingerprint_sha256);
    Ok(Sighting {
        tenant_id: tenant,
        fingerprint_sha256: s.fingerprint_sha256,
        location,
        source: String::new(),
        agent_id: None,
        target_id: None,
        serial: s.serial,
        subject: s.subject,
        issuer: s.issuer,
        sans: s.sans,
        not_before: s.not_before,
        not_after: s.not_after,
        key_type: s.key_type.to_string(),
        key_bits: s.key_bits,
        signature_algorithm: s.signature_algorithm,
        tls_version: String::new(),
        self_signed: s.self_signed,
        is_ca: s.is_ca,
        weaknesses: s.weaknesses.iter().map(ToString::to_string).collect(),
        status: if ours {
            status::MANAGED
        } else {
            status::UNMANAGED
        }
        .to_owned(),
        certificate_der: cert.der().to_vec(),
        seen_at: now,
    })
}

/// Records `s`; a new find also becomes a `discovery.certificate.found` event. Returns whether
/// it was new.
pub(crate) async fn note<C: sea_orm::ConnectionTrait>(
    c: &C,
    s: &Sighting,
) -> Result<bool, DiscoveryError> {
    let new = discovery::record_sighting(c, s).await?;
    if new {
        outbox::append(
            c,
            s.tenant_id,
            "discovery.certificate.found",
            &format!("discovered:{}", s.fingerprint_sha256),
            json!({"fingerprint_sha256": s.fingerprint_sha256, "location": s.location,
                   "source": s.source, "subject": s.subject, "issuer": s.issuer,
                   "serial": s.serial, "not_after": s.not_after.to_rfc3339(),
                   "status": s.status, "weaknesses": s.weaknesses, "self_signed": s.self_signed}),
            s.seen_at,
        )
        .await?;
    }
    Ok(new)
}

/// Records what agent `agent` of `tenant` found on its disk: each certificate of each file,
/// at `file://<agent><path>`. Files with a relative path or too many certificates are skipped;
/// returns how many certificates were recorded. Called by the fleet role for the reports that
/// arrive over agent streams.
pub async fn record_filesystem(
    store: &Store,
    tenant: TenantId,
    agent: uuid::Uuid,
    files: &[fleet_pb::DiscoveredFile],
    now: DateTime<Utc>,
) -> Result<u32, DiscoveryError> {
    let tx = store.begin_tenant(tenant).await?;
    certmesh_store::write_lock(&tx).await?;
    let mut recorded = 0u32;
    for file in files.iter().take(REPORT_MAX_FILES) {
        let path = file.path.trim();
        if !path.starts_with('/') || path.len() > 4096 || path.chars().any(char::is_control) {
            continue;
        }
        for der in file.certificates.iter().take(FILE_MAX_CERTIFICATES) {
            let Ok(cert) = Certificate::from_der(der.clone()) else {
                continue;
            };
            let mut s = sighting(&tx, tenant, &cert, file_location(agent, path), now).await?;
            s.source = "filesystem".to_owned();
            s.agent_id = Some(agent);
            note(&tx, &s).await?;
            recorded += 1;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(recorded)
}

impl Discovery {
    pub(crate) async fn note_sighting(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        s: &Sighting,
    ) -> Result<bool, DiscoveryError> {
        note(tx, s).await
    }

    /// The tenant's finds matching the request's filters.
    pub async fn list_found(
        &self,
        auth: &AuthContext,
        r: &pb::ListDiscoveredRequest,
    ) -> Result<Vec<FoundRecord>, DiscoveryError> {
        let status = match r.status.trim() {
            "" => None,
            s if status::ALL.contains(&s) => Some(s.to_owned()),
            other => {
                return Err(DiscoveryError::InvalidField {
                    field: "status",
                    problem: format!("{other:?} is not one of {:?}", status::ALL),
                });
            }
        };
        let source = match r.source.trim() {
            "" => None,
            s @ ("network" | "filesystem") => Some(s.to_owned()),
            other => {
                return Err(DiscoveryError::InvalidField {
                    field: "source",
                    problem: format!("{other:?} is not network or filesystem"),
                });
            }
        };
        let filter = FoundFilter {
            expiring_before: (r.expiring_within_days > 0)
                .then(|| self.now() + Duration::days(i64::from(r.expiring_within_days))),
            status,
            weak: r.weak.then_some(true),
            self_signed: r.self_signed.then_some(true),
            issuer: Some(r.issuer.trim().to_owned()).filter(|i| !i.is_empty()),
            source,
            fingerprint: None,
        };
        let limit = if r.limit == 0 {
            100
        } else {
            r.limit.min(LIST_MAX)
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(discovery::list_found(&tx, auth.tenant_id, &filter, u64::from(limit)).await?)
    }

    pub async fn get_found(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<FoundRecord, DiscoveryError> {
        let id = parse_id("id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        discovery::get_found(&tx, auth.tenant_id, id)
            .await?
            .ok_or_else(|| DiscoveryError::FoundNotFound(raw.trim().to_owned()))
    }

    /// Dismisses a find: no alerts, hidden from listings unless asked for.
    pub async fn dismiss(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<FoundRecord, DiscoveryError> {
        let found = self.get_found(auth, raw).await?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        discovery::set_status(&tx, auth.tenant_id, found.id, status::DISMISSED).await?;
        self.commit_with(
            auth,
            tx,
            (
                "discovery.certificate.dismissed",
                format!("discovered:{}", found.id),
                json!({"fingerprint_sha256": found.sighting.fingerprint_sha256,
                       "location": found.sighting.location}),
            ),
        )
        .await?;
        self.get_found(auth, raw).await
    }

    /// Claims a find: asks the fleet role (as the caller) for a binding that issues a
    /// certificate for the find's names and installs it where the find was, then records the
    /// binding on the find.
    pub async fn claim(
        &self,
        auth: &AuthContext,
        authorization: Option<&str>,
        r: &pb::ClaimDiscoveredRequest,
    ) -> Result<(FoundRecord, String), DiscoveryError> {
        let found = self.get_found(auth, &r.id).await?;
        let binding = claim_binding(&found, r)?;
        let Some(fleet) = self.fleet() else {
            return Err(DiscoveryError::ClaimInvalid(
                "this server runs no fleet role and has no --fleet-endpoint".to_owned(),
            ));
        };
        let mut request = tonic::Request::new(binding);
        if let Some(value) = authorization.and_then(|v| v.parse().ok()) {
            request.metadata_mut().insert("authorization", value);
        }
        if let Ok(id) = auth.request_id.parse() {
            request.metadata_mut().insert("x-request-id", id);
        }
        let created = FleetServiceClient::new(fleet)
            .create_binding(request)
            .await
            .map_err(DiscoveryError::Fleet)?
            .into_inner();
        let binding_id = parse_id("binding_id", &created.id)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        discovery::set_binding(&tx, auth.tenant_id, found.id, binding_id).await?;
        self.commit_with(
            auth,
            tx,
            (
                "discovery.certificate.claimed",
                format!("discovered:{}", found.id),
                json!({"binding_id": created.id, "fingerprint_sha256": found.sighting.fingerprint_sha256,
                       "location": found.sighting.location}),
            ),
        )
        .await?;
        Ok((self.get_found(auth, &r.id).await?, created.id))
    }
}

/// The fleet binding a claim asks for.
fn claim_binding(
    found: &FoundRecord,
    r: &pb::ClaimDiscoveredRequest,
) -> Result<fleet_pb::CreateBindingRequest, DiscoveryError> {
    let s = &found.sighting;
    if s.status == status::DISMISSED {
        return Err(DiscoveryError::ClaimInvalid(
            "the find is dismissed".to_owned(),
        ));
    }
    if let Some(binding) = found.binding_id {
        return Err(DiscoveryError::ClaimInvalid(format!(
            "the find is already claimed by binding {binding}"
        )));
    }
    let invalid = |m: &str| DiscoveryError::ClaimInvalid(m.to_owned());
    let (agent_id, group) = match (r.agent_id.trim(), r.group.trim()) {
        ("", "") => match s.agent_id {
            Some(agent) => (agent.to_string(), String::new()),
            None => {
                return Err(invalid(
                    "a network find needs agent_id or group to deploy on",
                ));
            }
        },
        (agent, "") => (agent.to_owned(), String::new()),
        ("", group) => (String::new(), group.to_owned()),
        _ => return Err(invalid("name agent_id or group, not both")),
    };
    let (dns, ips): (Vec<String>, Vec<String>) = s
        .sans
        .iter()
        .filter(|n| !n.contains(':') || n.parse::<std::net::IpAddr>().is_ok())
        .cloned()
        .partition(|n| n.parse::<std::net::IpAddr>().is_err());
    if dns.is_empty() && ips.is_empty() {
        return Err(invalid(
            "the certificate names no DNS name or IP address to reissue for",
        ));
    }
    let own_path = s
        .location
        .strip_prefix("file://")
        .and_then(|rest| rest.get(36..))
        .filter(|_| s.source == "filesystem")
        .unwrap_or_default();
    let cert_path = Some(r.cert_path.trim())
        .filter(|p| !p.is_empty())
        .unwrap_or(own_path)
        .to_owned();
    if cert_path.is_empty() {
        return Err(invalid(
            "a network find needs cert_path (where the agent installs it)",
        ));
    }
    let key_path = match r.key_path.trim() {
        "" => key_beside(&cert_path)
            .ok_or_else(|| invalid("key_path is required for this cert_path"))?,
        p => p.to_owned(),
    };
    let verify_endpoint = match r.verify_endpoint.trim() {
        "" if s.source == "network" => s
            .location
            .trim_start_matches("tls://")
            .split('#')
            .next()
            .unwrap_or_default()
            .to_owned(),
        other => other.to_owned(),
    };
    let first = dns.first().or(ips.first()).cloned().unwrap_or_default();
    let short: String = found.id.simple().to_string().chars().take(8).collect();
    let name = match r.name.trim() {
        "" => format!("claimed-{}-{short}", first.replace(['*', ':'], "x")),
        n => n.to_owned(),
    };
    Ok(fleet_pb::CreateBindingRequest {
        name,
        agent_id,
        group,
        certificate: Some(fleet_pb::CertificateSpec {
            common_name: String::new(),
            dns_names: dns,
            ip_addresses: ips,
            profile: r.profile.trim().to_owned(),
            key_type: r.key_type.trim().to_owned(),
            validity: String::new(),
        }),
        target: Some(fleet_pb::DeployTarget {
            cert_path,
            key_path,
            chain_path: r.chain_path.trim().to_owned(),
            owner: String::new(),
            mode: String::new(),
            validate_command: r.validate_command.trim().to_owned(),
            reload_command: r.reload_command.trim().to_owned(),
            verify_endpoint,
            verify_sni: String::new(),
        }),
    })
}

/// `/etc/x/site.crt` → `/etc/x/site.key` (also `.pem`, `.cer`, `.cert`).
fn key_beside(cert_path: &str) -> Option<String> {
    [".crt", ".pem", ".cer", ".cert"]
        .iter()
        .find_map(|ext| cert_path.strip_suffix(ext))
        .map(|stem| format!("{stem}.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(
        source: &str,
        location: &str,
        sans: &[&str],
        agent: Option<uuid::Uuid>,
    ) -> FoundRecord {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        FoundRecord {
            id: uuid::Uuid::from_u128(0xabcdef12_0000_0000_0000_000000000000),
            sighting: Sighting {
                tenant_id: TenantId(uuid::Uuid::nil()),
                fingerprint_sha256: "00".repeat(32),
                location: location.to_owned(),
                source: source.to_owned(),
                agent_id: agent,
                target_id: None,
                serial: "01".into(),
                subject: "CN=web".into(),
                issuer: "CN=old ca".into(),
                sans: sans.iter().map(|s| s.to_string()).collect(),
                not_before: now,
                not_after: now,
                key_type: "rsa".into(),
                key_bits: 2048,
                signature_algorithm: "sha256WithRSAEncryption".into(),
                tls_version: String::new(),
                self_signed: false,
                is_ca: false,
                weaknesses: Vec::new(),
                status: status::UNMANAGED.into(),
                certificate_der: Vec::new(),
                seen_at: now,
            },
            binding_id: None,
            first_seen_at: now,
            last_seen_at: now,
        }
    }

    #[test]
    fn a_filesystem_find_is_claimed_in_place_on_its_agent() {
        let agent = uuid::Uuid::new_v4();
        let f = found(
            "filesystem",
            &file_location(agent, "/etc/nginx/certs/web.crt"),
            &["web.internal", "10.0.0.5", "email:ops@example.com"],
            Some(agent),
        );
        let b = claim_binding(&f, &pb::ClaimDiscoveredRequest::default()).expect("claims");
        assert_eq!(b.agent_id, agent.to_string());
        let target = b.target.expect("target");
        assert_eq!(target.cert_path, "/etc/nginx/certs/web.crt");
        assert_eq!(target.key_path, "/etc/nginx/certs/web.key");
        let spec = b.certificate.expect("spec");
        assert_eq!(spec.dns_names, vec!["web.internal"]);
        assert_eq!(spec.ip_addresses, vec!["10.0.0.5"]);
        assert_eq!(b.name, "claimed-web.internal-abcdef12");
    }

    #[test]
    fn a_network_find_needs_an_agent_and_a_path_and_verifies_its_endpoint() {
        let f = found(
            "network",
            "tls://10.0.0.5:443#web.internal",
            &["web.internal"],
            None,
        );
        let none = claim_binding(&f, &pb::ClaimDiscoveredRequest::default());
        assert!(matches!(none, Err(DiscoveryError::ClaimInvalid(_))));
        let no_path = pb::ClaimDiscoveredRequest {
            group: "web".into(),
            ..Default::default()
        };
        assert!(matches!(
            claim_binding(&f, &no_path),
            Err(DiscoveryError::ClaimInvalid(_))
        ));
        let ok = pb::ClaimDiscoveredRequest {
            group: "web".into(),
            cert_path: "/etc/ssl/web.pem".into(),
            ..Default::default()
        };
        let b = claim_binding(&f, &ok).expect("claims");
        let target = b.target.expect("target");
        assert_eq!(target.verify_endpoint, "10.0.0.5:443");
        assert_eq!(target.key_path, "/etc/ssl/web.key");
        let both = pb::ClaimDiscoveredRequest {
            group: "web".into(),
            agent_id: uuid::Uuid::nil().to_string(),
            ..ok
        };
        assert!(matches!(
            claim_binding(&f, &both),
            Err(DiscoveryError::ClaimInvalid(_))
        ));
    }

    #[test]
    fn dismissed_and_nameless_finds_are_not_claimed() {
        let agent = uuid::Uuid::new_v4();
        let mut f = found(
            "filesystem",
            &file_location(agent, "/a.crt"),
            &["a.internal"],
            Some(agent),
        );
        f.sighting.status = status::DISMISSED.into();
        assert!(matches!(
            claim_binding(&f, &pb::ClaimDiscoveredRequest::default()),
            Err(DiscoveryError::ClaimInvalid(_))
        ));
        let mut claimed = found(
            "filesystem",
            &file_location(agent, "/a.crt"),
            &["a.internal"],
            Some(agent),
        );
        claimed.binding_id = Some(uuid::Uuid::new_v4());
        assert!(matches!(
            claim_binding(&claimed, &pb::ClaimDiscoveredRequest::default()),
            Err(DiscoveryError::ClaimInvalid(_))
        ));
        let nameless = found(
            "filesystem",
            &file_location(agent, "/a.crt"),
            &["email:x@y"],
            Some(agent),
        );
        assert!(matches!(
            claim_binding(&nameless, &pb::ClaimDiscoveredRequest::default()),
            Err(DiscoveryError::ClaimInvalid(_))
        ));
    }
}
