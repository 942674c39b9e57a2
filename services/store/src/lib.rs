//! certmesh-store: the persistence layer of certmesh on PostgreSQL or SQLite.
//!
//! [`Store`] owns the connection pool and runs the schema migrations of `certmesh-migrations`.
//! Repositories are modules of free functions ([`tenants`], [`tokens`], [`cas`], [`profiles`],
//! [`certificates`], [`approvals`], [`idempotency`], [`outbox`], [`audit`]) generic over
//! [`sea_orm::ConnectionTrait`], so the same call runs on the pool or inside a caller's
//! transaction ([`Store::begin`]).
//!
//! Every call is tenant-scoped: it takes a [`TenantId`] and never sees another tenant's rows.
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
use std::time::Duration;

use certmesh_migrations::{Migrator, MigratorTrait};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::TransactionTrait;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DatabaseTransaction};

pub mod approvals;
pub mod audit;
pub mod cas;
pub mod certificates;
mod entity;
mod error;
pub mod idempotency;
pub mod outbox;
pub mod principals;
pub mod profiles;
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
}

impl Store {
    /// Connects to `url`: `sqlite://path/to/file.db` (created if missing; WAL, busy timeout 5 s,
    /// foreign keys on, `synchronous=NORMAL`), `sqlite::memory:` (one connection, for tests) or
    /// `postgres://…` (a pool of 32). Does not migrate; call [`Store::migrate`].
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
        Ok(Store { conn, backend })
    }

    /// Applies every pending migration; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<()> {
        Migrator::up(&self.conn, None).await?;
        Ok(())
    }

    /// Rolls back every applied migration (tests of the `down`s).
    pub async fn migrate_down_all(&self) -> Result<()> {
        Migrator::down(&self.conn, None).await?;
        Ok(())
    }

    /// The pool, for repository calls outside a transaction.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Starts a transaction; repository calls accept it in place of the pool.
    pub async fn begin(&self) -> Result<DatabaseTransaction> {
        Ok(self.conn.begin().await?)
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

/// Rows written by an `INSERT … ON CONFLICT DO NOTHING`: 0 when it hit the conflict.
pub(crate) fn inserted_rows(res: sea_orm::TryInsertResult<u64>) -> u64 {
    match res {
        sea_orm::TryInsertResult::Inserted(n) => n,
        sea_orm::TryInsertResult::Empty | sea_orm::TryInsertResult::Conflicted => 0,
    }
}
