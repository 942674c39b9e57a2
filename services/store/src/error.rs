//! The store's one error type.

/// Everything a repository call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist (for this tenant).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `"token"`.
        what: &'static str,
    },
    /// A row with the same unique key already exists.
    #[error("{what} already exists")]
    Conflict {
        /// What collided, e.g. `"certificate"`.
        what: &'static str,
    },
    /// The caller passed something the store cannot accept (bad cursor, bad URL, …).
    #[error("invalid input: {detail}")]
    Invalid {
        /// A message safe to show to the caller.
        detail: String,
    },
    /// A stored row could not be decoded (bad JSON, out-of-range number); a bug or tampering.
    #[error("corrupt row: {detail}")]
    Corrupt {
        /// What was wrong with the row.
        detail: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`], anything else to
    /// [`StoreError::Database`].
    pub(crate) fn from_insert(err: sea_orm::DbErr, what: &'static str) -> Self {
        match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict { what },
            _ => StoreError::Database(err),
        }
    }
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;
