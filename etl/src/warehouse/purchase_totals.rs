//! `_state/purchase_totals.parquet`: one row per customer with transactions,
//! the totals of all of them that any later day's scores need (how many,
//! net revenue, purchase occasions, first and last occasion day, the sum of
//! the repeat occasions' values, the latest transaction's time, a filter
//! of the orders holding a refund). Written by
//! ingest beside the transactions it sums; read by `score`. Internal state:
//! its columns may change between versions of cvm, and a version without it
//! is scored from its transactions.
//!
//! A night sums a few thousand of a million customers again, so it writes
//! theirs alone, as `purchase_totals-delta.parquet` beside the table it
//! shares with the version before: the delta's rows stand for the table's
//! of the same customer (a row of no transactions removes one), and hold
//! every change since the table was written whole; once the delta outgrows
//! an eighth of the table, the night writes the table whole again.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow_array::types::{Date32Type, Float64Type, UInt64Type};
use arrow_array::{ArrayRef, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cvm_shared::BaseAmount;

use super::WarehouseError;
use super::parquet_io::{
    self, Columns, DECIMAL_MAX_UNITS, DECIMAL_PRECISION, UTC, WriteStats, chunks, decimal_array,
    opt_timestamp_array, opt_value, utf8_array, write_batches, writer_properties_with,
};

/// Dataset name used in errors.
pub const DATASET: &str = "purchase totals";
/// File name of the purchase totals inside `_state/`.
pub const FILE: &str = "purchase_totals.parquet";
/// File name of the customers summed again since the table was written whole.
pub const DELTA_FILE: &str = "purchase_totals-delta.parquet";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let scale = BaseAmount::SCALE as i8;
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("transactions", DataType::UInt64, false),
        Field::new(
            "revenue",
            DataType::Decimal128(DECIMAL_PRECISION, scale),
            false,
        ),
        Field::new("orders", DataType::UInt64, true),
        Field::new("first_day", DataType::Date32, true),
        Field::new("last_day", DataType::Date32, true),
        Field::new("repeat_sum", DataType::Float64, false),
        Field::new(
            "last_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            true,
        ),
        Field::new("refunded_orders", DataType::UInt64, false),
    ]))
});

/// The Arrow schema of the purchase totals.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// One customer's purchase totals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurchaseTotalsRow<S> {
    /// The customer.
    pub customer_id: S,
    /// Transactions counted.
    pub transactions: u64,
    /// Net sum of purchases and refunds (base currency units).
    pub revenue: i128,
    /// Purchase occasions; `None` when they could not be summarised.
    pub orders: Option<u64>,
    /// UTC day number of the first occasion.
    pub first_day: Option<i32>,
    /// UTC day number of the last occasion.
    pub last_day: Option<i32>,
    /// Sum of the repeat occasions' values, in day order.
    pub repeat_sum: f64,
    /// The latest transaction's time (microseconds).
    pub last_at: Option<i64>,
    /// A bit per order holding a refund (a filter: see `scoring::totals`).
    pub refunded_orders: u64,
}

impl<S> PurchaseTotalsRow<S> {
    /// The row of a customer without transactions (in a delta: one whose
    /// stored row goes).
    pub fn none(customer_id: S) -> PurchaseTotalsRow<S> {
        PurchaseTotalsRow {
            customer_id,
            transactions: 0,
            revenue: 0,
            orders: None,
            first_day: None,
            last_day: None,
            repeat_sum: 0.0,
            last_at: None,
            refunded_orders: 0,
        }
    }

    /// The same totals under `customer_id` (say, owned instead of borrowed).
    pub fn with_id<T>(&self, customer_id: T) -> PurchaseTotalsRow<T> {
        PurchaseTotalsRow {
            customer_id,
            transactions: self.transactions,
            revenue: self.revenue,
            orders: self.orders,
            first_day: self.first_day,
            last_day: self.last_day,
            repeat_sum: self.repeat_sum,
            last_at: self.last_at,
            refunded_orders: self.refunded_orders,
        }
    }
}

fn build<S: AsRef<str>>(rows: &[PurchaseTotalsRow<S>]) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        utf8_array(rows.iter().map(|r| r.customer_id.as_ref())),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.iter().map(|r| r.transactions),
        )),
        decimal_array(rows.iter().map(|r| r.revenue), BaseAmount::SCALE as i8),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter(
            rows.iter().map(|r| r.orders),
        )),
        Arc::new(PrimitiveArray::<Date32Type>::from_iter(
            rows.iter().map(|r| r.first_day),
        )),
        Arc::new(PrimitiveArray::<Date32Type>::from_iter(
            rows.iter().map(|r| r.last_day),
        )),
        Arc::new(PrimitiveArray::<Float64Type>::from_iter_values(
            rows.iter().map(|r| r.repeat_sum),
        )),
        opt_timestamp_array(rows.iter().map(|r| r.last_at)),
        Arc::new(PrimitiveArray::<UInt64Type>::from_iter_values(
            rows.iter().map(|r| r.refunded_orders),
        )),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Writes `rows` (sorted by customer id) to `dir/purchase_totals.parquet`
/// (`dir` is the `_state` folder), atomically. Returns `None`, writing
/// nothing, when a revenue does not fit the decimal column: readers then
/// find no totals and sum the transactions themselves.
pub fn write<S: AsRef<str>>(
    dir: &Path,
    rows: &[PurchaseTotalsRow<S>],
) -> Result<Option<WriteStats>, WarehouseError> {
    if rows.iter().any(too_big) {
        return Ok(None);
    }
    write_file(&dir.join(FILE), rows).map(Some)
}

/// Writes `rows` to `path`, atomically.
fn write_file<S: AsRef<str>>(
    path: &Path,
    rows: &[PurchaseTotalsRow<S>],
) -> Result<WriteStats, WarehouseError> {
    write_batches(
        path,
        &schema(),
        &properties(),
        chunks(rows.len()).map(|r| build(&rows[r])),
    )
}

/// Writes `to/purchase_totals.parquet` from `from/purchase_totals.parquet`
/// (both `_state` folders), a batch at a time, so neither is ever held: the
/// stored rows of the customers `replaced` does not pick, merged by
/// customer id with `rows` (sorted by it). The stored rows must be sorted
/// by customer id, as [`write`] leaves them: when they are not (`erase`
/// rewrites ids in place), [`WarehouseError::Unsorted`], and nothing is
/// written. Returns `None`, writing nothing, as [`write`] does.
pub fn merge_over<S: AsRef<str>>(
    from: &Path,
    to: &Path,
    replaced: impl Fn(&str) -> bool,
    rows: &[PurchaseTotalsRow<S>],
) -> Result<Option<WriteStats>, WarehouseError> {
    if rows.iter().any(too_big) {
        return Ok(None);
    }
    let next = std::cell::Cell::new(0usize);
    let mut order = parquet_io::KeyOrder::of("customer_id");
    let stored = parquet_io::read_batches(&from.join(FILE))?.map(|item| {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut at = next.get();
        for r in rows_of(&c, batch.num_rows())? {
            order.check(r.customer_id, &file)?;
            while let Some(new) = rows
                .get(at)
                .filter(|n| n.customer_id.as_ref() < r.customer_id)
            {
                out.push(new.with_id(new.customer_id.as_ref()));
                at += 1;
            }
            if !replaced(r.customer_id) {
                out.push(r);
            }
        }
        next.set(at);
        Ok(build(&out))
    });
    let rest = std::iter::once(()).flat_map(|()| {
        let rest = &rows[next.get()..];
        chunks(rest.len()).map(|r| Ok(build(&rest[r])))
    });
    write_batches(&to.join(FILE), &schema(), &properties(), stored.chain(rest)).map(Some)
}

/// Writes a night's totals into `to` from `from` (both `_state` folders):
/// `rows` (sorted by customer id: the customers summed again, those
/// `summed` picks) over the stored delta as the new delta, a customer
/// summed without a row (no transactions left) as a row of none, the table
/// linked; once that delta outgrows an eighth of the table, the table
/// merged whole ([`merge_over`]). Returns `None`, writing nothing, as
/// [`write`] does; [`WarehouseError::Unsorted`] as [`merge_over`] does.
pub fn write_over<S: AsRef<str>>(
    from: &Path,
    to: &Path,
    summed: &rustc_hash::FxHashSet<Box<str>>,
    rows: &[PurchaseTotalsRow<S>],
) -> Result<Option<WriteStats>, WarehouseError> {
    if rows.iter().any(too_big) {
        return Ok(None);
    }
    let mut delta: Vec<PurchaseTotalsRow<Box<str>>> = Vec::new();
    let stored_delta = from.join(DELTA_FILE);
    if stored_delta.exists() {
        read_file(&stored_delta, |r| {
            if !summed.contains(r.customer_id) {
                delta.push(r.with_id(r.customer_id.into()));
            }
        })?;
    }
    delta.extend(
        rows.iter()
            .map(|r| r.with_id(r.customer_id.as_ref().into())),
    );
    let with_row: rustc_hash::FxHashSet<&str> =
        rows.iter().map(|r| r.customer_id.as_ref()).collect();
    let gone = summed.iter().filter(|id| !with_row.contains(&***id));
    delta.extend(gone.map(|id| PurchaseTotalsRow::none(id.clone())));
    drop(with_row);
    delta.sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let base = from.join(FILE);
    let base_rows = parquet_io::row_count(&base)?.unwrap_or(0);
    if delta.len() * super::state::MERGE_RATIO > base_rows {
        let ids: rustc_hash::FxHashSet<&str> = delta.iter().map(|r| &*r.customer_id).collect();
        let live: Vec<PurchaseTotalsRow<&str>> = delta
            .iter()
            .filter(|r| r.transactions > 0)
            .map(|r| r.with_id(&*r.customer_id))
            .collect();
        return merge_over(from, to, |id| ids.contains(id), &live);
    }
    let link = to.join(FILE);
    parquet_io::link_or_copy(&base, &link).map_err(|e| parquet_io::io_err(&link, e))?;
    write_file(&to.join(DELTA_FILE), &delta).map(Some)
}

/// Whether a row's revenue does not fit the decimal column.
fn too_big<S>(r: &PurchaseTotalsRow<S>) -> bool {
    r.revenue.abs() > DECIMAL_MAX_UNITS
}

fn properties() -> parquet::file::properties::WriterProperties {
    writer_properties_with(&[], &["customer_id"])
}

/// Whether `dir/purchase_totals.parquet` exists with this cvm's columns: a
/// night that reads only part of the history needs the stored totals of the
/// customers it does not touch.
pub fn usable(dir: &Path) -> bool {
    parquet_io::has_schema(&dir.join(FILE), &schema())
}

/// Calls `each` with every row of `dir/purchase_totals.parquet` with its
/// delta over it: the table's rows of the customers the delta leaves alone,
/// then the delta's rows of customers with transactions; `false` when the
/// table does not exist.
pub fn read_each(
    dir: &Path,
    each: impl FnMut(PurchaseTotalsRow<&str>),
) -> Result<bool, WarehouseError> {
    read_over(dir, None::<fn(&str) -> bool>, each)
}

/// Calls `each` with the rows [`read_each`] gives of the customers `wanted`
/// picks, reading of the table only its `customer_id` column and their
/// rows (a night wants a few thousand of a million); `false` when the
/// table does not exist.
pub fn read_picked(
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
    each: impl FnMut(PurchaseTotalsRow<&str>),
) -> Result<bool, WarehouseError> {
    read_over(dir, Some(wanted), each)
}

/// [`read_each`] of every customer, or [`read_picked`] of those `wanted` picks.
fn read_over(
    dir: &Path,
    wanted: Option<impl Fn(&str) -> bool>,
    mut each: impl FnMut(PurchaseTotalsRow<&str>),
) -> Result<bool, WarehouseError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(false);
    }
    let delta = read_delta(dir)?;
    let over: rustc_hash::FxHashSet<&str> = delta.iter().map(|r| &*r.customer_id).collect();
    let wants = |id: &str| wanted.as_ref().is_none_or(|w| w(id));
    if wanted.is_none() {
        read_file(&path, |r| {
            if !over.contains(r.customer_id) {
                each(r);
            }
        })?;
    } else {
        let mut picked: Vec<u32> = Vec::new();
        let mut at = 0u32;
        parquet_io::for_each_projected(&path, &["customer_id"], DATASET, |c, n| {
            let ids = c.utf8("customer_id", true)?;
            picked.extend(
                (0..n as u32)
                    .filter(|&i| {
                        let id = ids.value(i as usize);
                        wants(id) && !over.contains(id)
                    })
                    .map(|i| at + i),
            );
            at += n as u32;
            Ok(())
        })?;
        if !picked.is_empty() {
            let schema = schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            for batch in parquet_io::open_rows(&path, &names, &picked)? {
                let batch = batch.map_err(|e| parquet_io::format_err(&path, e))?;
                let c = Columns::new(&batch, &path, DATASET);
                rows_of(&c, batch.num_rows())?
                    .into_iter()
                    .for_each(&mut each);
            }
        }
    }
    for r in delta
        .iter()
        .filter(|r| r.transactions > 0 && wants(&r.customer_id))
    {
        each(r.with_id(&*r.customer_id));
    }
    Ok(true)
}

/// The rows of `dir`'s delta, if any.
fn read_delta(dir: &Path) -> Result<Vec<PurchaseTotalsRow<Box<str>>>, WarehouseError> {
    let mut delta = Vec::new();
    let path = dir.join(DELTA_FILE);
    if path.exists() {
        read_file(&path, |r| delta.push(r.with_id(r.customer_id.into())))?;
    }
    Ok(delta)
}

/// Calls `each` with every row of the file `path`.
fn read_file(
    path: &Path,
    mut each: impl FnMut(PurchaseTotalsRow<&str>),
) -> Result<(), WarehouseError> {
    for item in parquet_io::read_batches(path)? {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        rows_of(&c, batch.num_rows())?
            .into_iter()
            .for_each(&mut each);
    }
    Ok(())
}

/// The rows of one batch, borrowing its text.
fn rows_of<'a>(
    c: &Columns<'a>,
    n: usize,
) -> Result<Vec<PurchaseTotalsRow<&'a str>>, WarehouseError> {
    let customer_id = c.utf8("customer_id", true)?;
    let transactions = c.uint64("transactions", true)?;
    let revenue = c.decimal128("revenue", BaseAmount::SCALE as i8, true)?;
    let orders = c.uint64("orders", false)?;
    let first_day = c.date32("first_day", false)?;
    let last_day = c.date32("last_day", false)?;
    let repeat_sum = c.float64("repeat_sum", true)?;
    let last_at = c.timestamp_us("last_at", false)?;
    let refunded_orders = c.uint64("refunded_orders", true)?;
    Ok((0..n)
        .map(|i| PurchaseTotalsRow {
            customer_id: customer_id.value(i),
            transactions: transactions.value(i),
            revenue: revenue.value(i),
            orders: opt_value(orders, i),
            first_day: opt_value(first_day, i),
            last_day: opt_value(last_day, i),
            repeat_sum: repeat_sum.value(i),
            last_at: opt_value(last_at, i),
            refunded_orders: refunded_orders.value(i),
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip_to_the_bit() {
        let d = tempfile::tempdir().unwrap();
        let rows = [
            PurchaseTotalsRow {
                customer_id: "C1",
                transactions: 3,
                revenue: -12_345_678_901_234_567_890,
                orders: Some(2),
                first_day: Some(-3),
                last_day: Some(19_000),
                repeat_sum: 0.1 + 0.2,
                last_at: Some(1_700_000_000_000_001),
                refunded_orders: 1 << 63 | 5,
            },
            PurchaseTotalsRow {
                transactions: 1,
                ..PurchaseTotalsRow::none("G-ab")
            },
        ];
        let st = write(d.path(), &rows).unwrap().unwrap();
        assert_eq!((st.files, st.rows), (1, 2));
        let print = |r: &PurchaseTotalsRow<&str>| format!("{r:?} {:x}", r.repeat_sum.to_bits());
        let mut got = Vec::new();
        assert!(read_each(d.path(), |r| got.push(print(&r))).unwrap());
        assert_eq!(got, rows.iter().map(print).collect::<Vec<_>>());
    }

    #[test]
    fn a_missing_file_says_so_and_a_revenue_too_large_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(!read_each(d.path(), |_| {}).unwrap());
        let row = PurchaseTotalsRow {
            customer_id: "C1",
            transactions: 1,
            revenue: DECIMAL_MAX_UNITS + 1,
            orders: Some(1),
            first_day: Some(1),
            last_day: Some(1),
            repeat_sum: 0.0,
            last_at: Some(1),
            refunded_orders: 0,
        };
        assert!(write(d.path(), &[row]).unwrap().is_none());
        assert!(!d.path().join(FILE).exists());
    }

    #[test]
    fn totals_are_usable_only_when_readable_with_these_columns() {
        let d = tempfile::tempdir().unwrap();
        assert!(!usable(d.path()));
        std::fs::write(d.path().join(FILE), "not parquet").unwrap();
        assert!(!usable(d.path()));
        let row = PurchaseTotalsRow {
            customer_id: "C1",
            transactions: 1,
            revenue: 1,
            orders: Some(1),
            first_day: Some(1),
            last_day: Some(1),
            repeat_sum: 0.0,
            last_at: Some(1),
            refunded_orders: 0,
        };
        write(d.path(), &[row]).unwrap().unwrap();
        assert!(usable(d.path()));
        // Another cvm's columns.
        let other = Arc::new(Schema::new(schema().fields()[..2].to_vec()));
        let batch =
            RecordBatch::try_new(other.clone(), build(&[row]).columns()[..2].to_vec()).unwrap();
        write_batches(
            &d.path().join(FILE),
            &other,
            &writer_properties_with(&[], &[]),
            std::iter::once(batch),
        )
        .unwrap();
        assert!(!usable(d.path()));
    }

    fn totals(id: &str, transactions: u64) -> PurchaseTotalsRow<&str> {
        PurchaseTotalsRow {
            customer_id: id,
            transactions,
            revenue: 100,
            orders: Some(1),
            first_day: Some(1),
            last_day: Some(2),
            repeat_sum: 0.0,
            last_at: Some(3),
            refunded_orders: 0,
        }
    }

    fn ids_and_counts(dir: &Path) -> Vec<(String, u64)> {
        let mut got = Vec::new();
        read_each(dir, |r| {
            got.push((r.customer_id.to_owned(), r.transactions))
        })
        .unwrap();
        got
    }

    #[test]
    fn merging_over_keeps_the_untouched_rows_and_puts_the_new_ones_in_order() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(
            from.path(),
            &[totals("A", 1), totals("C", 1), totals("E", 1)],
        )
        .unwrap();
        // C and E are touched: C summed again, E has no transactions left.
        let new = [totals("B", 2), totals("C", 2), totals("F", 2)];
        let touched = |id: &str| ["B", "C", "E", "F"].contains(&id);
        let st = merge_over(from.path(), to.path(), touched, &new)
            .unwrap()
            .unwrap();
        assert_eq!(st.rows, 4);
        let want = [("A", 1), ("B", 2), ("C", 2), ("F", 2)];
        let want: Vec<(String, u64)> = want.iter().map(|(i, n)| (i.to_string(), *n)).collect();
        assert_eq!(ids_and_counts(to.path()), want);
    }

    #[test]
    fn a_night_writes_the_customers_summed_again_as_a_delta_over_the_shared_table() {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let ids: Vec<String> = (0..32).map(|i| format!("C{i:02}")).collect();
        let base: Vec<_> = ids.iter().map(|id| totals(id, 1)).collect();
        write(dirs[0].path(), &base).unwrap();
        let summed = |ids: &[&str]| -> rustc_hash::FxHashSet<Box<str>> {
            ids.iter().map(|&id| Box::from(id)).collect()
        };
        // Night 1: C01 summed again, C02 has no transactions left, D is new.
        let rows = [totals("C01", 5), totals("D", 1)];
        let night = summed(&["C01", "C02", "D"]);
        write_over(dirs[0].path(), dirs[1].path(), &night, &rows)
            .unwrap()
            .unwrap();
        let delta = dirs[1].path().join(DELTA_FILE);
        assert_eq!(parquet_io::row_count(&delta).unwrap(), Some(3));
        let mut want: Vec<(String, u64)> = ids
            .iter()
            .filter(|id| *id != "C02")
            .map(|id| (id.clone(), if id == "C01" { 5 } else { 1 }))
            .chain([("D".to_string(), 1)])
            .collect();
        let sorted = |mut v: Vec<(String, u64)>| {
            v.sort();
            v
        };
        want = sorted(want);
        assert_eq!(sorted(ids_and_counts(dirs[1].path())), want);
        // Night 2 sums nobody: the delta keeps night 1's rows.
        let none: [PurchaseTotalsRow<&str>; 0] = [];
        write_over(dirs[1].path(), dirs[2].path(), &summed(&[]), &none)
            .unwrap()
            .unwrap();
        let delta = dirs[2].path().join(DELTA_FILE);
        assert_eq!(parquet_io::row_count(&delta).unwrap(), Some(3));
        assert_eq!(sorted(ids_and_counts(dirs[2].path())), want);
        // A delta past an eighth of the table: the table whole, no delta.
        let busy: Vec<_> = ["C03", "C04"].iter().map(|id| totals(id, 7)).collect();
        write_over(
            dirs[2].path(),
            dirs[3].path(),
            &summed(&["C03", "C04"]),
            &busy,
        )
        .unwrap()
        .unwrap();
        assert!(!dirs[3].path().join(DELTA_FILE).exists());
        let whole = ids_and_counts(dirs[3].path());
        assert_eq!(whole.len(), 32);
        assert!(whole.is_sorted(), "the table whole is sorted by id");
        let want: Vec<(String, u64)> = want
            .into_iter()
            .map(|(id, n)| (id.clone(), if id == "C03" || id == "C04" { 7 } else { n }))
            .collect();
        assert_eq!(whole, want);
    }

    #[test]
    fn picked_rows_are_the_rows_of_the_picked_customers_with_the_delta_over_them() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ids: Vec<String> = (0..40).map(|i| format!("C{i:02}")).collect();
        let base: Vec<_> = ids.iter().map(|id| totals(id, 1)).collect();
        write(from.path(), &base).unwrap();
        // C05 summed again, C06 without transactions now, D new: a delta.
        let night: rustc_hash::FxHashSet<Box<str>> = ["C05", "C06", "D"]
            .iter()
            .map(|&id| Box::from(id))
            .collect();
        write_over(
            from.path(),
            to.path(),
            &night,
            &[totals("C05", 4), totals("D", 2)],
        )
        .unwrap()
        .unwrap();
        assert!(to.path().join(DELTA_FILE).exists());
        let wanted = |id: &str| ["C01", "C05", "C06", "C39", "D", "E"].contains(&id);
        let mut got = Vec::new();
        assert!(
            read_picked(to.path(), wanted, |r| got
                .push((r.customer_id.to_owned(), r.transactions)))
            .unwrap()
        );
        got.sort();
        let mut want = Vec::new();
        read_each(to.path(), |r| {
            if wanted(r.customer_id) {
                want.push((r.customer_id.to_owned(), r.transactions));
            }
        })
        .unwrap();
        want.sort();
        assert_eq!(got, want);
        let names: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(names, ["C01", "C05", "C39", "D"]);
        assert!(!read_picked(from.path().join("none").as_path(), wanted, |_| {}).unwrap());
    }

    #[test]
    fn merging_over_refuses_stored_rows_out_of_order_and_writes_nothing() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(from.path(), &[totals("C", 1), totals("A", 1)]).unwrap();
        let err = merge_over(from.path(), to.path(), |_| false, &[totals("B", 1)]).unwrap_err();
        assert!(
            err.to_string().contains("not sorted by customer_id"),
            "{err}"
        );
        assert!(!to.path().join(FILE).exists());
    }
}
