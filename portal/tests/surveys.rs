//! Surveys, invitations, answers and the survey page, driven for real over
//! HTTP on SQLite and PostgreSQL: roles of the mutations and the export,
//! every invitation failure, resubmission, concurrent submissions, hostile
//! input, the export's exact content.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{NaiveDate, Utc};
use common::{SECRET, TestServer, error_codes};
use cvm_portal::tokens::{LinkPurpose, LinkSigner};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::customers::{self, NewCustomer};
use cvm_shared::db::models::scores::{self, NewScore};
use cvm_shared::db::schema::{answers, invitations};
use cvm_shared::db::{Backend, DbConnection};
use diesel::prelude::*;
use serde_json::{Value, json};

cvm_shared::both_backends!(
    close_survey_is_for_marketers_and_stops_answers_and_invitations,
    create_invitations_invites_each_matching_customer_once_per_survey,
    concurrent_create_invitations_never_invite_a_customer_twice,
    invitations_list_by_page_with_their_links_and_answered_state,
    submit_feedback_stores_one_answer_and_a_resubmission_replaces_it_whole,
    every_invitation_failure_is_refused_and_changes_nothing,
    sixteen_concurrent_submissions_of_one_token_make_exactly_one_row,
    answers_out_of_range_csat_without_a_question_and_wrong_types_are_bad_user_input,
    the_form_redirects_to_the_thank_you_page_and_shares_the_submission_path,
    bad_form_posts_get_the_form_again_with_the_error_and_change_nothing,
    hostile_comments_are_stored_verbatim_and_escaped_on_every_output,
    the_export_is_for_marketers_and_has_the_exact_content,
    the_export_streams_answers_across_chunks,
);

cvm_shared::__postgres_test! {
#[test]
fn two_portals_on_one_postgres_database_share_invitations_and_never_double_an_answer() {
    let f = Fixture::new(Backend::Postgres, false);
    let other = TestServer::on(f.s.db.borrowed());
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    let results: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (server, token) = (if i % 2 == 0 { &f.s } else { &other }, &token);
                scope.spawn(move || {
                    server
                        .gql(
                            None,
                            SUBMIT,
                            json!({"input": {"token": token, "score": i % 11}}),
                        )
                        .1
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for body in &results {
        assert_eq!(error_codes(body), Vec::<String>::new(), "{body}");
    }
    let first = results
        .iter()
        .filter(|b| b["data"]["submitFeedback"]["updated"] == false)
        .count();
    assert!(first <= 1, "at most one submission was the first");
    assert_eq!(f.answers().len(), 1, "one row across both processes");
}
}

#[test]
fn a_submission_while_a_load_holds_the_sqlite_write_lock_waits_its_turn_and_is_stored() {
    use diesel::connection::SimpleConnection;
    let f = Fixture::new(Backend::Sqlite, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    // What a running `cvm-etl load` does to the file: one long write
    // transaction, held here past SQLite's busy timeout.
    let mut load = DbConnection::connect_for_write(&f.s.db.url).unwrap();
    load.batch_execute(
        "BEGIN IMMEDIATE; UPDATE customers SET channels = channels WHERE customer_id = 'c2'",
    )
    .unwrap();
    let held = cvm_shared::db::connection::SQLITE_BUSY_TIMEOUT + std::time::Duration::from_secs(2);
    let (answer, released_at) = std::thread::scope(|scope| {
        let submitted = scope.spawn(|| {
            let body = f.submit(&token, json!(9), json!(4), json!("during the load"));
            (body, std::time::Instant::now())
        });
        std::thread::sleep(held);
        assert!(
            !submitted.is_finished(),
            "the answer waits for the lock, it is not acknowledged before"
        );
        let released_at = std::time::Instant::now();
        load.batch_execute("COMMIT").unwrap();
        (submitted.join().unwrap(), released_at)
    });
    let (body, answered_at) = answer;
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    assert_eq!(body["data"]["submitFeedback"]["updated"], false);
    assert!(answered_at >= released_at);
    let stored = f.answers();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].1, stored[0].2, stored[0].3.as_deref()),
        (9, Some(4), Some("during the load"))
    );
}

const CREATE: &str = "mutation($input: SurveyInput!) { createSurvey(input: $input) { id } }";
const INVITE: &str = "mutation($id: ID!, $filter: CustomerFilter, $days: Int) { createInvitations(surveyId: $id, filter: $filter, expiresInDays: $days) { created alreadyInvited } }";
const SUBMIT: &str = "mutation($input: FeedbackInput!) { submitFeedback(input: $input) { surveyName score updated } }";
const CLOSE: &str = "mutation($id: ID!) { closeSurvey(id: $id) { id closed closedAt } }";
const INVITATIONS: &str = "query($id: ID!, $first: Int, $after: String, $answered: Boolean) { survey(id: $id) { invitations(first: $first, after: $after, answered: $answered) { totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id url expiresAt answeredAt campaignId customer { id email channels } } } } } }";

/// A test server with customers c1-c4 (c4 inactive; c3 never scored), a
/// marketer token and a survey (with CSAT and comment unless `plain`).
struct Fixture {
    s: TestServer,
    marketer: String,
    survey: String,
}

fn customer<'a>(id: &'a str, email: &'a str, active: bool) -> NewCustomer<'a> {
    let t = NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    NewCustomer {
        customer_id: id,
        is_guest: false,
        email: Some(email),
        phone: None,
        first_name: Some("Ada"),
        last_name: Some(id),
        country: Some("GB"),
        signup_date: None,
        birth_date: None,
        email_opt_in: true,
        consent_updated_at: Some(t),
        first_seen: Some(t),
        channels: "store,web".into(),
        active,
        loaded_at: t,
    }
}

fn score<'a>(
    id: &'a str,
    segment: &'a str,
    stage: &'a str,
    tier: &'a str,
    clv: f64,
) -> NewScore<'a> {
    NewScore {
        customer_id: id,
        as_of: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
        orders: 2,
        frequency: 1,
        recency: 10.0,
        t: 30.0,
        monetary_avg: 20.0,
        total_revenue: "40.00".into(),
        first_purchase: None,
        last_purchase: None,
        days_since_last_purchase: None,
        r_score: Some(3),
        f_score: Some(3),
        m_score: Some(3),
        rfm_segment: segment,
        p_alive: Some(0.5),
        expected_purchases_90d: None,
        expected_purchases_365d: None,
        expected_avg_value: None,
        clv_12m: Some(clv),
        churn_risk: Some(0.5),
        nps_last: None,
        nps_class: None,
        engagement_90d: 0,
        lifecycle_stage: Some(stage),
        value_tier: Some(tier),
        loyalty_index: None,
        loaded_at: NaiveDate::from_ymd_opt(2024, 3, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    }
}

/// Loads customers `c1`..`c4` (and `extra` more, `x0000`...) with scores for c1 and c2.
fn seed(url: &str, extra: usize) {
    let mut c = DbConnection::connect_for_write(url).unwrap();
    let ids: Vec<String> = (0..extra).map(|i| format!("x{i:04}")).collect();
    let mut rows = vec![
        customer("c1", "c1@example.com", true),
        customer("c2", "c2@example.com", true),
        customer("c3", "c3@example.com", true),
        customer("c4", "c4@example.com", false),
    ];
    rows.extend(ids.iter().map(|id| customer(id, "x@example.com", true)));
    c.transaction::<_, cvm_shared::db::DbError, _>(|c| {
        customers::upsert(c, &rows)?;
        scores::upsert(
            c,
            &[
                score("c1", "At Risk", "at_risk", "low", 0.0),
                score("c2", "Champions", "loyal", "high", 1234.5),
            ],
        )
    })
    .unwrap();
}

impl Fixture {
    fn new(backend: Backend, plain: bool) -> Fixture {
        Fixture::with(backend, plain, 0)
    }

    fn with(backend: Backend, plain: bool, extra: usize) -> Fixture {
        let s = TestServer::start(backend);
        seed(&s.db.url, extra);
        let marketer = s.token("mark", Role::Marketer);
        let input = if plain {
            json!({"name": "Plain", "question": "Recommend us?"})
        } else {
            json!({"name": "Spring <survey>", "question": "Would you recommend us?", "csatQuestion": "How satisfied are you?", "commentPrompt": "Anything else?"})
        };
        let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": input}));
        let survey = body["data"]["createSurvey"]["id"]
            .as_str()
            .expect("created")
            .to_string();
        Fixture {
            s,
            marketer,
            survey,
        }
    }

    fn invite(&self, filter: Value, days: i64) -> Value {
        let (_, body) = self.s.gql(
            Some(&self.marketer),
            INVITE,
            json!({"id": self.survey, "filter": filter, "days": days}),
        );
        body
    }

    /// The link tokens of the survey's invitations, by customer id.
    fn tokens(&self) -> Vec<(String, String)> {
        let (_, body) = self.s.gql(
            Some(&self.marketer),
            INVITATIONS,
            json!({"id": self.survey, "first": 500}),
        );
        body["data"]["survey"]["invitations"]["edges"]
            .as_array()
            .expect("a page")
            .iter()
            .map(|e| {
                let url = e["node"]["url"].as_str().unwrap();
                let token = url.strip_prefix("http://portal.test/s/").expect(url);
                (
                    e["node"]["customer"]["id"].as_str().unwrap().to_string(),
                    token.to_string(),
                )
            })
            .collect()
    }

    fn token_of(&self, customer: &str) -> String {
        self.tokens()
            .into_iter()
            .find(|(c, _)| c == customer)
            .map(|(_, t)| t)
            .expect("invited")
    }

    fn submit(&self, token: &str, score: Value, csat: Value, comment: Value) -> Value {
        let (status, body) = self.s.gql(
            None,
            SUBMIT,
            json!({"input": {"token": token, "score": score, "csat": csat, "comment": comment}}),
        );
        assert_eq!(status, 200);
        body
    }

    /// Every stored answer: (invitation, score, csat, comment).
    fn answers(&self) -> Vec<(i64, i32, Option<i32>, Option<String>)> {
        let mut c = DbConnection::connect(&self.s.db.url).unwrap();
        cvm_shared::with_backend!(&mut c, c => answers::table
            .select((answers::invitation_id, answers::score, answers::csat, answers::comment))
            .order(answers::id)
            .load(c))
        .unwrap()
    }

    fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// POSTs a form body to `/s/{token}`: (status, Location, body).
    fn post_form(
        &self,
        token: &str,
        body: impl Into<reqwest::blocking::Body>,
    ) -> (u16, String, String) {
        let r = self
            .client()
            .post(format!("{}/s/{token}", self.s.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), location, r.text().unwrap())
    }

    fn export(&self, token: Option<&str>, survey: &str) -> (u16, String) {
        let mut r = self
            .client()
            .get(format!("{}/export/surveys/{survey}.csv", self.s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }
}

fn close_survey_is_for_marketers_and_stops_answers_and_invitations(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    let viewer = f.s.token("vera", Role::Viewer);
    let (_, body) = f.s.gql(Some(&viewer), CLOSE, json!({"id": f.survey}));
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body}");
    let (_, body) = f.s.gql(None, CLOSE, json!({"id": f.survey}));
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}");
    let (_, body) = f.s.gql(Some(&f.marketer), CLOSE, json!({"id": "999"}));
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
    let (_, body) = f.s.gql(Some(&f.marketer), CLOSE, json!({"id": f.survey}));
    let closed = &body["data"]["closeSurvey"];
    assert_eq!(closed["closed"], true, "{body}");
    // Closing again keeps the first closing time.
    let (_, again) = f.s.gql(Some(&f.marketer), CLOSE, json!({"id": f.survey}));
    assert_eq!(again["data"]["closeSurvey"]["closedAt"], closed["closedAt"]);
    let body = f.submit(&token, json!(9), Value::Null, Value::Null);
    assert_eq!(error_codes(&body), ["SURVEY_CLOSED"], "{body}");
    let body = f.invite(json!({}), 30);
    assert_eq!(error_codes(&body), ["SURVEY_CLOSED"], "{body}");
    assert!(f.answers().is_empty());
}

fn create_invitations_invites_each_matching_customer_once_per_survey(backend: Backend) {
    let f = Fixture::new(backend, false);
    // Viewers may not; nobody without a token may.
    let viewer = f.s.token("vera", Role::Viewer);
    let (_, body) = f.s.gql(Some(&viewer), INVITE, json!({"id": f.survey}));
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body}");
    let (_, body) = f.s.gql(None, INVITE, json!({"id": f.survey}));
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}");
    for days in [-1, 366] {
        let body = f.invite(json!({}), days);
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{days}: {body}");
    }
    let (_, body) = f.s.gql(Some(&f.marketer), INVITE, json!({"id": "424242"}));
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
    assert!(f.tokens().is_empty(), "nothing was invited");

    // A filter on scores: only c2 is loyal.
    let body = f.invite(json!({"lifecycleStage": ["LOYAL"]}), 30);
    assert_eq!(
        body["data"]["createInvitations"],
        json!({"created": 1, "alreadyInvited": 0}),
        "{body}"
    );
    // No filter: the active customers (c4 is not); c2 was invited already.
    let body = f.invite(Value::Null, 30);
    assert_eq!(
        body["data"]["createInvitations"],
        json!({"created": 2, "alreadyInvited": 1}),
        "{body}"
    );
    // active: null means every customer, the inactive c4 too.
    let body = f.invite(json!({"active": null}), 30);
    assert_eq!(
        body["data"]["createInvitations"],
        json!({"created": 1, "alreadyInvited": 3}),
        "{body}"
    );
    // Search: a case-insensitive substring; wildcards are literal.
    let body = f.invite(json!({"search": "C1@EXAMPLE", "active": null}), 30);
    assert_eq!(
        body["data"]["createInvitations"],
        json!({"created": 0, "alreadyInvited": 1})
    );
    let body = f.invite(json!({"search": "%"}), 30);
    assert_eq!(
        body["data"]["createInvitations"],
        json!({"created": 0, "alreadyInvited": 0})
    );
    let mut invited: Vec<String> = f.tokens().into_iter().map(|(c, _)| c).collect();
    invited.sort();
    assert_eq!(invited, ["c1", "c2", "c3", "c4"]);
}

fn concurrent_create_invitations_never_invite_a_customer_twice(backend: Backend) {
    let f = Fixture::with(backend, false, 300);
    let batches: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| f.invite(json!({}), 30)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut created = 0;
    for b in &batches {
        let batch = &b["data"]["createInvitations"];
        assert_eq!(
            batch["created"].as_i64().unwrap() + batch["alreadyInvited"].as_i64().unwrap(),
            303,
            "{b}"
        );
        created += batch["created"].as_i64().unwrap();
    }
    assert_eq!(created, 303, "each customer invited by exactly one call");
    let mut c = DbConnection::connect(&f.s.db.url).unwrap();
    let rows: i64 =
        cvm_shared::with_backend!(&mut c, c => invitations::table.count().get_result(c)).unwrap();
    assert_eq!(rows, 303);
}

fn invitations_list_by_page_with_their_links_and_answered_state(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"active": null}), 30);
    let page = |first: i64, after: Value, answered: Value| {
        let (_, body) = f.s.gql(
            Some(&f.marketer),
            INVITATIONS,
            json!({"id": f.survey, "first": first, "after": after, "answered": answered}),
        );
        body
    };
    let first = page(3, Value::Null, Value::Null);
    let conn = &first["data"]["survey"]["invitations"];
    assert_eq!(conn["totalCount"], 4, "{first}");
    assert_eq!(conn["edges"].as_array().unwrap().len(), 3);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true, "{first}");
    assert_eq!(conn["pageInfo"]["hasPreviousPage"], false);
    let node = &conn["edges"][0]["node"];
    assert_eq!(node["customer"]["id"], "c1");
    assert_eq!(node["customer"]["channels"], json!(["store", "web"]));
    assert_eq!(node["answeredAt"], Value::Null);
    assert_eq!(node["campaignId"], Value::Null);
    // The link is the public URL and a token signed with the secret.
    let url = node["url"].as_str().unwrap();
    let token = url.strip_prefix("http://portal.test/s/").unwrap();
    assert!(
        LinkSigner::new(SECRET)
            .unwrap()
            .verify(LinkPurpose::Survey, token)
            .is_ok()
    );
    let rest = page(3, conn["pageInfo"]["endCursor"].clone(), Value::Null);
    let rest = &rest["data"]["survey"]["invitations"];
    assert_eq!(rest["edges"].as_array().unwrap().len(), 1);
    assert_eq!(rest["edges"][0]["node"]["customer"]["id"], "c4");
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);
    assert_eq!(rest["pageInfo"]["hasPreviousPage"], true);

    f.submit(token, json!(8), Value::Null, Value::Null);
    let answered = page(50, Value::Null, json!(true));
    let answered = &answered["data"]["survey"]["invitations"];
    assert_eq!(answered["totalCount"], 1);
    assert_eq!(answered["edges"][0]["node"]["customer"]["id"], "c1");
    assert!(answered["edges"][0]["node"]["answeredAt"].is_string());
    let open = page(50, Value::Null, json!(false));
    assert_eq!(open["data"]["survey"]["invitations"]["totalCount"], 3);
    // Page sizes and cursors are checked.
    for (first, after) in [(-1, Value::Null), (501, Value::Null), (10, json!("bogus"))] {
        let body = page(first, after, Value::Null);
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    }
}

fn submit_feedback_stores_one_answer_and_a_resubmission_replaces_it_whole(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    let body = f.submit(&token, json!(0), json!(2), json!("slow delivery"));
    assert_eq!(
        body["data"]["submitFeedback"],
        json!({"surveyName": "Spring <survey>", "score": 0, "updated": false}),
        "0 is a valid answer: {body}"
    );
    let body = f.submit(&token, json!(9), Value::Null, Value::Null);
    assert_eq!(
        body["data"]["submitFeedback"],
        json!({"surveyName": "Spring <survey>", "score": 9, "updated": true}),
        "{body}"
    );
    let rows = f.answers();
    assert_eq!(rows.len(), 1, "replaced in place");
    assert_eq!(
        (rows[0].1, rows[0].2, rows[0].3.clone()),
        (9, None, None),
        "the whole answer is replaced: omitted CSAT and comment are cleared"
    );
    let (_, metrics) = f.s.get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "cvm_portal_answers_submitted_total 2"),
        "{metrics}"
    );
}

fn every_invitation_failure_is_refused_and_changes_nothing(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    f.invite(json!({"search": "c2"}), 0);
    let valid = f.token_of("c1");
    let expired = f.token_of("c2");
    f.submit(&valid, json!(7), Value::Null, json!("first"));
    let before = f.answers();

    let other_key = LinkSigner::new(b"another-secret-another-secret-32").unwrap();
    let forged = other_key.issue(LinkPurpose::Survey).unwrap().token;
    let unknown = LinkSigner::new(SECRET)
        .unwrap()
        .issue(LinkPurpose::Survey)
        .unwrap()
        .token;
    let wrong_purpose = LinkSigner::new(SECRET)
        .unwrap()
        .issue(LinkPurpose::Unsubscribe)
        .unwrap()
        .token;
    // A link whose invitation was re-issued (its stored hash replaced).
    let replaced = {
        f.invite(json!({"search": "c3"}), 30);
        let token = f.token_of("c3");
        let mut c = DbConnection::connect(&f.s.db.url).unwrap();
        cvm_shared::with_backend!(&mut c, c => diesel::update(invitations::table.filter(invitations::customer_id.eq("c3")))
            .set(invitations::token_hash.eq("re-issued"))
            .execute(c))
        .unwrap();
        token
    };
    let cases = [
        (forged.as_str(), "INVITATION_INVALID", 404),
        ("abc", "INVITATION_INVALID", 404),
        ("%2e%2e%2fetc", "INVITATION_INVALID", 404),
        (unknown.as_str(), "INVITATION_INVALID", 404),
        (wrong_purpose.as_str(), "INVITATION_INVALID", 404),
        (replaced.as_str(), "INVITATION_INVALID", 404),
        (expired.as_str(), "INVITATION_EXPIRED", 410),
    ];
    for (token, code, status) in cases {
        let body = f.submit(token, json!(10), Value::Null, json!("x"));
        assert_eq!(error_codes(&body), [code], "{token}: {body}");
        assert_eq!(body["data"], Value::Null);
        let (got, page) = f.s.get(&format!("/s/{token}"));
        assert_eq!(got, status, "GET {token}: {page}");
        assert!(!page.contains("<form"), "no form on an explanation page");
        let (got, _, page) = f.post_form(token, "score=10&comment=x");
        assert_eq!(got, status, "POST {token}: {page}");
        assert!(!page.contains("<form"));
    }
    // A closed survey: 410 and SURVEY_CLOSED.
    f.s.gql(Some(&f.marketer), CLOSE, json!({"id": f.survey}));
    let body = f.submit(&valid, json!(1), Value::Null, Value::Null);
    assert_eq!(error_codes(&body), ["SURVEY_CLOSED"], "{body}");
    let (got, page) = f.s.get(&format!("/s/{valid}"));
    assert_eq!(got, 410);
    assert!(page.contains("This survey is closed") && !page.contains("<form"));
    let (got, _, _) = f.post_form(&valid, "score=1");
    assert_eq!(got, 410);
    assert_eq!(f.answers(), before, "nothing changed");
}

fn sixteen_concurrent_submissions_of_one_token_make_exactly_one_row(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (f, token) = (&f, &token);
                scope.spawn(move || {
                    if i % 2 == 0 {
                        let body = f.submit(token, json!(i % 11), Value::Null, json!("tap"));
                        (200, body.to_string())
                    } else {
                        let (status, location, _) = f.post_form(token, format!("score={}", i % 11));
                        (status, location)
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut new_answers = 0;
    for (status, out) in &results {
        if *status == 200 {
            let body: Value = serde_json::from_str(out).unwrap();
            assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
            if body["data"]["submitFeedback"]["updated"] == false {
                new_answers += 1;
            }
        } else {
            assert_eq!(*status, 303, "{out}");
        }
    }
    assert!(new_answers <= 1, "at most one submission was first");
    assert_eq!(f.answers().len(), 1, "one row, whatever the interleaving");
}

fn answers_out_of_range_csat_without_a_question_and_wrong_types_are_bad_user_input(
    backend: Backend,
) {
    let f = Fixture::new(backend, true);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    for (score, csat, comment) in [
        (json!(11), Value::Null, Value::Null),
        (json!(-1), Value::Null, Value::Null),
        (json!(5), json!(3), Value::Null), // no CSAT question on this survey
        (json!("ten"), Value::Null, Value::Null),
        (json!(5.5), Value::Null, Value::Null),
        (json!(5), Value::Null, json!(42)),
        (json!(5), Value::Null, json!("x".repeat(2001))),
    ] {
        let body = f.submit(&token, score.clone(), csat.clone(), comment.clone());
        assert_eq!(
            error_codes(&body),
            ["BAD_USER_INPUT"],
            "{score} {csat} {comment}: {body}"
        );
    }
    // A missing token is a schema error too.
    let (_, body) = f.s.gql(
        None,
        "mutation { submitFeedback(input: {score: 5}) { score } }",
        json!({}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    assert!(f.answers().is_empty());
    // The plain survey's page asks neither CSAT nor a comment.
    let (status, page) = f.s.get(&format!("/s/{token}"));
    assert_eq!(status, 200);
    assert!(
        !page.contains("name=\"csat\"") && !page.contains("<textarea"),
        "{page}"
    );
}

fn the_form_redirects_to_the_thank_you_page_and_shares_the_submission_path(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    let (status, page) = f.s.get(&format!("/s/{token}"));
    assert_eq!(status, 200);
    for needle in [
        r#"<html lang="en">"#,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        "<legend>Would you recommend us?",
        r#"<input type="radio" id="score-0" name="score" value="0" required>"#,
        r#"<label for="score-10">10</label>"#,
        r#"<input type="radio" id="csat-5" name="csat" value="5">"#,
        r#"<label class="field-label" for="comment">Anything else?"#,
        "Spring &lt;survey&gt;",
    ] {
        assert!(page.contains(needle), "missing {needle} in {page}");
    }
    assert!(!page.contains("position: fixed") && !page.contains("<script"));
    // Thank-you before answering: back to the form.
    let r = f
        .client()
        .get(format!("{}/s/{token}/thanks", f.s.base))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);

    let (status, location, _) = f.post_form(&token, "score=0&csat=4&comment=caf%C3%A9+ok");
    assert_eq!(
        (status, location.as_str()),
        (303, format!("{token}/thanks").as_str())
    );
    let stored = f.answers();
    assert_eq!((stored[0].1, stored[0].2), (0, Some(4)));
    assert_eq!(stored[0].3.as_deref(), Some("café ok"));
    let (status, thanks) = f.s.get(&format!("/s/{token}/thanks"));
    assert_eq!(status, 200);
    assert!(
        thanks.contains("0 out of 10") && thanks.contains("Change your answer"),
        "{thanks}"
    );
    // The form shows the stored answer; sending it again replaces it (GraphQL sees the same row).
    let (_, page) = f.s.get(&format!("/s/{token}"));
    assert!(page.contains(r#"value="0" required checked>"#), "{page}");
    assert!(page.contains("Sending the form again replaces that answer"));
    let body = f.submit(&token, json!(6), Value::Null, Value::Null);
    assert_eq!(body["data"]["submitFeedback"]["updated"], true);
    assert_eq!(f.answers().len(), 1);
}

fn bad_form_posts_get_the_form_again_with_the_error_and_change_nothing(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    let token = f.token_of("c1");
    for (body, status, needle) in [
        (b"comment=hi".to_vec(), 422, "Please choose how likely"),
        (b"score=11".to_vec(), 422, "score is 11"),
        (b"score=ten".to_vec(), 422, "must be a whole number"),
        (b"score=5&csat=9".to_vec(), 422, "csat is 9"),
        (b"score=5&comment=%FF%FE".to_vec(), 400, "not valid UTF-8"),
        (b"score=5&comment=\xc3\x28".to_vec(), 400, "not valid UTF-8"),
    ] {
        let (got, _, page) = f.post_form(&token, body.clone());
        assert_eq!(got, status, "{}: {page}", String::from_utf8_lossy(&body));
        assert!(page.contains(needle), "{needle}: {page}");
        assert!(page.contains("role=\"alert\"") && page.contains("<form"));
    }
    // The values sent come back filled in (escaped).
    let (_, _, page) = f.post_form(&token, "score=5&csat=9&comment=%3Cb%3Ebold%3C%2Fb%3E");
    assert!(page.contains(r#"value="5" required checked>"#), "{page}");
    assert!(
        page.contains("&lt;b&gt;bold&lt;&#x2f;b&gt;</textarea>"),
        "{page}"
    );
    let r = f
        .client()
        .post(format!("{}/s/{token}", f.s.base))
        .json(&json!({"score": 5}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert!(f.answers().is_empty());
}

fn hostile_comments_are_stored_verbatim_and_escaped_on_every_output(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"search": "c1"}), 30);
    f.invite(json!({"search": "c2"}), 30);
    let script = "<script>alert(\"x\")</script> & 'quotes'";
    let sql = "'); DROP TABLE answers; -- \\ % _ \" ;";
    let t1 = f.token_of("c1");
    let t2 = f.token_of("c2");
    f.submit(&t1, json!(3), Value::Null, json!(script));
    let (status, _, _) = f.post_form(
        &t2,
        format!(
            "score=10&comment={}",
            percent_encoding::utf8_percent_encode(sql, percent_encoding::NON_ALPHANUMERIC)
        ),
    );
    assert_eq!(status, 303);
    let stored: Vec<Option<String>> = f.answers().into_iter().map(|a| a.3).collect();
    assert_eq!(
        stored,
        [Some(script.to_string()), Some(sql.to_string())],
        "verbatim"
    );
    let (_, page) = f.s.get(&format!("/s/{t1}"));
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains(
            "&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt; &amp; &#x27;quotes&#x27;"
        ),
        "{page}"
    );
    let (status, csv) = f.export(Some(&f.marketer), &f.survey);
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let comments: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[5].to_string())
        .collect();
    assert_eq!(comments, [script.to_string(), sql.to_string()]);
}

fn the_export_is_for_marketers_and_has_the_exact_content(backend: Backend) {
    let f = Fixture::new(backend, false);
    f.invite(json!({"active": null}), 30);
    let viewer = f.s.token("vera", Role::Viewer);
    assert_eq!(f.export(None, &f.survey).0, 401);
    assert_eq!(f.export(Some("cvm_not-a-token"), &f.survey).0, 401);
    let (status, body) = f.export(Some(&viewer), &f.survey);
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        "this needs the marketer role; your token has viewer\n"
    );
    assert_eq!(f.export(Some(&f.marketer), "999").0, 404);
    assert_eq!(f.export(Some(&f.marketer), "x").0, 404);
    let (status, csv) = f.export(Some(&f.marketer), &f.survey);
    assert_eq!(
        (status, csv.as_str()),
        (
            200,
            "answer_id,invitation_id,customer_id,score,csat,comment,answered_at,updated_at,campaign_id,rfm_segment,lifecycle_stage,value_tier,clv_12m\n"
        )
    );

    f.submit(
        &f.token_of("c1"),
        json!(0),
        json!(1),
        json!("=HYPERLINK(\"http://evil\")"),
    );
    f.submit(
        &f.token_of("c2"),
        json!(10),
        Value::Null,
        json!("line one\nline, two"),
    );
    f.submit(&f.token_of("c3"), json!(7), Value::Null, json!("-3 stars"));
    let admin = f.s.token("ada", Role::Admin);
    let (status, csv) = f.export(Some(&admin), &f.survey);
    assert_eq!(status, 200);
    // Times vary: compare every other column exactly, times by shape.
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    let strip = |row: &Vec<String>| -> Vec<String> {
        let mut row = row.clone();
        for i in [6, 7] {
            assert!(row[i].ends_with('Z') && row[i].len() >= 20, "{}", row[i]);
            row[i] = "T".into();
        }
        row
    };
    let got: Vec<Vec<String>> = rows.iter().map(strip).collect();
    let want: Vec<Vec<&str>> = vec![
        vec![
            "1",
            "1",
            "c1",
            "0",
            "1",
            "'=HYPERLINK(\"http://evil\")",
            "T",
            "T",
            "",
            "At Risk",
            "at_risk",
            "low",
            "0",
        ],
        vec![
            "2",
            "2",
            "c2",
            "10",
            "",
            "line one\nline, two",
            "T",
            "T",
            "",
            "Champions",
            "loyal",
            "high",
            "1234.5",
        ],
        vec![
            "3",
            "3",
            "c3",
            "7",
            "",
            "'-3 stars",
            "T",
            "T",
            "",
            "",
            "",
            "",
            "",
        ],
    ];
    assert_eq!(got, want, "{csv}");
}

fn the_export_streams_answers_across_chunks(backend: Backend) {
    let n = usize::try_from(cvm_portal::export::CHUNK_ROWS).unwrap() + 5;
    let f = Fixture::with(backend, true, n);
    let n = n + 3; // and c1-c3
    f.invite(json!({}), 30);
    // Answers written straight to the database (the HTTP path is tested above).
    let mut c = DbConnection::connect(&f.s.db.url).unwrap();
    let ids: Vec<i64> = cvm_shared::with_backend!(&mut c, c => invitations::table.select(invitations::id).order(invitations::id).load(c)).unwrap();
    assert_eq!(ids.len(), n);
    let now = Utc::now().naive_utc();
    c.transaction::<_, cvm_shared::db::DbError, _>(|c| {
        for (i, id) in ids.iter().enumerate() {
            cvm_shared::db::models::answers::upsert(c, *id, (i % 11) as i32, None, None, now)?;
        }
        Ok(())
    })
    .unwrap();
    let (status, csv) = f.export(Some(&f.marketer), &f.survey);
    assert_eq!(status, 200);
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let got: Vec<(i64, String)> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].parse().unwrap(), rec[3].to_string())
        })
        .collect();
    assert_eq!(got.len(), n, "every answer once");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "in answer order");
    assert_eq!(got[0].1, "0");
}
