//! Who the agents are: the agent-identity CA, one-time bootstrap tokens, and agent rows.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};

use crate::entity::{agent_identity_cas as ica, agents as a, bootstrap_tokens as bt};
use crate::{Result, StoreError, TenantId, truncate_ts};

/// Prefix of every bootstrap token secret (`cmb_` and 64 hex characters).
pub const BOOTSTRAP_PREFIX: &str = "cmb_";

/// The agent-identity CA as stored: its certificate and where its key is, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityCaRecord {
    pub id: uuid::Uuid,
    pub cert_pem: String,
    pub key_ref: String,
    pub created_at: DateTime<Utc>,
}

/// The identity CA named `name`, if one was made.
pub async fn identity_ca<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<IdentityCaRecord>> {
    Ok(ica::Entity::find_by_id(name.to_owned())
        .one(c)
        .await?
        .map(|m| IdentityCaRecord {
            id: m.id,
            cert_pem: m.cert_pem,
            key_ref: m.key_ref,
            created_at: m.created_at,
        }))
}

/// Records `ca` as the identity CA `name` unless one exists; `false` when another replica made
/// it first (the caller then uses that one).
pub async fn insert_identity_ca<C: ConnectionTrait>(
    c: &C,
    name: &str,
    ca: &IdentityCaRecord,
) -> Result<bool> {
    let row = ica::Model {
        name: name.to_owned(),
        id: ca.id,
        cert_pem: ca.cert_pem.clone(),
        key_ref: ca.key_ref.clone(),
        created_at: truncate_ts(ca.created_at),
    };
    let done = ica::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([ica::Column::Name])
        .exec_without_returning(c)
        .await?;
    Ok(crate::inserted_rows(done) == 1)
}

/// A bootstrap token as listed: never its secret or hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub group: String,
    pub description: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub agent_id: Option<uuid::Uuid>,
}

impl From<bt::Model> for BootstrapToken {
    fn from(m: bt::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            group: m.group_name,
            description: m.description,
            created_by: m.created_by,
            created_at: m.created_at,
            expires_at: m.expires_at,
            used_at: m.used_at,
            agent_id: m.agent_id,
        }
    }
}

/// Mints a one-time bootstrap token for `group`, valid until `expires_at`. Returns the token
/// and its secret, which is stored only as its SHA-256 ([`crate::tokens::hash`]).
pub async fn create_bootstrap_token<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    group: &str,
    description: &str,
    created_by: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(BootstrapToken, String)> {
    let mut random = Vec::with_capacity(32);
    random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let secret = format!("{BOOTSTRAP_PREFIX}{}", hex::encode(random));
    let row = bt::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        token_hash: crate::tokens::hash(&secret),
        group_name: group.to_owned(),
        description: description.to_owned(),
        created_by: created_by.to_owned(),
        created_at: truncate_ts(now),
        expires_at: truncate_ts(expires_at),
        used_at: None,
        agent_id: None,
    };
    bt::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "bootstrap token"))?;
    Ok((row.into(), secret))
}

/// The tenant's bootstrap tokens, newest first.
pub async fn list_bootstrap_tokens<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<BootstrapToken>> {
    Ok(bt::Entity::find()
        .filter(bt::Column::TenantId.eq(tenant.0))
        .order_by_desc(bt::Column::CreatedAt)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Consumes the bootstrap token whose secret is `secret` for agent `agent_id`: `None` when no
/// such token exists, it expired at `now`, or it was used already (also by a racing
/// enrollment: the update is conditional). Runs before any tenant is known; on PostgreSQL the
/// `bootstrap_by_secret` policy shows the one row whose hash is presented, and the token's
/// tenant is then set on `c` (a transaction) for the rest of the enrollment.
pub async fn claim_bootstrap_token<C: ConnectionTrait>(
    c: &C,
    secret: &str,
    agent_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Option<BootstrapToken>> {
    if !secret.starts_with(BOOTSTRAP_PREFIX) {
        return Ok(None);
    }
    let hash = crate::tokens::hash(secret);
    crate::set_local(c, "certmesh.token_hash", &hash).await?;
    let Some(row) = bt::Entity::find()
        .filter(bt::Column::TokenHash.eq(hash))
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    let now = truncate_ts(now);
    if row.used_at.is_some() || row.expires_at <= now {
        return Ok(None);
    }
    let tenant = TenantId(row.tenant_id);
    crate::set_tenant(c, tenant).await?;
    let claimed = bt::Entity::update_many()
        .col_expr(bt::Column::UsedAt, Expr::value(now))
        .col_expr(bt::Column::AgentId, Expr::value(agent_id))
        .filter(bt::Column::TenantId.eq(tenant.0))
        .filter(bt::Column::Id.eq(row.id))
        .filter(bt::Column::UsedAt.is_null())
        .exec(c)
        .await?;
    if claimed.rows_affected != 1 {
        return Ok(None);
    }
    let mut token = BootstrapToken::from(row);
    token.used_at = Some(now);
    token.agent_id = Some(agent_id);
    Ok(Some(token))
}

/// An agent's lifecycle state as stored.
pub const AGENT_ACTIVE: &str = "active";
/// A retired agent: its certificate no longer opens a stream.
pub const AGENT_RETIRED: &str = "retired";

/// What an agent says about its host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
}

/// An enrolled agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub group: String,
    pub host: HostFacts,
    /// [`AGENT_ACTIVE`] or [`AGENT_RETIRED`].
    pub status: String,
    /// Serial (hex) of the current identity certificate.
    pub identity_serial: String,
    /// Serial of the one before, still accepted until it expires.
    pub previous_identity_serial: Option<String>,
    pub identity_not_after: DateTime<Utc>,
    /// The principal the agent's issuance requests are attributed to.
    pub principal_id: uuid::Uuid,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl From<a::Model> for AgentRecord {
    fn from(m: a::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            group: m.group_name,
            host: HostFacts {
                hostname: m.hostname,
                os: m.os,
                arch: m.arch,
                version: m.version,
            },
            status: m.status,
            identity_serial: m.identity_serial,
            previous_identity_serial: m.previous_identity_serial,
            identity_not_after: m.identity_not_after,
            principal_id: m.principal_id,
            enrolled_at: m.enrolled_at,
            last_seen_at: m.last_seen_at,
            retired_at: m.retired_at,
        }
    }
}

/// Records a newly enrolled agent.
pub async fn insert_agent<C: ConnectionTrait>(c: &C, agent: &AgentRecord) -> Result<()> {
    let row = a::ActiveModel {
        id: Set(agent.id),
        tenant_id: Set(agent.tenant_id.0),
        group_name: Set(agent.group.clone()),
        hostname: Set(agent.host.hostname.clone()),
        os: Set(agent.host.os.clone()),
        arch: Set(agent.host.arch.clone()),
        version: Set(agent.host.version.clone()),
        status: Set(agent.status.clone()),
        identity_serial: Set(agent.identity_serial.clone()),
        previous_identity_serial: Set(agent.previous_identity_serial.clone()),
        identity_not_after: Set(truncate_ts(agent.identity_not_after)),
        principal_id: Set(agent.principal_id),
        enrolled_at: Set(truncate_ts(agent.enrolled_at)),
        last_seen_at: Set(agent.last_seen_at.map(truncate_ts)),
        retired_at: Set(agent.retired_at.map(truncate_ts)),
    };
    a::Entity::insert(row)
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "agent"))?;
    Ok(())
}

/// The tenant's agent `id`.
pub async fn get_agent<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<AgentRecord>> {
    Ok(a::Entity::find_by_id(id)
        .filter(a::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// The tenant's agents (of `group`, if given), oldest first.
pub async fn list_agents<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    group: Option<&str>,
) -> Result<Vec<AgentRecord>> {
    let mut q = a::Entity::find().filter(a::Column::TenantId.eq(tenant.0));
    if let Some(group) = group {
        q = q.filter(a::Column::GroupName.eq(group));
    }
    Ok(q.order_by_asc(a::Column::EnrolledAt)
        .order_by_asc(a::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Records what the agent said in its Hello, and that it was seen at `now`.
pub async fn update_host<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    host: &HostFacts,
    now: DateTime<Utc>,
) -> Result<()> {
    a::Entity::update_many()
        .col_expr(a::Column::Hostname, Expr::value(host.hostname.clone()))
        .col_expr(a::Column::Os, Expr::value(host.os.clone()))
        .col_expr(a::Column::Arch, Expr::value(host.arch.clone()))
        .col_expr(a::Column::Version, Expr::value(host.version.clone()))
        .col_expr(a::Column::LastSeenAt, Expr::value(truncate_ts(now)))
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

/// Marks agents `ids` as seen at `now`, in one statement (heartbeats are batched). Returns
/// the ids among them that are retired, so their streams can be told.
pub async fn touch_agents<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ids: &[uuid::Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<uuid::Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut retired = Vec::new();
    for chunk in ids.chunks(500) {
        a::Entity::update_many()
            .col_expr(a::Column::LastSeenAt, Expr::value(truncate_ts(now)))
            .filter(a::Column::TenantId.eq(tenant.0))
            .filter(a::Column::Id.is_in(chunk.iter().copied()))
            .exec(c)
            .await?;
        retired.extend(
            a::Entity::find()
                .filter(a::Column::TenantId.eq(tenant.0))
                .filter(a::Column::Id.is_in(chunk.iter().copied()))
                .filter(a::Column::Status.eq(AGENT_RETIRED))
                .all(c)
                .await?
                .into_iter()
                .map(|m| m.id),
        );
    }
    Ok(retired)
}

/// The agent's new identity certificate: the current one becomes the previous one.
pub async fn rotate_identity<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    serial: &str,
    not_after: DateTime<Utc>,
) -> Result<()> {
    let done = a::Entity::update_many()
        .col_expr(
            a::Column::PreviousIdentitySerial,
            Expr::col(a::Column::IdentitySerial),
        )
        .col_expr(a::Column::IdentitySerial, Expr::value(serial))
        .col_expr(
            a::Column::IdentityNotAfter,
            Expr::value(truncate_ts(not_after)),
        )
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::Id.eq(id))
        .filter(a::Column::Status.eq(AGENT_ACTIVE))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "agent" })
    }
}

/// Retires agent `id` at `now` (no-op if it is retired already). `None` if there is no such
/// agent.
pub async fn retire_agent<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Option<AgentRecord>> {
    a::Entity::update_many()
        .col_expr(a::Column::Status, Expr::value(AGENT_RETIRED))
        .col_expr(a::Column::RetiredAt, Expr::value(truncate_ts(now)))
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::Id.eq(id))
        .filter(a::Column::Status.eq(AGENT_ACTIVE))
        .exec(c)
        .await?;
    get_agent(c, tenant, id).await
}
