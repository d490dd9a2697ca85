//! The retention loop, end to end, as users run it: the demo's nightly job
//! scores customers; marketing finds the customers at risk, sends them a
//! campaign through a real SMTP server; one of them unsubscribes through the
//! link in their message; the next campaign leaves them out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../portal/tests/common/smtp.rs"]
#[allow(dead_code)]
mod smtp;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cvm_e2e::{Portal, demo_with_token};
use serde_json::{Value, json};
use smtp::Sink;

const STATE: &str = "query($id: ID!) { campaign(id: $id) { status frozenExclusions { reason count } stats { recipients sent failed inDoubt unsubscribed } } }";

fn send_campaign(portal: &Portal, token: &str, name: &str) -> Value {
    let created = portal.gql(
        Some(token),
        "mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }",
        json!({"input": {
            "name": name,
            "audience": {"lifecycleStage": ["AT_RISK"]},
            "subject": "{{ customer.first_name or 'Hello' }}, we miss you",
            "textTemplate": "Come back for {{ offer_code }}. Unsubscribe: {{ unsubscribe_url }}",
            "offerCode": "BACK10",
            "frequencyCapDays": 0,
        }}),
    );
    let id = created["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = portal.gql(
        Some(token),
        "mutation($id: ID!) { sendCampaign(id: $id) { status } }",
        json!({"id": id}),
    );
    assert_eq!(sent["sendCampaign"]["status"], "SENDING", "{sent}");
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let state = portal.gql(Some(token), STATE, json!({"id": id}))["campaign"].clone();
        if state["status"] == "SENT" {
            return state;
        }
        assert!(
            Instant::now() < end,
            "campaign {name} did not finish: {state}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    cvm_smtp_tests_ignored,
    ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)"
)]
fn an_at_risk_campaign_reaches_the_smtp_server_and_an_unsubscribe_sticks() {
    let tmp = tempfile::tempdir().unwrap();
    let (db_url, token) = demo_with_token(&tmp.path().join("demo"), 400, 7, "mia");
    let sink = Sink::start(&[]);
    let smtp_url = sink.url();
    let portal = Portal::start(
        &db_url,
        &[
            ("CVM_SMTP_URL", &smtp_url),
            ("CVM_MAIL_FROM", "Demo Shop <news@shop.example>"),
            ("CVM_SEND_RATE", "0"),
        ],
    );

    // Who is at risk, with consent, per the nightly scores.
    let found = portal.gql(
        Some(&token),
        "{ customers(filter: {lifecycleStage: [AT_RISK], emailOptIn: true}, first: 500) { totalCount edges { node { email } } } }",
        json!({}),
    );
    let at_risk: BTreeSet<String> = found["customers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["node"]["email"].as_str())
        .map(|e| e.trim().to_lowercase())
        .collect();
    assert!(
        at_risk.len() >= 5,
        "the demo has customers at risk: {found}"
    );

    let first = send_campaign(&portal, &token, "Win back");
    let messages = sink.messages();
    let reached: Vec<String> = messages
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<String> = reached.iter().cloned().collect();
    assert_eq!(distinct.len(), reached.len(), "one message per address");
    assert_eq!(
        first["stats"]["sent"].as_u64().unwrap() as usize,
        reached.len(),
        "{first}"
    );
    assert!(
        distinct.is_subset(&at_risk),
        "only customers at risk with consent"
    );
    assert!(!distinct.is_empty());

    // The first recipient unsubscribes with the one-click link of their message.
    let m = &messages[0];
    let who = m["rcpt_tos"][0].as_str().unwrap().to_string();
    let header = m["headers"]["List-Unsubscribe"].as_str().unwrap();
    let link = header.trim_start_matches('<').split('>').next().unwrap();
    let token_part = link.rsplit_once("/u/").unwrap().1;
    let (status, page) = portal.get(&format!("{}/u/{token_part}", portal.base));
    assert_eq!(status, 200);
    assert!(
        page.contains(&who),
        "the confirmation page names the address"
    );
    let (status, _) = portal.post_form(
        &format!("{}/u/{token_part}", portal.base),
        "List-Unsubscribe=One-Click",
    );
    assert_eq!(status, 200);
    let again = portal.gql(Some(&token), STATE, json!({"id": "1"}))["campaign"].clone();
    assert_eq!(again["stats"]["unsubscribed"], 1, "{again}");

    // The next campaign to the same audience leaves them out.
    let second = send_campaign(&portal, &token, "Win back, again");
    let later: Vec<String> = sink.messages()[messages.len()..]
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    assert!(!later.contains(&who), "{who} unsubscribed");
    assert_eq!(later.len(), reached.len() - 1, "everyone else again");
    // The unsubscribe withdrew their consent (and suppressed the address):
    // they are left out as `no_consent`, the first reason that applies.
    let excluded = |c: &Value, reason: &str| {
        c["frozenExclusions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reason"] == reason)
            .unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        excluded(&second, "no_consent"),
        excluded(&first, "no_consent") + 1,
        "{first}\n{second}"
    );
    let found = portal.gql(
        Some(&token),
        "query($q: String!) { customers(filter: {search: $q}) { edges { node { emailOptIn consentHistory { source emailOptIn record } } } } }",
        json!({"q": who}),
    );
    let node = &found["customers"]["edges"][0]["node"];
    assert_eq!(node["emailOptIn"], false, "{found}");
    let last = node["consentHistory"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["source"].as_str(), last["emailOptIn"].as_bool()),
        (Some("unsubscribe"), Some(false)),
        "{found}"
    );
    assert_eq!(last["record"], "campaign 1, one_click", "{found}");
}
