//! The `invitations` table: one per survey and customer (a unique
//! constraint), each with its signed link token stored only as a hash.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::invitations;
use crate::db::{DbConnection, DbError};

/// An invitation to create.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = invitations, treat_none_as_default_value = false)]
pub struct NewInvitation<'a> {
    /// The survey.
    pub survey_id: i64,
    /// The invited customer.
    pub customer_id: &'a str,
    /// SHA-256 of the link token.
    pub token_hash: &'a str,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Expiry (UTC).
    pub expires_at: NaiveDateTime,
    /// The campaign carrying the link, if any.
    pub campaign_id: Option<i64>,
}

/// A stored invitation.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    /// Surrogate key.
    pub id: i64,
    /// The survey.
    pub survey_id: i64,
    /// The invited customer.
    pub customer_id: String,
    /// SHA-256 of the link token.
    pub token_hash: String,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Expiry (UTC).
    pub expires_at: NaiveDateTime,
    /// The campaign carrying the link, if any.
    pub campaign_id: Option<i64>,
}

/// Creates an invitation; returns its id.
pub fn insert(conn: &mut DbConnection, row: &NewInvitation<'_>) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(invitations::table)
        .values(row)
        .returning(invitations::id)
        .get_result(conn))
    .map_err(DbError::query("invitations", "insert"))
}

/// The invitation whose link token has this hash.
pub fn by_token_hash(
    conn: &mut DbConnection,
    token_hash: &str,
) -> Result<Option<Invitation>, DbError> {
    crate::with_backend!(conn, conn => invitations::table
        .filter(invitations::token_hash.eq(token_hash))
        .select(Invitation::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("invitations", "select"))
}
