//! The state a run starts from: the current version's datasets and `_state`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;
use serde::{Deserialize, Serialize};

use super::IngestError;
use super::history::UnreadMonths;
use crate::consolidate::events::EventLog;
use crate::consolidate::identity::KeyClaim;
use crate::consolidate::versions::RecordState;
use crate::record::CrmIdentities;
use crate::sources::InputFile;
use crate::warehouse::months::{self, Month};
use crate::warehouse::publish::Warehouse;
use crate::warehouse::txn_keysets::{self, TxnKeysets};
use crate::warehouse::{self, StoredTxn, WarehouseError};

/// Rates and anything else small that must survive between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SmallState {
    /// Currency code to rate (to the base currency), as text.
    pub rates: BTreeMap<String, String>,
    /// The fingerprint of the key that pseudonymised the warehouse; None
    /// when it is not pseudonymised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonymised: Option<String>,
    /// The warehouse format of the version (see `warehouse::state::FORMAT`).
    #[serde(default)]
    pub format: u32,
}

/// The published state this run starts from.
#[derive(Default)]
pub(super) struct Stored {
    /// The record state, sorted by key (looked up by binary search; the
    /// night's kept rows stay in order, so writing it back is a merge): all
    /// of it, or when `records_looked_up` only the entries of the drop's keys.
    pub records: Vec<RecordState>,
    /// Whether the night reads only the record state it needs: the entries
    /// of the drop's keys, looked up in the stored table and its delta (see
    /// `warehouse::state`), which it writes over without holding them.
    pub records_looked_up: bool,
    /// The stored transactions, in parts (a file's, a batch's).
    pub txns: Vec<Vec<StoredTxn>>,
    /// Their key sets.
    pub txn_keysets: TxnKeysets,
    /// Record keys of stored transactions not read whole that the drop's
    /// numbered records also have (see `history::read_for_drop`).
    pub known_txn_keys: Vec<crate::record::RecordKey>,
    /// Whether the transactions were read by key set number: when not (an
    /// earlier cvm's version, a missing or unreadable table), every month is
    /// written again, so the next night can read them all by number.
    pub txns_by_number: bool,
    /// When the night reads only the transaction months it needs (see
    /// `history`): the months not read yet. `txns` then holds the months
    /// read so far; otherwise it holds every stored transaction.
    pub unread: Option<UnreadMonths>,
    /// The stored CRM customers, as much of each as identity resolution
    /// needs (the rest is carried over from their files as the run writes
    /// its own: see `customers`).
    pub crm: CrmIdentities,
    /// Keys of superseded CRM versions.
    pub key_history: Vec<KeyClaim>,
    /// Stored events, in a log whose file indices are the run's: all of
    /// them, or with `event_history` none.
    pub events: EventLog,
    /// When the stored events were not read: where the version keeps them
    /// and their key sets, for the months and the table a night needs.
    pub event_history: Option<EventHistory>,
    pub small: SmallState,
}

/// Where the stored events are, for a run that reads only the months it
/// needs and carries the key set table over (see `warehouse::event_keysets`).
pub(super) struct EventHistory {
    /// The `events/` folder of the stored version.
    pub dir: PathBuf,
    /// Its `_state` folder, which holds the key set table.
    pub state: PathBuf,
    /// The months the drop's events are appended to (see `events`).
    pub appended: HashSet<Month>,
}

/// Reads the current version (nothing on a fresh warehouse). The stored
/// events are read whole only for a full rebuild, or when the version keeps
/// no key set table or no month-partitioned events (an earlier cvm's).
pub(super) fn load(
    w: &Warehouse,
    files: &[InputFile],
    full_rebuild: bool,
) -> Result<Stored, IngestError> {
    let seeded = || EventLog::with_files(files.iter().map(|f| f.name.as_str()));
    let mut events = seeded();
    let Some(dir) = w.current()? else {
        return Ok(Stored {
            events,
            ..Stored::default()
        });
    };
    warehouse::state::check_format(&dir)?;
    let events_dir = dir.join("events");
    let state_dir = dir.join(warehouse::state::DIR);
    // The key set table when it can stand for the events (carried over as
    // the events are written: see `events`), else every event.
    let load_events = |events: &mut EventLog| -> Result<bool, WarehouseError> {
        if !full_rebuild && months::partitioned(&events_dir)? {
            if warehouse::event_keysets::usable(&state_dir) {
                return Ok(true);
            }
            // Derived state: an unreadable table, or another cvm's (an
            // upgrade), means reading every event, once.
            if state_dir.join(warehouse::event_keysets::FILE).exists() {
                tracing::warn!(
                    "stored event key sets unreadable or of another cvm version: reading every event"
                );
            }
        }
        warehouse::events::read_log(&events_dir, events).map(|()| false)
    };
    // A night that reads only what it needs reads neither the record state
    // nor the transactions here (see `history` and `warehouse::state`).
    let night = !full_rebuild && reads_what_it_needs(&dir)?;
    let ((records, key_history), (txns, (customers, ev))) = rayon::join(
        || {
            let state = dir.join(warehouse::state::DIR);
            (
                match night {
                    true => Ok(None),
                    false => warehouse::state::read(&state).map(Some),
                },
                warehouse::key_history::read(&state),
            )
        },
        || {
            rayon::join(
                || load_txns(&dir, full_rebuild, night),
                || {
                    rayon::join(
                        || warehouse::customers::read_crm_identities(&dir.join("customers")),
                        || load_events(&mut events),
                    )
                },
            )
        },
    );
    let txns = txns?;
    let (records, records_looked_up) = match (records?, &txns.unread) {
        (Some(records), _) => (records, false),
        (None, Some(_)) => (Vec::new(), true),
        // The key set table could not stand for the transactions after all.
        (None, None) => (warehouse::state::read(&state_dir)?, false),
    };
    let small_path = dir.join(warehouse::state::DIR).join("small.json");
    let small: SmallState = if small_path.exists() {
        warehouse::state::read_json(&small_path)?
    } else {
        SmallState::default()
    };
    Ok(Stored {
        records: sorted(records),
        records_looked_up,
        txns: txns.parts,
        txn_keysets: txns.sets,
        known_txn_keys: Vec::new(),
        txns_by_number: txns.by_number,
        unread: txns.unread,
        crm: customers?,
        key_history: key_history?,
        events: { events },
        event_history: ev?.then(|| EventHistory {
            dir: events_dir.clone(),
            state: state_dir.clone(),
            appended: HashSet::default(),
        }),
        small,
    })
}

/// Entries sorted by key: written so; a file from elsewhere might not be.
pub(super) fn sorted(mut records: Vec<RecordState>) -> Vec<RecordState> {
    if !records.is_sorted_by(|a, b| a.key < b.key) {
        records.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
    }
    records
}

/// Whether the stored `version` lets a night read only what it needs: its
/// key set table keeps each key set's summary, its record state each
/// record's months, its purchase totals are there, and every transaction
/// lies in a month folder (an earlier cvm's version has not all of these:
/// its first night reads everything and writes them).
fn reads_what_it_needs(version: &Path) -> Result<bool, WarehouseError> {
    let state = version.join(warehouse::state::DIR);
    Ok(txn_keysets::summarised(&state)
        && warehouse::state::knows_months(&state)?
        && warehouse::purchase_totals::usable(&state)
        && months::partitioned(&version.join("transactions"))?)
}

/// The stored transactions as a run loads them.
struct LoadedTxns {
    parts: Vec<Vec<StoredTxn>>,
    sets: TxnKeysets,
    by_number: bool,
    unread: Option<UnreadMonths>,
}

/// The stored transactions and their key sets: by key set number when the
/// version keeps a key set table (not read for a full rebuild, which works
/// from the rows' own keys), else by the rows' keys; and which it was. On a
/// `night` that reads only what it needs ([`reads_what_it_needs`]), no row
/// is read yet: the night reads the months it needs (`history`).
fn load_txns(
    version: &Path,
    full_rebuild: bool,
    night: bool,
) -> Result<LoadedTxns, WarehouseError> {
    let dir = version.join("transactions");
    let state = version.join(warehouse::state::DIR);
    if !full_rebuild {
        // Derived state: a table that is unreadable or misses a row's key
        // set means reading every row's keys.
        let started = std::time::Instant::now();
        match txn_keysets::read(&state) {
            Ok(Some(sets)) => {
                if night && sets.summarised() {
                    return Ok(LoadedTxns {
                        parts: Vec::new(),
                        unread: Some(UnreadMonths::of(&dir)?),
                        sets,
                        by_number: true,
                    });
                }
                match warehouse::transactions::read_numbered(&dir, &sets) {
                    Ok(parts) => {
                        tracing::debug!(
                            keysets = sets.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "stored transactions read by key set"
                        );
                        return Ok(LoadedTxns {
                            parts,
                            sets,
                            by_number: true,
                            unread: None,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stored transactions not readable by key set: reading their keys");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "stored transaction key sets unreadable: reading every row's keys");
            }
        }
    }
    let mut sets = TxnKeysets::default();
    let parts = warehouse::transactions::read_keyed(&dir, &mut sets)?;
    Ok(LoadedTxns {
        parts,
        sets,
        by_number: false,
        unread: None,
    })
}
