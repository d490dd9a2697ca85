//! A history delivered night by night (`generate --days`: a history drop,
//! then one drop per day) consolidates to exactly the warehouse the same
//! records give in one drop. Across nights, versions meet their stored
//! predecessors (refunds of earlier web orders, CRM updates), CRM records
//! arriving later claim the purchases their keys made as guests, and a
//! night delivered twice changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cvm_etl::generate::{GenerateOptions, GenerateSummary, generate};
use cvm_etl::jobs::ingest::{self, IngestOptions, IngestReport};
use cvm_etl::warehouse;
use cvm_shared::Settings;
use cvm_shared::TxnKind;

fn drop_of(out: &Path, days: u32) -> GenerateSummary {
    generate(
        out,
        &GenerateOptions {
            customers: 1500,
            seed: 11,
            dirty_ratio: 0.02,
            days,
            ..GenerateOptions::default()
        },
    )
    .unwrap()
}

fn ingest(input: &Path, wh: &Path) -> IngestReport {
    let mut settings = Settings::default();
    settings.ingest.reject_limit = 0.1;
    ingest::run(&IngestOptions {
        input: input.to_path_buf(),
        warehouse: wh.to_path_buf(),
        settings,
        progress: false,
    })
    .unwrap()
}

/// Every dataset of the current version, each row printed, sorted: equal
/// maps mean equal datasets, whatever the row order in the files.
fn datasets(wh: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let cur = wh.join("current");
    let sorted = |rows: Vec<String>| {
        let mut rows = rows;
        rows.sort();
        rows
    };
    let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
    BTreeMap::from([
        (
            "customers",
            sorted(
                warehouse::customers::read(&cur.join("customers"))
                    .unwrap()
                    .iter()
                    .map(|r| dbg(r))
                    .collect(),
            ),
        ),
        (
            "transactions",
            sorted(
                warehouse::transactions::read(&cur.join("transactions"))
                    .unwrap()
                    .iter()
                    .map(|r| dbg(r))
                    .collect(),
            ),
        ),
        (
            "events",
            sorted(
                warehouse::events::read(&cur.join("events"))
                    .unwrap()
                    .iter()
                    .map(|r| dbg(r))
                    .collect(),
            ),
        ),
        (
            "_state/records",
            sorted(
                warehouse::state::read(&cur.join("_state"))
                    .unwrap()
                    .iter()
                    .map(|r| dbg(r))
                    .collect(),
            ),
        ),
        (
            "_state/crm_keys",
            sorted(
                warehouse::key_history::read(&cur.join("_state"))
                    .unwrap()
                    .iter()
                    .map(|r| dbg(r))
                    .collect(),
            ),
        ),
    ])
}

/// Fails naming the first dataset that differs, its row counts and a few
/// rows only one side has (a full dump would bury the difference).
fn same_datasets(a: &BTreeMap<&str, Vec<String>>, b: &BTreeMap<&str, Vec<String>>) {
    for (name, rows) in a {
        let other = &b[name];
        if rows != other {
            let only = |x: &[String], y: &[String]| -> Vec<String> {
                let y: BTreeSet<&String> = y.iter().collect();
                x.iter()
                    .filter(|r| !y.contains(r))
                    .take(3)
                    .cloned()
                    .collect()
            };
            panic!(
                "{name} differs: {} rows in one drop, {} night by night;\nonly in one drop: {:#?}\nonly night by night: {:#?}",
                rows.len(),
                other.len(),
                only(rows, other),
                only(other, rows)
            );
        }
    }
}

/// Each transaction's customer, by transaction (record key and kind).
fn owners(wh: &Path) -> BTreeMap<(String, bool), Option<String>> {
    warehouse::transactions::read(&wh.join("current").join("transactions"))
        .unwrap()
        .into_iter()
        .map(|t| {
            let refund = t.row.kind == TxnKind::Refund;
            (
                (t.record_key.to_string(), refund),
                t.customer_id.map(|c| c.to_string()),
            )
        })
        .collect()
}

#[test]
fn daily_drops_ingested_night_by_night_equal_the_same_history_in_one_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, split) = (tmp.path().join("one"), tmp.path().join("split"));
    let whole = drop_of(&one, 0);
    let days = drop_of(&split, 6);
    assert_eq!(whole.drops, ["."]);
    assert_eq!(days.drops.len(), 7);
    assert_eq!(days.drops[0], "history");
    // The same records, split by day (each drop has its own rates file).
    let fx = |s: &GenerateSummary| s.outcomes["fx"].accepted;
    assert_eq!(days.records - fx(&days), whole.records - fx(&whole));
    assert_eq!(days.outcomes["web"], whole.outcomes["web"]);

    let (wh_one, wh_nights) = (tmp.path().join("wh-one"), tmp.path().join("wh-nights"));
    ingest(&one, &wh_one);
    let mut history_owners = BTreeMap::new();
    for (night, d) in days.drops.iter().enumerate() {
        let r = ingest(&split.join(d), &wh_nights);
        assert_eq!(r.manifest.status, "published", "night {d}");
        assert!(r.manifest.totals.records > 0, "night {d} is empty");
        if night == 0 {
            history_owners = owners(&wh_nights);
        }
    }
    // The last night delivered again: every record is a duplicate.
    let last = split.join(days.drops.last().unwrap());
    let again = ingest(&last, &wh_nights);
    assert_eq!(again.manifest.status, "unchanged");
    assert_eq!(again.manifest.totals.accepted, fx(&days) / 7);

    same_datasets(&datasets(&wh_one), &datasets(&wh_nights));

    // What made the nights more than appends: refunds of orders of the
    // history, and purchases a guest made that a later CRM record claims.
    let final_owners = owners(&wh_nights);
    let late_refunds = final_owners
        .keys()
        .filter(|(key, refund)| {
            *refund
                && history_owners.contains_key(&(key.clone(), false))
                && !history_owners.contains_key(&(key.clone(), true))
        })
        .count();
    assert!(
        late_refunds > 0,
        "no refund of a history order arrived later"
    );
    let crm: BTreeSet<String> = warehouse::customers::read(&wh_nights.join("customers"))
        .unwrap()
        .into_iter()
        .filter(|c| !c.is_guest)
        .map(|c| c.customer_id.to_string())
        .collect();
    let claimed = history_owners
        .iter()
        .filter(|(k, owner)| {
            owner.as_deref().is_some_and(|o| o.starts_with("G-"))
                && final_owners[*k].as_ref().is_some_and(|o| crm.contains(o))
        })
        .count();
    assert!(
        claimed > 0,
        "no guest purchase was claimed by a later CRM record"
    );
    // Keyed web orders are what refunds arrive for.
}
