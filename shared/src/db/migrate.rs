//! Embedded schema migrations, applied automatically by writers.
//!
//! Concurrency: two processes may open a fresh database at the same moment
//! (the nightly job and a portal instance). On PostgreSQL the migrations run
//! under a session advisory lock; on SQLite inside a `BEGIN EXCLUSIVE`
//! transaction (the database file's write lock, waited for through the busy
//! timeout). The second process then finds nothing pending: no double
//! application, no half-applied schema.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{DbConnection, DbError};

/// Migrations for SQLite (`migrations/sqlite`).
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
/// Migrations for PostgreSQL (`migrations/postgres`).
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Advisory lock key for migrations ("cvm_migr" in ASCII), unlikely to clash.
const PG_MIGRATION_LOCK: i64 = 0x6376_6d5f_6d69_6772;

fn failed(message: impl std::fmt::Display) -> DbError {
    // The caller fills in the (redacted) URL.
    DbError::Migrate {
        url: String::new(),
        message: message.to_string(),
    }
}

/// Refuses a database holding a migration newer than any this binary embeds
/// (`source`): its schema may have changed in ways this binary would misread
/// or break. Runs under the migration lock, since reading the applied versions
/// creates diesel's bookkeeping table on a fresh database.
fn refuse_newer<DB: diesel::backend::Backend>(
    c: &mut impl MigrationHarness<DB>,
    source: &EmbeddedMigrations,
) -> Result<(), DbError> {
    use diesel::migration::MigrationSource;
    let embedded: Vec<String> = MigrationSource::<DB>::migrations(source)
        .map_err(failed)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let latest = embedded.iter().max().cloned().unwrap_or_default();
    let newer = c
        .applied_migrations()
        .map_err(failed)?
        .into_iter()
        .map(|v| v.to_string())
        .filter(|v| *v > latest && !embedded.contains(v))
        .max();
    match newer {
        Some(version) => Err(DbError::NewerSchema {
            url: String::new(),
            version,
            latest,
        }),
        None => Ok(()),
    }
}

/// Applies the pending migrations; returns the versions applied (empty when
/// the schema was already current). Refuses a database migrated by a newer
/// binary ([`DbError::NewerSchema`]).
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    match conn {
        DbConnection::Sqlite(c) => {
            // Checked first without the write lock (WAL readers never wait): a
            // current schema must not fail to open because a load is writing.
            if !c.has_pending_migration(SQLITE_MIGRATIONS).map_err(failed)? {
                // Nothing to apply, so the bookkeeping table exists: a read.
                refuse_newer(c, &SQLITE_MIGRATIONS)?;
                return Ok(Vec::new());
            }
            c.exclusive_transaction(|c| {
                refuse_newer(c, &SQLITE_MIGRATIONS)?;
                c.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                    .map_err(failed)
            })
            // BEGIN/COMMIT failures are migration failures here.
            .map_err(|e| match e {
                DbError::Query { cause, .. } => failed(cause),
                other => other,
            })
        }
        DbConnection::Pg(c) => {
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<BigInt, _>(PG_MIGRATION_LOCK)
                .execute(c)
                .map_err(failed)?;
            let result = refuse_newer(c, &POSTGRES_MIGRATIONS).and_then(|()| {
                c.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                    .map_err(failed)
            });
            // Unlock even after a failure; closing the session would also release it.
            let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(PG_MIGRATION_LOCK)
                .execute(c)
                .map_err(failed);
            let applied = result?;
            unlocked?;
            Ok(applied)
        }
    }
}

/// The versions recorded as applied in the database, oldest first.
pub fn applied(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let versions = crate::with_backend!(conn, c => c.applied_migrations().map_err(failed)?);
    let mut out: Vec<String> = versions.iter().map(|v| v.to_string()).collect();
    out.sort();
    Ok(out)
}

/// The versions this binary embeds for the connection's backend.
pub fn embedded(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    use diesel::migration::MigrationSource;
    let mut out: Vec<String> = match conn {
        DbConnection::Sqlite(_) => {
            MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map_err(failed)?
                .iter()
                .map(|m| m.name().version().to_string())
                .collect()
        }
        DbConnection::Pg(_) => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
            .map_err(failed)?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect(),
    };
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use crate::db::DbConnection;
    use crate::db::testing::TestDb;

    #[test]
    fn a_busy_sqlite_database_with_a_current_schema_opens_for_write() {
        let db = TestDb::sqlite();
        DbConnection::connect_for_write(&db.url).unwrap();
        // Another writer holds the write lock (a load in progress).
        let path = db.url.trim_start_matches("sqlite://");
        let mut writer = SqliteConnection::establish(path).unwrap();
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        let opened = DbConnection::connect_for_write(&db.url);
        assert!(opened.is_ok(), "{:?}", opened.err());
        writer.batch_execute("ROLLBACK").unwrap();
    }
}
