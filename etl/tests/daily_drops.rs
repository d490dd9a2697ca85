//! A history delivered night by night (`generate --days`: a history drop,
//! then one drop per day) consolidates to exactly the warehouse the same
//! records give in one drop. Across nights, versions meet their stored
//! predecessors (refunds of earlier web orders, CRM updates), CRM records
//! arriving later claim the purchases their keys made as guests, and a
//! night delivered twice changes nothing. A property test runs random
//! histories night by night, with an earlier night delivered again and a
//! night killed mid-publish and re-run, against the same records in one drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;

use cvm_etl::generate::{GenerateOptions, GenerateSummary, generate};
use cvm_etl::jobs::ingest::{self, IngestOptions, IngestReport};
use cvm_etl::warehouse;
use cvm_shared::Settings;
use cvm_shared::TxnKind;

fn drop_of(out: &Path, days: u32) -> GenerateSummary {
    drop_with(out, 1500, 11, 0.02, days)
}

fn drop_with(
    out: &Path,
    customers: u64,
    seed: u64,
    dirty_ratio: f64,
    days: u32,
) -> GenerateSummary {
    generate(
        out,
        &GenerateOptions {
            customers,
            seed,
            dirty_ratio,
            days,
            ..GenerateOptions::default()
        },
    )
    .unwrap()
}

/// A three-month period, so that a few hundred customers' nights are busy:
/// orders bought one night and refunded another, guests claimed days later.
fn busy_drop(out: &Path, customers: u64, seed: u64, dirty: f64, days: u32) -> Vec<String> {
    let opts = GenerateOptions {
        customers,
        seed,
        dirty_ratio: dirty,
        days,
        start: chrono::NaiveDate::from_ymd_opt(2025, 10, 1).unwrap(),
        ..GenerateOptions::default()
    };
    generate(out, &opts).unwrap().drops
}

fn ingest(input: &Path, wh: &Path) -> IngestReport {
    ingest_with(input, wh, 0.1)
}

fn ingest_with(input: &Path, wh: &Path, reject_limit: f64) -> IngestReport {
    run_ingest(input, wh, reject_limit, false)
}

fn run_ingest(input: &Path, wh: &Path, reject_limit: f64, full_rebuild: bool) -> IngestReport {
    let mut settings = Settings::default();
    settings.ingest.reject_limit = reject_limit;
    ingest::run(&IngestOptions {
        input: input.to_path_buf(),
        warehouse: wh.to_path_buf(),
        settings,
        progress: false,
        full_rebuild,
    })
    .unwrap()
}

/// Rows printed and sorted: equal lists mean equal datasets, whatever the
/// row order in the files.
fn printed<T: std::fmt::Debug>(rows: Vec<T>) -> Vec<String> {
    let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
    rows.sort();
    rows
}

/// Every dataset of the current version, printed.
fn datasets(wh: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let cur = wh.join("current");
    let state = cur.join("_state");
    BTreeMap::from([
        (
            "customers",
            printed(warehouse::customers::read(&cur.join("customers")).unwrap()),
        ),
        (
            "transactions",
            // A key set's index is only the order a reader met it in.
            printed(
                (warehouse::transactions::read(&cur.join("transactions")).unwrap())
                    .into_iter()
                    .map(|mut t| {
                        t.txn.keyset = 0;
                        t
                    })
                    .collect(),
            ),
        ),
        (
            "events",
            printed(warehouse::events::read(&cur.join("events")).unwrap()),
        ),
        (
            "_state/records",
            printed(warehouse::state::read(&state).unwrap()),
        ),
        (
            "_state/crm_keys",
            printed(warehouse::key_history::read(&state).unwrap()),
        ),
        ("_state/purchase_totals", purchase_totals(&state)),
        (
            "_state/event_keysets",
            printed(warehouse::event_keysets::read_rows(&state).unwrap()),
        ),
        (
            "_state/txn_keysets",
            printed(warehouse::txn_keysets::read_rows(&state).unwrap()),
        ),
    ])
}

/// The per-customer purchase totals, printed (`repeat_sum` to the bit).
fn purchase_totals(state: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    let found = warehouse::purchase_totals::read_each(state, |r| {
        rows.push(format!("{r:?} {:x}", r.repeat_sum.to_bits()));
    })
    .unwrap();
    assert!(found, "{} holds no purchase totals", state.display());
    rows.sort();
    rows
}

/// Fails naming the first dataset that differs, its row counts and a few
/// rows only one side has (a full dump would bury the difference).
fn same_datasets(a: &BTreeMap<&str, Vec<String>>, b: &BTreeMap<&str, Vec<String>>) {
    for (name, rows) in a {
        let other = &b[name];
        if rows != other {
            // Rows one side has more often than the other (duplicates count).
            let only = |x: &[String], y: &[String]| -> Vec<String> {
                let mut extra: BTreeMap<&String, i64> = BTreeMap::new();
                for r in x {
                    *extra.entry(r).or_default() += 1;
                }
                for r in y {
                    *extra.entry(r).or_default() -= 1;
                }
                extra
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .take(3)
                    .map(|(r, _)| r.clone())
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
        // A night writes the months it changes and shares the others, and
        // reads of the others only the rows of the customers it touches.
        let months = r.manifest.transaction_months;
        if night > 0 {
            assert!(
                months.shared > 0 && months.written > 0,
                "night {d}: {months:?}"
            );
            let read = r
                .manifest
                .transactions_read
                .expect("a night reads what it needs");
            assert!(
                read.whole_months < read.months && read.rows < r.manifest.warehouse.transactions,
                "night {d}: {read:?}"
            );
        } else {
            assert_eq!(r.manifest.transactions_read, None);
        }
    }
    // The last night delivered again: every record is a duplicate.
    let last = split.join(days.drops.last().unwrap());
    let again = ingest(&last, &wh_nights);
    assert_eq!(again.manifest.status, "unchanged");
    assert_eq!(again.manifest.totals.accepted, fx(&days) / 7);

    same_datasets(&datasets(&wh_one), &datasets(&wh_nights));

    // A full rebuild writes every month again, with the same rows.
    let rebuilt = run_ingest(&last, &wh_nights, 0.1, true);
    assert_eq!(rebuilt.manifest.status, "published");
    let months = rebuilt.manifest.transaction_months;
    assert_eq!(months.shared, 0);
    let all = std::fs::read_dir(wh_nights.join("current").join("transactions")).unwrap();
    assert_eq!(months.written, all.count() as u64);
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

fn web_order(id: &str, email: &str, created: &str, updated: &str, status: &str) -> String {
    format!(
        r#"{{"order_id":"{id}","customer":{{"email":"{email}"}},"created_at":"{created}T10:00:00Z","updated_at":"{updated}T10:00:00Z","total":{{"amount":"20.00","currency":"USD"}},"status":"{status}"}}"#
    )
}

/// Ingests `history` (web orders) then `tonight` night by night, and both as
/// one drop, under `dir`; checks that the two warehouses are equal. Returns
/// the nightly warehouse and its second night's report.
fn two_nights_equal_one_drop(
    dir: &Path,
    history: String,
    tonight: &[(&str, String)],
) -> (PathBuf, IngestReport) {
    let (n1, n2, one) = (dir.join("n1"), dir.join("n2"), dir.join("one"));
    write_drop(&n1, &[("web/a.jsonl", history.clone())]);
    write_drop(&n2, tonight);
    let mut all = vec![("web/a.jsonl", history)];
    all.extend(tonight.iter().cloned());
    write_drop(&one, &all);
    let (wh_nights, wh_one) = (dir.join("wh-nights"), dir.join("wh-one"));
    ingest(&n1, &wh_nights);
    let night = ingest(&n2, &wh_nights);
    ingest(&one, &wh_one);
    same_datasets(&datasets(&wh_one), &datasets(&wh_nights));
    (wh_nights, night)
}

fn write_drop(dir: &Path, files: &[(&str, String)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A night writes exactly the months it changes: the month an order leaves
/// when a later version cancels it, and the month an anonymous receipt
/// arrives in (no customer to notice it by); the others are shared.
#[test]
fn a_night_rewrites_the_months_it_changes_and_shares_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let history = [
        web_order("W-1", "a@example.com", "2025-01-10", "2025-01-10", "paid"),
        web_order("W-2", "b@example.com", "2025-02-10", "2025-02-10", "paid"),
        web_order("W-3", "c@example.com", "2025-03-10", "2025-03-10", "paid"),
    ]
    .join("\n");
    let tonight_web = web_order(
        "W-1",
        "a@example.com",
        "2025-01-10",
        "2025-03-20",
        "cancelled",
    );
    let tonight_pos = "receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\nR-9,S1,2025-02-15T12:00:00Z,,,5.00,USD,sale\n";
    let tonight = [
        ("web/b.jsonl", tonight_web),
        ("pos/p.csv", tonight_pos.to_string()),
    ];
    let (wh_nights, night) = two_nights_equal_one_drop(tmp.path(), history, &tonight);
    let months = night.manifest.transaction_months;
    assert_eq!((months.written, months.shared), (1, 1), "{months:?}");
    // Read: of January (the replaced order's), the file holding the order,
    // found by its record key; of February (the receipt's month, which
    // takes the receipt as a new part) and March, nothing (no customer of
    // their rows is touched).
    let read = night.manifest.transactions_read.unwrap();
    assert_eq!(
        (
            read.whole_months,
            read.partial_months,
            read.months,
            read.rows
        ),
        (0, 2, 3, 1),
        "{read:?}"
    );
    assert_eq!(months.appended, 1, "February: {months:?}");
    let ids: BTreeSet<String> = owners(&wh_nights).into_keys().map(|(k, _)| k).collect();
    assert_eq!(ids.len(), 3, "W-2, W-3 and R-9: {ids:?}");
}

/// A CRM record that claims a guest moves the guest's rows in months the
/// night does not otherwise read: those months are written again from their
/// files, with the claiming customer, and equal one drop; of the months it
/// leaves alone, only the claimed guest's rows are read.
#[test]
fn a_claim_rewrites_the_claimed_guests_months_from_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let history = [
        web_order("W-1", "g@example.com", "2025-01-10", "2025-01-10", "paid"),
        web_order("W-2", "g@example.com", "2025-02-10", "2025-02-10", "paid"),
        web_order("W-3", "x@example.com", "2025-02-11", "2025-02-11", "paid"),
        web_order("W-4", "y@example.com", "2025-03-10", "2025-03-10", "paid"),
        web_order("W-5", "y@example.com", "2025-04-10", "2025-04-10", "paid"),
    ]
    .join("\n");
    let crm = "customer_id,email,phone,updated_at\nC-1,g@example.com,,2025-05-01T00:00:00Z\n";
    let tonight = web_order("W-6", "z@example.com", "2025-05-02", "2025-05-02", "paid");
    let tonight = [("crm/c.csv", crm.to_string()), ("web/b.jsonl", tonight)];
    let (wh_nights, night) = two_nights_equal_one_drop(tmp.path(), history, &tonight);
    let owners = owners(&wh_nights);
    for order in ["web:W-1", "web:W-2"] {
        assert_eq!(owners[&(order.to_string(), false)].as_deref(), Some("C-1"));
    }
    // Written: May (tonight's order), January and February (the claim: the
    // file holding the guest's row, renamed); March and April shared. Read:
    // the claimed guest's two rows, nothing else.
    let months = night.manifest.transaction_months;
    assert_eq!((months.written, months.shared), (3, 2), "{months:?}");
    let read = night.manifest.transactions_read.unwrap();
    assert_eq!(
        (
            read.whole_months,
            read.partial_months,
            read.months,
            read.rows
        ),
        (0, 2, 4, 2),
        "{read:?}"
    );
}

/// A customer who only gained purchases after their last transaction is
/// summed from their stored totals, their history unread; one whose stored
/// rows changed tonight (a guest claimed by their CRM record, an order
/// delivered again on another day) is summed from all their rows, even
/// when they also buy tonight. The nights equal one drop either way.
#[test]
fn only_customers_whose_stored_rows_changed_are_summed_from_their_history() {
    let tmp = tempfile::tempdir().unwrap();
    let history = [
        web_order("W-1", "g@example.com", "2025-01-10", "2025-01-10", "paid"),
        web_order("W-2", "r@example.com", "2025-02-10", "2025-02-10", "paid"),
        web_order("W-3", "s@example.com", "2025-03-10", "2025-03-10", "paid"),
    ]
    .join("\n");
    let crm = "customer_id,email,phone,updated_at\nC-1,g@example.com,,2025-05-01T00:00:00Z\n";
    let tonight = [
        // C-1 claims the guest's W-1 and buys.
        web_order("W-4", "g@example.com", "2025-05-02", "2025-05-02", "paid"),
        // W-2 again, moved to May: its February row goes.
        web_order("W-2", "r@example.com", "2025-05-03", "2025-05-03", "paid"),
        // s@ only buys again.
        web_order("W-5", "s@example.com", "2025-05-04", "2025-05-04", "paid"),
    ]
    .join("\n");
    let tonight = [("crm/c.csv", crm.to_string()), ("web/b.jsonl", tonight)];
    let (wh_nights, night) = two_nights_equal_one_drop(tmp.path(), history, &tonight);
    let state = wh_nights.join("current/_state");
    let totals: BTreeMap<String, u64> = {
        let mut t = BTreeMap::new();
        warehouse::purchase_totals::read_each(&state, |r| {
            t.insert(r.customer_id.to_owned(), r.transactions);
        })
        .unwrap();
        t
    };
    assert_eq!(totals.get("C-1"), Some(&2), "{totals:?}");
    assert_eq!(totals.values().sum::<u64>(), 5, "{totals:?}");
    // Read: W-2's February file (its row replaced) and C-1's claimed W-1;
    // not W-3, s@'s history.
    let read = night.manifest.transactions_read.unwrap();
    assert_eq!(read.rows, 2, "{read:?}");
}

/// Nights whose events fall in a month the version holds add them as a new
/// part beside the month's shared files (the month is neither read whole nor
/// written again), find an event delivered again by its key alone, and write
/// the month again whole once it holds `APPEND_PARTS` parts; the nights
/// equal one drop of the same files.
#[test]
fn a_nights_events_are_a_new_part_of_their_month_until_it_holds_too_many() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let event = |n: usize| {
        format!(
            r#"{{"email":"e{n}@example.com","type":"web_visit","ts":"2025-03-{:02}T10:00:00Z"}}"#,
            n % 28 + 1
        )
    };
    let limit = warehouse::months::APPEND_PARTS;
    let (wh, one) = (tmp.path().join("wh"), tmp.path().join("one"));
    let month = wh.join("current/events/month=2025-03");
    let mut files = Vec::new();
    for night in 0..=limit {
        // Tonight's event, and last night's delivered again (a duplicate:
        // one drop of the nights' first deliveries is what they add up to).
        let mut text = event(night);
        let name = format!("events/n{night:02}.jsonl");
        files.push((name.clone(), text.clone()));
        if night > 0 {
            text = format!("{}\n{text}", event(night - 1));
        }
        let drop = tmp.path().join(format!("night-{night:02}"));
        write_drop(&drop, &[(&name, text)]);
        let report = ingest(&drop, &wh);
        let m = &report.manifest;
        let parts = std::fs::read_dir(&month).unwrap().count();
        let appended = night > 0 && night < limit;
        assert_eq!(m.totals.duplicate, u64::from(night > 0), "night {night}");
        assert_eq!(m.event_months.written, 1, "night {night}");
        assert_eq!(
            m.event_months.appended,
            u64::from(appended),
            "night {night}"
        );
        assert_eq!(parts, if appended { night + 1 } else { 1 }, "night {night}");
        if appended {
            let first = std::fs::metadata(month.join("part-00000.parquet")).unwrap();
            assert!(
                first.nlink() >= 2,
                "night {night}: the month's first part is shared"
            );
        }
    }
    let all: Vec<(&str, String)> = files.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    write_drop(&tmp.path().join("all"), &all);
    ingest(&tmp.path().join("all"), &one);
    same_datasets(&datasets(&one), &datasets(&wh));
}

/// Busy nights ingested one by one, the stored version made to look like an
/// earlier cvm's by `earlier` (given its `_state` folder) just before night
/// `at`; checks that they still equal one drop. Returns each night's report
/// and the nightly warehouse.
fn nights_over_an_earlier_version(
    dir: &Path,
    at: usize,
    earlier: impl Fn(&Path),
) -> (Vec<IngestReport>, PathBuf) {
    let split = dir.join("split");
    let nights = busy_drop(&split, 150, 5, 0.0, 3);
    let one = dir.join("one");
    busy_drop(&one, 150, 5, 0.0, 0);
    let (wh_one, wh_nights) = (dir.join("wh-one"), dir.join("wh-nights"));
    ingest(&one, &wh_one);
    let mut reports = Vec::new();
    for (k, night) in nights.iter().enumerate() {
        if k == at {
            earlier(&wh_nights.join("current/_state"));
        }
        reports.push(ingest_with(&split.join(night), &wh_nights, 0.5));
    }
    same_datasets(&datasets(&wh_one), &datasets(&wh_nights));
    (reports, wh_nights)
}

/// A version whose record state keeps no months (an earlier cvm's) is read
/// whole by the next night, which finds the months again from the
/// transactions; the nights after it read only what they need (orders
/// refunded then replace rows in months they find by those months), and
/// every night still equals one drop.
#[test]
fn a_record_state_without_months_is_read_whole_and_gets_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (reports, _) = nights_over_an_earlier_version(tmp.path(), 1, |state| {
        // The table as an earlier cvm wrote it: key, version, digest.
        let rows = warehouse::state::read(state).unwrap();
        let full = warehouse::state::to_batch(&rows);
        let old = std::sync::Arc::new(arrow_schema::Schema::new(
            full.schema().fields()[..3].to_vec(),
        ));
        let batch =
            arrow_array::RecordBatch::try_new(old.clone(), full.columns()[..3].to_vec()).unwrap();
        let path = state.join(warehouse::state::RECORDS_FILE);
        std::fs::remove_file(&path).unwrap();
        let _ = std::fs::remove_file(state.join(warehouse::state::DELTA_FILE));
        warehouse::parquet_io::write_batches(
            &path,
            &old,
            &warehouse::parquet_io::writer_properties(&[]),
            std::iter::once(batch),
        )
        .unwrap();
        assert!(!warehouse::state::knows_months(state).unwrap());
    });
    for (k, r) in reports.iter().enumerate().skip(1) {
        let read = r.manifest.transactions_read;
        assert_eq!(read.is_none(), k == 1, "night {k}: {read:?}");
    }
}

/// A version without the key set tables (an earlier cvm's) has its events
/// read whole and written again, and its transactions read by their keys,
/// with the tables, and still equals one drop.
#[test]
fn a_version_without_the_key_set_tables_is_read_whole_and_gets_them() {
    let tmp = tempfile::tempdir().unwrap();
    let last = 3;
    let (reports, wh_nights) = nights_over_an_earlier_version(tmp.path(), last, |state| {
        for table in [warehouse::event_keysets::FILE, warehouse::txn_keysets::FILE] {
            std::fs::remove_file(state.join(table)).unwrap();
        }
    });
    assert_eq!(reports.len(), last + 1);
    for (k, r) in reports.iter().enumerate().skip(1) {
        let whole = k == last;
        assert_eq!(r.manifest.transactions_read.is_none(), whole, "night {k}");
        for months in [r.manifest.event_months, r.manifest.transaction_months] {
            assert_eq!(months.shared == 0, whole, "night {k}: {months:?}");
        }
    }
    // The table is back, and names the key set of every stored row, so the
    // next night reads the rows by number.
    let cur = wh_nights.join("current");
    let table = warehouse::txn_keysets::read(&cur.join("_state"))
        .unwrap()
        .expect("the transaction key set table is written again");
    let rows = warehouse::transactions::read_numbered(&cur.join("transactions"), &table).unwrap();
    assert!(rows.iter().map(Vec::len).sum::<usize>() > 0);
}

/// An event key set table whose rows do not say which customers are CRM
/// customers (an earlier cvm's) is not carried over: the next night reads
/// the stored events whole and writes the table again, with the flag, and
/// every night still equals one drop; the nights after it carry it over.
#[test]
fn event_key_sets_without_the_crm_flag_are_made_again_from_the_events() {
    let tmp = tempfile::tempdir().unwrap();
    let at = 2;
    let (reports, wh_nights) = nights_over_an_earlier_version(tmp.path(), at, |state| {
        for name in [
            warehouse::event_keysets::FILE,
            warehouse::event_keysets::DELTA_FILE,
        ] {
            let path = state.join(name);
            if path.exists() {
                without_column(&path, "crm");
            }
        }
        assert!(!warehouse::event_keysets::usable(state));
    });
    for (k, r) in reports.iter().enumerate().skip(1) {
        let months = r.manifest.event_months;
        assert_eq!(months.shared == 0, k == at, "night {k}: {months:?}");
    }
    let state = wh_nights.join("current/_state");
    assert!(warehouse::event_keysets::usable(&state));
    let rows = warehouse::event_keysets::read_rows(&state).unwrap();
    assert!(rows.iter().any(|r| r.ends_with("crm=true")), "{rows:?}");
    assert!(rows.iter().any(|r| r.ends_with("crm=false")), "{rows:?}");
}

/// Rewrites the Parquet file `path` without its column `name`.
fn without_column(path: &Path, name: &str) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != name)
        .collect();
    assert!(keep.len() < schema.fields().len(), "no column {name}");
    let schema = std::sync::Arc::new(schema.project(&keep).unwrap());
    // A new file: the old one's inode is shared with other versions.
    std::fs::remove_file(path).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    for b in batches {
        w.write(&b.project(&keep).unwrap()).unwrap();
    }
    w.close().unwrap();
}

/// `cvm-etl ingest` as a process, aborted at `crash_at` when given.
fn ingest_process(input: &Path, wh: &Path, crash_at: Option<&str>) -> std::process::ExitStatus {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvm-etl"));
    c.args(["-q", "ingest", "--input"])
        .arg(input)
        .arg("--warehouse")
        .arg(wh)
        // A night of a few dozen records can reject more than a tenth of them.
        .env("CVM_REJECT_LIMIT", "0.5")
        .env_remove("CVM_TEST_CRASH_AT");
    if let Some(point) = crash_at {
        c.env("CVM_TEST_CRASH_AT", point);
    }
    c.status().unwrap()
}

proptest! {
    // A fixed seed: the same cases every run (tests are deterministic).
    #![proptest_config(ProptestConfig {
        cases: 6,
        rng_seed: proptest::test_runner::RngSeed::Fixed(13),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any history, split into nights, with one earlier night delivered
    /// again later and one night killed mid-publish then re-run, consolidates
    /// to the warehouse of the same records in one drop.
    #[test]
    fn any_nights_with_redeliveries_and_a_killed_publish_equal_one_drop(
        seed in 0u64..10_000,
        customers in 100u64..400,
        days in 3u32..9,
        dirty in prop::sample::select(vec![0.0, 0.03]),
        redeliver in (0usize..9, 0usize..9),
        crash in (0usize..9, prop::sample::select(vec!["before_publish", "before_switch"])),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let (one, split) = (tmp.path().join("one"), tmp.path().join("split"));
        busy_drop(&one, customers, seed, dirty, 0);
        let nights = busy_drop(&split, customers, seed, dirty, days);
        let (wh_one, wh_nights) = (tmp.path().join("wh-one"), tmp.path().join("wh-nights"));
        ingest(&one, &wh_one);
        let last = nights.len() - 1;
        let (again, after) = (redeliver.0.min(last), redeliver.1.min(last));
        let crashed = crash.0.min(last);
        for (k, night) in nights.iter().enumerate() {
            let input = split.join(night);
            if k == crashed {
                let status = ingest_process(&input, &wh_nights, Some(crash.1));
                prop_assert!(!status.success(), "the run killed at {} succeeded", crash.1);
            }
            // A night of a few dozen records can reject more than a tenth of them.
            ingest_with(&input, &wh_nights, 0.5);
            if k == after.max(again) {
                ingest_with(&split.join(&nights[again]), &wh_nights, 0.5);
            }
        }
        let (a, b) = (datasets(&wh_one), datasets(&wh_nights));
        same_datasets(&a, &b);
    }
}

/// A version whose customers and purchase totals are out of id order (as
/// `privacy erase` leaves them: it rewrites ids in place) has them read
/// whole by the next night instead of merged a batch at a time; every night
/// still equals one drop, and the files are in id order again.
#[test]
fn files_out_of_id_order_are_read_whole_and_the_nights_still_equal_one_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, wh_nights) = nights_over_an_earlier_version(tmp.path(), 2, |state| {
        let mut totals = Vec::new();
        warehouse::purchase_totals::read_each(state, |r| {
            totals.push(r.with_id(r.customer_id.to_owned()));
        })
        .unwrap();
        assert!(totals.len() > 1, "the nights made purchase totals");
        totals.reverse();
        // A new file, not the one older versions share.
        std::fs::remove_file(state.join(warehouse::purchase_totals::FILE)).unwrap();
        warehouse::purchase_totals::write(state, &totals)
            .unwrap()
            .unwrap();
        let customers = state.parent().unwrap().join("customers");
        let mut rows = warehouse::customers::read(&customers).unwrap();
        rows.reverse();
        let part = customers.join("part-00000.parquet");
        std::fs::remove_file(&part).unwrap();
        warehouse::parquet_io::write_batches(
            &part,
            &warehouse::customers::schema(),
            &warehouse::parquet_io::writer_properties(&[]),
            [warehouse::customers::to_batch(&rows)],
        )
        .unwrap();
    });
    let cur = wh_nights.join("current");
    let ids: Vec<String> = warehouse::customers::read(&cur.join("customers"))
        .unwrap()
        .into_iter()
        .map(|c| c.customer_id.into())
        .collect();
    assert!(ids.is_sorted() && ids.len() > 1, "{ids:?}");
    let mut totals = Vec::new();
    warehouse::purchase_totals::read_each(&cur.join("_state"), |r| {
        totals.push(r.customer_id.to_owned());
    })
    .unwrap();
    assert!(totals.is_sorted(), "{totals:?}");
}

/// Stored purchase totals with another cvm's columns are summed again for
/// every customer the next night (which then reads the whole history), and
/// that night's version has them all.
#[test]
fn purchase_totals_of_other_columns_are_summed_again_whole() {
    let tmp = tempfile::tempdir().unwrap();
    nights_over_an_earlier_version(tmp.path(), 3, |state| {
        let path = state.join(warehouse::purchase_totals::FILE);
        std::fs::remove_file(&path).unwrap();
        let rows = [warehouse::event_keysets::KeysetRow {
            keys: [Some("C1"), None, None],
            customer: Some("C1"),
            events: 1,
            crm: true,
        }];
        // A file by that name with other columns.
        let other = tempfile::tempdir().unwrap();
        warehouse::event_keysets::write(other.path(), &rows).unwrap();
        std::fs::copy(other.path().join(warehouse::event_keysets::FILE), &path).unwrap();
        assert!(!warehouse::purchase_totals::usable(state));
    });
}
