//! The purchase-totals step: every customer's totals over the consolidated
//! transactions (`scoring::totals`), stored in the version so `score` reads
//! one row per customer instead of every transaction.

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::transactions::Txns;
use crate::scoring::ledger::Tx;
use crate::scoring::totals::CustomerTotals;
use crate::warehouse::StoredTxn;
use crate::warehouse::purchase_totals::PurchaseTotalsRow;
use cvm_shared::TxnKind;

/// Every customer's purchase totals, sorted by customer id. The rows are grouped by customer as references (a counting sort), and
/// each customer's [`Tx`] made only while their totals are: the history is
/// never copied whole.
pub(super) fn totals(txns: &Txns) -> Vec<PurchaseTotalsRow<&str>> {
    let mut number: HashMap<&str, u32> = HashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let numbers: Vec<u32> = txns
        .iter()
        .map(|t| match t.customer_id.as_deref() {
            Some(id) => *number.entry(id).or_insert_with(|| {
                names.push(id);
                (names.len() - 1) as u32
            }),
            None => u32::MAX,
        })
        .collect();
    drop(number);
    let mut starts = vec![0usize; names.len() + 1];
    for &c in numbers.iter().filter(|&&c| c != u32::MAX) {
        starts[c as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut grouped: Vec<Option<&StoredTxn>> = vec![None; starts[names.len()]];
    for (t, &c) in txns.iter().zip(&numbers) {
        if c != u32::MAX {
            grouped[next[c as usize]] = Some(t);
            next[c as usize] += 1;
        }
    }
    drop((numbers, next));
    let mut rows: Vec<PurchaseTotalsRow<&str>> = (0..names.len())
        .into_par_iter()
        .map(|c| {
            let mut txs: Vec<Tx> = grouped[starts[c]..starts[c + 1]]
                .iter()
                .flatten()
                .map(|t| {
                    Tx::new(
                        c as u32,
                        t.row.occurred_at,
                        t.row.amount_base.0,
                        t.row.kind == TxnKind::Refund,
                        t.order_id(),
                    )
                })
                .collect();
            txs.sort_unstable_by_key(Tx::sort_key);
            CustomerTotals::of(&txs).to_row(names[c])
        })
        .collect();
    rows.par_sort_unstable_by(|a, b| a.customer_id.cmp(b.customer_id));
    rows
}
