//! Administration that reads and writes the database directly: schema migrations, bootstrap
//! tokens, tenants, and the audit trail's verification and export.

use anyhow::{Context, bail};
use certmesh_kit::{Clock, SystemClock, rbac::Role};
use certmesh_store::{
    Store, TenantId,
    audit::{self, AuditFilter, AuditRecord, Verification},
    principals, tenants, tokens,
};

use crate::cli::{AuditCommand, DatabaseArgs, TenantCommand};

async fn open(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = Store::connect(&db.database_url)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn tenant_id(store: &Store, name: &str) -> anyhow::Result<TenantId> {
    tenants::by_name(store.conn(), name)
        .await?
        .with_context(|| format!("no tenant named {name:?}"))
}

/// `certmesh migrate`: apply pending migrations and exit.
pub async fn migrate(db: &DatabaseArgs) -> anyhow::Result<()> {
    open(db).await?;
    println!("migrations applied");
    Ok(())
}

/// `certmesh token create --database-url`: bootstrap a token straight into the database and
/// print it once; only its hash is stored.
pub async fn bootstrap_token(
    database_url: &str,
    tenant: &str,
    principal: &str,
    roles: &[String],
    name: &str,
    expires_in: Option<&str>,
) -> anyhow::Result<()> {
    for role in roles {
        role.parse::<Role>()?;
    }
    let now = SystemClock.now();
    let expires_at = expires_in
        .map(|text| certmesh_kit::duration::parse(text).map(|d| now + d))
        .transpose()
        .map_err(|problem| anyhow::anyhow!("--expires-in: {problem}"))?;
    let store = open(&DatabaseArgs {
        database_url: database_url.to_string(),
    })
    .await?;
    let tenant_id = tenants::ensure(store.conn(), tenant, now).await?;
    let (_, token) = store
        .in_tenant(tenant_id, async |tx| {
            let owner = principals::ensure(tx, tenant_id, principal, "user", roles, now).await?;
            tokens::create(tx, tenant_id, owner.id, name, expires_at, now).await
        })
        .await?;
    println!("{token}");
    Ok(())
}

/// `certmesh tenant …`
pub async fn tenant(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { db, name } => {
            let store = open(&db).await?;
            let id = tenants::ensure(store.conn(), name.trim(), SystemClock.now()).await?;
            println!("{id}");
        }
        TenantCommand::List { db } => {
            let store = open(&db).await?;
            for (id, name, created) in tenants::list(store.conn()).await? {
                println!("{id}\t{name}\t{}", created.to_rfc3339());
            }
        }
    }
    Ok(())
}

/// `certmesh audit …`
pub async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { db, tenant } => verify(&open(&db).await?, tenant.as_deref()).await,
        AuditCommand::Export { db, tenant, format } => {
            let store = open(&db).await?;
            let id = tenant_id(&store, &tenant).await?;
            export(&store, id, &format).await
        }
    }
}

async fn verify(store: &Store, tenant: Option<&str>) -> anyhow::Result<()> {
    let all = tenants::list(store.conn()).await?;
    let chosen: Vec<_> = all
        .iter()
        .filter(|(_, name, _)| tenant.is_none_or(|t| t == name))
        .collect();
    if chosen.is_empty() {
        bail!("no tenant named {:?}", tenant.unwrap_or_default());
    }
    let mut broken = 0;
    for (id, name, _) in chosen {
        let id = *id;
        match store
            .in_tenant(id, async |tx| audit::verify(tx, id).await)
            .await?
        {
            Verification::Intact { rows } => println!("tenant {name}: intact, {rows} events"),
            Verification::Broken { seq, reason } => {
                broken += 1;
                println!("tenant {name}: BROKEN at seq {seq}: {reason}");
            }
        }
    }
    if broken > 0 {
        bail!("the audit trail of {broken} tenant(s) does not verify");
    }
    Ok(())
}

async fn export(store: &Store, tenant: TenantId, format: &str) -> anyhow::Result<()> {
    let csv = match format {
        "jsonl" => false,
        "csv" => true,
        other => bail!("--format must be jsonl or csv, not {other:?}"),
    };
    if csv {
        println!("seq,created_at,actor,action,resource,request_id,outcome,details,prev_hash,hash");
    }
    let mut after = 0;
    loop {
        let page = store
            .in_tenant(tenant, async |tx| {
                audit::query(tx, tenant, &AuditFilter::default(), after, 1000).await
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            println!(
                "{}",
                if csv {
                    csv_line(record)
                } else {
                    json_line(record)
                }
            );
        }
    }
    Ok(())
}

fn json_line(r: &AuditRecord) -> String {
    serde_json::json!({
        "seq": r.seq,
        "created_at": r.created_at.to_rfc3339(),
        "actor": r.actor,
        "action": r.action,
        "resource": r.resource,
        "request_id": r.request_id,
        "outcome": r.outcome.as_str(),
        "details": r.details,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
    .to_string()
}

/// RFC 4180: every field quoted, quotes doubled.
fn csv_line(r: &AuditRecord) -> String {
    let fields = [
        r.seq.to_string(),
        r.created_at.to_rfc3339(),
        r.actor.clone(),
        r.action.clone(),
        r.resource.clone(),
        r.request_id.clone(),
        r.outcome.as_str().to_string(),
        r.details.to_string(),
        r.prev_hash.clone(),
        r.hash.clone(),
    ];
    fields
        .iter()
        .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}
