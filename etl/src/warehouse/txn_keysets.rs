//! `_state/txn_keysets.parquet`: one row per distinct key set of the stored
//! transactions (customer id, email and phone as given), by its stable
//! number, with the customer its transactions belong to.
//!
//! Each transaction row stores its key set's number (`keyset`, the XXH3 of
//! its keys, see [`keyset_hash`]) beside its keys. A night reads this table
//! and that one column instead of four text columns a row, so the stored
//! history is loaded with its keys shared: one copy per key set, found by
//! number. The number is derived from the keys alone, so a version built
//! night by night and one rebuilt from scratch store the same numbers.
//!
//! Each key set also keeps what its rows add up to ([`KeysetRows`]: how
//! many, the first one's time, their channels), so a night builds
//! `customers/` and counts the transactions without decoding the history;
//! and whether its customer is the CRM customer one of its keys names
//! (`crm`), so a night resolves again only the key sets whose keys a CRM
//! record changes, the guests' and the new ones.
//!
//! A night changes a few thousand of a million key sets (new ones, those
//! its rows join or leave, those a claim moves), so it writes those alone,
//! as `txn_keysets-delta.parquet` beside the table it shares with the
//! version before: the delta's rows replace the table's by number (a row
//! of no rows removes one), and hold every change since the table was
//! written whole. Once the delta outgrows an eighth of the table, the night
//! writes the table whole again (as the record state does: `state`).
//!
//! Derived state: a version without the table (an earlier cvm's), or whose
//! table is unreadable or does not name a row's key set, is loaded from the
//! rows' own keys, as a full rebuild always is.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cvm_shared::Channel;
use hashbrown::HashTable;
use rayon::prelude::*;

use super::WarehouseError;
use super::event_keysets::{key_text, keyset_columns, keyset_fields};
use super::parquet_io::{
    self, Columns, UTC, WriteStats, chunks, opt_str_ref, opt_timestamp_array, opt_utf8_array,
    opt_value, write_batches, writer_properties_with,
};
use crate::record::{KeyRefs, Keys};
use crate::text_rows::TextRows;

/// Dataset name used in errors.
pub const DATASET: &str = "transaction key sets";
/// File name inside `_state/`.
pub const FILE: &str = "txn_keysets.parquet";
/// File name of the key sets changed since the table was written whole.
pub const DELTA_FILE: &str = "txn_keysets-delta.parquet";
/// A key set without a customer.
const NO_CUSTOMER: u32 = u32::MAX;
/// A key set whose customer is its own customer id key.
const OWN_ID: u32 = u32::MAX - 1;
/// [`TxnKeysets::stored`] of a key set read from the delta: it is written
/// to the next delta whatever it holds then.
const FROM_DELTA: u64 = u64::MAX;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let number = Field::new("keyset", DataType::UInt64, false);
    let summary = [
        Field::new("rows", DataType::UInt64, false),
        Field::new(
            "first_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            true,
        ),
        Field::new("channels", DataType::UInt64, true),
        Field::new("crm", DataType::Boolean, true),
    ];
    Arc::new(Schema::new(
        std::iter::once(number)
            .chain(keyset_fields())
            .chain(summary)
            .collect::<Vec<_>>(),
    ))
});

/// What one key set's transaction rows add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysetRows {
    /// The earliest row's time (microseconds UTC); `i64::MAX` for none.
    pub first_at: i64,
    /// How many rows.
    pub rows: u32,
    /// The channels of its rows: bit `i` for `Channel::ALL[i]`.
    pub channels: u8,
}

impl Default for KeysetRows {
    fn default() -> KeysetRows {
        KeysetRows {
            first_at: i64::MAX,
            rows: 0,
            channels: 0,
        }
    }
}

impl KeysetRows {
    /// Counts a row at `at` through `channel`.
    pub fn add(&mut self, at: i64, channel: Channel) {
        self.rows += 1;
        self.first_at = self.first_at.min(at);
        self.channels |= channel_bit(channel);
    }

    /// The first row's time and the channels, kept only for key sets with a
    /// customer (the anonymous one's are never used, and a night does not
    /// read its rows to keep them).
    fn named(self, named: bool) -> (Option<i64>, Option<u64>) {
        match named {
            true => (
                Some(self.first_at).filter(|&t| t != i64::MAX),
                Some(u64::from(self.channels)),
            ),
            false => (None, None),
        }
    }
}

/// The bit of `channel` in [`KeysetRows::channels`].
pub fn channel_bit(channel: Channel) -> u8 {
    1 << Channel::ALL.iter().position(|c| *c == channel).unwrap_or(0)
}

/// The Arrow schema of the key set table.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The stable number of a key set: the XXH3 of its keys as one text
/// ([`key_text`]), the same on every machine and every night. `buf` is
/// scratch space.
pub fn keyset_hash(keys: KeyRefs<'_>, buf: &mut String) -> u64 {
    key_text(keys, buf);
    cvm_shared::identity::stable_hash(buf.as_bytes())
}

/// The distinct key sets of the consolidated transactions, each once, with
/// its customer: rows hold an index into this table instead of their keys.
///
/// The key sets read from `_state` come first, in number order, and are
/// found by binary search or, for the stored rows, by a merge of sorted
/// numbers (a hash table of a million key sets costs a cache miss or two a
/// lookup, several a row); the ones added later are found through a hash table.
#[derive(Debug, Default)]
pub struct TxnKeysets {
    /// Each key set's customer id, email and phone, in one block of text.
    keys: TextRows<3>,
    hashes: Vec<u64>,
    /// Each key set's customer: [`NO_CUSTOMER`], [`OWN_ID`], or its index
    /// in `names`. 4 bytes a key set, where a boxed name took 32: most key
    /// sets belong to the CRM customer their own id key names.
    customers: Vec<u32>,
    /// The customers named otherwise, by index (a renamed key set's old
    /// name stays, unused, for the run).
    names: TextRows<1>,
    /// Whether each key set's customer is the CRM customer one of its keys
    /// names (not a guest): as long as none of its keys changes owner, it
    /// stays so (see `jobs::ingest::identities`). False when not known.
    crm: Vec<bool>,
    /// What each key set's rows add up to; filled up to every key set when
    /// first changed (a drop's own table never needs it).
    rows: Vec<KeysetRows>,
    /// Whether the table read from `_state` kept [`KeysetRows`] (an earlier
    /// cvm's did not).
    summarised: bool,
    /// How many leading key sets are sorted by number (read from `_state`).
    sorted: usize,
    /// The index of every later key set, hashed by its number (4 bytes a
    /// slot: the number is in `hashes`).
    index: HashTable<u32>,
    /// Of each key set read from `_state`, the [`fingerprint`] of its row
    /// in the table's file (or [`FROM_DELTA`]): a night writes to the delta
    /// those whose row changed.
    stored: Vec<u64>,
    /// Numbers the delta read removes from the table's file.
    removed: Vec<u64>,
    /// Rows of the table's file, when read from `_state`.
    base_rows: Option<usize>,
    buf: String,
}

/// A hash of what a key set's row says beside its keys (its customer and
/// [`KeysetRows`] as written), to tell whether a night changed it.
fn fingerprint(customer: Option<&str>, crm: bool, rows: KeysetRows) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    customer.hash(&mut h);
    crm.hash(&mut h);
    rows.rows.hash(&mut h);
    rows.named(customer.is_some()).hash(&mut h);
    h.finish()
}

impl TxnKeysets {
    /// How many key sets.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of key set `k`.
    pub fn keys(&self, k: u32) -> KeyRefs<'_> {
        self.keys.get(k as usize)
    }

    /// Whether key set `k` has no key (its rows are anonymous).
    pub fn is_anonymous(&self, k: u32) -> bool {
        self.keys(k) == [None; 3]
    }

    /// Every key set's keys, by index.
    pub fn all_keys(&self) -> impl ExactSizeIterator<Item = KeyRefs<'_>> + Clone + '_ {
        self.keys.iter()
    }

    /// The stable number of key set `k` ([`keyset_hash`]).
    pub fn number(&self, k: u32) -> u64 {
        self.hashes[k as usize]
    }

    /// The customer of key set `k`'s transactions.
    pub fn customer(&self, k: u32) -> Option<&str> {
        match self.customers[k as usize] {
            NO_CUSTOMER => None,
            OWN_ID => self.keys(k)[0],
            i => self.names.get(i as usize)[0],
        }
    }

    /// Every key set's customer, by index.
    pub fn customers(&self) -> impl ExactSizeIterator<Item = Option<&str>> + '_ {
        (0..self.len() as u32).map(|k| self.customer(k))
    }

    /// How key set `k` keeps `customer` as its own (see `customers`).
    fn name(&mut self, k: u32, customer: Option<&str>) -> u32 {
        match customer {
            None => NO_CUSTOMER,
            Some(c) if self.keys(k)[0] == Some(c) => OWN_ID,
            Some(c) => {
                // Indices stay below the markers: key sets, whose indices
                // are `u32` too, number far fewer than four billion.
                self.names.push([Some(c)]) as u32
            }
        }
    }

    /// What key set `k`'s rows add up to.
    pub fn rows(&self, k: u32) -> KeysetRows {
        self.rows.get(k as usize).copied().unwrap_or_default()
    }

    /// The same, to change.
    pub fn rows_mut(&mut self, k: u32) -> &mut KeysetRows {
        self.fill_rows();
        &mut self.rows[k as usize]
    }

    /// Every key set's [`KeysetRows`], by index, up to the last one changed
    /// or filled ([`TxnKeysets::fill_rows`]).
    pub fn all_rows(&self) -> &[KeysetRows] {
        &self.rows
    }

    /// Gives every key set its [`KeysetRows`] (none yet for those added since).
    pub fn fill_rows(&mut self) {
        if self.rows.len() < self.keys.len() {
            self.rows.resize(self.keys.len(), KeysetRows::default());
        }
    }

    /// Replaces every key set's [`KeysetRows`] (by index).
    pub fn set_all_rows(&mut self, rows: Vec<KeysetRows>) {
        debug_assert_eq!(rows.len(), self.keys.len());
        self.rows = rows;
    }

    /// Whether the stored key sets' [`KeysetRows`] were read from `_state`.
    pub fn summarised(&self) -> bool {
        self.summarised
    }

    /// Names key set `k`'s customer anew.
    pub fn set_customer(&mut self, k: u32, customer: Option<&str>) {
        self.customers[k as usize] = self.name(k, customer);
    }

    /// Whether key set `k`'s customer is known to be the CRM customer one of
    /// its keys names.
    pub fn crm(&self, k: u32) -> bool {
        self.crm[k as usize]
    }

    /// Notes whether key set `k`'s customer is the CRM customer one of its keys names.
    pub fn set_crm(&mut self, k: u32, crm: bool) {
        self.crm[k as usize] = crm;
    }

    /// The index of `keys`, added (without a customer) if new.
    pub fn intern(&mut self, keys: KeyRefs<'_>) -> u32 {
        let h = keyset_hash(keys, &mut self.buf);
        self.intern_hashed(keys, h)
    }

    /// The index of `keys`, whose number ([`keyset_hash`]) is `h`, added
    /// (without a customer) if new: the number can be computed beforehand,
    /// outside a lock the table is shared under.
    pub fn intern_hashed(&mut self, keys: KeyRefs<'_>, h: u64) -> u32 {
        debug_assert_eq!(h, keyset_hash(keys, &mut String::new()));
        let all = &self.keys;
        if let Some(k) = self
            .sorted_index(h)
            .filter(|&k| all.get(k as usize) == keys)
        {
            return k;
        }
        let hashes = &self.hashes;
        if let Some(&k) = self.index.find(h, |&k| {
            hashes[k as usize] == h && all.get(k as usize) == keys
        }) {
            return k;
        }
        let k = self.keys.push(keys) as u32;
        self.hashes.push(h);
        self.customers.push(NO_CUSTOMER);
        self.crm.push(false);
        let hashes = &self.hashes;
        self.index.insert_unique(h, k, |&k| hashes[k as usize]);
        k
    }

    /// The index of `keys`, added with `customer` if new (a stored row read
    /// by its keys: the first row of a key set names its customer).
    pub fn intern_stored(&mut self, keys: KeyRefs<'_>, customer: Option<&str>) -> u32 {
        let k = self.intern(keys);
        if self.customers[k as usize] == NO_CUSTOMER {
            self.customers[k as usize] = self.name(k, customer);
        }
        k
    }

    /// The index of the key set read from `_state` numbered `h`.
    fn sorted_index(&self, h: u64) -> Option<u32> {
        self.hashes[..self.sorted]
            .binary_search(&h)
            .ok()
            .map(|k| k as u32)
    }

    /// The indices of the key sets read from `_state` numbered `numbers`,
    /// in their order; `Err` with the first number not there. The sorted
    /// numbers are searched for in the table each from the one before.
    pub fn by_numbers(&self, numbers: &[u64]) -> Result<Vec<u32>, u64> {
        let mut order: Vec<(u64, u32)> = numbers
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i as u32))
            .collect();
        order.sort_unstable();
        let table = &self.hashes[..self.sorted];
        let mut out = vec![0u32; numbers.len()];
        let mut at = 0;
        for (n, i) in order {
            // Galloping: a file's few wanted rows need not scan the whole
            // table, and its many rows probe it close to the last one.
            let mut step = 1;
            while at + step < table.len() && table[at + step] < n {
                step *= 2;
            }
            let end = (at + step + 1).min(table.len());
            at += table[at..end].partition_point(|&h| h < n);
            if table.get(at) != Some(&n) {
                return Err(n);
            }
            out[i as usize] = at as u32;
        }
        Ok(out)
    }
}

/// A delta row that removes its key set from the table ([`build`]).
const REMOVED: u32 = u32::MAX;

/// The batch of `rows`: (number, index) pairs; an index of [`REMOVED`]
/// makes a row of no keys and no rows.
fn build(sets: &TxnKeysets, rows: &[(u64, u32)]) -> RecordBatch {
    let get = |k: u32| (k != REMOVED).then_some(k);
    let keys = |i: usize| {
        opt_utf8_array(
            rows.iter()
                .map(move |&(_, k)| get(k).and_then(|k| sets.keys(k)[i])),
        )
    };
    let summary = |k: u32| get(k).map(|k| sets.rows(k)).unwrap_or_default();
    let customer = |k: u32| get(k).and_then(|k| sets.customer(k));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.iter().map(|&(n, _)| n),
        )),
        keys(0),
        keys(1),
        keys(2),
        opt_utf8_array(rows.iter().map(|&(_, k)| customer(k))),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.iter().map(|&(_, k)| u64::from(summary(k).rows)),
        )),
        opt_timestamp_array(
            rows.iter()
                .map(|&(_, k)| summary(k).named(customer(k).is_some()).0),
        ),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter(
            rows.iter()
                .map(|&(_, k)| summary(k).named(customer(k).is_some()).1),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter()
                .map(|&(_, k)| Some(get(k).is_some_and(|k| sets.crm(k)))),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Whether two of `rows` (sorted) share a number: so unlikely that it is
/// only handled, by writing no table (the next run then reads the rows' keys).
fn shared_number(rows: &[(u64, u32)]) -> bool {
    let shared = rows.windows(2).any(|w| w[0].0 == w[1].0);
    if shared {
        tracing::warn!("two transaction key sets share a number: the key set table is not written");
    }
    shared
}

/// Writes `rows` (sorted) to `path`, atomically.
fn write_rows(
    path: &Path,
    sets: &TxnKeysets,
    rows: &[(u64, u32)],
) -> Result<WriteStats, WarehouseError> {
    write_batches(
        path,
        &schema(),
        &writer_properties_with(&[], &[]),
        chunks(rows.len()).map(|r| build(sets, &rows[r])),
    )
}

/// Writes the key sets `used` marks (by index) to `dir/txn_keysets.parquet`
/// (`dir` is the `_state` folder), by number, atomically. Writes nothing and
/// returns None when two of them share a number.
pub fn write(
    dir: &Path,
    sets: &TxnKeysets,
    used: &[bool],
) -> Result<Option<WriteStats>, WarehouseError> {
    // Sorted as pairs, so the sort never reads the table out of order.
    let mut rows: Vec<(u64, u32)> = (0..sets.len() as u32)
        .filter(|&k| used[k as usize])
        .map(|k| (sets.number(k), k))
        .collect();
    rows.par_sort_unstable();
    if shared_number(&rows) {
        return Ok(None);
    }
    write_rows(&dir.join(FILE), sets, &rows).map(Some)
}

/// Writes a night's key sets into `dir` (a staged `_state` folder): when
/// `sets` were read from `previous` (the stored `_state` folder), the rows
/// changed since its table was written whole as a new delta, the table
/// linked; once the delta outgrows an eighth of the table, or when `sets`
/// were not read from it, the table whole ([`write`]).
pub fn write_over(
    dir: &Path,
    previous: Option<&Path>,
    sets: &TxnKeysets,
    used: &[bool],
) -> Result<Option<WriteStats>, WarehouseError> {
    let base = previous.map(|p| p.join(FILE)).filter(|b| b.exists());
    let (Some(base), Some(base_rows), true) = (base, sets.base_rows, sets.summarised) else {
        return write(dir, sets, used);
    };
    let read = sets.sorted as u32;
    let changed = (0..sets.len() as u32).into_par_iter().filter_map(|k| {
        let i = k as usize;
        let row = match (k < read, used[i]) {
            (true, false) => REMOVED,
            (true, true)
                if sets.stored[i] == fingerprint(sets.customer(k), sets.crm(k), sets.rows(k)) =>
            {
                return None;
            }
            (_, true) => k,
            (false, false) => return None,
        };
        Some((sets.number(k), row))
    });
    let mut rows: Vec<(u64, u32)> = changed.collect();
    // Removals the stored delta made stay, unless the key set came back.
    let back: rustc_hash::FxHashSet<u64> = rows.iter().map(|r| r.0).collect();
    rows.extend(
        sets.removed
            .iter()
            .filter(|h| !back.contains(h))
            .map(|&h| (h, REMOVED)),
    );
    rows.par_sort_unstable();
    if shared_number(&rows) {
        return Ok(None);
    }
    if rows.len() * super::state::MERGE_RATIO > base_rows {
        return write(dir, sets, used);
    }
    let link = dir.join(FILE);
    parquet_io::link_or_copy(&base, &link).map_err(|e| parquet_io::io_err(&link, e))?;
    write_rows(&dir.join(DELTA_FILE), sets, &rows).map(Some)
}

/// One row of a key set file, borrowed from its batch.
struct FileRow<'a> {
    number: u64,
    keys: KeyRefs<'a>,
    customer: Option<&'a str>,
    crm: bool,
    rows: KeysetRows,
}

/// Calls `each` with every row of the key set file `path`, in file order;
/// returns whether the file keeps [`KeysetRows`] (an earlier cvm's did
/// not). A row of no rows in a delta (`removal`) removes its key set and
/// carries no keys; every other row's number must match its keys.
fn for_each_row(
    path: &Path,
    removal: bool,
    each: impl FnMut(FileRow<'_>) -> Result<(), String>,
) -> Result<bool, WarehouseError> {
    // Decoded a batch ahead on a thread of their own: the rows are checked
    // and taken in on this one (the table is the night's longest read).
    parquet_io::read_batches(path)?.read_ahead(|batches| for_each_batch(batches, removal, each))
}

/// [`for_each_row`] over its file's `batches`.
fn for_each_batch(
    batches: impl Iterator<Item = Result<(Arc<Path>, RecordBatch), WarehouseError>>,
    removal: bool,
    mut each: impl FnMut(FileRow<'_>) -> Result<(), String>,
) -> Result<bool, WarehouseError> {
    let mut summarised = true;
    let mut buf = String::new();
    for item in batches {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let number = c.uint64("keyset", true)?;
        let [kc, ke, kp, customer] = keyset_columns(&c)?;
        // An earlier cvm's table has no summary: the run then reads every row.
        let summary = match batch.column_by_name("rows") {
            Some(_) => Some((
                c.uint64("rows", true)?,
                c.timestamp_us("first_at", false)?,
                c.uint64("channels", false)?,
            )),
            None => {
                summarised = false;
                None
            }
        };
        // An earlier cvm's table does not know which key sets are CRM's.
        let crm = match batch.column_by_name("crm") {
            Some(_) => Some(c.boolean("crm", false)?),
            None => None,
        };
        for i in 0..batch.num_rows() {
            let keys = [kc, ke, kp].map(|a| opt_str_ref(a, i));
            let h = number.value(i);
            let rows = match summary {
                Some((rows, first_at, channels)) => KeysetRows {
                    rows: u32::try_from(rows.value(i))
                        .map_err(|_| c.error(format!("key set {h} has {} rows", rows.value(i))))?,
                    first_at: opt_value(first_at, i).unwrap_or(i64::MAX),
                    channels: opt_value(channels, i).unwrap_or(0) as u8,
                },
                None => KeysetRows::default(),
            };
            let removes = removal && rows.rows == 0;
            if !removes && keyset_hash(keys, &mut buf) != h {
                return Err(c.error(format!("key set {h} does not match its keys {keys:?}")));
            }
            let customer = opt_str_ref(customer, i);
            let crm = crm.is_some_and(|a| a.is_valid(i) && a.value(i));
            each(FileRow {
                number: h,
                keys,
                customer,
                crm,
                rows,
            })
            .map_err(|e| c.error(e))?;
        }
    }
    Ok(summarised)
}

/// A row of the delta, owned (the delta is small: it is read whole).
struct DeltaRow {
    number: u64,
    keys: Keys,
    customer: Option<Box<str>>,
    crm: bool,
    rows: KeysetRows,
}

impl TxnKeysets {
    /// Appends a key set read from `_state`, whose number must be greater
    /// than every one read before it.
    fn push_read(
        &mut self,
        h: u64,
        keys: KeyRefs<'_>,
        customer: Option<&str>,
        crm: bool,
        rows: KeysetRows,
        stored: u64,
    ) -> Result<(), String> {
        // Written by number: ascending, each once (no lookup needed).
        if self.hashes.last().is_some_and(|&last| last >= h) {
            return Err(format!("key set {h} is out of order or appears twice"));
        }
        let k = self.keys.push(keys) as u32;
        self.hashes.push(h);
        let named = self.name(k, customer);
        self.customers.push(named);
        self.crm.push(crm);
        self.rows.push(rows);
        self.stored.push(stored);
        Ok(())
    }
}

/// Reads `dir/txn_keysets.parquet` with its delta over it: every key set
/// with its customer, by number; `None` when the version has no such file
/// (written by an earlier cvm).
pub fn read(dir: &Path) -> Result<Option<TxnKeysets>, WarehouseError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    let mut delta: Vec<DeltaRow> = Vec::new();
    let delta_path = dir.join(DELTA_FILE);
    if delta_path.exists() {
        for_each_row(&delta_path, true, |r| {
            if delta.last().is_some_and(|last| last.number >= r.number) {
                return Err(format!(
                    "key set {} is out of order or appears twice",
                    r.number
                ));
            }
            delta.push(DeltaRow {
                number: r.number,
                keys: Keys::from_refs(r.keys),
                customer: r.customer.map(Into::into),
                crm: r.crm,
                rows: r.rows,
            });
            Ok(())
        })?;
    }
    let mut sets = TxnKeysets::default();
    let base_rows = parquet_io::row_count(&path)?.unwrap_or(0);
    let rows = base_rows + delta.len();
    sets.keys.reserve(rows);
    sets.hashes.reserve_exact(rows);
    sets.customers.reserve_exact(rows);
    sets.crm.reserve_exact(rows);
    sets.rows.reserve_exact(rows);
    sets.stored.reserve_exact(rows);
    // The delta's rows go in by number as the table streams past them.
    let mut pending = delta.iter().peekable();
    let from_delta = |sets: &mut TxnKeysets, d: &DeltaRow| {
        if d.rows.rows == 0 {
            return Ok(());
        }
        let customer = d.customer.as_deref();
        sets.push_read(d.number, d.keys.refs(), customer, d.crm, d.rows, FROM_DELTA)
    };
    let summarised = for_each_row(&path, false, |r| {
        while let Some(d) = pending.next_if(|d| d.number < r.number) {
            from_delta(&mut sets, d)?;
        }
        if let Some(d) = pending.next_if(|d| d.number == r.number) {
            if d.rows.rows == 0 {
                sets.removed.push(d.number);
                return Ok(());
            }
            return from_delta(&mut sets, d);
        }
        let fp = fingerprint(r.customer, r.crm, r.rows);
        sets.push_read(r.number, r.keys, r.customer, r.crm, r.rows, fp)
    })?;
    for d in pending {
        from_delta(&mut sets, d).map_err(|e| WarehouseError::Schema {
            path: delta_path.clone(),
            dataset: DATASET,
            message: e,
        })?;
    }
    sets.summarised = summarised;
    sets.sorted = sets.keys.len();
    sets.base_rows = Some(base_rows);
    Ok(Some(sets))
}

/// One row of the table as [`read_rows`] gives it.
pub type TableRow = (u64, Keys, Option<String>, KeysetRows);

/// Whether `dir/txn_keysets.parquet` exists and keeps each key set's
/// [`KeysetRows`] (read from its schema alone).
pub fn summarised(dir: &Path) -> bool {
    use arrow_array::RecordBatchReader;
    let path = dir.join(FILE);
    path.exists()
        && parquet_io::open_file(&path).is_ok_and(|r| r.schema().column_with_name("rows").is_some())
}

/// Every row of `dir/txn_keysets.parquet` as (number, keys, customer,
/// summary), in file order (for checks and tools; a run reads the table with
/// [`read`]).
pub fn read_rows(dir: &Path) -> Result<Vec<TableRow>, WarehouseError> {
    let Some(sets) = read(dir)? else {
        return Ok(Vec::new());
    };
    Ok((0..sets.len() as u32)
        .map(|k| {
            let customer = sets.customer(k).map(String::from);
            (
                sets.number(k),
                Keys::from_refs(sets.keys(k)),
                customer,
                sets.rows(k),
            )
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn keys<'a>(c: Option<&'a str>, e: Option<&'a str>) -> KeyRefs<'a> {
        [c, e, None]
    }

    #[test]
    fn equal_keys_share_one_key_set_and_a_stable_number() {
        let mut sets = TxnKeysets::default();
        let a = sets.intern(keys(Some("C1"), None));
        let b = sets.intern(keys(None, Some("a@example.com")));
        assert_eq!(sets.intern(keys(Some("C1"), None)), a);
        assert_ne!(a, b);
        assert_eq!(sets.len(), 2);
        // The number is the XXH3 of the key text, whatever the table.
        let mut other = TxnKeysets::default();
        other.intern(keys(None, Some("a@example.com")));
        assert_eq!(other.number(0), sets.number(b));
        assert_eq!(
            sets.number(a),
            cvm_shared::identity::stable_hash("\u{1}C1\u{0}\u{0}".as_bytes())
        );
    }

    #[test]
    fn round_trips_the_used_key_sets_by_number() {
        let d = tempfile::tempdir().unwrap();
        let mut sets = TxnKeysets::default();
        sets.intern_stored(keys(Some("C1"), None), Some("C1"));
        sets.intern(keys(Some("X"), None));
        sets.intern_stored(keys(None, Some("a@example.com")), Some("G-1"));
        write(d.path(), &sets, &[true, false, true])
            .unwrap()
            .unwrap();
        let back = read(d.path()).unwrap().unwrap();
        assert_eq!(back.len(), 2);
        let found = back
            .by_numbers(&[sets.number(2), sets.number(0), sets.number(2)])
            .unwrap();
        for (j, k) in found.into_iter().zip([2, 0, 2]) {
            assert_eq!(back.keys(j), sets.keys(k));
            assert_eq!(back.customer(j), sets.customer(k));
        }
        assert_eq!(back.by_numbers(&[sets.number(1)]), Err(sets.number(1)));
        // Keys read from the table are found again, new ones added after them.
        let mut back = back;
        let again = back.intern(sets.keys(2));
        assert_eq!(back.keys(again), sets.keys(2));
        assert_eq!(back.intern(sets.keys(1)), 2);
        assert_eq!(back.intern(sets.keys(1)), 2);
    }

    /// The table as read: (number, keys, customer, rows) by number.
    fn table(sets: &TxnKeysets) -> Vec<(u64, KeyRefs<'_>, Option<&str>, u32)> {
        (0..sets.len() as u32)
            .map(|k| {
                (
                    sets.number(k),
                    sets.keys(k),
                    sets.customer(k),
                    sets.rows(k).rows,
                )
            })
            .collect()
    }

    #[test]
    fn a_night_writes_the_changed_key_sets_as_a_delta_over_the_shared_table() {
        let (v1, v2, v3) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        // 32 key sets, so a delta of three stays under an eighth.
        let mut sets = TxnKeysets::default();
        for i in 0..32 {
            let k = sets.intern_stored(keys(Some(&format!("C{i}")), None), Some(&*format!("C{i}")));
            sets.rows_mut(k).add(i, Channel::Web);
        }
        write(v1.path(), &sets, &[true; 32]).unwrap().unwrap();
        // Night 1: one key set moves, one loses its rows, one is new.
        let mut night = read(v1.path()).unwrap().unwrap();
        let moved = night.intern(keys(Some("C3"), None));
        night.set_customer(moved, Some("C9"));
        let gone = night.intern(keys(Some("C5"), None));
        night.rows_mut(gone).rows = 0;
        let new = night.intern(keys(None, Some("n@x")));
        night.set_customer(new, Some("G-1"));
        night.rows_mut(new).add(99, Channel::Pos);
        let used: Vec<bool> = night.all_rows().iter().map(|r| r.rows > 0).collect();
        write_over(v2.path(), Some(v1.path()), &night, &used)
            .unwrap()
            .unwrap();
        assert_eq!(
            parquet_io::row_count(&v2.path().join(DELTA_FILE)).unwrap(),
            Some(3)
        );
        let back = read(v2.path()).unwrap().unwrap();
        let mut want: Vec<_> = table(&night).into_iter().filter(|r| r.3 > 0).collect();
        want.sort_by_key(|r| r.0);
        assert_eq!(table(&back), want);
        // Night 2 changes nothing: the delta keeps night 1's changes (the
        // removal too), over the same table.
        let used: Vec<bool> = back.all_rows().iter().map(|r| r.rows > 0).collect();
        write_over(v3.path(), Some(v2.path()), &back, &used)
            .unwrap()
            .unwrap();
        assert_eq!(
            parquet_io::row_count(&v3.path().join(DELTA_FILE)).unwrap(),
            Some(3)
        );
        assert_eq!(table(&read(v3.path()).unwrap().unwrap()), want);
        // A delta past an eighth of the table: the table whole, no delta.
        let mut busy = read(v3.path()).unwrap().unwrap();
        for k in 0..4 {
            busy.set_customer(k, Some("C0"));
        }
        let v4 = tempfile::tempdir().unwrap();
        let used = vec![true; busy.len()];
        write_over(v4.path(), Some(v3.path()), &busy, &used)
            .unwrap()
            .unwrap();
        assert!(!v4.path().join(DELTA_FILE).exists());
        assert_eq!(
            parquet_io::row_count(&v4.path().join(FILE)).unwrap(),
            Some(32)
        );
        assert_eq!(table(&read(v4.path()).unwrap().unwrap()), table(&busy));
    }

    #[test]
    fn a_missing_file_is_no_table_and_a_wrong_number_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_none());
        let mut sets = TxnKeysets::default();
        sets.intern(keys(Some("C1"), None));
        sets.hashes[0] ^= 1;
        write(d.path(), &sets, &[true]).unwrap().unwrap();
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains("does not match its keys"), "{e}");
    }
}
