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

/// How many month partitions of a dataset a run wrote, and how many it
/// shared unchanged with the version it started from (a night writes the
/// months its drop changes; a first load or a full rebuild writes them all).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MonthCounts {
    /// Months written.
    pub written: u64,
    /// Of those, months whose files were shared and given the run's rows as
    /// new parts (see `warehouse::months::APPEND_PARTS`).
    pub appended: u64,
    /// Months linked from the previous version.
    pub shared: u64,
}

impl MonthCounts {
    /// The months of a dataset's write.
    pub fn of(w: &crate::warehouse::months::Written) -> MonthCounts {
        MonthCounts {
            written: w.months as u64,
            appended: w.appended_months as u64,
            shared: w.shared_months as u64,
        }
    }
}

/// What a night read of the stored transactions, when it read only what it
/// needed: the months it read whole (those it may change) of the stored
/// version's, and every stored row it decoded (theirs, and the rows of the
/// customers whose totals it summed again).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct HistoryRead {
    /// Months read whole.
    pub whole_months: u64,
    /// Months changed but read in part: of each, only the files holding a
    /// row replaced (the others are shared, or renamed).
    pub partial_months: u64,
    /// Months the stored version holds.
    pub months: u64,
    /// Stored rows decoded.
    pub rows: u64,
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
    /// Whether the run consolidated and wrote the whole history again (`--full-rebuild`).
    pub full_rebuild: bool,
    /// Transaction months written and shared.
    pub transaction_months: MonthCounts,
    /// Event months written and shared.
    pub event_months: MonthCounts,
    /// What the run read of the stored transactions; null when it read all
    /// of them (a first load, a full rebuild, a version of an earlier cvm).
    pub transactions_read: Option<HistoryRead>,
    /// Program versions.
    pub versions: BTreeMap<String, String>,
}
