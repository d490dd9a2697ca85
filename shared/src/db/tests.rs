//! The database layer against both backends: every test runs once on a
//! SQLite file and once on a fresh PostgreSQL database (see [`super::testing`]).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::{Arc, Barrier};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::models::consent_changes::{self, ConsentSource, NewConsentChange};
use super::models::{customers, job_runs, scores};
use super::testing::TestDb;
use super::{Backend, DbConnection, DbError, migrate};

crate::both_backends!(
    migrations_twice_are_a_noop,
    migrations_applied_concurrently_apply_once,
    consent_is_never_overwritten_by_an_older_record,
    guests_never_overwrite_crm_consent,
    vanished_customers_are_flagged_inactive,
    upsert_twice_gives_the_same_rows,
    scores_never_regress_to_an_older_as_of,
    job_runs_record_outcomes,
    a_first_upsert_still_checks_foreign_keys,
    a_first_upsert_keeps_the_indexes_and_foreign_keys,
    a_reload_of_many_rows_changes_nothing,
);

pub(super) fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

pub(super) fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub(super) fn customer<'a>(
    id: &'a str,
    opt_in: bool,
    updated: Option<&str>,
    loaded: &str,
) -> customers::NewCustomer<'a> {
    customers::NewCustomer {
        customer_id: id,
        is_guest: false,
        email: Some("a@example.com"),
        phone: None,
        first_name: Some("Ada"),
        last_name: None,
        country: Some("GB"),
        signup_date: Some(date("2020-01-02")),
        birth_date: None,
        email_opt_in: opt_in,
        consent_updated_at: updated.map(ts),
        first_seen: Some(ts("2020-01-02 10:00:00")),
        channels: "pos,web".into(),
        active: true,
        loaded_at: ts(loaded),
    }
}

fn score<'a>(id: &'a str, as_of: &str, orders: i64, loaded: &str) -> scores::NewScore<'a> {
    scores::NewScore {
        customer_id: id,
        as_of: date(as_of),
        orders,
        frequency: orders - 1,
        recency: 3.5,
        t: 10.0,
        monetary_avg: 12.25,
        total_revenue: "1234567890.123456".into(),
        first_purchase: Some(date("2020-01-02")),
        last_purchase: None,
        days_since_last_purchase: Some(4),
        r_score: Some(5),
        f_score: None,
        m_score: Some(1),
        rfm_segment: "Champions",
        p_alive: Some(0.875),
        expected_purchases_90d: None,
        expected_purchases_365d: Some(1.5),
        expected_avg_value: Some(20.0),
        clv_12m: Some(99.5),
        churn_risk: Some(0.125),
        nps_last: Some(9),
        nps_class: Some("promoter"),
        engagement_90d: 7,
        lifecycle_stage: Some("active"),
        value_tier: None,
        loyalty_index: Some(80.5),
        loaded_at: ts(loaded),
    }
}

pub(super) fn open(backend: Backend) -> (TestDb, DbConnection) {
    let db = TestDb::new(backend);
    let conn = DbConnection::connect_for_write(&db.url).unwrap();
    (db, conn)
}

/// When the customer `c1` of [`open_with_c1`] was loaded.
pub(super) const C1_LOADED: &str = "2024-03-01 02:00:00";

/// [`open`], with one customer `c1` loaded.
pub(super) fn open_with_c1(backend: Backend) -> (TestDb, DbConnection) {
    let (db, mut c) = open(backend);
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, None, C1_LOADED)])
    });
    (db, c)
}

pub(super) fn in_tx<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
) -> T {
    conn.transaction::<T, DbError, _>(|c| f(c)).unwrap()
}

fn migrations_twice_are_a_noop(backend: Backend) {
    let db = TestDb::new(backend);
    let mut c = DbConnection::connect(&db.url).unwrap();
    let first = migrate::run_pending(&mut c).unwrap();
    assert_eq!(first, migrate::embedded(&mut c).unwrap());
    assert!(!first.is_empty());
    assert!(migrate::run_pending(&mut c).unwrap().is_empty());
    drop(c);
    // A writer reopening the database applies nothing either.
    let mut c = DbConnection::connect_for_write(&db.url).unwrap();
    assert!(migrate::run_pending(&mut c).unwrap().is_empty());
    assert_eq!(migrate::applied(&mut c).unwrap(), first);
}

fn migrations_applied_concurrently_apply_once(backend: Backend) {
    let db = TestDb::new(backend);
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = DbConnection::connect(&url).unwrap();
                barrier.wait();
                migrate::run_pending(&mut c).map(|v| v.len())
            })
        })
        .collect();
    let applied: Vec<usize> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    let mut c = DbConnection::connect(&db.url).unwrap();
    let embedded = migrate::embedded(&mut c).unwrap();
    // Exactly one process applied each migration; the others found nothing pending.
    assert_eq!(applied.iter().sum::<usize>(), embedded.len(), "{applied:?}");
    assert_eq!(migrate::applied(&mut c).unwrap(), embedded);
    assert_eq!(customers::counts(&mut c).unwrap(), (0, 0));
}

fn consent_is_never_overwritten_by_an_older_record(backend: Backend) {
    let (_db, mut c) = open(backend);
    let l1 = "2024-03-01 02:00:00";
    in_tx(&mut c, |c| {
        customers::upsert(
            c,
            &[customer("c1", false, Some("2024-02-01 12:00:00.250"), l1)],
        )
    });
    // An older CRM record opting in must not win.
    in_tx(&mut c, |c| {
        customers::upsert(
            c,
            &[customer("c1", true, Some("2024-02-01 12:00:00.125"), l1)],
        )
    });
    let got = customers::find(&mut c, "c1").unwrap().unwrap();
    assert!(!got.email_opt_in);
    assert_eq!(got.consent_updated_at, Some(ts("2024-02-01 12:00:00.250")));
    // A newer (or equally new) one does.
    in_tx(&mut c, |c| {
        customers::upsert(
            c,
            &[customer("c1", true, Some("2024-02-01 12:00:00.250"), l1)],
        )
    });
    assert!(customers::find(&mut c, "c1").unwrap().unwrap().email_opt_in);
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", false, Some("2024-02-02 00:00:00"), l1)])
    });
    let got = customers::find(&mut c, "c1").unwrap().unwrap();
    assert!(!got.email_opt_in);
    assert_eq!(got.consent_updated_at, Some(ts("2024-02-02 00:00:00")));
    // An unsubscribe is a consent change too: an older CRM opt-in cannot undo it.
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, Some("2024-02-03 00:00:00"), l1)])
    });
    let unsubscribe = |at: &'static str| NewConsentChange {
        customer_id: "c1",
        email_opt_in: false,
        source: ConsentSource::Unsubscribe,
        at: ts(at),
        record: Some("campaign 7, one_click"),
        recorded_at: ts(at),
    };
    assert!(in_tx(&mut c, |c| consent_changes::set(
        c,
        &unsubscribe("2024-02-10 08:00:00")
    )));
    // Unsubscribing again changes nothing and records nothing.
    assert!(!in_tx(&mut c, |c| consent_changes::set(
        c,
        &unsubscribe("2024-02-11 08:00:00")
    )));
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, Some("2024-02-05 00:00:00"), l1)])
    });
    let got = customers::find(&mut c, "c1").unwrap().unwrap();
    assert!(!got.email_opt_in);

    // Every change is in the history, with its source, and the history ends
    // in the stored consent.
    let history = consent_changes::of_customers(&mut c, &["c1".into()]).unwrap();
    let seen: Vec<(bool, ConsentSource, NaiveDateTime)> = history
        .iter()
        .map(|h| (h.email_opt_in, h.source, h.at))
        .collect();
    assert_eq!(
        seen,
        [
            (false, ConsentSource::Crm, ts("2024-02-01 12:00:00.250")),
            (true, ConsentSource::Crm, ts("2024-02-01 12:00:00.250")),
            (false, ConsentSource::Crm, ts("2024-02-02 00:00:00")),
            (true, ConsentSource::Crm, ts("2024-02-03 00:00:00")),
            (false, ConsentSource::Unsubscribe, ts("2024-02-10 08:00:00")),
        ]
    );
    assert_eq!(consent_changes::current(&history), got.email_opt_in);
    assert_eq!(history[0].record.as_deref(), Some("load"));
    assert_eq!(history[0].recorded_at, ts(l1));
    assert_eq!(history[4].record.as_deref(), Some("campaign 7, one_click"));
}

fn guests_never_overwrite_crm_consent(backend: Backend) {
    let (_db, mut c) = open(backend);
    let l1 = "2024-03-01 02:00:00";
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, Some("2024-02-01 12:00:00"), l1)])
    });
    let mut guest = customer("c1", false, None, l1);
    guest.is_guest = true;
    in_tx(&mut c, |c| customers::upsert(c, &[guest.clone()]));
    let got = customers::find(&mut c, "c1").unwrap().unwrap();
    assert!(got.email_opt_in);
    assert_eq!(got.consent_updated_at, Some(ts("2024-02-01 12:00:00")));
    // Guests have no consent history: their consent is false by default.
    let mut g2 = customer("g2", false, None, l1);
    g2.is_guest = true;
    in_tx(&mut c, |c| customers::upsert(c, &[g2.clone()]));
    let history = consent_changes::of_customers(&mut c, &["c1".into(), "g2".into()]).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].customer_id, "c1");
}

fn vanished_customers_are_flagged_inactive(backend: Backend) {
    let (_db, mut c) = open(backend);
    let (l1, l2) = ("2024-03-01 02:00:00.000001", "2024-03-02 02:00:00.000002");
    in_tx(&mut c, |c| {
        customers::upsert_all(
            c,
            &[
                customer("c1", true, None, l1),
                customer("c2", true, None, l1),
            ],
        )
    });
    let (written, deactivated) = in_tx(&mut c, |c| {
        customers::upsert_all(c, &[customer("c2", true, None, l2)])
    });
    assert_eq!((written, deactivated), (0, 1), "c2 is unchanged");
    // Unchanged, so it keeps the stamp of the load that wrote it.
    assert_eq!(
        customers::find(&mut c, "c2").unwrap().unwrap().loaded_at,
        ts(l1)
    );
    assert!(!customers::find(&mut c, "c1").unwrap().unwrap().active);
    assert!(customers::find(&mut c, "c2").unwrap().unwrap().active);
    assert_eq!(customers::counts(&mut c).unwrap(), (2, 1));
    // Coming back reactivates (a change, so the row takes the new stamp).
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, None, l2)])
    });
    let c1 = customers::find(&mut c, "c1").unwrap().unwrap();
    assert!(c1.active);
    assert_eq!(c1.loaded_at, ts(l2));
    // Nothing to deactivate twice.
    let again = in_tx(&mut c, |c| {
        customers::upsert_all(c, &[customer("c2", true, None, l2)])
    });
    assert_eq!(again, (0, 1), "c1 is gone again");
}

fn upsert_twice_gives_the_same_rows(backend: Backend) {
    let (_db, mut c) = open(backend);
    let (l1, l2) = ("2024-03-01 02:00:00", "2024-03-02 02:00:00.5");
    let ids: Vec<String> = (0..5_000).map(|i| format!("c{i:05}")).collect();
    let rows = |loaded| -> Vec<_> {
        ids.iter()
            .map(|id| customer(id, true, Some("2024-01-01 00:00:00"), loaded))
            .collect()
    };
    let sc = |loaded| -> Vec<_> {
        ids.iter()
            .map(|id| score(id, "2024-02-29", 3, loaded))
            .collect()
    };
    let load =
        |c: &mut DbConnection, cs: &[customers::NewCustomer<'_>], ss: &[scores::NewScore<'_>]| {
            in_tx(c, |c| {
                Ok((customers::upsert(c, cs)?, scores::upsert(c, ss)?))
            })
        };
    assert_eq!(load(&mut c, &rows(l1), &sc(l1)), (5_000, 5_000));
    let (a, sa) = (
        customers::all(&mut c).unwrap(),
        scores::all(&mut c).unwrap(),
    );
    // Unchanged rows are not written: the stamps stay those of the first load.
    assert_eq!(load(&mut c, &rows(l2), &sc(l2)), (0, 0));
    assert_eq!(customers::all(&mut c).unwrap(), a);
    assert_eq!(scores::all(&mut c).unwrap(), sa);
    assert_eq!(a.len(), 5_000);
    let s = scores::find(&mut c, "c00042").unwrap().unwrap();
    assert_eq!(s.total_revenue, "1234567890.123456");
    assert_eq!(
        (s.orders, s.f_score, s.p_alive, s.nps_class.as_deref()),
        (3, None, Some(0.875), Some("promoter"))
    );
    // One changed value in each table: only those rows are written and stamped.
    let (mut cs, mut ss) = (rows(l2), sc(l2));
    cs[7].last_name = Some("Lovelace");
    ss[9].churn_risk = None;
    assert_eq!(load(&mut c, &cs, &ss), (1, 1));
    let stamps = |c: &mut DbConnection| -> Vec<(String, NaiveDateTime, NaiveDateTime)> {
        customers::all(c)
            .unwrap()
            .into_iter()
            .zip(scores::all(c).unwrap())
            .filter(|(cu, sc)| cu.loaded_at != ts(l1) || sc.loaded_at != ts(l1))
            .map(|(cu, sc)| (cu.customer_id, cu.loaded_at, sc.loaded_at))
            .collect()
    };
    assert_eq!(
        stamps(&mut c),
        [
            ("c00007".to_string(), ts(l2), ts(l1)),
            ("c00009".to_string(), ts(l1), ts(l2)),
        ]
    );
    let s9 = scores::find(&mut c, "c00009").unwrap().unwrap();
    assert_eq!(s9.churn_risk, None);
}

fn scores_never_regress_to_an_older_as_of(backend: Backend) {
    let (_db, mut c) = open(backend);
    let l1 = "2024-03-01 02:00:00";
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, None, l1)])?;
        scores::upsert(c, &[score("c1", "2024-02-29", 5, l1)])
    });
    in_tx(&mut c, |c| {
        scores::upsert(c, &[score("c1", "2024-02-01", 2, l1)])
    });
    let s = scores::find(&mut c, "c1").unwrap().unwrap();
    assert_eq!((s.as_of, s.orders), (date("2024-02-29"), 5));
    in_tx(&mut c, |c| {
        scores::upsert(c, &[score("c1", "2024-03-01", 6, l1)])
    });
    assert_eq!(scores::find(&mut c, "c1").unwrap().unwrap().orders, 6);
    // A score for an unknown customer violates the foreign key (it is on in SQLite too).
    let err = c.transaction::<_, DbError, _>(|c| {
        scores::upsert(c, &[score("nobody", "2024-03-01", 1, l1)])
    });
    assert_scores_query_failed(&err);
}

fn job_runs_record_outcomes(backend: Backend) {
    let (_db, mut c) = open(backend);
    let t0 = ts("2024-03-01 02:00:00");
    job_runs::start(&mut c, "load-1", "load", t0, Some(date("2024-02-29"))).unwrap();
    job_runs::start(&mut c, "load-2", "load", ts("2024-03-02 02:00:00"), None).unwrap();
    let summary = serde_json::json!({"customers": 3});
    job_runs::finish(&mut c, "load-1", ts("2024-03-01 02:00:05"), Ok(&summary)).unwrap();
    job_runs::finish(&mut c, "load-2", ts("2024-03-02 02:00:05"), Err("boom")).unwrap();
    let runs = job_runs::latest(&mut c, "load", 10).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["load-2", "load-1"]
    );
    assert_eq!(
        (runs[0].status.as_str(), runs[0].error.as_deref()),
        ("failed", Some("boom"))
    );
    assert_eq!(runs[1].summary.as_deref(), Some(r#"{"customers":3}"#));
    assert_eq!(runs[1].as_of, Some(date("2024-02-29")));
}

/// The text one SQLite query answers (as column `v`).
pub(super) fn sqlite_text(c: &mut DbConnection, query: &str) -> String {
    #[derive(QueryableByName)]
    struct Val {
        #[diesel(sql_type = diesel::sql_types::Text)]
        v: String,
    }
    let DbConnection::Sqlite(c) = c else {
        panic!("not sqlite")
    };
    diesel::sql_query(query).get_result::<Val>(c).unwrap().v
}

/// Asserts a SQLite connection has WAL, foreign keys and the busy timeout on.
pub(super) fn assert_sqlite_setup(c: &mut DbConnection) {
    let mut pragma = |q: &str| sqlite_text(c, q);
    assert_eq!(
        pragma("SELECT journal_mode AS v FROM pragma_journal_mode"),
        "wal"
    );
    assert_eq!(
        pragma("SELECT CAST(foreign_keys AS TEXT) AS v FROM pragma_foreign_keys"),
        "1"
    );
    assert_eq!(
        pragma("SELECT CAST(timeout AS TEXT) AS v FROM pragma_busy_timeout"),
        "10000"
    );
}

#[test]
fn sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout() {
    let db = TestDb::sqlite();
    let mut c = DbConnection::connect_for_write(&db.url).unwrap();
    assert_sqlite_setup(&mut c);
}

fn a_first_upsert_still_checks_foreign_keys(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let l1 = C1_LOADED;
    // scores is empty: the bulk path, which checks the key in one join.
    let err = c.transaction::<_, DbError, _>(|c| {
        scores::upsert(
            c,
            &[
                score("c1", "2024-03-01", 1, l1),
                score("nobody", "2024-03-01", 1, l1),
            ],
        )
    });
    assert_scores_query_failed(&err);
    assert_eq!(scores::count(&mut c).unwrap(), 0);
    assert_eq!(
        in_tx(&mut c, |c| scores::upsert(
            c,
            &[score("c1", "2024-03-01", 1, l1)]
        )),
        1
    );
}

fn a_first_upsert_keeps_the_indexes_and_foreign_keys(backend: Backend) {
    let (_db, mut c) = open(backend);
    #[derive(QueryableByName)]
    struct Ddl {
        #[diesel(sql_type = diesel::sql_types::Text)]
        def: String,
    }
    // Every index and foreign key definition of customers and scores.
    let ddl = |c: &mut DbConnection| -> Vec<String> {
        let sql = match backend {
            Backend::Postgres => {
                "SELECT indexdef AS def FROM pg_indexes WHERE tablename IN ('customers', 'scores') \
                 UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid IN ('customers'::regclass, 'scores'::regclass) ORDER BY 1"
            }
            Backend::Sqlite => {
                "SELECT coalesce(sql, name) AS def FROM sqlite_master \
                 WHERE tbl_name IN ('customers', 'scores') ORDER BY 1"
            }
        };
        crate::with_backend!(c, c => diesel::sql_query(sql).load::<Ddl>(c))
            .unwrap()
            .into_iter()
            .map(|d| d.def)
            .collect()
    };
    let before = ddl(&mut c);
    assert!(
        before.iter().any(|d| d.contains("rfm_segment")),
        "{before:?}"
    );
    let l1 = "2024-03-01 02:00:00";
    in_tx(&mut c, |c| {
        customers::upsert(c, &[customer("c1", true, None, l1)])?;
        scores::upsert(c, &[score("c1", "2024-03-01", 1, l1)])
    });
    assert_eq!(ddl(&mut c), before);
}

fn a_reload_of_many_rows_changes_nothing(backend: Backend) {
    let (_db, mut c) = open(backend);
    // More rows than one prepared multi-row INSERT takes, and stamps with
    // every fraction length, so both statement shapes and the hand-written
    // timestamp text are read back and compared by the reload.
    let ids: Vec<String> = (0..537).map(|i| format!("c{i:05}")).collect();
    let fractions = ["", ".5", ".123", ".123456", ".000001"];
    let stamps: Vec<String> = (0..ids.len())
        .map(|i| {
            format!(
                "2024-03-01 02:{:02}:{:02}{}",
                i % 60,
                (i * 7) % 60,
                fractions[i % 5]
            )
        })
        .collect();
    let rows: Vec<_> = ids
        .iter()
        .zip(&stamps)
        .enumerate()
        .map(|(i, (id, stamp))| {
            let mut r = customer(id, i % 2 == 0, Some(stamp), "2024-03-02 01:00:00.25");
            r.first_seen = Some(ts(stamp));
            r.birth_date = Some(date("1980-02-29") + chrono::Days::new(i as u64));
            r
        })
        .collect();
    let scored: Vec<_> = ids
        .iter()
        .map(|id| score(id, "2024-03-01", 3, "2024-03-02 01:00:00.25"))
        .collect();
    let first = in_tx(&mut c, |c| {
        Ok((
            customers::upsert_all(c, &rows)?,
            scores::upsert(c, &scored)?,
        ))
    });
    assert_eq!(first, ((ids.len(), 0), ids.len()));
    let stored = customers::all(&mut c).unwrap();
    assert_eq!(stored.len(), ids.len());
    for (s, r) in stored.iter().zip(&rows) {
        assert_eq!(
            (
                s.customer_id.as_str(),
                s.consent_updated_at,
                s.first_seen,
                s.birth_date
            ),
            (
                r.customer_id,
                r.consent_updated_at,
                r.first_seen,
                r.birth_date
            )
        );
    }
    let again = in_tx(&mut c, |c| {
        Ok((
            customers::upsert_all(c, &rows)?,
            scores::upsert(c, &scored)?,
        ))
    });
    assert_eq!(again, ((0, 0), 0));
    assert_eq!(customers::all(&mut c).unwrap(), stored);
}

/// Asserts that a statement on `scores` failed (and says how it did not).
fn assert_scores_query_failed<T: std::fmt::Debug>(err: &Result<T, DbError>) {
    assert!(
        matches!(
            err,
            Err(DbError::Query {
                table: "scores",
                ..
            })
        ),
        "{err:?}"
    );
}
