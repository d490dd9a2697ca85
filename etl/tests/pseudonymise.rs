//! `warehouse.pseudonymise`: the same generated history and daily drops
//! ingested night by night and scored, with the option off and on. On, no dataset, state file, manifest or
//! public reject holds an email, phone or name in clear; the scores are
//! those of the normal run, customer for customer; `load` still gives the
//! database the clear contact details; and a warehouse keeps its mode and key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use cvm_shared::db::models::customers;
use cvm_shared::db::{DbConnection, DbUrl};
use cvm_shared::privacy::scan::{self, Table};
use cvm_shared::privacy::{KeyKind, PrivacyKey};

const KEY: &str = "etl test pseudonymisation key, 32 bytes or more";
const AS_OF: &str = "2026-11-30";

/// `cvm-etl ARGS` with the privacy key, a reject limit the generated
/// dirty records fit under, and `env`.
fn cvm(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("CVM_PRIVACY_KEY", KEY), ("CVM_REJECT_LIMIT", "0.5")];
    all.extend_from_slice(env);
    support::cvm_etl(args, &all)
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The drops `generate --days` wrote under `root`: the history, then each day.
fn nights(root: &Path) -> Vec<PathBuf> {
    let mut days: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "history")
        .collect();
    days.sort();
    std::iter::once(root.join("history")).chain(days).collect()
}

/// Ingest the history and each day of `drops` into `wh` night by night,
/// then score, pseudonymised or not.
fn build(drops: &Path, wh: &Path, pseudonymise: bool) {
    let env = [(
        "CVM_PSEUDONYMISE",
        if pseudonymise { "true" } else { "false" },
    )];
    let nights = nights(drops);
    assert!(nights.len() >= 3, "{nights:?}");
    for night in &nights {
        ok(cvm(
            &["-q", "ingest", "--input", s(night), "--warehouse", s(wh)],
            &env,
        ));
    }
    ok(cvm(
        &["-q", "score", "--warehouse", s(wh), "--as-of", AS_OF],
        &env,
    ));
}

fn all_rows(files: &[PathBuf]) -> Table {
    scan::rows_where(files, |_, _| true).unwrap()
}

fn column<'a>(t: &'a Table, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let i = t.columns.iter().position(|c| c == name).unwrap();
    t.rows.iter().map(move |r| r[i].as_str())
}

/// Every file under `dir`, except the private folder.
fn files_outside_private(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() == "_privacy" {
            continue;
        }
        let meta = std::fs::metadata(&p).unwrap();
        if meta.is_dir() {
            files_outside_private(&p, out);
        } else if meta.is_file() {
            out.push(p);
        }
    }
}

#[test]
fn a_pseudonymised_warehouse_holds_no_personal_data_and_scores_the_same() {
    let d = tempfile::tempdir().unwrap();
    let drop = d.path().join("drop");
    ok(cvm(
        &[
            "-q",
            "generate",
            "--out",
            s(&drop),
            "--customers",
            "400",
            "--seed",
            "11",
            "--dirty-ratio",
            "0.01",
            "--days",
            "3",
        ],
        &[],
    ));
    let (plain, pseudo) = (d.path().join("plain"), d.path().join("pseudo"));
    build(&drop, &plain, false);
    build(&drop, &pseudo, true);

    // What the plain warehouse holds in clear.
    let plain_customers = all_rows(&scan::parquet_files(&plain.join("current/customers")).unwrap());
    let mut personal: HashSet<String> = HashSet::new();
    for c in ["email", "phone", "first_name", "last_name"] {
        personal.extend(
            column(&plain_customers, c)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
        );
    }
    assert!(personal.len() > 500, "{}", personal.len());
    let emails: Vec<&String> = personal.iter().filter(|v| v.contains('@')).collect();
    assert!(!emails.is_empty());

    // No Parquet cell and no other file outside `_privacy/` holds any of it.
    let mut files = Vec::new();
    files_outside_private(&pseudo, &mut files);
    let mut parquet = 0;
    for f in &files {
        if f.extension().is_some_and(|e| e == "parquet") {
            parquet += 1;
            let t = all_rows(std::slice::from_ref(f));
            for r in &t.rows {
                for v in r {
                    assert!(
                        !personal.contains(v) && !v.contains('@'),
                        "{} holds {v:?}",
                        f.display()
                    );
                }
            }
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).to_lowercase();
            for e in &emails {
                assert!(!text.contains(e.as_str()), "{} holds {e}", f.display());
            }
        }
    }
    assert!(parquet > 10, "{parquet} Parquet files checked");

    // The rejects: public ones keep file, line and reason; the clear ones
    // are in the private folder.
    let public = all_rows(&scan::parquet_files(&pseudo.join("runs")).unwrap());
    let private = all_rows(&scan::parquet_files(&pseudo.join("_privacy/runs")).unwrap());
    let plain_rejects = all_rows(&scan::parquet_files(&plain.join("runs")).unwrap());
    assert!(!plain_rejects.rows.is_empty(), "the drop has rejects");
    assert_eq!(public.rows.len(), plain_rejects.rows.len());
    assert!(column(&public, "raw").all(str::is_empty));
    assert_eq!(
        column(&private, "raw").collect::<Vec<_>>(),
        column(&plain_rejects, "raw").collect::<Vec<_>>()
    );

    // Scores: customer for customer the same. CRM ids are kept; a guest's
    // id derives from its smallest key, so guests are paired by the keyed
    // hash of their email or phone.
    let key = PrivacyKey::new(KEY.as_bytes()).unwrap();
    let pseudo_customers =
        all_rows(&scan::parquet_files(&pseudo.join("current/customers")).unwrap());
    let by_hash: HashMap<(String, String), String> = {
        let ids: Vec<&str> = column(&pseudo_customers, "customer_id").collect();
        let mut m = HashMap::new();
        for c in ["email", "phone"] {
            for (id, v) in ids.iter().zip(column(&pseudo_customers, c)) {
                if !v.is_empty() {
                    m.insert((c.to_owned(), v.to_owned()), (*id).to_owned());
                }
            }
        }
        m
    };
    let mut pseudo_id_of: HashMap<String, String> = HashMap::new();
    let ids: Vec<&str> = column(&plain_customers, "customer_id").collect();
    let guest: Vec<&str> = column(&plain_customers, "is_guest").collect();
    let email: Vec<&str> = column(&plain_customers, "email").collect();
    let phone: Vec<&str> = column(&plain_customers, "phone").collect();
    for i in 0..ids.len() {
        let to = if ids[i].starts_with("G-") {
            let (c, kind, v) = if email[i].is_empty() {
                ("phone", KeyKind::Phone, phone[i])
            } else {
                ("email", KeyKind::Email, email[i])
            };
            by_hash[&(c.to_owned(), key.hashed_value(kind, v))].clone()
        } else {
            ids[i].to_owned()
        };
        pseudo_id_of.insert(ids[i].to_owned(), to);
    }
    let scores = |wh: &Path| {
        let t = all_rows(&scan::parquet_files(&wh.join(format!("scores/as_of={AS_OF}"))).unwrap());
        let id = t.columns.iter().position(|c| c == "customer_id").unwrap();
        let rows: HashMap<String, Vec<String>> =
            t.rows.into_iter().map(|mut r| (r.remove(id), r)).collect();
        rows
    };
    let (a, b) = (scores(&plain), scores(&pseudo));
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 400);
    let guests = guest.iter().filter(|g| **g == "true").count();
    assert!(guests > 10, "{guests} guests compared");
    for (id, row) in &a {
        let other = &pseudo_id_of[id];
        assert_eq!(
            Some(row),
            b.get(other),
            "scores of {id} (pseudonymised: {other})"
        );
    }

    // `load` gives the database the clear contact details.
    let db = format!("sqlite://{}", d.path().join("cvm.db").display());
    ok(cvm(
        &["-q", "load", "--warehouse", s(&pseudo), "--db", &db],
        &[("CVM_PSEUDONYMISE", "true")],
    ));
    let mut conn = DbConnection::open_for_write(&DbUrl::parse(&db).unwrap()).unwrap();
    let loaded: HashMap<String, customers::Customer> = customers::all(&mut conn)
        .unwrap()
        .into_iter()
        .map(|c| (c.customer_id.clone(), c))
        .collect();
    let names: Vec<&str> = column(&plain_customers, "first_name").collect();
    let mut checked = 0;
    for i in 0..ids.len() {
        let c = &loaded[&pseudo_id_of[ids[i]]];
        assert_eq!(c.email.as_deref().unwrap_or(""), email[i], "{}", ids[i]);
        assert_eq!(c.phone.as_deref().unwrap_or(""), phone[i], "{}", ids[i]);
        assert_eq!(
            c.first_name.as_deref().unwrap_or(""),
            names[i],
            "{}",
            ids[i]
        );
        checked += 1;
    }
    assert_eq!(checked, loaded.len());

    // A data export gives the person their own data in clear.
    let i = (0..ids.len())
        .find(|&i| ids[i].starts_with('C') && !email[i].is_empty())
        .unwrap();
    let zip_path = d.path().join("export.zip");
    ok(cvm(
        &[
            "-q",
            "privacy",
            "export",
            "--customer",
            ids[i],
            "--warehouse",
            s(&pseudo),
            "--db",
            &db,
            "--out",
            s(&zip_path),
        ],
        &[],
    ));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut part = |name: &str| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name(name).unwrap(), &mut text).unwrap();
        text
    };
    let row = part("warehouse/customers.csv");
    assert!(row.contains(email[i]) && !row.contains("h:"), "{row}");
    let keys = part("keys.json");
    assert!(keys.contains(email[i]) && !keys.contains("h:"), "{keys}");

    // The mode and the key are the warehouse's for good.
    let history = drop.join("history");
    let again = |env: &[(&str, &str)]| {
        cvm(
            &[
                "-q",
                "ingest",
                "--input",
                s(&history),
                "--warehouse",
                s(&pseudo),
            ],
            env,
        )
    };
    let off = again(&[("CVM_PSEUDONYMISE", "false")]);
    assert_eq!(off.status.code(), Some(2));
    let err = String::from_utf8_lossy(&off.stderr);
    assert!(err.contains("warehouse.pseudonymise = true"), "{err}");
    let other_key = again(&[
        ("CVM_PSEUDONYMISE", "true"),
        ("CVM_PRIVACY_KEY", "another key of thirty-two bytes or more"),
    ]);
    assert_eq!(other_key.status.code(), Some(2));
    let err = String::from_utf8_lossy(&other_key.stderr);
    assert!(err.contains("not the key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    ok(again(&[("CVM_PSEUDONYMISE", "true")]));

    // The repair path consolidates the stored (hashed) history the same way.
    let datasets = |wh: &Path| {
        ["customers", "transactions", "events"].map(|d| {
            let mut rows =
                all_rows(&scan::parquet_files(&wh.join("current").join(d)).unwrap()).rows;
            rows.sort();
            rows
        })
    };
    let nightly = datasets(&pseudo);
    let last = nights(&drop).pop().unwrap();
    ok(cvm(
        &[
            "-q",
            "ingest",
            "--input",
            s(&last),
            "--warehouse",
            s(&pseudo),
            "--full-rebuild",
        ],
        &[("CVM_PSEUDONYMISE", "true")],
    ));
    assert!(
        nightly == datasets(&pseudo),
        "a full rebuild changed the pseudonymised datasets"
    );
}
