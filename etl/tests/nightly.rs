//! `cvm-etl nightly` as the scheduler runs it, against SQLite and a real
//! PostgreSQL server: the CDNOW data end to end with exact row counts, a run
//! killed at each stage followed by a clean run, and overlap refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cvm_shared::db::models::{customers, job_runs, scores};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};

cvm_shared::both_backends!(
    the_cdnow_data_goes_end_to_end_into_the_database,
    a_nightly_killed_at_any_stage_is_completed_by_the_next,
    portal_feedback_feeds_the_next_nights_scores,
    two_processes_migrating_a_fresh_database_at_once_apply_each_migration_once,
    a_killed_nightlys_running_row_is_marked_failed_by_the_next_run,
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

/// A generated drop in `root/drop`, and what the generator put in it.
fn generated_drop(
    root: &Path,
    customers: u64,
    seed: u64,
) -> (PathBuf, cvm_etl::generate::GenerateSummary) {
    let input = root.join("drop");
    let opts = cvm_etl::generate::GenerateOptions {
        customers,
        seed,
        ..Default::default()
    };
    let truth = cvm_etl::generate::generate(&input, &opts).unwrap();
    (input, truth)
}

fn the_cdnow_data_goes_end_to_end_into_the_database(backend: Backend) {
    let db = TestDb::new(backend);
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
    let db = TestDb::new(backend);
    let d = tempfile::tempdir().unwrap();
    let (input, truth) = generated_drop(d.path(), 300, 3);
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

fn portal_feedback_feeds_the_next_nights_scores(backend: Backend) {
    use cvm_shared::db::models::surveys::{NewSurvey, SurveyStatus};
    use cvm_shared::db::models::{answers, invitations, surveys};
    let db = TestDb::new(backend);
    let d = tempfile::tempdir().unwrap();
    let (input, wh) = (cdnow_drop(d.path()), d.path().join("wh"));
    let run = || {
        cvm_etl::jobs::nightly::run(&cvm_etl::jobs::nightly::NightlyOptions {
            input: input.clone(),
            warehouse: wh.clone(),
            db_url: Some(db.url.clone()),
            as_of: chrono::NaiveDate::from_ymd_opt(1998, 6, 30).unwrap(),
            settings: cvm_shared::Settings::default(),
            progress: false,
        })
        .unwrap()
    };
    run();
    let at = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    let mut c = DbConnection::connect(&db.url).unwrap();
    // Two surveys: 00001 answers both (the later answer counts), 00002 answers
    // after the as-of date.
    let survey = |c: &mut DbConnection, name: &str| {
        let row = NewSurvey {
            name,
            question: "How likely are you to recommend us?",
            csat_question: None,
            comment_prompt: None,
            opens_at: at("1998-05-01 00:00:00"),
            closes_at: None,
            status: SurveyStatus::Open,
            created_by: "test",
            created_at: at("1998-05-01 00:00:00"),
        };
        surveys::insert(c, &row).unwrap().id
    };
    let (s1, s2) = (survey(&mut c, "first"), survey(&mut c, "second"));
    for (survey_id, customer, score, when, token_hash) in [
        (s1, "00001", 9, "1998-06-01 10:00:00", "h1"),
        (s2, "00001", 3, "1998-06-20 10:00:00", "h2"),
        (s1, "00002", 10, "1998-07-15 10:00:00", "h3"),
    ] {
        let invitation = invitations::NewInvitation {
            survey_id,
            customer_id: customer,
            token_hash,
            created_at: at(when),
            expires_at: at("1998-12-31 00:00:00"),
            campaign_id: None,
        };
        let id = invitations::insert(&mut c, &invitation).unwrap();
        answers::upsert(&mut c, id, score, None, None, at(when)).unwrap();
    }
    let second = run();
    assert_eq!(second.score.manifest.feedback.get("used"), Some(&2));
    let s = cvm_etl::warehouse::scores::read(&wh.join("scores/as_of=1998-06-30")).unwrap();
    let get = |id: &str| s.iter().find(|r| &*r.customer_id == id).unwrap().clone();
    assert_eq!(
        get("00001").nps_last,
        Some(3),
        "the latest answer on or before as-of"
    );
    assert_eq!(get("00001").nps_class.as_deref(), Some("detractor"));
    assert_eq!(get("00002").nps_last, None, "answered after as-of");
    let loaded = cvm_shared::db::models::scores::find(&mut c, "00001")
        .unwrap()
        .unwrap();
    assert_eq!(loaded.nps_last, Some(3));
}

fn two_processes_migrating_a_fresh_database_at_once_apply_each_migration_once(backend: Backend) {
    let db = TestDb::new(backend);
    let d = tempfile::tempdir().unwrap();
    let wh = d.path().join("wh");
    let input = d.path().join("drop");
    cvm_etl::generate::generate(
        &input,
        &cvm_etl::generate::GenerateOptions {
            customers: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let ingest = Command::new(env!("CARGO_BIN_EXE_cvm-etl"))
        .args(["-q", "ingest", "--input"])
        .arg(&input)
        .arg("--warehouse")
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    // Two loads start together on a database no one has migrated yet.
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_cvm-etl"))
            .args(["-q", "load", "--warehouse"])
            .arg(&wh)
            .args(["--db", &db.url])
            .env("CVM_LOG", "error")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut c = DbConnection::connect(&db.url).unwrap();
    let applied = cvm_shared::db::migrate::applied(&mut c).unwrap();
    assert_eq!(applied, cvm_shared::db::migrate::embedded(&mut c).unwrap());
    let runs = job_runs::latest(&mut c, "load", 10).unwrap();
    assert_eq!(runs.len(), 2);
}

fn a_killed_nightlys_running_row_is_marked_failed_by_the_next_run(backend: Backend) {
    let db = TestDb::new(backend);
    let d = tempfile::tempdir().unwrap();
    let (input, _) = generated_drop(d.path(), 50, 5);
    let wh = d.path().join("wh");
    let o = nightly(&input, &wh, &db.url, "2025-12-31", Some("after_ingest"));
    assert!(!o.status.success(), "aborted after ingest");
    let mut conn = DbConnection::connect(&db.url).unwrap();
    let killed = job_runs::latest(&mut conn, "nightly", 10).unwrap();
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0].status, "running");
    let o = nightly(&input, &wh, &db.url, "2025-12-31", None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let before = job_runs::find(&mut conn, &killed[0].run_id)
        .unwrap()
        .unwrap();
    assert_eq!(before.status, "failed");
    assert!(before.finished_at.is_some());
    let reason = before.error.unwrap_or_default();
    assert!(
        reason.contains("stale") && reason.contains("killed"),
        "{reason}"
    );
    let runs = job_runs::latest(&mut conn, "nightly", 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].status, "succeeded", "{runs:?}");
}
