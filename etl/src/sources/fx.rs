//! `fx/rates.csv` (being written).

use super::CsvRow;
use crate::record::{Parsed, Reject, RejectReason};

/// Parses one record.
pub fn parse(_raw: CsvRow<'_>) -> Parsed {
    Parsed::Rejected(Reject::new(RejectReason::BadRow, "not implemented"))
}
