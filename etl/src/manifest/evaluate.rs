//! The manifest of `cvm-etl evaluate`, and reading back the newest one (the
//! score report shows it).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::score::ModelReport;

/// Aggregate errors over the calibration purchasers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Customers evaluated (purchasers in the calibration period).
    pub customers: u64,
    /// Mean absolute error per customer.
    pub mae: f64,
    /// Root mean squared error per customer.
    pub rmse: f64,
    /// Sum of actual holdout purchases.
    pub total_actual: u64,
    /// Sum of predicted holdout purchases.
    pub total_predicted: f64,
    /// (predicted - actual) / actual, in percent (null when nothing was bought).
    pub total_error_pct: Option<f64>,
}

/// Mean holdout purchases of the customers with a given number of calibration repeat purchases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    /// `0` .. `6`, then `7+`.
    pub calibration_frequency: String,
    /// Customers in the group.
    pub customers: u64,
    /// Mean actual holdout purchases.
    pub mean_actual: f64,
    /// Mean predicted holdout purchases.
    pub mean_predicted: f64,
}

/// Cumulative repeat purchases of the calibration cohort up to the end of a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingPoint {
    /// Periods since the cohort's first purchase day.
    pub period: u32,
    /// Last day counted.
    pub date: String,
    /// Actual repeat occasions up to and including `date`.
    pub actual: u64,
    /// Expected repeat purchases (unconditional BG/NBD, from each first purchase).
    pub predicted: f64,
}

/// The manifest of an evaluation run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateManifest {
    /// Run id.
    pub run_id: String,
    /// Always `evaluate`.
    pub command: String,
    /// Last calibration day.
    pub calibration_end: String,
    /// Last holdout day.
    pub holdout_end: String,
    /// `week` or `day`.
    pub period: String,
    /// Holdout length in periods.
    pub holdout_periods: f64,
    /// The warehouse version evaluated.
    pub warehouse_version: Option<String>,
    /// Start (RFC 3339 UTC).
    pub started_at: String,
    /// End (RFC 3339 UTC).
    pub finished_at: String,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<String, u64>,
    /// Customers known at the calibration end.
    pub customers: u64,
    /// Transactions read (up to the holdout end).
    pub transactions: u64,
    /// BG/NBD fitted on the calibration period.
    pub bgnbd: ModelReport,
    /// Gamma-Gamma fitted on the calibration period.
    pub gamma_gamma: ModelReport,
    /// Aggregate errors.
    pub metrics: Metrics,
    /// Mean actual vs predicted by calibration repeat purchases.
    pub calibration_table: Vec<CalibrationRow>,
    /// Cumulative repeat purchases over time, calibration and holdout.
    pub tracking: Vec<TrackingPoint>,
    /// Per-customer file written.
    pub output: String,
    /// Program versions.
    pub versions: BTreeMap<String, String>,
}

/// The manifest of the newest evaluation run of a warehouse, if one can be read.
pub fn latest(warehouse: &Path) -> Option<EvaluateManifest> {
    let runs = std::fs::read_dir(warehouse.join("runs")).ok()?;
    // Run ids start with a UTC timestamp, so the greatest name is the newest run.
    let newest = runs
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && n.contains("-evaluate-"))
        .max()?;
    let text =
        std::fs::read_to_string(warehouse.join("runs").join(newest).join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}
