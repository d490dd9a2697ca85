//! Campaigns sent for real: the portal's sender talks SMTP to a real server
//! process on loopback (`tests/smtp/sink.py`, aiosmtpd), and the tests
//! read back what that server accepted, MIME-parsed: exact recipients, one
//! message per customer, the compliance headers, personal content; then
//! unsubscribing, the SMTP server's faults, pause and resume, and uplift.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::smtp::Sink;
use common::{Person, TestServer, error_codes, seed_customers, wait_until};
use cvm_portal::mail::config::MailConfig;
use cvm_shared::config::{MailSettings, Secret};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::suppressions::{self, Suppression, SuppressionReason};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};
use serde_json::{Value, json};

macro_rules! mail_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            #[cfg_attr(cvm_smtp_tests_ignored, ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)")]
            fn sqlite() {
                super::$name(cvm_shared::db::Backend::Sqlite)
            }
            cvm_shared::__postgres_test! {
                #[test]
                #[cfg_attr(cvm_smtp_tests_ignored, ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)")]
                fn postgres() {
                    super::$name(cvm_shared::db::Backend::Postgres)
                }
            }
        }
    )*};
}

mail_tests!(
    a_campaign_reaches_each_consenting_customer_once_with_compliance_headers,
    unsubscribing_suppresses_the_address_and_its_queued_messages_at_once,
    temporary_refusals_are_retried_and_permanent_ones_fail_with_the_reply,
    a_connection_dropped_mid_message_is_in_doubt_and_never_resent,
    a_server_that_is_down_delays_sending_and_loses_nobody,
    pause_and_resume_continue_where_sending_stopped,
    uplift_compares_the_treated_with_the_control_group,
);

const CREATE: &str = "mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }";
const SEND: &str = "mutation($id: ID!) { sendCampaign(id: $id) { id status } }";
const STATS: &str = "query($id: ID!) { campaign(id: $id) { status frozenExclusions { reason count } stats { recipients queued sending sent failed suppressed inDoubt control unsubscribed } } }";
const RECIPIENTS: &str = "query($id: ID!, $status: RecipientStatus) { campaign(id: $id) { recipients(first: 100, status: $status) { totalCount edges { node { customer { id } status attempts lastError sentAt address suppressedReason } } } } }";

const PEOPLE: &[Person<'_>] = &[
    ("c1", Some("Ann@Example.com "), true, true, 50.0),
    ("c2", Some("bob@example.com"), false, true, 10.0),
    ("c3", None, true, true, 10.0),
    ("c4", Some("gone@example.com"), true, true, 10.0),
    ("c5", Some("ann@example.com"), true, true, 20.0),
    ("c6", Some("old@example.com"), true, false, 10.0),
    ("c7", Some("cy@example.com"), true, true, 30.0),
];

fn settings(sink: &Sink) -> MailSettings {
    MailSettings {
        smtp_url: Some(Secret::new(sink.url())),
        from: Some("Shop <news@shop.example>".into()),
        send_rate: 0.0,
        send_concurrency: 4,
        lease_seconds: 5,
        retry_seconds: 0,
        max_attempts: 3,
        ..MailSettings::default()
    }
}

fn mail(sink: &Sink) -> MailConfig {
    MailConfig::from_settings(&settings(sink)).unwrap()
}

/// `n` consenting customers at risk, `p0000@example.com`...
fn crowd(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("p{i:04}"), format!("p{i:04}@example.com")))
        .collect()
}

fn seed_crowd(url: &str, crowd: &[(String, String)]) {
    let people: Vec<Person<'_>> = crowd
        .iter()
        .map(|(id, email)| (id.as_str(), Some(email.as_str()), true, true, 10.0))
        .collect();
    seed_customers(url, &people);
}

fn campaign(s: &TestServer, token: &str, extra: Value) -> String {
    let mut input = json!({
        "name": "Win back",
        "audience": {"lifecycleStage": ["AT_RISK"]},
        "subject": "We miss you, {{ customer.first_name }}",
        "textTemplate": "Hello {{ customer.first_name }} ({{ customer.id }}), {{ offer_code }} is yours.\nUnsubscribe: {{ unsubscribe_url }}",
        "htmlTemplate": "<p>Hello {{ customer.first_name }}</p>",
        "offerCode": "BACK10",
    });
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    let (_, body) = s.gql(Some(token), CREATE, json!({"input": input}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    body["data"]["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn send(s: &TestServer, token: &str, id: &str) -> Value {
    let (_, body) = s.gql(Some(token), SEND, json!({"id": id}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    body["data"]["sendCampaign"].clone()
}

fn campaign_state(s: &TestServer, token: &str, id: &str) -> Value {
    let (_, body) = s.gql(Some(token), STATS, json!({"id": id}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    body["data"]["campaign"].clone()
}

fn wait_sent(s: &TestServer, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    let done = wait_until(60, || {
        last = campaign_state(s, token, id);
        last["status"] == "SENT"
    });
    assert!(done, "campaign {id} did not finish: {last}");
    last
}

fn recipients(s: &TestServer, token: &str, id: &str, status: Option<&str>) -> Vec<Value> {
    let (_, body) = s.gql(Some(token), RECIPIENTS, json!({"id": id, "status": status}));
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    body["data"]["campaign"]["recipients"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

fn rcpts(sink: &Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect()
}

fn suppress(url: &str, address: &str) {
    let mut c = DbConnection::connect_for_write(url).unwrap();
    suppressions::add(
        &mut c,
        &Suppression {
            address: address.into(),
            reason: SuppressionReason::Unsubscribed,
            customer_id: None,
            campaign_id: None,
            at: common::day_one(),
        },
    )
    .unwrap();
}

fn a_campaign_reaches_each_consenting_customer_once_with_compliance_headers(backend: Backend) {
    let sink = Sink::start(&[]);
    let s = TestServer::sending(TestDb::new(backend), mail(&sink));
    seed_customers(&s.db.url, PEOPLE);
    suppress(&s.db.url, "gone@example.com");
    let marketer = s.token("mark", Role::Marketer);
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation { createSurvey(input: {name: \"How are we doing?\", question: \"Would you recommend us?\"}) { id } }",
        json!({}),
    );
    let survey = body["data"]["createSurvey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id = campaign(
        &s,
        &marketer,
        json!({
            "audience": {"lifecycleStage": ["AT_RISK"], "active": null},
            "surveyId": survey,
            "textTemplate": "Hello {{ customer.first_name }} ({{ customer.id }}), {{ offer_code }} is yours.\nTell us: {{ survey_url }}\nUnsubscribe: {{ unsubscribe_url }}",
        }),
    );
    let started = send(&s, &marketer, &id);
    assert_eq!(started["status"], "SENDING");
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(
        state["stats"],
        json!({"recipients": 2, "queued": 0, "sending": 0, "sent": 2, "failed": 0,
               "suppressed": 0, "inDoubt": 0, "control": 0, "unsubscribed": 0}),
        "c1 and c7 only: c2 no consent, c3 no email, c4 suppressed, c5 shares c1's address, c6 inactive"
    );
    let frozen: Vec<(String, i64)> = state["frozenExclusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().into(),
                e["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        frozen.contains(&("duplicate_address".into(), 1)),
        "{frozen:?}"
    );
    let messages = sink.messages();
    assert_eq!(
        rcpts(&sink).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["ann@example.com".to_string(), "cy@example.com".to_string()]),
        "exactly the two recipients, once each"
    );
    assert_eq!(messages.len(), 2);
    let mut message_ids = BTreeSet::new();
    for m in &messages {
        let h = &m["headers"];
        assert_eq!(m["mail_from"], "news@shop.example");
        assert_eq!(h["From"], "Shop <news@shop.example>");
        assert_eq!(h["X-Cvm-Campaign"], id.as_str());
        assert_eq!(h["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
        let list = h["List-Unsubscribe"].as_str().unwrap();
        assert!(
            list.starts_with("<http://portal.test/u/")
                && list.ends_with(">, <mailto:news@shop.example?subject=unsubscribe>"),
            "{list}"
        );
        assert!(h["Date"].as_str().is_some_and(|d| !d.is_empty()));
        let mid = h["Message-ID"].as_str().unwrap();
        assert!(
            mid.starts_with("<cvm.") && mid.ends_with("@shop.example>"),
            "{mid}"
        );
        message_ids.insert(mid.to_string());
        assert_eq!(h["Subject"], "We miss you, <Ann>");
        let text = m["text"].as_str().unwrap();
        let who = if m["rcpt_tos"][0] == "ann@example.com" {
            "c1"
        } else {
            "c7"
        };
        assert!(
            text.contains(&format!("Hello <Ann> ({who}), BACK10 is yours.")),
            "{text}"
        );
        assert!(text.contains("http://portal.test/s/"), "{text}");
        let token = list
            .trim_start_matches("<http://portal.test/u/")
            .split('>')
            .next()
            .unwrap();
        assert!(
            text.contains(token),
            "the body's unsubscribe link is the header's"
        );
        assert_eq!(
            m["html"].as_str().unwrap().trim(),
            "<p>Hello &lt;Ann&gt;</p>"
        );
    }
    assert_eq!(message_ids.len(), 2, "a unique Message-ID per message");
    let sent = recipients(&s, &marketer, &id, Some("SENT"));
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|r| r["attempts"] == 1 && r["sentAt"].is_string())
    );
    // The survey link in the message answers, attributed to the campaign.
    let c1 = messages
        .iter()
        .find(|m| m["rcpt_tos"][0] == "ann@example.com")
        .unwrap();
    let text = c1["text"].as_str().unwrap();
    let start = text.find("http://portal.test/s/").unwrap() + "http://portal.test/s/".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let (_, body) = s.gql(
        None,
        "mutation($input: FeedbackInput!) { submitFeedback(input: $input) { score } }",
        json!({"input": {"token": token, "score": 9}}),
    );
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    let (_, body) = s.gql(
        Some(&marketer),
        "query($id: ID!) { survey(id: $id) { invitations(first: 10, answered: true) { edges { node { campaignId customer { id } } } } } }",
        json!({"id": survey}),
    );
    let edges = &body["data"]["survey"]["invitations"]["edges"];
    assert_eq!(edges[0]["node"]["campaignId"], id.as_str(), "{body}");
    assert_eq!(edges[0]["node"]["customer"]["id"], "c1");
    let (_, body) = s.gql(
        Some(&marketer),
        "query($id: ID!) { campaign(id: $id) { stats { answers } } }",
        json!({"id": id}),
    );
    assert_eq!(body["data"]["campaign"]["stats"]["answers"], 1, "{body}");
    // The next campaign within the frequency cap reaches nobody.
    let again = campaign(
        &s,
        &marketer,
        json!({"audience": {"lifecycleStage": ["AT_RISK"], "active": null}}),
    );
    send(&s, &marketer, &again);
    let state = wait_sent(&s, &marketer, &again);
    assert_eq!(state["stats"]["recipients"], 0, "{state}");
    assert_eq!(
        common::exclusion_count(&state["frozenExclusions"], "frequency_cap"),
        3,
        "c1 and c7 were mailed; c5 shares c1's address"
    );
    assert_eq!(sink.messages().len(), 2, "nothing more sent");
}

fn unsubscribing_suppresses_the_address_and_its_queued_messages_at_once(backend: Backend) {
    // No sender: the frozen rows stay queued while the customer unsubscribes.
    let s = TestServer::configured(
        TestDb::new(backend),
        cvm_portal::server::Limits {
            rate_limit: 0.0,
            ..Default::default()
        },
        MailConfig::from_settings(&MailSettings {
            from: Some("Shop <news@shop.example>".into()),
            ..MailSettings::default()
        })
        .unwrap(),
        false,
    );
    seed_customers(&s.db.url, PEOPLE);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    send(&s, &marketer, &id);
    let other = campaign(
        &s,
        &marketer,
        json!({"name": "Second", "frequencyCapDays": 0}),
    );
    send(&s, &marketer, &other);
    // The link the message carries (derived from campaign and customer).
    let token = unsubscribe_token(&id, "c7");
    let page = s.get(&format!("/u/{token}"));
    assert_eq!(page.0, 200);
    assert!(
        page.1.contains("cy@example.com") && page.1.contains("<form method=\"post\""),
        "{}",
        page.1
    );
    let before = campaign_state(&s, &marketer, &id);
    assert_eq!(
        before["stats"]["queued"], 3,
        "c1, c4, c7; GET changes nothing: {before}"
    );
    let r = s
        .client()
        .post(format!("{}/u/{token}", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().unwrap().contains("You are unsubscribed"));
    let after = campaign_state(&s, &marketer, &id);
    assert_eq!(after["stats"]["queued"], 2, "{after}");
    assert_eq!(after["stats"]["suppressed"], 1);
    assert_eq!(after["stats"]["unsubscribed"], 1);
    let second = campaign_state(&s, &marketer, &other);
    assert_eq!(
        second["stats"]["suppressed"], 1,
        "every campaign's queued message to the address: {second}"
    );
    let held = recipients(&s, &marketer, &id, Some("SUPPRESSED"));
    assert_eq!(held[0]["customer"]["id"], "c7");
    assert_eq!(held[0]["suppressedReason"], "unsubscribed");
    // Again: still 200, nothing counted twice.
    let r = s
        .client()
        .post(format!("{}/u/{token}", s.base))
        .body("")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        campaign_state(&s, &marketer, &id)["stats"]["unsubscribed"],
        1
    );
    // A forged link is a 404 page.
    let forged = format!("{}A", &token[..token.len() - 1]);
    let forged = if forged == token {
        format!("{}B", &token[..token.len() - 1])
    } else {
        forged
    };
    assert_eq!(s.get(&format!("/u/{forged}")).0, 404);
    // The unsubscribe withdrew c7's consent: the next campaign leaves them
    // out as no_consent (the first reason that applies)...
    let third = campaign(
        &s,
        &marketer,
        json!({"name": "Third", "frequencyCapDays": 0}),
    );
    let excluded = |reason: &str| {
        let (_, body) = s.gql(
            Some(&marketer),
            "mutation($id: ID!) { previewCampaign(id: $id) { exclusions { reason count } } }",
            json!({"id": third}),
        );
        common::exclusion_count(&body["data"]["previewCampaign"]["exclusions"], reason)
    };
    let (no_consent, suppressed) = (excluded("no_consent"), excluded("suppressed"));
    assert_eq!(suppressed, 0);
    // ... and should their consent come back (an admin on their behalf),
    // the address stays suppressed.
    let admin = s.token("ada", Role::Admin);
    let (_, body) = s.gql(
        Some(&admin),
        "mutation { setEmailOptIn(id: \"c7\", optIn: true, note: \"asked by phone\") { emailOptIn consentHistory { source emailOptIn record } } }",
        json!({}),
    );
    let c7 = &body["data"]["setEmailOptIn"];
    assert_eq!(c7["emailOptIn"], true, "{body}");
    let history = c7["consentHistory"].as_array().unwrap();
    let sources: Vec<&str> = history
        .iter()
        .map(|h| h["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        &sources[sources.len() - 2..],
        ["unsubscribe", "staff"],
        "{body}"
    );
    assert_eq!(
        history.last().unwrap()["record"],
        "staff ada: asked by phone"
    );
    assert_eq!(excluded("no_consent"), no_consent - 1);
    assert_eq!(excluded("suppressed"), 1);
}

/// The unsubscribe token the test servers give `customer` in campaign `id`.
fn unsubscribe_token(id: &str, customer: &str) -> String {
    let signer = cvm_portal::tokens::LinkSigner::new(common::SECRET).unwrap();
    cvm_portal::mail::links::unsubscribe(&signer, id.parse().unwrap(), customer).token
}

fn temporary_refusals_are_retried_and_permanent_ones_fail_with_the_reply(backend: Backend) {
    let sink = Sink::start(&["--tempfail", "2", "--permfail", "p0003"]);
    let s = TestServer::sending(TestDb::new(backend), mail(&sink));
    let people = crowd(6);
    seed_crowd(&s.db.url, &people);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    send(&s, &marketer, &id);
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 5, "{state}");
    assert_eq!(state["stats"]["failed"], 1, "{state}");
    let mut got = rcpts(&sink);
    got.sort();
    let want: Vec<String> = people
        .iter()
        .map(|(_, e)| e.clone())
        .filter(|e| !e.contains("p0003"))
        .collect();
    assert_eq!(got, want, "each once, despite the two 451s");
    let failed = recipients(&s, &marketer, &id, Some("FAILED"));
    assert_eq!(failed[0]["customer"]["id"], "p0003");
    assert!(
        failed[0]["lastError"].as_str().unwrap().contains("550"),
        "{}",
        failed[0]
    );
    let retried: i64 = recipients(&s, &marketer, &id, Some("SENT"))
        .iter()
        .map(|r| r["attempts"].as_i64().unwrap() - 1)
        .sum();
    assert_eq!(retried, 2, "the two refused transactions were tried again");
    // retryFailed queues the failure again; the server still refuses it.
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation($id: ID!) { retryFailed(id: $id) { status } }",
        json!({"id": id}),
    );
    assert_eq!(body["data"]["retryFailed"]["status"], "SENDING", "{body}");
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["failed"], 1, "{state}");
    assert_eq!(sink.messages().len(), 5);
}

fn a_connection_dropped_mid_message_is_in_doubt_and_never_resent(backend: Backend) {
    let sink = Sink::start(&["--drop", "2"]);
    let mut settings = settings(&sink);
    settings.send_concurrency = 1;
    let s = TestServer::sending(
        TestDb::new(backend),
        MailConfig::from_settings(&settings).unwrap(),
    );
    seed_crowd(&s.db.url, &crowd(4));
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    send(&s, &marketer, &id);
    let state = wait_sent(&s, &marketer, &id);
    let doubt = recipients(&s, &marketer, &id, None);
    assert_eq!(state["stats"]["sent"], 3, "{doubt:?}");
    assert_eq!(
        state["stats"]["inDoubt"],
        1,
        "{state} {:?}",
        recipients(&s, &marketer, &id, Some("FAILED"))
    );
    let doubt = recipients(&s, &marketer, &id, Some("IN_DOUBT"));
    assert!(
        doubt[0]["lastError"]
            .as_str()
            .unwrap()
            .contains("may have been delivered")
    );
    assert_eq!(
        sink.messages().len(),
        3,
        "the dropped one is not sent again"
    );
}

fn a_server_that_is_down_delays_sending_and_loses_nobody(backend: Backend) {
    let sink = Sink::start(&[]);
    let mail = mail(&sink);
    let (port, dir) = sink.stop();
    let s = TestServer::sending(TestDb::new(backend), mail);
    let people = crowd(5);
    seed_crowd(&s.db.url, &people);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    send(&s, &marketer, &id);
    assert!(wait_until(20, || {
        recipients(&s, &marketer, &id, None)
            .iter()
            .any(|r| r["attempts"].as_i64().unwrap() >= 1)
    }));
    let state = campaign_state(&s, &marketer, &id);
    assert_eq!(state["status"], "SENDING");
    assert_eq!(state["stats"]["sent"], 0);
    assert_eq!(
        state["stats"]["failed"], 0,
        "a refused connection is not a failure: {state}"
    );
    let sink = Sink::spawn(port, dir, &[]);
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 5, "{state}");
    assert_eq!(sink.messages().len(), 5);
}

fn pause_and_resume_continue_where_sending_stopped(backend: Backend) {
    let sink = Sink::start(&[]);
    let mut settings = settings(&sink);
    settings.send_rate = 20.0;
    let s = TestServer::sending(
        TestDb::new(backend),
        MailConfig::from_settings(&settings).unwrap(),
    );
    let people = crowd(30);
    seed_crowd(&s.db.url, &people);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    send(&s, &marketer, &id);
    assert!(wait_until(20, || sink.messages().len() >= 3));
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation($id: ID!) { pauseCampaign(id: $id) { status } }",
        json!({"id": id}),
    );
    assert_eq!(body["data"]["pauseCampaign"]["status"], "PAUSED", "{body}");
    // Messages in flight finish; then nothing moves.
    assert!(wait_until(
        10,
        || campaign_state(&s, &marketer, &id)["stats"]["sending"] == 0
    ));
    let held = sink.messages().len();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(sink.messages().len(), held, "paused: nothing more sent");
    assert!(held < 30, "paused before the end");
    let state = campaign_state(&s, &marketer, &id);
    assert_eq!(state["status"], "PAUSED");
    assert_eq!(state["stats"]["sent"], held as i64);
    // While paused, one queued address is erased: its suppression keeps
    // only the keyed hash, and the sender's last check still finds it.
    let mailed = rcpts(&sink);
    let (erased_id, erased) = people
        .iter()
        .find(|(_, e)| !mailed.contains(e))
        .cloned()
        .unwrap();
    let key = cvm_shared::privacy::PrivacyKey::new(common::PRIVACY_KEY).unwrap();
    suppress(
        &s.db.url,
        &key.hashed_value(cvm_shared::privacy::KeyKind::Email, &erased),
    );
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation($id: ID!) { resumeCampaign(id: $id) { status } }",
        json!({"id": id}),
    );
    assert_eq!(body["data"]["resumeCampaign"]["status"], "SENDING");
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 29, "{state}");
    assert_eq!(state["stats"]["suppressed"], 1, "{state}");
    let held = recipients(&s, &marketer, &id, Some("SUPPRESSED"));
    assert_eq!(held[0]["customer"]["id"], erased_id.as_str());
    let mut got = rcpts(&sink);
    got.sort();
    let want: Vec<String> = people
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| *e != erased)
        .collect();
    assert_eq!(got, want, "everyone else exactly once across the pause");
}

fn uplift_compares_the_treated_with_the_control_group(backend: Backend) {
    let sink = Sink::start(&[]);
    let s = TestServer::sending(TestDb::new(backend), mail(&sink));
    let people = crowd(40);
    seed_crowd(&s.db.url, &people);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({"controlShare": 0.25}));
    send(&s, &marketer, &id);
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["control"], 10, "round(0.25 x 40): {state}");
    assert_eq!(state["stats"]["sent"], 30);
    assert_eq!(
        sink.messages().len(),
        30,
        "the control group receives nothing"
    );
    let (_, body) = s.gql(
        Some(&marketer),
        "query($id: ID!) { campaignUplift(id: $id, days: 7) { treated } }",
        json!({"id": id}),
    );
    assert_eq!(
        error_codes(&body),
        ["BAD_USER_INPUT"],
        "no scores after the start yet: {body}"
    );
    // A nightly run 10 days later: every treated customer bought once more.
    let treated: BTreeSet<String> = recipients(&s, &marketer, &id, Some("SENT"))
        .iter()
        .map(|r| r["customer"]["id"].as_str().unwrap().to_string())
        .collect();
    {
        use cvm_shared::db::schema::scores;
        use diesel::prelude::*;
        let mut c = DbConnection::connect_for_write(&s.db.url).unwrap();
        let later = chrono::Utc::now().date_naive() + chrono::Duration::days(10);
        diesel::update(scores::table)
            .set(scores::as_of.eq(later))
            .execute(&mut c)
            .unwrap();
        diesel::update(scores::table.filter(scores::customer_id.eq_any(&treated)))
            .set((scores::orders.eq(3), scores::total_revenue.eq("55.00")))
            .execute(&mut c)
            .unwrap();
    }
    let (_, body) = s.gql(
        Some(&marketer),
        "query($id: ID!) { campaignUplift(id: $id, days: 7) { treated control days metrics { metric treated control difference ciLow ciHigh } } }",
        json!({"id": id}),
    );
    assert_eq!(error_codes(&body), Vec::<String>::new(), "{body}");
    let u = &body["data"]["campaignUplift"];
    assert_eq!(
        (u["treated"].as_i64(), u["control"].as_i64()),
        (Some(30), Some(10))
    );
    assert!(u["days"].as_i64().unwrap() >= 9, "{u}");
    let metric = |name: &str| {
        u["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
            .clone()
    };
    let purchases = metric("purchases");
    assert_eq!(purchases["treated"], 1.0);
    assert_eq!(purchases["control"], 0.0);
    assert_eq!(purchases["difference"], 1.0);
    assert_eq!(
        purchases["ciLow"], 1.0,
        "no variance: the interval is the point"
    );
    assert_eq!(metric("revenue")["difference"], 15.0);
}

cvm_shared::both_backends!(the_file_outbox_gets_one_eml_per_message_and_test_messages_are_marked);

fn the_file_outbox_gets_one_eml_per_message_and_test_messages_are_marked(backend: Backend) {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().join("mail");
    let s = TestServer::sending(
        TestDb::new(backend),
        MailConfig::from_settings(&MailSettings {
            from: Some("Shop <news@shop.example>".into()),
            outbox_dir: dir.to_str().unwrap().into(),
            send_rate: 0.0,
            ..MailSettings::default()
        })
        .unwrap(),
    );
    let people = crowd(3);
    seed_crowd(&s.db.url, &people);
    let marketer = s.token("mark", Role::Marketer);
    let id = campaign(&s, &marketer, json!({}));
    let (_, body) = s.gql(
        Some(&marketer),
        "mutation($id: ID!, $to: String!) { sendTestMessage(id: $id, to: $to) }",
        json!({"id": id, "to": "me@shop.example"}),
    );
    assert_eq!(body["data"]["sendTestMessage"], true, "{body}");
    let files = |dir: &std::path::Path| -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        all
    };
    let test = files(&dir);
    assert_eq!(test.len(), 1);
    assert!(
        test[0].contains("Subject: [TEST] We miss you, <Ann>"),
        "{}",
        test[0]
    );
    assert!(test[0].contains("To: me@shop.example"));
    assert_eq!(
        campaign_state(&s, &marketer, &id)["stats"]["recipients"],
        0,
        "a test message records nothing"
    );
    send(&s, &marketer, &id);
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 3);
    let all = files(&dir);
    assert_eq!(all.len(), 4, "one .eml per message");
    for (_, email) in &people {
        assert_eq!(
            all.iter()
                .filter(|m| m.contains(&format!("To: {email}")))
                .count(),
            1
        );
    }
    assert!(
        all.iter()
            .all(|m| m.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"))
    );
    // Without a sender address nothing is sent, and the error says what to set.
    let none = TestServer::start(backend);
    let marketer = none.token("mark", Role::Marketer);
    seed_crowd(&none.db.url, &people);
    let id = campaign(&none, &marketer, json!({}));
    let (_, body) = none.gql(Some(&marketer), SEND, json!({"id": id}));
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"]);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CVM_MAIL_FROM")
    );
}

mail_tests!(a_scheduled_campaign_is_frozen_and_sent_when_due);

fn a_scheduled_campaign_is_frozen_and_sent_when_due(backend: Backend) {
    let sink = Sink::start(&[]);
    let s = TestServer::sending(TestDb::new(backend), mail(&sink));
    seed_crowd(&s.db.url, &crowd(3));
    let marketer = s.token("mark", Role::Marketer);
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let id = campaign(
        &s,
        &marketer,
        json!({"sendAt": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    );
    let started = send(&s, &marketer, &id);
    assert_eq!(started["status"], "SCHEDULED");
    let state = campaign_state(&s, &marketer, &id);
    assert_eq!(
        state["stats"]["recipients"], 0,
        "not frozen before it is due"
    );
    assert!(sink.messages().is_empty());
    let state = wait_sent(&s, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 3, "{state}");
    assert_eq!(sink.messages().len(), 3);
}

mail_tests!(credentials_in_the_smtp_url_authenticate_the_sender);

fn credentials_in_the_smtp_url_authenticate_the_sender(backend: Backend) {
    let sink = Sink::start(&["--auth", "mark:s3cr%t"]);
    let with = |password: &str| {
        let mut settings = settings(&sink);
        settings.smtp_url = Some(Secret::new(format!(
            "smtp://mark:{password}@127.0.0.1:{}?tls=none",
            sink.port
        )));
        MailConfig::from_settings(&settings).unwrap()
    };
    // A wrong password: nothing delivered, nothing failed, the reason recorded.
    let wrong = TestServer::sending(TestDb::new(backend), with("nope"));
    seed_crowd(&wrong.db.url, &crowd(2));
    let marketer = wrong.token("mark", Role::Marketer);
    let id = campaign(&wrong, &marketer, json!({}));
    send(&wrong, &marketer, &id);
    assert!(wait_until(20, || {
        recipients(&wrong, &marketer, &id, None).iter().any(|r| {
            r["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("authentication failed"))
        })
    }));
    assert_eq!(campaign_state(&wrong, &marketer, &id)["stats"]["failed"], 0);
    drop(wrong);
    assert!(sink.messages().is_empty());
    // The right one (percent-encoded in the URL, as URLs need).
    let right = TestServer::sending(TestDb::new(backend), with("s3cr%25t"));
    seed_crowd(&right.db.url, &crowd(2));
    let marketer = right.token("mark", Role::Marketer);
    let id = campaign(&right, &marketer, json!({}));
    send(&right, &marketer, &id);
    let state = wait_sent(&right, &marketer, &id);
    assert_eq!(state["stats"]["sent"], 2, "{state}");
    assert!(sink.messages().iter().all(|m| m["auth_user"] == "mark"));
}
