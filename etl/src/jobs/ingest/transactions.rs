//! The transactions step: the stored transactions the drop did not replace,
//! plus the rows of the drop's winning records, each row still without its
//! customer (named by the identities step).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::touched::Touched;
use super::versions::state_of;
use crate::consolidate::versions::{RecordState, Resolution, RowMonths, month_number};
use crate::memory::release_freed;
use crate::record::{TxnIds, TxnRecord};
use crate::sources::InputFile;
use crate::warehouse::txn_keysets::{KeysetRows, TxnKeysets};
use crate::warehouse::{SourceFile, StoredTxn};

/// The consolidated transactions: the stored rows kept, then each file's
/// new rows, in chunks. No step needs them in one allocation, so the kept
/// history is never copied to make room, and a drop's records are freed file
/// by file as their rows are made (one allocation would hold every row
/// beside every record).
#[derive(Debug, Default)]
pub(super) struct Txns {
    chunks: Vec<Vec<StoredTxn>>,
    /// The chunks from here on were read only to be summed, not written.
    summed_only: Option<usize>,
    /// Every row's key set: its keys and its customer.
    pub keysets: TxnKeysets,
    /// The key sets some row holds, by index (the table keeps those of
    /// removed rows too).
    pub used: Vec<bool>,
    /// The key sets the drop's rows hold, by index.
    pub fresh: Vec<bool>,
    /// How many key sets the stored version had (the drop's new ones follow).
    pub stored_sets: usize,
    /// The chunks of the drop's rows.
    drop_chunks: std::ops::Range<usize>,
}

impl Txns {
    /// Every row, the kept history first, then the drop's in file order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredTxn> + Clone {
        self.chunks.iter().flatten()
    }

    /// Every row in chunks, in [`Txns::iter`]'s order.
    pub fn chunks(&self) -> &[Vec<StoredTxn>] {
        &self.chunks
    }

    /// The rows written: every row but those added by [`Txns::append`].
    pub fn written(&self) -> impl Iterator<Item = &StoredTxn> + Clone {
        let end = self.summed_only.unwrap_or(self.chunks.len());
        self.chunks[..end].iter().flatten()
    }

    /// The drop's rows.
    pub fn drop_rows(&self) -> impl Iterator<Item = &StoredTxn> {
        self.chunks[self.drop_chunks.clone()].iter().flatten()
    }

    /// Adds stored rows read after consolidation to be summed, not
    /// written (they change nothing: their key sets already count them,
    /// and their files are shared).
    pub fn append(&mut self, mut parts: Vec<Vec<StoredTxn>>) {
        self.summed_only.get_or_insert(self.chunks.len());
        self.chunks.append(&mut parts);
    }

    /// Sums the [`KeysetRows`] of the key sets `complete` picks again from
    /// the rows held, which must be all of theirs.
    pub fn summarise(&mut self, complete: impl Fn(u32) -> bool) {
        let picked: Vec<bool> = (0..self.keysets.len() as u32).map(complete).collect();
        self.keysets.fill_rows();
        let mut sums = self.keysets.all_rows().to_vec();
        for (k, s) in sums.iter_mut().enumerate() {
            if picked[k] {
                *s = KeysetRows::default();
            }
        }
        for t in self.iter().filter(|t| picked[t.keyset as usize]) {
            sums[t.keyset as usize].add(t.row.occurred_at, t.row.channel);
        }
        self.keysets.set_all_rows(sums);
        self.used = self.keysets.all_rows().iter().map(|r| r.rows > 0).collect();
    }

    /// Finds the months of `state`'s entries that do not know them (read
    /// from an earlier cvm's table) in the rows held, which must be every row:
    /// a keyed record's row and refund; none for records without rows.
    pub fn fill_months(&self, state: &mut [RecordState]) {
        let unknown: HashMap<&str, usize> = state
            .iter()
            .enumerate()
            .filter(|(_, r)| r.months == RowMonths::UNKNOWN)
            .map(|(i, r)| (&*r.key, i))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let mut found = vec![RowMonths::EMPTY; state.len()];
        for t in self.iter() {
            if let (TxnIds::Keyed { refund }, Some(&i)) = (&t.row.ids, unknown.get(&*t.record_key))
            {
                found[i].0[usize::from(*refund)] = month_number(t.row.occurred_at);
            }
        }
        drop(unknown);
        for (r, months) in state.iter_mut().zip(found) {
            if r.months == RowMonths::UNKNOWN {
                r.months = months;
            }
        }
    }

    /// How many rows, counted by key set, and how many of them are anonymous.
    pub fn counts(&self) -> (u64, u64) {
        let (mut all, mut anonymous) = (0, 0);
        for (k, r) in self.keysets.all_rows().iter().enumerate() {
            all += u64::from(r.rows);
            if self.keysets.customer(k as u32).is_none() {
                anonymous += u64::from(r.rows);
            }
        }
        (all, anonymous)
    }
}

/// Records converted between two hand-backs of freed memory.
const RELEASE_EVERY: usize = 1 << 17;

/// Every transaction row of the history after this drop: of `stored`'s
/// (every stored row when `whole`, else the months read so far), those the
/// drop does not replace, and the drop's. Winners' record state is pushed
/// onto `state` (numbered records live in the dataset); the stored rows they
/// replace and the rows they add are `touched`. Each key set's
/// [`KeysetRows`] are summed from the rows when `whole`, else kept up to
/// date with the rows removed and added.
#[allow(clippy::too_many_arguments)]
pub(super) fn consolidate(
    whole: bool,
    mut stored: Vec<Vec<StoredTxn>>,
    mut keysets: TxnKeysets,
    winners: Resolution<TxnRecord<u32>>,
    drop_keys: TxnKeysets,
    files: &[InputFile],
    state: &mut Vec<RecordState>,
    touched: &mut Touched,
) -> Txns {
    let replaced: HashSet<&str> = winners.replaced.iter().map(|k| &**k).collect();
    let stored_sets = keysets.len();
    let counted = !whole && keysets.summarised();
    for part in &mut stored {
        part.retain(|t| {
            let keep = !replaced.contains(&*t.record_key);
            if !keep {
                touched.row(t, keysets.customer(t.keyset));
                if counted {
                    let r = keysets.rows_mut(t.keyset);
                    r.rows = r.rows.saturating_sub(1);
                }
            }
            keep
        });
    }
    let mut chunks = stored;
    let drop_from = chunks.len();
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
                    let k = keysets.intern_hashed(drop_keys.keys(d), drop_keys.number(d));
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
                keysets.rows_mut(keyset).add(row.occurred_at, row.channel);
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
    let drop_chunks = drop_from..chunks.len();
    let mut txns = Txns {
        chunks,
        summed_only: None,
        used: Vec::new(),
        stored_sets,
        drop_chunks,
        fresh,
        keysets,
    };
    txns.keysets.fill_rows();
    match whole {
        true => txns.summarise(|_| true),
        false => txns.used = txns.keysets.all_rows().iter().map(|r| r.rows > 0).collect(),
    }
    txns
}

/// `v` itself when `last` (leaving its default behind), else a copy.
fn take_or_clone<T: Clone + Default>(v: &mut T, last: bool) -> T {
    if last { std::mem::take(v) } else { v.clone() }
}
