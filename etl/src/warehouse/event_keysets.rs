//! `_state/event_keysets.parquet`: one row per distinct key set of the
//! stored events (customer id, email and phone as given), with the customer
//! those events belong to and how many there are.
//!
//! Events keep the keys they came with; their customer is a property of
//! their key set, kept here, so a CRM record that claims a guest changes one
//! row of this table, not events spread over every month. A night reads the
//! events of its own months only, writes those months, and carries this
//! table over into the new version a batch at a time ([`carry_over`]), so
//! it never holds it. Readers join events to it on the three keys
//! (null-safe).
//!
//! Each row notes whether its customer is the CRM customer one of its keys
//! names (`crm`): such a row keeps its customer on a night that changes
//! no CRM owner of its keys, so a night resolves only the other rows (the
//! guests' and the unknown, a twentieth of the table) and those a CRM
//! record of the night touches.
//!
//! A night changes few rows (the key sets with events tonight, those a
//! claim moves): it writes them as `_state/event_keysets-delta.parquet`
//! beside the shared table (a delta row stands for the table's row with
//! its keys, or adds one), and writes the table whole again once the delta
//! it starts from holds more than one row for every
//! [`super::state::MERGE_RATIO`] of the table's.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::WarehouseError;
use super::parquet_io::{
    self, Columns, WriteStats, batched, opt_str_ref, opt_utf8_array, write_batches,
    writer_properties_with,
};
use crate::text_rows::TextRows;

/// Dataset name used in errors.
pub const DATASET: &str = "event key sets";
/// File name inside `_state/`.
pub const FILE: &str = "event_keysets.parquet";
/// The delta's file name inside `_state/`.
pub const DELTA_FILE: &str = "event_keysets-delta.parquet";

/// The columns both key set tables hold: a key set's customer id, email and
/// phone as given, and the customer its rows belong to.
pub(crate) const KEYSET_COLUMNS: [&str; 4] =
    ["key_customer_id", "key_email", "key_phone", "customer_id"];

/// [`KEYSET_COLUMNS`] as nullable text fields.
pub(crate) fn keyset_fields() -> impl Iterator<Item = Field> {
    KEYSET_COLUMNS
        .into_iter()
        .map(|name| Field::new(name, DataType::Utf8, true))
}

/// [`KEYSET_COLUMNS`] of a batch.
pub(crate) fn keyset_columns<'a>(c: &Columns<'a>) -> Result<[&'a StringArray; 4], WarehouseError> {
    let [kc, ke, kp, customer] = KEYSET_COLUMNS;
    Ok([
        c.utf8(kc, false)?,
        c.utf8(ke, false)?,
        c.utf8(kp, false)?,
        c.utf8(customer, false)?,
    ])
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = keyset_fields().chain([
        Field::new("events", DataType::UInt64, false),
        Field::new("crm", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
});

/// The Arrow schema of the key set table.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One key set's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysetRow<'a> {
    /// Customer id, email and phone as the events give them.
    pub keys: [Option<&'a str>; 3],
    /// The customer its events name.
    pub customer: Option<&'a str>,
    /// How many events.
    pub events: u64,
    /// Whether `customer` is the CRM customer one of `keys` names.
    pub crm: bool,
}

fn build(rows: &[KeysetRow<'_>]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        opt_utf8_array(rows.iter().map(|r| r.keys[0])),
        opt_utf8_array(rows.iter().map(|r| r.keys[1])),
        opt_utf8_array(rows.iter().map(|r| r.keys[2])),
        opt_utf8_array(rows.iter().map(|r| r.customer)),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.iter().map(|r| r.events),
        )),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.crm)))),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Writes `rows` to `dir/event_keysets.parquet` (`dir` is the `_state` folder), atomically.
pub fn write(dir: &Path, rows: &[KeysetRow<'_>]) -> Result<WriteStats, WarehouseError> {
    write_each(dir, rows.iter().copied())
}

/// Writes `rows`, made as the writer needs them (a batch's worth at a time,
/// so a table of millions is never held whole), like [`write`].
pub fn write_each<'a>(
    dir: &Path,
    rows: impl Iterator<Item = KeysetRow<'a>>,
) -> Result<WriteStats, WarehouseError> {
    let batches = batched(rows, build);
    write_batches(
        &dir.join(FILE),
        &schema(),
        &writer_properties_with(&[], &[]),
        batches,
    )
}

/// Whether `dir/event_keysets.parquet` exists with this table's columns
/// (read from its footer alone): a night then carries it over
/// ([`carry_over`]) instead of reading every stored event.
pub fn usable(dir: &Path) -> bool {
    let delta = dir.join(DELTA_FILE);
    parquet_io::has_schema(&dir.join(FILE), &schema())
        && (!delta.exists() || parquet_io::has_schema(&delta, &schema()))
}

/// The `crm` column of a batch; `None` in a table an earlier cvm wrote
/// (read as no row known to be a CRM customer's).
fn crm_column<'a>(c: &Columns<'a>) -> Result<Option<&'a BooleanArray>, WarehouseError> {
    match c.has("crm") {
        true => c.boolean("crm", true).map(Some),
        false => Ok(None),
    }
}

/// A delta row: its keys, its customer, its events, whether the customer
/// is a CRM customer.
type DeltaRow<'a> = ([Option<&'a str>; 3], Option<&'a str>, u64, bool);

/// A delta's rows, in file order, found by their keys. Held in one block of
/// text, 4-byte slots in the table: a long history's delta is millions of
/// rows, which as owned strings and a map by their text took ~200 bytes each.
#[derive(Default)]
struct Delta {
    /// Each row's customer id, email, phone and customer.
    text: TextRows<4>,
    events: Vec<u64>,
    crm: Vec<bool>,
    /// Each row's index, hashed by its keys' text ([`key_text`]).
    by_keys: HashTable<u32>,
}

/// The hash a delta row is found by: its keys' text's.
fn keys_hash(keys: [Option<&str>; 3], buf: &mut String) -> u64 {
    key_text(keys, buf);
    FxBuildHasher.hash_one(buf.as_str())
}

impl Delta {
    /// The delta of the `_state` folder `dir` (none when it has none).
    fn read(dir: &Path) -> Result<Delta, WarehouseError> {
        let path = dir.join(DELTA_FILE);
        let mut delta = Delta::default();
        let Some(rows) = parquet_io::row_count(&path)? else {
            return Ok(delta);
        };
        delta.text.reserve(rows);
        delta.by_keys.reserve(rows, |_| 0);
        let mut text = String::new();
        for item in parquet_io::read_batches(&path)? {
            let (file, batch) = item?;
            let c = Columns::new(&batch, &file, DATASET);
            let [kc, ke, kp, customer] = keyset_columns(&c)?;
            let events = c.uint64("events", true)?;
            let crm = crm_column(&c)?;
            for i in 0..batch.num_rows() {
                let keys = [kc, ke, kp].map(|a| opt_str_ref(a, i));
                let h = keys_hash(keys, &mut text);
                let [id, email, phone] = keys;
                let d = delta
                    .text
                    .push([id, email, phone, opt_str_ref(customer, i)])
                    as u32;
                delta.events.push(events.value(i));
                delta.crm.push(crm.is_some_and(|a| a.value(i)));
                let text = &delta.text;
                delta.by_keys.insert_unique(h, d, |&d| {
                    let [id, email, phone, _] = text.get(d as usize);
                    keys_hash([id, email, phone], &mut String::new())
                });
            }
        }
        Ok(delta)
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Row `d`.
    fn row(&self, d: usize) -> DeltaRow<'_> {
        let [id, email, phone, customer] = self.text.get(d);
        ([id, email, phone], customer, self.events[d], self.crm[d])
    }

    /// The row with `keys`, if any (`buf`: room for their text).
    fn find(&self, keys: [Option<&str>; 3], buf: &mut String) -> Option<usize> {
        let h = keys_hash(keys, buf);
        self.by_keys
            .find(h, |&d| self.row(d as usize).0 == keys)
            .map(|&d| d as usize)
    }

    /// The rows not `met`, in file order.
    fn unmet<'a>(&'a self, met: &'a [bool]) -> impl Iterator<Item = DeltaRow<'a>> + 'a {
        (0..self.len()).filter(|&d| !met[d]).map(|d| self.row(d))
    }
}

/// A batch of stored rows as a night starts from them: the table's, with
/// the values of the delta where it has the row (see [`carry_over`]).
pub struct StoredRows<'a> {
    /// Customer id, email and phone as given.
    pub keys: [&'a StringArray; 3],
    /// Each row's customer.
    pub customers: &'a StringArray,
    /// Whether each row's customer is a CRM customer.
    pub crm: &'a BooleanArray,
    /// Each row's events.
    pub events: &'a PrimitiveArray<UInt64Type>,
}

impl StoredRows<'_> {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What a night makes of one batch of stored rows (see [`carry_over`]).
pub struct Carried {
    /// Each row's customer (text, nullable).
    pub customers: ArrayRef,
    /// Each row's events: its stored ones plus the night's.
    pub events: Vec<u64>,
    /// Whether each row's customer is a CRM customer.
    pub crm: Vec<bool>,
}

/// What [`carry_over`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct CarriedOver {
    /// The file written: the table, or the delta beside the shared table.
    pub stats: WriteStats,
    /// Whether it is the delta.
    pub delta: bool,
    /// The events the carried table counts.
    pub events: u64,
}

/// Carries the key set table of `from` over into `to` (both `_state`
/// folders), a batch at a time, so it is never held: each stored row (the
/// table's, a delta row standing for it) keeps its keys and gets the
/// customer and count `carry` gives it (from the row's key columns and
/// stored counts); then come the rows of `tail` (key sets the stored table
/// lacks), made once every stored row is carried. Written as a delta over
/// the shared table (the rows that differ from the table's, and the rows it
/// lacks) unless the stored delta is too big, then as the table whole.
pub fn carry_over<'t, I>(
    from: &Path,
    to: &Path,
    carry: impl FnMut(&StoredRows<'_>) -> Carried,
    tail: impl FnOnce() -> I,
) -> Result<CarriedOver, WarehouseError>
where
    I: Iterator<Item = KeysetRow<'t>>,
{
    // Both the table's rows and the delta's other rows are carried.
    let carry = RefCell::new(carry);
    let base = from.join(FILE);
    let stored = Delta::read(from)?;
    let base_rows = parquet_io::row_count(&base)?.unwrap_or(0);
    let as_delta = stored.len() * super::state::MERGE_RATIO <= base_rows;
    let met = RefCell::new(vec![false; stored.len()]);
    let mut total = 0u64;
    let mut text = String::new();
    let mut tail = Some(tail);
    let carried = parquet_io::read_batches(&base)?.map(|item| {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let [kc, ke, kp, customer] = keyset_columns(&c)?;
        let events = c.uint64("events", true)?;
        let crm = c.boolean("crm", true)?;
        // The delta's row standing for each row, if any.
        let found: Vec<Option<usize>> = match stored.is_empty() {
            true => Vec::new(),
            false => (0..batch.num_rows())
                .map(|i| {
                    let d = stored.find([kc, ke, kp].map(|a| opt_str_ref(a, i)), &mut text);
                    if let Some(d) = d {
                        met.borrow_mut()[d] = true;
                    }
                    d
                })
                .collect(),
        };
        let from_delta = stored_rows(&stored, &found, customer, crm, events);
        let rows = match &from_delta {
            Some((customers, crm, events)) => StoredRows {
                keys: [kc, ke, kp],
                customers,
                crm,
                events,
            },
            None => StoredRows {
                keys: [kc, ke, kp],
                customers: customer,
                crm,
                events,
            },
        };
        let carried = (carry.borrow_mut())(&rows);
        total += carried.events.iter().sum::<u64>();
        let new_events = PrimitiveArray::<UInt64Type>::from(carried.events);
        let new_crm = BooleanArray::from(carried.crm);
        let out = RecordBatch::try_new(
            schema(),
            vec![
                batch.column(0).clone(),
                batch.column(1).clone(),
                batch.column(2).clone(),
                carried.customers,
                Arc::new(new_events),
                Arc::new(new_crm),
            ],
        )
        .map_err(|e| c.error(e.to_string()))?;
        if !as_delta {
            return Ok(out);
        }
        // Only the rows that differ from the table's.
        let new_customers = out.column(3).as_string::<i32>();
        let new_events = out.column(4).as_primitive::<UInt64Type>();
        let new_crm = out.column(5).as_boolean();
        let changed: BooleanArray = (0..out.num_rows())
            .map(|i| {
                Some(
                    opt_str_ref(new_customers, i) != opt_str_ref(customer, i)
                        || new_events.value(i) != events.value(i)
                        || new_crm.value(i) != crm.value(i),
                )
            })
            .collect();
        filter_record_batch(&out, &changed).map_err(|e| c.error(e.to_string()))
    });
    let added = std::cell::Cell::new(0u64);
    let rest = std::iter::once(()).flat_map(|()| {
        // The delta's rows the table lacks, carried as stored rows are.
        let met = met.borrow();
        let lacking: Vec<_> = stored.unmet(&met).collect();
        let keys: [StringArray; 3] =
            [0, 1, 2].map(|k| lacking.iter().map(|r| r.0[k]).collect::<StringArray>());
        let customers: StringArray = lacking.iter().map(|r| r.1).collect();
        let crm: BooleanArray = lacking.iter().map(|r| Some(r.3)).collect();
        let counts: PrimitiveArray<UInt64Type> = lacking.iter().map(|r| r.2).collect();
        let mut batches = Vec::new();
        if !lacking.is_empty() {
            let carried = (carry.borrow_mut())(&StoredRows {
                keys: [&keys[0], &keys[1], &keys[2]],
                customers: &customers,
                crm: &crm,
                events: &counts,
            });
            added.set(added.get() + carried.events.iter().sum::<u64>());
            let columns: Vec<ArrayRef> = vec![
                Arc::new(keys[0].clone()),
                Arc::new(keys[1].clone()),
                Arc::new(keys[2].clone()),
                carried.customers,
                Arc::new(PrimitiveArray::<UInt64Type>::from(carried.events)),
                Arc::new(BooleanArray::from(carried.crm)),
            ];
            batches.push(RecordBatch::try_new(schema(), columns).map_err(|e| {
                WarehouseError::Format {
                    path: from.join(DELTA_FILE),
                    message: e.to_string(),
                }
            }));
        }
        let rows = tail.take().map(|f| f()).into_iter().flatten();
        let tail = batched(rows.inspect(|r| added.set(added.get() + r.events)), build).map(Ok);
        batches.into_iter().chain(tail)
    });
    let props = writer_properties_with(&[], &[]);
    let target = to.join(if as_delta { DELTA_FILE } else { FILE });
    let stats = write_batches(&target, &schema(), &props, carried.chain(rest))?;
    if as_delta {
        let link = to.join(FILE);
        parquet_io::link_or_copy(&base, &link).map_err(|e| parquet_io::io_err(&link, e))?;
    }
    Ok(CarriedOver {
        stats,
        delta: as_delta,
        events: total + added.get(),
    })
}

/// The customers, CRM flags and counts of a batch of the table's rows as
/// the delta leaves them (`found`: each row's delta row), or `None` when
/// the delta has none of them.
fn stored_rows(
    delta: &Delta,
    found: &[Option<usize>],
    customers: &StringArray,
    crm: &BooleanArray,
    events: &PrimitiveArray<UInt64Type>,
) -> Option<(StringArray, BooleanArray, PrimitiveArray<UInt64Type>)> {
    if found.iter().all(Option::is_none) {
        return None;
    }
    let row = |i: usize| found[i].map(|d| delta.row(d));
    let n = found.len();
    Some((
        (0..n)
            .map(|i| row(i).map_or(opt_str_ref(customers, i), |r| r.1))
            .collect(),
        (0..n)
            .map(|i| Some(row(i).map_or(crm.value(i), |r| r.3)))
            .collect(),
        (0..n)
            .map(|i| row(i).map_or(events.value(i), |r| r.2))
            .collect(),
    ))
}

/// Calls `f(keys, customer, events, crm)` for every row of the table of `dir`
/// (the `_state` folder) as its delta leaves it: the table's rows in file
/// order, each as the delta has it if it does, then the delta's other
/// rows; false when there is no table. An `Err` of `f` is reported as a
/// problem of the file.
pub fn for_each(
    dir: &Path,
    mut f: impl FnMut([Option<&str>; 3], Option<&str>, u64, bool) -> Result<(), String>,
) -> Result<bool, WarehouseError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(false);
    }
    let delta = Delta::read(dir)?;
    let mut met = vec![false; delta.len()];
    let mut text = String::new();
    for item in parquet_io::read_batches(&path)? {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let [kc, ke, kp, customer] = keyset_columns(&c)?;
        let keys = [kc, ke, kp];
        let events = c.uint64("events", true)?;
        let crm = crm_column(&c)?;
        for i in 0..batch.num_rows() {
            let keys = keys.map(|a| opt_str_ref(a, i));
            let found = match delta.is_empty() {
                true => None,
                false => delta.find(keys, &mut text),
            };
            let done = match found {
                Some(d) => {
                    met[d] = true;
                    let (_, customer, events, crm) = delta.row(d);
                    f(keys, customer, events, crm)
                }
                None => f(
                    keys,
                    opt_str_ref(customer, i),
                    events.value(i),
                    crm.is_some_and(|a| a.value(i)),
                ),
            };
            done.map_err(|m| c.error(m))?;
        }
    }
    for (keys, customer, events, crm) in delta.unmet(&met) {
        f(keys, customer, events, crm).map_err(|m| WarehouseError::Format {
            path: dir.join(DELTA_FILE),
            message: m,
        })?;
    }
    Ok(true)
}

/// `keys` as one text (for a hash table of key sets): each key's presence
/// and value, separated by a control character no key may hold (ingest
/// refuses them as `bad_value`).
pub fn key_text(keys: [Option<&str>; 3], out: &mut String) {
    out.clear();
    for k in keys {
        match k {
            Some(v) => {
                out.push('\u{1}');
                out.push_str(v);
            }
            None => out.push('\u{0}'),
        }
    }
}

/// How many events the table of `dir` counts (0 when there is none).
pub fn total(dir: &Path) -> Result<u64, WarehouseError> {
    let mut total = 0;
    for_each(dir, |_, _, events, _| {
        total += events;
        Ok(())
    })?;
    Ok(total)
}

/// Every row of `dir/event_keysets.parquet`, owned, in file order (for
/// checks and tools).
pub fn read_rows(dir: &Path) -> Result<Vec<String>, WarehouseError> {
    let mut rows = Vec::new();
    for_each(dir, |keys, customer, events, crm| {
        rows.push(format!(
            "{keys:?} customer={customer:?} events={events} crm={crm}"
        ));
        Ok(())
    })?;
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use arrow_array::Array;

    fn row(keys: [Option<&str>; 3], customer: Option<&str>, events: u64, crm: bool) -> String {
        format!("{keys:?} customer={customer:?} events={events} crm={crm}")
    }

    #[test]
    fn carrying_over_renames_and_counts_each_stored_row_then_adds_the_tail() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let rows = [
            KeysetRow {
                keys: [Some("C1"), None, None],
                customer: Some("C1"),
                events: 3,
                crm: true,
            },
            KeysetRow {
                keys: [None, Some("a@example.com"), None],
                customer: None,
                events: 1,
                crm: false,
            },
        ];
        write(from.path(), &rows).unwrap();
        let carry = |stored: &StoredRows<'_>| {
            let (keys, n) = (stored.keys, stored.len());
            assert_eq!(
                (0..n).map(|i| stored.crm.value(i)).collect::<Vec<_>>(),
                [true, false]
            );
            // The email's key set is claimed by C9 and gets two events.
            let claimed = |i: usize| keys[1].is_valid(i);
            Carried {
                customers: opt_utf8_array((0..n).map(|i| match claimed(i) {
                    true => Some("C9"),
                    false => opt_str_ref(stored.customers, i),
                })),
                events: (0..n)
                    .map(|i| stored.events.value(i) + if claimed(i) { 2 } else { 0 })
                    .collect(),
                crm: vec![true; n],
            }
        };
        let tail = || {
            [KeysetRow {
                keys: [None, None, Some("+3312")],
                customer: None,
                events: 4,
                crm: false,
            }]
            .into_iter()
        };
        let w = carry_over(from.path(), to.path(), carry, tail).unwrap();
        // A delta: the claimed row and the new one; the table is shared.
        assert_eq!((w.delta, w.stats.rows, w.events), (true, 2, 3 + 3 + 4));
        assert!(to.path().join(DELTA_FILE).exists());
        assert_eq!(
            read_rows(to.path()).unwrap(),
            [
                row([Some("C1"), None, None], Some("C1"), 3, true),
                row([None, Some("a@example.com"), None], Some("C9"), 3, true),
                row([None, None, Some("+3312")], None, 4, false),
            ]
        );
    }

    /// Carries `from` into `to` adding `more` events to the key set of
    /// email `email` and naming its customer `C-<email>` (a CRM customer),
    /// and one new key set with `tail` events. Every other row keeps what
    /// it had.
    fn night(from: &Path, to: &Path, email: &str, more: u64, tail: u64) -> CarriedOver {
        let claimed = format!("C-{email}");
        let carry = |stored: &StoredRows<'_>| {
            let n = stored.len();
            let hit = |i: usize| opt_str_ref(stored.keys[1], i) == Some(email);
            Carried {
                customers: opt_utf8_array((0..n).map(|i| match hit(i) {
                    true => Some(claimed.as_str()),
                    false => opt_str_ref(stored.customers, i),
                })),
                events: (0..n)
                    .map(|i| stored.events.value(i) + u64::from(hit(i)) * more)
                    .collect(),
                crm: (0..n).map(|i| hit(i) || stored.crm.value(i)).collect(),
            }
        };
        let rows = [KeysetRow {
            keys: [None, None, Some("+3312")],
            customer: None,
            events: tail,
            crm: false,
        }];
        carry_over(from, to, carry, || {
            rows.into_iter().filter(|r| r.events > 0)
        })
        .unwrap()
    }

    #[test]
    fn a_delta_is_carried_night_after_night_and_merged_once_too_big() {
        let emails: Vec<String> = (0..16).map(|i| format!("{i}@example.com")).collect();
        let rows: Vec<KeysetRow<'_>> = emails
            .iter()
            .map(|e| KeysetRow {
                keys: [None, Some(e), None],
                customer: None,
                events: 1,
                crm: false,
            })
            .collect();
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        write(dirs[0].path(), &rows).unwrap();
        // Night 1: one row changes, one is new: a delta of two.
        let w = night(dirs[0].path(), dirs[1].path(), "3@example.com", 2, 5);
        assert_eq!((w.delta, w.stats.rows, w.events), (true, 2, 16 + 2 + 5));
        // Night 2 starts from that delta: the new row and the changed one
        // keep their counts, another row changes.
        let w = night(dirs[1].path(), dirs[2].path(), "7@example.com", 1, 0);
        assert_eq!((w.delta, w.stats.rows, w.events), (true, 3, 16 + 2 + 5 + 1));
        let mut expected: Vec<String> = emails
            .iter()
            .map(|e| {
                let claimed = format!("C-{e}");
                match e.as_str() {
                    "3@example.com" => row([None, Some(e), None], Some(&claimed), 3, true),
                    "7@example.com" => row([None, Some(e), None], Some(&claimed), 2, true),
                    _ => row([None, Some(e), None], None, 1, false),
                }
            })
            .collect();
        expected.push(row([None, None, Some("+3312")], None, 5, false));
        assert_eq!(read_rows(dirs[2].path()).unwrap(), expected);
        // Night 3 starts from a delta of 3 rows for a table of 16: too big
        // (more than one for every 8), so the table is written whole.
        let w = night(dirs[2].path(), dirs[3].path(), "none", 0, 0);
        assert_eq!((w.delta, w.stats.rows, w.events), (false, 17, 24));
        assert!(!dirs[3].path().join(DELTA_FILE).exists());
        assert_eq!(read_rows(dirs[3].path()).unwrap(), expected);
    }

    #[test]
    fn a_table_is_usable_only_when_present_with_its_columns() {
        let d = tempfile::tempdir().unwrap();
        assert!(!usable(d.path()));
        std::fs::write(d.path().join(FILE), b"not parquet").unwrap();
        assert!(!usable(d.path()));
        write(d.path(), &[]).unwrap();
        assert!(usable(d.path()));
    }
}
