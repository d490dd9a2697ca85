//! A run's rejected records: `runs/<run_id>/rejects.parquet`, in the order given.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::parquet_io::{
    self, Columns, WriteStats, chunks, utf8_array, write_batches, writer_properties,
};
use super::{RejectRow, WarehouseError};
use crate::record::RejectReason;

/// Dataset name used in errors.
pub const DATASET: &str = "rejects";
/// Columns with few distinct values, dictionary-encoded.
const DICTIONARY_COLUMNS: &[&str] = &["source_file", "reason"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("source_file"),
        Field::new("line", DataType::UInt64, false),
        text("reason"),
        text("detail"),
        text("raw"),
    ]))
});

/// The Arrow schema of a rejects file.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn build<'a, I>(rows: I) -> RecordBatch
where
    I: Iterator<Item = &'a RejectRow> + Clone,
{
    let r = rows;
    let columns: Vec<ArrayRef> = vec![
        utf8_array(r.clone().map(|x| &*x.source_file)),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            r.clone().map(|x| x.line),
        )),
        utf8_array(r.clone().map(|x| x.reason.as_str())),
        utf8_array(r.clone().map(|x| x.detail.as_str())),
        utf8_array(r.map(|x| x.raw.as_str())),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Converts rows to one Arrow batch.
pub fn to_batch(rows: &[RejectRow]) -> RecordBatch {
    build(rows.iter())
}

/// Converts a batch back to rows, checking column types and reason codes.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<RejectRow>, WarehouseError> {
    decode(batch, Path::new("<batch>"))
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<RejectRow>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let source_file = c.utf8("source_file", true)?;
    let line = c.uint64("line", true)?;
    let reason = c.utf8("reason", true)?;
    let detail = c.utf8("detail", true)?;
    let raw = c.utf8("raw", true)?;
    (0..batch.num_rows())
        .map(|i| {
            let code = reason.value(i);
            Ok(RejectRow {
                source_file: source_file.value(i).into(),
                line: line.value(i),
                reason: RejectReason::parse(code).ok_or_else(|| {
                    c.error(format!("column \"reason\" has unknown code {code:?}"))
                })?,
                detail: detail.value(i).to_string(),
                raw: raw.value(i).to_string(),
            })
        })
        .collect()
}

/// Writes `rows` to the file `path`, atomically, in the order given; with no
/// rows the file still exists (schema only).
pub fn write(path: &Path, rows: &[RejectRow]) -> Result<WriteStats, WarehouseError> {
    let batches = chunks(rows.len()).map(|r| to_batch(&rows[r]));
    write_batches(
        path,
        &schema(),
        &writer_properties(DICTIONARY_COLUMNS),
        batches,
    )
}

/// Reads the rejects file at `path` (which must exist).
pub fn read(path: &Path) -> Result<Vec<RejectRow>, WarehouseError> {
    if !path.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no rejects file");
        return Err(WarehouseError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    parquet_io::read_rows(path, decode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn rows() -> Vec<RejectRow> {
        RejectReason::ALL
            .iter()
            .enumerate()
            .map(|(i, &reason)| RejectRow {
                source_file: format!("pos/receipts-{i}.csv").into(),
                line: if i == 0 { u64::MAX } else { i as u64 + 1 },
                reason,
                detail: format!("field {i} \"bad\""),
                raw: if i == 1 {
                    String::new()
                } else {
                    format!("R{i},2026-13-01,12€,\u{fffd}")
                },
            })
            .collect()
    }

    #[test]
    fn round_trips_every_reason_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runs/r1/rejects.parquet");
        let st = write(&p, &rows()).unwrap();
        assert_eq!((st.files, st.rows), (1, RejectReason::ALL.len() as u64));
        assert_eq!(read(&p).unwrap(), rows());
        assert_eq!(from_batch(&to_batch(&rows())).unwrap(), rows());
    }

    #[test]
    fn empty_rejects_still_write_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rejects.parquet");
        write(&p, &[]).unwrap();
        assert!(p.is_file());
        assert!(read(&p).unwrap().is_empty());
        assert!(read(&d.path().join("missing.parquet")).is_err());
    }

    #[test]
    fn reason_codes_parse_back() {
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(RejectReason::parse("nope"), None);
    }
}
