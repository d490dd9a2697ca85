//! The `staff_users` table: marketing staff and their API token hashes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::staff_users;
use crate::db::{DbConnection, DbError};

/// A staff user to create.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = staff_users)]
pub struct NewStaffUser<'a> {
    /// Login email.
    pub email: &'a str,
    /// `admin`, `marketer` or `viewer`.
    pub role: &'a str,
    /// Hash of the API token.
    pub token_hash: &'a str,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

/// A stored staff user.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = staff_users)]
pub struct StaffUser {
    /// Surrogate key.
    pub id: i64,
    /// Login email.
    pub email: String,
    /// Role.
    pub role: String,
    /// Token hash.
    pub token_hash: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

/// Creates a staff user.
pub fn insert(conn: &mut DbConnection, row: &NewStaffUser<'_>) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(staff_users::table).values(row).execute(conn))
        .map_err(DbError::query("staff_users", "insert"))?;
    Ok(())
}

/// The staff user holding a token hash.
pub fn by_token_hash(
    conn: &mut DbConnection,
    token_hash: &str,
) -> Result<Option<StaffUser>, DbError> {
    crate::with_backend!(conn, conn => staff_users::table
        .filter(staff_users::token_hash.eq(token_hash))
        .select(StaffUser::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("staff_users", "select"))
}
