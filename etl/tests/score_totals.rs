//! `score` reads a version's per-customer purchase totals instead of its
//! transactions when no transaction falls after the scoring day, and gets
//! the same scores to the bit as from the transactions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use chrono::NaiveDate;
use cvm_etl::generate::{GenerateOptions, generate};
use cvm_etl::jobs::ingest::{self, IngestOptions};
use cvm_etl::jobs::score::{self, ScoreOptions, ScoreReport};
use cvm_etl::warehouse;
use cvm_shared::Settings;

fn score(wh: &Path, as_of: &str) -> ScoreReport {
    score::run(&ScoreOptions {
        warehouse: wh.to_path_buf(),
        as_of: as_of.parse::<NaiveDate>().unwrap(),
        settings: Settings::default(),
    })
    .unwrap()
}

/// Rows printed: equal strings mean equal values, floats to the bit.
fn printed(r: &ScoreReport) -> Vec<String> {
    r.rows.iter().map(|s| format!("{s:?}")).collect()
}

/// An 800-customer shop's 2024 as one drop (`days` 0) or as a history
/// plus `days` daily drops.
fn generated_drop(root: &Path, days: u32) -> std::path::PathBuf {
    let input = root.join("drop");
    generate(
        &input,
        &GenerateOptions {
            customers: 800,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            days,
            ..GenerateOptions::default()
        },
    )
    .unwrap();
    input
}

fn generated_warehouse(root: &Path, days: u32) -> std::path::PathBuf {
    let input = generated_drop(root, days);
    let wh = root.join("wh");
    let mut drops: Vec<std::path::PathBuf> = if days == 0 {
        vec![input]
    } else {
        let mut d: Vec<_> = std::fs::read_dir(&input)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // history/ sorts after the dated drops: it goes first.
        d.sort_by_key(|p| (!p.ends_with("history"), p.clone()));
        d
    };
    for input in drops.drain(..) {
        ingest::run(&IngestOptions::new(input, wh.clone())).unwrap();
    }
    wh
}

fn without_totals(wh: &Path) {
    let file = wh
        .join("current")
        .join(warehouse::state::DIR)
        .join(warehouse::purchase_totals::FILE);
    std::fs::remove_file(&file).unwrap();
}

/// Scores `wh` on `day` from its purchase totals, then again from its
/// transactions once the totals are removed: the same rows, to the bit.
fn same_scores_from_totals_and_transactions(wh: &Path, day: &str) -> ScoreReport {
    let from_totals = score(wh, day);
    assert_eq!(from_totals.manifest.purchases_from, "purchase_totals");
    without_totals(wh);
    let from_transactions = score(wh, day);
    assert_eq!(from_transactions.manifest.purchases_from, "transactions");
    assert_eq!(
        from_totals.manifest.transactions,
        from_transactions.manifest.transactions
    );
    assert_eq!(printed(&from_totals), printed(&from_transactions));
    // Same rows: the second publication finds nothing to change (a NaN
    // score would differ from itself).
    assert_eq!(from_transactions.manifest.status, "unchanged");
    from_totals
}

#[test]
fn scores_from_the_purchase_totals_equal_scores_from_the_transactions() {
    let d = tempfile::tempdir().unwrap();
    let wh = generated_warehouse(d.path(), 0);
    let r = same_scores_from_totals_and_transactions(&wh, "2025-01-31");
    assert!(r.manifest.purchasers > 500);
    assert!(r.manifest.repeat_buyers > 100);
    assert!(
        !printed(&r)
            .iter()
            .any(|r| r.contains("NaN") || r.contains("inf")),
        "every score is a number"
    );
}

#[test]
fn a_day_before_the_last_transaction_is_scored_from_the_transactions() {
    let d = tempfile::tempdir().unwrap();
    let wh = generated_warehouse(d.path(), 0);
    let r = score(&wh, "2024-10-31");
    assert_eq!(r.manifest.purchases_from, "transactions");
    // A later day with totals counts more transactions than the earlier day saw.
    let later = score(&wh, "2025-01-31");
    assert_eq!(later.manifest.purchases_from, "purchase_totals");
    assert!(later.manifest.transactions > r.manifest.transactions);
}

#[test]
fn totals_kept_night_by_night_score_as_the_transactions_do() {
    let d = tempfile::tempdir().unwrap();
    let wh = generated_warehouse(d.path(), 5);
    same_scores_from_totals_and_transactions(&wh, "2025-01-31");
}

#[test]
fn damaged_stored_totals_are_summed_again_and_never_stop_a_run() {
    let d = tempfile::tempdir().unwrap();
    let input = generated_drop(d.path(), 2);
    let wh = d.path().join("wh");
    let ingest = |drop: &str| {
        ingest::run(&IngestOptions::new(input.join(drop), wh.clone())).unwrap();
    };
    let damage = || {
        let file = wh
            .join("current")
            .join(warehouse::state::DIR)
            .join(warehouse::purchase_totals::FILE);
        // A new file, not the hard-linked one rewritten in place.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "not parquet").unwrap();
    };
    ingest("history");
    damage();
    // Scoring reads the transactions instead.
    let r = score(&wh, "2025-01-31");
    assert_eq!(r.manifest.purchases_from, "transactions");
    // The next night sums every customer again, as a first load does.
    ingest("2024-12-30");
    ingest("2024-12-31");
    same_scores_from_totals_and_transactions(&wh, "2025-01-31");
}
