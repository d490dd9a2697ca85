//! `_state/purchase_totals.parquet`: one row per customer with transactions,
//! the totals of all of them that any later day's scores need (how many,
//! net revenue, purchase occasions, first and last occasion day, the sum of
//! the repeat occasions' values, the latest transaction's time). Written by
//! ingest beside the transactions it sums; read by `score`. Internal state:
//! its columns may change between versions of cvm, and a version without it
//! is scored from its transactions.

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
}

impl<S> PurchaseTotalsRow<S> {
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
    write_batches(
        &dir.join(FILE),
        &schema(),
        &properties(),
        chunks(rows.len()).map(|r| build(&rows[r])),
    )
    .map(Some)
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

/// Calls `each` with every row of `dir/purchase_totals.parquet`; `false`
/// when the file does not exist.
pub fn read_each(
    dir: &Path,
    mut each: impl FnMut(PurchaseTotalsRow<&str>),
) -> Result<bool, WarehouseError> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(false);
    }
    for item in parquet_io::read_batches(&path)? {
        let (file, batch) = item?;
        let c = Columns::new(&batch, &file, DATASET);
        rows_of(&c, batch.num_rows())?
            .into_iter()
            .for_each(&mut each);
    }
    Ok(true)
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
            },
            PurchaseTotalsRow {
                customer_id: "G-ab",
                transactions: 1,
                revenue: 0,
                orders: None,
                first_day: None,
                last_day: None,
                repeat_sum: 0.0,
                last_at: None,
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
