//! Database administration that runs before any API token exists.

use anyhow::Context;
use certmesh_kit::{Clock, SystemClock};
use certmesh_store::{Store, tenants, tokens};

use crate::cli::{DatabaseArgs, TokenCommand};

/// `certmesh migrate`: apply pending migrations and exit.
pub async fn migrate(db: &DatabaseArgs) -> anyhow::Result<()> {
    let store = Store::connect(&db.database_url)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    println!("migrations applied");
    Ok(())
}

/// `certmesh token create`: print a new token once; only its hash is stored.
pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { db, tenant, name } => {
            let store = Store::connect(&db.database_url)
                .await
                .context("connecting to the database")?;
            store.migrate().await.context("applying migrations")?;
            let now = SystemClock.now();
            let tenant_id = tenants::ensure(store.conn(), &tenant, now).await?;
            let (_, token) = tokens::create(store.conn(), tenant_id, &name, now).await?;
            println!("{token}");
            Ok(())
        }
    }
}
