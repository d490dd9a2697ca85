//! The events step: the resolved event log, each event naming its customer
//! as transactions do (CRM, else guest), else by the id it gives, written
//! into the staged version: on a night, only the months holding a new event
//! or a stored one whose customer changes; the others are shared with the
//! version the run started from.

use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use crate::consolidate::events::EventLog;
use crate::consolidate::identity::{Directory, Guests};
use crate::warehouse::months::{self, Month, Unchanged, Written};
use crate::warehouse::{self, WarehouseError};

/// Where the events are written and what they are compared with.
pub(super) struct Target<'a> {
    /// The staged version.
    pub version: &'a Path,
    /// The version the run started from, when only what changed is written.
    pub previous: Option<&'a Path>,
    /// How many events of the log were stored (they come first).
    pub stored: usize,
}

/// Writes `events` into `target.version/events` (nothing when no version is
/// being staged). The log is consumed: it is freed before the customers are built.
pub(super) fn write(
    target: Option<Target<'_>>,
    mut events: EventLog,
    directory: &Directory<'_>,
    guests: &Guests,
) -> Result<Written, WarehouseError> {
    let Some(target) = target else {
        return Ok(Written::default());
    };
    events.sort_parts();
    // The order to write in (a merge on one thread) beside each key set's customer.
    let (ordered, customers): (_, Vec<Option<&str>>) = rayon::join(
        || events.ordered(),
        || {
            (0..events.keysets.len() as u32)
                .into_par_iter()
                .map(|k| {
                    let keys = events.keys(k);
                    directory
                        .resolve(&keys)
                        .or_else(|| guests.resolve(&keys).map(|g| &*g.id))
                        .or_else(|| events.text.get(events.keysets[k as usize][0]))
                })
                .collect()
        },
    );
    let changed = target
        .previous
        .map(|_| changed_months(&events, &customers, target.stored));
    let previous = target.previous.map(|p| p.join("events"));
    let unchanged = match (&previous, &changed) {
        (Some(p), Some(c)) => Unchanged::of(p, c)?,
        _ => None,
    };
    warehouse::events::write_log(
        &target.version.join("events"),
        &events,
        &ordered,
        &customers,
        unchanged,
    )
}

/// The months of the drop's events and of the stored events whose key set
/// now resolves to another customer.
fn changed_months(events: &EventLog, customers: &[Option<&str>], stored: usize) -> HashSet<Month> {
    let moved: Vec<bool> = (0..customers.len())
        .into_par_iter()
        .map(|k| events.customer_changed(k as u32, customers[k]))
        .collect();
    let mut changed = HashSet::default();
    for (i, e) in events.iter().enumerate() {
        if i >= stored || moved[e.keys as usize] {
            changed.insert(months::month_of(e.ts));
        }
    }
    changed
}
