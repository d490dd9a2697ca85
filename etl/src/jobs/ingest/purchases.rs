//! The purchase-totals step: every customer's totals over the consolidated
//! transactions (`scoring::totals`), stored in the version so `score` reads
//! one row per customer instead of every transaction. Over a version that
//! has them, only the customers whose transactions changed tonight are
//! summed again, and written as a delta over the stored table (see
//! `warehouse::purchase_totals`); the others keep their stored row. A
//! touched customer who only gained purchases after their last transaction
//! is summed from their stored row and tonight's rows alone
//! ([`extended`]), so a night need not read their history.

use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::touched::Touched;
use super::transactions::Txns;
use crate::scoring::ledger::Tx;
use crate::scoring::totals::CustomerTotals;
use crate::warehouse::purchase_totals::{self, PurchaseTotalsRow};
use crate::warehouse::{self, StoredTxn, WarehouseError};
use cvm_shared::TxnKind;

/// Writes every customer's purchase totals into `to` (the staged
/// `_state` folder): the stored rows of `previous` (the version this run
/// started from) for the customers not `touched`, with theirs summed
/// again over them; all summed when either is missing or the
/// stored rows cannot be read, unless `partial` (the run holds only part of
/// the history: then unreadable stored rows are an error). Returns how many
/// customers were summed.
pub(super) fn write(
    txns: &Txns,
    touched: &Touched,
    extended: Option<&Extended>,
    previous: Option<&Path>,
    partial: bool,
    to: &Path,
) -> Result<usize, WarehouseError> {
    let unreadable = |e: Option<WarehouseError>| WarehouseError::Format {
        path: previous
            .map(|p| p.join(warehouse::state::DIR).join(purchase_totals::FILE))
            .unwrap_or_default(),
        message: format!(
            "the stored purchase totals are needed and unreadable{}: run `cvm-etl ingest --full-rebuild` to sum them again",
            e.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    };
    match (touched.customers(), previous) {
        (Some(ids), Some(dir)) => {
            let from = dir.join(warehouse::state::DIR);
            let mut rows = summed(txns, |id| {
                ids.contains(id) && !extended.is_some_and(|e| e.contains_key(id))
            });
            rows.extend(
                extended
                    .into_iter()
                    .flatten()
                    .map(|(id, t)| t.to_row(id).with_id(id.clone())),
            );
            let rows = sorted(rows);
            let merged = match purchase_totals::usable(&from) {
                true => purchase_totals::write_over(&from, to, ids, &rows),
                false if partial => return Err(unreadable(None)),
                // Missing, or another cvm's columns: summed again below.
                false => Err(WarehouseError::Format {
                    path: from.join(purchase_totals::FILE),
                    message: "missing or not this cvm's columns".into(),
                }),
            };
            match merged {
                // Written; or a total too big for the table, when none is
                // (as `purchase_totals::write` does).
                Ok(_) => return Ok(rows.len()),
                // Out of id order (`erase` rewrites ids in place): the
                // stored rows are read whole and merged in memory.
                Err(WarehouseError::Unsorted { .. }) => {
                    let summed = rows.len();
                    let mut all = rows;
                    purchase_totals::read_each(&from, |r| {
                        if !ids.contains(r.customer_id) {
                            all.push(r.with_id(Box::from(r.customer_id)));
                        }
                    })?;
                    purchase_totals::write(to, &sorted(all))?;
                    return Ok(summed);
                }
                Err(e) if partial => return Err(unreadable(Some(e))),
                // Derived state: unreadable stored totals (another cvm's
                // columns, a damaged file) are summed again from scratch.
                Err(e) if from.join(purchase_totals::FILE).exists() => {
                    tracing::warn!(error = %e, "stored purchase totals unreadable: summing every customer again");
                }
                Err(_) => {}
            }
        }
        _ if partial => return Err(unreadable(None)),
        _ => {}
    }
    let rows = sorted(summed(txns, |_| true));
    purchase_totals::write(to, &rows)?;
    Ok(rows.len())
}

/// The touched customers whose totals follow from their stored row and
/// tonight's rows alone, with those totals.
pub(super) type Extended = HashMap<Box<str>, CustomerTotals>;

/// The customers that only gained rows tonight (`touched`, none of their
/// stored rows changed) and whose totals follow from their stored ones in
/// the `_state` folder `state` and those rows ([`CustomerTotals::then`]),
/// with those totals. The rows must be the drop's of `txns`, whose key
/// sets are named.
pub(super) fn extended(
    txns: &Txns,
    touched: &Touched,
    state: &Path,
) -> Result<Extended, WarehouseError> {
    let mut number: HashMap<&str, u32> = HashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let mut refunded: Vec<bool> = Vec::new();
    let mut txs: Vec<Tx> = Vec::new();
    for t in txns.drop_rows() {
        let Some(id) = txns.keysets.customer(t.keyset) else {
            continue;
        };
        if !touched.grown_only(id) {
            continue;
        }
        let c = *number.entry(id).or_insert_with(|| {
            names.push(id);
            refunded.push(false);
            (names.len() - 1) as u32
        });
        let tx = tx_of(c, t);
        refunded[c as usize] |= tx.is_refund();
        txs.push(tx);
    }
    // A refund always needs the history (it may refund a stored purchase).
    number.retain(|_, c| !refunded[*c as usize]);
    if number.is_empty() {
        return Ok(Extended::default());
    }
    let mut stored = vec![CustomerTotals::NONE; names.len()];
    let found = purchase_totals::read_picked(
        state,
        |id| number.contains_key(id),
        |r| {
            if let Some(&c) = number.get(r.customer_id) {
                stored[c as usize] = CustomerTotals::from_row(&r);
            }
        },
    )?;
    if !found {
        return Ok(Extended::default());
    }
    txs.retain(|t| !refunded[t.customer() as usize]);
    txs.par_sort_unstable_by_key(Tx::sort_key);
    let extended: Extended = txs
        .chunk_by(|a, b| a.customer() == b.customer())
        .filter_map(|later| {
            let c = later[0].customer() as usize;
            let t = stored[c].then(later)?;
            Some((Box::from(names[c]), t))
        })
        .collect();
    // Why the others are summed from all their rows: a refund tonight, or
    // a purchase that may meet their stored transactions.
    tracing::debug!(
        grown_only = names.len(),
        refunded = names.len() - number.len(),
        extended = extended.len(),
        "purchase totals extended"
    );
    Ok(extended)
}

fn sorted(mut rows: Vec<PurchaseTotalsRow<Box<str>>>) -> Vec<PurchaseTotalsRow<Box<str>>> {
    rows.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    rows
}

/// The totals of the customers `wanted` picks, from all their transactions.
/// Their rows are grouped as references by a counting sort, and each one's
/// [`Tx`] made only while their totals are: the history is never copied.
fn summed(txns: &Txns, wanted: impl Fn(&str) -> bool) -> Vec<PurchaseTotalsRow<Box<str>>> {
    // Customers are numbered per key set, then each row takes its key set's.
    let mut number: HashMap<&str, u32> = HashMap::default();
    let mut names: Vec<&str> = Vec::new();
    let by_set: Vec<u32> = txns
        .keysets
        .customers()
        .zip(&txns.used)
        .map(|(id, &used)| match id {
            Some(id) if used && wanted(id) => *number.entry(id).or_insert_with(|| {
                names.push(id);
                (names.len() - 1) as u32
            }),
            _ => u32::MAX,
        })
        .collect();
    drop(number);
    // Rows are grouped by customer as positions (4 bytes a row, not a
    // reference's 8), found again through their chunk's first position;
    // each row's customer is looked up twice rather than kept. (A run
    // holds far fewer than 2^32 rows: 112 bytes each.)
    let customer = |t: &StoredTxn| by_set[t.keyset as usize];
    let mut starts = vec![0usize; names.len() + 1];
    for c in txns.iter().map(customer).filter(|&c| c != u32::MAX) {
        starts[c as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut next = starts.clone();
    let mut grouped: Vec<u32> = vec![0; starts[names.len()]];
    for (n, t) in txns.iter().enumerate() {
        let c = customer(t);
        if c != u32::MAX {
            grouped[next[c as usize]] = n as u32;
            next[c as usize] += 1;
        }
    }
    drop((by_set, next));
    let chunks = txns.chunks();
    let mut firsts = Vec::with_capacity(chunks.len());
    let mut first = 0usize;
    for c in chunks {
        firsts.push(first);
        first += c.len();
    }
    let row = |n: u32| {
        let n = n as usize;
        let c = firsts.partition_point(|&f| f <= n) - 1;
        &chunks[c][n - firsts[c]]
    };
    (0..names.len())
        .into_par_iter()
        .map(|c| {
            let mut txs: Vec<Tx> = grouped[starts[c]..starts[c + 1]]
                .iter()
                .map(|&n| tx_of(c as u32, row(n)))
                .collect();
            txs.sort_unstable_by_key(Tx::sort_key);
            CustomerTotals::of(&txs)
                .to_row(names[c])
                .with_id(Box::from(names[c]))
        })
        .collect()
}

/// Row `t` as customer number `c`'s [`Tx`].
fn tx_of(c: u32, t: &StoredTxn) -> Tx {
    Tx::new(
        c,
        t.row.occurred_at,
        t.row.amount_base.0,
        t.row.kind == TxnKind::Refund,
        t.order_id(),
    )
}
