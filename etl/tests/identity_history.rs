//! A CRM customer keeps the emails and phones of its superseded CRM versions
//! (data contract, section 5): purchases made with an earlier key stay with
//! the customer, whether the versions come in one drop or night after night,
//! in any order; a key a later CRM record takes over moves to that customer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use cvm_etl::jobs::ingest::{self, IngestOptions, IngestReport};
use cvm_etl::warehouse;

/// One night's drop: CRM rows (`customer_id,email,phone,updated_at`) and app
/// purchases as (`txn`, email, phone).
struct Night {
    name: &'static str,
    crm: &'static [&'static str],
    purchases: &'static [(&'static str, &'static str, &'static str)],
}

fn write_night(root: &Path, n: &Night) {
    let crm = root.join("crm");
    let app = root.join("app");
    std::fs::create_dir_all(&crm).unwrap();
    std::fs::create_dir_all(&app).unwrap();
    let mut text = String::from("customer_id,email,phone,updated_at\n");
    for row in n.crm {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(crm.join(format!("{}.csv", n.name)), text).unwrap();
    let mut lines = String::new();
    for (i, (txn, email, phone)) in n.purchases.iter().enumerate() {
        lines.push_str(&format!(
            r#"{{"txn":"{txn}","user_email":"{email}","user_phone":"{phone}","ts":{},"amount_cents":1000,"currency":"USD","kind":"purchase"}}"#,
            1_772_500_000 + i
        ));
        lines.push('\n');
    }
    std::fs::write(app.join(format!("{}.jsonl", n.name)), lines).unwrap();
}

fn ingest(input: &Path, wh: &Path) -> IngestReport {
    ingest::run(&IngestOptions::new(input.to_path_buf(), wh.to_path_buf())).unwrap()
}

/// Each purchase's customer (`None`: a guest), by `txn`.
fn owners(wh: &Path) -> BTreeMap<String, Option<String>> {
    let guests: Vec<String> = warehouse::customers::read(&wh.join("customers"))
        .unwrap()
        .into_iter()
        .filter(|c| c.is_guest)
        .map(|c| c.customer_id.into())
        .collect();
    warehouse::transactions::read(&wh.join("transactions"))
        .unwrap()
        .into_iter()
        .map(|t| {
            let id = t.customer_id.as_deref().map(String::from).unwrap();
            let crm = (!guests.contains(&id)).then_some(id);
            (t.source_id().unwrap().to_string(), crm)
        })
        .collect()
}

/// Ingests the nights as one drop and one after the other (in both orders),
/// checks the three warehouses resolve every purchase alike, and returns that.
fn resolved(nights: &[Night]) -> BTreeMap<String, Option<String>> {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    for n in nights {
        write_night(&one, n);
    }
    ingest(&one, &d.path().join("wh-one"));
    let want = owners(&d.path().join("wh-one"));
    for (label, order) in [("in order", false), ("reversed", true)] {
        let wh = d.path().join(format!("wh-{label}"));
        let mut seq: Vec<&Night> = nights.iter().collect();
        if order {
            seq.reverse();
        }
        for n in seq {
            let input = d.path().join(format!("{label}-{}", n.name));
            write_night(&input, n);
            let r = ingest(&input, &wh);
            assert_eq!(r.manifest.status, "published", "{label}, {}", n.name);
        }
        assert_eq!(owners(&wh), want, "nights {label} vs one drop");
    }
    want
}

fn expect(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(t, c)| (t.to_string(), c.map(String::from)))
        .collect()
}

#[test]
fn a_customer_who_changes_phone_keeps_the_purchases_made_with_the_old_one() {
    let got = resolved(&[
        Night {
            name: "night1",
            crm: &["C1,c1@example.com,+15550000001,2026-01-01T00:00:00Z"],
            purchases: &[("A1", "", "+15550000001")],
        },
        Night {
            name: "night2",
            crm: &["C1,c1@example.com,+15550000002,2026-02-01T00:00:00Z"],
            purchases: &[("A2", "", "+15550000001"), ("A3", "", "+15550000002")],
        },
    ]);
    assert_eq!(
        got,
        expect(&[("A1", Some("C1")), ("A2", Some("C1")), ("A3", Some("C1"))])
    );
}

#[test]
fn a_customer_who_changes_email_keeps_the_purchases_made_with_the_old_one() {
    let got = resolved(&[
        Night {
            name: "night1",
            crm: &["C1,old@example.com,,2026-01-01T00:00:00Z"],
            purchases: &[("A1", "Old@Example.com", "")],
        },
        Night {
            name: "night2",
            crm: &["C1,new@example.com,,2026-02-01T00:00:00Z"],
            purchases: &[("A2", "old@example.com", ""), ("A3", "new@example.com", "")],
        },
    ]);
    assert_eq!(
        got,
        expect(&[("A1", Some("C1")), ("A2", Some("C1")), ("A3", Some("C1"))])
    );
}

#[test]
fn a_key_another_crm_customer_takes_over_moves_to_that_customer() {
    let got = resolved(&[
        Night {
            name: "night1",
            crm: &[
                "C1,c1@example.com,+15550000001,2026-01-01T00:00:00Z",
                "C2,c2@example.com,+15550000009,2026-01-01T00:00:00Z",
            ],
            purchases: &[("A1", "", "+15550000001")],
        },
        Night {
            name: "night2",
            crm: &[
                "C1,c1@example.com,+15550000002,2026-02-01T00:00:00Z",
                "C2,c2@example.com,+15550000001,2026-03-01T00:00:00Z",
            ],
            purchases: &[("A2", "", "+15550000001"), ("A3", "", "+15550000009")],
        },
    ]);
    // A3 used C2's old phone, which no latest record carries: still C2.
    assert_eq!(
        got,
        expect(&[("A1", Some("C2")), ("A2", Some("C2")), ("A3", Some("C2"))])
    );
}

#[test]
fn a_key_no_latest_record_carries_goes_to_its_most_recent_carrier() {
    let got = resolved(&[
        Night {
            name: "night1",
            crm: &[
                "C1,,+15550000001,2026-01-01T00:00:00Z",
                "C2,,+15550000001,2026-02-01T00:00:00Z",
            ],
            purchases: &[],
        },
        Night {
            name: "night2",
            crm: &[
                "C1,,+15550000011,2026-04-01T00:00:00Z",
                "C2,,+15550000012,2026-03-01T00:00:00Z",
            ],
            purchases: &[("A1", "", "+15550000001")],
        },
    ]);
    assert_eq!(got, expect(&[("A1", Some("C2"))]));
}

#[test]
fn the_key_history_survives_a_rerun_and_the_published_customer_has_the_new_phone() {
    let d = tempfile::tempdir().unwrap();
    let wh = d.path().join("wh");
    let (one, two) = (d.path().join("one"), d.path().join("two"));
    write_night(
        &one,
        &Night {
            name: "night1",
            crm: &["C1,,+15550000001,2026-01-01T00:00:00Z"],
            purchases: &[],
        },
    );
    write_night(
        &two,
        &Night {
            name: "night2",
            crm: &["C1,,+15550000002,2026-02-01T00:00:00Z"],
            purchases: &[("A1", "", "+15550000001")],
        },
    );
    ingest(&one, &wh);
    ingest(&two, &wh);
    assert_eq!(ingest(&two, &wh).manifest.status, "unchanged");
    assert_eq!(ingest(&one, &wh).manifest.status, "unchanged");
    assert_eq!(owners(&wh), expect(&[("A1", Some("C1"))]));
    let customers = warehouse::customers::read(&wh.join("customers")).unwrap();
    assert_eq!(customers.len(), 1, "no guest for the old phone");
    assert_eq!(customers[0].phone.as_deref(), Some("+15550000002"));
}

/// The issue's measurement on generated data: customers who change phone in
/// a later drop keep every purchase, old phone included, and no guest appears.
#[test]
fn generated_customers_who_change_phone_lose_no_purchase_to_a_guest() {
    let d = tempfile::tempdir().unwrap();
    let (day1, day2, wh) = (
        d.path().join("day1"),
        d.path().join("day2"),
        d.path().join("wh"),
    );
    let opts = cvm_etl::generate::GenerateOptions {
        customers: 2_000,
        seed: 5,
        ..Default::default()
    };
    cvm_etl::generate::generate(&day1, &opts).unwrap();
    let first = ingest(&day1, &wh);
    let customers = warehouse::customers::read(&wh.join("customers")).unwrap();
    let mut phone_count: BTreeMap<&str, usize> = BTreeMap::new();
    for p in customers.iter().filter_map(|c| c.phone.as_deref()) {
        *phone_count.entry(p).or_default() += 1;
    }
    let changed: Vec<_> = customers
        .iter()
        .filter(|c| !c.is_guest && c.phone.as_deref().is_some_and(|p| phone_count[p] == 1))
        .step_by(5)
        .take(200)
        .collect();
    assert_eq!(changed.len(), 200);
    let purchases_of = |wh: &Path| -> BTreeMap<String, String> {
        warehouse::transactions::read(&wh.join("transactions"))
            .unwrap()
            .into_iter()
            .filter_map(|t| {
                let id = t.transaction_id().to_string();
                t.customer_id.map(|c| (id, c.into()))
            })
            .collect()
    };
    let before = purchases_of(&wh);

    // Day 2: new phones for the chosen customers, a purchase with each old one.
    let mut crm = String::from("customer_id,email,phone,updated_at\n");
    let mut pos =
        String::from("receipt_id,store_id,purchased_at,customer_id,phone,total,currency,status\n");
    for (i, c) in changed.iter().enumerate() {
        let email = c.email.as_deref().unwrap_or("");
        crm.push_str(&format!(
            "{},{email},+1999{i:07},2026-06-01T00:00:00Z\n",
            c.customer_id
        ));
        let old = c.phone.as_deref().unwrap();
        pos.push_str(&format!(
            "OLD-{i},S1,2026-01-05T10:00:00Z,,{old},10,USD,sale\n"
        ));
    }
    std::fs::create_dir_all(day2.join("crm")).unwrap();
    std::fs::create_dir_all(day2.join("pos")).unwrap();
    std::fs::write(day2.join("crm/changes.csv"), crm).unwrap();
    std::fs::write(day2.join("pos/old_phones.csv"), pos).unwrap();
    let second = ingest(&day2, &wh);
    assert_eq!(
        second.manifest.warehouse.guests,
        first.manifest.warehouse.guests
    );
    let after = purchases_of(&wh);
    let changed_ids: std::collections::BTreeSet<&str> =
        changed.iter().map(|c| &*c.customer_id).collect();
    let moved: Vec<(&String, &String, &String)> = before
        .iter()
        .filter(|(_, c)| changed_ids.contains(c.as_str()))
        .filter_map(|(t, c)| after.get(t).filter(|a| *a != c).map(|a| (t, c, a)))
        .collect();
    assert!(moved.is_empty(), "purchases moved away: {moved:?}");
    for (i, c) in changed.iter().enumerate() {
        assert_eq!(after[&format!("pos:OLD-{i}")], &*c.customer_id);
    }
}
