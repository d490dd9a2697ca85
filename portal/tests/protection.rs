//! The portal's protection, driven over HTTP: body size (413), query depth
//! and cost (`QUERY_TOO_COMPLEX`), unreadable bodies, the per-IP rate limit
//! of the public routes (429, staff exempt), CORS and introspection settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, error_codes};
use cvm_portal::server::Limits;
use cvm_shared::db::Backend;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::testing::TestDb;
use serde_json::{Value, json};

fn post_raw(s: &TestServer, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = s
        .client()
        .post(format!("{}/graphql", s.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn an_oversized_body_is_413_and_is_not_read() {
    let s = TestServer::limited(
        TestDb::new(Backend::Sqlite),
        Limits {
            max_body_bytes: 4096,
            rate_limit: 0.0,
            ..Limits::default()
        },
    );
    let big = json!({"query": format!("{{ me {{ name }} }} #{}", "x".repeat(10_000))});
    let (status, body) = post_raw(&s, "application/json", big.to_string().into_bytes());
    assert_eq!(status, 413, "{body}");
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("4096 bytes")
    );
    // Just under the limit is read (and answered: no token).
    let small = json!({"query": "{ me { name } }"});
    let (status, body) = post_raw(&s, "application/json", small.to_string().into_bytes());
    assert_eq!(
        (status, error_codes(&body)),
        (200, vec!["UNAUTHENTICATED".to_string()])
    );
}

#[test]
fn invalid_utf8_non_json_batches_and_other_media_types_are_refused_with_a_code() {
    let s = TestServer::start(Backend::Sqlite);
    let mut bad = br#"{"query": "{ me { name } }", "x": ""#.to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
    for (content_type, body, status) in [
        ("application/json", bad, 400),
        ("application/json", b"{\"query\": ".to_vec(), 400),
        (
            "application/json",
            b"[{\"query\": \"{ __typename }\"}, {\"query\": \"{ __typename }\"}]".to_vec(),
            400,
        ),
        ("text/plain", b"{ __typename }".to_vec(), 415),
    ] {
        let (got, json) = post_raw(&s, content_type, body.clone());
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_codes(&json), ["BAD_USER_INPUT"], "{json}");
    }
}

/// A query `depth` fields deep: customer → feedback → edges → node →
/// customer → ..., ending in a scalar field.
fn nested(depth: usize) -> String {
    let mut q = String::from("customer(id: \"c1\") { ");
    let mut d = 1;
    let cycle = [
        "feedback(first: 2) { ",
        "edges { ",
        "node { ",
        "customer { ",
    ];
    let mut i = 0;
    while d + 1 < depth {
        q.push_str(cycle[i % 4]);
        i += 1;
        d += 1;
    }
    // A leaf the last object has (real fields: `__typename` may not count).
    let leaf = match i.checked_sub(1).map(|last| last % 4) {
        Some(0) => "totalCount",
        Some(1) => "cursor",
        _ => "id",
    };
    q.push_str(leaf);
    q.push_str(&" }".repeat(d));
    format!("{{ {q} }}")
}

#[test]
fn a_query_of_depth_15_works_and_a_deeper_one_is_query_too_complex() {
    let s = TestServer::start(Backend::Sqlite);
    let viewer = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&viewer), &nested(15), json!({}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    assert_eq!(
        body["data"]["customer"],
        Value::Null,
        "no such customer, but a valid query"
    );
    let (status, body) = s.gql(Some(&viewer), &nested(21), json!({}));
    assert_eq!(status, 200);
    assert_eq!(error_codes(&body), ["QUERY_TOO_COMPLEX"], "{body}");
    assert!(body.get("data").is_none_or(Value::is_null));
}

const PAGE_500: &str = "customers(first: 500) { totalCount edges { cursor node { id email firstName lastName channels emailOptIn active score { asOf orders frequency totalRevenue rfmSegment rScore fScore mScore pAlive expectedPurchases90d clv12m churnRisk lifecycleStage valueTier loyaltyIndex npsLast npsClass } feedback(first: 10) { totalCount edges { node { id score csat comment answeredAt survey { id name } } } } } } }";

#[test]
fn five_hundred_customers_with_ten_answers_each_fit_and_twenty_such_pages_at_once_do_not() {
    let s = TestServer::start(Backend::Sqlite);
    let viewer = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&viewer), &format!("{{ {PAGE_500} }}"), json!({}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    let aliased: String = (0..20).map(|i| format!("p{i}: {PAGE_500} ")).collect();
    let (_, body) = s.gql(Some(&viewer), &format!("{{ {aliased} }}"), json!({}));
    assert_eq!(error_codes(&body), ["QUERY_TOO_COMPLEX"], "{body}");
}

#[test]
fn anonymous_requests_and_survey_pages_are_rate_limited_per_ip_and_staff_are_not() {
    let s = TestServer::limited(
        TestDb::new(Backend::Sqlite),
        Limits {
            rate_limit: 1.0,
            ..Limits::default()
        },
    );
    let viewer = s.token("vera", Role::Viewer);
    // A burst of 5 (5 × 1/s) is allowed, then 429 with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(s.gql(None, "{ __typename }", json!({})).0);
    }
    assert_eq!(statuses, [200; 5]);
    let r = s
        .client()
        .post(format!("{}/graphql", s.base))
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = r.json().unwrap();
    assert_eq!(error_codes(&body), ["RATE_LIMITED"]);
    // The survey pages share the client's budget.
    assert_eq!(s.get("/s/not-a-token").0, 429);
    // Staff with a valid token are never limited.
    for _ in 0..20 {
        let (status, body) = s.gql(Some(&viewer), "{ me { name } }", json!({}));
        assert_eq!((status, error_codes(&body)), (200, vec![]));
    }
    // A wrong token is limited like any anonymous request.
    assert_eq!(
        s.gql(Some("cvm_wrong"), "{ me { name } }", json!({})).0,
        429
    );
}

#[test]
fn cors_answers_only_the_configured_origins() {
    let s = TestServer::limited(
        TestDb::new(Backend::Sqlite),
        Limits {
            rate_limit: 0.0,
            cors_origins: vec!["https://admin.shop.example".into()],
            ..Limits::default()
        },
    );
    let preflight = |origin: &str| {
        s.client()
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", s.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .unwrap()
    };
    let ok = preflight("https://admin.shop.example");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://admin.shop.example"
    );
    let other = preflight("https://evil.example");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // Without configured origins, no CORS header is ever sent.
    let plain = TestServer::start(Backend::Sqlite);
    let r = plain
        .client()
        .post(format!("{}/graphql", plain.base))
        .header("origin", "https://admin.shop.example")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn introspection_can_be_turned_off() {
    let q = "{ __schema { queryType { name } } }";
    let on = TestServer::start(Backend::Sqlite);
    let (_, body) = on.gql(None, q, json!({}));
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );
    let mut limits = Limits {
        rate_limit: 0.0,
        ..Limits::default()
    };
    limits.query.introspection = false;
    let off = TestServer::limited(TestDb::new(Backend::Sqlite), limits);
    let (_, body) = off.gql(None, q, json!({}));
    assert_eq!(body["data"]["__schema"], Value::Null, "{body}");
}
