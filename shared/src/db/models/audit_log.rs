//! The `audit_log` table: staff access to personal data. Every staff request
//! that returned a customer's personal fields, every export and every
//! erasure, with who (the token's name, or `cli:<user>`), when and which
//! customers. Erased customers appear under their pseudonym.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;
use crate::db::schema::{audit_log, audit_log_customers};
use crate::db::{DbConnection, DbError};

text_enum! {
    /// What was done.
    pub enum AuditAction {
        /// A staff request returned personal fields (email, phone, names,
        /// survey comments, message addresses) of these customers.
        ReadPersonal = "read_personal",
        /// A customer's data was exported (right of access).
        Export = "export",
        /// A customer was erased (right to be forgotten).
        Erase = "erase",
        /// Staff changed a customer's email consent.
        Consent = "consent",
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    /// Surrogate key (newer entries have larger ids).
    pub id: i64,
    /// When.
    pub at: NaiveDateTime,
    /// Who: the staff token's name, or `cli:<user>`.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The GraphQL operation, or the reason given.
    pub detail: Option<String>,
}

/// An audit record to write.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = audit_log, treat_none_as_default_value = false)]
pub struct NewAuditEntry<'a> {
    /// When.
    pub at: NaiveDateTime,
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: AuditAction,
    /// The operation, or the reason given.
    pub detail: Option<&'a str>,
}

/// Writes an audit record of `entry` concerning `customer_ids` (repeats
/// are written once); returns its id. Call it inside a transaction.
pub fn insert(
    conn: &mut DbConnection,
    entry: &NewAuditEntry<'_>,
    customer_ids: &[impl AsRef<str>],
) -> Result<i64, DbError> {
    let id: i64 = crate::with_backend!(conn, conn => diesel::insert_into(audit_log::table)
        .values(entry)
        .returning(audit_log::id)
        .get_result(conn))
    .map_err(DbError::query("audit_log", "insert"))?;
    let mut ids: Vec<&str> = customer_ids.iter().map(AsRef::as_ref).collect();
    ids.sort_unstable();
    ids.dedup();
    // Bounded inserts: SQLite caps bound parameters.
    for chunk in ids.chunks(400) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|c| {
                (
                    audit_log_customers::customer_id.eq(*c),
                    audit_log_customers::audit_id.eq(id),
                )
            })
            .collect();
        crate::with_backend!(conn, conn => diesel::insert_into(audit_log_customers::table)
            .values(&rows)
            .execute(conn))
        .map_err(DbError::query("audit_log_customers", "insert"))?;
    }
    Ok(id)
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries concerning this customer id (or pseudonym).
    pub customer_id: Option<String>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only entries older than this id (the next page).
    pub before_id: Option<i64>,
}

/// The entries matching `q` as a boxed query (filters only).
macro_rules! matching {
    ($q:expr) => {{
        let q: &AuditQuery = $q;
        let mut query = audit_log::table.into_boxed();
        if let Some(id) = &q.customer_id {
            query = query.filter(
                audit_log::id.eq_any(
                    audit_log_customers::table
                        .filter(audit_log_customers::customer_id.eq(id.clone()))
                        .select(audit_log_customers::audit_id),
                ),
            );
        }
        if let Some(action) = q.action {
            query = query.filter(audit_log::action.eq(action));
        }
        if let Some(before) = q.before_id {
            query = query.filter(audit_log::id.lt(before));
        }
        query
    }};
}

/// The newest entries matching `q`, at most `limit`, newest first.
pub fn list(
    conn: &mut DbConnection,
    q: &AuditQuery,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    crate::with_backend!(conn, conn => matching!(q)
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditEntry::as_select())
        .load(conn))
    .map_err(DbError::query("audit_log", "select"))
}

/// How many entries match `q` (every page).
pub fn count(conn: &mut DbConnection, q: &AuditQuery) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => matching!(q).count().get_result(conn))
        .map_err(DbError::query("audit_log", "count"))
}

/// The customers of each entry in `ids` (entry id, customer id), ordered.
pub fn customers_of(conn: &mut DbConnection, ids: &[i64]) -> Result<Vec<(i64, String)>, DbError> {
    crate::with_backend!(conn, conn => audit_log_customers::table
        .filter(audit_log_customers::audit_id.eq_any(ids))
        .order((audit_log_customers::audit_id, audit_log_customers::customer_id))
        .select((audit_log_customers::audit_id, audit_log_customers::customer_id))
        .load(conn))
    .map_err(DbError::query("audit_log_customers", "select"))
}
