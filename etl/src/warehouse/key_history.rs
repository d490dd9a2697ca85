//! `_state/crm_keys.parquet`: the emails and phones of superseded CRM
//! versions, one row per key, naming the CRM customer whose record carried it
//! most recently (data contract, section 5). Rows are sorted by kind and key,
//! with page statistics on `key`, so a reader can look keys up one by one.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;

use super::WarehouseError;
use super::parquet_io::{
    self, Columns, UTC, WriteStats, chunks, opt_timestamp_array, opt_value, utf8_array,
    write_batches, writer_properties_with,
};
use crate::consolidate::identity::{KeyClaim, KeyKind};

/// Dataset name used in errors.
pub const DATASET: &str = "CRM key history";
/// File name of the key history inside `_state/`.
pub const FILE: &str = "crm_keys.parquet";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("customer_id", DataType::Utf8, false),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            true,
        ),
    ]))
});

/// The Arrow schema of the key history.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

fn build(rows: &[&KeyClaim<&str>]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        utf8_array(rows.iter().map(|r| r.kind.as_str())),
        utf8_array(rows.iter().map(|r| r.key)),
        utf8_array(rows.iter().map(|r| r.customer_id)),
        opt_timestamp_array(rows.iter().map(|r| r.updated_at)),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<KeyClaim>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let kind = c.utf8("kind", true)?;
    let key = c.utf8("key", true)?;
    let customer_id = c.utf8("customer_id", true)?;
    let updated_at = c.timestamp_us("updated_at", false)?;
    (0..batch.num_rows())
        .map(|i| {
            let kind = match kind.value(i) {
                "email" => KeyKind::Email,
                "phone" => KeyKind::Phone,
                other => {
                    return Err(c.error(format!(
                        "column \"kind\" holds {other:?}, expected \"email\" or \"phone\""
                    )));
                }
            };
            Ok(KeyClaim {
                kind,
                key: key.value(i).into(),
                customer_id: customer_id.value(i).into(),
                updated_at: opt_value(updated_at, i),
            })
        })
        .collect()
}

/// Writes `rows` to `dir/crm_keys.parquet` (`dir` is the `_state` folder),
/// sorted by kind and key, atomically; always writes the file.
pub fn write(dir: &Path, rows: &[KeyClaim<&str>]) -> Result<WriteStats, WarehouseError> {
    let mut sorted: Vec<&KeyClaim<&str>> = rows.iter().collect();
    sorted.par_sort_unstable_by(|a, b| (a.kind, a.key).cmp(&(b.kind, b.key)));
    write_batches(
        &dir.join(FILE),
        &schema(),
        &writer_properties_with(&["kind"], &["key"]),
        chunks(sorted.len()).map(|r| build(&sorted[r])),
    )
}

/// Reads `dir/crm_keys.parquet`; a missing file (a first run, or a warehouse
/// written before the history was kept) has no rows.
pub fn read(dir: &Path) -> Result<Vec<KeyClaim>, WarehouseError> {
    parquet_io::read_rows(&dir.join(FILE), decode)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_sorted_by_kind_and_key() {
        let d = tempfile::tempdir().unwrap();
        let claim = |kind, key, customer_id, updated_at| KeyClaim {
            kind,
            key,
            customer_id,
            updated_at,
        };
        let rows = [
            claim(KeyKind::Phone, "+15550001", "C2", None),
            claim(KeyKind::Email, "b@x", "C1", Some(1_700_000_000_000_000)),
            claim(KeyKind::Email, "a@x", "C3", Some(-1)),
        ];
        let st = write(d.path(), &rows).unwrap();
        assert_eq!((st.files, st.rows), (1, 3));
        let got: Vec<(KeyKind, String, String, Option<i64>)> = read(d.path())
            .unwrap()
            .into_iter()
            .map(|c| (c.kind, c.key.into(), c.customer_id.into(), c.updated_at))
            .collect();
        assert_eq!(
            got,
            [
                (KeyKind::Email, "a@x".into(), "C3".into(), Some(-1)),
                (
                    KeyKind::Email,
                    "b@x".into(),
                    "C1".into(),
                    Some(1_700_000_000_000_000)
                ),
                (KeyKind::Phone, "+15550001".into(), "C2".into(), None),
            ]
        );
    }

    #[test]
    fn a_missing_history_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(d.path()).unwrap().is_empty());
    }
}
