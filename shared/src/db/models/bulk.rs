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
//! - SQLite: multi-row INSERTs prepared once ([`super::sqlite_insert`]) into
//!   a temporary staging table (in memory, see the connection setup), then
//!   one `INSERT ... SELECT ... ON CONFLICT DO UPDATE` (a lookup per row
//!   either way; SQLite has no row locks).
//!
//! The staging table lives until the caller's `then` statement has run (the
//! customers' anti-join that flags vanished ones) and is dropped inside a
//! (nested) transaction, so a failure leaves neither rows nor the table behind.
//!
//! Bulk path: when the table is empty (a first load: every row is new, and
//! nobody can be reading rows that do not exist), the rows go straight into
//! it, with no staging table and no merge.
//!
//! - PostgreSQL: one `COPY` into the table, with its foreign keys and
//!   non-unique indexes dropped before and made again after, in the same
//!   transaction. Integrity is still checked, by one join when the foreign
//!   key is added back (a failure rolls everything back), instead of a
//!   trigger call per row (9 s of a million scores); each index is built by
//!   one sort instead of a million insertions. Trade-off: dropping them takes
//!   ACCESS EXCLUSIVE locks on the table and on the tables its foreign keys
//!   reference (for `scores`: `customers`) until the load commits, so
//!   readers of those tables wait for a first load instead of seeing the
//!   previous (empty) state. Only a first load pays this; reloads take the
//!   staged path and its row locks.
//! - SQLite: the same statements as staging, into the table itself. The
//!   writer holds the database's write lock anyway, and WAL readers keep
//!   reading the previous state.

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
    /// Run after the rows are staged, before they are merged (it sees the
    /// stored rows as they were): how a change is recorded as history.
    pub before_merge: Option<&'a str>,
    /// Run after a bulk insert into the empty table: the same history, for
    /// rows that are all new.
    pub after_bulk: Option<&'a str>,
}

impl Merge<'_> {
    fn create_sql(&self, backend: Backend) -> String {
        let (table, staging) = (self.table, self.staging);
        match backend {
            Backend::Postgres => {
                format!("CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS)")
            }
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

/// Where [`upsert`]'s `write` callback puts the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    /// The temporary staging table (the merge follows).
    Staging,
    /// The target table itself (it was empty: every row is new).
    Table,
}

/// A constraint's or an index's name and definition, from the catalog.
#[derive(QueryableByName)]
struct Ddl {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    def: String,
}

/// Whether a query found a row.
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
}

/// Writes `rows` with `write`, then merges them per `merge` and runs `then`
/// (if any) while the staging table still exists, all inside a transaction
/// (nested in the caller's, if any). When the table is empty, `write` puts
/// the rows straight into it instead (the bulk path, see the module doc) and
/// `then` is skipped: it must affect no row when the table holds only this
/// upsert's rows. Returns the rows inserted or updated and the rows `then`
/// affected.
pub(crate) fn upsert<R>(
    conn: &mut DbConnection,
    merge: &Merge<'_>,
    rows: &[R],
    write: impl FnOnce(&mut DbConnection, &[R], Dest) -> QueryResult<()>,
    then: Option<&str>,
) -> Result<(usize, usize), DbError> {
    let backend = conn.backend();
    let create = merge.create_sql(backend);
    let [upsert_sql, update_sql] = merge.merge_sql();
    let (table, staging) = (merge.table, merge.staging);
    let exec = |c: &mut DbConnection, sql: &str| crate::with_backend!(c, c => diesel::sql_query(sql).execute(c));
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        if backend == Backend::Sqlite {
            c.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB}"))?;
        }
        let started = std::time::Instant::now();
        // Only loads insert into these tables and they take turns (see the
        // module doc), so the answer holds until this transaction commits;
        // should another writer's row appear anyway, the primary key fails
        // the load rather than keeping two versions of a row.
        let found = format!("SELECT EXISTS (SELECT 1 FROM {table}) AS found");
        let occupied =
            crate::with_backend!(c, c => diesel::sql_query(&found).get_result::<Found>(c))?.found;
        if !occupied {
            bulk_insert(c, table, rows, write)?;
            if let Some(sql) = merge.after_bulk {
                exec(c, sql)?;
            }
            tracing::debug!(
                table,
                rows = rows.len(),
                ms = started.elapsed().as_millis() as u64,
                "bulk insert into an empty table"
            );
            return Ok((rows.len(), 0));
        }
        c.batch_execute(&create)?;
        if !rows.is_empty() {
            write(c, rows, Dest::Staging)?;
        }
        if backend == Backend::Postgres {
            // Row counts for the join plans (a temp table has none).
            c.batch_execute(&format!("ANALYZE {staging}"))?;
        }
        if let Some(sql) = merge.before_merge {
            exec(c, sql)?;
        }
        let staged = started.elapsed();
        let written = match backend {
            Backend::Sqlite => exec(c, &upsert_sql)?,
            Backend::Postgres => exec(c, &update_sql)? + exec(c, &merge.insert_new_sql())?,
        };
        let merged = started.elapsed();
        let then = match then {
            Some(sql) => exec(c, sql)?,
            None => 0,
        };
        c.batch_execute(&format!("DROP TABLE {staging}"))?;
        tracing::debug!(
            table,
            rows = rows.len(),
            stage_ms = staged.as_millis() as u64,
            merge_ms = (merged - staged).as_millis() as u64,
            then_ms = (started.elapsed() - merged).as_millis() as u64,
            "staged upsert"
        );
        Ok((written, then))
    })
    .map_err(DbError::query(merge.table, "upsert"))
}

/// The `write` callback of [`upsert`] for a table with a staging twin:
/// `COPY` into whichever `Dest` names on PostgreSQL, the prepared inserts of
/// [`super::sqlite_insert`] on SQLite. Use it where `?` returns a
/// `diesel::QueryResult`.
macro_rules! write_rows {
    ($conn:expr, $dest:expr, $rows:expr, $table:path, $staging:path) => {{
        use $crate::db::models::bulk::Dest;
        match ($conn, $dest) {
            ($crate::db::DbConnection::Pg(c), Dest::Staging) => {
                diesel::copy_from($staging)
                    .from_insertable($rows)
                    .execute(c)?;
            }
            ($crate::db::DbConnection::Pg(c), Dest::Table) => {
                diesel::copy_from($table)
                    .from_insertable($rows)
                    .execute(c)?;
            }
            ($crate::db::DbConnection::Sqlite(c), dest) => {
                $crate::db::models::sqlite_insert::insert(c, $rows, dest == Dest::Staging)?;
            }
        }
        Ok(())
    }};
}
pub(crate) use write_rows;

/// The bulk path of [`upsert`]: `rows` straight into the empty `table`. On
/// PostgreSQL its foreign keys and secondary indexes are dropped first and
/// made again afterwards: one join checks every row instead of a trigger
/// call per row, and a sort builds each index instead of a million
/// insertions (the locks this takes are in the module doc).
fn bulk_insert<R>(
    c: &mut DbConnection,
    table: &str,
    rows: &[R],
    write: impl FnOnce(&mut DbConnection, &[R], Dest) -> QueryResult<()>,
) -> QueryResult<()> {
    let (fks, indexes) = match c {
        DbConnection::Pg(pg) => {
            let fks = diesel::sql_query(format!(
                "SELECT quote_ident(conname) AS name, pg_get_constraintdef(oid) AS def \
                 FROM pg_constraint WHERE conrelid = '{table}'::regclass AND contype = 'f' \
                 ORDER BY conname"
            ))
            .load::<Ddl>(pg)?;
            // Unique indexes stay: they may back constraints (the primary key).
            let indexes = diesel::sql_query(format!(
                "SELECT quote_ident(c.relname) AS name, pg_get_indexdef(i.indexrelid) AS def \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE i.indrelid = '{table}'::regclass AND NOT i.indisunique \
                 ORDER BY c.relname"
            ))
            .load::<Ddl>(pg)?;
            (fks, indexes)
        }
        DbConnection::Sqlite(_) => (Vec::new(), Vec::new()),
    };
    for fk in &fks {
        c.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {}", fk.name))?;
    }
    for index in &indexes {
        c.batch_execute(&format!("DROP INDEX {}", index.name))?;
    }
    if !rows.is_empty() {
        write(c, rows, Dest::Table)?;
    }
    if !indexes.is_empty() {
        // Index builds sort in memory up to this (the default 64 MB spills).
        c.batch_execute("SET LOCAL maintenance_work_mem = '256MB'")?;
    }
    for index in &indexes {
        c.batch_execute(&index.def)?;
    }
    for fk in &fks {
        c.batch_execute(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            fk.name, fk.def
        ))?;
    }
    Ok(())
}

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
