//! What a night reads of the stored history, step by step. Over a version
//! that keeps what each key set's rows add up to (`_state/txn_keysets`) and
//! the months of each record's rows (`_state/records`), a night reads of the
//! record state only its own keys' entries, and of the transactions only
//! what it changes, a file at a time: a month its drop adds rows to gains
//! them as a new part, its files shared (of them it reads the record keys
//! its numbered records may repeat); of a month holding rows the drop
//! replaces, it reads whole only the files holding them (found by their
//! record keys) and writes their rows again as new parts; a file holding a
//! key set that changes customer is written again from itself with the new
//! customer (never held). A month that holds too many parts to take another
//! (`months::APPEND_PARTS`) is read and written whole instead. Of every
//! other file it reads just the rows of the customers whose purchase totals
//! it sums again, found by the `keyset` column alone; the rest of the
//! history stays on disk and is shared with the new version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet as HashSet};

use super::purchases::{self, Extended};
use super::stored::Stored;
use super::touched::Touched;
use super::transactions::Txns;
use crate::consolidate::versions::{RecordState, StoredVersions};
use crate::manifest::ingest::HistoryRead;
use crate::record::{CrmRecord, RecordKey, TxnRecord, Versioned};
use crate::warehouse::months::{self, Month, month_of};
use crate::warehouse::state;
use crate::warehouse::transactions::Reread;
use crate::warehouse::txn_keysets::TxnKeysets;
use crate::warehouse::{StoredTxn, WarehouseError, transactions};

/// The stored version's transaction files a night has not read yet, and
/// the months it changes without reading them whole.
#[derive(Debug, Default)]
pub(super) struct UnreadMonths {
    /// The stored `transactions/` folder.
    dir: PathBuf,
    files: BTreeMap<Month, Vec<PathBuf>>,
    /// Months the night changes that keep files it has not read whole: it
    /// appends its rows to them as new parts (see `months::Unchanged`).
    pub partial: HashSet<Month>,
    /// Files of the partial months that are not shared (read whole, their
    /// rows written again; or renamed), by path in the dataset.
    pub rewritten: HashSet<PathBuf>,
    /// What has been read so far.
    pub read: HistoryRead,
}

/// What [`UnreadMonths::read_rest`] read.
#[derive(Debug, Default)]
pub(super) struct Rest {
    /// Files that hold a key set that changes customer: written again
    /// from the stored ones, a file at a time.
    pub reread: Reread,
    /// The wanted rows of every file.
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
        Ok(UnreadMonths {
            dir: dir.to_path_buf(),
            files,
            read,
            ..UnreadMonths::default()
        })
    }

    /// Whether `month` can be changed in part: it takes another part.
    fn in_part(&self, month: Month) -> Result<bool, WarehouseError> {
        Ok(self.partial.contains(&month)
            || months::appendable(&self.dir.join(months::folder(month)))?)
    }

    /// Reads whole the files of `month` that `pick` picks (every file when
    /// `None`) and not read yet; a month left with files is partial.
    fn take(&mut self, month: Month, pick: Option<&HashSet<PathBuf>>) -> Vec<PathBuf> {
        let Some(files) = self.files.get_mut(&month) else {
            return Vec::new();
        };
        let taken: Vec<PathBuf> = match pick {
            None => std::mem::take(files),
            Some(pick) => {
                let (taken, kept) = std::mem::take(files)
                    .into_iter()
                    .partition(|f| pick.contains(f));
                *files = kept;
                taken
            }
        };
        if files.is_empty() {
            self.files.remove(&month);
        }
        if self.partial.contains(&month) || pick.is_some() {
            self.partial.insert(month);
            self.rewritten
                .extend(taken.iter().map(|f| months::in_dataset(f)));
        } else {
            self.read.whole_months += 1;
        }
        taken
    }

    /// Reads `files` whole, by key set number (as in `sets`).
    fn read_files(
        &mut self,
        files: &[PathBuf],
        sets: &TxnKeysets,
    ) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
        let parts = transactions::read_numbered_files(files, sets)?;
        self.read.rows += parts.iter().map(Vec::len).sum::<usize>() as u64;
        Ok(parts)
    }

    /// Reads what the drop's records need of the months `wanted` they put
    /// rows in: of a month that takes another part, only the record keys
    /// that `numbered` names (a numbered record's stored copy lies in its
    /// own month: read only of `numbered_months`), and the month is
    /// partial; of another, every row. Returns the rows read and the keys
    /// found.
    pub fn read_drop(
        &mut self,
        wanted: &HashSet<Month>,
        numbered: &HashSet<&str>,
        numbered_months: &HashSet<Month>,
        sets: &TxnKeysets,
    ) -> Result<(Vec<Vec<StoredTxn>>, Vec<RecordKey>), WarehouseError> {
        let mut whole = Vec::new();
        let mut keyed = Vec::new();
        for month in sorted(wanted) {
            if !self.files.contains_key(&month) {
                continue;
            }
            if self.in_part(month)? {
                self.partial.insert(month);
                if numbered_months.contains(&month) {
                    keyed.extend(self.files[&month].iter().cloned());
                }
            } else {
                whole.extend(self.take(month, None));
            }
        }
        let known: Vec<Vec<RecordKey>> = keyed
            .par_iter()
            .map(|f| transactions::record_keys_in(f, |k| numbered.contains(k)))
            .collect::<Result<_, _>>()?;
        Ok((
            self.read_files(&whole, sets)?,
            known.into_iter().flatten().collect(),
        ))
    }

    /// Reads the rows the drop's winners replace (`replaced`, by record key)
    /// in the months `wanted`: of a month that takes another part, the
    /// files holding one, found by their record keys alone (the month is
    /// partial); of another, every file.
    pub fn read_replaced(
        &mut self,
        wanted: &HashSet<Month>,
        replaced: &HashSet<&str>,
        sets: &TxnKeysets,
    ) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
        let mut whole = Vec::new();
        for month in sorted(wanted) {
            let Some(files) = self.files.get(&month) else {
                continue;
            };
            if !self.in_part(month)? {
                whole.extend(self.take(month, None));
                continue;
            }
            let holding: HashSet<PathBuf> = files
                .par_iter()
                .map(|f| {
                    let found = transactions::record_keys_in(f, |k| replaced.contains(k))?;
                    Ok((!found.is_empty()).then(|| f.clone()))
                })
                .collect::<Result<Vec<_>, WarehouseError>>()?
                .into_iter()
                .flatten()
                .collect();
            whole.extend(self.take(month, Some(&holding)));
        }
        self.read_files(&whole, sets)
    }

    /// Reads the rest: of every file, the rows of the key sets numbered in
    /// `wanted`; and names the files that hold a key set numbered in
    /// `moved` (changing customer), which are written again (their months
    /// become partial).
    pub fn read_rest(
        &mut self,
        sets: &TxnKeysets,
        moved: FxHashMap<u64, u32>,
        wanted: &HashSet<u64>,
    ) -> Result<Rest, WarehouseError> {
        let files: Vec<(Month, &PathBuf)> = self
            .files
            .iter()
            .flat_map(|(m, files)| files.iter().map(move |f| (*m, f)))
            .collect();
        // One column per file: which rows are wanted, and whether the file
        // is written again.
        let found: Vec<(bool, Vec<u32>)> = files
            .par_iter()
            .map(|(_, path)| {
                let numbers = transactions::keyset_numbers(path)?;
                let moves = numbers.iter().any(|n| moved.contains_key(n));
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
        let mut reread = Reread::new();
        for ((month, path), _) in files.iter().zip(&found).filter(|(_, (m, _))| *m) {
            reread
                .files
                .entry(*month)
                .or_default()
                .push((*path).clone());
        }
        reread.moved = moved;
        for (month, files) in &reread.files {
            self.partial.insert(*month);
            self.rewritten
                .extend(files.iter().map(|f| months::in_dataset(f)));
        }
        self.files.clear();
        self.read.rows += rows.iter().map(Vec::len).sum::<usize>() as u64;
        Ok(Rest { reread, rows })
    }
}

/// The months of `set`, in order (so every run reads and holds rows in the
/// same order).
fn sorted(set: &HashSet<Month>) -> Vec<Month> {
    let mut out: Vec<Month> = set.iter().copied().collect();
    out.sort_unstable();
    out
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

/// The drop's CRM and transaction records (borrowed apart from its
/// events, which are read beside them).
pub(super) struct DropRecords<'a> {
    /// CRM records, by file.
    pub crm: &'a [Vec<Versioned<CrmRecord>>],
    /// Transaction records, by file.
    pub txns: &'a [Vec<Versioned<TxnRecord<u32>>>],
}

/// The stored state of the drop's keyed records (CRM and transactions with
/// an id of their own), read from the `_state` folder `dir` a batch at a
/// time, sorted by key.
pub(super) fn stored_states(
    dir: &Path,
    drop: &DropRecords<'_>,
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
/// record state delta: see `warehouse::state`), and what the drop's
/// numbered records need of the transaction months they fall in (their
/// stored copies lie there): the months whole, or the keys alone.
pub(super) fn read_for_drop(
    stored: &mut Stored,
    version: Option<&Path>,
    drop: &DropRecords<'_>,
) -> Result<(), WarehouseError> {
    if stored.records_looked_up
        && let Some(dir) = version
    {
        stored.records = stored_states(&dir.join(state::DIR), drop)?;
    }
    if let Some(unread) = &mut stored.unread {
        let months = drop_months(drop.txns);
        let numbered_records = || drop.txns.iter().flatten().filter(|v| v.numbered());
        let numbered: HashSet<&str> = numbered_records().map(|v| &*v.key).collect();
        // A numbered record without a time (no source makes one) could
        // repeat a stored row of any month.
        let numbered_months: HashSet<Month> = match numbered_records()
            .map(|v| v.body.row.as_ref().map(|r| month_of(r.occurred_at)))
            .collect::<Option<_>>()
        {
            Some(m) => m,
            None => months.clone(),
        };
        let (mut parts, known) =
            unread.read_drop(&months, &numbered, &numbered_months, &stored.txn_keysets)?;
        stored.txns.append(&mut parts);
        stored.known_txn_keys = known;
    }
    Ok(())
}

/// After versions: the stored rows the drop replaces, with the rest of
/// their months or of their files (see [`UnreadMonths::read_replaced`]).
pub(super) fn read_replaced(
    stored: &mut Stored,
    replaced: &[RecordKey],
) -> Result<(), WarehouseError> {
    if let Some(unread) = &mut stored.unread {
        let months = replaced_months(&stored.records, replaced);
        let keys: HashSet<&str> = replaced.iter().map(|k| &**k).collect();
        let mut parts = unread.read_replaced(&months, &keys, &stored.txn_keysets)?;
        stored.txns.append(&mut parts);
    }
    Ok(())
}

/// What a night read of the stored transactions, and how its months are
/// written.
pub(super) struct NightRead {
    /// The touched customers summed without their history read.
    pub extended: Extended,
    /// The manifest's account.
    pub read: HistoryRead,
    /// Files written again from the stored ones (see `Rest::reread`).
    pub reread: Reread,
    /// Months changed in part (see [`UnreadMonths::partial`]).
    pub partial: HashSet<Month>,
    /// Their files not shared.
    pub rewritten: HashSet<PathBuf>,
}

/// Reads the stored transactions a night still needs once identities are
/// resolved (see `history`): of every month, the rows of the touched
/// customers, whose purchase totals and key set summaries are then summed
/// from all their rows, but for those whose totals follow from their
/// stored ones (in the `_state` folder `state`) and tonight's rows
/// ([`purchases::extended`]; their key sets only gained rows, and their
/// summaries count them already); and names the files holding a key set
/// that changed customer (`moved`, by index), which the write step reads
/// again.
pub(super) fn read_rest(
    mut unread: UnreadMonths,
    txns: &mut Txns,
    touched: &mut Touched,
    moved: &[bool],
    state: &Path,
) -> Result<NightRead, WarehouseError> {
    let extended = purchases::extended(txns, touched, state)?;
    let sets = &txns.keysets;
    let moved: FxHashMap<u64, u32> = (0..sets.len() as u32)
        .filter(|&k| moved.get(k as usize).copied().unwrap_or(false))
        .map(|k| (sets.number(k), k))
        .collect();
    let complete: Vec<bool> = match touched.customers() {
        Some(ids) => (0..sets.len() as u32)
            .map(|k| {
                sets.customer(k)
                    .is_some_and(|id| ids.contains(id) && !extended.contains_key(id))
            })
            .collect(),
        None => vec![true; sets.len()],
    };
    let wanted: HashSet<u64> = (0..sets.len() as u32)
        .filter(|&k| complete[k as usize] && txns.used[k as usize])
        .map(|k| sets.number(k))
        .collect();
    let rest = unread.read_rest(sets, moved, &wanted)?;
    tracing::debug!(
        reread_files = rest.reread.files.values().map(Vec::len).sum::<usize>(),
        partial_months = unread.partial.len(),
        rows = rest.rows.iter().map(Vec::len).sum::<usize>(),
        keysets = wanted.len(),
        extended = extended.len(),
        "stored transactions read after identities"
    );
    for month in &unread.partial {
        touched.whole_month(*month);
    }
    txns.append(rest.rows);
    txns.summarise(|k| complete[k as usize]);
    unread.read.partial_months = unread.partial.len() as u64;
    Ok(NightRead {
        extended,
        read: unread.read,
        reread: rest.reread,
        partial: unread.partial,
        rewritten: unread.rewritten,
    })
}
