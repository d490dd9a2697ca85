//! Transactions to per-customer facts: the customers known on a day, their
//! transactions read from the published warehouse (only the columns scoring
//! needs), and each customer's summary statistics (`scoring.md`, "Summary
//! statistics"). Scoring works on [`Facts`] from here on; only `evaluate` looks
//! at the transactions again, for the holdout occasions.

use rustc_hash::FxHashMap as HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use cvm_shared::BaseAmount;
use cvm_shared::identity::stable_hash;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;

use super::totals::CustomerTotals;
use crate::models::summary::{self, Period};
use crate::warehouse::{self, WarehouseError};

/// A transaction reduced to what scoring needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tx {
    customer: u32,
    at: i64,
    amount: i128,
    refund: bool,
    order: u64,
}

impl Tx {
    /// Customer number `customer`'s purchase or refund at `at`
    /// (microseconds) of `amount` base units, in order `order` if any.
    pub(crate) fn new(
        customer: u32,
        at: i64,
        amount: i128,
        refund: bool,
        order: Option<&str>,
    ) -> Tx {
        Tx {
            customer,
            at,
            amount,
            refund,
            order: order.map_or(0, |o| stable_hash(o.as_bytes()) | 1),
        }
    }

    /// When it happened (microseconds).
    pub(crate) fn at(&self) -> i64 {
        self.at
    }

    /// Its customer's number.
    pub(crate) fn customer(&self) -> u32 {
        self.customer
    }

    /// Whether it is a refund.
    pub(crate) fn is_refund(&self) -> bool {
        self.refund
    }

    /// Its order's bit in a 64-bit filter of orders (see
    /// [`CustomerTotals`]'s `refunded_orders`); 0 without an order.
    pub(crate) fn order_bit(&self) -> u64 {
        // The hash's low bit is always set: the top six bits pick.
        if self.order == 0 {
            0
        } else {
            1 << (self.order >> 58)
        }
    }

    /// The order every reader of transactions sorts them in: by customer,
    /// then time. Sums of a day's purchases follow it, so it is part of the
    /// scores' exact bits.
    pub(crate) fn sort_key(&self) -> (u32, i64, bool, i128) {
        (self.customer, self.at, self.refund, self.amount)
    }
}

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// The UTC day number of a timestamp in microseconds.
pub(crate) fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

/// The first microsecond after UTC day `day`: the exclusive end of "up to and including `day`".
pub(crate) fn end_of_day(day: i64) -> i64 {
    (day + 1) * DAY_MICROS
}

/// Reads the transactions of customers in `index` up to `end` (exclusive),
/// only the columns scoring needs.
fn read_transactions(
    dir: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
) -> Result<Vec<Tx>, WarehouseError> {
    let files = warehouse::parquet_io::list_parquet_files(dir)?;
    let per_file: Vec<Vec<Tx>> = files
        .par_iter()
        .map(|path| {
            let err = |e: parquet::errors::ParquetError| WarehouseError::Format {
                path: path.clone(),
                message: e.to_string(),
            };
            let file = std::fs::File::open(path).map_err(|source| WarehouseError::Io {
                path: path.clone(),
                source,
            })?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
            let names = [
                "customer_id",
                "occurred_at",
                "amount_base",
                "kind",
                "order_id",
            ];
            let mask = ProjectionMask::columns(b.parquet_schema(), names);
            let reader = b
                .with_projection(mask)
                .with_batch_size(65_536)
                .build()
                .map_err(err)?;
            let mut out = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| WarehouseError::Format {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                decode_batch(&batch, path, index, end, &mut out)?;
            }
            Ok(out)
        })
        .collect::<Result<_, WarehouseError>>()?;
    Ok(per_file.into_iter().flatten().collect())
}

fn decode_batch(
    batch: &RecordBatch,
    path: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
    out: &mut Vec<Tx>,
) -> Result<(), WarehouseError> {
    let bad = |m: &str| WarehouseError::Schema {
        path: path.to_path_buf(),
        dataset: "transactions",
        message: m.to_string(),
    };
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .ok_or_else(|| bad(&format!("no column {n:?}")))
    };
    let customer = col("customer_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("customer_id is not Utf8"))?;
    let at = col("occurred_at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| bad("occurred_at is not a timestamp"))?;
    let amount = col("amount_base")?
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| bad("amount_base is not a decimal"))?;
    let kind = col("kind")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("kind is not Utf8"))?;
    let order = col("order_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("order_id is not Utf8"))?;
    for i in 0..batch.num_rows() {
        if customer.is_null(i) || at.value(i) >= end {
            continue;
        }
        let Some(&c) = index.get(customer.value(i)) else {
            continue;
        };
        out.push(Tx::new(
            c,
            at.value(i),
            amount.value(i),
            kind.value(i) == "refund",
            (!order.is_null(i)).then(|| order.value(i)),
        ));
    }
    Ok(())
}

/// Per-customer facts before the models.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// Summary statistics; `None` when the occasions could not be summarised.
    pub(crate) summary: Option<summary::CustomerSummary>,
    /// Net sum of purchases and refunds, exact (base currency units).
    pub(crate) total_revenue: i128,
}

impl Facts {
    /// (frequency, recency, T) of a purchaser, the BG/NBD inputs.
    pub(crate) fn xtt(&self) -> Option<(f64, f64, f64)> {
        self.summary.and_then(|s| s.xtt())
    }
}

/// The ids of the customers known before `end` (microseconds) in a warehouse version.
pub(crate) fn known_customers(
    version_dir: &Path,
    end: i64,
) -> Result<Vec<Box<str>>, WarehouseError> {
    warehouse::customers::read_known(&version_dir.join("customers"), end)
}

/// Numbers customers in their order (the index [`Ledger::read`] groups by).
pub(crate) fn customer_index(customers: &[Box<str>]) -> HashMap<&str, u32> {
    customers
        .iter()
        .enumerate()
        .map(|(i, c)| (&**c, i as u32))
        .collect()
}

/// The transactions of the indexed customers, grouped by customer and sorted by time.
pub(crate) struct Ledger {
    txs: Vec<Tx>,
    bounds: Vec<usize>,
}

impl Ledger {
    /// Reads the transactions of the customers in `index` before `end` (microseconds).
    pub(crate) fn read(
        version_dir: &Path,
        index: &HashMap<&str, u32>,
        end: i64,
    ) -> Result<Ledger, WarehouseError> {
        let mut txs = read_transactions(&version_dir.join("transactions"), index, end)?;
        txs.par_sort_unstable_by_key(Tx::sort_key);
        let mut bounds = vec![0usize; index.len() + 1];
        for t in &txs {
            bounds[t.customer as usize + 1] += 1;
        }
        for i in 1..bounds.len() {
            bounds[i] += bounds[i - 1];
        }
        Ok(Ledger { txs, bounds })
    }

    /// Customers indexed.
    pub(crate) fn customers(&self) -> usize {
        self.bounds.len() - 1
    }

    /// Transactions read.
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    /// Customer `i`'s transactions, by time.
    pub(crate) fn customer(&self, i: usize) -> &[Tx] {
        &self.txs[self.bounds[i]..self.bounds[i + 1]]
    }

    /// Every customer's facts on `as_of_day`, freeing the transactions: the
    /// step from transactions to [`Facts`] when nothing else needs them.
    pub(crate) fn into_facts(self, as_of_day: i64, period: Period) -> Vec<Facts> {
        self.facts(as_of_day, period)
    }

    /// Every customer's facts on `as_of_day`, from the transactions up to that day only.
    pub(crate) fn facts(&self, as_of_day: i64, period: Period) -> Vec<Facts> {
        let end = end_of_day(as_of_day);
        (0..self.customers())
            .into_par_iter()
            .map(|i| {
                let txs = self.customer(i);
                facts_of(
                    &txs[..txs.partition_point(|t| t.at < end)],
                    as_of_day,
                    period,
                )
            })
            .collect()
    }
}

/// Purchase occasions (day, value) of one customer's transactions, and the net total:
/// purchase days not fully refunded through their order.
pub(crate) fn occasions(txs: &[Tx]) -> (Vec<(i64, f64)>, i128) {
    let mut by_order: HashMap<u64, (i128, i128)> = HashMap::default();
    let mut total = 0i128;
    for t in txs {
        total += t.amount;
        if t.order != 0 {
            let e = by_order.entry(t.order).or_default();
            if t.refund {
                e.1 += -t.amount;
            } else {
                e.0 += t.amount;
            }
        }
    }
    let fully_refunded = |order: u64| {
        order != 0
            && by_order
                .get(&order)
                .is_some_and(|(p, r)| *r > 0 && *r >= *p)
    };
    let purchases: Vec<(i64, f64)> = txs
        .iter()
        .filter(|t| !t.refund && !fully_refunded(t.order))
        .map(|t| (day_of(t.at), BaseAmount(t.amount).to_f64()))
        .collect();
    (summary::occasions_from_purchases(&purchases), total)
}

/// One customer's facts on `as_of_day` from their transactions up to that
/// day: their totals on that day.
pub(crate) fn facts_of(txs: &[Tx], as_of_day: i64, period: Period) -> Facts {
    CustomerTotals::of(txs).facts(as_of_day, period)
}
