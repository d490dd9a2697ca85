//! A connection pool for long-running services (the portal), over diesel's
//! r2d2 support. Pooled connections are opened like any other
//! ([`DbConnection::open`]: SQLite gets WAL, the busy timeout and foreign
//! keys) and never migrate: a service applies migrations once, explicitly,
//! at start ([`DbConnection::open_for_write`]).
//!
//! Checking a connection out blocks the calling thread (up to
//! [`CHECKOUT_TIMEOUT`]), as do the queries: async callers run both on a
//! blocking thread pool (the portal uses `actix_web::web::block`).
//!
//! [`build_observed`] calls a hook for every SQL statement the pool's
//! connections start (the portal counts them in its metrics, and its tests
//! bound the statements of a query with that count).

use std::sync::Arc;
use std::time::Duration;

use diesel::Connection;
use diesel::connection::InstrumentationEvent;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};

use super::{DbConnection, DbError, DbUrl};

/// How long a checkout waits for a free (or new) connection before failing.
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pool of connections to one database.
pub type DbPool = Pool<Manager>;

/// A connection checked out of a [`DbPool`] (returned to it on drop).
pub type PooledDb = PooledConnection<Manager>;

/// Called once for every SQL statement a pooled connection starts.
pub type StatementHook = Arc<dyn Fn() + Send + Sync>;

/// Opens connections for the pool from a parsed URL.
pub struct Manager {
    url: DbUrl,
    on_statement: Option<StatementHook>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("url", &self.url)
            .field("observed", &self.on_statement.is_some())
            .finish()
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        let mut c = DbConnection::open(&self.url)?;
        if let Some(hook) = &self.on_statement {
            let hook = Arc::clone(hook);
            c.set_instrumentation(move |event: InstrumentationEvent<'_>| {
                if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                    hook();
                }
            });
        }
        Ok(c)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        crate::with_backend!(conn, c => c.ping()).map_err(|e| DbError::Connect {
            url: self.url.redacted().to_string(),
            message: self.url.scrub(&e.to_string()),
        })
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        crate::with_backend!(conn, c => c.is_broken())
    }
}

/// A pool of at most `max_size` connections to `url`. Opens one connection
/// at once, so an unreachable database is an error here, not at the first request.
pub fn build(url: &DbUrl, max_size: u32) -> Result<DbPool, DbError> {
    build_observed(url, max_size, None)
}

/// [`build`], calling `on_statement` for every statement its connections start.
pub fn build_observed(
    url: &DbUrl,
    max_size: u32,
    on_statement: Option<StatementHook>,
) -> Result<DbPool, DbError> {
    Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        // r2d2 logs connection errors itself; ours go through the caller.
        .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
        .build(Manager {
            url: url.clone(),
            on_statement,
        })
        .map_err(|e| DbError::Connect {
            url: url.redacted().to_string(),
            message: url.scrub(&e.to_string()),
        })
}

/// Checks a connection out of `pool` (blocking up to [`CHECKOUT_TIMEOUT`]).
pub fn checkout(pool: &DbPool) -> Result<PooledDb, DbError> {
    checkout_within(pool, CHECKOUT_TIMEOUT)
}

/// Checks a connection out of `pool`, waiting at most `timeout` (health probes).
pub fn checkout_within(pool: &DbPool, timeout: Duration) -> Result<PooledDb, DbError> {
    pool.get_timeout(timeout).map_err(|e| DbError::Checkout {
        message: e.to_string(),
    })
}
