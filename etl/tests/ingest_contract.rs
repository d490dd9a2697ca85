//! The data contract, row by row: a hand-made drop with every input kind,
//! CSV/JSON quirk and reject reason, ingested through the library with exact
//! expected outcome counts, then re-run, extended by a later drop, and read
//! back from Parquet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use cvm_etl::jobs::ingest::{self, IngestOptions, IngestReport};
use cvm_etl::warehouse::{self, Transaction};
use cvm_shared::Settings;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    if rel.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(p, text).unwrap();
    }
}

/// The drop described in the module doc.
fn contract_drop(root: &Path) {
    write(
        root,
        "fx/rates.csv",
        "currency,rate_to_base\nCNY,0.14\nEUR,1.1\nBAD,abc\n",
    );
    write(
        root,
        "crm/a.csv",
        "\u{feff}updated_at,customer_id,email,phone,first_name,last_name,country,signup_date,birth_date,email_opt_in\r\n\
         2026-01-01T00:00:00Z,C1,Ann@Example.com,+86 138 0000 0001,\"Ann, Jr.\",\"Lee\r\nSmith\",CN,2025-01-01,1990-01-01,yes\r\n\
         2026-01-01T00:00:00Z,C2,bo@example.com,13800000002,Bo,,CN,2025-02-01,,no\r\n\
         2026-02-01T00:00:00Z,C3,shared@example.com,,Cy,,US,,,1\r\n\
         2026-03-01T00:00:00Z,C4,shared@example.com,,Di,,US,,,0\r\n\
         ,C5,,,Prospect,,,,,\r\n\
         2026-01-01T00:00:00Z,,x@example.com,,,,,,,\r\n",
    );
    write(
        root,
        "crm/b.csv",
        "customer_id,email,phone,updated_at,email_opt_in,extra\n\
         C1,ann@example.com,,2025-12-01T00:00:00Z,no,x\n\
         C2,bo@example.com,138-0000-0002,2026-02-01T00:00:00Z,yes,x\n\
         C6,six@example.com,,not-a-date,yes,x\n",
    );
    write(
        root,
        "pos/p.csv",
        "receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\n\
         R1,S1,2026-03-01 10:00:00,C1,,100.00,CNY,sale\n\
         R2,S1,2026-03-02 10:00:00,,138 0000 0002,50,,\n\
         R3,S1,2026-03-03T10:00:00Z,,,20,,sale\n\
         R4,S1,2026-03-03T10:00:00Z,C1,,30,,void\n\
         R5,S1,2026-03-04T10:00:00Z,C1,,-10,,return\n\
         R6,S1,2026-13-01 10:00:00,C1,,10,,\n\
         R7,S1,2026-03-04T10:00:00Z,C1,,ten,,\n\
         R8,S1,2026-03-04T10:00:00Z,C1,,10,XYZ,\n\
         ,S1,2026-03-04T10:00:00Z,C1,,10,,\n\
         R9,S1,2026-03-04T10:00:00Z,C1,,10\n\
         R10,S1,2026-03-05 09:00:00,L-999,,15,,\n",
    );
    write(root, "pos/readme.txt", "not an input");
    write(root, "misc/x.csv", "a\n1\n");
    write(
        root,
        "web/w1.jsonl",
        r#"{"order_id":"W1","customer":{"id":"C3"},"created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-01T10:00:00Z","total":{"amount":"10","currency":"USD"},"status":"pending"}
{"order_id":"W2","customer":{"email":"Shared@Example.com"},"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-02T00:00:00Z","total":{"amount":"25.50","currency":"EUR"},"status":"refunded"}

{"order_id":"W3","customer":{"email":"guest@example.com"},"created_at":"2026-03-03T00:00:00Z","total":{"amount":12.5,"currency":"USD"},"status":"paid"}
[1,2,3]
{"order_id":"W4","customer":{"id":"C1"},"created_at":"2026-03-03T00:00:00Z","total":{"amount":"9","currency":"USD"},"status":"cancelled"}
"#,
    );
    write(
        root,
        "web/w2.jsonl",
        r#"{"order_id":"W1","customer":{"id":"C3"},"created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-05T00:00:00Z","total":{"amount":"10"},"status":"paid"}
"#,
    );
    write(
        root,
        "app/a.jsonl",
        r#"{"txn":"A1","user_email":"guest@example.com","user_phone":"+1 555 000 0001","ts":1772500000,"amount_cents":999,"currency":"USD","kind":"purchase"}
{"txn":"A2","user_phone":"+1 (555) 000-0001","ts":1772600000,"amount_cents":500,"currency":"USD","kind":"refund"}
{"txn":"A3","user_email":"bo@example.com","ts":"x","amount_cents":100,"currency":"USD","kind":"purchase"}
"#,
    );
    write(
        root,
        "transactions/t.csv",
        "customer_id,occurred_at,amount,currency,order_id,channel\n\
         C1,2026-03-10,5.00,,O1,\n\
         C1,2026-03-10,5.00,,O1,\n\
         C1,2026-03-11,-5.00,,O1,\n\
         L-777,2026-03-12T00:00:00Z,0,USD,,\n",
    );
    write(
        root,
        "transactions/t2.csv.gz",
        "customer_id,occurred_at,amount,currency\nC2,2026-03-12,7.25,CNY\n",
    );
    write(
        root,
        "events/e.jsonl",
        r#"{"customer_id":"C1","type":"email_open","ts":"2026-03-01T10:00:00Z"}
{"email":"BO@example.com","type":"web_visit","ts":"2026-03-02T10:00:00Z"}
{"type":"app_open","ts":"2026-03-02T10:00:00Z"}
"#,
    );
}

fn settings(reject_limit: f64) -> Settings {
    let mut s = Settings {
        // A fixed clock: the plausible dates end on the day after it.
        today: chrono::NaiveDate::from_ymd_opt(2026, 6, 30),
        ..Settings::default()
    };
    s.ingest.pos_time_zone = "Asia/Shanghai".into();
    s.ingest.default_country_code = "86".into();
    s.ingest.reject_limit = reject_limit;
    s
}

fn ingest(input: &Path, wh: &Path, reject_limit: f64) -> Result<IngestReport, ingest::IngestError> {
    ingest::run(&IngestOptions {
        input: input.to_path_buf(),
        warehouse: wh.to_path_buf(),
        settings: settings(reject_limit),
        progress: false,
        full_rebuild: false,
    })
}

/// (records, accepted, duplicate, ignored, anonymous, rejected) per file.
fn counts(r: &IngestReport) -> BTreeMap<String, [u64; 6]> {
    r.manifest
        .files
        .iter()
        .map(|f| {
            let c = &f.counts;
            assert!(c.balanced(), "{}: {c:?}", f.file);
            (
                f.file.clone(),
                [
                    c.records,
                    c.accepted,
                    c.duplicate,
                    c.ignored,
                    c.anonymous,
                    c.rejected,
                ],
            )
        })
        .collect()
}

fn txns(wh: &Path) -> Vec<Transaction> {
    warehouse::transactions::read(&wh.join("transactions")).unwrap()
}

fn revenue_of(txns: &[Transaction], customer: &str) -> String {
    let sum: cvm_shared::BaseAmount = txns
        .iter()
        .filter(|t| t.customer_id.as_deref() == Some(customer))
        .map(|t| t.row.amount_base)
        .sum();
    sum.to_string()
}

#[test]
fn every_record_of_the_contract_drop_ends_in_exactly_one_expected_outcome() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    contract_drop(&input);
    let r = ingest(&input, &wh, 1.0).unwrap();
    let want: BTreeMap<String, [u64; 6]> = [
        ("fx/rates.csv", [3, 2, 0, 0, 0, 1]),
        ("crm/a.csv", [6, 4, 1, 0, 0, 1]),
        ("crm/b.csv", [3, 1, 1, 0, 0, 1]),
        ("pos/p.csv", [11, 4, 0, 1, 1, 5]),
        ("web/w1.jsonl", [5, 2, 1, 1, 0, 1]),
        ("web/w2.jsonl", [1, 1, 0, 0, 0, 0]),
        ("app/a.jsonl", [3, 2, 0, 0, 0, 1]),
        ("transactions/t.csv", [4, 4, 0, 0, 0, 0]),
        ("transactions/t2.csv.gz", [1, 1, 0, 0, 0, 0]),
        ("events/e.jsonl", [3, 2, 0, 0, 0, 1]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts(&r), want);
    assert_eq!(r.manifest.status, "published");
    assert_eq!(r.manifest.ignored_files, ["misc", "pos/readme.txt"]);
    let by_reason: Vec<(&str, u64)> = r
        .manifest
        .totals
        .rejected_by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_reason,
        [
            ("bad_amount", 2),
            ("bad_date", 3),
            ("bad_json", 1),
            ("bad_row", 1),
            ("missing_id", 3),
            ("unknown_currency", 1)
        ]
    );

    // Rejects: file, physical line, reason and raw text.
    let rejects = warehouse::rejects::read(&r.run_dir.join("rejects.parquet")).unwrap();
    let got: Vec<(String, u64, &str)> = rejects
        .iter()
        .map(|x| (x.source_file.to_string(), x.line, x.reason.as_str()))
        .collect();
    assert!(
        got.contains(&("crm/a.csv".into(), 8, "missing_id")),
        "{got:?}"
    );
    assert!(
        got.contains(&("pos/p.csv".into(), 11, "bad_row")),
        "{got:?}"
    );
    assert!(
        got.contains(&("web/w1.jsonl".into(), 5, "bad_json")),
        "blank JSONL lines count: {got:?}"
    );
    assert!(
        rejects
            .iter()
            .any(|x| &*x.raw == "R9,S1,2026-03-04T10:00:00Z,C1,,10")
    );

    // The warehouse.
    let w = &r.manifest.warehouse;
    assert_eq!((w.crm_customers, w.guests, w.customers), (5, 3, 8));
    assert_eq!(
        (w.transactions, w.anonymous_transactions, w.events),
        (16, 1, 2)
    );
    assert_eq!(w.crm_key_conflicts, 1);
    let t = txns(&wh);
    // R1 100 CNY at 0.14, R5 return 10, two identical generic rows, their refund.
    assert_eq!(revenue_of(&t, "C1"), "9");
    assert_eq!(revenue_of(&t, "C4"), "0", "W2 refunded in full (EUR)");
    assert_eq!(
        revenue_of(&t, "C2"),
        "51.015",
        "R2 by national phone + 7.25 CNY"
    );
    assert_eq!(revenue_of(&t, "C3"), "10", "W1 latest version paid");
    assert_eq!(
        revenue_of(&t, "L-999"),
        "15",
        "a loyalty card not in CRM keeps its id"
    );
    let guest = cvm_shared::identity::guest_id("email:guest@example.com");
    assert_eq!(
        revenue_of(&t, &guest),
        "17.49",
        "email and phone joined into one guest"
    );
    let w2: Vec<_> = t.iter().filter(|x| x.order_id() == Some("W2")).collect();
    assert_eq!(w2.len(), 2);
    assert_eq!(
        w2.iter()
            .find(|x| x.row.kind == cvm_shared::TxnKind::Refund)
            .unwrap()
            .row
            .occurred_at,
        1_772_409_600_000_000
    );
    let r1 = t.iter().find(|x| x.transaction_id().is("pos:R1")).unwrap();
    assert_eq!(
        r1.row.occurred_at, 1_772_330_400_000_000,
        "10:00 Shanghai is 02:00 UTC"
    );

    let customers = warehouse::customers::read(&wh.join("customers")).unwrap();
    let c1 = customers.iter().find(|c| &*c.customer_id == "C1").unwrap();
    assert_eq!(c1.first_name.as_deref(), Some("Ann, Jr."));
    assert_eq!(c1.last_name.as_deref(), Some("Lee\r\nSmith"));
    assert!(c1.email_opt_in);
    let c2 = customers.iter().find(|c| &*c.customer_id == "C2").unwrap();
    assert!(c2.email_opt_in, "the later CRM row wins");
    // An event's customer is its key set's.
    let mut c2_events = 0;
    warehouse::events::count_in_window(&wh.join("current"), i64::MIN, i64::MAX, |c, n| {
        if c == "C2" {
            c2_events += n;
        }
    })
    .unwrap();
    assert_eq!(c2_events, 1, "event by email resolves");
}

#[test]
fn rerunning_the_same_drop_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    contract_drop(&input);
    let first = ingest(&input, &wh, 1.0).unwrap();
    let version = std::fs::read_link(wh.join("current")).unwrap();
    let before = txns(&wh);
    let again = ingest(&input, &wh, 1.0).unwrap();
    assert_eq!(again.manifest.status, "unchanged");
    assert_eq!(again.manifest.totals.accepted, 2, "only the fx rows");
    assert_eq!(again.manifest.totals.records, first.manifest.totals.records);
    assert_eq!(std::fs::read_link(wh.join("current")).unwrap(), version);
    assert_eq!(txns(&wh), before);
}

#[test]
fn a_generic_transaction_delivered_again_in_a_later_drop_is_a_duplicate_whatever_else_it_holds() {
    let d = tempfile::tempdir().unwrap();
    let wh = d.path().join("wh");
    let (first, later) = (d.path().join("first"), d.path().join("later"));
    // Tonight (`later`): a copy of a January row under another file name, a
    // new March row, and a POS receipt; the copy meets the stored January rows.
    let files = [
        (
            &first,
            "transactions/t1.csv",
            "customer_id,occurred_at,amount\n\
             C1,2026-01-05,10.00\n\
             C1,2026-01-05,10.00\n\
             C2,2026-02-10,5.00\n",
        ),
        (
            &later,
            "transactions/t2.csv",
            "customer_id,occurred_at,amount\n\
             C1,2026-01-05,10.00\n\
             C3,2026-03-01,7.00\n",
        ),
        (
            &later,
            "pos/p.csv",
            "receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\n\
             R1,S1,2026-03-02 10:00:00,C1,,3.00,,\n",
        ),
    ];
    for (root, rel, text) in files {
        write(root, rel, text);
    }
    ingest(&first, &wh, 1.0).unwrap();
    let r = ingest(&later, &wh, 1.0).unwrap();
    let c = counts(&r);
    assert_eq!(c["transactions/t2.csv"], [2, 1, 1, 0, 0, 0], "{c:?}");
    assert_eq!(c["pos/p.csv"], [1, 1, 0, 0, 0, 0], "{c:?}");
    assert_eq!(txns(&wh).len(), 5);
}

#[test]
fn a_later_drop_adds_history_without_counting_twice() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    contract_drop(&input);
    ingest(&input, &wh, 1.0).unwrap();

    let later = d.path().join("later");
    write(
        &later,
        "pos/p2.csv",
        "receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\n\
         R1,S1,2026-03-01 10:00:00,C1,,100.00,CNY,sale\n\
         R11,S1,2026-04-01 10:00:00,C1,,1,,\n",
    );
    write(
        &later,
        "web/w.jsonl",
        r#"{"order_id":"W3","customer":{"email":"guest@example.com"},"created_at":"2026-03-03T00:00:00Z","updated_at":"2026-04-02T00:00:00Z","total":{"amount":12.5,"currency":"USD"},"status":"refunded"}
{"order_id":"W1","customer":{"id":"C3"},"created_at":"2026-03-01T10:00:00Z","updated_at":"2026-03-01T10:00:00Z","total":{"amount":"10","currency":"USD"},"status":"pending"}
"#,
    );
    write(
        &later,
        "crm/new.csv",
        "customer_id,email,updated_at\nC7,guest@example.com,2026-04-01T00:00:00Z\n",
    );
    let r = ingest(&later, &wh, 0.01).unwrap();
    let c = counts(&r);
    assert_eq!(c["pos/p2.csv"], [2, 1, 1, 0, 0, 0], "R1 already stored");
    assert_eq!(
        c["web/w.jsonl"],
        [2, 1, 1, 0, 0, 0],
        "W3 newer, W1 older than stored"
    );
    let t = txns(&wh);
    assert_eq!(t.len(), 16 + 1 + 1, "R11 and the refund of W3");
    assert_eq!(revenue_of(&t, "C1"), "10");
    assert_eq!(
        revenue_of(&t, "C3"),
        "10",
        "an older re-delivery does not win"
    );
    // The guest's email purchases now belong to the new CRM customer: W3
    // (refunded) and A1. A2 named only the phone, which no CRM record has, so
    // it stays a guest: keys map through CRM records, not through other purchases.
    assert_eq!(revenue_of(&t, "C7"), "9.99");
    let phone_guest = cvm_shared::identity::guest_id("phone:+15550000001");
    assert_eq!(revenue_of(&t, &phone_guest), "-5");
    let w = &r.manifest.warehouse;
    assert_eq!((w.crm_customers, w.guests), (6, 3));
}

#[test]
fn a_run_over_the_reject_limit_publishes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (d.path().join("drop"), d.path().join("wh"));
    contract_drop(&input);
    let err = ingest(&input, &wh, 0.01).unwrap_err();
    assert!(
        matches!(
            err,
            ingest::IngestError::RejectLimit {
                rejected: 11,
                records: 40,
                ..
            }
        ),
        "{err}"
    );
    assert!(!wh.join("current").exists());
    assert!(!wh.join("transactions").exists());
    let runs: Vec<_> = std::fs::read_dir(wh.join("runs")).unwrap().collect();
    assert_eq!(
        runs.len(),
        1,
        "the failed run keeps its manifest and rejects for inspection"
    );
}

/// Ingests a drop made of `files` with the contract's settings (no reject limit).
fn ingest_files(root: &Path, files: &[(&str, &str)]) -> IngestReport {
    let (input, wh) = (root.join("drop"), root.join("wh"));
    for (rel, text) in files {
        write(&input, rel, text);
    }
    ingest(&input, &wh, 1.0).unwrap()
}

#[test]
fn a_crm_export_with_lone_quotes_in_names_keeps_all_five_customers() {
    let d = tempfile::tempdir().unwrap();
    let r = ingest_files(
        d.path(),
        &[(
            "crm/c.csv",
            "customer_id,first_name,last_name,email\n\
             C1,Dwayne \"The Rock\",Johnson,dwayne@example.com\n\
             C2,Ann,Lee,ann@example.com\n\
             C3,Pat,O\"Neil,pat@example.com\n\
             C4,Bo,Chen,bo@example.com\n\
             C5,Cy,Smith,cy@example.com\n",
        )],
    );
    assert_eq!(counts(&r)["crm/c.csv"], [5, 5, 0, 0, 0, 0]);
    let customers = warehouse::customers::read(&d.path().join("wh/current/customers")).unwrap();
    let name = |id: &str| {
        let c = customers.iter().find(|c| &*c.customer_id == id).unwrap();
        (
            c.first_name.as_deref().map(String::from),
            c.last_name.as_deref().map(String::from),
        )
    };
    assert_eq!(name("C1").0.as_deref(), Some("Dwayne \"The Rock\""));
    assert_eq!(name("C3").1.as_deref(), Some("O\"Neil"));
    assert_eq!(name("C5").1.as_deref(), Some("Smith"));
}

#[test]
fn a_nul_in_an_id_is_bad_value_and_makes_no_guest() {
    let d = tempfile::tempdir().unwrap();
    let r = ingest_files(
        d.path(),
        &[
            (
                "pos/p.csv",
                "receipt_id,purchased_at,customer_id,total\n\
                 R1,2026-03-01T10:00:00Z,C00000001,5\n\
                 R2,2026-03-01T10:00:00Z,C00000002\0,5\n",
            ),
            (
                "web/w.jsonl",
                r#"{"order_id":"W1","customer":{"id":"C00000002\u0000"},"created_at":"2026-03-01T00:00:00Z","total":{"amount":"5","currency":"USD"},"status":"paid"}
"#,
            ),
        ],
    );
    assert_eq!(counts(&r)["pos/p.csv"], [2, 1, 0, 0, 0, 1]);
    assert_eq!(counts(&r)["web/w.jsonl"], [1, 0, 0, 0, 0, 1]);
    assert_eq!(r.manifest.totals.rejected_by_reason["bad_value"], 2);
    assert_eq!(r.manifest.warehouse.guests, 1, "only C00000001");
}

#[test]
fn record_times_outside_the_plausible_dates_are_bad_date() {
    // The contract settings' clock reads 2026-06-30: the last plausible day is 2026-07-01.
    let d = tempfile::tempdir().unwrap();
    let r = ingest_files(
        d.path(),
        &[
            (
                "transactions/t.csv",
                "customer_id,occurred_at,amount\n\
                 C1,1997-01-01,1\n\
                 C1,2026-07-01T23:59:59Z,1\n\
                 C1,2026-07-02,1\n\
                 C1,0000-01-01,1\n\
                 C1,9999-12-31,1\n\
                 C1,2026-03-01T23:59:60Z,1\n",
            ),
            (
                "web/w.jsonl",
                r#"{"order_id":"W1","customer":{"id":"C1"},"created_at":"2026-03-02T00:00:00Z","updated_at":"2026-03-01T00:00:00Z","total":{"amount":"5","currency":"USD"},"status":"paid"}
"#,
            ),
        ],
    );
    assert_eq!(counts(&r)["transactions/t.csv"], [6, 2, 0, 0, 0, 4]);
    assert_eq!(counts(&r)["web/w.jsonl"], [1, 0, 0, 0, 0, 1]);
    assert_eq!(r.manifest.totals.rejected_by_reason["bad_date"], 5);
}

#[test]
fn an_identical_repeated_fx_rate_is_a_duplicate() {
    let d = tempfile::tempdir().unwrap();
    let r = ingest_files(
        d.path(),
        &[
            (
                "fx/rates.csv",
                "currency,rate_to_base\nEUR,1.08\nCNY,0.14\neur,1.080\n",
            ),
            (
                "transactions/t.csv",
                "customer_id,occurred_at,amount,currency\nC1,2026-03-01,10,EUR\n",
            ),
        ],
    );
    assert_eq!(counts(&r)["fx/rates.csv"], [3, 2, 1, 0, 0, 0]);
    assert_eq!(revenue_of(&txns(&d.path().join("wh")), "C1"), "10.8");
}

#[test]
fn the_cdnow_dataset_ingests_without_rejects() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("drop");
    std::fs::create_dir_all(input.join("transactions")).unwrap();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cdnow/transactions.csv");
    std::fs::copy(&src, input.join("transactions/cdnow.csv")).unwrap();
    let r = ingest::run(&IngestOptions {
        input,
        warehouse: d.path().join("wh"),
        settings: Settings::default(),
        progress: false,
        full_rebuild: false,
    })
    .unwrap();
    assert_eq!(r.manifest.totals.rejected, 0);
    assert_eq!(r.manifest.totals.accepted, 69_659);
    assert_eq!(r.manifest.warehouse.transactions, 69_659);
    assert_eq!(r.manifest.warehouse.customers, 23_570);
}
