//! `cvm-etl nightly`: ingest, score and load in one run, under one lock.
//!
//! The warehouse lock is held from the first step to the last, so two nightly
//! runs never overlap (the second is refused at once, exit code 4). Each step
//! keeps its own run folder and manifest; the run as a whole is recorded in
//! the database's `job_runs` when a database is configured.

// NightlyError wraps every step's error by value (IngestError is 128 bytes,
// its FxConflict 112) and is matched on in depth for exit codes; it is
// returned once per run, so its size costs nothing. Clippy 1.95 flags it.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use cvm_shared::Settings;
use cvm_shared::db::models::job_runs;
use cvm_shared::db::{DbConnection, DbError, DbUrl};

use super::ingest::{self, IngestError, IngestOptions, IngestReport};
use super::load::{self, LoadError, LoadReport};
use super::score::{self, ScoreError, ScoreOptions, ScoreReport};
use crate::warehouse::publish::{PublishError, Warehouse};

/// What to run.
#[derive(Clone)]
pub struct NightlyOptions {
    /// The drop folder.
    pub input: PathBuf,
    /// The warehouse folder.
    pub warehouse: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`); no load without one.
    pub db_url: Option<String>,
    /// The day to score.
    pub as_of: NaiveDate,
    /// Validated settings.
    pub settings: Settings,
    /// Progress bars on a terminal.
    pub progress: bool,
}

// Options are formatted with {:?} in logs: never with a database password.
impl std::fmt::Debug for NightlyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NightlyOptions")
            .field("input", &self.input)
            .field("warehouse", &self.warehouse)
            .field(
                "db_url",
                &self.db_url.as_deref().map(cvm_shared::db::redact_url),
            )
            .field("as_of", &self.as_of)
            .field("settings", &self.settings)
            .field("progress", &self.progress)
            .finish()
    }
}

/// Why a nightly run failed, by step.
#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    /// Another run holds the warehouse lock.
    #[error(transparent)]
    Locked(PublishError),
    /// The ingest step failed (nothing was published).
    #[error("ingest: {0}")]
    Ingest(#[from] IngestError),
    /// The score step failed (the ingest is published; re-running is safe).
    #[error("score: {0}")]
    Score(#[from] ScoreError),
    /// The load step failed (warehouse and scores are published; re-running is safe).
    #[error("load: {0}")]
    Load(#[from] LoadError),
    /// The database could not be opened or the run recorded.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// Pending erasures could not be applied to the warehouse (nothing was ingested).
    #[error("erasures: {0}")]
    Privacy(#[from] crate::privacy::PrivacyError),
}

/// The reports of every step.
#[derive(Debug)]
pub struct NightlyReport {
    /// Ingest step.
    pub ingest: IngestReport,
    /// Score step.
    pub score: ScoreReport,
    /// Load step, when a database is configured.
    pub load: Option<LoadReport>,
}

/// Test hook: `CVM_TEST_CRASH_AT=after_<step>` aborts after a step.
fn crash_point(step: &str) {
    if std::env::var("CVM_TEST_CRASH_AT").is_ok_and(|p| p == format!("after_{step}")) {
        eprintln!("CVM_TEST_CRASH_AT=after_{step}: aborting as asked");
        std::process::abort();
    }
}

/// Today in `tz`: the default `--as-of`.
pub fn today_in(tz: chrono_tz::Tz) -> NaiveDate {
    Utc::now().with_timezone(&tz).date_naive()
}

/// Runs ingest, score and load.
pub fn run(opts: &NightlyOptions) -> Result<NightlyReport, NightlyError> {
    let found = ingest::discover(&opts.input)?;
    // Open the database first: a bad URL should fail before any work.
    let mut conn = match &opts.db_url {
        Some(url) => Some(DbConnection::open_for_write(&DbUrl::parse(url)?)?),
        None => None,
    };
    let wh = match Warehouse::open(&opts.warehouse) {
        Ok(w) => w,
        Err(e @ PublishError::Locked(_)) => return Err(NightlyError::Locked(e)),
        Err(e) => return Err(IngestError::from(e).into()),
    };
    let run_id = crate::manifest::new_run_id("nightly");
    if let Some(c) = conn.as_mut() {
        // We hold the warehouse lock, so no other nightly run is alive: a
        // `running` row left is a run that was killed before recording its end.
        // (A database serves one warehouse: loads flag customers missing from
        // it inactive.)
        let reason = format!(
            "stale: the run ended without recording an outcome (killed or crashed); marked failed by {run_id}, which found the warehouse lock free"
        );
        let stale = job_runs::fail_stale(c, "nightly", Utc::now().naive_utc(), &reason)?;
        if stale > 0 {
            tracing::warn!(
                runs = stale,
                "marked stale nightly runs in job_runs as failed"
            );
        }
        job_runs::start(
            c,
            &run_id,
            "nightly",
            Utc::now().naive_utc(),
            Some(opts.as_of),
        )?;
    }
    let result = steps(&wh, conn.as_mut(), opts, found);
    if let Some(c) = conn.as_mut() {
        let finished = Utc::now().naive_utc();
        let outcome = match &result {
            Ok(r) => Ok(summary_json(r)),
            Err(e) => Err(e.to_string()),
        };
        let recorded = match &outcome {
            Ok(s) => job_runs::finish(c, &run_id, finished, Ok(s)),
            Err(e) => job_runs::finish(c, &run_id, finished, Err(e)),
        };
        if let Err(e) = recorded {
            tracing::warn!(run_id, error = %e, "could not record the nightly run in job_runs");
        }
    }
    result
}

fn steps(
    wh: &Warehouse,
    conn: Option<&mut DbConnection>,
    opts: &NightlyOptions,
    found: crate::sources::Discovery,
) -> Result<NightlyReport, NightlyError> {
    let mut conn = conn;
    // Erasures made through the portal reach the warehouse before anything reads it.
    if let Some(c) = conn.as_deref_mut() {
        let outbox = std::path::PathBuf::from(&opts.settings.mail.outbox_dir);
        crate::privacy::apply_pending_if_any(c, wh, Some(&outbox))?;
    }
    let ingest = ingest::run_locked(
        wh,
        &IngestOptions {
            input: opts.input.clone(),
            warehouse: opts.warehouse.clone(),
            settings: opts.settings.clone(),
            progress: opts.progress,
            full_rebuild: false,
        },
        found,
    )?;
    crash_point("ingest");
    if let Some(c) = conn.as_deref_mut() {
        export_feedback(c, &opts.warehouse)?;
    }
    let score = score::run_locked(
        wh,
        &ScoreOptions {
            warehouse: opts.warehouse.clone(),
            as_of: opts.as_of,
            settings: opts.settings.clone(),
        },
    )?;
    crash_point("score");
    let load = match conn {
        Some(c) => Some(load::load(c, &opts.warehouse, Some(opts.as_of))?),
        None => None,
    };
    Ok(NightlyReport {
        ingest,
        score,
        load,
    })
}

/// Writes the portal's NPS answers to `warehouse/feedback/portal.csv`, where
/// scoring reads them: the warehouse then holds everything a score was
/// computed from, so any date can be re-scored without the database.
pub fn export_feedback(
    conn: &mut DbConnection,
    warehouse: &std::path::Path,
) -> Result<usize, NightlyError> {
    let rows = cvm_shared::db::models::answers::nps_answers(conn)?;
    let dir = warehouse.join("feedback");
    let io = |source: std::io::Error| ScoreError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let text = feedback_csv(&rows).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = dir.join(".portal.csv.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, dir.join("portal.csv")).map_err(io)?;
    Ok(rows.len())
}

/// The feedback file's bytes: a header, then (customer, answered at in RFC
/// 3339 UTC with microseconds, score) per answer, quoted where CSV needs it.
fn feedback_csv(rows: &[(String, chrono::NaiveDateTime, i32)]) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["customer_id", "answered_at", "score"])?;
    for (customer, at, score) in rows {
        let at = at
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        out.write_record([customer.as_str(), &at, &score.to_string()])?;
    }
    out.into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// What the nightly record in `job_runs` says.
pub fn summary_json(r: &NightlyReport) -> serde_json::Value {
    serde_json::json!({
        "ingest_run": r.ingest.manifest.run_id,
        "ingest_status": r.ingest.manifest.status,
        "records": r.ingest.manifest.totals.records,
        "rejected": r.ingest.manifest.totals.rejected,
        "score_run": r.score.manifest.run_id,
        "as_of": r.score.manifest.as_of,
        "customers": r.score.manifest.customers,
        "load_run": r.load.as_ref().map(|l| l.run_id.clone()),
    })
}

/// Re-scores every day from `from` to `to` (inclusive), oldest first.
pub fn backfill(
    warehouse: &std::path::Path,
    from: NaiveDate,
    to: NaiveDate,
    settings: &Settings,
) -> Result<Vec<ScoreReport>, NightlyError> {
    let wh = match Warehouse::open(warehouse) {
        Ok(w) => w,
        Err(e @ PublishError::Locked(_)) => return Err(NightlyError::Locked(e)),
        Err(e) => return Err(ScoreError::from(e).into()),
    };
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        let opts = ScoreOptions {
            warehouse: warehouse.to_path_buf(),
            as_of: day,
            settings: settings.clone(),
        };
        out.push(score::run_locked(&wh, &opts)?);
        day = day.succ_opt().unwrap_or(NaiveDate::MAX);
        if day == NaiveDate::MAX {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_feedback_file_quotes_only_what_csv_needs() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_micro_opt(9, 30, 0, 5)
            .unwrap();
        let rows = vec![("c1".to_string(), at, 9), ("a,\"b".to_string(), at, 0)];
        let text = String::from_utf8(super::feedback_csv(&rows).unwrap()).unwrap();
        assert_eq!(
            text,
            "customer_id,answered_at,score\nc1,2026-03-01T09:30:00.000005Z,9\n\"a,\"\"b\",2026-03-01T09:30:00.000005Z,0\n"
        );
    }

    use super::*;

    #[test]
    fn debug_of_the_options_hides_the_database_password() {
        let opts = NightlyOptions {
            input: "drop".into(),
            warehouse: "wh".into(),
            db_url: Some("postgres://cvm:topsecret@db/cvm".into()),
            as_of: NaiveDate::MIN,
            settings: Settings::default(),
            progress: false,
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("postgres://cvm:***@db/cvm"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
