//! The manifest of an ingest run (`runs/<run_id>/manifest.json`, and a copy
//! inside each published version).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Counts, FileCounts};

/// Totals of the published warehouse.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct WarehouseTotals {
    /// Resolved customers (CRM + guests).
    pub customers: u64,
    /// CRM customers.
    pub crm_customers: u64,
    /// Guest customers.
    pub guests: u64,
    /// Consolidated transactions.
    pub transactions: u64,
    /// Transactions with no customer.
    pub anonymous_transactions: u64,
    /// Engagement events.
    pub events: u64,
    /// Emails or phones shared by several CRM records.
    pub crm_key_conflicts: u64,
}

/// The manifest of an ingest run.
#[derive(Debug, Clone, Serialize)]
pub struct IngestManifest {
    /// Run id.
    pub run_id: String,
    /// Always `ingest`.
    pub command: String,
    /// `published`, `unchanged` (nothing new: no version written) or `failed`.
    pub status: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Start (RFC 3339 UTC).
    pub started_at: String,
    /// End (RFC 3339 UTC).
    pub finished_at: String,
    /// Milliseconds per step.
    pub timings_ms: BTreeMap<String, u64>,
    /// The drop folder.
    pub input: String,
    /// The warehouse version this run published (or that stayed current).
    pub version: Option<String>,
    /// Ingest settings in force.
    pub settings: cvm_shared::config::IngestSettings,
    /// Per input file.
    pub files: Vec<FileCounts>,
    /// Files in the drop that are not inputs.
    pub ignored_files: Vec<String>,
    /// Over all files.
    pub totals: Counts,
    /// `rejected / records`.
    pub reject_share: f64,
    /// The warehouse after this run.
    pub warehouse: WarehouseTotals,
    /// Program versions.
    pub versions: BTreeMap<String, String>,
}
