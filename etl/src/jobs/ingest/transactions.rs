//! The transactions step: the stored transactions the drop did not replace,
//! plus the rows of the drop's winning records, each row still without its
//! customer (named by the identities step).

use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use super::touched::Touched;
use super::versions::state_of;
use crate::consolidate::versions::{RecordState, Resolution};
use crate::memory::release_freed;
use crate::record::TxnRecord;
use crate::sources::InputFile;
use crate::warehouse::StoredTxn;

/// The consolidated transactions: the stored rows kept, then each file's
/// new rows, in chunks. No step needs them in one allocation, so the kept
/// history is never copied to make room, and a drop's records are freed file
/// by file as their rows are made (one allocation would hold every row
/// beside every record).
#[derive(Debug, Default)]
pub(super) struct Txns {
    chunks: Vec<Vec<StoredTxn>>,
}

impl Txns {
    /// Every row, the kept history first, then the drop's in file order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredTxn> + Clone {
        self.chunks.iter().flatten()
    }

    /// Every row, in parallel.
    pub fn par_iter_mut(&mut self) -> impl ParallelIterator<Item = &mut StoredTxn> {
        self.chunks.par_iter_mut().flat_map(|c| c.par_iter_mut())
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

/// Records converted between two hand-backs of freed memory.
const RELEASE_EVERY: usize = 1 << 17;

/// Every transaction row of the history after this drop. Winners' record
/// state is pushed onto `state` (numbered records live in the dataset); the
/// stored rows they replace and the rows they add are `touched`.
pub(super) fn consolidate(
    mut stored: Vec<StoredTxn>,
    winners: Resolution<TxnRecord>,
    files: &[InputFile],
    state: &mut Vec<RecordState>,
    touched: &mut Touched,
) -> Txns {
    let replaced: HashSet<&str> = winners.replaced.iter().map(|k| &**k).collect();
    stored.retain(|t| {
        let keep = !replaced.contains(&*t.record_key);
        if !keep {
            touched.row(t);
        }
        keep
    });
    let mut txns = Txns {
        chunks: Vec::with_capacity(winners.winners.len() + 1),
    };
    txns.chunks.push(stored);
    let file_names: Vec<Arc<str>> = files.iter().map(|f| f.name.as_str().into()).collect();
    // Chunk by chunk (a read batch), so each chunk's records are freed as
    // soon as they are converted, and handed back every ~130,000 records
    // (see `memory`).
    let mut since_release = 0;
    for file_winners in winners.winners {
        since_release += file_winners.len();
        if since_release >= RELEASE_EVERY {
            since_release = 0;
            release_freed();
        }
        let mut made = Vec::with_capacity(file_winners.iter().map(|w| w.body.row_count()).sum());
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
                touched.month(row.occurred_at);
                made.push(StoredTxn {
                    row,
                    customer_id: None,
                    keys: take_or_clone(&mut keys, last),
                    record_key: take_or_clone(&mut record_key, last),
                    source_file: Arc::clone(source_file),
                });
            }
        }
        txns.chunks.push(made);
    }
    release_freed();
    txns
}

/// `v` itself when `last` (leaving its default behind), else a copy.
fn take_or_clone<T: Clone + Default>(v: &mut T, last: bool) -> T {
    if last { std::mem::take(v) } else { v.clone() }
}
