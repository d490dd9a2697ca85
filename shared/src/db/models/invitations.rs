//! The `invitations` table: one per survey and customer (a unique
//! constraint), each with its signed link token stored only as a hash.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::answers::Answer;
use super::customers::Customer;
use super::surveys::Survey;
use crate::db::schema::{answers, customers, invitations, surveys};
use crate::db::{DbConnection, DbError};

/// Rows per INSERT of [`insert_new`] (7 columns each: far under SQLite's
/// 32,766 variables and PostgreSQL's 65,535 parameters).
const INSERT_ROWS: usize = 1000;

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

/// Keeps only the answered (`Some(true)`) or unanswered (`Some(false)`)
/// invitations of a boxed query joined with `answers`.
macro_rules! answered_only {
    ($q:ident, $answered:expr) => {
        match $answered {
            Some(true) => $q = $q.filter(answers::id.is_not_null()),
            Some(false) => $q = $q.filter(answers::id.is_null()),
            None => {}
        }
    };
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

/// Inserts `rows` in one transaction, skipping each whose survey and customer
/// already have an invitation; returns how many were inserted. The unique
/// constraint decides (`ON CONFLICT DO NOTHING`), not a prior read, so
/// concurrent calls for one survey never invite a customer twice.
pub fn insert_new(conn: &mut DbConnection, rows: &[NewInvitation<'_>]) -> Result<usize, DbError> {
    conn.transaction::<_, DbError, _>(|conn| {
        let mut inserted = 0;
        for part in rows.chunks(INSERT_ROWS) {
            inserted += crate::with_backend!(conn, c => diesel::insert_into(invitations::table)
                .values(part)
                .on_conflict_do_nothing()
                .execute(c))
            .map_err(DbError::query("invitations", "insert new"))?;
        }
        Ok(inserted)
    })
}

/// The invitation whose link token has this hash, with its survey and its
/// answer (one statement: the survey page's and the submission's lookup).
pub fn with_survey_by_token_hash(
    conn: &mut DbConnection,
    token_hash: &str,
) -> Result<Option<(Invitation, Survey, Option<Answer>)>, DbError> {
    crate::with_backend!(conn, conn => invitations::table
        .inner_join(surveys::table)
        .left_join(answers::table)
        .filter(invitations::token_hash.eq(token_hash))
        .select((
            Invitation::as_select(),
            Survey::as_select(),
            Option::<Answer>::as_select(),
        ))
        .first(conn)
        .optional())
    .map_err(DbError::query("invitations", "select by token"))
}

/// A survey's invitations after id `after` (all with None), by id, at most
/// `limit`, each with its customer and answer; `answered` keeps only the
/// answered (true) or unanswered (false) ones.
pub fn page(
    conn: &mut DbConnection,
    survey_id: i64,
    answered: Option<bool>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<(Invitation, Customer, Option<Answer>)>, DbError> {
    crate::with_backend!(conn, conn => {
        let mut q = invitations::table
            .inner_join(customers::table)
            .left_join(answers::table)
            .filter(invitations::survey_id.eq(survey_id))
            .filter(invitations::id.gt(after.unwrap_or(0)))
            .select((
                Invitation::as_select(),
                Customer::as_select(),
                Option::<Answer>::as_select(),
            ))
            .order(invitations::id.asc())
            .limit(limit)
            .into_boxed();
        answered_only!(q, answered);
        q.load(conn)
    })
    .map_err(DbError::query("invitations", "select page"))
}

/// How many invitations a survey has (only the answered or unanswered ones
/// with `answered`).
pub fn count(
    conn: &mut DbConnection,
    survey_id: i64,
    answered: Option<bool>,
) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => {
        let mut q = invitations::table
            .left_join(answers::table)
            .filter(invitations::survey_id.eq(survey_id))
            .count()
            .into_boxed();
        answered_only!(q, answered);
        q.get_result(conn)
    })
    .map_err(DbError::query("invitations", "count"))
}
