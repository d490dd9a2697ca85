//! The `answers` table: at most one answer per invitation, enforced by a
//! unique constraint; a later submission replaces the whole answer in place.

use chrono::{NaiveDateTime, Timelike};
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::{answers, invitations, scores};
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
    // PostgreSQL keeps microseconds: a finer `at` would never equal the
    // stored `answered_at`, and every first answer would look replaced.
    let at = at
        .with_nanosecond(at.nanosecond() / 1000 * 1000)
        .unwrap_or(at);
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

/// One line of a survey's answer export: the answer, its invitation, and
/// the customer's latest scores (None when never scored).
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct ExportRow {
    /// The answer's id (the export's order and resume point).
    pub id: i64,
    /// The invitation answered.
    pub invitation_id: i64,
    /// The customer who answered.
    pub customer_id: String,
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
    /// The campaign whose email carried the invitation.
    pub campaign_id: Option<i64>,
    /// The customer's RFM segment.
    pub rfm_segment: Option<String>,
    /// The customer's lifecycle stage.
    pub lifecycle_stage: Option<String>,
    /// The customer's value tier.
    pub value_tier: Option<String>,
    /// The customer's 12-month CLV.
    pub clv_12m: Option<f64>,
}

/// Up to `limit` answers to a survey with an id above `after`, by id: one
/// chunk of a streamed export (keyset, so a chunk costs the same wherever
/// it starts).
pub fn export_chunk(
    conn: &mut DbConnection,
    survey_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<ExportRow>, DbError> {
    crate::with_backend!(conn, conn => answers::table
        .inner_join(invitations::table)
        .left_join(scores::table.on(scores::customer_id.eq(invitations::customer_id)))
        .filter(invitations::survey_id.eq(survey_id))
        .filter(answers::id.gt(after))
        .order(answers::id.asc())
        .limit(limit)
        .select((
            answers::id,
            answers::invitation_id,
            invitations::customer_id,
            answers::score,
            answers::csat,
            answers::comment,
            answers::answered_at,
            answers::updated_at,
            invitations::campaign_id,
            scores::rfm_segment.nullable(),
            scores::lifecycle_stage.nullable(),
            scores::value_tier.nullable(),
            scores::clv_12m.nullable(),
        ))
        .load(conn))
    .map_err(DbError::query("answers", "select export"))
}
