//! The `transactions/` dataset: consolidated transactions, Hive-partitioned by
//! month of `occurred_at` (UTC) as `month=YYYY-MM/part-NNNNN.parquet`.
//!
//! The month lives only in the folder name; Hive-aware readers (DuckDB,
//! Polars, Spark) add it as a column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow_array::builder::StringBuilder;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cvm_shared::money::{AMOUNT_SCALE, BASE_SCALE};
use cvm_shared::{Amount, BaseAmount, Channel, Currency, TxnKind};
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::months::{self, Month, Unchanged, Written, month_of};
use super::parquet_io::{
    self, Columns, DECIMAL_MAX_UNITS, DECIMAL_PRECISION, UTC, WriteStats, decimal_array, opt_str,
    opt_str_ref, opt_utf8_array, timestamp_array, writer_properties_with,
};
use super::splice;
use super::txn_keysets::TxnKeysets;
use super::{SourceFile, StoredTxn, Transaction, WarehouseError};
use crate::record::{Keys, RecordKey, TxnIds, TxnRow};

/// Dataset name used in errors.
pub const DATASET: &str = "transactions";
/// Columns with few distinct values, dictionary-encoded.
const DICTIONARY_COLUMNS: &[&str] = &["channel", "currency", "kind", "source_file"];
/// Columns with page-level statistics: rows are sorted by time, so time-range
/// readers can skip pages, not only row groups.
const PAGE_INDEX_COLUMNS: &[&str] = &["occurred_at"];

/// Rows per data page: a night reads a few rows of many files (its touched
/// customers'), and skips, undecompressed, the pages holding none of them.
/// At parquet's default (20,000 rows, about a whole part) it decompressed
/// nearly every part whole; 1,024-row pages make the dataset 3.6% bigger.
const PAGE_ROWS: usize = 1024;

/// The writer settings of every transactions file.
fn properties() -> WriterProperties {
    writer_properties_with(DICTIONARY_COLUMNS, PAGE_INDEX_COLUMNS)
        .into_builder()
        .set_data_page_row_count_limit(PAGE_ROWS)
        .build()
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let utc = Some(Arc::from(UTC));
    Arc::new(Schema::new(vec![
        text("transaction_id", false),
        text("customer_id", true),
        text("channel", false),
        text("source_id", true),
        text("order_id", true),
        Field::new(
            "occurred_at",
            DataType::Timestamp(TimeUnit::Microsecond, utc),
            false,
        ),
        Field::new(
            "amount_base",
            DataType::Decimal128(DECIMAL_PRECISION, BASE_SCALE as i8),
            false,
        ),
        Field::new(
            "amount_original",
            DataType::Decimal128(DECIMAL_PRECISION, AMOUNT_SCALE as i8),
            false,
        ),
        text("currency", false),
        text("kind", false),
        text("key_customer_id", true),
        text("key_email", true),
        text("key_phone", true),
        text("record_key", false),
        text("source_file", false),
        Field::new("keyset", DataType::UInt64, false),
    ]))
});

/// The columns a run that knows the key sets reads (see [`txn_keysets`]):
/// every one but the customer and the keys, which are its key set's.
const KEYED_COLUMNS: &[&str] = &[
    "transaction_id",
    "channel",
    "source_id",
    "order_id",
    "occurred_at",
    "amount_base",
    "amount_original",
    "currency",
    "kind",
    "record_key",
    "source_file",
    "keyset",
];

/// The Arrow schema of a transactions file.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds the columns in one pass over the rows: written rows are in time
/// order, scattered in memory, so a pass per column would miss the cache
/// fifteen times a row.
fn build<'a, I>(rows: I, sets: &TxnKeysets) -> RecordBatch
where
    I: ExactSizeIterator<Item = &'a StoredTxn>,
{
    use std::fmt::Write;
    let n = rows.len();
    // Starting sizes for the text; the builders grow past them if needed.
    let text = |bytes_per_row: usize| StringBuilder::with_capacity(n, n * bytes_per_row);
    let [mut id, mut source, mut order, mut record_key] = [24, 12, 12, 24].map(text);
    let [mut customer, mut key_customer, mut key_email, mut key_phone] = [12, 12, 24, 16].map(text);
    let [mut channel, mut currency, mut kind, mut source_file] = [4, 3, 8, 32].map(text);
    let file_names = SourceFile::names();
    let (mut occurred, mut base, mut original, mut keyset) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for t in rows {
        let keys = sets.keys(t.keyset);
        // Writing into the builder's buffer cannot fail; the empty append ends the value.
        let _ = write!(id, "{}", t.transaction_id());
        id.append_value("");
        customer.append_option(sets.customer(t.keyset));
        channel.append_value(t.row.channel.as_str());
        source.append_option(t.source_id());
        order.append_option(t.order_id());
        occurred.push(t.row.occurred_at);
        base.push(t.row.amount_base.0);
        original.push(t.row.amount_original.0);
        currency.append_value(t.row.currency.as_str());
        kind.append_value(t.row.kind.as_str());
        let [key_c, key_e, key_p] = keys;
        key_customer.append_option(key_c);
        key_email.append_option(key_e);
        key_phone.append_option(key_p);
        record_key.append_value(&t.record_key);
        source_file.append_value(t.source_file.name_in(&file_names));
        keyset.push(sets.number(t.keyset));
    }
    let finish = |b: &mut StringBuilder| -> ArrayRef { Arc::new(b.finish()) };
    let columns = vec![
        finish(&mut id),
        finish(&mut customer),
        finish(&mut channel),
        finish(&mut source),
        finish(&mut order),
        timestamp_array(occurred.into_iter()),
        decimal_array(base.into_iter(), BASE_SCALE as i8),
        decimal_array(original.into_iter(), AMOUNT_SCALE as i8),
        finish(&mut currency),
        finish(&mut kind),
        finish(&mut key_customer),
        finish(&mut key_email),
        finish(&mut key_phone),
        finish(&mut record_key),
        finish(&mut source_file),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(keyset)),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Full rows as ingest holds them: the rows and their key set table.
pub fn keyed(rows: &[Transaction]) -> (Vec<StoredTxn>, TxnKeysets) {
    let mut sets = TxnKeysets::default();
    let txns = rows
        .iter()
        .map(|t| {
            let keyset = sets.intern_stored(t.keys.refs(), t.customer_id.as_deref());
            StoredTxn {
                keyset,
                ..t.txn.clone()
            }
        })
        .collect();
    (txns, sets)
}

/// Rows as ingest holds them, with their keys and customer again.
pub fn unkeyed(rows: Vec<StoredTxn>, sets: &TxnKeysets) -> Vec<Transaction> {
    rows.into_iter()
        .map(|txn| Transaction {
            customer_id: sets.customer(txn.keyset).map(Into::into),
            keys: Keys::from_refs(sets.keys(txn.keyset)),
            txn,
        })
        .collect()
}

/// Converts rows to one Arrow batch. Amounts must lie within Decimal128(38)
/// (checked by [`write`], not here).
pub fn to_batch(rows: &[Transaction]) -> RecordBatch {
    let (txns, sets) = keyed(rows);
    build(txns.iter(), &sets)
}

/// Converts a batch back to rows, checking column types and values.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Transaction>, WarehouseError> {
    let mut sets = TxnKeysets::default();
    let rows = decode(batch, Path::new("<batch>"), Keysets::ByKeys(&mut sets))?;
    Ok(unkeyed(rows, &sets))
}

/// Where a decoded row's key set comes from.
enum Keysets<'a> {
    /// Its `keyset` column, noted here (in row order) to be found in a table
    /// read from `_state` once the file is read: the row's index is left 0.
    ByNumber(&'a mut Vec<u64>),
    /// Its keys, added to the table if new (with the row's customer).
    ByKeys(&'a mut TxnKeysets),
}

fn decode(
    batch: &RecordBatch,
    path: &Path,
    sets: Keysets<'_>,
) -> Result<Vec<StoredTxn>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let transaction_id = c.utf8("transaction_id", true)?;
    let channel = c.utf8("channel", true)?;
    let source_id = c.utf8("source_id", false)?;
    let order_id = c.utf8("order_id", false)?;
    let occurred_at = c.timestamp_us("occurred_at", true)?;
    let amount_base = c.decimal128("amount_base", BASE_SCALE as i8, true)?;
    let amount_original = c.decimal128("amount_original", AMOUNT_SCALE as i8, true)?;
    let currency = c.utf8("currency", true)?;
    let kind = c.utf8("kind", true)?;
    let record_key = c.utf8("record_key", true)?;
    let source_file = c.utf8("source_file", true)?;
    // The mode, with the columns it reads.
    enum KeysetColumns<'m, 'c> {
        Number(&'m mut Vec<u64>, &'c PrimitiveArray<UInt64Type>),
        Keys(&'m mut TxnKeysets, [&'c StringArray; 4]),
    }
    let mut keysets = match sets {
        Keysets::ByNumber(numbers) => KeysetColumns::Number(numbers, c.uint64("keyset", true)?),
        Keysets::ByKeys(sets) => {
            KeysetColumns::Keys(sets, super::event_keysets::keyset_columns(&c)?)
        }
    };
    let bad = |col: &str, v: &str| c.error(format!("column {col:?} has invalid value {v:?}"));
    let mut out = Vec::with_capacity(batch.num_rows());
    // A file's rows are stored together: one lookup per run of rows.
    let mut file: Option<(&str, SourceFile)> = None;
    for i in 0..batch.num_rows() {
        let name = source_file.value(i);
        let source_file = match file {
            Some((n, f)) if n == name => f,
            _ => {
                let f = SourceFile::intern(name);
                file = Some((name, f));
                f
            }
        };
        let ch = channel.value(i);
        let cur = currency.value(i);
        let k = kind.value(i);
        let (id, key) = (transaction_id.value(i), record_key.value(i));
        let ids = if key.starts_with("tx:") {
            let hash = id
                .strip_prefix("tx:")
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            TxnIds::Generic {
                hash: hash.ok_or_else(|| bad("transaction_id", id))?,
                order_id: opt_str(order_id, i),
            }
        } else {
            TxnIds::Keyed {
                refund: id.len() > key.len() && id.ends_with(":refund"),
            }
        };
        let keyset = match &mut keysets {
            KeysetColumns::Number(numbers, number) => {
                numbers.push(number.value(i));
                0
            }
            KeysetColumns::Keys(sets, [kc, ke, kp, customer]) => {
                let keys = [kc, ke, kp].map(|a| opt_str_ref(a, i));
                sets.intern_stored(keys, opt_str_ref(customer, i))
            }
        };
        let t = StoredTxn {
            row: TxnRow {
                ids,
                channel: Channel::parse(ch).ok_or_else(|| bad("channel", ch))?,
                occurred_at: occurred_at.value(i),
                amount_original: Amount(amount_original.value(i)),
                currency: Currency::parse(cur).map_err(|_| bad("currency", cur))?,
                amount_base: BaseAmount(amount_base.value(i)),
                kind: TxnKind::parse(k).ok_or_else(|| bad("kind", k))?,
            },
            keyset,
            record_key: key.into(),
            source_file,
        };
        // The ids are not kept but derived from the record key: they must agree.
        let (source, order) = (opt_str_ref(source_id, i), opt_str_ref(order_id, i));
        if !t.transaction_id().is(id) || t.source_id() != source || t.order_id() != order {
            return Err(c.error(format!(
                "transaction {id:?} (source id {source:?}, order id {order:?}) does not match its record key {key:?}"
            )));
        }
        out.push(t);
    }
    Ok(out)
}

/// The Hive partition folder name of a UTC microsecond instant: `month=YYYY-MM`.
pub fn month_partition(occurred_at: i64) -> String {
    months::folder(month_of(occurred_at))
}

/// Stored files whose rows change only their customer (a claim moved one
/// of their key sets), by month: written again from the previous version's
/// files, each under its own name, instead of from rows held in memory.
#[derive(Debug, Default)]
pub struct Reread {
    /// The files, by month.
    pub files: BTreeMap<Month, Vec<PathBuf>>,
    /// The key sets whose customer changed, by number (their index in the
    /// table): a file's other rows keep the customer they have.
    pub moved: FxHashMap<u64, u32>,
}

impl Reread {
    /// Nothing to write again.
    pub fn new() -> Reread {
        Reread::default()
    }

    /// Whether no file is written again.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// How many parts a month of transactions is written in at most (see
/// [`months::Layout`]): a night that refunds an earlier order or has a
/// guest claimed writes again an eighth of each month it reaches.
pub const PARTS_PER_MONTH: usize = 8;

/// Writes `txns` under `dir` as `month=YYYY-MM/part-NNNNN.parquet` (up to
/// [`PARTS_PER_MONTH`] parts a month), rows sorted by (`occurred_at`,
/// `transaction_id`), parts in parallel. With `unchanged`, only the changed
/// months are written and the others linked from the previous version
/// (whose rows there are exactly `txns`' rows there); of an appended month,
/// `txns` holds only the rows written again. The files of `reread` are
/// written again from the previous version's (each row with its key set's
/// customer in `sets`) under their own names; `unchanged` must name them
/// rewritten, so they are not linked. `dir` should be a fresh folder: files
/// already there are not removed.
pub fn write<'a>(
    dir: &Path,
    txns: impl IntoIterator<Item = &'a StoredTxn>,
    sets: &TxnKeysets,
    unchanged: Option<Unchanged<'_>>,
    reread: &Reread,
) -> Result<Written, WarehouseError> {
    let mut written = write_rows(dir, txns, sets, unchanged)?;
    let files: Vec<(Month, &PathBuf)> = reread
        .files
        .iter()
        .flat_map(|(m, files)| files.iter().map(move |f| (*m, f)))
        .collect();
    // A file per thread at a time: memory holds as many files as threads.
    let stats: Vec<WriteStats> = files
        .par_iter()
        .map(|(month, file)| {
            let to = dir.join(months::folder(*month));
            rename_customers(&to, file, sets, &reread.moved)
        })
        .collect::<Result<_, _>>()?;
    for s in stats {
        written.stats = written.stats + s;
    }
    // Months written only by renaming files are every month folder not shared.
    if !reread.is_empty() {
        written.months = months::files_by_month(dir)?.len() - written.shared_months;
    }
    Ok(written)
}

/// Writes a stored `file` into the month folder `to` again under its own
/// name, as it is but for its `customer_id` column: a row of a `moved` key
/// set (by number) gets its customer in `sets`, the others keep theirs. A
/// claim moves key sets, and nothing else about the file changes, so its
/// other columns' pages are copied, neither decoded nor encoded (`splice`),
/// but for a file of another schema, an earlier cvm's: read and written row
/// by row (a row whose key set `sets` lacks is an error there).
fn rename_customers(
    to: &Path,
    file: &Path,
    sets: &TxnKeysets,
    moved: &FxHashMap<u64, u32>,
) -> Result<WriteStats, WarehouseError> {
    let schema = schema();
    let customer = schema.index_of("customer_id").unwrap_or(1);
    let props = properties();
    let path = to.join(file.file_name().unwrap_or_default());
    if !parquet_io::has_schema(file, &schema) {
        let rows = read_numbered_rows(file, sets, None)?;
        let batch = build(rows.iter(), sets);
        return parquet_io::write_batches(&path, &schema, &props, [batch]);
    }
    // Looked up among the moved key sets alone: finding every row's key set
    // in the table took a third of renaming a file.
    let inputs = (&["keyset", "customer_id"][..], DATASET);
    splice::replace_column(file, &path, &schema, &props, customer, inputs, |c| {
        let numbers = c.uint64("keyset", true)?;
        let stored = c.utf8("customer_id", false)?;
        Ok(opt_utf8_array((0..numbers.len()).map(
            |i| match moved.get(&numbers.value(i)) {
                Some(&k) => sets.customer(k),
                None => opt_str_ref(stored, i),
            },
        )))
    })
}

/// The record keys of the rows of the file at `path` that `wanted` picks,
/// reading that column alone: what finding a re-delivered record, or the
/// file holding a replaced one, needs of a file that is not read whole.
pub fn record_keys_in(
    path: &Path,
    mut wanted: impl FnMut(&str) -> bool,
) -> Result<Vec<RecordKey>, WarehouseError> {
    let mut out = Vec::new();
    parquet_io::for_each_projected(path, &["record_key"], DATASET, |c, rows| {
        let keys = c.utf8("record_key", true)?;
        out.extend(
            (0..rows)
                .map(|i| keys.value(i))
                .filter(|k| wanted(k))
                .map(RecordKey::from),
        );
        Ok(())
    })?;
    Ok(out)
}

/// Writes `txns` as [`write`] does, without re-read months.
fn write_rows<'a>(
    dir: &Path,
    txns: impl IntoIterator<Item = &'a StoredTxn>,
    sets: &TxnKeysets,
    unchanged: Option<Unchanged<'_>>,
) -> Result<Written, WarehouseError> {
    let mut sorted: Vec<&StoredTxn> = txns
        .into_iter()
        .filter(|t| unchanged.is_none_or(|u| u.writes(t.row.occurred_at)))
        .collect();
    let limit = DECIMAL_MAX_UNITS.unsigned_abs();
    if let Some(t) = sorted.iter().find(|t| {
        t.row.amount_base.0.unsigned_abs() > limit || t.row.amount_original.0.unsigned_abs() > limit
    }) {
        return Err(WarehouseError::Format {
            path: dir.to_path_buf(),
            message: format!(
                "transaction {}: amount does not fit Decimal128({DECIMAL_PRECISION})",
                t.transaction_id()
            ),
        });
    }
    // Transaction ids are unique, so the order is total (deterministic even
    // unstable); they are derived, so compared only when times tie.
    sorted.par_sort_unstable_by(|a, b| {
        (a.row.occurred_at.cmp(&b.row.occurred_at))
            .then_with(|| a.transaction_id().cmp(&b.transaction_id()))
    });
    let layout = months::Layout {
        schema: &schema(),
        props: &properties(),
        parts_per_month: PARTS_PER_MONTH,
    };
    months::write(
        dir,
        &sorted,
        |t| t.row.occurred_at,
        unchanged,
        layout,
        |rows| build(rows.iter().copied(), sets),
    )
}

/// Reads every transaction under `dir`, with its keys and customer; a
/// missing or empty folder has none.
pub fn read(dir: &Path) -> Result<Vec<Transaction>, WarehouseError> {
    let mut sets = TxnKeysets::default();
    let rows = read_keyed(dir, &mut sets)?;
    Ok(unkeyed(rows.into_iter().flatten().collect(), &sets))
}

/// Reads every transaction under `dir` by its keys, adding them (with the
/// customer of their first row) to `sets`: a part per batch read.
pub fn read_keyed(
    dir: &Path,
    sets: &mut TxnKeysets,
) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
    let mut parts = Vec::new();
    for item in parquet_io::read_batches(dir)? {
        let (file, batch) = item?;
        parts.push(decode(&batch, &file, Keysets::ByKeys(sets))?);
    }
    Ok(parts)
}

/// Reads every transaction under `dir` by its key set number, files in
/// parallel, a part per file: neither the customer nor the keys are read,
/// they are the key set's in `sets` (read from `_state`). Fails when a
/// row's key set is not there.
pub fn read_numbered(dir: &Path, sets: &TxnKeysets) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
    read_numbered_files(&parquet_io::list_parquet_files(dir)?, sets)
}

/// Reads `files` as [`read_numbered`] reads a folder's.
pub fn read_numbered_files(
    files: &[PathBuf],
    sets: &TxnKeysets,
) -> Result<Vec<Vec<StoredTxn>>, WarehouseError> {
    files
        .par_iter()
        .map(|path| read_numbered_rows(path, sets, None))
        .collect()
}

/// The key set number of every row of the file at `path`, in row order:
/// one column, so a run can find the rows it needs without decoding the rest.
pub fn keyset_numbers(path: &Path) -> Result<Vec<u64>, WarehouseError> {
    let mut out = Vec::new();
    let Some(reader) = parquet_io::open_projected(path, &["keyset"], None)? else {
        return Ok(out);
    };
    for batch in reader {
        let batch = batch.map_err(|e| parquet_io::format_err(path, e))?;
        let c = Columns::new(&batch, path, DATASET);
        out.extend_from_slice(c.uint64("keyset", true)?.values());
    }
    Ok(out)
}

/// Reads the rows of the file at `path` by key set number, as
/// [`read_numbered`] does: all of them, or those at `rows` (ascending row
/// numbers), the others skipped undecoded.
pub fn read_numbered_rows(
    path: &Path,
    sets: &TxnKeysets,
    rows: Option<&[u32]>,
) -> Result<Vec<StoredTxn>, WarehouseError> {
    let mut out = Vec::new();
    let reader = match rows {
        None => parquet_io::open_projected(path, KEYED_COLUMNS, None)?,
        Some([]) => None,
        Some(rows) => Some(parquet_io::open_rows(path, KEYED_COLUMNS, rows)?),
    };
    let Some(reader) = reader else {
        return Ok(out);
    };
    let mut numbers = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet_io::format_err(path, e))?;
        let mut part = decode(&batch, path, Keysets::ByNumber(&mut numbers))?;
        if out.is_empty() {
            out = part;
        } else {
            out.append(&mut part);
        }
    }
    let found = sets
        .by_numbers(&numbers)
        .map_err(|n| WarehouseError::Schema {
            path: path.to_path_buf(),
            dataset: DATASET,
            message: format!("key set {n} is not in the key set table"),
        })?;
    for (t, k) in out.iter_mut().zip(found) {
        t.keyset = k;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, TimeZone, Utc};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field as PField;

    fn micros(y: i32, m: u32, d: u32, h: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_micros()
    }

    /// A web order's row; `id` ends in `:refund` for its refund.
    fn txn(id: &str, at: i64, base: i128, original: i128, kind: TxnKind) -> Transaction {
        let key = id.strip_suffix(":refund");
        Transaction {
            txn: StoredTxn {
                row: TxnRow {
                    ids: TxnIds::Keyed {
                        refund: key.is_some(),
                    },
                    channel: Channel::Web,
                    occurred_at: at,
                    amount_original: Amount(original),
                    currency: Currency::parse("EUR").unwrap(),
                    amount_base: BaseAmount(base),
                    kind,
                },
                keyset: 0,
                record_key: key.unwrap_or(id).into(),
                source_file: "web/orders-2024.jsonl".into(),
            },
            customer_id: Some("C-1".into()),
            keys: Keys {
                customer_id: Some("C-1".into()),
                email: Some("zoë@exämple.com".into()),
                phone: None,
            },
        }
    }

    /// Writes full rows, as ingest would with their key sets.
    fn write_rows(
        dir: &Path,
        rows: &[Transaction],
        unchanged: Option<Unchanged<'_>>,
    ) -> Result<Written, WarehouseError> {
        let (txns, sets) = keyed(rows);
        write(dir, &txns, &sets, unchanged, &Reread::new())
    }

    /// Rows as read back: their key set index is the reader's.
    fn same(mut a: Vec<Transaction>, mut b: Vec<Transaction>) {
        for t in a.iter_mut().chain(b.iter_mut()) {
            t.txn.keyset = 0;
        }
        assert_eq!(a, b);
    }

    fn sample() -> Vec<Transaction> {
        // An anonymous generic transaction that names the POS channel.
        let mut anon = txn(
            "web:R9",
            micros(2024, 2, 29, 23),
            1_234_567_890_123_456,
            123_456,
            TxnKind::Purchase,
        );
        anon.customer_id = None;
        anon.keys = Keys::default();
        anon.txn.row.channel = Channel::Pos;
        anon.txn.row.ids = TxnIds::Generic {
            hash: 0x00ab_cdef_0123_4567,
            order_id: Some("订单-1".into()),
        };
        anon.txn.record_key = "tx:9f00aa11bb22cc33#2".into();
        anon.txn.row.currency = Currency::parse("CNY").unwrap();
        vec![
            txn(
                "web:W-2",
                micros(2024, 3, 1, 0),
                59_900_000_000_000_000,
                59_900_000,
                TxnKind::Purchase,
            ),
            txn(
                "web:W-1:refund",
                micros(2024, 1, 15, 12),
                -12_345_678_901_234_567,
                -1_234_567,
                TxnKind::Refund,
            ),
            anon,
            txn(
                "web:W-1",
                micros(2024, 1, 15, 12),
                DECIMAL_MAX_UNITS,
                -DECIMAL_MAX_UNITS,
                TxnKind::Purchase,
            ),
            txn(
                "web:W-0",
                micros(1969, 12, 31, 23),
                -DECIMAL_MAX_UNITS,
                1,
                TxnKind::Purchase,
            ),
        ]
    }

    fn sorted(mut v: Vec<Transaction>) -> Vec<Transaction> {
        v.sort_by(|a, b| {
            (a.row.occurred_at, a.transaction_id().to_string())
                .cmp(&(b.row.occurred_at, b.transaction_id().to_string()))
        });
        v
    }

    #[test]
    fn round_trips_through_parquet() {
        let d = tempfile::tempdir().unwrap();
        let rows = sample();
        let st = write_rows(d.path(), &rows, None).unwrap().stats;
        assert_eq!(st.rows, 5);
        same(read(d.path()).unwrap(), sorted(rows.clone()));
        same(from_batch(&to_batch(&rows)).unwrap(), rows);
    }

    #[test]
    fn rows_read_by_key_set_number_equal_rows_read_by_their_keys() {
        let d = tempfile::tempdir().unwrap();
        let (txns, sets) = keyed(&sample());
        write(d.path(), &txns, &sets, None, &Reread::new()).unwrap();
        let state = d.path().join("_state");
        std::fs::create_dir(&state).unwrap();
        let used = vec![true; sets.len()];
        super::super::txn_keysets::write(&state, &sets, &used)
            .unwrap()
            .unwrap();
        let table = super::super::txn_keysets::read(&state).unwrap().unwrap();
        let numbered: Vec<StoredTxn> = read_numbered(d.path(), &table)
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        same(unkeyed(numbered, &table), read(d.path()).unwrap());
        // A table that misses a row's key set cannot stand for the keys.
        let mut partial = TxnKeysets::default();
        partial.intern_stored(sets.keys(0), None);
        let e = read_numbered(d.path(), &partial).unwrap_err().to_string();
        assert!(e.contains("is not in the key set table"), "{e}");
    }

    #[test]
    fn only_changed_months_are_written_and_the_others_linked() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (previous, next) = (d.path().join("previous"), d.path().join("next"));
        let rows = sample();
        write_rows(&previous, &rows, None).unwrap();
        // Tonight: a February row moves to another customer, the March rows
        // are replaced by nothing; January and December 1969 stay as they were.
        let feb = (2024, 2);
        let mut tonight: Vec<Transaction> = rows
            .iter()
            .filter(|t| month_of(t.row.occurred_at) != (2024, 3))
            .cloned()
            .collect();
        for t in tonight
            .iter_mut()
            .filter(|t| month_of(t.row.occurred_at) == feb)
        {
            t.customer_id = Some("C-NEW".into());
        }
        let changed = [feb, (2024, 3)].into_iter().collect();
        let unchanged = Unchanged::of(&previous, &changed).unwrap();
        let w = write_rows(&next, &tonight, unchanged).unwrap();
        assert_eq!((w.stats.files, w.months, w.shared_months), (1, 1, 2));
        same(read(&next).unwrap(), sorted(tonight));
        let part = |dir: &Path, month: &str| {
            std::fs::metadata(dir.join(month).join(parquet_io::part_name(0)))
                .map(|m| m.ino())
                .ok()
        };
        for month in ["month=1969-12", "month=2024-01"] {
            assert_eq!(part(&next, month), part(&previous, month), "{month} shared");
        }
        assert_ne!(
            part(&next, "month=2024-02"),
            part(&previous, "month=2024-02")
        );
        assert_eq!(
            part(&next, "month=2024-03"),
            None,
            "an emptied month is gone"
        );
    }

    #[test]
    fn partitions_by_utc_month_with_sorted_rows() {
        let d = tempfile::tempdir().unwrap();
        let st = write_rows(d.path(), &sample(), None).unwrap().stats;
        let mut folders: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        assert_eq!(
            folders,
            [
                "month=1969-12",
                "month=2024-01",
                "month=2024-02",
                "month=2024-03"
            ]
        );
        assert_eq!(st.files, 4);
        let jan = read(&d.path().join("month=2024-01")).unwrap();
        let ids: Vec<String> = jan.iter().map(|t| t.transaction_id().to_string()).collect();
        assert_eq!(ids, ["web:W-1", "web:W-1:refund"]);
        for f in folders {
            let entries: Vec<String> = std::fs::read_dir(d.path().join(&f))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(
                entries,
                ["part-00000.parquet"],
                "{f}: no temp files, one part"
            );
        }
    }

    #[test]
    fn a_transaction_id_that_its_record_key_does_not_give_is_refused() {
        let batch = to_batch(&sample());
        let mut columns = batch.columns().to_vec();
        let ids: arrow_array::StringArray = (0..batch.num_rows())
            .map(|i| Some(if i == 0 { "web:W-9" } else { "web:W-1" }))
            .collect();
        columns[0] = Arc::new(ids);
        let bad = RecordBatch::try_new(schema(), columns).unwrap();
        let e = from_batch(&bad).unwrap_err().to_string();
        assert!(
            e.contains(r#"transaction "web:W-9" (source id Some("W-2"), order id Some("W-2")) does not match its record key "web:W-2""#),
            "{e}"
        );
    }

    #[test]
    fn empty_or_missing_folder_reads_as_no_rows() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(&d.path().join("missing")).unwrap().is_empty());
        let st = write_rows(&d.path().join("empty"), &[], None)
            .unwrap()
            .stats;
        assert_eq!(st, parquet_io::WriteStats::default());
        assert!(read(&d.path().join("empty")).unwrap().is_empty());
    }

    #[test]
    fn amounts_beyond_decimal128_38_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let big = txn("x", 0, DECIMAL_MAX_UNITS + 1, 0, TxnKind::Purchase);
        let err = write_rows(d.path(), &[big], None).unwrap_err();
        assert!(err.to_string().contains("Decimal128(38)"), "{err}");
    }

    #[test]
    fn outside_reader_sees_plain_columns() {
        let d = tempfile::tempdir().unwrap();
        let t = txn(
            "web:W-7",
            micros(2024, 5, 1, 8),
            8_386_000_000_000_001,
            59_900_000,
            TxnKind::Purchase,
        );
        write_rows(d.path(), &[t], None).unwrap();
        let file = std::fs::File::open(d.path().join("month=2024-05/part-00000.parquet")).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let meta = reader.metadata().file_metadata();
        assert!(meta.created_by().unwrap().starts_with("cvm"));
        let names: Vec<&str> = meta
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        let schema = schema();
        let expected: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, expected);
        assert!(!names.contains(&"month"));
        let row = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
        let cols: Vec<(String, PField)> = row
            .get_column_iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect();
        let get = |n: &str| {
            cols.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("transaction_id"), PField::Str("web:W-7".into()));
        assert_eq!(get("kind"), PField::Str("purchase".into()));
        assert_eq!(get("customer_id"), PField::Str("C-1".into()));
        assert_eq!(get("order_id"), PField::Str("W-7".into()));
        match get("amount_base") {
            PField::Decimal(dec) => {
                assert_eq!((dec.precision(), dec.scale()), (38, 16));
                assert_eq!(get("amount_base").to_string(), "0.8386000000000001");
            }
            other => panic!("amount_base is {other:?}"),
        }
        assert_eq!(get("amount_original").to_string(), "59.900000");
        match get("occurred_at") {
            PField::TimestampMicros(us) => assert_eq!(us, micros(2024, 5, 1, 8)),
            other => panic!("occurred_at is {other:?}"),
        }
    }

    #[test]
    fn wrong_column_type_is_named() {
        use arrow_array::{ArrayRef, Int64Array};
        let b = to_batch(&sample());
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        cols[5] = Arc::new(Int64Array::from(vec![0i64; b.num_rows()]));
        fields[5] = Field::new("occurred_at", DataType::Int64, false);
        let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let err = from_batch(&bad).unwrap_err();
        assert!(
            err.to_string().contains("\"occurred_at\" is Int64"),
            "{err}"
        );
    }

    #[test]
    fn month_arithmetic_matches_chrono() {
        for days in (-800_000i64..800_000).step_by(7) {
            let at = days * 86_400_000_000 + 3_600_000_000;
            let date = NaiveDate::from_epoch_days(days as i32).unwrap();
            assert_eq!(month_of(at), (date.year() as i64, date.month()), "{days}");
        }
        assert_eq!(month_partition(-1), "month=1969-12");
        assert_eq!(month_partition(0), "month=1970-01");
    }

    /// Throughput check: `CVM_BENCH_ROWS=10000000 cargo test --release ... -- --ignored`.
    #[test]
    #[ignore]
    fn writes_and_reads_many_rows() {
        let n: usize = std::env::var("CVM_BENCH_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let base = micros(2023, 1, 1, 0);
        let rows: Vec<Transaction> = (0..n)
            .map(|i| {
                let mut t = txn(
                    &format!("tx:{i:016x}"),
                    base + (i as i64 % 400) * 86_400_000_000 + i as i64,
                    0,
                    0,
                    TxnKind::Purchase,
                );
                t.txn.row.amount_original = Amount(i as i128 * 10_000);
                t.txn.row.amount_base = BaseAmount(i as i128 * 1_234_567_890);
                t.customer_id = Some(format!("C-{}", i % 50_000).into());
                t
            })
            .collect();
        let d = tempfile::tempdir().unwrap();
        let t0 = std::time::Instant::now();
        let st = write_rows(d.path(), &rows, None).unwrap().stats;
        let t1 = t0.elapsed();
        let back = read(d.path()).unwrap();
        let t2 = t0.elapsed() - t1;
        eprintln!(
            "{n} rows: write {t1:?} ({} files, {} MiB), read {t2:?}",
            st.files,
            st.bytes >> 20
        );
        assert_eq!(back.len(), n);
        same(back, sorted(rows));
    }
}
