//! The Parquet warehouse: dataset layouts, row types, reading and writing,
//! and atomic publishing of versions.
//!
//! Layout of a warehouse folder:
//! ```text
//! customers/ transactions/ events/  -> symlinks into current/
//! current -> _versions/<run_id>     (one atomic rename publishes a version)
//! _versions/<run_id>/{customers,transactions/month=YYYY-MM,events/month=YYYY-MM,_state}/
//! runs/<run_id>/{manifest.json,rejects.parquet}
//! scores/as_of=YYYY-MM-DD/
//! ```

pub mod customers;
mod encoder;
pub mod event_keysets;
pub mod events;
pub mod key_history;
pub mod months;
pub mod parquet_io;
pub mod publish;
pub mod purchase_totals;
pub mod rejects;
pub mod runs;
pub mod scores;
mod splice;
pub mod state;
pub mod transactions;
pub mod txn_keysets;

use std::sync::Arc;

use chrono::NaiveDate;
use cvm_shared::Channel;

use crate::record::{Keys, RecordKey, RejectReason, TxnRow};

/// Errors reading or writing warehouse files.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// File system error on a path.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Parquet or Arrow error on a path.
    #[error("{path}: {message}")]
    Format {
        path: std::path::PathBuf,
        message: String,
    },
    /// Rows read in key order that are out of it (a file `erase` rewrote,
    /// or another tool wrote): the reader then reads them whole.
    #[error("{path}: rows not sorted by {column} ({value:?} after {previous:?})")]
    Unsorted {
        path: std::path::PathBuf,
        column: &'static str,
        value: String,
        previous: String,
    },
    /// A file that does not have the expected columns or values.
    #[error("{path}: not a cvm {dataset} file: {message}")]
    Schema {
        path: std::path::PathBuf,
        dataset: &'static str,
        message: String,
    },
    /// A version a newer cvm wrote (see [`state::FORMAT`]).
    #[error(
        "{path}: written by a newer cvm (warehouse format {format}; this cvm reads up to {}): run that cvm or a newer one",
        state::FORMAT
    )]
    NewerFormat {
        path: std::path::PathBuf,
        format: u32,
    },
}

/// An input file's name (relative to its drop), held once for the process:
/// a row names its file by a 4-byte index, where millions of rows name a
/// few hundred files (as a compiler interns its symbols). The table only
/// grows, by the names of the files read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceFile(u32);

/// Every file name interned so far, and their indices.
#[derive(Default)]
struct SourceFiles {
    names: Vec<Arc<str>>,
    index: std::collections::HashMap<Arc<str>, u32>,
}

static SOURCE_FILES: std::sync::LazyLock<std::sync::RwLock<SourceFiles>> =
    std::sync::LazyLock::new(Default::default);

impl SourceFile {
    /// The file named `name`.
    pub fn intern(name: &str) -> SourceFile {
        use std::sync::PoisonError;
        if let Some(&i) = SOURCE_FILES
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .index
            .get(name)
        {
            return SourceFile(i);
        }
        let mut files = SOURCE_FILES.write().unwrap_or_else(PoisonError::into_inner);
        let next = files.names.len() as u32;
        let name: Arc<str> = name.into();
        let i = *files.index.entry(Arc::clone(&name)).or_insert(next);
        if i == next {
            files.names.push(name);
        }
        SourceFile(i)
    }

    /// Every name interned so far, by index: what a writer of many rows
    /// looks their names up in, with no lock per row.
    pub fn names() -> Vec<Arc<str>> {
        SOURCE_FILES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .names
            .clone()
    }

    /// This file's name in `names` (from [`SourceFile::names`]).
    pub fn name_in(self, names: &[Arc<str>]) -> &str {
        names.get(self.0 as usize).map_or("", |n| n)
    }

    /// This file's name.
    pub fn name(self) -> Arc<str> {
        let files = SOURCE_FILES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        files
            .names
            .get(self.0 as usize)
            .map_or_else(|| "".into(), Arc::clone)
    }
}

impl From<&str> for SourceFile {
    fn from(name: &str) -> SourceFile {
        SourceFile::intern(name)
    }
}

/// A consolidated transaction as ingest holds it: its keys and customer are
/// its key set's, in a [`txn_keysets::TxnKeysets`] table beside the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTxn {
    /// The transaction.
    pub row: TxnRow,
    /// Its key set: the keys the source gave (kept so identities can be
    /// re-resolved when CRM changes) and the customer they resolve to.
    pub keyset: u32,
    /// The source record it came from (replaced as a unit by a newer version).
    pub record_key: RecordKey,
    /// Input file it was read from, relative to its drop.
    pub source_file: SourceFile,
}

impl StoredTxn {
    /// Its transaction id (`pos:R1`, `web:W-1001:refund`, `tx:<hex>`).
    pub fn transaction_id(&self) -> crate::record::TxnId<'_> {
        self.row.transaction_id(&self.record_key)
    }

    /// The record's id in its source system, if it has one.
    pub fn source_id(&self) -> Option<&str> {
        self.row.source_id(&self.record_key)
    }

    /// The order reference, when the source has one.
    pub fn order_id(&self) -> Option<&str> {
        self.row.order_id(&self.record_key)
    }
}

/// A consolidated transaction as stored in `transactions/`, with its keys
/// and customer: what readers other than ingest see (`txn.keyset` is the
/// index the reader gave its key set, not a stored value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The row.
    pub txn: StoredTxn,
    /// Resolved customer; `None` when anonymous.
    pub customer_id: Option<Box<str>>,
    /// The keys the source gave.
    pub keys: Keys,
}

impl std::ops::Deref for Transaction {
    type Target = StoredTxn;

    fn deref(&self) -> &StoredTxn {
        &self.txn
    }
}

/// A resolved customer as stored in `customers/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// CRM id, or the guest id.
    pub customer_id: Box<str>,
    /// True for customers not in CRM.
    pub is_guest: bool,
    /// Normalised email.
    pub email: Option<Box<str>>,
    /// Phone in E.164.
    pub phone: Option<Box<str>>,
    /// Given name.
    pub first_name: Option<Box<str>>,
    /// Family name.
    pub last_name: Option<Box<str>>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<Box<str>>,
    /// CRM signup date.
    pub signup_date: Option<NaiveDate>,
    /// CRM birth date.
    pub birth_date: Option<NaiveDate>,
    /// Marketing email consent (false for guests).
    pub email_opt_in: bool,
    /// CRM `updated_at` (microseconds UTC).
    pub updated_at: Option<i64>,
    /// Earliest of the first transaction and the signup date (microseconds UTC).
    pub first_seen: Option<i64>,
    /// Channels the customer bought through, sorted.
    pub channels: Vec<Channel>,
}

/// An engagement event as stored in `events/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Stable id (`ev:<hex>`).
    pub event_id: Box<str>,
    /// The keys the source gave.
    pub keys: Keys,
    /// Event type.
    pub event_type: Box<str>,
    /// When (microseconds UTC).
    pub ts: i64,
    /// Source record key.
    pub record_key: Box<str>,
    /// Input file.
    pub source_file: Box<str>,
}

/// A rejected input record, as written to `runs/<run_id>/rejects.parquet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    /// Input file relative to the drop.
    pub source_file: Box<str>,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Stable reason code.
    pub reason: RejectReason,
    /// Field and value at fault.
    pub detail: String,
    /// The record's text.
    pub raw: String,
}

/// One customer's scores as of a date, as stored in `scores/as_of=YYYY-MM-DD/`
/// (column names and definitions: `shared/docs/scoring.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRow {
    /// Customer id.
    pub customer_id: Box<str>,
    /// The day the scores are computed for (inclusive, UTC).
    pub as_of: NaiveDate,
    /// Purchase occasions.
    pub orders: u32,
    /// Repeat occasions (`orders - 1`, 0 for prospects).
    pub frequency: u32,
    /// First to last occasion, in periods.
    pub recency: f64,
    /// First occasion to `as_of`, in periods (column `T`).
    pub t: f64,
    /// Mean value of repeat occasions (base currency); 0 without repeats.
    pub monetary_avg: f64,
    /// Net revenue, exact (base currency).
    pub total_revenue: cvm_shared::BaseAmount,
    /// First occasion.
    pub first_purchase: Option<NaiveDate>,
    /// Last occasion.
    pub last_purchase: Option<NaiveDate>,
    /// Days from the last occasion to `as_of`.
    pub days_since_last_purchase: Option<i32>,
    /// RFM recency score 1..5 (null for prospects).
    pub r_score: Option<u8>,
    /// RFM frequency score 1..5.
    pub f_score: Option<u8>,
    /// RFM monetary score 1..5.
    pub m_score: Option<u8>,
    /// Named RFM segment (`Prospect` for prospects).
    pub rfm_segment: Box<str>,
    /// P(alive) under BG/NBD (null when the model could not be fitted).
    pub p_alive: Option<f64>,
    /// Conditional expected purchases in the next 90 days.
    pub expected_purchases_90d: Option<f64>,
    /// Conditional expected purchases in the next 365 days.
    pub expected_purchases_365d: Option<f64>,
    /// Gamma-Gamma expected average order value.
    pub expected_avg_value: Option<f64>,
    /// Discounted 12-month CLV.
    pub clv_12m: Option<f64>,
    /// `1 - p_alive`.
    pub churn_risk: Option<f64>,
    /// Latest NPS answer (0-10) on or before `as_of`.
    pub nps_last: Option<u8>,
    /// `promoter`, `passive` or `detractor`.
    pub nps_class: Option<Box<str>>,
    /// Engagement events in the 90 days up to `as_of`.
    pub engagement_90d: u32,
    /// `prospect`, `new`, `churned`, `at_risk`, `loyal` or `active`; null when
    /// the stage needs P(alive) and the model could not be fitted.
    pub lifecycle_stage: Option<Box<str>>,
    /// `high`, `medium`, `low` or `none`; null for a purchaser without a CLV.
    pub value_tier: Option<Box<str>>,
    /// Loyalty index 0..100, one decimal.
    pub loyalty_index: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_interned_once_and_named_back() {
        let a = SourceFile::intern("pos/2026-12-07-interning-test.csv");
        let b = SourceFile::intern("web/2026-12-07-interning-test.jsonl");
        assert_ne!(a, b);
        assert_eq!(SourceFile::from("pos/2026-12-07-interning-test.csv"), a);
        assert_eq!(&*a.name(), "pos/2026-12-07-interning-test.csv");
        let names = SourceFile::names();
        assert_eq!(b.name_in(&names), "web/2026-12-07-interning-test.jsonl");
    }
}
