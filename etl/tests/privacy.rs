//! `cvm-etl privacy erase` of a guest, killed mid-way and run again: the
//! database part holds, the warehouse part completes on the re-run, no
//! kept file holds the guest's keys (decoded, not just as bytes), their
//! rejected record keeps only its file, line and reason, and a later drop
//! with their purchase is dropped as `erased`, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Output;

use cvm_shared::db::models::customers;
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};
use cvm_shared::privacy::scan;

cvm_shared::both_backends!(
    an_erased_guest_is_gone_after_a_killed_erasure_is_run_again,
    an_erased_guest_of_a_pseudonymised_warehouse_is_gone_from_its_vault_too,
    erasing_one_of_two_customers_at_one_address_leaves_the_other_theirs,
);

const KEY: &str = "etl test privacy key, 32 bytes or more";
const GUEST: &str = "gus.guest@example.com";

/// `cvm-etl ARGS --db DB` with the privacy key, a reject limit the
/// deliberately bad record fits under, and `env`.
fn cvm(args: &[&str], db: &str, env: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = args.iter().copied().chain(["--db", db]).collect();
    let mut all = vec![("CVM_PRIVACY_KEY", KEY), ("CVM_REJECT_LIMIT", "0.5")];
    all.extend_from_slice(env);
    support::cvm_etl(&args, &all)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A first night's drop under `root` whose CRM file holds `rows`.
fn crm_night(root: &Path, rows: &str) -> std::path::PathBuf {
    let night = root.join("night1");
    let header = "customer_id,email,phone,first_name,last_name,country,signup_date,birth_date,email_opt_in,updated_at\n";
    write(&night.join("crm/customers.csv"), &format!("{header}{rows}"));
    night
}

/// `cvm-etl nightly` of `input` into `wh` as of 1 July 2024, with `env`.
fn nightly_with(input: &Path, wh: &str, db: &str, env: &[(&str, &str)]) -> Output {
    let input = input.to_str().unwrap();
    let args = [
        "-q",
        "nightly",
        "--input",
        input,
        "--warehouse",
        wh,
        "--as-of",
        "2024-07-01",
    ];
    cvm(&args, db, env)
}

/// `cvm-etl nightly` of `input` into `wh` as of 1 July 2024.
fn nightly(input: &Path, wh: &str, db: &str) -> Output {
    nightly_with(input, wh, db, &[])
}

/// Every value of every Parquet file under `root`, decoded, one line per row.
fn decoded(root: &Path) -> Vec<String> {
    let files = scan::parquet_files(root).unwrap();
    let table = scan::rows_where(&files, |_, _| true).unwrap();
    table.rows.iter().map(|r| r.join("|")).collect()
}

fn an_erased_guest_is_gone_after_a_killed_erasure_is_run_again(backend: Backend) {
    erase_a_guest_killed_then_run_again(backend, false);
}

/// The same in a pseudonymised warehouse: the vault and the clear rejects
/// lose the guest too.
fn an_erased_guest_of_a_pseudonymised_warehouse_is_gone_from_its_vault_too(backend: Backend) {
    erase_a_guest_killed_then_run_again(backend, true);
}

fn erase_a_guest_killed_then_run_again(backend: Backend, pseudonymise: bool) {
    let mode: &[(&str, &str)] = if pseudonymise {
        &[("CVM_PSEUDONYMISE", "true")]
    } else {
        &[]
    };
    // Where the guest's clear values are before the erasure completes.
    let clear_in = if pseudonymise { "" } else { "current/" };
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend);
    let wh = tmp.path().join("wh");
    let whs = wh.to_str().unwrap();
    let night1 = crm_night(
        tmp.path(),
        "C1,ann@example.com,+441632960001,Ann,Smith,GB,2024-01-02,1980-05-06,true,2024-01-02T00:00:00Z\n",
    );
    write(
        &night1.join("app/orders.jsonl"),
        &format!(
            "{{\"txn\":\"A1\",\"user_email\":\"ann@example.com\",\"ts\":1717200000,\"amount_cents\":1500,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n\
             {{\"txn\":\"A2\",\"user_email\":\"{GUEST}\",\"ts\":1717300000,\"amount_cents\":2500,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n\
             {{\"txn\":\"A3\",\"user_email\":\"Gus.Guest@Example.com\",\"ts\":1718300000,\"amount_cents\":900,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n\
             {{\"txn\":\"A4\",\"user_email\":\"{GUEST}\",\"ts\":\"yesterday\",\"amount_cents\":900,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n"
        ),
    );
    let nightly = |input: &Path| nightly_with(input, whs, &db.url, mode);
    ok(&nightly(&night1));
    if pseudonymise {
        let current = decoded(&wh.join("current/"));
        assert!(
            !current.iter().any(|r| r.contains("@example.com")),
            "{current:?}"
        );
    }
    let mut conn = DbConnection::connect(&db.url).unwrap();
    let guest = customers::all(&mut conn)
        .unwrap()
        .into_iter()
        .find(|c| c.email.as_deref() == Some(GUEST))
        .expect("the guest was loaded");
    assert!(guest.is_guest);
    assert!(decoded(&wh).iter().any(|r| r.contains(GUEST)));
    let before: Vec<String> = decoded(&wh.join("scores"))
        .into_iter()
        .filter(|r| r.starts_with("C1|"))
        .collect();
    assert_eq!(before.len(), 1);

    // Killed just before the new version is switched to: the database part
    // is done, the warehouse still holds the guest.
    let erase = |env: &[(&str, &str)]| {
        let id = guest.customer_id.as_str();
        let args = [
            "privacy",
            "erase",
            "--customer",
            id,
            "--warehouse",
            whs,
            "--reason",
            "ticket 3",
        ];
        cvm(&args, &db.url, env)
    };
    assert!(
        !erase(&[("CVM_TEST_CRASH_AT", "before_switch")])
            .status
            .success()
    );
    assert_eq!(
        customers::find(&mut conn, &guest.customer_id).unwrap(),
        None
    );
    assert!(
        decoded(&wh.join(clear_in))
            .iter()
            .any(|r| r.contains(GUEST))
    );

    // Run again: "already erased" in the database, completed in the warehouse.
    let said = ok(&erase(&[]));
    assert!(said.contains("already erased"), "{said}");
    let rows = decoded(&wh);
    for needle in [GUEST, guest.customer_id.as_str()] {
        let found: Vec<&String> = rows
            .iter()
            .filter(|r| r.to_lowercase().contains(&needle.to_lowercase()))
            .collect();
        assert!(found.is_empty(), "{needle} is still stored: {found:?}");
    }
    let rejects = decoded(&wh.join(if pseudonymise {
        "_privacy/runs"
    } else {
        "runs"
    }));
    assert!(
        rejects
            .iter()
            .any(|r| r.contains("[erased on request]") && r.contains("bad_date")),
        "the reject keeps its reason, not its text: {rejects:?}"
    );
    let versions = std::fs::read_dir(wh.join("_versions")).unwrap().count();
    assert_eq!(versions, 1, "older versions hold the guest: deleted");
    assert!(wh.join("_privacy/erasure_ledger.json").exists());
    let after: Vec<String> = decoded(&wh.join("scores"))
        .into_iter()
        .filter(|r| r.starts_with("C1|"))
        .collect();
    assert_eq!(after, before, "another customer's scores do not move");

    // A later purchase by the guest's email is dropped on arrival.
    let night2 = tmp.path().join("night2");
    write(
        &night2.join("app/orders.jsonl"),
        &format!(
            "{{\"txn\":\"A9\",\"user_email\":\" {} \",\"ts\":1719000000,\"amount_cents\":100,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n",
            GUEST.to_uppercase()
        ),
    );
    ok(&nightly(&night2));
    let manifests: Vec<serde_json::Value> = std::fs::read_dir(wh.join("runs"))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("manifest.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    assert!(
        manifests
            .iter()
            .any(|m| m["totals"]["erased"] == 1 && m["totals"]["records"] == 1),
        "{manifests:?}"
    );
    assert!(
        !decoded(&wh)
            .iter()
            .any(|r| r.to_lowercase().contains(GUEST))
    );
}

fn erasing_one_of_two_customers_at_one_address_leaves_the_other_theirs(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend);
    let wh = tmp.path().join("wh");
    let whs = wh.to_str().unwrap();
    let night1 = crm_night(
        tmp.path(),
        "C1,home@example.com,+441632960001,Ann,Smith,GB,2024-01-02,,true,2024-01-02T00:00:00Z\n\
         C2,home@example.com,+441632960002,Bob,Smith,GB,2024-01-03,,true,2024-01-03T00:00:00Z\n",
    );
    let nightly = |input: &Path| nightly(input, whs, &db.url);
    ok(&nightly(&night1));
    let args = [
        "privacy",
        "erase",
        "--customer",
        "C1",
        "--warehouse",
        whs,
        "--reason",
        "ticket 4",
    ];
    ok(&cvm(&args, &db.url, &[]));
    let rows = decoded(&wh.join("current/customers"));
    assert!(
        rows.iter()
            .any(|r| r.starts_with("C2|") && r.contains("home@example.com")),
        "the other customer keeps the shared address: {rows:?}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.contains("+441632960001") || r.starts_with("C1|"))
    );
    let mut conn = DbConnection::connect(&db.url).unwrap();
    let c2 = customers::find(&mut conn, "C2").unwrap().unwrap();
    assert_eq!(c2.email.as_deref(), Some("home@example.com"));

    // A purchase at the shared address is the other customer's: not dropped.
    let night2 = tmp.path().join("night2");
    write(
        &night2.join("app/orders.jsonl"),
        "{\"txn\":\"A1\",\"user_email\":\"home@example.com\",\"ts\":1719000000,\"amount_cents\":100,\"currency\":\"USD\",\"kind\":\"purchase\"}\n",
    );
    ok(&nightly(&night2));
    let txns = decoded(&wh.join("current/transactions"));
    assert_eq!(txns.len(), 1, "{txns:?}");
    assert!(txns[0].contains("|C2|"), "{txns:?}");
}
