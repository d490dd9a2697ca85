//! `cvm-etl nightly` as the scheduler runs it, against SQLite and a real
//! PostgreSQL server: the CDNOW data end to end with exact row counts, a run
//! killed at each stage followed by a clean run, and overlap refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cvm_shared::db::models::{customers, job_runs, scores};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(cvm_shared::db::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(cvm_shared::db::Backend::Postgres)
            }
        }
    )*};
}

both_backends!(
    the_cdnow_data_goes_end_to_end_into_the_database,
    a_nightly_killed_at_any_stage_is_completed_by_the_next
);

fn nightly(input: &Path, wh: &Path, db: &str, as_of: &str, crash: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvm-etl"));
    c.args(["-q", "nightly", "--input"])
        .arg(input)
        .arg("--warehouse")
        .arg(wh)
        .args(["--db", db, "--as-of", as_of]);
    c.env_remove("CVM_CONFIG")
        .env_remove("CVM_DATABASE_URL")
        .env("CVM_LOG", "error");
    if let Some(point) = crash {
        c.env("CVM_TEST_CRASH_AT", point);
    }
    c.output().unwrap()
}

fn counts(url: &str) -> (usize, usize) {
    let mut c = DbConnection::connect(url).unwrap();
    (
        customers::all(&mut c).unwrap().len(),
        scores::all(&mut c).unwrap().len(),
    )
}

fn cdnow_drop(root: &Path) -> PathBuf {
    let input = root.join("drop");
    std::fs::create_dir_all(input.join("transactions")).unwrap();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cdnow/transactions.csv");
    std::fs::copy(src, input.join("transactions/cdnow.csv")).unwrap();
    input
}

fn the_cdnow_data_goes_end_to_end_into_the_database(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (cdnow_drop(d.path()), d.path().join("wh"));
    let o = nightly(&input, &wh, &db.url, "1998-06-30", None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&db.url), (23_570, 23_570));
    let scored = cvm_etl::warehouse::scores::read(&wh.join("scores/as_of=1998-06-30")).unwrap();
    assert_eq!(scored.len(), 23_570);
    assert_eq!(
        scored.iter().map(|s| u64::from(s.orders)).sum::<u64>(),
        67_591,
        "distinct (customer, day) pairs of the CDNOW data"
    );
    // The same night again: nothing changes, and both runs are recorded.
    let o = nightly(&input, &wh, &db.url, "1998-06-30", None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&db.url), (23_570, 23_570));
    let mut c = DbConnection::connect(&db.url).unwrap();
    let runs = job_runs::latest(&mut c, "nightly", 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status == "succeeded"), "{runs:?}");
}

fn a_nightly_killed_at_any_stage_is_completed_by_the_next(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("drop");
    let opts = cvm_etl::generate::GenerateOptions {
        customers: 300,
        seed: 3,
        ..Default::default()
    };
    let truth = cvm_etl::generate::generate(&input, &opts).unwrap();
    let wh = d.path().join("wh");
    for point in [
        "before_publish",
        "before_switch",
        "after_ingest",
        "after_score",
    ] {
        let o = nightly(&input, &wh, &db.url, "2025-12-31", Some(point));
        assert!(!o.status.success(), "aborted at {point}");
        // Whatever was published is readable and whole.
        if wh.join("current").exists() {
            let t = cvm_etl::warehouse::transactions::read(&wh.join("transactions")).unwrap();
            assert_eq!(t.len() as u64, truth.consolidated_transactions, "{point}");
        }
    }
    let o = nightly(&input, &wh, &db.url, "2025-12-31", None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let customers_in_wh = cvm_etl::warehouse::customers::read(&wh.join("customers"))
        .unwrap()
        .len();
    let (c, s) = counts(&db.url);
    assert_eq!(c, customers_in_wh);
    assert_eq!(
        s,
        cvm_etl::warehouse::scores::read(&wh.join("scores/as_of=2025-12-31"))
            .unwrap()
            .len()
    );
    let mut conn = DbConnection::connect(&db.url).unwrap();
    let runs = job_runs::latest(&mut conn, "nightly", 10).unwrap();
    assert_eq!(runs.first().map(|r| r.status.as_str()), Some("succeeded"));
}

#[test]
fn a_second_nightly_while_one_runs_is_refused_with_exit_4() {
    let db = TestDb::sqlite();
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (cdnow_drop(d.path()), d.path().join("wh"));
    let _running = cvm_etl::warehouse::publish::Warehouse::open(&wh).unwrap();
    let o = nightly(&input, &wh, &db.url, "1998-06-30", None);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("locked") && err.lines().count() == 1, "{err}");
}
