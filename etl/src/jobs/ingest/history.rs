//! What a night reads of the stored history, step by step. Over a version
//! that keeps what each key set's rows add up to (`_state/txn_keysets`) and
//! the months of each record's rows (`_state/records`), a night reads of the
//! record state only its own keys' entries, and of the transactions whole
//! only the months it may change: those its drop's records fall in, those
//! of the stored records they replace, and those holding a key set that
//! changes customer (those last are not held: they are read again a month at
//! a time as they are written). Of every other month it reads just the rows
//! of the customers whose purchase totals it sums again, found by the
//! `keyset` column alone; the rest of the history stays on disk and is
//! shared with the new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashSet as HashSet;

use super::read::DropRead;
use super::stored::Stored;
use super::touched::Touched;
use super::transactions::Txns;
use crate::consolidate::versions::{RecordState, StoredVersions};
use crate::manifest::ingest::HistoryRead;
use crate::record::{RecordKey, TxnRecord, Versioned};
use crate::warehouse::months::{self, Month, month_of};
use crate::warehouse::state;
use crate::warehouse::transactions::Reread;
use crate::warehouse::txn_keysets::TxnKeysets;
use crate::warehouse::{StoredTxn, WarehouseError, transactions};

/// The stored version's transaction months a night has not read yet.
#[derive(Debug, Default)]
pub(super) struct UnreadMonths {
    files: BTreeMap<Month, Vec<PathBuf>>,
    /// What has been read so far.
    pub read: HistoryRead,
}

/// What [`UnreadMonths::read_rest`] read.
#[derive(Debug, Default)]
pub(super) struct Rest {
    /// Months that hold a key set that changes customer: written again from
    /// their files, a month at a time.
    pub reread: Reread,
    /// The wanted rows of every month.
    pub rows: Vec<Vec<StoredTxn>>,
}

impl UnreadMonths {
    /// Every month of the `transactions/` folder `dir`, none read yet.
    pub fn of(dir: &Path) -> Result<UnreadMonths, WarehouseError> {
        let files = months::files_by_month(dir)?;
        let read = HistoryRead {
            months: files.len() as u64,
            ..HistoryRead::default()
        };
        Ok(UnreadMonths { files, read })
    }

    /// Reads whole the months of `wanted` not read yet (by key set number,
    /// as in `sets`).
    pub fn read(
        &mut self,
        wanted: &HashSet<Month>,
        sets: &TxnKeysets,
    ) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
        // In month order, so every run holds the rows in the same order.
        let mut wanted: Vec<Month> = wanted.iter().copied().collect();
        wanted.sort_unstable();
        let months: Vec<Vec<PathBuf>> =
            wanted.iter().filter_map(|m| self.files.remove(m)).collect();
        self.read.whole_months += months.len() as u64;
        let files: Vec<PathBuf> = months.into_iter().flatten().collect();
        let parts = transactions::read_numbered_files(&files, sets)?;
        self.read.rows += parts.iter().map(Vec::len).sum::<usize>() as u64;
        Ok(parts)
    }

    /// Reads the rest: of every month, the rows of the key sets numbered in
    /// `wanted`; and names the months that hold a key set numbered in `moved`
    /// (changing customer), whose rows are all written again.
    pub fn read_rest(
        &mut self,
        sets: &TxnKeysets,
        moved: &HashSet<u64>,
        wanted: &HashSet<u64>,
    ) -> Result<Rest, WarehouseError> {
        let files: Vec<(Month, &PathBuf)> = self
            .files
            .iter()
            .flat_map(|(m, files)| files.iter().map(move |f| (*m, f)))
            .collect();
        // One column per file: which rows are wanted, and whether the month
        // is written again.
        let found: Vec<(bool, Vec<u32>)> = files
            .par_iter()
            .map(|(_, path)| {
                let numbers = transactions::keyset_numbers(path)?;
                let moves = numbers.iter().any(|n| moved.contains(n));
                let rows = (0..numbers.len() as u32)
                    .filter(|&i| wanted.contains(&numbers[i as usize]))
                    .collect();
                Ok((moves, rows))
            })
            .collect::<Result<_, WarehouseError>>()?;
        let rows: Vec<Vec<StoredTxn>> = files
            .par_iter()
            .zip(&found)
            .map(|((_, path), (_, rows))| transactions::read_numbered_rows(path, sets, Some(rows)))
            .filter(|r| !matches!(r, Ok(rows) if rows.is_empty()))
            .collect::<Result<_, _>>()?;
        let moves: HashSet<Month> = files
            .iter()
            .zip(&found)
            .filter(|(_, (m, _))| *m)
            .map(|((m, _), _)| *m)
            .collect();
        let reread: Reread = std::mem::take(&mut self.files)
            .into_iter()
            .filter(|(m, _)| moves.contains(m))
            .collect();
        self.read.whole_months += reread.len() as u64;
        self.read.rows += rows.iter().map(Vec::len).sum::<usize>() as u64;
        Ok(Rest { reread, rows })
    }
}

/// The months the drop's transaction records put rows in (winners or not:
/// a numbered record's stored copy, if any, lies in the same month).
pub(super) fn drop_months(txns: &[Vec<Versioned<TxnRecord<u32>>>]) -> HashSet<Month> {
    let mut out = HashSet::default();
    for v in txns.iter().flatten() {
        if let Some(row) = &v.body.row {
            out.insert(month_of(row.occurred_at));
            if let Some(at) = v.body.refunded_at.get() {
                out.insert(month_of(at));
            }
        }
    }
    out
}

/// The months holding the rows of the stored records `replaced` names
/// (`records` sorted by key; numbered records are not there: their rows lie
/// in the months of the drop's copies).
pub(super) fn replaced_months(records: &[RecordState], replaced: &[RecordKey]) -> HashSet<Month> {
    replaced
        .iter()
        .filter_map(|k| records.version_of(k))
        .flat_map(|r| r.months.numbers())
        .map(months::of_number)
        .collect()
}

/// The stored state of the drop's keyed records (CRM and transactions with
/// an id of their own), read from the `_state` folder `dir` a batch at a
/// time, sorted by key.
pub(super) fn stored_states(
    dir: &Path,
    drop: &DropRead,
) -> Result<Vec<RecordState>, WarehouseError> {
    let keys: HashSet<&str> = drop
        .crm
        .iter()
        .flatten()
        .map(|v| &*v.key)
        .chain(
            drop.txns
                .iter()
                .flatten()
                .filter(|v| !v.numbered())
                .map(|v| &*v.key),
        )
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    state::lookup(dir, |k| keys.contains(k))
}

/// Before versions: the stored state of the drop's keyed records (over a
/// record state delta: see `warehouse::state`), and whole the transaction
/// months the drop adds to (its numbered records' stored copies lie there).
pub(super) fn read_for_drop(
    stored: &mut Stored,
    version: Option<&Path>,
    drop: &DropRead,
) -> Result<(), WarehouseError> {
    if let (Some(_), Some(dir)) = (&stored.record_delta, version) {
        stored.records = stored_states(&dir.join(state::DIR), drop)?;
    }
    if let Some(unread) = &mut stored.unread {
        let months = drop_months(&drop.txns);
        let mut parts = unread.read(&months, &stored.txn_keysets)?;
        stored.txns.append(&mut parts);
    }
    Ok(())
}

/// After versions: whole the months of the stored records the drop replaces.
pub(super) fn read_replaced(
    stored: &mut Stored,
    replaced: &[RecordKey],
) -> Result<(), WarehouseError> {
    if let Some(unread) = &mut stored.unread {
        let months = replaced_months(&stored.records, replaced);
        let mut parts = unread.read(&months, &stored.txn_keysets)?;
        stored.txns.append(&mut parts);
    }
    Ok(())
}

/// Reads the stored transactions a night still needs once identities are
/// resolved (see `history`): of every month, the rows of the touched
/// customers, whose purchase totals and key set summaries are then summed
/// from all their rows; and names the months holding a key set that changed
/// customer (`moved`, by index), which the write step reads again.
pub(super) fn read_rest(
    mut unread: UnreadMonths,
    txns: &mut Txns,
    touched: &mut Touched,
    moved: &[bool],
) -> Result<(HistoryRead, Reread), WarehouseError> {
    let sets = &txns.keysets;
    let moved: HashSet<u64> = (0..sets.len() as u32)
        .filter(|&k| moved.get(k as usize).copied().unwrap_or(false))
        .map(|k| sets.number(k))
        .collect();
    let complete: Vec<bool> = match touched.customers() {
        Some(ids) => (0..sets.len() as u32)
            .map(|k| sets.customer(k).is_some_and(|id| ids.contains(id)))
            .collect(),
        None => vec![true; sets.len()],
    };
    let wanted: HashSet<u64> = (0..sets.len() as u32)
        .filter(|&k| complete[k as usize] && txns.used[k as usize])
        .map(|k| sets.number(k))
        .collect();
    let rest = unread.read_rest(sets, &moved, &wanted)?;
    tracing::debug!(
        reread_months = rest.reread.len(),
        rows = rest.rows.iter().map(Vec::len).sum::<usize>(),
        keysets = wanted.len(),
        "stored transactions read after identities"
    );
    for month in rest.reread.keys() {
        touched.whole_month(*month);
    }
    txns.append(rest.rows);
    txns.summarise(|k| complete[k as usize]);
    Ok((unread.read, rest.reread))
}
