//! The `api_tokens` table: staff API tokens, several per staff name, each
//! with a role, stored only as a hash (the token is shown once, at creation).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;
use crate::db::schema::api_tokens;
use crate::db::{DbConnection, DbError};

text_enum! {
    /// What a staff token may do; each role can do everything the ones before it can.
    pub enum Role {
        /// Reads customers, scores, surveys and feedback.
        Viewer = "viewer",
        /// Also runs surveys and campaigns.
        Marketer = "marketer",
        /// Also manages tokens and data requests.
        Admin = "admin",
    }
}

/// A token to store.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiToken<'a> {
    /// Staff name.
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token.
    pub token_hash: &'a str,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
}

/// A stored token (its hash only).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    /// Surrogate key.
    pub id: i64,
    /// Staff name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token.
    pub token_hash: String,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// Last authenticated use (UTC).
    pub last_used_at: Option<NaiveDateTime>,
    /// Revocation time (UTC); a revoked token is refused.
    pub revoked_at: Option<NaiveDateTime>,
}

/// Stores a token; returns its id.
pub fn insert(conn: &mut DbConnection, row: &NewApiToken<'_>) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(api_tokens::table)
        .values(row)
        .returning(api_tokens::id)
        .get_result(conn))
    .map_err(DbError::query("api_tokens", "insert"))
}

/// The token with this hash, revoked or not.
pub fn by_hash(conn: &mut DbConnection, token_hash: &str) -> Result<Option<ApiToken>, DbError> {
    crate::with_backend!(conn, conn => api_tokens::table
        .filter(api_tokens::token_hash.eq(token_hash))
        .select(ApiToken::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("api_tokens", "select"))
}

/// Records a use of token `id` at `at`.
pub fn touch(conn: &mut DbConnection, id: i64, at: NaiveDateTime) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::update(api_tokens::table.find(id))
        .set(api_tokens::last_used_at.eq(Some(at)))
        .execute(conn))
    .map_err(DbError::query("api_tokens", "update last use"))?;
    Ok(())
}

/// Revokes every active token of staff `name` at `at`; returns how many.
pub fn revoke_by_name(
    conn: &mut DbConnection,
    name: &str,
    at: NaiveDateTime,
) -> Result<usize, DbError> {
    crate::with_backend!(conn, conn => diesel::update(api_tokens::table
            .filter(api_tokens::name.eq(name))
            .filter(api_tokens::revoked_at.is_null()))
        .set(api_tokens::revoked_at.eq(Some(at)))
        .execute(conn))
    .map_err(DbError::query("api_tokens", "revoke"))
}

/// Every token, revoked ones included, by name then creation.
pub fn list(conn: &mut DbConnection) -> Result<Vec<ApiToken>, DbError> {
    crate::with_backend!(conn, conn => api_tokens::table
        .order((api_tokens::name.asc(), api_tokens::created_at.asc(), api_tokens::id.asc()))
        .select(ApiToken::as_select())
        .load(conn))
    .map_err(DbError::query("api_tokens", "select"))
}
