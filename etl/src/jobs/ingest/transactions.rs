//! The transactions step: the stored transactions the drop did not replace,
//! plus the rows of the drop's winning records, each row still without its
//! customer (named by the identities step).

use std::sync::Arc;

use rustc_hash::FxHashSet as HashSet;

use super::versions::state_of;
use crate::consolidate::versions::{RecordState, Resolution};
use crate::memory::release_freed;
use crate::record::TxnRecord;
use crate::sources::InputFile;
use crate::warehouse::StoredTxn;

/// Every transaction row of the history after this drop. Winners' record
/// state is pushed onto `state` (numbered records live in the dataset).
pub(super) fn consolidate(
    stored: Vec<StoredTxn>,
    winners: Resolution<TxnRecord>,
    files: &[InputFile],
    state: &mut Vec<RecordState>,
) -> Vec<StoredTxn> {
    let replaced: HashSet<&str> = winners.replaced.iter().map(|k| &**k).collect();
    let mut txns: Vec<StoredTxn> = stored
        .into_iter()
        .filter(|t| !replaced.contains(&*t.record_key))
        .collect();
    txns.reserve_exact(winners.winners().map(|w| w.body.row_count()).sum());
    let file_names: Vec<Arc<str>> = files.iter().map(|f| f.name.as_str().into()).collect();
    // File by file, so each file's records are freed as soon as they are
    // converted (and handed back every so many files, see `memory`).
    for (file_index, file_winners) in winners.winners.into_iter().enumerate() {
        if file_index % 16 == 15 {
            release_freed();
        }
        for w in file_winners {
            if !w.numbered {
                state.push(state_of(&w));
            }
            if w.body.ignored() {
                continue;
            }
            let source_file = &file_names[w.pos.file as usize];
            let n = w.body.row_count();
            let mut record_key = w.key;
            let (mut keys, rows) = w.body.into_rows();
            for (i, row) in rows.enumerate() {
                // The last row takes the record's keys; a refunded order's first row copies them.
                let last = i + 1 == n;
                txns.push(StoredTxn {
                    row,
                    customer_id: None,
                    keys: take_or_clone(&mut keys, last),
                    record_key: take_or_clone(&mut record_key, last),
                    source_file: Arc::clone(source_file),
                });
            }
        }
    }
    release_freed();
    txns
}

/// `v` itself when `last` (leaving its default behind), else a copy.
fn take_or_clone<T: Clone + Default>(v: &mut T, last: bool) -> T {
    if last { std::mem::take(v) } else { v.clone() }
}
