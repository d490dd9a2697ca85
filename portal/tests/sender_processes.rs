//! The sender's guarantee across processes, with the real `cvm-portal
//! serve` binary and a real SMTP server: killed with SIGKILL at moments
//! mid-campaign and restarted, no customer gets two messages, nobody due is
//! skipped except those marked IN_DOUBT (at most the sender's concurrency
//! per kill), and the stats add up; two processes sending one campaign on
//! one PostgreSQL database send every recipient exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::smtp::Sink;
use common::{Person, PortalProcess, create_token, seed_customers, wait_until};
use cvm_shared::db::Backend;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::testing::TestDb;
use serde_json::{Value, json};

const CONCURRENCY: usize = 4;

#[test]
#[cfg_attr(
    cvm_smtp_tests_ignored,
    ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)"
)]
fn killed_mid_campaign_and_restarted_nobody_gets_two_messages_on_sqlite() {
    killed_and_restarted(Backend::Sqlite);
}

cvm_shared::__postgres_test! {
    #[test]
    #[cfg_attr(cvm_smtp_tests_ignored, ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)")]
    fn killed_mid_campaign_and_restarted_nobody_gets_two_messages_on_postgres() {
        killed_and_restarted(Backend::Postgres);
    }
}

cvm_shared::__postgres_test! {
    #[test]
    #[cfg_attr(cvm_smtp_tests_ignored, ignore = "needs python3 with aiosmtpd (pip install aiosmtpd)")]
    fn two_processes_on_one_database_send_every_recipient_exactly_once() {
        two_processes(Backend::Postgres);
    }
}

fn env(db: &TestDb, sink: &Sink, rate: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CVM_DATABASE_URL", db.url.clone()),
        ("CVM_SMTP_URL", sink.url()),
        ("CVM_MAIL_FROM", "Shop <news@shop.example>".into()),
        ("CVM_SEND_RATE", rate.into()),
        ("CVM_SEND_CONCURRENCY", CONCURRENCY.to_string()),
        ("CVM_SEND_LEASE_SECONDS", "1".into()),
        ("CVM_SEND_RETRY_SECONDS", "0".into()),
    ]
}

fn seed(db: &TestDb, n: usize) -> Vec<String> {
    let crowd: Vec<(String, String)> = (0..n)
        .map(|i| (format!("p{i:04}"), format!("p{i:04}@example.com")))
        .collect();
    let people: Vec<Person<'_>> = crowd
        .iter()
        .map(|(id, email)| (id.as_str(), Some(email.as_str()), true, true, 10.0))
        .collect();
    seed_customers(&db.url, &people);
    crowd.into_iter().map(|(_, e)| e).collect()
}

fn start_campaign(p: &PortalProcess, token: &str) -> String {
    let body = p.gql(
        token,
        "mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }",
        json!({"input": {
            "name": "Win back",
            "audience": {"lifecycleStage": ["AT_RISK"]},
            "subject": "Hello {{ customer.first_name }}",
            "textTemplate": "Hi {{ customer.id }}: {{ unsubscribe_url }}",
        }}),
    );
    let id = body["data"]["createCampaign"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    let body = p.gql(
        token,
        "mutation($id: ID!) { sendCampaign(id: $id) { status } }",
        json!({"id": id}),
    );
    assert_eq!(body["data"]["sendCampaign"]["status"], "SENDING", "{body}");
    id
}

fn state(p: &PortalProcess, token: &str, id: &str) -> Value {
    p.gql(
        token,
        "query($id: ID!) { campaign(id: $id) { status stats { recipients queued sending sent failed suppressed inDoubt } } }",
        json!({"id": id}),
    )["data"]["campaign"]
        .clone()
}

fn wait_sent(p: &PortalProcess, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    let done = wait_until(120, || {
        last = state(p, token, id);
        last["status"] == "SENT"
    });
    assert!(done, "not finished: {last}");
    last
}

/// How many messages each address received.
fn received(sink: &Sink) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in sink.messages() {
        *counts
            .entry(m["rcpt_tos"][0].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn killed_and_restarted(backend: Backend) {
    const N: usize = 400;
    const KILLS: usize = 4;
    let sink = Sink::start(&[]);
    let db = TestDb::new(backend);
    let all = seed(&db, N);
    let token = create_token(&db.url, "mark", Role::Marketer);
    // 250 messages a second: the campaign takes over a second and a half,
    // so the kills below land mid-campaign.
    let env = env(&db, &sink, "250");
    let first = PortalProcess::start(&env);
    let id = start_campaign(&first, &token);
    std::thread::sleep(Duration::from_millis(150));
    first.kill();
    assert!(
        sink.messages().len() < N,
        "the first kill lands mid-campaign"
    );
    // Fixed moments, so the run is reproducible.
    for wait in [200, 350, 120][..KILLS - 1].iter() {
        let p = PortalProcess::start(&env);
        std::thread::sleep(Duration::from_millis(*wait));
        p.kill();
    }
    let last = PortalProcess::start(&env);
    let done = wait_sent(&last, &token, &id);
    let stats = &done["stats"];
    eprintln!("after {KILLS} kills: {stats}");
    let got = received(&sink);
    assert!(
        got.values().all(|n| *n == 1),
        "nobody gets two messages: {:?}",
        got.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let sent = stats["sent"].as_u64().unwrap() as usize;
    let doubt = stats["inDoubt"].as_u64().unwrap() as usize;
    assert_eq!(stats["recipients"], N as u64);
    assert_eq!(sent + doubt, N, "every recipient sent or in doubt: {stats}");
    assert!(
        doubt <= CONCURRENCY * KILLS,
        "at most the concurrency per kill in doubt: {stats}"
    );
    // Every SENT recipient got exactly one message; in doubt got at most one.
    let delivered = got.len();
    assert!(
        delivered >= sent && delivered <= N,
        "{delivered} delivered, {sent} sent"
    );
    assert!(got.keys().all(|a| all.contains(a)));
}

fn two_processes(backend: Backend) {
    const N: usize = 300;
    let sink = Sink::start(&[]);
    let db = TestDb::new(backend);
    let all = seed(&db, N);
    let token = create_token(&db.url, "mark", Role::Marketer);
    let env = env(&db, &sink, "0");
    let a = PortalProcess::start(&env);
    let b = PortalProcess::start(&env);
    let id = start_campaign(&a, &token);
    let done = wait_sent(&b, &token, &id);
    assert_eq!(done["stats"]["sent"], N as u64, "{done}");
    let got = received(&sink);
    assert_eq!(got.len(), N);
    assert!(got.values().all(|n| *n == 1), "exactly once each");
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), all);
}
