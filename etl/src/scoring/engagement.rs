//! Engagement: each customer's engagement events in the 90 days up to a day
//! (`scoring.md`, "Feedback and engagement").

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ledger::DAY_MICROS;
use crate::warehouse::{self, WarehouseError};

/// The window `engagement_90d` counts, in days.
const WINDOW_DAYS: i64 = 90;

/// Events per indexed customer in the 90 days before `end` (microseconds,
/// exclusive), read from a warehouse version's `events/`.
pub(crate) fn engagement_90d(
    version_dir: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
) -> Result<Vec<u32>, WarehouseError> {
    let counts: Vec<AtomicU32> = (0..index.len()).map(|_| AtomicU32::new(0)).collect();
    let window_start = end - WINDOW_DAYS * DAY_MICROS;
    warehouse::events::for_each_in_window(version_dir, window_start, end, |customer, _| {
        if let Some(&i) = index.get(customer) {
            counts[i as usize].fetch_add(1, Ordering::Relaxed);
        }
    })?;
    Ok(counts.into_iter().map(AtomicU32::into_inner).collect())
}
