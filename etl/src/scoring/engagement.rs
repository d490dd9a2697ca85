//! Engagement: each customer's engagement events in the 90 days up to a day
//! (`scoring.md`, "Feedback and engagement").

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

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
    let mut counts = vec![0u32; index.len()];
    let window_start = end - WINDOW_DAYS * DAY_MICROS;
    warehouse::events::count_in_window(version_dir, window_start, end, |customer, n| {
        if let Some(&i) = index.get(customer) {
            counts[i as usize] =
                counts[i as usize].saturating_add(n.min(u64::from(u32::MAX)) as u32);
        }
    })?;
    Ok(counts)
}
