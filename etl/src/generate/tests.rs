#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;

use super::*;

fn opts(customers: u64, seed: u64, dirty: f64) -> GenerateOptions {
    GenerateOptions {
        customers,
        seed,
        dirty_ratio: dirty,
        ..GenerateOptions::default()
    }
}

/// Every file of a drop: relative path -> bytes (decompressed when gzip).
fn read_drop(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        let sub = sub.unwrap();
        for f in std::fs::read_dir(sub.path()).unwrap() {
            let f = f.unwrap();
            let name = format!(
                "{}/{}",
                sub.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            let raw = std::fs::read(f.path()).unwrap();
            let bytes = if name.ends_with(".gz") {
                let mut s = Vec::new();
                flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut s)
                    .unwrap();
                s
            } else {
                raw
            };
            out.insert(name.trim_end_matches(".gz").to_string(), bytes);
        }
    }
    out
}

fn hashes(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for sub in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            out.insert(
                p.strip_prefix(dir).unwrap().display().to_string(),
                xxhash_rust::xxh3::xxh3_64(&std::fs::read(&p).unwrap()),
            );
        }
    }
    out
}

const CURRENCIES: [&str; 5] = ["USD", "EUR", "CNY", "GBP", "JPY"];

fn time_ok(s: &str) -> bool {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
        || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

fn money_ok(s: &str) -> bool {
    s.trim().parse::<cvm_shared::Amount>().is_ok()
}

fn currency_ok(s: &str, empty_is_base: bool) -> bool {
    let s = s.trim();
    (empty_is_base && s.is_empty()) || CURRENCIES.contains(&s.to_ascii_uppercase().as_str())
}

fn nonempty(v: Option<&serde_json::Value>) -> bool {
    matches!(v, Some(serde_json::Value::String(s)) if !s.trim().is_empty())
}

/// An independent reading of the contract: the reason a record is bad, if it is.
fn classify_json(kind: &str, line: &str) -> Option<&'static str> {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return Some("bad_json"),
    };
    match kind {
        "web" => {
            if !nonempty(v.get("order_id")) {
                return Some("missing_id");
            }
            let status = v["status"].as_str().unwrap();
            assert!(
                ["paid", "refunded", "cancelled", "pending"].contains(&status),
                "{line}"
            );
            assert!(
                v["customer"]["id"].is_string() || v["customer"]["email"].is_string(),
                "{line}"
            );
            assert!(
                chrono::DateTime::parse_from_rfc3339(v["updated_at"].as_str().unwrap()).is_ok(),
                "{line}"
            );
            if chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).is_err() {
                return Some("bad_date");
            }
            let amount = match &v["total"]["amount"] {
                serde_json::Value::String(s) => s.clone(),
                n => n.to_string(),
            };
            if !money_ok(&amount) {
                return Some("bad_amount");
            }
            if !currency_ok(v["total"]["currency"].as_str().unwrap(), false) {
                return Some("unknown_currency");
            }
            None
        }
        "app" => {
            if !nonempty(v.get("txn")) {
                return Some("missing_id");
            }
            assert!(v["ts"].is_i64() && v["amount_cents"].is_i64(), "{line}");
            assert!(
                nonempty(v.get("user_email")) || nonempty(v.get("user_phone")),
                "{line}"
            );
            assert!(
                ["purchase", "refund"].contains(&v["kind"].as_str().unwrap()),
                "{line}"
            );
            if !currency_ok(v["currency"].as_str().unwrap(), false) {
                return Some("unknown_currency");
            }
            None
        }
        "events" => {
            if !nonempty(v.get("customer_id")) && !nonempty(v.get("email")) {
                return Some("missing_id");
            }
            assert!(v["type"].is_string(), "{line}");
            if chrono::DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).is_err() {
                return Some("bad_date");
            }
            None
        }
        other => panic!("unexpected JSONL folder {other}"),
    }
}

fn classify_csv(
    kind: &str,
    header: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Option<&'static str> {
    if row.len() != header.len() {
        return Some("bad_row");
    }
    let get = |c: &str| {
        header
            .iter()
            .position(|h| h == c)
            .map(|i| row[i].trim())
            .unwrap_or("")
    };
    match kind {
        "crm" => get("customer_id").is_empty().then_some("missing_id"),
        "pos" => {
            if get("receipt_id").is_empty() {
                Some("missing_id")
            } else if get("status") == "void" {
                None
            } else if !time_ok(get("purchased_at")) {
                Some("bad_date")
            } else if !money_ok(get("total")) {
                Some("bad_amount")
            } else if !currency_ok(get("currency"), false) {
                Some("unknown_currency")
            } else {
                None
            }
        }
        "transactions" => {
            let t = get("occurred_at");
            if get("customer_id").is_empty() {
                Some("missing_id")
            } else if !(chrono::DateTime::parse_from_rfc3339(t).is_ok()
                || chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok())
            {
                Some("bad_date")
            } else if !money_ok(get("amount")) {
                Some("bad_amount")
            } else if !currency_ok(get("currency"), true) {
                Some("unknown_currency")
            } else {
                None
            }
        }
        "fx" => None,
        other => panic!("unexpected CSV folder {other}"),
    }
}

/// Reads a drop back: records per file and bad records per reason, by the test's own reading.
fn audit(dir: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut records = BTreeMap::new();
    let mut bad = BTreeMap::new();
    for (name, bytes) in read_drop(dir) {
        let kind = name.split('/').next().unwrap().to_string();
        let mut n = 0;
        if name.ends_with(".csv") {
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(&bytes[..]);
            let header = rdr.headers().unwrap().clone();
            assert!(
                !header[0].starts_with('\u{feff}'),
                "{name}: BOM left in header"
            );
            for row in rdr.records() {
                let row = row.unwrap();
                n += 1;
                if let Some(r) = classify_csv(&kind, &header, &row) {
                    *bad.entry(r.to_string()).or_insert(0) += 1;
                }
            }
        } else {
            for line in std::str::from_utf8(&bytes).unwrap().lines() {
                if line.trim().is_empty() {
                    continue;
                }
                n += 1;
                if let Some(r) = classify_json(&kind, line) {
                    *bad.entry(r.to_string()).or_insert(0) += 1;
                }
            }
        }
        records.insert(name, n);
    }
    (records, bad)
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = generate(a.path(), &opts(300, 7, 0.03)).unwrap();
    let sb = generate(b.path(), &opts(300, 7, 0.03)).unwrap();
    generate(c.path(), &opts(300, 8, 0.03)).unwrap();
    assert_eq!(sa, sb);
    let (ha, hb, hc) = (hashes(a.path()), hashes(b.path()), hashes(c.path()));
    assert_eq!(ha, hb);
    assert_eq!(ha.keys().collect::<Vec<_>>(), hc.keys().collect::<Vec<_>>());
    assert!(
        ha.iter()
            .filter(|(k, _)| !k.starts_with("fx/"))
            .all(|(k, h)| hc[k] != *h)
    );
}

#[test]
fn gzip_holds_the_same_text() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = generate(a.path(), &opts(120, 3, 0.02)).unwrap();
    let gz = generate(b.path(), &opts(120, 3, 0.02).with_gzip()).unwrap();
    assert!(gz.files.iter().all(|(f, _)| f.ends_with(".gz")));
    assert_eq!(read_drop(a.path()), read_drop(b.path()));
    assert_eq!(plain.records, gz.records);
    assert_eq!(plain.bad_by_reason, gz.bad_by_reason);
}

impl GenerateOptions {
    fn with_gzip(mut self) -> Self {
        self.gzip = true;
        self
    }
}

#[test]
fn a_clean_drop_has_no_bad_record_and_every_file_kind() {
    let d = tempfile::tempdir().unwrap();
    let s = generate(d.path(), &opts(300, 42, 0.0)).unwrap();
    assert!(s.bad_by_reason.is_empty());
    let (records, bad) = audit(d.path());
    assert!(bad.is_empty(), "{bad:?}");
    let files: BTreeMap<String, u64> = s.files.iter().cloned().collect();
    assert_eq!(records, files);
    for kind in [
        "crm/",
        "pos/",
        "web/",
        "app/",
        "transactions/",
        "events/",
        "fx/rates.csv",
    ] {
        assert!(
            records.iter().any(|(f, n)| f.starts_with(kind) && *n > 0),
            "no {kind} records"
        );
    }
    assert_eq!(s.customers, 300);
    assert!(s.prospects > 5 && s.prospects < 70, "{}", s.prospects);
    assert!(s.guests > 0);
    assert!(s.crm_key_conflicts <= 10);
    let o = &s.outcomes;
    assert_eq!(o["crm"].accepted, 300);
    assert!(
        o["crm"].duplicate > 0 && o["pos"].anonymous > 0 && o["pos"].ignored > 0,
        "{o:?}"
    );
    assert!(o["web"].duplicate > 0 && o["web"].ignored > 0, "{o:?}");
    for (kind, counts) in o {
        let n: u64 = records
            .iter()
            .filter(|(f, _)| f.starts_with(&format!("{kind}/")))
            .map(|f| f.1)
            .sum();
        assert_eq!(counts.total(), n, "{kind}");
    }
    assert!(s.records > 300 * 6, "{}", s.records);
}

#[test]
fn a_dirty_drop_has_every_reason_counted_exactly() {
    let d = tempfile::tempdir().unwrap();
    let s = generate(d.path(), &opts(300, 42, 0.05)).unwrap();
    let (records, bad) = audit(d.path());
    assert_eq!(bad, s.bad_by_reason);
    for r in [
        "bad_date",
        "bad_amount",
        "unknown_currency",
        "missing_id",
        "bad_json",
        "bad_row",
    ] {
        assert!(
            s.bad_by_reason.get(r).copied().unwrap_or(0) > 0,
            "{r} missing: {:?}",
            s.bad_by_reason
        );
    }
    let total_bad: u64 = s.bad_by_reason.values().sum();
    let share = total_bad as f64 / s.records as f64;
    assert!((0.035..0.065).contains(&share), "{share}");
    let rejected: u64 = s.outcomes.values().map(|o| o.rejected).sum();
    assert_eq!(rejected, total_bad);
    assert_eq!(records.values().sum::<u64>(), s.records);
}

#[test]
fn quirks_of_real_feeds_are_present() {
    let d = tempfile::tempdir().unwrap();
    generate(d.path(), &opts(300, 1, 0.0)).unwrap();
    let raw = |p: &str| std::fs::read(d.path().join(p)).unwrap();
    assert!(raw("pos/part-00000.csv").starts_with(b"\xEF\xBB\xBF"));
    assert!(raw("pos/part-00001.csv").windows(2).any(|w| w == b"\r\n"));
    assert!(raw("pos/part-00002.csv").starts_with(b"total,currency,receipt_id"));
    assert!(raw("pos/part-00003.csv").starts_with(
        b"receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status,cashier"
    ));
    let crm = String::from_utf8(raw("crm/customers.csv")).unwrap();
    assert!(crm.contains("\"Anne\nMarie\""));
    let web = String::from_utf8(raw("web/updates-00000.jsonl")).unwrap();
    assert!(!web.is_empty());
}

#[test]
fn bad_options_and_used_folders_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let err = generate(d.path(), &opts(10, 1, 0.9))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("dirty ratio") && err.contains(&d.path().display().to_string()),
        "{err}"
    );
    let all_days = GenerateOptions {
        days: 731,
        ..opts(10, 1, 0.0)
    };
    let err = generate(d.path(), &all_days).unwrap_err().to_string();
    assert!(err.contains("731 daily drops leave no history"), "{err}");
    std::fs::write(d.path().join("x"), "").unwrap();
    let err = generate(d.path(), &opts(10, 1, 0.0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
}

#[test]
fn an_empty_population_is_just_the_headers_and_rates() {
    let d = tempfile::tempdir().unwrap();
    let s = generate(d.path(), &opts(0, 1, 0.0)).unwrap();
    assert_eq!(
        s.files,
        [
            ("crm/customers.csv".to_string(), 0),
            ("fx/rates.csv".to_string(), 4)
        ]
    );
}

#[test]
fn the_ingest_agrees_with_the_generators_truth() {
    for (seed, gz) in [(11, false), (12, true)] {
        ingest_check(seed, gz);
    }
}

fn ingest_check(seed: u64, gzip: bool) {
    let d = tempfile::tempdir().unwrap();
    let drop = d.path().join("drop");
    let s = generate(
        &drop,
        &GenerateOptions {
            gzip,
            ..opts(300, seed, 0.05)
        },
    )
    .unwrap();
    let mut settings = cvm_shared::Settings::default();
    settings.ingest.reject_limit = 1.0;
    let report = crate::jobs::ingest::run(&crate::jobs::ingest::IngestOptions {
        input: drop.clone(),
        warehouse: d.path().join("wh"),
        settings,
        progress: false,
        full_rebuild: false,
    })
    .unwrap();
    let m = &report.manifest;
    assert_eq!(m.totals.rejected_by_reason, s.bad_by_reason);
    assert_eq!(m.totals.records, s.records);
    let mut by_kind: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
    for f in &m.files {
        let o = by_kind.entry(f.kind.clone()).or_default();
        o.add(&OutcomeCounts {
            accepted: f.counts.accepted,
            duplicate: f.counts.duplicate,
            ignored: f.counts.ignored,
            anonymous: f.counts.anonymous,
            rejected: f.counts.rejected,
        });
    }
    assert_eq!(by_kind, s.outcomes);
    let w = &m.warehouse;
    assert_eq!(w.transactions, s.consolidated_transactions);
    assert_eq!(w.crm_customers, s.outcomes["crm"].accepted);
    assert_eq!(w.crm_key_conflicts, s.crm_key_conflicts);
}
