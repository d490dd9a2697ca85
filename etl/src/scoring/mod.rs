//! What `score` and `evaluate` share, as typed steps: the customers known on a
//! day and their transactions ([`ledger`]) reduced to per-customer
//! [`ledger::Facts`], the model fits on those facts ([`fit`]), and the other
//! signals a score uses ([`engagement`], [`feedback`]).

pub(crate) mod engagement;
pub(crate) mod feedback;
pub(crate) mod fit;
pub(crate) mod ledger;
pub(crate) mod totals;

use cvm_shared::config::ScoringSettings;

use crate::models::summary::Period;

/// The time unit of recency and T the settings ask for (`scoring.period`).
pub(crate) fn period(s: &ScoringSettings) -> Period {
    if s.period == "day" {
        Period::Day
    } else {
        Period::Week
    }
}
