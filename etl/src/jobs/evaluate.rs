//! `cvm-etl evaluate`: how well BG/NBD predicts. The model is fitted on a
//! calibration period exactly as `score` would fit it on that day, then each
//! calibration purchaser's expected repeat purchases in the holdout period are
//! compared with the purchase occasions they actually made (FHL 2005, sec. 4).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cvm_shared::Settings;
use rayon::prelude::*;
use serde::Serialize;

use crate::manifest::evaluate::{CalibrationRow, EvaluateManifest, Metrics, TrackingPoint};
use crate::manifest::{RunClock, RunTimes};
use crate::models::bgnbd::BgNbdParams;
use crate::models::summary::Period;
use crate::scoring;
use crate::scoring::fit::{Fits, fit_models};
use crate::scoring::ledger::{
    Facts, Ledger, customer_index, end_of_day, known_customers, occasions,
};
use crate::warehouse::WarehouseError;
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// The warehouse folder.
    pub warehouse: PathBuf,
    /// Last day of the calibration period (inclusive, UTC).
    pub calibration_end: NaiveDate,
    /// Last day of the holdout period (inclusive, UTC).
    pub holdout_end: NaiveDate,
    /// Validated settings (`scoring.period` is used).
    pub settings: Settings,
}

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The holdout period is empty.
    #[error("--holdout-end {holdout_end} must be after --calibration-end {calibration_end}")]
    Dates {
        /// Given calibration end.
        calibration_end: NaiveDate,
        /// Given holdout end.
        holdout_end: NaiveDate,
    },
    /// Nothing was ever ingested.
    #[error("warehouse {0} has no published data: run `cvm-etl ingest` first")]
    Empty(PathBuf),
    /// No customer bought in the calibration period.
    #[error("no customer made a purchase up to {0}: nothing to evaluate")]
    NoPurchasers(NaiveDate),
    /// BG/NBD could not be fitted on the calibration period.
    #[error("BG/NBD could not be fitted on the calibration period: {0}")]
    NotFitted(String),
    /// Reading the warehouse failed.
    #[error("warehouse: {0}")]
    Warehouse(#[from] WarehouseError),
    /// Locking failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Writing the run folder failed.
    #[error("{path}: {source}")]
    Write {
        /// File or folder.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Writing `evaluation.csv` failed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: csv::Error,
    },
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvaluateError + '_ {
    move |source| EvaluateError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// One calibration purchaser's holdout prediction (`evaluation.csv`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationRow {
    /// Customer id.
    pub customer_id: Box<str>,
    /// Repeat occasions in the calibration period.
    pub frequency_cal: u32,
    /// Recency at the calibration end, in periods.
    pub recency_cal: f64,
    /// Age at the calibration end, in periods.
    #[serde(rename = "T_cal")]
    pub t_cal: f64,
    /// P(alive) at the calibration end.
    pub p_alive_cal: f64,
    /// Conditional expected purchases in the holdout period.
    pub predicted_holdout: f64,
    /// Purchase occasions in the holdout period.
    pub actual_holdout: u32,
}

/// The result of an evaluation.
#[derive(Debug)]
pub struct EvaluateReport {
    /// The manifest, as written.
    pub manifest: EvaluateManifest,
    /// Per-customer predictions, sorted by customer id.
    pub rows: Vec<EvaluationRow>,
    /// `runs/<run_id>/`.
    pub run_dir: PathBuf,
}

/// Evaluates, holding the warehouse lock.
pub fn run(opts: &EvaluateOptions) -> Result<EvaluateReport, EvaluateError> {
    if opts.holdout_end <= opts.calibration_end {
        return Err(EvaluateError::Dates {
            calibration_end: opts.calibration_end,
            holdout_end: opts.holdout_end,
        });
    }
    let wh = Warehouse::open(&opts.warehouse)?;
    let mut clock = RunClock::start("evaluate");
    let version_dir = wh
        .current()?
        .ok_or_else(|| EvaluateError::Empty(opts.warehouse.clone()))?;
    let days = Days {
        calibration_end: i64::from(opts.calibration_end.to_epoch_days()),
        holdout_end: i64::from(opts.holdout_end.to_epoch_days()),
        period: scoring::period(&opts.settings.scoring),
    };

    let read = read(&version_dir, &days)?;
    clock.lap("read");
    // The calibration facts see only the calibration transactions, as `score` would on that day.
    let facts = read.ledger.facts(days.calibration_end, days.period);
    let holdout = holdout_days(&read.ledger, days.holdout_end);
    clock.lap("summarize");
    if !facts.iter().any(|f| f.xtt().is_some()) {
        return Err(EvaluateError::NoPurchasers(opts.calibration_end));
    }
    let fits = fit_models(&facts);
    clock.lap("fit");
    let Some(bg) = fits.bg else {
        return Err(EvaluateError::NotFitted(
            fits.bg_report.reason.clone().unwrap_or_default(),
        ));
    };
    let predicted = predict(&bg, &read.customers, &facts, &holdout, &days);
    clock.lap("predict");
    let run = RunFolder::stage(&opts.warehouse, clock.run_id())?;
    write_csv(&run.staging().join("evaluation.csv"), &predicted.rows)?;
    clock.lap("write");
    let run_dir = run.dir().to_path_buf();
    let (manifest, rows) = record(opts, &wh, clock.finish(), &read, fits, predicted, &run_dir)?;
    write_run(run, &manifest)?;
    Ok(EvaluateReport {
        manifest,
        rows,
        run_dir,
    })
}

/// The calibration and holdout ends (UTC day numbers) and the period unit.
struct Days {
    calibration_end: i64,
    holdout_end: i64,
    period: Period,
}

/// What an evaluation reads: the customers known at the calibration end and
/// their transactions up to the holdout end.
struct Read {
    customers: Vec<Box<str>>,
    ledger: Ledger,
}

/// Step "read".
fn read(version_dir: &Path, days: &Days) -> Result<Read, EvaluateError> {
    let customers = known_customers(version_dir, end_of_day(days.calibration_end))?;
    let ledger = Ledger::read(
        version_dir,
        &customer_index(&customers),
        end_of_day(days.holdout_end),
    )?;
    Ok(Read { customers, ledger })
}

/// Every customer's purchase occasion days up to `holdout_end`.
fn holdout_days(ledger: &Ledger, holdout_end: i64) -> Vec<Vec<i64>> {
    (0..ledger.customers())
        .into_par_iter()
        .map(|i| {
            occasions(ledger.customer(i))
                .0
                .into_iter()
                .map(|(d, _)| d)
                .filter(|d| *d <= holdout_end)
                .collect()
        })
        .collect()
}

/// The holdout predictions of the calibration purchasers and their aggregates.
struct Predictions {
    /// Holdout length in periods.
    horizon: f64,
    /// Per customer, sorted by customer id.
    rows: Vec<EvaluationRow>,
    metrics: Metrics,
    calibration_table: Vec<CalibrationRow>,
    tracking: Vec<TrackingPoint>,
}

/// Step "predict": each calibration purchaser's expected holdout purchases
/// against the occasions they made, and the cohort's tracking curve.
fn predict(
    bg: &BgNbdParams,
    customers: &[Box<str>],
    facts: &[Facts],
    holdout: &[Vec<i64>],
    days: &Days,
) -> Predictions {
    let horizon = (days.holdout_end - days.calibration_end) as f64 / days.period.days();
    let mut rows = Vec::new();
    let mut cohort: Vec<(i64, &[i64])> = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let (Some((x, t_x, t)), Some(first)) = (f.xtt(), f.summary.and_then(|s| s.first_day))
        else {
            continue;
        };
        let occasion_days = &holdout[i];
        rows.push(EvaluationRow {
            customer_id: customers[i].clone(),
            frequency_cal: x as u32,
            recency_cal: t_x,
            t_cal: t,
            p_alive_cal: bg.p_alive(x, t_x, t),
            predicted_holdout: bg.conditional_expected_purchases(horizon, x, t_x, t),
            actual_holdout: occasion_days
                .iter()
                .filter(|d| **d > days.calibration_end)
                .count() as u32,
        });
        cohort.push((first, occasion_days));
    }
    let tracking = tracking(bg, &cohort, days.holdout_end, days.period);
    rows.sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Predictions {
        horizon,
        metrics: metrics(&rows),
        calibration_table: calibration_table(&rows),
        rows,
        tracking,
    }
}

/// The run's manifest, and the rows it describes.
fn record(
    opts: &EvaluateOptions,
    wh: &Warehouse,
    times: RunTimes,
    read: &Read,
    fits: Fits,
    predicted: Predictions,
    run_dir: &Path,
) -> Result<(EvaluateManifest, Vec<EvaluationRow>), EvaluateError> {
    let manifest = EvaluateManifest {
        run_id: times.run_id,
        command: "evaluate".into(),
        calibration_end: opts.calibration_end.to_string(),
        holdout_end: opts.holdout_end.to_string(),
        period: opts.settings.scoring.period.clone(),
        holdout_periods: predicted.horizon,
        warehouse_version: wh.current_id()?,
        started_at: times.started_at,
        finished_at: times.finished_at,
        timings_ms: times.timings_ms,
        customers: read.customers.len() as u64,
        transactions: read.ledger.len() as u64,
        bgnbd: fits.bg_report,
        gamma_gamma: fits.gg_report,
        metrics: predicted.metrics,
        calibration_table: predicted.calibration_table,
        tracking: predicted.tracking,
        output: run_dir.join("evaluation.csv").display().to_string(),
        versions: crate::manifest::program_versions(),
    };
    Ok((manifest, predicted.rows))
}

/// Step "report": the manifest and `report.html` into the run folder, which is then moved into place.
fn write_run(run: RunFolder, manifest: &EvaluateManifest) -> Result<(), EvaluateError> {
    run.write_json("manifest.json", manifest)?;
    match crate::report::evaluation_report(manifest) {
        Ok(html) => run.write_bytes("report.html", html.as_bytes())?,
        Err(e) => tracing::warn!(error = %e, "the evaluation report could not be drawn"),
    }
    run.finish()?;
    Ok(())
}

fn write_csv(path: &Path, rows: &[EvaluationRow]) -> Result<(), EvaluateError> {
    let err = |source| EvaluateError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    w.flush().map_err(write_err(path))
}

/// MAE, RMSE and totals of the predictions.
pub fn metrics(rows: &[EvaluationRow]) -> Metrics {
    if rows.is_empty() {
        return Metrics::default();
    }
    let n = rows.len() as f64;
    let (mut abs, mut sq, mut predicted, mut actual) = (0.0, 0.0, 0.0, 0u64);
    for r in rows {
        let e = r.predicted_holdout - f64::from(r.actual_holdout);
        abs += e.abs();
        sq += e * e;
        predicted += r.predicted_holdout;
        actual += u64::from(r.actual_holdout);
    }
    Metrics {
        customers: rows.len() as u64,
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        total_actual: actual,
        total_predicted: predicted,
        total_error_pct: (actual > 0).then(|| 100.0 * (predicted - actual as f64) / actual as f64),
    }
}

/// Customers grouped by calibration repeat purchases 0..6 and 7+ (FHL 2005 fig. 4).
pub fn calibration_table(rows: &[EvaluationRow]) -> Vec<CalibrationRow> {
    const TOP: u32 = 7;
    let mut groups = [(0u64, 0.0f64, 0.0f64); TOP as usize + 1];
    for r in rows {
        let g = &mut groups[r.frequency_cal.min(TOP) as usize];
        g.0 += 1;
        g.1 += f64::from(r.actual_holdout);
        g.2 += r.predicted_holdout;
    }
    groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.0 > 0)
        .map(|(k, &(n, actual, predicted))| CalibrationRow {
            calibration_frequency: if k as u32 == TOP {
                format!("{TOP}+")
            } else {
                k.to_string()
            },
            customers: n,
            mean_actual: actual / n as f64,
            mean_predicted: predicted / n as f64,
        })
        .collect()
}

/// Cumulative repeat purchases of the cohort at the end of each period from the
/// first purchase day to `hold_day` (FHL 2005 fig. 2). Expected values are grouped
/// by first purchase day so the cost grows with distinct days, not customers.
fn tracking(
    bg: &BgNbdParams,
    cohort: &[(i64, &[i64])],
    hold_day: i64,
    period: Period,
) -> Vec<TrackingPoint> {
    let Some(start) = cohort.iter().map(|c| c.0).min() else {
        return Vec::new();
    };
    let step = period.days() as i64;
    let mut by_first: BTreeMap<i64, f64> = BTreeMap::new();
    let mut repeats: BTreeMap<i64, u64> = BTreeMap::new();
    for (first, days) in cohort {
        *by_first.entry(*first).or_default() += 1.0;
        for d in days.iter().filter(|d| **d > *first) {
            *repeats.entry(*d).or_default() += 1;
        }
    }
    // Period k covers days (start + (k-1)*step, start + k*step]; the last one is cut at
    // the holdout end so that the final point is the holdout total.
    let mut ends = Vec::new();
    let mut end = start;
    while end < hold_day {
        end = (end + step).min(hold_day);
        ends.push(end);
    }
    ends.par_iter()
        .enumerate()
        .map(|(k, &end)| TrackingPoint {
            period: k as u32 + 1,
            date: NaiveDate::from_epoch_days(end as i32)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            actual: repeats.range(..=end).map(|(_, n)| n).sum(),
            predicted: by_first
                .range(..end)
                .map(|(first, n)| n * bg.expected_purchases((end - first) as f64 / period.days()))
                .sum(),
        })
        .collect()
}

/// The evaluation as a table for the terminal.
pub fn summary_table(m: &EvaluateManifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let mt = &m.metrics;
    let _ = writeln!(
        s,
        "evaluated {} calibration purchasers: calibration to {}, holdout to {} ({:.1} {}s)",
        mt.customers, m.calibration_end, m.holdout_end, m.holdout_periods, m.period
    );
    let params: Vec<String> = m
        .bgnbd
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect();
    let _ = writeln!(
        s,
        "BG/NBD (calibration): {} LL={}",
        params.join(" "),
        m.bgnbd
            .log_likelihood
            .map_or("-".into(), |l| format!("{l:.2}"))
    );
    let _ = writeln!(
        s,
        "holdout purchases: actual {} predicted {:.1} ({}), MAE {:.4}, RMSE {:.4}",
        mt.total_actual,
        mt.total_predicted,
        mt.total_error_pct
            .map_or("-".into(), |p| format!("{p:+.1}%")),
        mt.mae,
        mt.rmse
    );
    let _ = writeln!(
        s,
        "{:>22} {:>10} {:>12} {:>15}",
        "calibration purchases", "customers", "mean actual", "mean predicted"
    );
    for r in &m.calibration_table {
        let _ = writeln!(
            s,
            "{:>22} {:>10} {:>12.4} {:>15.4}",
            r.calibration_frequency, r.customers, r.mean_actual, r.mean_predicted
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(x: u32, predicted: f64, actual: u32) -> EvaluationRow {
        EvaluationRow {
            customer_id: format!("c{x}").into(),
            frequency_cal: x,
            recency_cal: 0.0,
            t_cal: 1.0,
            p_alive_cal: 1.0,
            predicted_holdout: predicted,
            actual_holdout: actual,
        }
    }

    #[test]
    fn a_write_failure_keeps_its_cause_as_the_source() {
        let d = tempfile::tempdir().unwrap();
        let err =
            write_csv(&d.path().join("missing/evaluation.csv"), &[row(0, 1.0, 0)]).unwrap_err();
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            source.is_some_and(|s| s.contains("os error 2")),
            "the OS error is the source, not flattened into the message: {err:?}"
        );
    }

    #[test]
    fn metrics_of_known_errors() {
        let m = metrics(&[row(0, 1.0, 0), row(1, 1.0, 3)]);
        assert_eq!((m.customers, m.total_actual), (2, 3));
        assert!((m.mae - 1.5).abs() < 1e-12);
        assert!((m.rmse - (2.5f64).sqrt()).abs() < 1e-12);
        assert!((m.total_predicted - 2.0).abs() < 1e-12);
        assert_eq!(metrics(&[]), Metrics::default());
    }

    #[test]
    fn calibration_table_groups_seven_and_more() {
        let t = calibration_table(&[
            row(0, 0.5, 1),
            row(0, 0.5, 0),
            row(7, 4.0, 2),
            row(12, 6.0, 8),
        ]);
        let keys: Vec<&str> = t.iter().map(|r| &*r.calibration_frequency).collect();
        assert_eq!(keys, ["0", "7+"]);
        assert_eq!(
            (t[0].customers, t[0].mean_actual, t[0].mean_predicted),
            (2, 0.5, 0.5)
        );
        assert_eq!(
            (t[1].customers, t[1].mean_actual, t[1].mean_predicted),
            (2, 5.0, 5.0)
        );
    }
}
