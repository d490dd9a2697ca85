//! Per-customer purchase totals: what a customer's transactions give every
//! score on any day after the last of them. Ingest keeps them in the
//! published version (`_state/purchase_totals.parquet`), so `score` reads one
//! row per customer instead of every transaction when no transaction falls
//! after its day; the ledger computes them the same way from the
//! transactions up to a day, so both paths give the same bits.

use std::path::Path;

use rustc_hash::FxHashMap as HashMap;

use super::ledger::{Facts, Tx, occasions};
use crate::models::summary::{OccasionTotals, Period};
use crate::warehouse::purchase_totals::{self, PurchaseTotalsRow};
use crate::warehouse::{self, WarehouseError};

/// One customer's transactions reduced to what their facts on any later day need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CustomerTotals {
    /// Transactions counted.
    pub(crate) transactions: u64,
    /// Net sum of purchases and refunds, exact (base currency units).
    pub(crate) revenue: i128,
    /// The purchase occasions' totals; `None` when they cannot be summarised.
    pub(crate) occasions: Option<OccasionTotals>,
    /// The latest transaction's time (microseconds); `None` without transactions.
    pub(crate) last_at: Option<i64>,
}

impl CustomerTotals {
    /// The totals of a customer without transactions (a prospect).
    pub(crate) const NONE: CustomerTotals = CustomerTotals {
        transactions: 0,
        revenue: 0,
        occasions: Some(OccasionTotals {
            orders: 0,
            first_day: None,
            last_day: None,
            repeat_sum: 0.0,
        }),
        last_at: None,
    };

    /// The totals of one customer's transactions, sorted as the ledger sorts them.
    pub(crate) fn of(txs: &[Tx]) -> CustomerTotals {
        let (occ, revenue) = occasions(txs);
        CustomerTotals {
            transactions: txs.len() as u64,
            revenue,
            occasions: OccasionTotals::of(&occ, i64::MAX).ok(),
            last_at: txs.iter().map(|t| t.at()).max(),
        }
    }

    /// The facts on `as_of_day`, a day no earlier than the last transaction's.
    pub(crate) fn facts(&self, as_of_day: i64, period: Period) -> Facts {
        Facts {
            summary: self.occasions.map(|o| o.summary_on(as_of_day, period)),
            total_revenue: self.revenue,
        }
    }

    /// The stored row of customer `customer_id`.
    pub(crate) fn to_row(self, customer_id: &str) -> PurchaseTotalsRow<&str> {
        // The day of an i64 microsecond timestamp is within ±106,751,992: it fits.
        let day = |d: Option<i64>| d.map(|d| d as i32);
        let o = self.occasions;
        PurchaseTotalsRow {
            customer_id,
            transactions: self.transactions,
            revenue: self.revenue,
            orders: o.map(|o| o.orders),
            first_day: day(o.and_then(|o| o.first_day)),
            last_day: day(o.and_then(|o| o.last_day)),
            repeat_sum: o.map_or(0.0, |o| o.repeat_sum),
            last_at: self.last_at,
        }
    }

    /// The totals a stored row holds.
    pub(crate) fn from_row(r: &PurchaseTotalsRow<&str>) -> CustomerTotals {
        CustomerTotals {
            transactions: r.transactions,
            revenue: r.revenue,
            occasions: r.orders.map(|orders| OccasionTotals {
                orders,
                first_day: r.first_day.map(i64::from),
                last_day: r.last_day.map(i64::from),
                repeat_sum: r.repeat_sum,
            }),
            last_at: r.last_at,
        }
    }
}

/// The stored totals of the customers in `index`, in index order (customers
/// without transactions have none), if the version holds totals and none
/// of its transactions happened at or after `end` (microseconds): then they
/// are exactly what the transactions before `end` give.
pub(crate) fn read_before(
    version_dir: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
) -> Result<Option<Vec<CustomerTotals>>, WarehouseError> {
    let mut totals = vec![CustomerTotals::NONE; index.len()];
    let mut last_at: Option<i64> = None;
    let found = purchase_totals::read_each(&version_dir.join(warehouse::state::DIR), |r| {
        last_at = last_at.max(r.last_at);
        if let Some(&i) = index.get(r.customer_id) {
            totals[i as usize] = CustomerTotals::from_row(&r);
        }
    })?;
    Ok((found && last_at.is_none_or(|l| l < end)).then_some(totals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::ledger::{DAY_MICROS, Tx};

    const UNIT: i128 = 10i128.pow(cvm_shared::BaseAmount::SCALE);

    fn tx(customer: u32, day: i64, amount: i128, order: Option<&str>) -> Tx {
        Tx::new(
            customer,
            day * DAY_MICROS + 3_600_000_000,
            amount * UNIT,
            amount < 0,
            order,
        )
    }

    #[test]
    fn totals_count_every_transaction_and_skip_fully_refunded_orders() {
        let mut txs = vec![
            tx(0, 10, 30, Some("o1")),
            tx(0, 3, 5, None),
            tx(0, 10, 7, Some("o2")),
            tx(0, 24, 12, Some("o3")),
            tx(0, 30, -12, Some("o3")),
        ];
        txs.sort_unstable_by_key(Tx::sort_key);
        let t = CustomerTotals::of(&txs);
        assert_eq!((t.transactions, t.revenue), (5, 42 * UNIT));
        assert_eq!(t.last_at, Some(30 * DAY_MICROS + 3_600_000_000));
        let o = t.occasions.expect("summarisable");
        // Day 24's order is fully refunded: occasions on days 3 and 10.
        assert_eq!((o.orders, o.first_day, o.last_day), (2, Some(3), Some(10)));
        assert_eq!(o.repeat_sum, 37.0);
        let f = t.facts(31, Period::Day);
        let s = f.summary.expect("summary");
        assert_eq!((s.frequency, s.recency, s.t), (1, Some(7.0), Some(28.0)));
        assert_eq!(s.days_since_last_purchase, Some(21));
    }

    #[test]
    fn stored_rows_give_back_the_same_totals() {
        let t = CustomerTotals::of(&[tx(3, 5, 2, None), tx(3, 9, 3, None)]);
        let row = t.to_row("C3");
        assert_eq!(CustomerTotals::from_row(&row), t);
        assert_eq!(CustomerTotals::of(&[]), CustomerTotals::NONE);
        let none = CustomerTotals::NONE.to_row("P");
        assert_eq!(CustomerTotals::from_row(&none), CustomerTotals::NONE);
    }
}
