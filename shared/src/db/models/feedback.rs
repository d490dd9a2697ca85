//! The `feedback` table: survey invitations (a token per link) and answers.
//! A row is created when a survey link is issued and filled when answered.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::feedback;
use crate::db::{DbConnection, DbError};

/// A survey invitation (or a directly given answer) to insert.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = feedback, treat_none_as_default_value = false)]
pub struct NewFeedback<'a> {
    /// Who is asked.
    pub customer_id: &'a str,
    /// `nps` or `csat`.
    pub survey: &'a str,
    /// The answer, if already known.
    pub score: Option<i32>,
    /// Comment.
    pub comment: Option<&'a str>,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Answer time.
    pub answered_at: Option<NaiveDateTime>,
    /// Campaign that carried the link.
    pub campaign_id: Option<i64>,
    /// Unguessable link token (unique).
    pub token: &'a str,
}

/// A stored feedback row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = feedback)]
pub struct Feedback {
    /// Surrogate key.
    pub id: i64,
    /// Who is asked.
    pub customer_id: String,
    /// `nps` or `csat`.
    pub survey: String,
    /// The answer.
    pub score: Option<i32>,
    /// Comment.
    pub comment: Option<String>,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Answer time.
    pub answered_at: Option<NaiveDateTime>,
    /// Campaign that carried the link.
    pub campaign_id: Option<i64>,
    /// Link token.
    pub token: String,
}

/// Inserts one row.
pub fn insert(conn: &mut DbConnection, row: &NewFeedback<'_>) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(feedback::table).values(row).execute(conn))
        .map_err(DbError::query("feedback", "insert"))?;
    Ok(())
}

/// The row of a survey link token.
pub fn by_token(conn: &mut DbConnection, token: &str) -> Result<Option<Feedback>, DbError> {
    crate::with_backend!(conn, conn => feedback::table
        .filter(feedback::token.eq(token))
        .select(Feedback::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("feedback", "select"))
}

/// Records the answer of a link once; returns false if the token is unknown
/// or was already answered (links are single-use).
pub fn answer(
    conn: &mut DbConnection,
    token: &str,
    score: i32,
    comment: Option<&str>,
    at: NaiveDateTime,
) -> Result<bool, DbError> {
    use feedback::dsl as f;
    let n = crate::with_backend!(conn, conn => diesel::update(f::feedback.filter(f::token.eq(token)).filter(f::answered_at.is_null()))
        .set((f::score.eq(Some(score)), f::comment.eq(comment), f::answered_at.eq(Some(at))))
        .execute(conn))
    .map_err(DbError::query("feedback", "answer"))?;
    Ok(n == 1)
}

/// Every answered NPS survey as (customer, answered at, score), oldest first:
/// what the nightly scoring reads as `nps_last`.
pub fn nps_answers(conn: &mut DbConnection) -> Result<Vec<(String, NaiveDateTime, i32)>, DbError> {
    use feedback::dsl as f;
    let rows: Vec<(String, Option<NaiveDateTime>, Option<i32>)> =
        crate::with_backend!(conn, conn => f::feedback
        .filter(f::survey.eq("nps"))
        .filter(f::answered_at.is_not_null())
        .filter(f::score.is_not_null())
        .order((f::answered_at.asc(), f::id.asc()))
        .select((f::customer_id, f::answered_at, f::score))
        .load(conn))
        .map_err(DbError::query("feedback", "select nps answers"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, at, s)| Some((c, at?, s?)))
        .collect())
}
