//! The `answers` table: at most one answer per invitation, enforced by a
//! unique constraint; a later submission replaces the whole answer in place.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::{answers, invitations};
use crate::db::{DbConnection, DbError};

/// An answer as submitted.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = answers, treat_none_as_default_value = false)]
pub struct NewAnswer<'a> {
    /// The invitation answered.
    pub invitation_id: i64,
    /// NPS 0..10.
    pub score: i32,
    /// CSAT 1..5, if asked and given.
    pub csat: Option<i32>,
    /// Comment, verbatim.
    pub comment: Option<&'a str>,
    /// Submission time (UTC).
    pub answered_at: NaiveDateTime,
    /// Submission time again (UTC).
    pub updated_at: NaiveDateTime,
}

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = answers)]
pub struct Answer {
    /// Surrogate key.
    pub id: i64,
    /// The invitation answered.
    pub invitation_id: i64,
    /// NPS 0..10.
    pub score: i32,
    /// CSAT 1..5.
    pub csat: Option<i32>,
    /// Comment, verbatim.
    pub comment: Option<String>,
    /// First submission (UTC).
    pub answered_at: NaiveDateTime,
    /// Latest submission (UTC).
    pub updated_at: NaiveDateTime,
}

/// Stores the answer to an invitation in one statement: inserted, or, when
/// the invitation was answered before, replaced whole (score, CSAT and
/// comment; the first `answered_at` is kept). Concurrent submissions of one
/// invitation therefore never make a second row. Returns the stored answer
/// and whether an earlier one was replaced.
pub fn upsert(
    conn: &mut DbConnection,
    invitation_id: i64,
    score: i32,
    csat: Option<i32>,
    comment: Option<&str>,
    at: NaiveDateTime,
) -> Result<(Answer, bool), DbError> {
    let row = NewAnswer {
        invitation_id,
        score,
        csat,
        comment,
        answered_at: at,
        updated_at: at,
    };
    let stored: Answer = crate::with_backend!(conn, conn => diesel::insert_into(answers::table)
        .values(&row)
        .on_conflict(answers::invitation_id)
        .do_update()
        .set((
            answers::score.eq(excluded(answers::score)),
            answers::csat.eq(excluded(answers::csat)),
            answers::comment.eq(excluded(answers::comment)),
            answers::updated_at.eq(excluded(answers::updated_at)),
        ))
        .returning(Answer::as_returning())
        .get_result(conn))
    .map_err(DbError::query("answers", "upsert"))?;
    let replaced = stored.answered_at != at;
    Ok((stored, replaced))
}

/// The answer to an invitation, if any.
pub fn by_invitation(
    conn: &mut DbConnection,
    invitation_id: i64,
) -> Result<Option<Answer>, DbError> {
    crate::with_backend!(conn, conn => answers::table
        .filter(answers::invitation_id.eq(invitation_id))
        .select(Answer::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("answers", "select"))
}

/// Every NPS answer as (customer, time of its latest submission, score),
/// oldest first: what the nightly scoring reads as `nps_last`.
pub fn nps_answers(conn: &mut DbConnection) -> Result<Vec<(String, NaiveDateTime, i32)>, DbError> {
    crate::with_backend!(conn, conn => answers::table
        .inner_join(invitations::table)
        .order((answers::updated_at.asc(), answers::id.asc()))
        .select((invitations::customer_id, answers::updated_at, answers::score))
        .load(conn))
    .map_err(DbError::query("answers", "select nps answers"))
}
