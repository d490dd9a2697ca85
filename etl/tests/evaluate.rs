//! `cvm-etl evaluate` on the paper's CDNOW sample: calibration weeks 1-39
//! (to 1997-09-30), holdout weeks 40-78 (to 1998-06-30), as in Fader, Hardie &
//! Lee (2005). Actual holdout purchases are recounted here from the CSV.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;
use cvm_etl::jobs::evaluate::{self, EvaluateError, EvaluateOptions};
use cvm_etl::jobs::ingest::{self, IngestOptions};
use cvm_etl::jobs::score::{self, ScoreOptions};
use cvm_shared::Settings;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/cdnow/sample_transactions.csv"
);

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn cdnow_warehouse(root: &Path) -> PathBuf {
    let input = root.join("drop");
    std::fs::create_dir_all(input.join("transactions")).unwrap();
    std::fs::copy(SAMPLE, input.join("transactions/sample.csv")).unwrap();
    let wh = root.join("wh");
    ingest::run(&IngestOptions::new(input, wh.clone())).unwrap();
    wh
}

fn evaluate(
    wh: &Path,
    calibration_end: &str,
    holdout_end: &str,
) -> Result<evaluate::EvaluateReport, EvaluateError> {
    evaluate::run(&EvaluateOptions {
        warehouse: wh.to_path_buf(),
        calibration_end: date(calibration_end),
        holdout_end: date(holdout_end),
        settings: Settings::default(),
    })
}

/// Purchase days per customer in (from, to], straight from the CSV (the sample
/// has no refunds, so purchase occasions are the distinct purchase days).
fn holdout_days_from_csv(from: &str, to: &str) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(SAMPLE).unwrap();
    let mut days: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let e = days.entry(f[0].to_string()).or_default();
        if f[1] > from && f[1] <= to {
            e.insert(f[1].to_string());
        }
    }
    days.into_iter().map(|(k, v)| (k, v.len())).collect()
}

fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    assert!(html.contains("<svg"));
}

#[test]
fn cdnow_holdout_predictions_match_the_data_and_an_independent_computation() {
    let d = tempfile::tempdir().unwrap();
    let wh = cdnow_warehouse(d.path());
    let r = evaluate(&wh, "1997-09-30", "1998-06-30").unwrap();
    let m = &r.manifest;

    // Calibration fit = the published estimates (the score job's fit on the same day).
    let p = |k: &str| (m.bgnbd.params[k] * 1000.0).round() / 1000.0;
    assert_eq!(
        (p("r"), p("alpha"), p("a"), p("b")),
        (0.243, 4.414, 0.793, 2.426)
    );
    assert_eq!(m.holdout_periods, 39.0);

    // Actual: every customer's holdout purchase days, exactly.
    let truth = holdout_days_from_csv("1997-09-30", "1998-06-30");
    assert_eq!(r.rows.len(), 2357);
    assert_eq!(truth.len(), 2357);
    for row in &r.rows {
        assert_eq!(
            row.actual_holdout as usize, truth[&*row.customer_id],
            "customer {}",
            row.customer_id
        );
    }
    let total: usize = truth.values().sum();
    assert_eq!(total, 1882);
    assert_eq!(m.metrics.total_actual, 1882);

    // Predicted: FHL 2005 eq. 10 summed over the sample with the fitted parameters;
    // recomputed with scipy's hyp2f1 on the published summary: 1653.44.
    assert!(
        (m.metrics.total_predicted - 1653.4).abs() < 0.5,
        "predicted {}",
        m.metrics.total_predicted
    );
    assert!(
        m.metrics.mae > 0.7 && m.metrics.mae < 0.9,
        "MAE {}",
        m.metrics.mae
    );
    assert!(
        m.metrics.rmse > m.metrics.mae && m.metrics.rmse < 2.0,
        "RMSE {}",
        m.metrics.rmse
    );

    // The calibration-vs-holdout table: 0..6 and 7+, rising with calibration purchases.
    let t = &m.calibration_table;
    let keys: Vec<&str> = t.iter().map(|r| &*r.calibration_frequency).collect();
    assert_eq!(keys, ["0", "1", "2", "3", "4", "5", "6", "7+"]);
    assert_eq!(t.iter().map(|r| r.customers).sum::<u64>(), 2357);
    assert_eq!(t[0].customers, 1411);
    for w in t.windows(2) {
        assert!(w[1].mean_predicted > w[0].mean_predicted, "{w:?}");
        assert!(w[1].mean_actual > w[0].mean_actual * 0.9, "{w:?}");
    }
    for row in t {
        // Within 35% of the actual mean in every group (FHL 2005 fig. 4 shows the same fit).
        assert!(
            (row.mean_predicted - row.mean_actual).abs() <= 0.35 * row.mean_actual,
            "{row:?}"
        );
    }

    // Tracking ends at the holdout end with the totals of the whole period.
    let last = m.tracking.last().unwrap();
    assert_eq!(last.date, "1998-06-30");
    let calibration_repeats: u64 = r.rows.iter().map(|r| u64::from(r.frequency_cal)).sum();
    assert_eq!(last.actual, calibration_repeats + 1882);

    // Files of the run.
    let csv = std::fs::read_to_string(r.run_dir.join("evaluation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2358);
    assert!(csv.starts_with(
        "customer_id,frequency_cal,recency_cal,T_cal,p_alive_cal,predicted_holdout,actual_holdout"
    ));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.run_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["command"], "evaluate");
    assert_eq!(manifest["metrics"]["total_actual"], 1882);
    assert_eq!(manifest["calibration_table"].as_array().unwrap().len(), 8);
    let html = std::fs::read_to_string(r.run_dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("7+") && html.contains("1,882"));
}

#[test]
fn a_scoring_run_writes_its_report() {
    let d = tempfile::tempdir().unwrap();
    let wh = cdnow_warehouse(d.path());
    let r = score::run(&ScoreOptions {
        warehouse: wh.clone(),
        as_of: date("1997-09-30"),
        settings: Settings::default(),
    })
    .unwrap();
    let html = std::fs::read_to_string(r.run_dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    for segment in r.manifest.segments.keys() {
        assert!(html.contains(segment.as_str()), "{segment}");
    }
    assert!(html.contains("2,357") && html.contains("r = 0.2426"));
    assert!(!html.contains("latest evaluation"));

    // Once evaluated, the next scoring report shows predicted vs actual too.
    let ev = evaluate(&wh, "1997-09-30", "1998-06-30").unwrap();
    let r = score::run(&ScoreOptions {
        warehouse: wh,
        as_of: date("1998-06-30"),
        settings: Settings::default(),
    })
    .unwrap();
    let html = std::fs::read_to_string(r.run_dir.join("report.html")).unwrap();
    assert_self_contained(&html);
    assert!(
        html.contains("Predicted vs actual (latest evaluation)")
            && html.contains(&ev.manifest.run_id)
    );
}

#[test]
fn evaluation_needs_a_holdout_and_data() {
    let d = tempfile::tempdir().unwrap();
    let err = evaluate(d.path(), "1997-09-30", "1997-09-30").unwrap_err();
    assert!(matches!(err, EvaluateError::Dates { .. }), "{err}");
    let err = evaluate(&d.path().join("empty"), "1997-09-30", "1998-06-30").unwrap_err();
    assert!(matches!(err, EvaluateError::Empty(_)), "{err}");
    let wh = cdnow_warehouse(d.path());
    let err = evaluate(&wh, "1990-01-01", "1998-06-30").unwrap_err();
    assert!(matches!(err, EvaluateError::NoPurchasers(_)), "{err}");
}

#[test]
fn the_cli_prints_the_table_and_exits_with_documented_codes() {
    let d = tempfile::tempdir().unwrap();
    let wh = cdnow_warehouse(d.path());
    let bin = env!("CARGO_BIN_EXE_cvm-etl");
    let out = Command::new(bin)
        .args(["evaluate", "--warehouse"])
        .arg(&wh)
        .args([
            "--calibration-end",
            "1997-09-30",
            "--holdout-end",
            "1998-06-30",
            "--period",
            "week",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("actual 1882") && err.contains("7+") && err.contains("report: "),
        "{err}"
    );

    let out = Command::new(bin)
        .args(["evaluate", "--warehouse"])
        .arg(&wh)
        .args([
            "--calibration-end",
            "1998-06-30",
            "--holdout-end",
            "1997-09-30",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("cvm-etl: error: --holdout-end"), "{err}");
}

#[test]
fn predictions_do_not_depend_on_the_time_unit() {
    let d = tempfile::tempdir().unwrap();
    let wh = cdnow_warehouse(d.path());
    let week = evaluate(&wh, "1997-09-30", "1998-06-30").unwrap();
    let mut settings = Settings::default();
    settings.set("scoring.period", "day").unwrap();
    let day = evaluate::run(&EvaluateOptions {
        warehouse: wh,
        calibration_end: date("1997-09-30"),
        holdout_end: date("1998-06-30"),
        settings,
    })
    .unwrap();
    assert_eq!(day.manifest.holdout_periods, 273.0);
    assert_eq!(
        day.manifest.metrics.total_actual,
        week.manifest.metrics.total_actual
    );
    // BG/NBD is closed under a change of time unit (alpha scales), so only the optimiser's tolerance differs.
    let (a, b) = (
        day.manifest.metrics.total_predicted,
        week.manifest.metrics.total_predicted,
    );
    assert!((a - b).abs() / b < 1e-3, "day {a} week {b}");
}
