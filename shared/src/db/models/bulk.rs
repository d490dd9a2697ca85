//! Bulk upserts (the `load` job's customers and scores): the rows go to a
//! temporary staging table, then merge statements write them, with the
//! table's semantics written once in a [`Merge`] and shared by both backends.
//!
//! - Only rows that change are written: the merge's guard includes "the
//!   stored row differs from what the merge would write", so reloading an
//!   unchanged row costs a lookup, not a write (no WAL, no index updates, no
//!   dead tuples on PostgreSQL).
//! - PostgreSQL: one binary `COPY ... FROM STDIN` of every row into the
//!   staging table, then an `UPDATE ... FROM` of the existing rows and a
//!   plain `INSERT ... SELECT` of the new ones (an anti-join: no speculative
//!   insertion, which costs about twice a plain insert). Callers serialize
//!   concurrent upserts of one table (the load job takes an advisory lock):
//!   rows another transaction inserted but has not committed would fail the
//!   insert on the primary key.
//! - SQLite: multi-row INSERTs into a temporary staging table (in memory, see
//!   the connection setup), then one `INSERT ... SELECT ... ON CONFLICT DO
//!   UPDATE` (a lookup per row either way; SQLite has no row locks).
//!
//! The staging table lives until the caller's `then` statement has run (the
//! customers' anti-join that flags vanished ones) and is dropped inside a
//! (nested) transaction, so a failure leaves neither rows nor the table behind.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::db::{Backend, DbConnection, DbError};

/// SQLite page cache for a bulk upsert, in KiB (the default 2 MiB thrashes
/// on tables of a million rows; a load of a million customers and scores
/// makes a file of about 500 MiB). It is a ceiling, not an allocation.
const SQLITE_CACHE_KIB: u32 = 1024 * 1024;

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
    /// The `DO UPDATE SET` list (`excluded.*` is the staged row, the table's
    /// name the stored one).
    pub set: &'a str,
    /// When a stored row is updated: rows failing it are left untouched. It
    /// must be false when `set` would write the values already stored.
    pub guard: &'a str,
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

    /// The statements writing the staged rows into the table: SQLite's one
    /// upsert (`WHERE true` keeps SQLite from reading `ON CONFLICT` as a join
    /// constraint); PostgreSQL's guarded update of the stored rows, then the
    /// insert of the new ones.
    fn merge_sql(&self) -> [String; 2] {
        let (table, staging, key, set, guard) =
            (self.table, self.staging, self.key, self.set, self.guard);
        let cols = self.columns.join(", ");
        [
            format!(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} WHERE true \
                 ON CONFLICT ({key}) DO UPDATE SET {set} WHERE {guard}"
            ),
            format!(
                "UPDATE {table} SET {set} FROM {staging} AS excluded \
                 WHERE {table}.{key} = excluded.{key} AND {guard}"
            ),
        ]
    }

    fn insert_new_sql(&self) -> String {
        let (table, staging, key) = (self.table, self.staging, self.key);
        let cols = self.columns.join(", ");
        format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} AS excluded \
             WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {table}.{key} = excluded.{key})"
        )
    }
}

/// Stages `rows` with `stage`, merges them per `merge`, then runs `then` (if
/// any) while the staging table still exists, all inside a transaction
/// (nested in the caller's, if any). Returns the rows inserted or updated and
/// the rows `then` affected.
pub(crate) fn upsert<R>(
    conn: &mut DbConnection,
    merge: &Merge<'_>,
    rows: &[R],
    stage: impl FnOnce(&mut DbConnection, &[R]) -> QueryResult<()>,
    then: Option<&str>,
) -> Result<(usize, usize), DbError> {
    let backend = conn.backend();
    let create = merge.create_sql(backend);
    let [upsert_sql, update_sql] = merge.merge_sql();
    let staging = merge.staging;
    let exec = |c: &mut DbConnection, sql: &str| crate::with_backend!(c, c => diesel::sql_query(sql).execute(c));
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        if backend == Backend::Sqlite {
            c.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))?;
        }
        c.batch_execute(&create)?;
        if !rows.is_empty() {
            stage(c, rows)?;
        }
        let written = match backend {
            Backend::Sqlite => exec(c, &upsert_sql)?,
            Backend::Postgres => {
                // Row counts for the join plans (a temp table has none).
                c.batch_execute(&format!("ANALYZE {staging}"))?;
                exec(c, &update_sql)? + exec(c, &merge.insert_new_sql())?
            }
        };
        let then = match then {
            Some(sql) => exec(c, sql)?,
            None => 0,
        };
        c.batch_execute(&format!("DROP TABLE {staging}"))?;
        Ok((written, then))
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

/// `(table.col, ...) IS DISTINCT FROM (excluded.col, ...)` for `columns`:
/// true when a column would change (NULLs compare equal; SQLite knows the
/// operator too).
pub(crate) fn distinct(table: &str, columns: &[&str]) -> String {
    let stored: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
    let incoming: Vec<String> = columns.iter().map(|c| format!("excluded.{c}")).collect();
    format!(
        "({}) IS DISTINCT FROM ({})",
        stored.join(", "),
        incoming.join(", ")
    )
}

/// The `col = excluded.col` list for `columns`.
pub(crate) fn set_excluded(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
