//! The purchase-totals step: every customer's totals over the consolidated
//! transactions (`scoring::totals`), stored in the version so `score` reads
//! one row per customer instead of every transaction.

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::transactions::Txns;
use crate::scoring::ledger::Tx;
use crate::scoring::totals::totals_by_customer;
use crate::warehouse::purchase_totals::PurchaseTotalsRow;
use cvm_shared::TxnKind;

/// Every customer's purchase totals, sorted by customer id; `None` when
/// some cannot be stored (the version is then scored from its transactions).
pub(super) fn totals(txns: &Txns) -> Option<Vec<PurchaseTotalsRow<&str>>> {
    let mut number: HashMap<&str, u32> = HashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut txs: Vec<Tx> = Vec::with_capacity(txns.len());
    for t in txns.iter() {
        let Some(id) = t.customer_id.as_deref() else {
            continue;
        };
        let c = *number.entry(id).or_insert_with(|| {
            names.push(id);
            (names.len() - 1) as u32
        });
        txs.push(Tx::new(
            c,
            t.row.occurred_at,
            t.row.amount_base.0,
            t.row.kind == TxnKind::Refund,
            t.order_id(),
        ));
    }
    drop(number);
    let mut rows: Vec<PurchaseTotalsRow<&str>> = totals_by_customer(txs)
        .into_iter()
        .map(|(c, t)| t.to_row(names[c as usize]))
        .collect::<Option<_>>()?;
    rows.par_sort_unstable_by(|a, b| a.customer_id.cmp(b.customer_id));
    Some(rows)
}
