//! Campaigns over HTTP on SQLite and PostgreSQL: who may create and change
//! them, strict templates refused before anything is stored, drafts only
//! change, listing and live stats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::{TestServer, error_codes};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::campaigns::{self, CampaignStatus};
use cvm_shared::db::models::suppressions::{self, Suppression, SuppressionReason};
use cvm_shared::db::{Backend, DbConnection};
use serde_json::{Value, json};

cvm_shared::both_backends!(
    marketers_create_campaigns_and_viewers_read_them,
    an_unknown_template_variable_is_refused_and_nothing_is_stored,
    only_drafts_change,
    the_preview_counts_every_exclusion_and_renders_personal_messages,
    an_address_suppressed_only_as_a_keyed_hash_is_still_suppressed,
    pause_resume_and_cancel_follow_the_lifecycle,
);

const CREATE: &str = "mutation($input: CampaignInput!) { createCampaign(input: $input) { id name status subject offerCode controlShare audienceJson createdBy stats { recipients queued sent control unsubscribed } } }";
const UPDATE: &str = "mutation($id: ID!, $input: CampaignInput!) { updateCampaign(id: $id, input: $input) { id name offerCode } }";
const LIST: &str = "{ campaigns(first: 10) { totalCount edges { node { id name status } } } }";

fn input(name: &str) -> Value {
    json!({
        "name": name,
        "audience": {"lifecycleStage": ["AT_RISK"], "emailOptIn": true},
        "subject": "We miss you, {{ customer.first_name }}",
        "textTemplate": "Hello {{ customer.first_name }}, {{ offer_code }} is yours. {{ unsubscribe_url }}",
        "htmlTemplate": "<p>Hello {{ customer.first_name }}</p>",
        "offerCode": "BACK10",
        "controlShare": 0.1
    })
}

fn marketers_create_campaigns_and_viewers_read_them(backend: Backend) {
    let s = TestServer::start(backend);
    let marketer = s.token("mark", Role::Marketer);
    let viewer = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&viewer), CREATE, json!({"input": input("Win back")}));
    assert_eq!(error_codes(&body), ["FORBIDDEN"], "{body}");
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": input("Win back")}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    let created = &body["data"]["createCampaign"];
    assert_eq!(created["status"], "DRAFT");
    assert_eq!(created["offerCode"], "BACK10");
    assert_eq!(created["controlShare"], 0.1);
    assert_eq!(created["createdBy"], "mark");
    assert_eq!(
        created["stats"],
        json!({"recipients": 0, "queued": 0, "sent": 0, "control": 0, "unsubscribed": 0})
    );
    let audience: Value = serde_json::from_str(created["audienceJson"].as_str().unwrap()).unwrap();
    assert_eq!(audience["lifecycle_stage"], json!(["AtRisk"]));
    let (_, body) = s.gql(Some(&viewer), LIST, json!({}));
    assert_eq!(body["data"]["campaigns"]["totalCount"], 1, "{body}");
    assert_eq!(
        body["data"]["campaigns"]["edges"][0]["node"]["id"],
        created["id"]
    );
    let (_, body) = s.gql(None, LIST, json!({}));
    assert_eq!(error_codes(&body), ["UNAUTHENTICATED"]);
}

fn an_unknown_template_variable_is_refused_and_nothing_is_stored(backend: Backend) {
    let s = TestServer::start(backend);
    let marketer = s.token("mark", Role::Marketer);
    let mut typo = input("Typo");
    typo["textTemplate"] =
        json!("{% if score.clv_12m > 100 %}Hi {{ customer.firstname }}{% endif %}");
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": typo}));
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("customer.firstname"), "{message}");
    let mut half = input("Half");
    half["controlShare"] = json!(0.6);
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": half}));
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let mut no_survey = input("Survey");
    no_survey["surveyId"] = json!("999");
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": no_survey}));
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
    let (_, body) = s.gql(Some(&marketer), LIST, json!({}));
    assert_eq!(body["data"]["campaigns"]["totalCount"], 0, "{body}");
}

fn only_drafts_change(backend: Backend) {
    let s = TestServer::start(backend);
    let marketer = s.token("mark", Role::Marketer);
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": input("Win back")}));
    let id = body["data"]["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut v2 = input("Win back v2");
    v2["offerCode"] = Value::Null;
    let (_, body) = s.gql(Some(&marketer), UPDATE, json!({"id": id, "input": v2}));
    assert_eq!(
        body["data"]["updateCampaign"],
        json!({"id": id, "name": "Win back v2", "offerCode": null}),
        "{body}"
    );
    // Sending starts (the sender's transition): the content is frozen.
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    campaigns::transition(
        &mut c,
        id.parse().unwrap(),
        CampaignStatus::Draft,
        CampaignStatus::Sending,
        Utc::now().naive_utc(),
    )
    .unwrap()
    .unwrap();
    let (_, body) = s.gql(
        Some(&marketer),
        UPDATE,
        json!({"id": id, "input": input("v3")}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let (_, body) = s.gql(
        Some(&marketer),
        UPDATE,
        json!({"id": "12345", "input": input("v3")}),
    );
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
}

/// Customers for the preview: (id, email, opt-in, active, clv).
const PEOPLE: [(&str, Option<&str>, bool, bool, f64); 7] = [
    ("c1", Some("Ann@Example.com"), true, true, 500.0),
    ("c2", Some("bob@example.com"), false, true, 10.0),
    ("c3", None, true, true, 10.0),
    ("c4", Some("gone@example.com"), true, true, 10.0),
    ("c5", Some("ann@example.com"), true, true, 20.0),
    ("c6", Some("old@example.com"), true, false, 10.0),
    ("c7", Some("cy@example.com"), true, true, 30.0),
];

fn seed_people(url: &str) {
    let t = common::day_one();
    common::seed_customers(url, &PEOPLE);
    let mut c = DbConnection::connect_for_write(url).unwrap();
    suppressions::add(
        &mut c,
        &Suppression {
            address: "gone@example.com".into(),
            reason: SuppressionReason::Unsubscribed,
            customer_id: Some("c4".into()),
            campaign_id: None,
            at: t,
        },
    )
    .unwrap();
}

/// Creates a campaign from `input` as `token` and previews it with five
/// samples, selecting `fields`: the preview's response.
fn create_and_preview(s: &TestServer, token: &str, input: Value, fields: &str) -> Value {
    let (_, body) = s.gql(Some(token), CREATE, json!({"input": input}));
    let id = body["data"]["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let query =
        format!("mutation($id: ID!) {{ previewCampaign(id: $id, samples: 5) {{ {fields} }} }}");
    s.gql(Some(token), &query, json!({"id": id})).1
}

/// An erased person's suppression keeps only the keyed hash of their
/// address; a customer who has that address again is still not mailed.
fn an_address_suppressed_only_as_a_keyed_hash_is_still_suppressed(backend: Backend) {
    let s = TestServer::start(backend);
    common::seed_customers(
        &s.db.url,
        &[
            ("c1", Some("Back@Example.com"), true, true, 50.0),
            ("c2", Some("kept@example.com"), true, true, 10.0),
        ],
    );
    let key = cvm_shared::privacy::PrivacyKey::new(common::PRIVACY_KEY).unwrap();
    let mut c = DbConnection::connect_for_write(&s.db.url).unwrap();
    suppressions::add(
        &mut c,
        &Suppression {
            address: key.hashed_value(cvm_shared::privacy::KeyKind::Email, "back@example.com"),
            reason: SuppressionReason::Erased,
            customer_id: Some("erased-0123".into()),
            campaign_id: None,
            at: common::day_one(),
        },
    )
    .unwrap();
    let marketer = s.token("mark", Role::Marketer);
    let mut all = input("Everyone");
    all["controlShare"] = json!(0.0);
    let body = create_and_preview(
        &s,
        &marketer,
        all,
        "recipients exclusions { reason count } samples { to }",
    );
    let p = &body["data"]["previewCampaign"];
    assert_eq!(p["recipients"], 1, "{body}");
    assert_eq!(p["samples"], json!([{"to": "kept@example.com"}]), "{body}");
    assert_eq!(
        common::exclusion_count(&p["exclusions"], "suppressed"),
        1,
        "{body}"
    );
}

fn the_preview_counts_every_exclusion_and_renders_personal_messages(backend: Backend) {
    let s = TestServer::start(backend);
    seed_people(&s.db.url);
    let marketer = s.token("mark", Role::Marketer);
    let mut all = input("Everyone at risk");
    all["audience"] = json!({"lifecycleStage": ["AT_RISK"], "active": null});
    all["controlShare"] = json!(0.0);
    all["subject"] = json!("{{ customer.first_name }}, {{ score.lifecycle_stage }}");
    let body = create_and_preview(
        &s,
        &marketer,
        all,
        "audience recipients exclusions { reason count } samples { to subject text html }",
    );
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    let p = &body["data"]["previewCampaign"];
    assert_eq!(p["audience"], 7);
    assert_eq!(p["recipients"], 2, "{p}");
    let counts: Vec<(String, i64)> = p["exclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_string(),
                e["count"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("inactive", 1),
        ("no_email", 1),
        ("no_consent", 1),
        ("suppressed", 1),
        ("frequency_cap", 0),
        ("duplicate_address", 1),
        ("control", 0),
    ];
    assert_eq!(
        counts,
        expected.map(|(r, n)| (r.to_string(), n)),
        "c6 inactive, c3 no email, c2 no consent, c4 suppressed, c5 shares c1's address with a lower CLV"
    );
    let samples = p["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0]["to"], "ann@example.com");
    assert_eq!(samples[0]["subject"], "<Ann>, AT_RISK");
    let text = samples[0]["text"].as_str().unwrap();
    assert!(
        text.contains("BACK10") && text.contains("http://portal.test/u/"),
        "{text}"
    );
    assert_eq!(samples[0]["html"], "<p>Hello &lt;Ann&gt;</p>");
    assert_eq!(samples[1]["to"], "cy@example.com");
}

fn pause_resume_and_cancel_follow_the_lifecycle(backend: Backend) {
    let s = TestServer::start(backend);
    let marketer = s.token("mark", Role::Marketer);
    let viewer = s.token("vera", Role::Viewer);
    let (_, body) = s.gql(Some(&marketer), CREATE, json!({"input": input("Win back")}));
    let id = body["data"]["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let act = |token: &str, verb: &str| {
        let q = format!("mutation($id: ID!) {{ {verb}Campaign(id: $id) {{ status }} }}");
        s.gql(Some(token), &q, json!({"id": id})).1
    };
    let body = act(&marketer, "pause");
    assert_eq!(
        error_codes(&body),
        ["BAD_USER_INPUT"],
        "a draft is not sending: {body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DRAFT")
    );
    let mut c = DbConnection::connect(&s.db.url).unwrap();
    campaigns::transition(
        &mut c,
        id.parse().unwrap(),
        CampaignStatus::Draft,
        CampaignStatus::Sending,
        Utc::now().naive_utc(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(error_codes(&act(&viewer, "pause")), ["FORBIDDEN"]);
    assert_eq!(
        act(&marketer, "pause")["data"]["pauseCampaign"]["status"],
        "PAUSED"
    );
    assert_eq!(error_codes(&act(&marketer, "pause")), ["BAD_USER_INPUT"]);
    assert_eq!(
        act(&marketer, "resume")["data"]["resumeCampaign"]["status"],
        "SENDING"
    );
    assert_eq!(
        act(&marketer, "cancel")["data"]["cancelCampaign"]["status"],
        "CANCELLED"
    );
    assert_eq!(error_codes(&act(&marketer, "resume")), ["BAD_USER_INPUT"]);
    assert_eq!(
        error_codes(&act(&marketer, "cancel")),
        ["BAD_USER_INPUT"],
        "cancelled is final"
    );
}
