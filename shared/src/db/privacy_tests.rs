//! Erasure from the database on both backends: what goes, what stays under
//! the pseudonym, and that the deleted bytes are gone from the files.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::campaign_tests::queued_c1;
use super::models::audit_log::{self, AuditAction, AuditQuery};
use super::models::campaigns::{self, CampaignContent};
use super::models::consent_changes::{self, ConsentSource, NewConsentChange};
use super::models::suppressions::{self, Suppression, SuppressionReason};
use super::models::unsubscribes::{self, NewUnsubscribe, UnsubscribeSource};
use super::models::{answers, customers, job_runs, outbox};
use super::portal_tests::invite_c1;
use super::schema;
use super::tests::{C1_LOADED, customer, in_tx, open_with_c1, ts};
use super::{Backend, DbConnection};
use crate::privacy::erase::{self, EraseError, ErasureOutcome, ErasureRequest};
use crate::privacy::{KeyKind, PrivacyKey};

crate::both_backends!(
    an_erasure_pseudonymises_every_reference_and_keeps_the_counts,
    erasing_twice_changes_nothing_but_the_audit_log,
    an_erasure_that_fails_midway_changes_nothing_and_a_rerun_completes_it,
    erasing_a_customer_who_shares_an_address_leaves_the_other_theirs,
    an_unknown_customer_cannot_be_erased,
);

const EMAIL: &str = "a@example.com";

fn key() -> PrivacyKey {
    PrivacyKey::new(b"test privacy key, 32 bytes long!").unwrap()
}

fn request(id: &str) -> ErasureRequest<'_> {
    ErasureRequest {
        customer_id: id,
        actor: "cli:dpo",
        reason: "ticket 42",
        at: ts("2024-03-10 09:00:00"),
    }
}

/// c1 with a phone and a last name, an answered survey with a comment, a
/// sent campaign message, an unsubscribe (and its suppression), a staff
/// consent note, an audited read and a job run naming c1.
fn c1_everywhere(c: &mut DbConnection) {
    let mut c1 = customer("c1", true, Some("2024-01-01 00:00:00"), C1_LOADED);
    c1.phone = Some("+441632960001");
    c1.last_name = Some("Lovelace");
    in_tx(c, |c| customers::upsert(c, &[c1]));
    let inv = invite_c1(c, "h1");
    answers::upsert(c, inv, 9, Some(5), Some("Ada here, love it"), ts(C1_LOADED)).unwrap();
    let content = CampaignContent {
        name: "Win back",
        audience: "{}",
        subject: "Hi",
        text_template: "Hi",
        html_template: None,
        survey_id: None,
        offer_code: None,
        control_share: 0.0,
        frequency_cap_days: None,
        send_at: None,
    };
    let campaign = campaigns::create(c, content, "staff", ts(C1_LOADED)).unwrap();
    let mut row = queued_c1(campaign.id);
    row.address = Some(EMAIL);
    outbox::freeze(c, &[row]).unwrap();
    let bounced = format!("550 5.1.1 <{EMAIL}>: mailbox unavailable");
    diesel::sql_query(format!("UPDATE outbox SET last_error = '{bounced}'"))
        .execute_returning_count(c);
    unsubscribes::insert(
        c,
        &NewUnsubscribe {
            customer_id: Some("c1"),
            campaign_id: Some(campaign.id),
            address: EMAIL,
            source: UnsubscribeSource::OneClick,
            at: ts("2024-03-05 00:00:00"),
        },
    )
    .unwrap();
    suppressions::add(
        c,
        &Suppression {
            address: EMAIL.into(),
            reason: SuppressionReason::Unsubscribed,
            customer_id: Some("c1".into()),
            campaign_id: Some(campaign.id),
            at: ts("2024-03-05 00:00:00"),
        },
    )
    .unwrap();
    in_tx(c, |c| {
        consent_changes::set(
            c,
            &NewConsentChange {
                customer_id: "c1",
                email_opt_in: false,
                source: ConsentSource::Staff,
                at: ts("2024-03-06 00:00:00"),
                record: Some("staff eve: Ada Lovelace called, +441632960001"),
                recorded_at: ts("2024-03-06 00:00:00"),
            },
        )
    });
    in_tx(c, |c| {
        consent_changes::set(
            c,
            &NewConsentChange {
                customer_id: "c1",
                email_opt_in: true,
                source: ConsentSource::Crm,
                at: ts("2024-03-07 00:00:00"),
                record: Some("load"),
                recorded_at: ts("2024-03-07 00:00:00"),
            },
        )
    });
    let read = audit_log::NewAuditEntry {
        at: ts("2024-03-08 00:00:00"),
        actor: "eve",
        action: AuditAction::ReadPersonal,
        detail: Some("customer"),
    };
    in_tx(c, |c| audit_log::insert(c, &read, &["c1"]));
    job_runs::start(c, "load-1", "load", ts(C1_LOADED), None).unwrap();
    let summary = serde_json::json!({"refused": [{"customer_id": "c1", "field": "phone"}]});
    job_runs::finish(c, "load-1", ts(C1_LOADED), Ok(&summary)).unwrap();
}

trait ExecuteCount {
    fn execute_returning_count(self, c: &mut DbConnection) -> usize;
}

impl ExecuteCount for diesel::query_builder::SqlQuery {
    fn execute_returning_count(self, c: &mut DbConnection) -> usize {
        crate::with_backend!(c, c => self.execute(c)).unwrap()
    }
}

/// Every byte the database holds that a reader could get at: the SQLite
/// file and its WAL as stored on disk (free pages included), or every
/// PostgreSQL table as text.
fn stored_bytes(db_url: &str, c: &mut DbConnection) -> Vec<u8> {
    match c.backend() {
        Backend::Sqlite => {
            let path = db_url.trim_start_matches("sqlite://");
            let mut bytes = std::fs::read(path).unwrap();
            for suffix in ["-wal", "-journal"] {
                if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
                    bytes.extend(more);
                }
            }
            bytes
        }
        Backend::Postgres => {
            #[derive(QueryableByName)]
            struct Text {
                #[diesel(sql_type = diesel::sql_types::Text)]
                t: String,
            }
            let DbConnection::Pg(pg) = c else {
                unreachable!()
            };
            let tables: Vec<Text> = diesel::sql_query(
                "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            )
            .load(pg)
            .unwrap();
            let mut all = String::new();
            for table in tables {
                let rows: Vec<Text> = diesel::sql_query(format!(
                    "SELECT coalesce(string_agg(x::text, E'\\n'), '') AS t FROM {} x",
                    table.t
                ))
                .load(pg)
                .unwrap();
                for r in rows {
                    all.push_str(&r.t);
                }
            }
            all.into_bytes()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn an_erasure_pseudonymises_every_reference_and_keeps_the_counts(backend: Backend) {
    let (db, mut c) = open_with_c1(backend);
    c1_everywhere(&mut c);
    let counts = customers::counts(&mut c).unwrap();
    let before = stored_bytes(&db.url, &mut c);
    assert!(contains(&before, EMAIL) && contains(&before, "Lovelace"));

    let outcome = erase::erase_in_database(&mut c, &key(), &request("c1")).unwrap();
    let ErasureOutcome::Erased(done) = outcome else {
        panic!("{outcome:?}")
    };
    let p = key().pseudonym("c1");
    assert_eq!(done.pseudonym, p);
    assert_eq!(
        done.warehouse_done_at, None,
        "the warehouse part is pending"
    );

    // The customer is still counted, under the pseudonym, with nothing personal.
    assert_eq!(customers::counts(&mut c).unwrap(), counts);
    assert_eq!(customers::find(&mut c, "c1").unwrap(), None);
    let row = customers::find(&mut c, &p).unwrap().unwrap();
    assert!(row.erased && !row.email_opt_in);
    assert_eq!(
        (row.email, row.phone, row.first_name, row.last_name),
        (None, None, None, None)
    );
    assert_eq!(row.country.as_deref(), Some("GB"));
    assert_eq!(row.signup_date, Some(super::tests::date("2020-01-02")));

    // The answer's score stays, its comment goes.
    let inv: i64 = crate::with_backend!(&mut c, c => schema::invitations::table
        .filter(schema::invitations::customer_id.eq(&p))
        .select(schema::invitations::id)
        .first(c))
    .unwrap();
    let answer = answers::by_invitation(&mut c, inv).unwrap().unwrap();
    assert_eq!(
        (answer.score, answer.csat, answer.comment),
        (9, Some(5), None)
    );

    // Message fates stay; addresses are keyed hashes that still suppress.
    let hashed = key().hashed_value(KeyKind::Email, EMAIL);
    let sent: Vec<(Option<String>, Option<String>)> =
        crate::with_backend!(&mut c, c => schema::outbox::table
        .filter(schema::outbox::customer_id.eq(&p))
        .select((schema::outbox::address, schema::outbox::last_error))
        .load(c))
        .unwrap();
    assert_eq!(sent, [(Some(hashed.clone()), None)]);
    assert_eq!(suppressions::find(&mut c, EMAIL).unwrap(), None);
    let s = suppressions::find(&mut c, &hashed).unwrap().unwrap();
    assert_eq!(
        (s.reason, s.customer_id.as_deref()),
        (SuppressionReason::Unsubscribed, Some(p.as_str()))
    );

    // The consent history is the pseudonym's, ends withdrawn by the erasure,
    // and keeps no staff note.
    let history = consent_changes::of_customers(&mut c, std::slice::from_ref(&p)).unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.source, last.email_opt_in),
        (ConsentSource::Erasure, false)
    );
    assert!(!consent_changes::current(&history));
    assert!(
        history
            .iter()
            .all(|h| !h.record.as_deref().unwrap_or("").contains("Lovelace"))
    );

    // The audit log names the pseudonym: the earlier read and the erasure.
    let q = AuditQuery {
        customer_id: Some(p.clone()),
        ..AuditQuery::default()
    };
    let entries = audit_log::list(&mut c, &q, 10).unwrap();
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
    assert_eq!(actions, [AuditAction::Erase, AuditAction::ReadPersonal]);
    let q = AuditQuery {
        customer_id: Some("c1".into()),
        ..AuditQuery::default()
    };
    assert!(audit_log::list(&mut c, &q, 10).unwrap().is_empty());

    // Nothing personal is left in the stored bytes.
    let after = stored_bytes(&db.url, &mut c);
    for needle in [EMAIL, "Lovelace", "+441632960001", "Ada here", "\"c1\""] {
        assert!(!contains(&after, needle), "{needle} is still stored");
    }
}

fn erasing_twice_changes_nothing_but_the_audit_log(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let first = erase::erase_in_database(&mut c, &key(), &request("c1")).unwrap();
    let again = erase::erase_in_database(&mut c, &key(), &request("c1")).unwrap();
    assert_eq!(
        again,
        ErasureOutcome::AlreadyErased(first.erasure().clone())
    );
    assert_eq!(customers::counts(&mut c).unwrap(), (1, 1));
    let q = AuditQuery {
        customer_id: Some(first.erasure().pseudonym.clone()),
        action: Some(AuditAction::Erase),
        before_id: None,
    };
    let entries = audit_log::list(&mut c, &q, 10).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("erased again: ticket 42")
    );
}

fn an_erasure_that_fails_midway_changes_nothing_and_a_rerun_completes_it(backend: Backend) {
    let (db, mut c) = open_with_c1(backend);
    c1_everywhere(&mut c);
    // The last table the erasure writes is gone: it fails after every other change.
    c.batch_execute("ALTER TABLE erasure_keys RENAME TO erasure_keys_away")
        .unwrap();
    let failed = erase::erase_in_database(&mut c, &key(), &request("c1"));
    assert!(matches!(failed, Err(EraseError::Db(_))), "{failed:?}");
    let row = customers::find(&mut c, "c1").unwrap().unwrap();
    assert_eq!(row.email.as_deref(), Some(EMAIL));
    assert!(contains(&stored_bytes(&db.url, &mut c), "Ada here"));
    c.batch_execute("ALTER TABLE erasure_keys_away RENAME TO erasure_keys")
        .unwrap();
    let done = erase::erase_in_database(&mut c, &key(), &request("c1")).unwrap();
    assert!(matches!(done, ErasureOutcome::Erased(_)));
    assert_eq!(customers::find(&mut c, "c1").unwrap(), None);
}

fn erasing_a_customer_who_shares_an_address_leaves_the_other_theirs(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    // c2 shares c1's address (the fixture gives both a@example.com), and
    // unsubscribed from it.
    let c2 = customer("c2", true, Some("2024-01-01 00:00:00"), C1_LOADED);
    in_tx(&mut c, |c| customers::upsert(c, &[c2]));
    let theirs = Suppression {
        address: EMAIL.into(),
        reason: SuppressionReason::Unsubscribed,
        customer_id: Some("c2".into()),
        campaign_id: None,
        at: ts("2024-03-05 00:00:00"),
    };
    suppressions::add(&mut c, &theirs).unwrap();
    erase::erase_in_database(&mut c, &key(), &request("c1")).unwrap();
    // Their unsubscribe still suppresses the address, as they left it.
    assert_eq!(suppressions::find(&mut c, EMAIL).unwrap(), Some(theirs));
    let other = customers::find(&mut c, "c2").unwrap().unwrap();
    assert_eq!(other.email.as_deref(), Some(EMAIL));
    assert_eq!(other.first_name.as_deref(), Some("Ada"));
    assert!(other.email_opt_in && !other.erased);
}

fn an_unknown_customer_cannot_be_erased(backend: Backend) {
    let (_db, mut c) = open_with_c1(backend);
    let e = erase::erase_in_database(&mut c, &key(), &request("nobody")).unwrap_err();
    assert!(matches!(e, EraseError::NotFound(_)), "{e:?}");
    assert!(e.to_string().contains("no customer \"nobody\""), "{e}");
}
