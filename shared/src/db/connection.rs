//! Connections to SQLite or PostgreSQL, chosen at run time from the URL.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::DbError;

/// How long a SQLite writer waits for another writer's lock before failing.
/// Long enough for a portal write to wait out a batch of a load.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to either backend. `diesel::MultiConnection` lets simple
/// queries run on it directly; backend-specific statements (upserts) match on
/// the variant, see [`crate::with_backend`].
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// Embedded SQLite (WAL, busy timeout, foreign keys on).
    Sqlite(SqliteConnection),
    /// A PostgreSQL server.
    Pg(PgConnection),
}

/// Which database product a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`.
    Sqlite,
    /// `postgres://...` or `postgresql://...`.
    Postgres,
}

/// A parsed database URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// The backend it names.
    pub backend: Backend,
    /// What the driver is given: a file path for SQLite, the URL for PostgreSQL.
    target: String,
    /// The URL safe to print (password replaced by `***`).
    redacted: String,
    /// The password, kept only to scrub it from driver messages.
    password: Option<String>,
}

// Debug must not leak the password either (errors and logs format with {:?}).
impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbUrl")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .finish()
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl DbUrl {
    /// Parses `sqlite://PATH`, `postgres://...` or `postgresql://...`.
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            // A path, printed as given: it holds no password.
            if path.is_empty() {
                return Err(DbError::InvalidUrl {
                    url: url.to_string(),
                    reason: "expected sqlite://PATH".into(),
                });
            }
            return Ok(DbUrl {
                backend: Backend::Sqlite,
                target: path.to_string(),
                redacted: url.to_string(),
                password: None,
            });
        }
        let redacted = redact_url(url);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl {
                backend: Backend::Postgres,
                target: url.to_string(),
                redacted,
                password: password_of(url),
            });
        }
        Err(DbError::InvalidUrl {
            url: redacted,
            reason: "expected sqlite://PATH or postgres://...".into(),
        })
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The SQLite file path (None for PostgreSQL).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| PathBuf::from(&self.target))
    }

    /// Removes the password from a driver message, should the driver echo it.
    pub fn scrub(&self, message: &str) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => message.replace(p.as_str(), "***"),
            _ => message.to_string(),
        }
    }

    fn connect_error(&self, message: impl std::fmt::Display) -> DbError {
        DbError::Connect {
            url: self.redacted.clone(),
            message: self.scrub(&message.to_string()),
        }
    }
}

/// The `scheme://user:PASSWORD@host` password (as written), or a `password=` query parameter.
fn password_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.password().map(str::to_string).or_else(|| {
        url.query_pairs()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.into_owned())
    })
}

/// `url` with any password (userinfo or `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Not a URL we understand: print nothing of it rather than risk a secret.
        return "<unparsable URL>".into();
    };
    let in_query = parsed.query_pairs().any(|(k, _)| k == "password");
    if parsed.password().is_none() && !in_query {
        // Unchanged, not re-encoded, when there is nothing to hide.
        return url.to_string();
    }
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "<unparsable URL>".into();
    }
    if in_query {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Sets up a fresh SQLite connection: busy timeout, WAL, foreign keys, and
/// temporary tables in memory (the load's staging tables and the statement
/// journal of its merges would otherwise go through temporary files).
///
/// Switching a brand-new file to WAL needs the exclusive lock, and SQLite
/// reports SQLITE_BUSY at once (without consulting the busy handler) when
/// another process is doing the same, to avoid a deadlock. So the switch is
/// retried until the busy timeout runs out. synchronous=NORMAL is durable to
/// application crashes in WAL mode.
fn sqlite_setup(c: &mut SqliteConnection) -> QueryResult<()> {
    c.batch_execute(&format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    ))?;
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match c.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;") {
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("locked") && started.elapsed() < SQLITE_BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

impl DbConnection {
    /// Opens a connection without touching the schema (for readers).
    pub fn open(url: &DbUrl) -> Result<DbConnection, DbError> {
        match url.backend {
            Backend::Sqlite => {
                // The file may be created, its folder not: a typo in the path
                // must not load into a fresh database somewhere else.
                let path = PathBuf::from(&url.target);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                    && !parent.is_dir()
                {
                    return Err(DbError::InvalidUrl {
                        url: url.redacted.clone(),
                        reason: format!(
                            "folder {} does not exist: fix the path or create the folder",
                            parent.display()
                        ),
                    });
                }
                let mut c =
                    SqliteConnection::establish(&url.target).map_err(|e| url.connect_error(e))?;
                sqlite_setup(&mut c).map_err(|e| url.connect_error(e))?;
                Ok(DbConnection::Sqlite(c))
            }
            Backend::Postgres => {
                let c = PgConnection::establish(&url.target).map_err(|e| url.connect_error(e))?;
                Ok(DbConnection::Pg(c))
            }
        }
    }

    /// Opens a connection and applies pending migrations (for writers).
    pub fn open_for_write(url: &DbUrl) -> Result<DbConnection, DbError> {
        let mut c = DbConnection::open(url)?;
        super::migrate::run_pending(&mut c).map_err(|e| match e {
            DbError::Migrate { message, .. } => DbError::Migrate {
                url: url.redacted.clone(),
                message,
            },
            DbError::NewerSchema {
                version, latest, ..
            } => DbError::NewerSchema {
                url: url.redacted.clone(),
                version,
                latest,
            },
            other => other,
        })?;
        Ok(c)
    }

    /// Parses `url` and opens it with [`DbConnection::open_for_write`].
    pub fn connect_for_write(url: &str) -> Result<DbConnection, DbError> {
        DbConnection::open_for_write(&DbUrl::parse(url)?)
    }

    /// Parses `url` and opens it with [`DbConnection::open`].
    pub fn connect(url: &str) -> Result<DbConnection, DbError> {
        DbConnection::open(&DbUrl::parse(url)?)
    }

    /// The backend of this connection.
    pub fn backend(&self) -> Backend {
        match self {
            DbConnection::Sqlite(_) => Backend::Sqlite,
            DbConnection::Pg(_) => Backend::Postgres,
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection of either backend,
/// so backend-specific diesel statements (upserts) type-check for both.
/// Takes SQLite's write lock at the start of a transaction (no-op on
/// PostgreSQL). A SQLite transaction that reads first cannot wait for a
/// concurrent writer (SQLITE_BUSY_SNAPSHOT): it fails at once with
/// "database is locked". A write that changes nothing queues on the busy
/// timeout instead, and holds the lock from then on.
pub fn lock_for_write(c: &mut DbConnection) -> Result<(), DbError> {
    if c.backend() == Backend::Sqlite {
        c.batch_execute("UPDATE job_runs SET status = status WHERE 1 = 0")
            .map_err(DbError::query("job_runs", "take the write lock"))?;
    }
    Ok(())
}

#[macro_export]
macro_rules! with_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Pg($c) => $body,
        }
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_passwords() {
        assert_eq!(
            redact_url("postgres://cvm:s3cret@db:5432/cvm"),
            "postgres://cvm:***@db:5432/cvm"
        );
        assert_eq!(
            redact_url("postgresql://cvm@db/cvm"),
            "postgresql://cvm@db/cvm"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/d?sslmode=require"),
            "postgres://u:***@h/d?sslmode=require"
        );
    }

    #[test]
    fn redacts_password_parameters() {
        assert_eq!(
            redact_url("postgres://h/d?user=u&password=hunter22&sslmode=require"),
            "postgres://h/d?user=u&password=***&sslmode=require"
        );
    }

    #[test]
    fn sqlite_urls_are_paths() {
        let u = DbUrl::parse("sqlite:///tmp/x/cvm.db").unwrap();
        assert_eq!(u.backend, Backend::Sqlite);
        assert_eq!(u.sqlite_path().unwrap(), PathBuf::from("/tmp/x/cvm.db"));
        assert!(DbUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn a_sqlite_file_in_a_missing_folder_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("typo/cvm.db");
        let err = match DbConnection::connect(&format!("sqlite://{}", missing.display())) {
            Ok(_) => panic!("a database was created in a missing folder"),
            Err(e) => e,
        };
        assert!(matches!(err, DbError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("typo"), "{err}");
        assert!(!d.path().join("typo").exists());
        // The file itself may be created.
        let file = d.path().join("cvm.db");
        DbConnection::connect(&format!("sqlite://{}", file.display())).unwrap();
        assert!(file.exists());
    }

    #[test]
    fn bad_urls_never_echo_the_password() {
        let err = DbUrl::parse("mysql://u:topsecret@h/d")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("topsecret"), "{err}");
        let u = DbUrl::parse("postgres://u:topsecret@h/d").unwrap();
        assert!(!format!("{u:?} {u}").contains("topsecret"));
    }

    #[test]
    fn connection_errors_never_print_the_password() {
        // Nothing listens on port 1: the connection fails fast.
        let err = match DbConnection::connect(
            "postgres://cvm:topsecret@127.0.0.1:1/cvm?connect_timeout=2",
        ) {
            Ok(_) => panic!("port 1 accepted a connection"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("postgres://cvm:***@127.0.0.1:1/cvm"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }
}
