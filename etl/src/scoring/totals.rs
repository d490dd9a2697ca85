//! Per-customer purchase totals: what a customer's transactions give every
//! score on any day after the last of them. Ingest keeps them in the
//! published version (`_state/purchase_totals.parquet`), so `score` reads one
//! row per customer instead of every transaction when no transaction falls
//! after its day; the ledger computes them the same way from the
//! transactions up to a day, so both paths give the same bits.

use std::path::Path;

use rustc_hash::FxHashMap as HashMap;

use super::ledger::{Facts, Tx, day_of, occasions};
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
    /// A filter of the orders holding a refund: each sets its bit
    /// ([`Tx::order_bit`]). A later purchase in an order whose bit is clear
    /// cannot meet a refund counted here, so it adds to these totals alone.
    pub(crate) refunded_orders: u64,
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
        refunded_orders: 0,
    };

    /// The totals of one customer's transactions, sorted as the ledger sorts them.
    pub(crate) fn of(txs: &[Tx]) -> CustomerTotals {
        let (occ, revenue) = occasions(txs);
        CustomerTotals {
            transactions: txs.len() as u64,
            revenue,
            occasions: OccasionTotals::of(&occ, i64::MAX).ok(),
            last_at: txs.iter().map(|t| t.at()).max(),
            refunded_orders: refunded_orders(txs),
        }
    }

    /// These totals followed by `later` transactions (sorted as the ledger
    /// sorts them), when that gives the bits [`CustomerTotals::of`] all of
    /// them gives: `later` holds purchases alone, each on a day after the
    /// last transaction counted here and none in an order that may hold a
    /// counted refund (which could refund it fully, or stop refunding a
    /// counted purchase fully). Then their occasions follow the counted
    /// ones, and the repeat values are added in the same order. `None`
    /// otherwise, and when the counted occasions could not be summarised.
    pub(crate) fn then(&self, later: &[Tx]) -> Option<CustomerTotals> {
        let after = self.last_at.map_or(i64::MIN, day_of);
        let apart = |t: &Tx| {
            !t.is_refund() && day_of(t.at()) > after && t.order_bit() & self.refunded_orders == 0
        };
        if !later.iter().all(apart) {
            return None;
        }
        let (occ, revenue) = occasions(later);
        Some(CustomerTotals {
            transactions: self.transactions + later.len() as u64,
            revenue: self.revenue + revenue,
            occasions: Some(self.occasions?.then(&occ, i64::MAX).ok()?),
            last_at: later.iter().map(|t| t.at()).chain(self.last_at).max(),
            refunded_orders: self.refunded_orders,
        })
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
            refunded_orders: self.refunded_orders,
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
            refunded_orders: r.refunded_orders,
        }
    }
}

/// The [`CustomerTotals`] filter of the orders of `txs`' refunds.
fn refunded_orders(txs: &[Tx]) -> u64 {
    txs.iter()
        .filter(|t| t.is_refund())
        .fold(0, |bits, t| bits | t.order_bit())
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
    fn later_purchases_extend_the_totals_only_when_they_cannot_meet_the_counted_ones() {
        let sorted = |mut txs: Vec<Tx>| {
            txs.sort_unstable_by_key(Tx::sort_key);
            txs
        };
        let earlier = sorted(vec![
            tx(0, 3, 5, Some("o1")),
            tx(0, 9, 7, Some("o2")),
            tx(0, 12, -7, Some("o2")),
        ]);
        let counted = CustomerTotals::of(&earlier);
        assert_ne!(counted.refunded_orders, 0);
        let later = sorted(vec![tx(0, 14, 2, Some("o3")), tx(0, 14, 1, None)]);
        let all = sorted([earlier.clone(), later.clone()].concat());
        assert_eq!(counted.then(&later), Some(CustomerTotals::of(&all)));
        assert_eq!(
            CustomerTotals::NONE.then(&later),
            Some(CustomerTotals::of(&later))
        );
        // A refund; a purchase on the last counted transaction's day; one
        // in an order holding a counted refund (it would be refunded fully).
        for refused in [
            tx(0, 14, -2, Some("o1")),
            tx(0, 12, 4, Some("o4")),
            tx(0, 20, 7, Some("o2")),
        ] {
            assert_eq!(counted.then(&[refused]), None, "{refused:?}");
        }
    }

    proptest::proptest! {
        /// Split anywhere after a day, the totals of the earlier part
        /// followed by the later one are the totals of all, to the bit,
        /// whenever `then` takes the later part.
        #[test]
        fn extended_totals_equal_the_totals_of_all(
            txs in proptest::collection::vec((0i64..40, -50i128..200, 0u8..6, 0u32..3600), 0..30),
            split in 0i64..40,
        ) {
            let made: Vec<Tx> = txs
                .iter()
                .map(|&(day, amount, order, sec)| {
                    let order = format!("o{order}");
                    Tx::new(0, day * DAY_MICROS + i64::from(sec) * 1_000_000,
                        amount * UNIT / 7, amount < 0, (order != "o0").then_some(&*order))
                })
                .collect();
            let mut all = made.clone();
            all.sort_unstable_by_key(Tx::sort_key);
            let cut = all.partition_point(|t| t.at() < split * DAY_MICROS);
            let counted = CustomerTotals::of(&all[..cut]);
            if let Some(extended) = counted.then(&all[cut..]) {
                let whole = CustomerTotals::of(&all);
                proptest::prop_assert_eq!(extended, whole);
                let bits = |t: CustomerTotals| t.occasions.map(|o| o.repeat_sum.to_bits());
                proptest::prop_assert_eq!(bits(extended), bits(whole));
            }
        }
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
