//! The `_state/` folder of a warehouse version: the latest version seen of
//! every source record (`records.parquet`) and small JSON state files
//! (such as `fx.json`).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::{Int32Type, Int64Type, UInt64Type};
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WarehouseError;
use super::parquet_io::{
    self, Columns, WriteStats, chunks, opt_value, utf8_array, write_atomically, write_batches,
    writer_properties_with,
};
use crate::consolidate::versions::{RecordState, RowMonths};

/// The folder of a version that holds its internal state.
pub const DIR: &str = "_state";
/// Dataset name used in errors.
pub const DATASET: &str = "record state";
/// File name of the record state table inside `_state/`.
pub const RECORDS_FILE: &str = "records.parquet";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("version", DataType::Int64, true),
        Field::new("digest", DataType::UInt64, false),
        Field::new("row_month", DataType::Int32, true),
        Field::new("refund_month", DataType::Int32, true),
    ]))
});

/// The Arrow schema of the record state table.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn build<'a, I>(rows: I) -> RecordBatch
where
    I: Iterator<Item = &'a RecordState> + Clone,
{
    let columns: Vec<ArrayRef> = vec![
        utf8_array(rows.clone().map(|r| &*r.key)),
        Arc::new(PrimitiveArray::<Int64Type>::from_iter(
            rows.clone().map(|r| r.version),
        )),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.clone().map(|r| r.digest),
        )),
        month_array(rows.clone(), 0),
        month_array(rows, 1),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Month `i` of each row ([`RowMonths`]), null for none.
fn month_array<'a>(rows: impl Iterator<Item = &'a RecordState>, i: usize) -> ArrayRef {
    Arc::new(PrimitiveArray::<Int32Type>::from_iter(
        rows.map(|r| Some(r.months.0[i]).filter(|&m| m != RowMonths::NONE)),
    ))
}

/// Converts rows to one Arrow batch.
pub fn to_batch(rows: &[RecordState]) -> RecordBatch {
    build(rows.iter())
}

/// Converts a batch back to rows, checking column types.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<RecordState>, WarehouseError> {
    decode(batch, Path::new("<batch>"))
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<RecordState>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let key = c.utf8("key", true)?;
    let version = c.int64("version", false)?;
    let digest = c.uint64("digest", true)?;
    // An earlier cvm's table has no months: its rows get none (see [`read`]).
    let months = match batch.column_by_name("row_month") {
        Some(_) => Some((
            c.int32("row_month", false)?,
            c.int32("refund_month", false)?,
        )),
        None => None,
    };
    Ok((0..batch.num_rows())
        .map(|i| RecordState {
            key: key.value(i).into(),
            version: opt_value(version, i),
            digest: digest.value(i),
            months: match months {
                Some((row, refund)) => {
                    RowMonths([row, refund].map(|a| opt_value(a, i).unwrap_or(RowMonths::NONE)))
                }
                None => RowMonths::EMPTY,
            },
        })
        .collect())
}

/// Writes `rows` to `dir/records.parquet` (`dir` is the `_state` folder),
/// sorted by key, atomically; always writes the file.
pub fn write(dir: &Path, rows: &[RecordState]) -> Result<WriteStats, WarehouseError> {
    // A night's rows are the stored ones, still in key order, then its
    // winners: only what follows the sorted prefix is sorted, then merged.
    let prefix = rows
        .len()
        .min(1 + rows.windows(2).take_while(|w| w[0].key < w[1].key).count());
    let (head, tail) = rows.split_at(prefix);
    let mut tail: Vec<&RecordState> = tail.iter().collect();
    tail.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let mut sorted: Vec<&RecordState> = Vec::with_capacity(rows.len());
    let (mut h, mut t) = (head.iter().peekable(), tail.into_iter().peekable());
    while let (Some(a), Some(b)) = (h.peek(), t.peek()) {
        if a.key <= b.key {
            sorted.extend(h.next());
        } else {
            sorted.extend(t.next());
        }
    }
    sorted.extend(h);
    sorted.extend(t);
    let batches = chunks(sorted.len()).map(|r| build(sorted[r].iter().copied()));
    write_batches(
        &dir.join(RECORDS_FILE),
        &schema(),
        &writer_properties_with(&[], &["key"]),
        batches,
    )
}

/// Reads `dir/records.parquet`; a missing file (first run) has no records.
pub fn read(dir: &Path) -> Result<Vec<RecordState>, WarehouseError> {
    parquet_io::read_rows(&dir.join(RECORDS_FILE), decode)
}

/// Whether `dir/records.parquet` keeps each record's months (an earlier
/// cvm's does not: its rows read back with none). A missing file keeps them
/// (it has no record).
pub fn knows_months(dir: &Path) -> Result<bool, WarehouseError> {
    let path = dir.join(RECORDS_FILE);
    if !path.exists() {
        return Ok(true);
    }
    use arrow_array::RecordBatchReader;
    Ok(parquet_io::open_file(&path)?
        .schema()
        .column_with_name("row_month")
        .is_some())
}

/// Writes `value` as pretty JSON to `path`, atomically (temp file, fsync, rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), WarehouseError> {
    write_atomically(path, |mut out| {
        serde_json::to_writer_pretty(&mut out, value).map_err(|e| WarehouseError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        out.write_all(b"\n").map_err(|e| WarehouseError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(out)
    })?;
    Ok(())
}

/// Reads a JSON file written by [`write_json`]; missing is an error (see [`read_json_if_exists`]).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, WarehouseError> {
    let bytes = std::fs::read(path).map_err(|e| WarehouseError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| WarehouseError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a JSON file, or `None` when it does not exist (a first run).
pub fn read_json_if_exists<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, WarehouseError> {
    match read_json(path) {
        Err(WarehouseError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn records_round_trip_sorted_by_key() {
        let d = tempfile::tempdir().unwrap();
        let rows = vec![
            RecordState {
                key: "web:W-2".into(),
                version: None,
                digest: u64::MAX,
                months: RowMonths::of(Some(i64::MIN), Some(i64::MAX)),
            },
            RecordState {
                key: "pos:R1#2".into(),
                version: Some(i64::MIN),
                digest: 0,
                months: RowMonths::of(Some(0), None),
            },
            RecordState {
                key: "crm:ü".into(),
                version: Some(1_700_000_000_000_000),
                digest: 0x8000_0000_0000_0001,
                months: RowMonths::EMPTY,
            },
        ];
        let dir = d.path().join("_state");
        let st = write(&dir, &rows).unwrap();
        assert_eq!((st.files, st.rows), (1, 3));
        let mut want = rows.clone();
        want.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(read(&dir).unwrap(), want);
        assert!(knows_months(&dir).unwrap());
        assert_eq!(from_batch(&to_batch(&rows)).unwrap(), rows);
    }

    #[test]
    fn an_earlier_table_without_months_reads_back_as_not_knowing_them() {
        let d = tempfile::tempdir().unwrap();
        let old = Arc::new(Schema::new(schema().fields()[..3].to_vec()));
        let rows = [RecordState {
            key: "web:W-1".into(),
            version: None,
            digest: 7,
            months: RowMonths::of(Some(0), None),
        }];
        let full = to_batch(&rows);
        let batch = RecordBatch::try_new(old.clone(), full.columns()[..3].to_vec()).unwrap();
        write_batches(
            &d.path().join(RECORDS_FILE),
            &old,
            &writer_properties_with(&[], &[]),
            std::iter::once(batch),
        )
        .unwrap();
        assert!(!knows_months(d.path()).unwrap());
        assert_eq!(read(d.path()).unwrap()[0].months, RowMonths::EMPTY);
        assert!(knows_months(&d.path().join("missing")).unwrap());
    }

    /// Unique keys: the kept ones in order, the night's after them in any order.
    fn kept_then_new() -> impl proptest::strategy::Strategy<Value = (Vec<String>, Vec<String>)> {
        use proptest::prelude::*;
        proptest::collection::btree_map("[a-e]{1,3}", any::<bool>(), 0..40).prop_flat_map(|keys| {
            let (kept, new): (Vec<_>, Vec<_>) = keys.into_iter().partition(|(_, kept)| *kept);
            let names = |v: Vec<(String, bool)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
            (Just(names(kept)), Just(names(new)).prop_shuffle())
        })
    }

    proptest::proptest! {
        #[test]
        fn a_sorted_prefix_then_any_rows_are_written_sorted((kept, new) in kept_then_new()) {
            let rows: Vec<RecordState> = kept
                .into_iter()
                .chain(new)
                .map(|k| RecordState { key: k.into(), version: None, digest: 1, months: RowMonths::EMPTY })
                .collect();
            let d = tempfile::tempdir().unwrap();
            write(d.path(), &rows).unwrap();
            let mut want = rows.clone();
            want.sort_by(|a, b| a.key.cmp(&b.key));
            proptest::prop_assert_eq!(read(d.path()).unwrap(), want);
        }
    }

    #[test]
    fn missing_state_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_empty());
        write(d.path(), &[]).unwrap();
        assert!(d.path().join(RECORDS_FILE).is_file());
        assert!(read(d.path()).unwrap().is_empty());
    }

    #[test]
    fn json_round_trips_atomically() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("_state/fx.json");
        assert_eq!(
            read_json_if_exists::<BTreeMap<String, String>>(&p).unwrap(),
            None
        );
        let v: BTreeMap<String, String> = [("EUR".to_string(), "1.08".to_string())].into();
        write_json(&p, &v).unwrap();
        assert_eq!(read_json::<BTreeMap<String, String>>(&p).unwrap(), v);
        assert_eq!(read_json_if_exists(&p).unwrap(), Some(v));
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fx.json"]);
        std::fs::write(&p, b"{not json").unwrap();
        let err = read_json::<BTreeMap<String, String>>(&p).unwrap_err();
        assert!(err.to_string().contains("fx.json"), "{err}");
    }
}
