//! The versions step: each record of the drop meets the stored state and
//! either wins (new, or a newer version of a stored record) or is a
//! duplicate. Every record's outcome is counted against its file here.

use rustc_hash::FxHashSet as HashSet;

use super::read::DropRead;
use super::stored::Stored;
use crate::consolidate::events::{self, EventResolution};
use crate::consolidate::versions::{self, RecordState, Resolution, RowMonths, StoredVersions};
use crate::manifest::Counts;
use crate::memory::release_freed;
use crate::record::{CrmRecord, Outcome, TxnRecord, Versioned};
use crate::warehouse::StoredTxn;
use crate::warehouse::months::{Month, month_of};

/// The drop's winners and what they replace.
pub(super) struct Versions {
    /// CRM records: winners per file, and the stored keys they replace.
    pub crm: Resolution<CrmRecord>,
    /// Transactions, likewise.
    pub txns: Resolution<TxnRecord<u32>>,
    /// Events (the winners stay in the drop's event log).
    pub events: EventResolution,
    /// CRM versions of this drop superseded by a later one: their keys stay
    /// claimable (data contract, section 5).
    pub superseded_crm: Vec<CrmRecord>,
}

impl Versions {
    /// Whether any record of the drop changes the warehouse.
    pub fn any_winner(&self) -> bool {
        self.crm.winner_count() > 0 || self.txns.winner_count() > 0 || self.events.winners > 0
    }
}

/// Resolves the drop's versions against the stored state, counting each
/// record's outcome in `read.per_file`. Records with an id of their own meet
/// the stored state; numbered ones (content + occurrence) only need to know
/// if they are stored. Events resolve beside the CRM and transactions (one
/// after the other: their tables of keys would otherwise be in memory at once).
pub(super) fn resolve(read: &mut DropRead, stored: &Stored) -> Versions {
    let records = StoredIndex::of(&stored.records, &read.crm, &read.txns);
    let records = &records;
    let stored_txns = &stored.txns;
    let known_txns = &stored.known_txn_keys;
    let new_crm = std::mem::take(&mut read.crm);
    let new_txns = std::mem::take(&mut read.txns);
    let stored_events = read.stored_events;
    let log = &mut read.events;
    let known_events = &read.known_events;
    let mut superseded_crm: Vec<CrmRecord> = Vec::new();
    let ((crm, txns), events) = rayon::join(
        || {
            let crm = versions::resolve_keeping_superseded(new_crm, records, |v| {
                superseded_crm.push(v.body)
            });
            let mut stored_keys = numbered_stored_keys(stored_txns, &new_txns);
            stored_keys.extend(known_txns.iter().map(|k| &**k));
            let txns = versions::resolve_mixed(new_txns, records, |k| stored_keys.contains(k));
            (crm, txns)
        },
        || events::resolve(log, stored_events, known_events),
    );
    let per_file = &mut read.per_file;
    let txn_keys = &read.txn_keys;
    fate(&crm, per_file, |_| Outcome::Accepted);
    fate(&txns, per_file, |w| {
        if w.body.ignored() {
            Outcome::Ignored
        } else if txn_keys.is_anonymous(w.body.keys) {
            Outcome::Anonymous
        } else {
            Outcome::Accepted
        }
    });
    for (files, outcome) in [
        (&events.duplicate_files, Outcome::Duplicate),
        (&events.winner_files, Outcome::Accepted),
    ] {
        for &f in files {
            per_file[f as usize].add(outcome, None);
        }
    }
    release_freed();
    Versions {
        crm,
        txns,
        events,
        superseded_crm,
    }
}

/// The stored record keys a numbered record of the drop can meet: those of
/// the months its numbered records fall in. A numbered key is its record's
/// content (time included) and occurrence, so a stored copy lies in the same
/// month; a night's generic transactions then look among one month of the
/// history instead of all of it, and a drop without any among none.
fn numbered_stored_keys<'s>(
    stored: &'s [Vec<StoredTxn>],
    new: &[Vec<Versioned<TxnRecord<u32>>>],
) -> HashSet<&'s str> {
    let stored = stored.iter().flatten();
    let mut months: HashSet<Month> = HashSet::default();
    for v in new.iter().flatten().filter(|v| v.numbered()) {
        match &v.body.row {
            Some(row) => {
                months.insert(month_of(row.occurred_at));
            }
            // No time to place it by (no source makes such a record today):
            // every stored key.
            None => return stored.map(|t| &*t.record_key).collect(),
        }
    }
    if months.is_empty() {
        return HashSet::default();
    }
    stored
        .filter(|t| months.contains(&month_of(t.row.occurred_at)))
        .map(|t| &*t.record_key)
        .collect()
}

fn fate<T>(
    res: &Resolution<T>,
    per_file: &mut [Counts],
    winner_outcome: impl Fn(&Versioned<T>) -> Outcome,
) {
    for p in &res.duplicates {
        per_file[p.file() as usize].add(Outcome::Duplicate, None);
    }
    for w in res.winners() {
        per_file[w.pos.file() as usize].add(winner_outcome(w), None);
    }
}

/// The stored record state, looked up by binary search; when the drop holds
/// many keyed records (a re-run of a large drop), through a hash table
/// borrowing the rows instead, which makes each lookup one probe.
enum StoredIndex<'a> {
    Sorted(&'a [RecordState]),
    Hashed(rustc_hash::FxHashMap<&'a str, &'a RecordState>),
}

impl<'a> StoredIndex<'a> {
    fn of(
        rows: &'a [RecordState],
        crm: &[Vec<Versioned<CrmRecord>>],
        txns: &[Vec<Versioned<TxnRecord<u32>>>],
    ) -> StoredIndex<'a> {
        let keyed = crm.iter().map(Vec::len).sum::<usize>()
            + txns.iter().flatten().filter(|v| !v.numbered()).count();
        if keyed >= 1 << 16 && keyed * 8 >= rows.len() {
            StoredIndex::Hashed(rows.iter().map(|r| (&*r.key, r)).collect())
        } else {
            StoredIndex::Sorted(rows)
        }
    }
}

impl StoredVersions for StoredIndex<'_> {
    fn version_of(&self, key: &str) -> Option<&RecordState> {
        match self {
            StoredIndex::Sorted(rows) => rows.version_of(key),
            StoredIndex::Hashed(map) => map.version_of(key),
        }
    }
}

/// The per-record state of keyed records that the winners leave in place
/// (numbered ones live in their datasets), still sorted by key; the winners'
/// entries are added after them as they are consumed. A vector, not a map:
/// it is millions of rows.
pub(super) fn kept_state(
    mut stored: Vec<RecordState>,
    crm: &Resolution<CrmRecord>,
    txns: &Resolution<TxnRecord<u32>>,
) -> Vec<RecordState> {
    let replaced: HashSet<&str> = crm
        .replaced
        .iter()
        .chain(&txns.replaced)
        .map(|k| &**k)
        .collect();
    stored.retain(|r| !replaced.contains(&*r.key));
    stored.reserve_exact(crm.winner_count() + txns.winner_count());
    stored
}

/// A winner's entry in the record state.
pub(super) fn state_of<K>(w: &Versioned<TxnRecord<K>>) -> RecordState {
    RecordState {
        key: w.key.clone(),
        version: w.version.get(),
        digest: w.digest,
        months: RowMonths::of(
            w.body.row.as_ref().map(|r| r.occurred_at),
            w.body.row.as_ref().and(w.body.refunded_at.get()),
        ),
    }
}
