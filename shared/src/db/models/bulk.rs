//! Bulk upserts (the `load` job's customers and scores): the rows go to a
//! temporary staging table, then one `INSERT ... SELECT ... ON CONFLICT`
//! statement per table merges them, with the table's semantics written once
//! in a [`Merge`] and shared by both backends.
//!
//! - PostgreSQL: one binary `COPY ... FROM STDIN` of every row into the
//!   staging table, then one merge.
//! - SQLite: multi-row INSERTs into a temporary staging table, merged every
//!   [`SQLITE_STAGE_ROWS`] rows so the staging table stays small.
//!
//! The staging table is created and dropped inside a (nested) transaction,
//! so a failure leaves neither rows nor the table behind.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::db::{Backend, DbConnection, DbError};

/// Rows staged per merge on SQLite (bounds the in-memory staging table).
pub const SQLITE_STAGE_ROWS: usize = 100_000;

/// SQLite page cache for a bulk upsert, in KiB (the default 2 MiB thrashes
/// on tables of a million rows).
const SQLITE_CACHE_KIB: u32 = 256 * 1024;

/// How staged rows are merged into a table.
pub(crate) struct Merge<'a> {
    /// The target table.
    pub table: &'static str,
    /// The staging table (a `table!` with the target's columns).
    pub staging: &'static str,
    /// The conflict key.
    pub key: &'static str,
    /// Every column, the key included.
    pub columns: &'a [&'static str],
    /// The `DO UPDATE SET` list (`excluded.*` is the staged row).
    pub set: &'a str,
    /// The `DO UPDATE ... WHERE` condition: rows failing it are left as they are.
    pub guard: Option<&'a str>,
}

impl Merge<'_> {
    fn create_sql(&self, backend: Backend) -> String {
        let (table, staging) = (self.table, self.staging);
        match backend {
            Backend::Postgres => format!("CREATE TEMP TABLE {staging} (LIKE {table})"),
            Backend::Sqlite => {
                format!("CREATE TEMP TABLE {staging} AS SELECT * FROM main.{table} WHERE 0")
            }
        }
    }

    /// The one statement holding the table's upsert semantics. `WHERE true`
    /// keeps SQLite from reading `ON CONFLICT` as a join constraint.
    fn merge_sql(&self) -> String {
        let cols = self.columns.join(", ");
        let guard = self
            .guard
            .map(|g| format!(" WHERE {g}"))
            .unwrap_or_default();
        format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} WHERE true \
             ON CONFLICT ({key}) DO UPDATE SET {set}{guard}",
            table = self.table,
            staging = self.staging,
            key = self.key,
            set = self.set,
        )
    }
}

/// Stages `rows` with `stage` (called with slices of at most one merge's
/// rows) and merges them per `merge`, inside a transaction (nested in the
/// caller's, if any). Returns the rows inserted or updated.
pub(crate) fn upsert<R>(
    conn: &mut DbConnection,
    merge: &Merge<'_>,
    rows: &[R],
    mut stage: impl FnMut(&mut DbConnection, &[R]) -> QueryResult<()>,
) -> Result<usize, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let backend = conn.backend();
    let per_merge = match backend {
        Backend::Postgres => rows.len(),
        Backend::Sqlite => SQLITE_STAGE_ROWS,
    };
    let (create, merge_sql) = (merge.create_sql(backend), merge.merge_sql());
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        if backend == Backend::Sqlite {
            c.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))?;
        }
        c.batch_execute(&create)?;
        let mut n = 0;
        let parts = rows.chunks(per_merge);
        let last = parts.len() - 1;
        for (i, part) in parts.enumerate() {
            stage(c, part)?;
            n += crate::with_backend!(c, c => diesel::sql_query(&merge_sql).execute(c))?;
            if i < last {
                c.batch_execute(&format!("DELETE FROM {}", merge.staging))?;
            }
        }
        c.batch_execute(&format!("DROP TABLE {}", merge.staging))?;
        Ok(n)
    })
    .map_err(DbError::query(merge.table, "upsert"))
}

/// Inserts `$rows` (a slice) into `$table` on a SQLite connection in
/// multi-row statements of `$batch` rows. Use it where `?` returns a
/// `diesel::QueryResult`. (The rows borrow their strings, so diesel cannot
/// cache these statements: a cached statement needs a `'static` query id.)
macro_rules! sqlite_insert_batches {
    ($conn:expr, $table:expr, $rows:expr, $batch:expr) => {{
        let conn: &mut diesel::SqliteConnection = $conn;
        for chunk in $rows.chunks($batch) {
            diesel::insert_into($table).values(chunk).execute(conn)?;
        }
    }};
}
pub(crate) use sqlite_insert_batches;

/// The `col = excluded.col` list for `columns`.
pub(crate) fn set_excluded(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
