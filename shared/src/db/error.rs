//! Errors of the database layer. None of them ever carries a database
//! password: URLs are redacted before they are stored in an error.

/// A database failure, with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not `sqlite://PATH`, `postgres://...` or `postgresql://...`.
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening the connection (or setting it up) failed.
    #[error("cannot open database {url}: {message}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's message, password scrubbed.
        message: String,
    },
    /// No pooled connection became free (or could be opened) in time.
    #[error("no database connection available: {message}")]
    Checkout {
        /// The pool's message.
        message: String,
    },
    /// Applying the embedded migrations failed.
    #[error("cannot migrate database {url}: {message}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        message: String,
    },
    /// The database was migrated by a newer binary: this one does not know its schema.
    #[error(
        "database {url} holds migration {version}, newer than this binary's latest ({latest}): run the newer cvm release against it"
    )]
    NewerSchema {
        /// The URL, password redacted.
        url: String,
        /// The newest migration applied that this binary does not embed.
        version: String,
        /// The newest migration this binary embeds.
        latest: String,
    },
    /// A statement on a table failed.
    #[error("{operation} on {table} failed: {cause}")]
    Query {
        /// The table.
        table: &'static str,
        /// What was being done (`upsert`, `select`, ...).
        operation: &'static str,
        /// The driver's error.
        cause: diesel::result::Error,
    },
}

impl DbError {
    /// True when SQLite gave up waiting for its write lock ("database is
    /// locked"): another writer held it past the busy timeout. Retrying later succeeds.
    pub fn is_busy(&self) -> bool {
        match self {
            DbError::Query {
                cause: diesel::result::Error::DatabaseError(_, info),
                ..
            } => {
                let m = info.message();
                m.contains("database is locked") || m.contains("database is busy")
            }
            _ => false,
        }
    }

    /// A closure mapping a diesel error to [`DbError::Query`] on `table`.
    pub fn query(
        table: &'static str,
        operation: &'static str,
    ) -> impl FnOnce(diesel::result::Error) -> DbError {
        move |cause| DbError::Query {
            table,
            operation,
            cause,
        }
    }
}

/// Errors of BEGIN/COMMIT/ROLLBACK themselves (so `Connection::transaction`
/// can return a [`DbError`]); statements inside map their own context.
impl From<diesel::result::Error> for DbError {
    fn from(cause: diesel::result::Error) -> DbError {
        DbError::Query {
            table: "(transaction)",
            operation: "begin/commit",
            cause,
        }
    }
}
