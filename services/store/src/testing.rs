//! Test helpers (feature `test-util`): isolated, migrated databases on every backend.
//!
//! The store suite and other crates' tests loop over [`each_backend`], so every behaviour is
//! checked on SQLite and PostgreSQL. PostgreSQL is mandatory: without
//! `CERTMESH_TEST_DATABASE_URL` the helpers panic rather than silently skip.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::{Backend, Store};

/// Names the admin URL of the PostgreSQL server used by tests.
pub const DATABASE_URL_ENV: &str = "CERTMESH_TEST_DATABASE_URL";

/// A migrated database private to one test. Dropping it deletes it: the SQLite file with its
/// temp dir, the PostgreSQL database with `DROP DATABASE … WITH (FORCE)` (best effort).
#[derive(Debug)]
pub struct TestDb {
    /// The store on the test database, as servers use it: on PostgreSQL its connections run as
    /// the app role, under row-level security.
    pub store: Store,
    // See `owner()`.
    owner: DatabaseConnection,
    // Dropped after `store` (declaration order), so the pool goes first.
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

#[derive(Debug)]
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl TestDb {
    /// The backend under test, for assertion messages.
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// PostgreSQL: the test database's URL with `user` as the login (no password), for tests of
    /// other logins. `None` on SQLite.
    pub fn url_as(&self, user: &str) -> Option<String> {
        let pg = self._pg.as_ref()?;
        let url = with_database(&pg.admin_url, &pg.name);
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        Some(format!("{scheme}://{user}@{host}"))
    }

    /// A connection as the test login itself (on PostgreSQL the superuser of
    /// `CERTMESH_TEST_DATABASE_URL`, which row-level security does not apply to; on SQLite the
    /// store's pool): for the store suite's tests of repository logic and for inspecting rows
    /// across tenants. Product code never has one.
    pub fn owner(&self) -> &DatabaseConnection {
        &self.owner
    }

    /// The URL a server would be given for this database (another process's view of it).
    pub fn url(&self) -> String {
        match (&self._pg, &self._dir) {
            (Some(pg), _) => with_database(&pg.admin_url, &pg.name),
            (None, Some(dir)) => format!("sqlite://{}", dir.path().join("certmesh.db").display()),
            (None, None) => String::new(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = std::mem::take(&mut self.admin_url);
        let name = std::mem::take(&mut self.name);
        // Drop may run inside a runtime, where blocking on async work is not allowed: do the
        // cleanup on a plain thread with its own runtime and wait for it.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = admin_connection(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = admin.execute_unprepared(&sql).await {
                        tracing::warn!(error = %e, db = %name, "Could not drop test database.");
                    }
                    let _ = admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// A migrated SQLite database in a fresh temp file.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("create temp dir for SQLite test database");
    let path = dir.path().join("certmesh.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url)
        .await
        .expect("open SQLite test database");
    store.migrate().await.expect("migrate SQLite test database");
    TestDb {
        owner: store.conn().clone(),
        store,
        _dir: Some(dir),
        _pg: None,
    }
}

/// A migrated, freshly created PostgreSQL database `certmesh_t_<random>` on the server named
/// by `CERTMESH_TEST_DATABASE_URL`.
///
/// # Panics
/// If the variable is unset or the server cannot be reached.
pub async fn postgres() -> TestDb {
    let admin_url = std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{DATABASE_URL_ENV} is not set: the store tests need PostgreSQL, e.g. \
             {DATABASE_URL_ENV}=postgres://postgres@127.0.0.1:5432/postgres"
        )
    });
    let name = format!("certmesh_t_{}", uuid::Uuid::new_v4().simple());
    let admin = admin_connection(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {DATABASE_URL_ENV}: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("create test database {name}: {e}"));
    let _ = admin.close().await;
    // The guard exists before anything else can fail, so the database is dropped on panic too.
    let url = with_database(&admin_url, &name);
    let guard = PgDatabase { admin_url, name };
    let store = Store::connect(&url)
        .await
        .expect("connect to the new test database");
    store
        .migrate()
        .await
        .expect("migrate PostgreSQL test database");
    let owner = admin_connection(&url)
        .await
        .expect("connect to the new test database as its owner");
    TestDb {
        owner,
        store,
        _dir: None,
        _pg: Some(guard),
    }
}

/// One migrated database per backend: `[sqlite, postgres]`.
pub async fn each_backend() -> Vec<TestDb> {
    vec![sqlite().await, postgres().await]
}

async fn admin_connection(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1).sqlx_logging(false);
    Database::connect(opts).await
}

/// `url` with its database name replaced by `db`, query string kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
