//! The `unsubscribes` table: the audit trail of email opt-outs.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::unsubscribes;
use crate::db::{DbConnection, DbError};

/// An unsubscribe to record.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = unsubscribes, treat_none_as_default_value = false)]
pub struct NewUnsubscribe<'a> {
    /// The customer, when known.
    pub customer_id: Option<&'a str>,
    /// The address.
    pub email: &'a str,
    /// When.
    pub at: NaiveDateTime,
    /// `link`, `staff`, `complaint`, ...
    pub source: &'a str,
}

/// A stored unsubscribe.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = unsubscribes)]
pub struct Unsubscribe {
    /// Surrogate key.
    pub id: i64,
    /// The customer, when known.
    pub customer_id: Option<String>,
    /// The address.
    pub email: String,
    /// When.
    pub at: NaiveDateTime,
    /// Source.
    pub source: String,
}

/// Records an unsubscribe.
pub fn insert(conn: &mut DbConnection, row: &NewUnsubscribe<'_>) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(unsubscribes::table).values(row).execute(conn))
        .map_err(DbError::query("unsubscribes", "insert"))?;
    Ok(())
}

/// Whether an address has ever unsubscribed.
pub fn is_unsubscribed(conn: &mut DbConnection, email: &str) -> Result<bool, DbError> {
    let n: i64 = crate::with_backend!(conn, conn => unsubscribes::table
        .filter(unsubscribes::email.eq(email))
        .count()
        .get_result(conn))
    .map_err(DbError::query("unsubscribes", "select"))?;
    Ok(n > 0)
}
