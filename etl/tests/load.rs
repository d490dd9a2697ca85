//! The `load` job against both databases: every test runs on a SQLite file
//! and on a fresh PostgreSQL database (`CVM_TEST_POSTGRES_URL`; in CI a
//! missing server fails the test instead of skipping it).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::path::Path;
use std::process::Command;

use chrono::{NaiveDate, NaiveDateTime};
use cvm_etl::jobs::load::{self, LoadError};
use cvm_etl::warehouse::{self, CustomerRow, ScoreRow};
use cvm_shared::db::models::{customers, job_runs, scores};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};
use cvm_shared::{BaseAmount, Channel};

cvm_shared::both_backends!(
    load_twice_gives_the_same_rows,
    consent_is_never_overwritten_by_an_older_record,
    a_vanished_customer_is_flagged_inactive,
    the_latest_scoring_run_is_the_default,
    scores_of_unknown_customers_are_skipped,
    a_failed_load_is_recorded_and_changes_nothing,
    a_missing_warehouse_deactivates_nobody,
    no_single_row_can_fail_a_load,
);

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn micros(s: &str) -> i64 {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn crm(id: &str, opt_in: bool, updated: &str) -> CustomerRow {
    CustomerRow {
        customer_id: id.into(),
        is_guest: false,
        email: Some(format!("{}@example.com", id.to_lowercase()).into()),
        phone: Some("+441234567890".into()),
        first_name: Some("Zoë".into()),
        last_name: None,
        country: Some("GB".into()),
        signup_date: Some(date("2023-05-01")),
        birth_date: None,
        email_opt_in: opt_in,
        updated_at: Some(micros(updated)),
        first_seen: Some(micros("2023-05-01 09:30:00")),
        channels: vec![Channel::Pos, Channel::Web],
    }
}

fn guest(id: &str) -> CustomerRow {
    CustomerRow {
        is_guest: true,
        email: None,
        email_opt_in: false,
        updated_at: None,
        channels: vec![Channel::App],
        ..crm(id, false, "2023-05-01 00:00:00")
    }
}

fn score(id: &str, as_of: &str, orders: u32) -> ScoreRow {
    ScoreRow {
        customer_id: id.into(),
        as_of: date(as_of),
        orders,
        frequency: orders.saturating_sub(1),
        recency: 12.0,
        t: 40.5,
        monetary_avg: 33.25,
        total_revenue: "98765.432109".parse::<BaseAmount>().unwrap(),
        first_purchase: Some(date("2023-05-02")),
        last_purchase: Some(date("2024-01-10")),
        days_since_last_purchase: Some(51),
        r_score: Some(4),
        f_score: Some(3),
        m_score: None,
        rfm_segment: "Loyal".into(),
        p_alive: Some(0.75),
        expected_purchases_90d: Some(0.5),
        expected_purchases_365d: None,
        expected_avg_value: Some(31.0),
        clv_12m: Some(120.125),
        churn_risk: Some(0.25),
        nps_last: None,
        nps_class: None,
        engagement_90d: 3,
        lifecycle_stage: Some("loyal".into()),
        value_tier: None,
        loyalty_index: Some(61.5),
    }
}

fn write_warehouse(wh: &Path, customers: &[CustomerRow], runs: &[(&str, Vec<ScoreRow>)]) {
    let _ = std::fs::remove_dir_all(wh);
    warehouse::customers::write(&wh.join("customers"), customers).unwrap();
    for (as_of, rows) in runs {
        warehouse::scores::write(&warehouse::scores::dir_for(wh, date(as_of)), rows).unwrap();
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    wh: std::path::PathBuf,
    db: TestDb,
}

fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        wh: dir.path().join("wh"),
        _dir: dir,
        db,
    }
}

impl Fixture {
    fn load(&self, as_of: Option<&str>) -> Result<load::LoadReport, LoadError> {
        load::run(&load::LoadOptions {
            warehouse: self.wh.clone(),
            db_url: self.db.url.clone(),
            as_of: as_of.map(date),
        })
    }

    fn conn(&self) -> DbConnection {
        DbConnection::connect(&self.db.url).unwrap()
    }

    /// Customers and scores with the per-load stamp blanked out.
    fn rows(&self) -> (Vec<customers::Customer>, Vec<scores::Score>) {
        let mut c = self.conn();
        let zero = NaiveDateTime::default();
        let cs = customers::all(&mut c)
            .unwrap()
            .into_iter()
            .map(|r| customers::Customer {
                loaded_at: zero,
                ..r
            })
            .collect();
        let ss = scores::all(&mut c)
            .unwrap()
            .into_iter()
            .map(|r| scores::Score {
                loaded_at: zero,
                ..r
            })
            .collect();
        (cs, ss)
    }

    fn customer(&self, id: &str) -> customers::Customer {
        customers::find(&mut self.conn(), id).unwrap().unwrap()
    }
}

fn load_twice_gives_the_same_rows(backend: Backend) {
    let f = fixture(backend);
    let cs: Vec<CustomerRow> = (0..3_000)
        .map(|i| {
            if i % 10 == 0 {
                guest(&format!("G{i:05}"))
            } else {
                crm(&format!("C{i:05}"), i % 3 == 0, "2024-01-01 00:00:00")
            }
        })
        .collect();
    let ss: Vec<ScoreRow> = cs
        .iter()
        .map(|c| score(&c.customer_id, "2024-02-29", 2))
        .collect();
    write_warehouse(&f.wh, &cs, &[("2024-02-29", ss)]);
    let first = f.load(None).unwrap();
    assert_eq!(
        (
            first.customers,
            first.scores,
            first.deactivated,
            first.scores_skipped
        ),
        (3_000, 3_000, 0, 0)
    );
    assert_eq!(first.as_of, Some(date("2024-02-29")));
    assert_eq!(
        (first.customers_changed, first.scores_changed),
        (3_000, 3_000)
    );
    let rows = f.rows();
    let stamped = customers::all(&mut f.conn()).unwrap();
    let second = f.load(None).unwrap();
    assert_eq!(
        (second.customers, second.scores, second.deactivated),
        (3_000, 3_000, 0)
    );
    assert_eq!(f.rows(), rows);
    // Nothing changed, so nothing was written: every loaded_at is the first load's.
    assert_eq!((second.customers_changed, second.scores_changed), (0, 0));
    assert_eq!(customers::all(&mut f.conn()).unwrap(), stamped);
    // The values survive the round trip exactly.
    let c = f.customer("C00001");
    assert_eq!(
        (c.first_name.as_deref(), c.channels.as_str(), c.active),
        (Some("Zoë"), "pos,web", true)
    );
    assert_eq!(
        c.consent_updated_at,
        Some(NaiveDateTime::parse_from_str("2024-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap())
    );
    let s = scores::find(&mut f.conn(), "C00001").unwrap().unwrap();
    assert_eq!(s.total_revenue, "98765.432109");
    assert_eq!(
        (
            s.m_score,
            s.clv_12m,
            s.lifecycle_stage.as_deref(),
            s.value_tier
        ),
        (None, Some(120.125), Some("loyal"), None)
    );
    // Both runs are in job_runs.
    let runs = job_runs::latest(&mut f.conn(), "load", 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r.status == "succeeded" && r.finished_at.is_some()),
        "{runs:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(runs[0].summary.as_deref().unwrap()).unwrap();
    assert_eq!(summary["customers"], 3_000);
}

fn consent_is_never_overwritten_by_an_older_record(backend: Backend) {
    let f = fixture(backend);
    write_warehouse(
        &f.wh,
        &[
            crm("C1", false, "2024-02-10 12:00:00"),
            crm("C2", true, "2024-02-10 12:00:00"),
        ],
        &[],
    );
    let r = f.load(None).unwrap();
    assert_eq!(r.as_of, None, "no scores yet: customers only");
    // A later warehouse carrying older CRM versions (a re-delivered old file).
    write_warehouse(
        &f.wh,
        &[
            crm("C1", true, "2024-02-09 12:00:00"),
            crm("C2", false, "2024-02-11 12:00:00"),
        ],
        &[],
    );
    f.load(None).unwrap();
    assert!(
        !f.customer("C1").email_opt_in,
        "an older record must not opt C1 in"
    );
    assert!(!f.customer("C2").email_opt_in, "a newer record opts C2 out");
    // A guest row with the same id never decides consent.
    write_warehouse(
        &f.wh,
        &[guest("C1"), crm("C2", true, "2024-02-12 12:00:00")],
        &[],
    );
    f.load(None).unwrap();
    let c1 = f.customer("C1");
    assert!(!c1.email_opt_in);
    assert_eq!(
        c1.consent_updated_at
            .map(|t| t.and_utc().timestamp_micros()),
        Some(micros("2024-02-10 12:00:00"))
    );
    assert!(f.customer("C2").email_opt_in);
}

fn a_vanished_customer_is_flagged_inactive(backend: Backend) {
    let f = fixture(backend);
    let all = [
        crm("C1", true, "2024-01-01 00:00:00"),
        crm("C2", true, "2024-01-01 00:00:00"),
        guest("G3"),
    ];
    write_warehouse(
        &f.wh,
        &all,
        &[(
            "2024-02-29",
            vec![score("C1", "2024-02-29", 1), score("C2", "2024-02-29", 1)],
        )],
    );
    f.load(None).unwrap();
    write_warehouse(
        &f.wh,
        &all[1..],
        &[("2024-03-01", vec![score("C2", "2024-03-01", 2)])],
    );
    let r = f.load(None).unwrap();
    assert_eq!(r.deactivated, 1);
    let c1 = f.customer("C1");
    assert!(!c1.active, "kept, flagged inactive");
    assert_eq!(c1.email.as_deref(), Some("c1@example.com"));
    assert!(f.customer("C2").active && f.customer("G3").active);
    // Its last scores stay (they say as of when); a re-run flags nobody new.
    assert_eq!(
        scores::find(&mut f.conn(), "C1").unwrap().unwrap().as_of,
        date("2024-02-29")
    );
    assert_eq!(f.load(None).unwrap().deactivated, 0);
    assert_eq!(customers::counts(&mut f.conn()).unwrap(), (3, 2));
    // Back in the warehouse: active again.
    write_warehouse(&f.wh, &all, &[]);
    f.load(None).unwrap();
    assert!(f.customer("C1").active);
}

fn the_latest_scoring_run_is_the_default(backend: Backend) {
    let f = fixture(backend);
    let cs = [crm("C1", true, "2024-01-01 00:00:00")];
    write_warehouse(
        &f.wh,
        &cs,
        &[
            ("2024-02-01", vec![score("C1", "2024-02-01", 1)]),
            ("2024-03-01", vec![score("C1", "2024-03-01", 5)]),
        ],
    );
    assert_eq!(f.load(None).unwrap().as_of, Some(date("2024-03-01")));
    assert_eq!(
        scores::find(&mut f.conn(), "C1").unwrap().unwrap().orders,
        5
    );
    // An explicit older run loads, but never replaces newer scores.
    assert_eq!(
        f.load(Some("2024-02-01")).unwrap().as_of,
        Some(date("2024-02-01"))
    );
    assert_eq!(
        scores::find(&mut f.conn(), "C1").unwrap().unwrap().orders,
        5
    );
    // A run that does not exist is an error naming it.
    let err = f.load(Some("2024-01-15")).unwrap_err();
    assert!(
        matches!(err, LoadError::NoScores { .. }) && err.to_string().contains("2024-01-15"),
        "{err}"
    );
}

fn scores_of_unknown_customers_are_skipped(backend: Backend) {
    let f = fixture(backend);
    write_warehouse(
        &f.wh,
        &[crm("C1", true, "2024-01-01 00:00:00")],
        &[(
            "2024-03-01",
            vec![score("C1", "2024-03-01", 1), score("X9", "2024-03-01", 1)],
        )],
    );
    let r = f.load(None).unwrap();
    assert_eq!((r.scores, r.scores_skipped), (1, 1));
    assert_eq!(scores::count(&mut f.conn()).unwrap(), 1);
}

fn a_failed_load_is_recorded_and_changes_nothing(backend: Backend) {
    let f = fixture(backend);
    write_warehouse(&f.wh, &[crm("C1", true, "2024-01-01 00:00:00")], &[]);
    f.load(None).unwrap();
    let before = f.rows();
    // A corrupt scores file: the load fails after it was recorded as running.
    let bad = warehouse::scores::dir_for(&f.wh, date("2024-03-01"));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("part-00000.parquet"), b"not parquet").unwrap();
    assert!(matches!(f.load(None), Err(LoadError::Warehouse(_))));
    assert_eq!(f.rows(), before);
    let runs = job_runs::latest(&mut f.conn(), "load", 10).unwrap();
    assert_eq!(runs[0].status, "failed");
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("part-00000.parquet"),
        "{:?}",
        runs[0].error
    );
}

fn a_missing_warehouse_deactivates_nobody(backend: Backend) {
    let f = fixture(backend);
    write_warehouse(&f.wh, &[crm("C1", true, "2024-01-01 00:00:00")], &[]);
    f.load(None).unwrap();
    let err = load::run(&load::LoadOptions {
        warehouse: f.wh.join("typo"),
        db_url: f.db.url.clone(),
        as_of: None,
    })
    .unwrap_err();
    assert!(matches!(err, LoadError::NoWarehouse(_)), "{err}");
    assert!(f.customer("C1").active);
}

fn no_single_row_can_fail_a_load(backend: Backend) {
    let f = fixture(backend);
    let min_date = cvm_shared::db::storable::MIN_DATE;
    // A warehouse written by an older version (the writer sorts it by id): a
    // NUL in an id and in text, a repeated id, dates and times out of range,
    // a NaN in a required score.
    let c1 = CustomerRow {
        birth_date: Some(min_date),
        ..crm("C1", true, "2024-01-01 00:00:00")
    };
    let c3 = CustomerRow {
        email: Some("c3\0@example.com".into()),
        first_name: Some("Ann\0".into()),
        birth_date: min_date.pred_opt(),
        ..crm("C3", true, "2024-01-01 00:00:00")
    };
    let c4 = CustomerRow {
        updated_at: Some(i64::MIN),
        ..crm("C4", true, "2024-01-01 00:00:00")
    };
    let customers_in = [
        c1.clone(),
        crm("C00000002\0", true, "2024-01-01 00:00:00"),
        c3,
        c4,
        c1,
    ];
    let scores_in = vec![
        score("C1", "2024-03-01", 2),
        score("C00000002\0", "2024-03-01", 1),
        ScoreRow {
            recency: f64::NAN,
            ..score("C3", "2024-03-01", 1)
        },
        ScoreRow {
            lifecycle_stage: Some("lo\0yal".into()),
            ..score("C4", "2024-03-01", 1)
        },
    ];
    write_warehouse(&f.wh, &customers_in, &[("2024-03-01", scores_in)]);
    let r = f.load(None).unwrap();
    assert_eq!((r.customers, r.scores, r.scores_skipped), (3, 2, 1));
    assert_eq!((r.skipped("customers"), r.skipped("scores")), (2, 1));
    let noted: Vec<(&str, &str, &str)> = r
        .refused
        .iter()
        .map(|x| (x.table, x.customer_id.as_str(), x.field))
        .collect();
    assert_eq!(
        noted,
        [
            ("customers", "C00000002\\0", "customer_id"),
            ("customers", "C1", "customer_id"),
            ("customers", "C3", "email"),
            ("customers", "C3", "first_name"),
            ("customers", "C3", "birth_date"),
            ("customers", "C4", "updated_at"),
            ("scores", "C3", "recency"),
            ("scores", "C4", "lifecycle_stage"),
        ]
    );
    let ids: Vec<String> = customers::all(&mut f.conn())
        .unwrap()
        .into_iter()
        .map(|c| c.customer_id)
        .collect();
    assert_eq!(ids, ["C1", "C3", "C4"]);
    let c1 = f.customer("C1");
    assert_eq!(
        (c1.first_name.as_deref(), c1.birth_date),
        (Some("Zoë"), Some(min_date)),
        "one row of a repeated id loads; the earliest storable date is kept"
    );
    let c3 = f.customer("C3");
    assert_eq!((c3.email, c3.first_name, c3.birth_date), (None, None, None));
    assert_eq!(
        c3.country.as_deref(),
        Some("GB"),
        "the rest of the row loads"
    );
    let c4 = f.customer("C4");
    assert_eq!(
        (c4.email_opt_in, c4.consent_updated_at),
        (false, None),
        "a consent of unknown time is never granted"
    );
    let s4 = scores::find(&mut f.conn(), "C4").unwrap().unwrap();
    assert_eq!(s4.lifecycle_stage, None);
    assert!(scores::find(&mut f.conn(), "C3").unwrap().is_none());
    // The run's summary names them too.
    let runs = job_runs::latest(&mut f.conn(), "load", 1).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(runs[0].summary.as_deref().unwrap()).unwrap();
    assert_eq!(
        (
            &summary["customers_refused"],
            &summary["scores_refused"],
            &summary["values_cleaned"]
        ),
        (&2.into(), &1.into(), &5.into())
    );
    assert_eq!(summary["refused"][0]["customer_id"], "C00000002\\0");
    assert_eq!(summary["refused"][0]["action"], "skipped");
    // Loading again changes nothing.
    let rows = f.rows();
    let again = f.load(None).unwrap();
    assert_eq!((again.customers_changed, again.scores_changed), (0, 0));
    assert_eq!(f.rows(), rows);
}

#[test]
fn the_cli_loads_and_never_prints_the_database_password() {
    let f = fixture(Backend::Sqlite);
    write_warehouse(
        &f.wh,
        &[crm("C1", true, "2024-01-01 00:00:00")],
        &[("2024-03-01", vec![score("C1", "2024-03-01", 1)])],
    );
    let etl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cvm-etl"))
            .args(args)
            .env_remove("CVM_CONFIG")
            .env_remove("CVM_DATABASE_URL")
            .env("CVM_LOG", "warn")
            .output()
            .unwrap()
    };
    let wh = f.wh.to_str().unwrap();
    let ok = etl(&["load", "--warehouse", wh, "--db", &f.db.url]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(customers::counts(&mut f.conn()).unwrap(), (1, 1));
    // Nothing listens on port 1: a connection error, with the password hidden.
    let bad = etl(&[
        "load",
        "--warehouse",
        wh,
        "--db",
        "postgres://cvm:topsecret@127.0.0.1:1/cvm?connect_timeout=2",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cvm:***@127.0.0.1:1") && !err.contains("topsecret"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let none = etl(&["load", "--warehouse", wh]);
    assert_eq!(none.status.code(), Some(2));
    let missing = etl(&[
        "load",
        "--warehouse",
        wh,
        "--db",
        &f.db.url,
        "--as-of",
        "2020-01-01",
    ]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
