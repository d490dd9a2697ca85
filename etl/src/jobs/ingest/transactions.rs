//! The transactions step: the stored transactions the drop did not replace,
//! plus the rows of the drop's winning records, each row still without its
//! customer (named by the identities step).

use rustc_hash::FxHashSet as HashSet;

use super::touched::Touched;
use super::versions::state_of;
use crate::consolidate::versions::{RecordState, Resolution};
use crate::memory::release_freed;
use crate::record::TxnRecord;
use crate::sources::InputFile;
use crate::warehouse::txn_keysets::TxnKeysets;
use crate::warehouse::{SourceFile, StoredTxn};

/// The consolidated transactions: the stored rows kept, then each file's
/// new rows, in chunks. No step needs them in one allocation, so the kept
/// history is never copied to make room, and a drop's records are freed file
/// by file as their rows are made (one allocation would hold every row
/// beside every record).
#[derive(Debug, Default)]
pub(super) struct Txns {
    chunks: Vec<Vec<StoredTxn>>,
    /// Every row's key set: its keys and its customer.
    pub keysets: TxnKeysets,
    /// The key sets some row holds, by index (the table keeps those of
    /// removed rows too).
    pub used: Vec<bool>,
    /// The key sets the drop's rows hold, by index.
    pub fresh: Vec<bool>,
}

impl Txns {
    /// Every row, the kept history first, then the drop's in file order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredTxn> + Clone {
        self.chunks.iter().flatten()
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The customer of row `t`.
    pub fn customer(&self, t: &StoredTxn) -> Option<&str> {
        self.keysets.customer(t.keyset)
    }
}

/// Records converted between two hand-backs of freed memory.
const RELEASE_EVERY: usize = 1 << 17;

/// Every transaction row of the history after this drop. Winners' record
/// state is pushed onto `state` (numbered records live in the dataset); the
/// stored rows they replace and the rows they add are `touched`.
pub(super) fn consolidate(
    mut stored: Vec<Vec<StoredTxn>>,
    mut keysets: TxnKeysets,
    winners: Resolution<TxnRecord<u32>>,
    mut drop_keys: TxnKeysets,
    files: &[InputFile],
    state: &mut Vec<RecordState>,
    touched: &mut Touched,
) -> Txns {
    let replaced: HashSet<&str> = winners.replaced.iter().map(|k| &**k).collect();
    for part in &mut stored {
        part.retain(|t| {
            let keep = !replaced.contains(&*t.record_key);
            if !keep {
                touched.row(t, keysets.customer(t.keyset));
            }
            keep
        });
    }
    let mut chunks = stored;
    chunks.reserve(winners.winners.len());
    let mut fresh: Vec<bool> = Vec::new();
    let file_names: Vec<SourceFile> = files.iter().map(|f| SourceFile::intern(&f.name)).collect();
    // Each of the drop's key sets is interned once, when a winner first names it.
    let mut interned = vec![u32::MAX; drop_keys.len()];
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
            if !w.numbered() {
                state.push(state_of(&w));
            }
            if w.body.ignored() {
                continue;
            }
            let source_file = file_names[w.pos.file() as usize];
            let n = w.body.row_count();
            let mut record_key = w.key;
            let (d, rows) = w.body.into_rows();
            let keyset = match interned[d as usize] {
                u32::MAX => {
                    let k = keysets.intern_hashed(drop_keys.take_keys(d), drop_keys.number(d));
                    interned[d as usize] = k;
                    k
                }
                k => k,
            };
            if fresh.len() < keysets.len() {
                fresh.resize(keysets.len(), false);
            }
            fresh[keyset as usize] = true;
            for (i, row) in rows.enumerate() {
                // The last row takes the record's key; a refunded order's first row copies it.
                let last = i + 1 == n;
                touched.month(row.occurred_at);
                made.push(StoredTxn {
                    row,
                    keyset,
                    record_key: take_or_clone(&mut record_key, last),
                    source_file,
                });
            }
        }
        chunks.push(made);
    }
    release_freed();
    fresh.resize(keysets.len(), false);
    let mut txns = Txns {
        chunks,
        used: vec![false; keysets.len()],
        fresh,
        keysets,
    };
    for t in txns.chunks.iter().flatten() {
        txns.used[t.keyset as usize] = true;
    }
    txns
}

/// `v` itself when `last` (leaving its default behind), else a copy.
fn take_or_clone<T: Clone + Default>(v: &mut T, last: bool) -> T {
    if last { std::mem::take(v) } else { v.clone() }
}
