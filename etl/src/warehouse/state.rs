//! The `_state/` folder of a warehouse version: the latest version seen of
//! every source record (`records.parquet`) and small JSON state files
//! (such as `fx.json`).
//!
//! The record state is millions of rows of which a night changes a few
//! thousand, so a night does not write it again: it writes the entries
//! changed since the table was last written whole (`records-delta.parquet`,
//! which wins over the table key by key) and shares the table itself with
//! the version before. When the delta outgrows an eighth of the table, the
//! two are merged into a new table, streaming, a batch at a time. A night
//! reads only the entries of its own records' keys, a batch at a time.

use std::cell::RefCell;
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
    self, Columns, WriteStats, batched, chunks, opt_value, utf8_array, write_atomically,
    write_batches, writer_properties_with,
};
use crate::consolidate::versions::{RecordState, RowMonths};

/// The folder of a version that holds its internal state.
pub const DIR: &str = "_state";
/// The warehouse format this cvm writes and reads up to, in
/// `_state/small.json` (`format`; missing: 0). Raised whenever a version
/// holds files a cvm that does not know them would misread (format 1: the
/// event key set delta, which an older night would ignore), so that from
/// then on an older cvm over a newer warehouse stops instead.
pub const FORMAT: u32 = 1;

/// Fails when the version folder `version` was written by a newer cvm (see
/// [`FORMAT`]).
pub fn check_format(version: &Path) -> Result<(), WarehouseError> {
    #[derive(serde::Deserialize)]
    struct Format {
        #[serde(default)]
        format: u32,
    }
    let path = version.join(DIR).join("small.json");
    match read_json_if_exists::<Format>(&path)? {
        Some(Format { format }) if format > FORMAT => {
            Err(WarehouseError::NewerFormat { path, format })
        }
        _ => Ok(()),
    }
}

/// Dataset name used in errors.
pub const DATASET: &str = "record state";
/// File name of the record state table inside `_state/`.
pub const RECORDS_FILE: &str = "records.parquet";
/// File name of the entries changed since the table was written.
pub const DELTA_FILE: &str = "records-delta.parquet";
/// A delta is merged into its table once it holds more than one entry for
/// this many of the table's (the record state's, the key set table's).
pub const MERGE_RATIO: usize = 8;

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
    decode_rows(batch, path, 0..batch.num_rows())
}

/// The entries of `batch` at `rows`.
fn decode_rows(
    batch: &RecordBatch,
    path: &Path,
    rows: impl Iterator<Item = usize>,
) -> Result<Vec<RecordState>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let key = c.utf8("key", true)?;
    let version = c.int64("version", false)?;
    let digest = c.uint64("digest", true)?;
    // An earlier cvm's table has no months: its rows' are unknown.
    let months = match batch.column_by_name("row_month") {
        Some(_) => Some((
            c.int32("row_month", false)?,
            c.int32("refund_month", false)?,
        )),
        None => None,
    };
    Ok(rows
        .map(|i| RecordState {
            key: key.value(i).into(),
            version: opt_value(version, i),
            digest: digest.value(i),
            months: match months {
                Some((row, refund)) => {
                    RowMonths([row, refund].map(|a| opt_value(a, i).unwrap_or(RowMonths::NONE)))
                }
                None => RowMonths::UNKNOWN,
            },
        })
        .collect())
}

/// Writes `rows` to `dir/records.parquet` (`dir` is the `_state` folder),
/// sorted by key, atomically; always writes the file.
pub fn write(dir: &Path, rows: &[RecordState]) -> Result<WriteStats, WarehouseError> {
    write_sorted(&dir.join(RECORDS_FILE), rows)
}

/// Writes `rows` (the stored state's kept rows in key order, then any
/// others) to `path`, sorted by key.
fn write_sorted(path: &Path, rows: &[RecordState]) -> Result<WriteStats, WarehouseError> {
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
        path,
        &schema(),
        &writer_properties_with(&[], &["key"]),
        batches,
    )
}

/// Reads `dir/records.parquet` with the delta over it: every entry, sorted
/// by key; a missing file (first run) has no records.
pub fn read(dir: &Path) -> Result<Vec<RecordState>, WarehouseError> {
    let base = parquet_io::read_rows(&dir.join(RECORDS_FILE), decode)?;
    let delta = read_delta(dir)?;
    if delta.is_empty() {
        return Ok(base);
    }
    Ok(Merged::new(base.into_iter(), delta.into_iter()).collect())
}

/// The entries of `dir/records-delta.parquet`, sorted by key (none without it).
pub fn read_delta(dir: &Path) -> Result<Vec<RecordState>, WarehouseError> {
    parquet_io::read_rows(&dir.join(DELTA_FILE), decode)
}

/// The stored entries of the keys `wanted` picks, sorted by key: the table
/// and then the delta streamed a batch at a time, keeping only those, the
/// delta's over the table's.
pub fn lookup(
    dir: &Path,
    wanted: impl Fn(&str) -> bool + Sync,
) -> Result<Vec<RecordState>, WarehouseError> {
    let base = picked(&dir.join(RECORDS_FILE), &wanted)?;
    let delta = picked(&dir.join(DELTA_FILE), &wanted)?;
    Ok(Merged::new(base.into_iter(), delta.into_iter()).collect())
}

/// The entries of the file at `path` (none without it) whose keys `wanted`
/// picks, in the file's order.
fn picked(
    path: &Path,
    wanted: &(impl Fn(&str) -> bool + Sync),
) -> Result<Vec<RecordState>, WarehouseError> {
    let mut rows = Vec::new();
    // Decoded a batch ahead on a thread of their own while the keys of the
    // one before are matched.
    parquet_io::read_batches(path)?.read_ahead(|batches| {
        for item in batches {
            let (file, batch) = item?;
            let c = Columns::new(&batch, &file, DATASET);
            let key = c.utf8("key", true)?;
            let picked: Vec<u32> = (0..batch.num_rows() as u32)
                .into_par_iter()
                .filter(|&i| wanted(key.value(i as usize)))
                .collect();
            rows.extend(decode_rows(
                &batch,
                &file,
                picked.into_iter().map(|i| i as usize),
            )?);
        }
        Ok::<(), WarehouseError>(())
    })?;
    Ok(rows)
}

/// The entries of the file at `path` (none without it), decoded a batch at
/// a time as they are taken; a read error ends them and is kept in `failed`.
fn streamed<'f>(
    path: &Path,
    failed: &'f RefCell<Option<WarehouseError>>,
) -> Result<impl Iterator<Item = RecordState> + 'f, WarehouseError> {
    let mut batches = parquet_io::read_batches(path)?;
    let mut rows = Vec::new().into_iter();
    Ok(std::iter::from_fn(move || {
        loop {
            if let Some(r) = rows.next() {
                return Some(r);
            }
            match batches
                .next()?
                .and_then(|(file, batch)| decode(&batch, &file))
            {
                Ok(next) => rows = next.into_iter(),
                Err(e) => {
                    *failed.borrow_mut() = Some(e);
                    return None;
                }
            }
        }
    }))
}

/// Two key-sorted runs of entries merged, `over` winning on equal keys.
struct Merged<U: Iterator<Item = RecordState>, O: Iterator<Item = RecordState>> {
    under: std::iter::Peekable<U>,
    over: std::iter::Peekable<O>,
}

impl<U: Iterator<Item = RecordState>, O: Iterator<Item = RecordState>> Merged<U, O> {
    fn new(under: U, over: O) -> Self {
        Merged {
            under: under.peekable(),
            over: over.peekable(),
        }
    }
}

impl<U: Iterator<Item = RecordState>, O: Iterator<Item = RecordState>> Iterator for Merged<U, O> {
    type Item = RecordState;

    fn next(&mut self) -> Option<RecordState> {
        let order = match (self.under.peek(), self.over.peek()) {
            (Some(a), Some(b)) => a.key.cmp(&b.key),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => self.under.next(),
            std::cmp::Ordering::Equal => {
                self.under.next();
                self.over.next()
            }
            std::cmp::Ordering::Greater => self.over.next(),
        }
    }
}

/// What [`write_over`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The delta; the table is shared with the version before.
    Delta,
    /// A new table (the delta merged in), no delta.
    Merged,
}

/// Writes a night's record state into `dir` (a staged `_state` folder):
/// the delta of `previous` (the stored `_state` folder) less the keys
/// `replaced` picks, with `tonight`'s entries over it, as the new delta (all
/// changed since the table was written whole), the table linked from
/// `previous`; or, once the delta would outgrow an eighth of the table, the
/// three merged into a new table. Either way streamed a batch at a time:
/// over a long history the delta is millions of entries, never held.
pub fn write_over(
    dir: &Path,
    previous: &Path,
    tonight: &[RecordState],
    replaced: impl Fn(&str) -> bool,
) -> Result<Written, WarehouseError> {
    let base = previous.join(RECORDS_FILE);
    let old_delta = previous.join(DELTA_FILE);
    let base_rows = parquet_io::row_count(&base)?.unwrap_or(0);
    // At most this many: the keys of tonight's that the delta holds are
    // counted twice.
    let delta_rows = parquet_io::row_count(&old_delta)?.unwrap_or(0) + tonight.len();
    std::fs::create_dir_all(dir).map_err(|e| parquet_io::io_err(dir, e))?;
    let mut sorted: Vec<&RecordState> = tonight.iter().collect();
    sorted.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let failed: RefCell<Option<WarehouseError>> = Default::default();
    let kept = streamed(&old_delta, &failed)?.filter(|r| !replaced(&r.key));
    let delta = Merged::new(kept, sorted.into_iter().cloned());
    let props = writer_properties_with(&[], &["key"]);
    let written = if base.exists() && delta_rows * MERGE_RATIO <= base_rows {
        let link = dir.join(RECORDS_FILE);
        parquet_io::link_or_copy(&base, &link).map_err(|e| parquet_io::io_err(&link, e))?;
        let out = batched(delta, to_batch);
        write_batches(&dir.join(DELTA_FILE), &schema(), &props, out)?;
        Written::Delta
    } else {
        let merged = Merged::new(streamed(&base, &failed)?, delta);
        let out = batched(merged, to_batch);
        write_batches(&dir.join(RECORDS_FILE), &schema(), &props, out)?;
        Written::Merged
    };
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(written),
    }
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

    fn entry(key: &str, digest: u64) -> RecordState {
        RecordState {
            key: key.into(),
            version: None,
            digest,
            months: RowMonths::of(Some(digest as i64), None),
        }
    }

    #[test]
    fn a_small_delta_is_written_beside_the_shared_table_and_wins_over_it() {
        let d = tempfile::tempdir().unwrap();
        let (night0, night1) = (d.path().join("v0"), d.path().join("v1"));
        let table: Vec<RecordState> = (0..100).map(|i| entry(&format!("k{i:03}"), 1)).collect();
        write(&night0, &table).unwrap();
        // Tonight: one key replaced, one added; unsorted, as a night has them.
        let delta = vec![entry("k999", 2), entry("k050", 2)];
        assert_eq!(
            write_over(&night1, &night0, &delta, |_| false).unwrap(),
            Written::Delta
        );
        let (a, b) = (night0.join(RECORDS_FILE), night1.join(RECORDS_FILE));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            a.metadata().unwrap().ino(),
            b.metadata().unwrap().ino(),
            "shared"
        );
        let all = read(&night1).unwrap();
        assert_eq!(all.len(), 101);
        assert!(all.is_sorted_by(|a, b| a.key < b.key));
        assert_eq!(all.iter().find(|r| &*r.key == "k050").unwrap().digest, 2);
        assert_eq!(
            read_delta(&night1).unwrap(),
            vec![entry("k050", 2), entry("k999", 2)]
        );
        // Looked up: the delta over the table, only the wanted keys.
        let got = lookup(&night1, |k| ["k001", "k050", "k999", "x"].contains(&k)).unwrap();
        assert_eq!(
            got,
            vec![entry("k001", 1), entry("k050", 2), entry("k999", 2)]
        );
    }

    #[test]
    fn the_next_night_streams_the_delta_before_it_less_the_replaced_keys() {
        let d = tempfile::tempdir().unwrap();
        let [v0, v1, v2] = ["v0", "v1", "v2"].map(|v| d.path().join(v));
        let table: Vec<RecordState> = (0..100).map(|i| entry(&format!("k{i:03}"), 1)).collect();
        write(&v0, &table).unwrap();
        let night1 = [entry("k100", 2), entry("k010", 2), entry("k020", 2)];
        write_over(&v1, &v0, &night1, |_| false).unwrap();
        // Tonight k010 is replaced again, k020 replaced by a version kept
        // elsewhere (no entry tonight), and k101 is new.
        let night2 = [entry("k101", 3), entry("k010", 3)];
        let replaced = |k: &str| ["k010", "k020"].contains(&k);
        assert_eq!(
            write_over(&v2, &v1, &night2, replaced).unwrap(),
            Written::Delta
        );
        assert_eq!(
            read_delta(&v2).unwrap(),
            vec![entry("k010", 3), entry("k100", 2), entry("k101", 3)]
        );
        let all = read(&v2).unwrap();
        assert_eq!(all.len(), 102);
        assert_eq!(all.iter().find(|r| &*r.key == "k020").unwrap().digest, 1);
    }

    #[test]
    fn a_delta_past_an_eighth_of_the_table_is_merged_into_a_new_one() {
        let d = tempfile::tempdir().unwrap();
        let (night0, night1) = (d.path().join("v0"), d.path().join("v1"));
        let table: Vec<RecordState> = (0..80).map(|i| entry(&format!("k{i:03}"), 1)).collect();
        write(&night0, &table).unwrap();
        let mut delta: Vec<RecordState> = (70..81).map(|i| entry(&format!("k{i:03}"), 3)).collect();
        delta.reverse();
        assert_eq!(
            write_over(&night1, &night0, &delta, |_| false).unwrap(),
            Written::Merged
        );
        assert!(!night1.join(DELTA_FILE).exists());
        let mut want: Vec<RecordState> = table[..70].to_vec();
        want.extend((70..81).map(|i| entry(&format!("k{i:03}"), 3)));
        assert_eq!(read(&night1).unwrap(), want);
        // No table before: the delta is the table.
        let night2 = d.path().join("v2");
        assert_eq!(
            write_over(&night2, &d.path().join("none"), &[], |_| false).unwrap(),
            Written::Merged
        );
        assert!(read(&night2).unwrap().is_empty());
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
        assert_eq!(read(d.path()).unwrap()[0].months, RowMonths::UNKNOWN);
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
