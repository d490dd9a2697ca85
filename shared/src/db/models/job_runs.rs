//! The `job_runs` table: one row per run of a job, for operators and the portal.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::job_runs;
use crate::db::{DbConnection, DbError};

/// A stored job run.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = job_runs, treat_none_as_default_value = false)]
pub struct JobRun {
    /// Run id.
    pub run_id: String,
    /// The command (`load`, `nightly`, ...).
    pub command: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Start time (UTC).
    pub started_at: NaiveDateTime,
    /// End time (UTC).
    pub finished_at: Option<NaiveDateTime>,
    /// As-of date worked on.
    pub as_of: Option<NaiveDate>,
    /// JSON summary.
    pub summary: Option<String>,
    /// One-line error.
    pub error: Option<String>,
}

/// Records the start of a run (status `running`).
pub fn start(
    conn: &mut DbConnection,
    run_id: &str,
    command: &str,
    started_at: NaiveDateTime,
    as_of: Option<NaiveDate>,
) -> Result<(), DbError> {
    let row = JobRun {
        run_id: run_id.into(),
        command: command.into(),
        status: "running".into(),
        started_at,
        finished_at: None,
        as_of,
        summary: None,
        error: None,
    };
    crate::with_backend!(conn, conn => diesel::insert_into(job_runs::table).values(&row).execute(conn))
        .map_err(DbError::query("job_runs", "insert"))?;
    Ok(())
}

/// Records the end of a run: `succeeded` with a summary, or `failed` with an error.
pub fn finish(
    conn: &mut DbConnection,
    run_id: &str,
    finished_at: NaiveDateTime,
    outcome: Result<&serde_json::Value, &str>,
) -> Result<(), DbError> {
    use job_runs::dsl as j;
    let (status, summary, error) = match outcome {
        Ok(s) => ("succeeded", Some(s.to_string()), None),
        Err(e) => ("failed", None, Some(e.to_string())),
    };
    crate::with_backend!(conn, conn => diesel::update(j::job_runs.find(run_id))
        .set((j::status.eq(status), j::finished_at.eq(Some(finished_at)), j::summary.eq(&summary), j::error.eq(&error)))
        .execute(conn))
    .map_err(DbError::query("job_runs", "update"))?;
    Ok(())
}

/// Marks the `running` runs of `command` as `failed` with `reason`: runs that
/// were killed before recording their end (the caller knows none is alive).
/// Returns how many.
pub fn fail_stale(
    conn: &mut DbConnection,
    command: &str,
    finished_at: NaiveDateTime,
    reason: &str,
) -> Result<usize, DbError> {
    use job_runs::dsl as j;
    crate::with_backend!(conn, conn => diesel::update(
        j::job_runs.filter(j::command.eq(command)).filter(j::status.eq("running")),
    )
    .set((j::status.eq("failed"), j::finished_at.eq(Some(finished_at)), j::error.eq(Some(reason))))
    .execute(conn))
    .map_err(DbError::query("job_runs", "update"))
}

/// One run by id.
pub fn find(conn: &mut DbConnection, run_id: &str) -> Result<Option<JobRun>, DbError> {
    crate::with_backend!(conn, conn => job_runs::table.find(run_id).select(JobRun::as_select()).first(conn).optional())
        .map_err(DbError::query("job_runs", "select"))
}

/// The latest runs of `command`, newest first.
pub fn latest(conn: &mut DbConnection, command: &str, limit: i64) -> Result<Vec<JobRun>, DbError> {
    crate::with_backend!(conn, conn => job_runs::table
        .filter(job_runs::command.eq(command))
        .order((job_runs::started_at.desc(), job_runs::run_id.desc()))
        .limit(limit)
        .select(JobRun::as_select())
        .load(conn))
    .map_err(DbError::query("job_runs", "select"))
}
