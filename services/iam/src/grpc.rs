//! The IAM role's gRPC handlers: authorize, validate, act in one transaction with its audit
//! entry, answer.

use certmesh_kit::{audit::entry, auth::AuthContext, rbac::Permission};
use certmesh_proto::iam::{
    self as pb, audit_service_server::AuditService, principal_service_server::PrincipalService,
    token_service_server::TokenService,
};
use certmesh_store::{
    StoreError,
    audit::{self, AuditFilter, Outcome, Verification},
    principal_keys,
    principals::{self, PrincipalRecord},
    tokens,
};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::{Iam, error::IamError, model};

/// Audit entries served per page when the caller asks for none; the most is 1000.
const DEFAULT_AUDIT_PAGE: u32 = 100;

impl Iam {
    /// `Ok` if the caller holds `permission`; otherwise the refusal is audited and returned.
    async fn require(
        &self,
        auth: &AuthContext,
        permission: Permission,
        action: &'static str,
    ) -> Result<(), Status> {
        certmesh_kit::audit::require(
            &self.deps.store,
            auth,
            permission,
            action,
            self.deps.clock.now(),
        )
        .await
    }

    /// The principal a request names: the caller when `name` is empty or the caller's own
    /// (always allowed), anyone else with `permission`.
    async fn subject(
        &self,
        auth: &AuthContext,
        name: &str,
        permission: Permission,
        action: &'static str,
    ) -> Result<PrincipalRecord, Status> {
        let store = &self.deps.store;
        let tenant = auth.tenant_id;
        let name = name.trim();
        if name.is_empty() || name == auth.principal {
            return store
                .in_tenant(tenant, async |tx| {
                    principals::get(tx, tenant, auth.principal_id).await
                })
                .await
                .map_err(IamError::from)?
                .ok_or_else(|| {
                    IamError::PrincipalNotFound {
                        name: auth.principal.clone(),
                    }
                    .into()
                });
        }
        self.require(auth, permission, action).await?;
        Ok(store
            .in_tenant(tenant, async |tx| {
                principals::by_name(tx, tenant, name).await
            })
            .await
            .map_err(IamError::from)?
            .ok_or_else(|| IamError::PrincipalNotFound {
                name: name.to_string(),
            })?)
    }
}

fn store_err(e: StoreError) -> Status {
    IamError::from(e).into()
}

/// Append the change's audit entry and commit: the change and its record land together.
async fn commit_audited(
    tx: sea_orm::DatabaseTransaction,
    tenant: certmesh_store::TenantId,
    e: certmesh_store::audit::AuditEntry,
) -> Result<(), Status> {
    audit::append(&tx, tenant, &[e]).await.map_err(store_err)?;
    tx.commit().await.map_err(|e| store_err(e.into()))
}

#[tonic::async_trait]
impl PrincipalService for Iam {
    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::PrincipalsWrite, "principals.create")
            .await?;
        let req = request.into_inner();
        let name = model::principal_name(&req.name)?;
        let kind = model::kind(&req.kind)?;
        let roles = model::roles(&req.roles)?;
        let now = self.deps.clock.now();
        let tx = self
            .deps
            .store
            .begin_tenant(auth.tenant_id)
            .await
            .map_err(store_err)?;
        certmesh_store::write_lock(&tx).await.map_err(store_err)?;
        let created = match principals::create(&tx, auth.tenant_id, &name, &kind, &roles, now).await
        {
            Err(StoreError::Conflict { .. }) => {
                return Err(IamError::PrincipalExists { name }.into());
            }
            other => other.map_err(store_err)?,
        };
        let details = json!({"name": name, "kind": kind, "roles": roles});
        let e = entry(
            &auth,
            "principals.create",
            format!("principal:{name}"),
            Outcome::Allowed,
            details,
            now,
        );
        commit_audited(tx, auth.tenant_id, e).await?;
        tracing::info!(principal = %name, "Principal created.");
        Ok(Response::new(model::principal(&created)))
    }

    async fn get_principal(
        &self,
        request: Request<pb::GetPrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::PrincipalsRead, "principals.get")
            .await?;
        let name = request.get_ref().name.trim().to_string();
        let tenant = auth.tenant_id;
        let found = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                principals::by_name(tx, tenant, &name).await
            })
            .await
            .map_err(store_err)?;
        let found = found.ok_or(IamError::PrincipalNotFound { name })?;
        Ok(Response::new(model::principal(&found)))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::PrincipalsRead, "principals.list")
            .await?;
        let tenant = auth.tenant_id;
        let all = self
            .deps
            .store
            .in_tenant(tenant, async |tx| principals::list(tx, tenant).await)
            .await
            .map_err(store_err)?;
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: all.iter().map(model::principal).collect(),
        }))
    }

    async fn add_principal_key(
        &self,
        request: Request<pb::AddPrincipalKeyRequest>,
    ) -> Result<Response<pb::PrincipalKey>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::PrincipalsWrite, "principals.add_key")
            .await?;
        let req = request.into_inner();
        let name = req.name.trim().to_string();
        let key = model::public_key(&req.public_key_pem)?;
        let (algorithm, fingerprint) = (key.algorithm().as_str(), key.fingerprint());
        let now = self.deps.clock.now();
        let tenant = auth.tenant_id;
        let tx = self
            .deps
            .store
            .begin_tenant(tenant)
            .await
            .map_err(store_err)?;
        certmesh_store::write_lock(&tx).await.map_err(store_err)?;
        let owner = principals::by_name(&tx, tenant, &name)
            .await
            .map_err(store_err)?
            .ok_or_else(|| IamError::PrincipalNotFound { name: name.clone() })?;
        let spki = key.spki_der();
        let added =
            match principal_keys::add(&tx, tenant, owner.id, algorithm, spki, &fingerprint, now)
                .await
            {
                Err(StoreError::Conflict { .. }) => {
                    return Err(IamError::PrincipalKeyExists { fingerprint }.into());
                }
                Err(StoreError::NotFound { .. }) => {
                    return Err(IamError::PrincipalNotFound { name }.into());
                }
                other => other.map_err(store_err)?,
            };
        let details = json!({
            "principal": name,
            "key_id": added.id,
            "algorithm": algorithm,
            "fingerprint": fingerprint,
        });
        let e = entry(
            &auth,
            "principals.add_key",
            format!("principal:{name}"),
            Outcome::Allowed,
            details,
            now,
        );
        commit_audited(tx, tenant, e).await?;
        tracing::info!(principal = %name, %fingerprint, %algorithm, "Principal key added.");
        Ok(Response::new(model::principal_key(&added, &owner.name)?))
    }

    async fn list_principal_keys(
        &self,
        request: Request<pb::ListPrincipalKeysRequest>,
    ) -> Result<Response<pb::ListPrincipalKeysResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let owner = self
            .subject(
                &auth,
                &request.get_ref().name,
                Permission::PrincipalsRead,
                "principals.list_keys",
            )
            .await?;
        let tenant = auth.tenant_id;
        let keys = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                principal_keys::all_for(tx, tenant, owner.id).await
            })
            .await
            .map_err(store_err)?;
        let keys = keys
            .iter()
            .map(|k| model::principal_key(k, &owner.name))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListPrincipalKeysResponse { keys }))
    }
}

#[tonic::async_trait]
impl TokenService for Iam {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let req = request.into_inner();
        let owner = self
            .subject(
                &auth,
                &req.principal,
                Permission::PrincipalsWrite,
                "tokens.create",
            )
            .await?;
        let name = match req.name.trim() {
            "" => "token".to_string(),
            n if n.len() <= 128 => n.to_string(),
            _ => {
                return Err(IamError::InvalidField {
                    field: "name",
                    problem: "is longer than 128".into(),
                }
                .into());
            }
        };
        let now = self.deps.clock.now();
        let expires_at = match req.expires_in.trim() {
            "" => None,
            text => Some(
                now + certmesh_kit::duration::parse(text).map_err(|problem| {
                    IamError::InvalidField {
                        field: "expires_in",
                        problem,
                    }
                })?,
            ),
        };
        let tx = self
            .deps
            .store
            .begin_tenant(auth.tenant_id)
            .await
            .map_err(store_err)?;
        certmesh_store::write_lock(&tx).await.map_err(store_err)?;
        let (id, secret) = tokens::create(&tx, auth.tenant_id, owner.id, &name, expires_at, now)
            .await
            .map_err(store_err)?;
        let details = json!({"principal": owner.name, "name": name, "expires_at": expires_at.map(|t| t.to_rfc3339())});
        let e = entry(
            &auth,
            "tokens.create",
            format!("token:{id}"),
            Outcome::Allowed,
            details,
            now,
        );
        commit_audited(tx, auth.tenant_id, e).await?;
        let info = tokens::TokenInfo {
            id,
            tenant_id: auth.tenant_id,
            principal_id: Some(owner.id),
            name,
            created_at: certmesh_store::truncate_ts(now),
            expires_at: expires_at.map(certmesh_store::truncate_ts),
            revoked_at: None,
        };
        Ok(Response::new(pb::CreateTokenResponse {
            info: Some(model::token(&info)),
            token: secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let owner = self
            .subject(
                &auth,
                &request.get_ref().principal,
                Permission::PrincipalsRead,
                "tokens.list",
            )
            .await?;
        let tenant = auth.tenant_id;
        let listed = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                tokens::list(tx, tenant, Some(owner.id)).await
            })
            .await
            .map_err(store_err)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: listed.iter().map(model::token).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let auth = AuthContext::of(&request)?;
        let raw = request.get_ref().id.trim().to_string();
        let not_found = || IamError::TokenNotFound { id: raw.clone() };
        let id: uuid::Uuid = raw.parse().map_err(|_| not_found())?;
        let tenant = auth.tenant_id;
        let all = self
            .deps
            .store
            .in_tenant(tenant, async |tx| tokens::list(tx, tenant, None).await)
            .await
            .map_err(store_err)?;
        let target = all.into_iter().find(|t| t.id == id).ok_or_else(not_found)?;
        if target.principal_id != Some(auth.principal_id) {
            self.require(&auth, Permission::PrincipalsWrite, "tokens.revoke")
                .await?;
        }
        let now = self.deps.clock.now();
        let tx = self
            .deps
            .store
            .begin_tenant(auth.tenant_id)
            .await
            .map_err(store_err)?;
        certmesh_store::write_lock(&tx).await.map_err(store_err)?;
        tokens::revoke(&tx, auth.tenant_id, id, now)
            .await
            .map_err(store_err)?;
        let e = entry(
            &auth,
            "tokens.revoke",
            format!("token:{id}"),
            Outcome::Allowed,
            json!({"name": target.name}),
            now,
        );
        commit_audited(tx, auth.tenant_id, e).await?;
        let revoked = tokens::TokenInfo {
            revoked_at: Some(
                target
                    .revoked_at
                    .unwrap_or(certmesh_store::truncate_ts(now)),
            ),
            ..target
        };
        Ok(Response::new(model::token(&revoked)))
    }
}

#[tonic::async_trait]
impl AuditService for Iam {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::AuditRead, "audit.list")
            .await?;
        let req = request.into_inner();
        let nonempty = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let filter = AuditFilter {
            since: model::instant("since", &req.since)?,
            until: model::instant("until", &req.until)?,
            actor: nonempty(req.actor),
            action: nonempty(req.action),
            resource: nonempty(req.resource),
        };
        let after = match req.page_token.as_str() {
            "" => 0,
            token => token
                .strip_prefix("seq-")
                .and_then(|n| n.parse().ok())
                .ok_or(IamError::PageTokenInvalid)?,
        };
        let limit = match req.page_size {
            0 => DEFAULT_AUDIT_PAGE,
            n => n.min(1000),
        };
        let tenant = auth.tenant_id;
        let page = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                audit::query(tx, tenant, &filter, after, u64::from(limit)).await
            })
            .await
            .map_err(store_err)?;
        let next = match page.last() {
            Some(last) if page.len() == limit as usize => format!("seq-{}", last.seq),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.iter().map(model::audit_event).collect(),
            next_page_token: next,
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        self.require(&auth, Permission::AuditRead, "audit.verify")
            .await?;
        let tenant = auth.tenant_id;
        let verdict = self
            .deps
            .store
            .in_tenant(tenant, async |tx| audit::verify(tx, tenant).await)
            .await
            .map_err(store_err)?;
        Ok(Response::new(match verdict {
            Verification::Intact { rows } => pb::VerifyAuditResponse {
                intact: true,
                rows,
                broken_seq: 0,
                reason: String::new(),
            },
            Verification::Broken { seq, reason } => pb::VerifyAuditResponse {
                intact: false,
                rows: 0,
                broken_seq: seq,
                reason,
            },
        }))
    }
}
