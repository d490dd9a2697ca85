//! Campaigns over HTTP on SQLite and PostgreSQL: who may create and change
//! them, strict templates refused before anything is stored, drafts only
//! change, listing and live stats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::{TestServer, error_codes};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::campaigns::{self, CampaignStatus};
use cvm_shared::db::{Backend, DbConnection};
use serde_json::{Value, json};

cvm_shared::both_backends!(
    marketers_create_campaigns_and_viewers_read_them,
    an_unknown_template_variable_is_refused_and_nothing_is_stored,
    only_drafts_change,
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
