//! The HTTP API driven for real: a server on a loopback port, a real HTTP
//! client, on SQLite and PostgreSQL. Health, metrics, bearer tokens, roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, error_codes};
use cvm_shared::db::Backend;
use cvm_shared::db::models::api_tokens::Role;
use serde_json::{Value, json};

cvm_shared::both_backends!(
    healthz_answers_ok_while_the_database_answers,
    metrics_count_requests_by_operation_and_errors_by_code,
    an_unknown_malformed_or_revoked_token_gets_http_401,
    without_a_token_staff_fields_are_unauthenticated,
    me_names_the_token_holder_and_role_for_each_role,
    create_survey_is_refused_below_marketer_and_stored_for_marketers_and_admins,
    queries_work_over_get_but_mutations_are_refused,
    malformed_queries_are_bad_user_input_with_http_200,
    every_response_carries_a_request_id,
    a_token_use_is_recorded_as_last_used,
);

const ME: &str = "query Me { me { name role } }";
const CREATE: &str = "mutation Create($input: SurveyInput!) { createSurvey(input: $input) { id name question csatQuestion closed createdBy opensAt } }";

fn survey_input() -> Value {
    json!({"input": {"name": "Spring", "question": "Would you recommend us?", "csatQuestion": "Satisfied?", "opensAt": "2024-03-01T12:00:00+02:00"}})
}

fn healthz_answers_ok_while_the_database_answers(backend: Backend) {
    let s = TestServer::start(backend);
    assert_eq!(s.get("/healthz"), (200, "ok\n".to_string()));
}

fn metrics_count_requests_by_operation_and_errors_by_code(backend: Backend) {
    let s = TestServer::start(backend);
    let viewer = s.token("vera", Role::Viewer);
    s.gql(Some(&viewer), ME, json!({}));
    s.gql(None, ME, json!({}));
    s.gql(Some(&viewer), CREATE, survey_input());
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"cvm_portal_graphql_requests_total{operation="Me"} 2"#,
        r#"cvm_portal_graphql_requests_total{operation="Create"} 1"#,
        r#"cvm_portal_graphql_errors_total{code="UNAUTHENTICATED"} 1"#,
        r#"cvm_portal_graphql_errors_total{code="FORBIDDEN"} 1"#,
        r#"cvm_portal_graphql_request_duration_seconds_count{operation="Me"} 2"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
}

fn an_unknown_malformed_or_revoked_token_gets_http_401(backend: Backend) {
    let s = TestServer::start(backend);
    let good = s.token("ada", Role::Admin);
    let unknown = cvm_portal::tokens::new_staff_token().unwrap().token;
    for token in [unknown.as_str(), "not-a-token", "cvm_' OR 1=1 --"] {
        let (status, body) = s.gql(Some(token), ME, json!({}));
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{body}");
    }
    // A scheme other than Bearer.
    let r = s
        .client()
        .post(format!("{}/graphql", s.base))
        .header("Authorization", format!("Basic {good}"))
        .json(&json!({"query": ME}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut c = cvm_shared::db::DbConnection::connect(&s.db.url).unwrap();
    cvm_shared::db::models::api_tokens::revoke_by_name(
        &mut c,
        "ada",
        chrono::Utc::now().naive_utc(),
    )
    .unwrap();
    let (status, body) = s.gql(Some(&good), ME, json!({}));
    assert_eq!(
        (status, error_codes(&body)),
        (401, vec!["UNAUTHENTICATED".to_string()])
    );
}

fn without_a_token_staff_fields_are_unauthenticated(backend: Backend) {
    let s = TestServer::start(backend);
    for (query, vars) in [
        (ME, json!({})),
        ("{ survey(id: \"1\") { name } }", json!({})),
        (CREATE, survey_input()),
    ] {
        let (status, body) = s.gql(None, query, vars);
        assert_eq!(status, 200, "GraphQL errors keep HTTP 200: {body}");
        assert_eq!(error_codes(&body), ["UNAUTHENTICATED"], "{query}: {body}");
    }
}

fn me_names_the_token_holder_and_role_for_each_role(backend: Backend) {
    let s = TestServer::start(backend);
    for (name, role, shown) in [
        ("vera", Role::Viewer, "VIEWER"),
        ("mark", Role::Marketer, "MARKETER"),
        ("ada", Role::Admin, "ADMIN"),
    ] {
        let token = s.token(name, role);
        let (status, body) = s.gql(Some(&token), ME, json!({}));
        assert_eq!(status, 200);
        assert_eq!(body, json!({"data": {"me": {"name": name, "role": shown}}}));
    }
}

fn create_survey_is_refused_below_marketer_and_stored_for_marketers_and_admins(backend: Backend) {
    let s = TestServer::start(backend);
    let viewer = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&viewer), CREATE, survey_input());
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body}");
    assert_eq!(body["data"], Value::Null);
    for (name, role) in [("mark", Role::Marketer), ("ada", Role::Admin)] {
        let token = s.token(name, role);
        let (_, body) = s.gql(Some(&token), CREATE, survey_input());
        let created = &body["data"]["createSurvey"];
        assert_eq!(created["createdBy"], name, "{body}");
        assert_eq!(created["opensAt"], "2024-03-01T10:00:00Z", "stored in UTC");
        assert_eq!(created["closed"], false);
        // It is stored: a viewer reads it back.
        let (_, read) = s.gql(
            Some(&viewer),
            "query($id: ID!) { survey(id: $id) { name csatQuestion } }",
            json!({"id": created["id"]}),
        );
        assert_eq!(
            read["data"]["survey"],
            json!({"name": "Spring", "csatQuestion": "Satisfied?"})
        );
    }
    // Input is checked before anything is stored.
    let marketer = s.token("mo", Role::Marketer);
    let (_, body) = s.gql(
        Some(&marketer),
        CREATE,
        json!({"input": {"name": " ", "question": "?"}}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
}

fn queries_work_over_get_but_mutations_are_refused(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.token("ada", Role::Admin);
    let get = |query: &str| -> Value {
        s.client()
            .get(format!("{}/graphql", s.base))
            .query(&[("query", query)])
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    assert_eq!(get(ME)["data"]["me"]["name"], "ada");
    let body = get("mutation { createSurvey(input: {name: \"x\", question: \"y\"}) { id } }");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let (_, listed) = s.gql(Some(&admin), "{ survey(id: \"1\") { id } }", json!({}));
    assert_eq!(listed["data"]["survey"], Value::Null, "nothing was created");
}

fn malformed_queries_are_bad_user_input_with_http_200(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.token("ada", Role::Admin);
    for query in [
        "{ me { name",
        "{ nosuchfield }",
        "{ survey(id: 5.5) { id } }",
    ] {
        let (status, body) = s.gql(Some(&admin), query, json!({}));
        assert_eq!(status, 200, "{query}");
        assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{query}: {body}");
    }
}

fn every_response_carries_a_request_id(backend: Backend) {
    let s = TestServer::start(backend);
    let id = |path: &str| {
        let r = s.client().get(format!("{}{path}", s.base)).send().unwrap();
        r.headers()["x-request-id"].to_str().unwrap().to_string()
    };
    let (a, b) = (id("/healthz"), id("/metrics"));
    assert_eq!(a.len(), 36, "a UUID: {a}");
    assert_ne!(a, b);
}

fn a_token_use_is_recorded_as_last_used(backend: Backend) {
    let s = TestServer::start(backend);
    let token = s.token("ada", Role::Admin);
    s.gql(Some(&token), ME, json!({}));
    // Recorded off the request's path: wait for it (bounded).
    let mut c = cvm_shared::db::DbConnection::connect(&s.db.url).unwrap();
    let recorded = (0..200).any(|_| {
        let t = cvm_shared::db::models::api_tokens::list(&mut c).unwrap();
        if t[0].last_used_at.is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(recorded, "last_used_at was never set");
}
