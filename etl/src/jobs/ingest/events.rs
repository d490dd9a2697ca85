//! The events step: the event log written into the staged version with the
//! keys each event came with, and the key set table naming each key set's
//! customer as transactions do (CRM, else guest), else by the id it gives.
//! A claim changes a key set's row, never an event, so a night over a
//! version with the key set table reads and writes only the months of its
//! own events and shares the others.

use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use super::read::DropRead;
use super::stored::EventHistory;
use crate::consolidate::events::EventLog;
use crate::consolidate::identity::{Directory, Guests};
use crate::warehouse::event_keysets::{self, KeysetHistory, KeysetRow};
use crate::warehouse::months::{self, Month, Unchanged, Written};
use crate::warehouse::{self, WarehouseError};

/// Where the events are written.
pub(super) struct Target<'a> {
    /// The staged version.
    pub version: &'a Path,
    /// How many events of the log were stored (they come first).
    pub stored: usize,
}

/// What the step wrote.
pub(super) struct EventsWritten {
    /// The months written and shared.
    pub months: Written,
    /// Events in the published version.
    pub total: u64,
}

/// Reads the stored events of the months the drop's events fall in, ahead
/// of the drop's: an event delivered again is in its own month, so these
/// are all that finding duplicates needs.
pub(super) fn load_drop_months(
    input: &mut DropRead,
    history: &EventHistory,
) -> Result<(), WarehouseError> {
    let mut wanted: Vec<Month> = input
        .events
        .iter()
        .skip(input.stored_events)
        .map(|e| months::month_of(e.ts))
        .collect::<HashSet<Month>>()
        .into_iter()
        .collect();
    wanted.sort_unstable();
    let logs = wanted
        .par_iter()
        .map(|&m| {
            let mut own = EventLog::default();
            warehouse::events::read_log(&history.dir.join(months::folder(m)), &mut own)
                .map(|()| own)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut log = EventLog::default();
    for own in logs {
        log.append_stored(own);
    }
    input.stored_events += log.len();
    input.events.prepend_stored(log);
    Ok(())
}

/// Writes `events` into `target.version/events` and the key set table into
/// its `_state` (nothing when no version is being staged). With `history`
/// (the stored key sets) the log holds the stored events of the drop's
/// months only: just the months of the new events are written, the others
/// linked. Without, it holds every event and every month is written. The
/// log is consumed: it is freed before the customers are built.
pub(super) fn write(
    target: Option<Target<'_>>,
    mut events: EventLog,
    history: Option<EventHistory>,
    directory: &Directory<'_>,
    guests: &Guests,
) -> Result<EventsWritten, WarehouseError> {
    let Some(target) = target else {
        // Nothing new (no version is staged): the stored events stand.
        let total = history
            .as_ref()
            .map_or(events.len() as u64, |h| h.keysets.total());
        return Ok(EventsWritten {
            months: Written::default(),
            total,
        });
    };
    // Sorting within parts keeps each part's events, so the stored ones
    // still come first.
    events.sort_parts();
    let customers: Vec<Option<&str>> = (0..events.keysets.len() as u32)
        .into_par_iter()
        .map(|k| {
            let keys = events.keys(k);
            directory
                .resolve(&keys)
                .or_else(|| guests.resolve(&keys).map(|g| &*g.id))
                .or_else(|| events.text.get(events.keysets[k as usize][0]))
        })
        .collect();
    // The events the key set counts add: the new ones over a history, else all.
    let counted = if history.is_some() { target.stored } else { 0 };
    let mut added = vec![0u64; events.keysets.len()];
    for e in events.iter().skip(counted) {
        added[e.keys as usize] += 1;
    }
    let changed: HashSet<Month> = events
        .iter()
        .skip(target.stored)
        .map(|e| months::month_of(e.ts))
        .collect();
    let ordered = events.ordered();
    let unchanged = match &history {
        Some(h) => Unchanged::of(&h.dir, &changed)?,
        None => None,
    };
    let months =
        warehouse::events::write_log(&target.version.join("events"), &events, &ordered, unchanged)?;
    drop(ordered);
    let stored = history.as_ref().map(|h| &h.keysets);
    let total = write_keysets(
        &target.version.join(warehouse::state::DIR),
        &events,
        &customers,
        stored,
        &added,
    )?;
    Ok(EventsWritten { months, total })
}

/// Writes the key set table: every key set with events, its customer, and
/// its stored events (`stored`) plus the `added` ones. Returns the number of
/// events.
fn write_keysets(
    state: &Path,
    events: &EventLog,
    customers: &[Option<&str>],
    stored: Option<&KeysetHistory>,
    added: &[u64],
) -> Result<u64, WarehouseError> {
    let text = |i: u32| events.text.get(i);
    let count = |k: u32| stored.map_or(0, |h| h.events(k)) + added[k as usize];
    // Made a batch at a time as they are written: 1.4M key sets are ~100 MB
    // of rows.
    let rows = (0..events.keysets.len() as u32)
        .filter(|&k| count(k) > 0)
        .map(|k| KeysetRow {
            keys: events.keysets[k as usize].map(text),
            customer: customers[k as usize],
            events: count(k),
        });
    event_keysets::write_each(state, rows)?;
    Ok((0..events.keysets.len() as u32).map(count).sum())
}
