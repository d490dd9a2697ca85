//! The `surveys` table: an NPS question, optionally a CSAT question and a
//! comment prompt, open between `opens_at` and `closes_at` unless closed.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;
use crate::db::schema::surveys;
use crate::db::{DbConnection, DbError};

text_enum! {
    /// Whether a survey still accepts answers (within its window).
    pub enum SurveyStatus {
        /// Accepts answers between `opens_at` and `closes_at`.
        Open = "open",
        /// Closed by staff: accepts nothing more.
        Closed = "closed",
    }
}

/// A survey to create.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = surveys, treat_none_as_default_value = false)]
pub struct NewSurvey<'a> {
    /// Display name.
    pub name: &'a str,
    /// NPS question.
    pub question: &'a str,
    /// CSAT question, if any.
    pub csat_question: Option<&'a str>,
    /// Comment prompt, if any.
    pub comment_prompt: Option<&'a str>,
    /// Opening time (UTC).
    pub opens_at: NaiveDateTime,
    /// Closing time (UTC), if any.
    pub closes_at: Option<NaiveDateTime>,
    /// Initial status.
    pub status: SurveyStatus,
    /// Staff name of the creator.
    pub created_by: &'a str,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
}

/// A stored survey.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = surveys)]
pub struct Survey {
    /// Surrogate key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// NPS question.
    pub question: String,
    /// CSAT question, if any.
    pub csat_question: Option<String>,
    /// Comment prompt, if any.
    pub comment_prompt: Option<String>,
    /// Opening time (UTC).
    pub opens_at: NaiveDateTime,
    /// Closing time (UTC), if any.
    pub closes_at: Option<NaiveDateTime>,
    /// Status.
    pub status: SurveyStatus,
    /// Staff name of the creator.
    pub created_by: String,
    /// Creation time (UTC).
    pub created_at: NaiveDateTime,
    /// When closed by staff.
    pub closed_at: Option<NaiveDateTime>,
}

impl Survey {
    /// Whether answers are accepted at `now`.
    pub fn accepts_answers_at(&self, now: NaiveDateTime) -> bool {
        self.status == SurveyStatus::Open
            && self.opens_at <= now
            && self.closes_at.is_none_or(|c| now < c)
    }
}

/// Creates a survey and returns it.
pub fn insert(conn: &mut DbConnection, row: &NewSurvey<'_>) -> Result<Survey, DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(surveys::table)
        .values(row)
        .returning(Survey::as_returning())
        .get_result(conn))
    .map_err(DbError::query("surveys", "insert"))
}

/// One survey by id.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<Survey>, DbError> {
    crate::with_backend!(conn, conn => surveys::table
        .find(id)
        .select(Survey::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("surveys", "select"))
}

/// Closes a survey (it accepts no more answers) and returns it; a survey
/// closed before keeps its first `closed_at`. None when there is no such survey.
pub fn close(
    conn: &mut DbConnection,
    id: i64,
    at: NaiveDateTime,
) -> Result<Option<Survey>, DbError> {
    crate::with_backend!(conn, conn => diesel::update(
            surveys::table
                .find(id)
                .filter(surveys::status.eq(SurveyStatus::Open)),
        )
        .set((surveys::status.eq(SurveyStatus::Closed), surveys::closed_at.eq(at)))
        .execute(conn))
    .map_err(DbError::query("surveys", "close"))?;
    find(conn, id)
}
