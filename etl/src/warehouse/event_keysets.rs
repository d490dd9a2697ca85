//! `_state/event_keysets.parquet`: one row per distinct key set of the
//! stored events (customer id, email and phone as given), with the customer
//! those events belong to and how many there are.
//!
//! Events keep the keys they came with; their customer is a property of
//! their key set, kept here, so a CRM record that claims a guest changes one
//! row of this table, not events spread over every month. A night reads this
//! table and the events of its own months only, and writes those months and
//! this table. Readers join events to it on the three keys (null-safe).

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
use crate::consolidate::events::EventLog;

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

/// What the stored version holds of each key set, by the index the key set
/// was given in the log it was read into.
#[derive(Debug, Default)]
pub struct KeysetHistory {
    events: Vec<u64>,
}

impl KeysetHistory {
    /// How many stored events key set `k` has (0 for one first seen tonight).
    pub fn events(&self, k: u32) -> u64 {
        self.events.get(k as usize).copied().unwrap_or(0)
    }

    /// Every stored event.
    pub fn total(&self) -> u64 {
        self.events.iter().sum()
    }
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

/// Reads `dir/event_keysets.parquet` into `log` (which must hold no key set
/// yet): each row's key set, and the customer its events were stored with;
/// `None` when the version has no such file (written by an earlier cvm).
pub fn read(dir: &Path, log: &mut EventLog) -> Result<Option<KeysetHistory>, WarehouseError> {
    let mut h = KeysetHistory::default();
    if let Some(rows) = parquet_io::row_count(&dir.join(FILE))? {
        log.reserve_keysets(rows);
        h.events.reserve_exact(rows);
    }
    let found = for_each(dir, |keys, customer, events| {
        let [kc, ke, kp] = keys;
        let k = log.keyset(kc, ke, kp);
        if k as usize != h.events.len() {
            return Err(format!("key set {kc:?} {ke:?} {kp:?} appears twice"));
        }
        log.note_stored_customer(k, customer);
        h.events.push(events);
        Ok(())
    })?;
    Ok(found.then_some(h))
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

/// Every row of `dir/event_keysets.parquet`, owned, in file order (for
/// checks and tools; a run reads the table with [`read`]).
pub fn read_rows(dir: &Path) -> Result<Vec<String>, WarehouseError> {
    let mut log = EventLog::default();
    let Some(h) = read(dir, &mut log)? else {
        return Ok(Vec::new());
    };
    Ok((0..log.keysets.len() as u32)
        .map(|k| {
            let keys = log.keysets[k as usize].map(|i| log.text.get(i));
            format!(
                "{keys:?} customer={:?} events={}",
                log.stored_customer(k),
                h.events(k)
            )
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn round_trips_into_a_log_by_key_set() {
        let d = tempfile::tempdir().unwrap();
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
        write(d.path(), &rows).unwrap();
        let mut log = EventLog::default();
        let h = read(d.path(), &mut log).unwrap().unwrap();
        assert_eq!(log.keysets.len(), 2);
        assert_eq!((h.events(0), h.events(1), h.events(2)), (3, 1, 0));
        assert_eq!(h.total(), 4);
        assert_eq!(log.stored_customer(0), Some("C1"));
        assert_eq!(log.stored_customer(1), None);
        assert_eq!(log.find_keyset(None, Some("a@example.com"), None), Some(1));
        assert_eq!(log.find_keyset(None, Some("b@example.com"), None), None);
    }

    #[test]
    fn a_missing_file_is_no_history() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path(), &mut EventLog::default()).unwrap().is_none());
    }
}
