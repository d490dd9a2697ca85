//! Engagement: each customer's engagement events in the 90 days up to a day
//! (`scoring.md`, "Feedback and engagement").

use std::collections::HashMap;
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
    let mut engagement = vec![0u32; index.len()];
    let window_start = end - WINDOW_DAYS * DAY_MICROS;
    for e in warehouse::events::read(&version_dir.join("events"))? {
        if let Some(&i) = e.customer_id.as_deref().and_then(|id| index.get(id))
            && e.ts >= window_start
            && e.ts < end
        {
            engagement[i as usize] += 1;
        }
    }
    Ok(engagement)
}
