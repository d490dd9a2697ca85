//! The portal's tables (surveys, invitations, answers, API tokens), the
//! newer-schema refusal and the pool, on both backends.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::{Arc, Barrier};

use diesel::prelude::*;

use super::models::api_tokens::{self, NewApiToken, Role};
use super::models::surveys::{self, NewSurvey, SurveyStatus};
use super::models::{answers, invitations};
use super::testing::TestDb;
use super::tests::{C1_LOADED, assert_sqlite_setup, open, open_with_c1, sqlite_text, ts};
use super::{Backend, DbConnection, DbError, DbUrl, pool};

crate::both_backends!(
    answers_are_one_per_invitation_and_replaced_whole,
    concurrent_submissions_of_one_invitation_make_one_row,
    the_database_checks_scores_and_one_invitation_per_customer,
    nps_answers_are_exported_by_customer_with_their_latest_time,
    roles_and_revocations_are_stored_as_enums,
    a_database_migrated_by_a_newer_binary_is_refused,
    a_first_answer_at_a_sub_microsecond_time_is_not_reported_as_replaced,
    insert_new_invites_each_customer_once_and_counts_only_the_new,
    closing_a_survey_keeps_its_first_closing_time,
);

/// A survey on `c`, and the invitation of customer `c1` to it; returns its id.
pub(super) fn invite_c1(c: &mut DbConnection, token_hash: &str) -> i64 {
    let survey = surveys::insert(
        c,
        &NewSurvey {
            name: "Spring",
            question: "How likely are you to recommend us?",
            csat_question: Some("How satisfied are you?"),
            comment_prompt: None,
            opens_at: ts(C1_LOADED),
            closes_at: None,
            status: SurveyStatus::Open,
            created_by: "ada",
            created_at: ts(C1_LOADED),
        },
    )
    .unwrap();
    assert_eq!(surveys::find(c, survey.id).unwrap().as_ref(), Some(&survey));
    invitations::insert(
        c,
        &invitations::NewInvitation {
            survey_id: survey.id,
            customer_id: "c1",
            token_hash,
            created_at: ts(C1_LOADED),
            expires_at: ts("2024-04-01 00:00:00"),
            campaign_id: None,
        },
    )
    .unwrap()
}

fn answers_are_one_per_invitation_and_replaced_whole(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    let first = ts("2024-03-02 10:00:00");
    let (a, replaced) = answers::upsert(&mut c, inv, 9, Some(4), Some("great"), first).unwrap();
    assert!(!replaced);
    assert_eq!(
        (a.score, a.csat, a.comment.as_deref()),
        (9, Some(4), Some("great"))
    );
    let later = ts("2024-03-03 11:00:00");
    let (b, replaced) = answers::upsert(&mut c, inv, 0, None, None, later).unwrap();
    assert!(replaced, "a second submission replaces the first");
    assert_eq!(b.id, a.id, "in place: no second row");
    assert_eq!(
        (b.score, b.csat, b.comment.as_deref()),
        (0, None, None),
        "omitted fields are cleared"
    );
    assert_eq!((b.answered_at, b.updated_at), (first, later));
    assert_eq!(answers::by_invitation(&mut c, inv).unwrap(), Some(b));
}

fn concurrent_submissions_of_one_invitation_make_one_row(backend: Backend) {
    let (db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = DbConnection::connect(&url).unwrap();
                barrier.wait();
                let at = ts(&format!("2024-03-02 10:00:0{i}"));
                answers::upsert(&mut c, inv, i as i32, None, None, at).unwrap()
            })
        })
        .collect();
    let ids: Vec<i64> = handles
        .into_iter()
        .map(|h| h.join().unwrap().0.id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let rows: i64 =
        crate::with_backend!(&mut c, c => super::schema::answers::table.count().get_result(c))
            .unwrap();
    assert_eq!(rows, 1);
}

fn the_database_checks_scores_and_one_invitation_per_customer(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    let at = ts("2024-03-02 10:00:00");
    for (score, csat) in [(11, None), (-1, None), (5, Some(0)), (5, Some(6))] {
        let r = answers::upsert(&mut c, inv, score, csat, None, at);
        assert!(
            matches!(r, Err(DbError::Query { .. })),
            "{score} {csat:?}: {r:?}"
        );
    }
    assert_eq!(answers::by_invitation(&mut c, inv).unwrap(), None);
    let again = invitations::NewInvitation {
        survey_id: invitations::by_token_hash(&mut c, "h1")
            .unwrap()
            .unwrap()
            .survey_id,
        customer_id: "c1",
        token_hash: "h2",
        created_at: at,
        expires_at: at,
        campaign_id: None,
    };
    assert!(
        invitations::insert(&mut c, &again).is_err(),
        "one per survey and customer"
    );
    assert_eq!(invitations::by_token_hash(&mut c, "h2").unwrap(), None);
}

fn nps_answers_are_exported_by_customer_with_their_latest_time(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    answers::upsert(&mut c, inv, 9, None, None, ts("2024-03-02 10:00:00")).unwrap();
    answers::upsert(&mut c, inv, 3, None, None, ts("2024-03-05 10:00:00")).unwrap();
    assert_eq!(
        answers::nps_answers(&mut c).unwrap(),
        [("c1".to_string(), ts("2024-03-05 10:00:00"), 3)]
    );
}

fn roles_and_revocations_are_stored_as_enums(backend: Backend) {
    let (_db, mut c) = open(backend);
    let at = ts(C1_LOADED);
    for (name, role, hash) in [
        ("bob", Role::Marketer, "hb1"),
        ("ada", Role::Admin, "ha"),
        ("bob", Role::Viewer, "hb2"),
    ] {
        let row = NewApiToken {
            name,
            role,
            token_hash: hash,
            created_at: at,
        };
        api_tokens::insert(&mut c, &row).unwrap();
    }
    let t = api_tokens::by_hash(&mut c, "hb1").unwrap().unwrap();
    assert_eq!(
        (t.name.as_str(), t.role, t.last_used_at),
        ("bob", Role::Marketer, None)
    );
    api_tokens::touch(&mut c, t.id, ts("2024-03-02 00:00:00")).unwrap();
    assert_eq!(
        api_tokens::revoke_by_name(&mut c, "bob", ts("2024-03-03 00:00:00")).unwrap(),
        2
    );
    assert_eq!(
        api_tokens::revoke_by_name(&mut c, "bob", ts("2024-03-04 00:00:00")).unwrap(),
        0
    );
    let all = api_tokens::list(&mut c).unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|t| (t.name.as_str(), t.role, t.revoked_at.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            ("ada", Role::Admin, false),
            ("bob", Role::Marketer, true),
            ("bob", Role::Viewer, true)
        ]
    );
    assert_eq!(all[1].last_used_at, Some(ts("2024-03-02 00:00:00")));
    // The database refuses a role the enum does not name.
    let bad = crate::with_backend!(&mut c, c => diesel::sql_query("UPDATE api_tokens SET role = 'owner'").execute(c));
    assert!(bad.is_err());
}

#[test]
fn unknown_enum_texts_are_errors_naming_the_allowed_values() {
    let err = "owner".parse::<Role>().unwrap_err().to_string();
    assert_eq!(
        err,
        r#"unknown Role "owner" (expected one of: viewer marketer admin)"#
    );
    assert_eq!(
        "closed".parse::<SurveyStatus>().unwrap(),
        SurveyStatus::Closed
    );
    assert!(Role::Viewer < Role::Marketer && Role::Marketer < Role::Admin);
}

fn a_database_migrated_by_a_newer_binary_is_refused(backend: Backend) {
    let (db, mut c) = open(backend);
    crate::with_backend!(&mut c, c => diesel::sql_query(
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')"
    ).execute(c))
    .unwrap();
    drop(c);
    let err = DbConnection::connect_for_write(&db.url).err().unwrap();
    assert!(matches!(err, DbError::NewerSchema { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("29990101000000") && !msg.contains('\n'),
        "{msg}"
    );
    // Readers still open it (the refusal is about applying migrations).
    DbConnection::connect(&db.url).unwrap();
}

#[test]
fn pooled_sqlite_connections_get_the_pragmas_and_never_migrate() {
    let db = TestDb::sqlite();
    let pool = pool::build(&DbUrl::parse(&db.url).unwrap(), 2).unwrap();
    let mut c = pool::checkout(&pool).unwrap();
    assert_sqlite_setup(&mut c);
    assert_eq!(
        sqlite_text(
            &mut c,
            "SELECT CAST(count(*) AS TEXT) AS v FROM sqlite_master WHERE name = 'customers'"
        ),
        "0",
        "a pool never migrates: serve does, once"
    );
}

#[test]
fn an_observed_pool_reports_each_statement_its_connections_start() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let db = TestDb::sqlite();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let hook: pool::StatementHook = Arc::new(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let pool = pool::build_observed(&DbUrl::parse(&db.url).unwrap(), 1, Some(hook)).unwrap();
    let mut c = pool::checkout(&pool).unwrap();
    let before = seen.load(Ordering::Relaxed);
    diesel::sql_query("SELECT 1").execute(&mut *c).unwrap();
    diesel::sql_query("SELECT 2").execute(&mut *c).unwrap();
    assert_eq!(seen.load(Ordering::Relaxed) - before, 2);
}

fn a_first_answer_at_a_sub_microsecond_time_is_not_reported_as_replaced(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    let at = ts("2024-03-02 10:00:00") + chrono::Duration::nanoseconds(123_456_789);
    let (a, replaced) = answers::upsert(&mut c, inv, 7, None, None, at).unwrap();
    assert!(!replaced, "PostgreSQL keeps microseconds only");
    let (_, replaced) = answers::upsert(
        &mut c,
        inv,
        8,
        None,
        None,
        at + chrono::Duration::seconds(1),
    )
    .unwrap();
    assert!(replaced);
    assert_eq!(
        a.answered_at,
        ts("2024-03-02 10:00:00") + chrono::Duration::microseconds(123_456)
    );
}

fn insert_new_invites_each_customer_once_and_counts_only_the_new(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let inv = invite_c1(&mut c, "h1");
    let survey_id = invitations::by_token_hash(&mut c, "h1")
        .unwrap()
        .unwrap()
        .survey_id;
    let row = |hash| invitations::NewInvitation {
        survey_id,
        customer_id: "c1",
        token_hash: hash,
        created_at: ts(C1_LOADED),
        expires_at: ts("2024-05-01 00:00:00"),
        campaign_id: None,
    };
    assert_eq!(
        invitations::insert_new(&mut c, &[row("h2"), row("h3")]).unwrap(),
        0
    );
    assert_eq!(invitations::count(&mut c, survey_id, None).unwrap(), 1);
    let page = invitations::page(&mut c, survey_id, Some(false), None, 10).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        (
            page[0].0.id,
            page[0].0.token_hash.as_str(),
            page[0].1.customer_id.as_str()
        ),
        (inv, "h1", "c1"),
        "the first invitation is left as it was"
    );
    assert!(
        invitations::page(&mut c, survey_id, Some(true), None, 10)
            .unwrap()
            .is_empty()
    );
}

fn closing_a_survey_keeps_its_first_closing_time(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    invite_c1(&mut c, "h1");
    let id = invitations::by_token_hash(&mut c, "h1")
        .unwrap()
        .unwrap()
        .survey_id;
    let first = surveys::close(&mut c, id, ts("2024-03-05 00:00:00"))
        .unwrap()
        .unwrap();
    assert_eq!(first.status, SurveyStatus::Closed);
    assert_eq!(first.closed_at, Some(ts("2024-03-05 00:00:00")));
    let again = surveys::close(&mut c, id, ts("2024-03-06 00:00:00"))
        .unwrap()
        .unwrap();
    assert_eq!(again.closed_at, first.closed_at);
    assert_eq!(
        surveys::close(&mut c, id + 1, ts("2024-03-06 00:00:00")).unwrap(),
        None
    );
}
