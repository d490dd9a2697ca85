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

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::WarehouseError;
use super::parquet_io::{
    self, Columns, WriteStats, batched, opt_str_ref, opt_utf8_array, write_batches,
    writer_properties_with,
};

/// Dataset name used in errors.
pub const DATASET: &str = "event key sets";
/// File name inside `_state/`.
pub const FILE: &str = "event_keysets.parquet";

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
    let fields = keyset_fields().chain([Field::new("events", DataType::UInt64, false)]);
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
    parquet_io::has_schema(&dir.join(FILE), &schema())
}

/// What a night makes of one batch of stored rows (see [`carry_over`]).
pub struct Carried {
    /// Each row's customer (text, nullable).
    pub customers: ArrayRef,
    /// Each row's events: its stored ones plus the night's.
    pub events: Vec<u64>,
}

/// Writes `to/event_keysets.parquet` from `from/event_keysets.parquet` (both
/// `_state` folders), a batch at a time, so neither table is ever held:
/// each stored row keeps its keys and gets the customer and count `carry`
/// gives it (from the row's key columns and stored counts); then come the
/// rows of `tail` (key sets the stored table lacks), made once every stored
/// row is carried. Returns the write and the events of the new table.
pub fn carry_over<'t, I>(
    from: &Path,
    to: &Path,
    mut carry: impl FnMut([&StringArray; 3], &PrimitiveArray<UInt64Type>) -> Carried,
    tail: impl FnOnce() -> I,
) -> Result<(WriteStats, u64), WarehouseError>
where
    I: Iterator<Item = KeysetRow<'t>>,
{
    let mut total = 0u64;
    let mut tail = Some(tail);
    let stored = parquet_io::read_batches(&from.join(FILE))?.map(|item| {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let [kc, ke, kp, _] = keyset_columns(&c)?;
        let carried = carry([kc, ke, kp], c.uint64("events", true)?);
        total += carried.events.iter().sum::<u64>();
        let columns: Vec<ArrayRef> = vec![
            batch.column(0).clone(),
            batch.column(1).clone(),
            batch.column(2).clone(),
            carried.customers,
            Arc::new(PrimitiveArray::<UInt64Type>::from(carried.events)),
        ];
        RecordBatch::try_new(schema(), columns).map_err(|e| c.error(e.to_string()))
    });
    let added = std::cell::Cell::new(0u64);
    let rest = std::iter::once(()).flat_map(|()| {
        let rows = tail.take().map(|f| f()).into_iter().flatten();
        batched(rows.inspect(|r| added.set(added.get() + r.events)), build).map(Ok)
    });
    let stats = write_batches(
        &to.join(FILE),
        &schema(),
        &writer_properties_with(&[], &[]),
        stored.chain(rest),
    )?;
    Ok((stats, total + added.get()))
}

/// Calls `f(keys, customer, events)` for every row of
/// `dir/event_keysets.parquet`, in file order; false when there is no such
/// file. An `Err` of `f` is reported as a problem of the file.
pub fn for_each(
    dir: &Path,
    mut f: impl FnMut([Option<&str>; 3], Option<&str>, u64) -> Result<(), String>,
) -> Result<bool, WarehouseError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(false);
    }
    for item in parquet_io::read_batches(&path)? {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let [kc, ke, kp, customer] = keyset_columns(&c)?;
        let keys = [kc, ke, kp];
        let events = c.uint64("events", true)?;
        for i in 0..batch.num_rows() {
            let keys = keys.map(|a| opt_str_ref(a, i));
            f(keys, opt_str_ref(customer, i), events.value(i)).map_err(|m| c.error(m))?;
        }
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
    for_each(dir, |_, _, events| {
        total += events;
        Ok(())
    })?;
    Ok(total)
}

/// Every row of `dir/event_keysets.parquet`, owned, in file order (for
/// checks and tools).
pub fn read_rows(dir: &Path) -> Result<Vec<String>, WarehouseError> {
    let mut rows = Vec::new();
    for_each(dir, |keys, customer, events| {
        rows.push(format!("{keys:?} customer={customer:?} events={events}"));
        Ok(())
    })?;
    Ok(rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use arrow_array::Array;

    fn row(keys: [Option<&str>; 3], customer: Option<&str>, events: u64) -> String {
        format!("{keys:?} customer={customer:?} events={events}")
    }

    #[test]
    fn carrying_over_renames_and_counts_each_stored_row_then_adds_the_tail() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let rows = [
            KeysetRow {
                keys: [Some("C1"), None, None],
                customer: Some("C1"),
                events: 3,
            },
            KeysetRow {
                keys: [None, Some("a@example.com"), None],
                customer: None,
                events: 1,
            },
        ];
        write(from.path(), &rows).unwrap();
        let carry = |keys: [&StringArray; 3], stored: &PrimitiveArray<UInt64Type>| {
            let n = keys[0].len();
            // The email's key set is claimed by C9 and gets two events.
            let claimed = |i: usize| keys[1].is_valid(i);
            Carried {
                customers: opt_utf8_array((0..n).map(|i| match claimed(i) {
                    true => Some("C9"),
                    false => opt_str_ref(keys[0], i),
                })),
                events: (0..n)
                    .map(|i| stored.value(i) + if claimed(i) { 2 } else { 0 })
                    .collect(),
            }
        };
        let tail = || {
            [KeysetRow {
                keys: [None, None, Some("+3312")],
                customer: None,
                events: 4,
            }]
            .into_iter()
        };
        let (stats, total) = carry_over(from.path(), to.path(), carry, tail).unwrap();
        assert_eq!((stats.rows, total), (3, 3 + 3 + 4));
        assert_eq!(
            read_rows(to.path()).unwrap(),
            [
                row([Some("C1"), None, None], Some("C1"), 3),
                row([None, Some("a@example.com"), None], Some("C9"), 3),
                row([None, None, Some("+3312")], None, 4),
            ]
        );
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
