//! The manifest of `cvm-etl score` and the model record it shares with `evaluate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A fitted model's record in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelReport {
    /// Parameter name to estimate.
    pub params: BTreeMap<String, f64>,
    /// Total log-likelihood.
    pub log_likelihood: Option<f64>,
    /// Customers fitted on.
    pub customers: f64,
    /// Distinct rows after collapsing identical histories.
    pub distinct_rows: usize,
    /// Optimiser iterations.
    pub iterations: usize,
    /// Whether the estimates are usable.
    pub converged: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Fit time in milliseconds.
    pub fit_ms: u64,
}

/// The manifest of a scoring run.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreManifest {
    /// Run id.
    pub run_id: String,
    /// Always `score`.
    pub command: String,
    /// `published` or `unchanged`.
    pub status: String,
    /// The date scored.
    pub as_of: String,
    /// `week` or `day`.
    pub period: String,
    /// The warehouse version the scores were computed from.
    pub warehouse_version: Option<String>,
    /// Start (RFC 3339 UTC).
    pub started_at: String,
    /// End (RFC 3339 UTC).
    pub finished_at: String,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<String, u64>,
    /// Customers scored (known on as_of).
    pub customers: u64,
    /// Customers with at least one purchase occasion.
    pub purchasers: u64,
    /// Customers with a repeat occasion.
    pub repeat_buyers: u64,
    /// Transactions up to as_of that were counted.
    pub transactions: u64,
    /// Where they were counted from: `purchase_totals` (the version's
    /// per-customer totals, when no transaction is after as_of) or
    /// `transactions` (each one read).
    pub purchases_from: String,
    /// Feedback answers used, and malformed ones skipped.
    pub feedback: BTreeMap<String, u64>,
    /// BG/NBD fit.
    pub bgnbd: ModelReport,
    /// Gamma-Gamma fit.
    pub gamma_gamma: ModelReport,
    /// Customers per RFM segment.
    pub segments: BTreeMap<String, u64>,
    /// Customers per lifecycle stage.
    pub lifecycle_stages: BTreeMap<String, u64>,
    /// Customers per value tier.
    pub value_tiers: BTreeMap<String, u64>,
    /// Folder written.
    pub output: String,
    /// Settings in force.
    pub settings: cvm_shared::config::ScoringSettings,
    /// Program versions.
    pub versions: BTreeMap<String, String>,
}
