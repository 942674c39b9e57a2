//! certmesh-store: the persistence layer of certmesh on PostgreSQL or SQLite.
//!
//! [`Store`] owns the connection pool and runs the schema migrations of `certmesh-migrations`.
//! Repositories are modules of free functions ([`tenants`], [`tokens`], [`principals`],
//! [`principal_keys`], [`cas`], [`ca_certificates`], [`ceremonies`], [`profiles`],
//! [`certificates`], [`approvals`], [`idempotency`], [`outbox`], [`audit`], [`revocations`],
//! [`crls`], [`leases`], [`fleet`]) generic over [`sea_orm::ConnectionTrait`], so the same call runs on the
//! pool or inside a caller's transaction ([`Store::begin`]).
//!
//! Every call is tenant-scoped: it takes a [`TenantId`] and never sees another tenant's rows.
//! The exceptions hold no tenant data: the tenant directory ([`tenants`]) and [`leases`], the
//! servers' job locks.
//!
//! **Row-level security.** On PostgreSQL that promise is kept twice. Every connection of a
//! [`Store`] runs as the role [`APP_ROLE`], for which each tenant table has a row-level security
//! policy (migration m0009): a statement sees and writes only the rows of the tenant set on its
//! transaction, and with no tenant set, none. So every repository call on a tenant table runs in a
//! transaction from [`Store::begin_tenant`] or [`Store::in_tenant`] (or one whose tenant was set
//! with [`set_tenant`]); on the bare pool ([`Store::conn`]) it finds nothing. Only the tenant
//! directory ([`tenants`]), token lookup by secret ([`tokens::verify`]) and [`leases`] work
//! without a tenant. Migrations run as the login itself, the schema owner ([`Store::migrate`]). SQLite has
//! no roles: there the tenant setting is a no-op and the repositories' own filters are the wall.
//!
//! **Time.** Nothing here reads the clock; callers pass `now`. Every timestamp is truncated to
//! whole microseconds before it is written, because PostgreSQL `timestamptz` keeps microseconds
//! and SQLite keeps whatever text it is given: truncating on write makes a round-trip exact and
//! identical on both backends.
//!
//! **Conflicts inside transactions.** On PostgreSQL a failed statement aborts the surrounding
//! transaction, so single-row inserts that can collide use `INSERT … ON CONFLICT DO NOTHING` and
//! report [`StoreError::Conflict`] from the row count, leaving the caller's transaction usable.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use certmesh_migrations::{Migrator, MigratorTrait};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    Statement, TransactionTrait,
};
use uuid::{ContextV7, Timestamp};

pub use certmesh_migrations::APP_ROLE;

pub mod approvals;
pub mod audit;
pub mod ca_certificates;
pub mod cas;
pub mod ceremonies;
pub mod certificates;
pub mod crls;
pub mod discovery;
mod entity;
mod error;
pub mod fleet;
pub mod idempotency;
pub mod leases;
pub mod notification;
pub mod outbox;
pub mod principal_keys;
pub mod principals;
pub mod profiles;
pub mod revocations;
pub mod tenants;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tokens;

pub use error::{Result, StoreError};

/// Connections in a PostgreSQL pool.
const PG_POOL_SIZE: u32 = 32;
/// Connections in a SQLite file pool: readers run in parallel under WAL, writers queue on the
/// database lock (up to the busy timeout).
const SQLITE_POOL_SIZE: u32 = 8;
/// How long a SQLite writer waits for the database lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database engine a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (a file, or memory for tests).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The id of a tenant; every row belongs to exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub uuid::Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a certificate authority row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaId(pub uuid::Uuid);

impl fmt::Display for CaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A handle on the database: a connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    conn: DatabaseConnection,
    backend: Backend,
    /// PostgreSQL: the URL again, for the owner's connection that migrates.
    owner_url: Option<OwnerUrl>,
}

/// A database URL that may hold a password: never printed.
#[derive(Clone)]
struct OwnerUrl(String);

impl fmt::Debug for OwnerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerUrl(…)")
    }
}

impl Store {
    /// Connects to `url`: `sqlite://path/to/file.db` (created if missing; WAL, busy timeout 5 s,
    /// foreign keys on, `synchronous=NORMAL`), `sqlite::memory:` (one connection, for tests) or
    /// `postgres://…` (a pool of 32 whose connections run as [`APP_ROLE`], so the login must be
    /// a superuser or a member of that role; see the crate docs; they open on first use, so a
    /// wrong login shows at the first query, e.g. [`Store::ping`]). Does not migrate; call
    /// [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid {
                detail: "database URL must start with sqlite: or postgres://".to_owned(),
            });
        };
        match backend {
            Backend::Postgres => {
                opts.max_connections(PG_POOL_SIZE);
                // `SET ROLE` at connection start: statements are subject to row-level security
                // whatever the login, even the schema owner's.
                opts.map_sqlx_postgres_opts(|o| o.options([("role", APP_ROLE)]));
                // The role is created by the first migration run: open connections on first use,
                // after [`Store::migrate`].
                opts.connect_lazy(true);
            }
            Backend::Sqlite if url.contains(":memory:") || url.contains("mode=memory") => {
                // Every connection to `:memory:` is a separate database: keep exactly one alive.
                opts.max_connections(1).min_connections(1);
                opts.map_sqlx_sqlite_opts(|o| o.foreign_keys(true));
                opts.map_sqlx_sqlite_pool_opts(|p| p.idle_timeout(None).max_lifetime(None));
            }
            Backend::Sqlite => {
                opts.max_connections(SQLITE_POOL_SIZE);
                opts.map_sqlx_sqlite_opts(|o| {
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        .busy_timeout(SQLITE_BUSY_TIMEOUT)
                        .foreign_keys(true)
                        .synchronous(SqliteSynchronous::Normal)
                });
            }
        }
        let conn = Database::connect(opts).await?;
        let owner_url = (backend == Backend::Postgres).then(|| OwnerUrl(url.to_owned()));
        Ok(Store {
            conn,
            backend,
            owner_url,
        })
    }

    /// Applies every pending migration; a no-op when the schema is current. On PostgreSQL this
    /// runs on a separate connection as the login itself (not [`APP_ROLE`]), which must own the
    /// schema; with nothing pending it only reads the migration ledger.
    pub async fn migrate(&self) -> Result<()> {
        match &self.owner_url {
            Some(url) => {
                let owner = owner_connection(&url.0).await?;
                // Replicas start together: one applies the migrations while the others wait
                // on this session lock (the owner pool is one connection), then find nothing
                // pending.
                owner
                    .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                    .await?;
                // Read the ledger first: with nothing pending a login without DDL rights (a
                // member of the app role) passes; `up` would try to create the ledger table.
                let current = Migrator::get_pending_migrations_read_only(&owner)
                    .await
                    .is_ok_and(|pending| pending.is_empty());
                let applied = if current {
                    Ok(())
                } else {
                    Migrator::up(&owner, None).await
                };
                let _ = owner
                    .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                    .await;
                owner.close().await?;
                applied?;
            }
            None => migrate_sqlite(&self.conn).await?,
        }
        Ok(())
    }

    /// Rolls back every applied migration (tests of the `down`s), as [`Store::migrate`] does.
    pub async fn migrate_down_all(&self) -> Result<()> {
        match &self.owner_url {
            Some(url) => {
                let owner = owner_connection(&url.0).await?;
                let reverted = Migrator::down(&owner, None).await;
                owner.close().await?;
                reverted?;
            }
            None => Migrator::down(&self.conn, None).await?,
        }
        Ok(())
    }

    /// Checks that the store can run a statement (as [`APP_ROLE`] on PostgreSQL).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.conn.ping().await?)
    }

    /// The pool. On PostgreSQL, only the tenant directory and token lookup see rows here;
    /// tenant tables need [`Store::begin_tenant`].
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Starts a transaction with no tenant set: on PostgreSQL it sees no tenant rows until
    /// [`set_tenant`] names one (a batch writing for several tenants sets each in turn).
    pub async fn begin(&self) -> Result<DatabaseTransaction> {
        Ok(self.conn.begin().await?)
    }

    /// Starts a transaction acting for `tenant`: every statement in it sees and writes that
    /// tenant's rows only.
    pub async fn begin_tenant(&self, tenant: TenantId) -> Result<DatabaseTransaction> {
        let tx = self.conn.begin().await?;
        set_tenant(&tx, tenant).await?;
        Ok(tx)
    }

    /// Runs `work` in a transaction acting for `tenant` and commits it if `work` succeeds
    /// (otherwise it rolls back).
    pub async fn in_tenant<T, E>(
        &self,
        tenant: TenantId,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self.begin_tenant(tenant).await?;
        let out = work(&tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(out)
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(self) -> Result<()> {
        self.conn.close().await?;
        Ok(())
    }
}

/// Takes the database write lock now, for a transaction that reads before it writes. On
/// SQLite a deferred transaction that has only read cannot become a writer once another writer
/// committed (`SQLITE_BUSY_SNAPSHOT`, which the busy timeout does not retry); a write as its first
/// statement makes it wait for the lock instead. A no-op on PostgreSQL, whose row locks and
/// conflict handling serialize writers.
pub async fn write_lock<C: ConnectionTrait>(c: &C) -> Result<()> {
    if c.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    // Writes nothing, but as a write statement it opens the write transaction.
    c.execute_unprepared("UPDATE leases SET holder = holder WHERE 1 = 0")
        .await?;
    Ok(())
}

/// Makes `tenant` the tenant the rest of transaction `c` acts for (PostgreSQL: the
/// transaction-local setting `certmesh.tenant` that the row-level security policies read).
/// A no-op on SQLite. Outside a transaction it would last one statement only: do not.
pub async fn set_tenant<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<()> {
    set_local(c, "certmesh.tenant", &tenant.0.to_string()).await
}

/// Sets a transaction-local PostgreSQL setting; a no-op on SQLite.
pub(crate) async fn set_local<C: ConnectionTrait>(c: &C, name: &str, value: &str) -> Result<()> {
    if c.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    c.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config($1, $2, true)",
        [name.into(), value.into()],
    ))
    .await?;
    Ok(())
}

/// One connection as the login itself, for migrations.
/// The PostgreSQL advisory lock key migrations run under ("certmesh" in ASCII).
const MIGRATION_LOCK: i64 = 0x6365_7274_6d65_7368;

/// SQLite has no advisory locks: processes sharing a file that migrate at once race on the
/// ledger, and the loser's migration rolls back. Its work was the same as the winner's, so a
/// loser that then finds nothing pending is done; otherwise it tries again (a bounded number
/// of times, so a migration that really fails still fails).
async fn migrate_sqlite(conn: &DatabaseConnection) -> Result<()> {
    let mut attempts = 0;
    loop {
        let Err(e) = Migrator::up(conn, None).await else {
            return Ok(());
        };
        attempts += 1;
        if Migrator::get_pending_migrations(conn)
            .await
            .is_ok_and(|pending| pending.is_empty())
        {
            return Ok(());
        }
        if attempts >= 20 {
            return Err(e.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn owner_connection(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1).sqlx_logging(false);
    Ok(Database::connect(opts).await?)
}

/// Shared so ids minted in the same millisecond stay ordered across tasks.
static V7_CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// A UUIDv7 built from `at` (not the wall clock) with a process-wide monotonic counter: ids sort
/// by `at` and, within one millisecond, by minting order. As a primary key it keeps bulk inserts
/// appending to the key's index instead of writing all over it, as random ids do.
pub(crate) fn time_ordered_id(at: DateTime<Utc>) -> uuid::Uuid {
    let secs = u64::try_from(at.timestamp()).unwrap_or(0);
    let nanos = at.timestamp_subsec_nanos();
    let ctx = V7_CONTEXT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    uuid::Uuid::new_v7(Timestamp::from_unix(&*ctx, secs, nanos))
}

/// Truncates to whole microseconds, the precision both backends keep (see the crate docs).
pub fn truncate_ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Converts a stored non-negative integer (a version) to `u32`.
pub(crate) fn to_u32(v: i32, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        detail: format!("negative {what}: {v}"),
    })
}

/// Converts a caller's `u32` (a version) to the stored `i32`.
pub(crate) fn to_i32(v: u32, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Invalid {
        detail: format!("{what} out of range: {v}"),
    })
}

/// Converts a stored non-negative 64-bit integer (a CRL number, a count) to `u64`.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        detail: format!("negative {what}: {v}"),
    })
}

/// Converts a caller's `u64` to the stored `i64` (PostgreSQL `bigint` is signed).
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid {
        detail: format!("{what} out of range: {v}"),
    })
}

/// Rows written by an `INSERT … ON CONFLICT DO NOTHING`: 0 when it hit the conflict.
pub(crate) fn inserted_rows(res: sea_orm::TryInsertResult<u64>) -> u64 {
    match res {
        sea_orm::TryInsertResult::Inserted(n) => n,
        sea_orm::TryInsertResult::Empty | sea_orm::TryInsertResult::Conflicted => 0,
    }
}
