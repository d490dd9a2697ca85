//! The events step: the event log written into the staged version with the
//! keys each event came with, and the key set table naming each key set's
//! customer as transactions do (CRM, else guest), else by the id it gives.
//! A claim changes a key set's row, never an event, so a night over a
//! version with the key set table reads and writes only the months of its
//! own events and shares the others.

use std::cell::RefCell;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use super::identities::DirtyKeys;
use super::stored::EventHistory;
use crate::consolidate::events::{EventLog, KnownEvents};
use crate::consolidate::identity::{Directory, Guests};
use crate::record::KeyRefs;
use crate::warehouse::event_keysets::{self, Carried, KeysetRow, StoredRows};
use crate::warehouse::months::{self, Month, Unchanged, Written};
use crate::warehouse::parquet_io::{opt_str_ref, opt_utf8_array};
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

/// What a night reads of a stored month its events fall in.
enum MonthRead {
    /// Every event: the month is written again whole.
    Whole(EventLog),
    /// The record keys: the month is appended to.
    Keys(KnownEvents),
}

/// The drop's events as [`load_drop_months`] needs them (borrowed apart
/// from its other records, which are read beside them).
pub(super) struct DropEvents<'a> {
    /// The event log: the drop's events, after the stored ones it holds.
    pub events: &'a mut EventLog,
    /// How many of the log's events are stored ones.
    pub stored_events: &'a mut usize,
    /// The record keys of stored events, to find those delivered again.
    pub known_events: &'a mut KnownEvents,
}

/// Reads what finding duplicates needs of the stored events of the months
/// the drop's events fall in (an event delivered again is in its own month):
/// of a month that takes another part (see `months::appendable`), the
/// record keys alone, into `input.known_events`, and the month is noted in
/// `history.appended`; of another, every event, ahead of the drop's, and
/// the month is written again whole.
pub(super) fn load_drop_months(
    input: DropEvents<'_>,
    history: &mut EventHistory,
) -> Result<(), WarehouseError> {
    let mut wanted: Vec<Month> = input
        .events
        .iter()
        .skip(*input.stored_events)
        .map(|e| months::month_of(e.ts))
        .collect::<HashSet<Month>>()
        .into_iter()
        .collect();
    wanted.sort_unstable();
    // The drop's record keys: of a month read by key, only these are kept.
    let drop_keys: KnownEvents = input
        .events
        .iter()
        .skip(*input.stored_events)
        .map(|e| (e.digest, e.n))
        .collect();
    let read = wanted
        .par_iter()
        .map(|&m| {
            let dir = history.dir.join(months::folder(m));
            if months::appendable(&dir)? {
                let mut known = KnownEvents::default();
                warehouse::events::read_known(&dir, &drop_keys, &mut known)?;
                return Ok((m, MonthRead::Keys(known)));
            }
            let mut own = EventLog::default();
            warehouse::events::read_log(&dir, &mut own).map(|()| (m, MonthRead::Whole(own)))
        })
        .collect::<Result<Vec<_>, WarehouseError>>()?;
    let mut log = EventLog::default();
    for (month, month_read) in read {
        match month_read {
            MonthRead::Whole(own) => log.append_stored(own),
            MonthRead::Keys(known) => {
                history.appended.insert(month);
                input.known_events.extend(known);
            }
        }
    }
    *input.stored_events += log.len();
    input.events.prepend_stored(log);
    Ok(())
}

/// Writes `events` into `target.version/events` and the key set table into
/// its `_state` (nothing when no version is being staged). With `history`
/// (the stored version's key set table) the log holds the stored events of
/// the drop's months only: just the months of the new events are written,
/// the others linked, and the table is carried over a batch at a time (a
/// stored row naming a CRM customer, none of whose keys is `dirty`, keeps
/// it unresolved). Without, it holds every event, every month is written,
/// and the table is made from the log. The log is consumed: it is freed
/// before the customers are built.
pub(super) fn write(
    target: Option<Target<'_>>,
    mut events: EventLog,
    history: Option<EventHistory>,
    directory: &Directory<'_>,
    dirty: &DirtyKeys<'_>,
    guests: &Guests,
) -> Result<EventsWritten, WarehouseError> {
    let Some(target) = target else {
        // Nothing new (no version is staged): the stored events stand.
        let total = match &history {
            Some(h) => event_keysets::total(&h.state)?,
            None => events.len() as u64,
        };
        return Ok(EventsWritten {
            months: Written::default(),
            total,
        });
    };
    // Sorting within parts keeps each part's events, so the stored ones
    // still come first.
    events.sort_parts();
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
        Some(h) => Unchanged::of(&h.dir, &changed)?.map(|u| u.appending(&h.appended)),
        None => None,
    };
    let months =
        warehouse::events::write_log(&target.version.join("events"), &events, &ordered, unchanged)?;
    drop(ordered);
    let state = target.version.join(warehouse::state::DIR);
    let total = match &history {
        Some(h) => carry_keysets(&h.state, &state, &events, directory, dirty, guests, &added)?,
        None => write_keysets(&state, &events, directory, guests, &added)?,
    };
    Ok(EventsWritten { months, total })
}

/// A key set's customer, and whether it is the CRM customer (see [`customer_of`]).
type Named<'a> = (Option<&'a str>, bool);

/// A key set's customer: its CRM customer, else its guest, else the
/// customer id it gives (events create no customer); and whether it is
/// the CRM customer.
fn customer_of<'a>(directory: &Directory<'a>, guests: &'a Guests, keys: KeyRefs<'a>) -> Named<'a> {
    match directory.resolve_refs(keys) {
        Some(crm) => (Some(crm), true),
        None => (guests.resolve_refs(keys).map(|g| &*g.id).or(keys[0]), false),
    }
}

/// Writes the key set table of a log holding every event: each key set
/// with events, its customer and its `added` events. Returns the number of
/// events.
fn write_keysets(
    state: &Path,
    events: &EventLog,
    directory: &Directory<'_>,
    guests: &Guests,
    added: &[u64],
) -> Result<u64, WarehouseError> {
    let customers: Vec<Named<'_>> = (0..events.keysets.len() as u32)
        .into_par_iter()
        .map(|k| customer_of(directory, guests, events.keyset_refs(k)))
        .collect();
    // Made a batch at a time as they are written: 1.4M key sets are ~100 MB
    // of rows.
    let rows = (0..events.keysets.len() as u32)
        .filter(|&k| added[k as usize] > 0)
        .map(|k| KeysetRow {
            keys: events.keyset_refs(k),
            customer: customers[k as usize].0,
            events: added[k as usize],
            crm: customers[k as usize].1,
        });
    event_keysets::write_each(state, rows)?;
    Ok(added.iter().sum())
}

/// Carries the stored key set table of `from` over into `to` (both `_state`
/// folders), a batch at a time, so it is never held: every stored key set
/// named its customer again (a claim may have moved it; one naming a CRM
/// customer, none of whose keys is `dirty`, keeps it) and given the
/// `added` events of the log's key set with its keys; then the log's key
/// sets with events that the table lacks. Returns the number of events.
fn carry_keysets(
    from: &Path,
    to: &Path,
    events: &EventLog,
    directory: &Directory<'_>,
    dirty: &DirtyKeys<'_>,
    guests: &Guests,
    added: &[u64],
) -> Result<u64, WarehouseError> {
    // The log's key sets found among the stored rows.
    let found = RefCell::new(vec![false; events.keysets.len()]);
    let carry = |stored: &StoredRows<'_>| {
        let rows: Vec<(Named<'_>, Option<u32>)> = (0..stored.len())
            .into_par_iter()
            .map(|i| {
                let k = stored.keys.map(|a| opt_str_ref(a, i));
                let named = match stored.crm.value(i) && !dirty.touch(k) {
                    true => (opt_str_ref(stored.customers, i), true),
                    false => customer_of(directory, guests, k),
                };
                (named, events.find_keyset(k[0], k[1], k[2]))
            })
            .collect();
        let mut found = found.borrow_mut();
        let counts = rows.iter().enumerate().map(|(i, (_, k))| {
            let tonight = k.map_or(0, |k| {
                found[k as usize] = true;
                added[k as usize]
            });
            stored.events.value(i) + tonight
        });
        Carried {
            events: counts.collect(),
            customers: opt_utf8_array(rows.iter().map(|((c, _), _)| *c)),
            crm: rows.iter().map(|((_, crm), _)| *crm).collect(),
        }
    };
    let tail = || {
        let found = found.take();
        (0..events.keysets.len() as u32)
            .filter(move |&k| !found[k as usize] && added[k as usize] > 0)
            .map(|k| {
                let keys = events.keyset_refs(k);
                let (customer, crm) = customer_of(directory, guests, keys);
                KeysetRow {
                    keys,
                    customer,
                    events: added[k as usize],
                    crm,
                }
            })
    };
    let written = event_keysets::carry_over(from, to, carry, tail)?;
    tracing::debug!(
        rows = written.stats.rows,
        delta = written.delta,
        "event key sets carried over"
    );
    Ok(written.events)
}
