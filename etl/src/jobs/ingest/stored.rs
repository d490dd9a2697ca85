//! The state a run starts from: the current version's datasets and `_state`.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::IngestError;
use crate::consolidate::events::EventLog;
use crate::consolidate::identity::KeyClaim;
use crate::consolidate::versions::RecordState;
use crate::sources::InputFile;
use crate::warehouse::publish::Warehouse;
use crate::warehouse::{self, CustomerRow, StoredTxn};

/// Rates and anything else small that must survive between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SmallState {
    /// Currency code to rate (to the base currency), as text.
    pub rates: BTreeMap<String, String>,
}

/// The published state this run starts from.
#[derive(Default)]
pub(super) struct Stored {
    /// The record state, sorted by key (looked up by binary search; the
    /// night's kept rows stay in order, so writing it back is a merge).
    pub records: Vec<RecordState>,
    pub txns: Vec<StoredTxn>,
    pub customers: Vec<CustomerRow>,
    /// Keys of superseded CRM versions.
    pub key_history: Vec<KeyClaim>,
    /// Stored events, in a log whose file indices are the run's.
    pub events: EventLog,
    pub small: SmallState,
}

/// Reads the current version (nothing on a fresh warehouse).
pub(super) fn load(w: &Warehouse, files: &[InputFile]) -> Result<Stored, IngestError> {
    let mut events = EventLog::with_files(files.iter().map(|f| f.name.as_str()));
    let Some(dir) = w.current()? else {
        return Ok(Stored {
            events,
            ..Stored::default()
        });
    };
    let ((records, key_history), (txns, (customers, ev))) = rayon::join(
        || {
            let state = dir.join(warehouse::state::DIR);
            (
                warehouse::state::read(&state),
                warehouse::key_history::read(&state),
            )
        },
        || {
            rayon::join(
                || warehouse::transactions::read(&dir.join("transactions")),
                || {
                    rayon::join(
                        || warehouse::customers::read(&dir.join("customers")),
                        || warehouse::events::read_log(&dir.join("events"), &mut events),
                    )
                },
            )
        },
    );
    let small_path = dir.join(warehouse::state::DIR).join("small.json");
    let small: SmallState = if small_path.exists() {
        warehouse::state::read_json(&small_path)?
    } else {
        SmallState::default()
    };
    Ok(Stored {
        records: {
            let mut records = records?;
            // Written sorted; a file from elsewhere might not be.
            if !records.is_sorted_by(|a, b| a.key < b.key) {
                records.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
            }
            records
        },
        txns: txns?,
        customers: customers?,
        key_history: key_history?,
        events: {
            ev?;
            events
        },
        small,
    })
}
