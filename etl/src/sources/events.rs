//! `events/` source (being written).

use super::{ParseContext};
use crate::record::{Parsed, Pos, Reject, RejectReason};

/// Parses one record.
pub fn parse(_raw: impl Sized, _pos: Pos, _ctx: &ParseContext) -> Parsed {
    Parsed::Rejected(Reject::new(RejectReason::BadRow, "not implemented"))
}
