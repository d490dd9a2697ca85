//! A customer's data rights, end to end on the demo, as a data protection
//! officer runs them: pick a customer with purchases on several channels, a
//! survey comment and a campaign message; export everything held about
//! them and check the archive against the database and the warehouse;
//! erase them; then search every byte the product stores for them (none
//! found), check that totals and every other customer's scores did not
//! move, and that a later drop re-delivering them does not bring them back.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cvm_e2e::{Portal, demo_on, run};
use cvm_shared::db::Backend;
use cvm_shared::db::testing::TestDb;
use serde_json::{Value, json};

cvm_shared::both_backends!(an_erased_customer_is_gone_from_every_byte_and_stays_gone);

const KEY: &str = "e2e privacy key: at least thirty-two bytes";

/// Every file under `dir` (following no links), with its bytes.
fn files_under(dir: &Path, skip: &[&Path]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if skip.contains(&d.as_path()) {
            continue;
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files of a zip archive by name.
fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.insert(f.name().unwrap().to_string(), bytes);
    }
    out
}

fn csv_rows(bytes: &[u8]) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn wait_sent(portal: &Portal, token: &str, id: &str) {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let c = portal.gql(
            Some(token),
            "query($id: ID!) { campaign(id: $id) { status stats { sent } } }",
            json!({"id": id}),
        );
        if c["campaign"]["status"] == "SENT" {
            assert!(c["campaign"]["stats"]["sent"].as_i64().unwrap() >= 1, "{c}");
            return;
        }
        assert!(Instant::now() < end, "campaign did not finish: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the database holds, as bytes a search can read: the SQLite file and
/// its WAL, or a `pg_dump` of the PostgreSQL database.
fn database_bytes(db: &TestDb) -> Vec<(PathBuf, Vec<u8>)> {
    match db.backend {
        Backend::Sqlite => {
            let file = PathBuf::from(db.url.trim_start_matches("sqlite://"));
            files_under(file.parent().unwrap(), &[])
        }
        Backend::Postgres => {
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", "--dbname", &db.url])
                .output()
                .expect("pg_dump runs (Debian package postgresql-client)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            vec![(PathBuf::from("pg_dump"), out.stdout)]
        }
    }
}

fn an_erased_customer_is_gone_from_every_byte_and_stays_gone(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    let db = TestDb::new(backend);
    let db_url = db.url.clone();
    let token = demo_on(&demo, 300, 5, "dpo", &db_url);
    let warehouse = demo.join("warehouse");
    let outbox = demo.join("outbox");
    let wh = warehouse.to_str().unwrap();
    let outbox_s = outbox.to_str().unwrap();
    let env = [
        ("CVM_PRIVACY_KEY", KEY),
        ("CVM_MAIL_OUTBOX_DIR", outbox_s),
        ("CVM_MAIL_FROM", "Demo Shop <news@shop.example>"),
        ("CVM_SEND_RATE", "0"),
    ];
    let portal = Portal::start(&db_url, &env);
    let staff = Some(token.as_str());
    // `cvm-etl privacy <action> --customer ID --warehouse W --db URL <rest>`.
    let privacy = |action: &str, id: &str, rest: &[&str]| {
        let mut args = vec![
            "privacy",
            action,
            "--customer",
            id,
            "--warehouse",
            wh,
            "--db",
            &db_url,
        ];
        args.extend_from_slice(rest);
        run("cvm-etl", &args, &env)
    };

    // A CRM customer with consent who bought on several channels, whose
    // email and last name nobody else has.
    let all = portal.gql(
        staff,
        "{ customers(first: 500, filter: {active: null}) { edges { node { id isGuest email phone firstName lastName emailOptIn channels } } } }",
        json!({}),
    );
    let nodes: Vec<Value> = all["customers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let name = |n: &Value| (n["firstName"].clone(), n["lastName"].clone());
    let same =
        |n: &Value, f: &dyn Fn(&Value) -> bool| nodes.iter().filter(|m| f(m)).count() == 1 && f(n);
    let me = nodes
        .iter()
        .find(|n| {
            n["isGuest"] == false
                && n["emailOptIn"] == true
                && n["channels"].as_array().unwrap().len() >= 2
                && n["phone"].is_string()
                && n["lastName"].is_string()
                && same(n, &|m| m["email"] == n["email"])
                && same(n, &|m| name(m) == name(n))
        })
        .expect("a customer to erase")
        .clone();
    let id = me["id"].as_str().unwrap().to_string();
    let email = me["email"].as_str().unwrap().to_string();
    let phone = me["phone"].as_str().unwrap().to_string();
    let (first, last) = (
        me["firstName"].as_str().unwrap().to_string(),
        me["lastName"].as_str().unwrap().to_string(),
    );
    let full = format!("{first} {last}");
    // How the name shows in stored bytes: text, CSV, a SQLite record (adjacent columns).
    let names = [
        full.clone(),
        format!("{first},{last}"),
        format!("{first}{last}"),
    ];

    // They answer a survey with a comment and get a campaign message.
    let survey = portal.gql(
        staff,
        "mutation { createSurvey(input: {name: \"After purchase\", question: \"Recommend us?\", commentPrompt: \"Anything else?\"}) { id } }",
        json!({}),
    )["createSurvey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    portal.gql(
        staff,
        "mutation($s: ID!, $q: String!) { createInvitations(surveyId: $s, filter: {search: $q}) { created } }",
        json!({"s": survey, "q": id}),
    );
    let inv = portal.gql(
        staff,
        "query($s: ID!) { survey(id: $s) { invitations { edges { node { url customer { id } } } } } }",
        json!({"s": survey}),
    );
    let url = inv["survey"]["invitations"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["customer"]["id"] == id.as_str())
        .unwrap()["node"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let form_url = format!("{}/s/{}", portal.base, url.rsplit_once("/s/").unwrap().1);
    let comment = format!("Ask for {full}, the parcel was late");
    let form = format!(
        "score=3&comment={}",
        comment.replace(' ', "+").replace(',', "%2C")
    );
    assert_eq!(portal.post_form(&form_url, &form).0, 303);
    let campaign = portal.gql(
        staff,
        "mutation($input: CampaignInput!) { createCampaign(input: $input) { id } }",
        json!({"input": {
            "name": "Thank you",
            "audience": {"search": id},
            "subject": "Thank you, {{ customer.first_name }} {{ customer.last_name }}",
            "textTemplate": "Dear {{ customer.first_name }}, unsubscribe: {{ unsubscribe_url }}",
            "frequencyCapDays": 0,
        }}),
    )["createCampaign"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    portal.gql(
        staff,
        "mutation($id: ID!) { sendCampaign(id: $id) { status } }",
        json!({"id": campaign}),
    );
    wait_sent(&portal, &token, &campaign);
    drop(portal);
    let mut stored = files_under(&demo, &[&demo.join("drop")]);
    stored.extend(database_bytes(&db));
    assert!(
        stored.iter().any(|(_, b)| contains(b, &email))
            && stored.iter().any(|(_, b)| contains(b, &full)),
        "the demo holds them before the erasure"
    );
    let decoded = stored
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|(p, _)| parquet_rows(p))
        .any(|row| row.values().any(|v| *v == email));
    assert!(
        decoded,
        "the warehouse holds their email before the erasure"
    );

    // Export: everything held about them.
    let archive = tmp.path().join("export.zip");
    privacy("export", &id, &["--out", archive.to_str().unwrap()]);
    let parts = unzip(&archive);
    for name in [
        "README.md",
        "profile.json",
        "consent_history.csv",
        "survey_answers.csv",
        "messages.csv",
        "warehouse/customers.csv",
        "warehouse/transactions.csv",
        "warehouse/events.csv",
        "warehouse/scores.csv",
        "keys.json",
    ] {
        assert!(
            parts.contains_key(name),
            "{name} missing: {:?}",
            parts.keys()
        );
    }
    let profile: Value = serde_json::from_slice(&parts["profile.json"]).unwrap();
    assert_eq!(profile["email"], email.as_str());
    assert_eq!(profile["phone"], phone.as_str());
    let answers = csv_rows(&parts["survey_answers.csv"]);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["comment"], comment);
    let messages = csv_rows(&parts["messages.csv"]);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["status"], "sent");
    let txns = csv_rows(&parts["warehouse/transactions.csv"]);
    let channels: BTreeSet<&str> = txns.iter().map(|t| t["channel"].as_str()).collect();
    let expected: BTreeSet<&str> = me["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(channels, expected, "every channel's purchases");
    assert!(
        txns.iter()
            .all(|t| t["customer_id"] == id && !t["source_file"].is_empty())
    );
    let scores = csv_rows(&parts["warehouse/scores.csv"]);
    assert!(!scores.is_empty());
    let orders: i64 = scores.last().unwrap()["orders"].parse().unwrap();
    let purchases = txns.iter().filter(|t| t["kind"] == "purchase").count() as i64;
    assert!(
        orders >= 1 && orders <= purchases,
        "{orders} orders, {purchases} purchases"
    );
    let keys = String::from_utf8(parts["keys.json"].clone()).unwrap();
    assert!(keys.contains(&email) && keys.contains(&phone), "{keys}");

    // What must not move: warehouse totals, and everyone else's scores.
    let before_scores = scores_by_customer(&warehouse);
    let before_totals = transaction_totals(&warehouse);

    // Erase.
    let erased = privacy("erase", &id, &["--reason", "ticket 7"]);
    let log = [erased.stdout.clone(), erased.stderr.clone()].concat();
    let again = privacy("erase", &id, &["--reason", "ticket 7"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already erased"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Every byte the product stores, and the erasure's own output.
    let mut stored = files_under(&demo, &[&demo.join("drop")]);
    stored.extend(database_bytes(&db));
    stored.push((PathBuf::from("erase output"), log));
    let e164_digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    for (path, bytes) in &stored {
        let mut needles = vec![email.as_str(), phone.as_str(), e164_digits.as_str()];
        needles.extend(names.iter().map(String::as_str));
        for needle in needles {
            assert!(
                !contains(bytes, needle),
                "{} still holds {needle:?}",
                path.display()
            );
        }
        // Parquet pages are compressed: search the decoded values too.
        if path.extension().is_some_and(|e| e == "parquet") {
            for row in parquet_rows(path) {
                let values: Vec<&str> = row.values().map(String::as_str).collect();
                assert!(
                    !values
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(&email) || *v == phone || *v == id),
                    "{} still holds them: {row:?}",
                    path.display()
                );
                assert!(
                    !(values.contains(&first.as_str()) && values.contains(&last.as_str())),
                    "{} still holds their name: {row:?}",
                    path.display()
                );
            }
        }
    }

    let after_scores = scores_by_customer(&warehouse);
    assert_eq!(
        transaction_totals(&warehouse),
        before_totals,
        "totals unchanged"
    );
    let others = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| **k != id && !k.starts_with("erased-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (after_others, before_others) = (others(&after_scores), others(&before_scores));
    let moved: Vec<&String> = before_others
        .keys()
        .chain(after_others.keys())
        .filter(|k| before_others.get(*k) != after_others.get(*k))
        .collect();
    assert!(moved.is_empty(), "other customers' scores moved: {moved:?}");
    assert!(
        after_scores.keys().any(|k| k.starts_with("erased-")),
        "their scores stay, under the pseudonym"
    );

    // The export of an erased customer says so and holds nothing personal.
    let archive2 = tmp.path().join("export-2.zip");
    privacy("export", &id, &["--out", archive2.to_str().unwrap()]);
    let parts = unzip(&archive2);
    assert!(parts.contains_key("erasure.json"), "{:?}", parts.keys());
    for (name, bytes) in &parts {
        assert!(
            !contains(bytes, &email) && !contains(bytes, &full),
            "{name}"
        );
    }

    // A later drop re-delivers their CRM record and a purchase by their email.
    let drop2 = tmp.path().join("drop2");
    std::fs::create_dir_all(drop2.join("crm")).unwrap();
    std::fs::create_dir_all(drop2.join("app")).unwrap();
    let crm = std::fs::read_to_string(demo.join("drop/crm/customers.csv")).unwrap();
    let mut lines = crm.lines();
    let header = lines.next().unwrap();
    let mine = lines
        .find(|l| l.starts_with(&format!("{id},")))
        .expect("their CRM row in the demo drop");
    std::fs::write(
        drop2.join("crm/customers.csv"),
        format!("{header}\n{mine}\n"),
    )
    .unwrap();
    std::fs::write(
        drop2.join("app/again.jsonl"),
        format!(
            "{{\"txn\":\"A-AGAIN-1\",\"user_email\":\"{}\",\"ts\":1767225600,\"amount_cents\":1999,\"currency\":\"USD\",\"kind\":\"purchase\"}}\n",
            email.to_uppercase()
        ),
    )
    .unwrap();
    run(
        "cvm-etl",
        &[
            "--quiet",
            "nightly",
            "--input",
            drop2.to_str().unwrap(),
            "--warehouse",
            wh,
            "--db",
            &db_url,
        ],
        &env,
    );
    let manifests = files_under(&warehouse.join("runs"), &[]);
    let erased_counted = manifests.iter().any(|(p, b)| {
        p.ends_with("manifest.json")
            && serde_json::from_slice::<Value>(b)
                .ok()
                .is_some_and(|m| m["totals"]["erased"] == 2)
    });
    assert!(
        erased_counted,
        "the ingest manifest counts both records as erased"
    );
    for (path, bytes) in files_under(&demo, &[&demo.join("drop")]) {
        assert!(
            !contains(&bytes, &email),
            "{} holds the email again",
            path.display()
        );
    }
    let portal = Portal::start(&db_url, &env);
    let back = portal.gql(
        staff,
        "query($id: ID!) { customer(id: $id) { id } }",
        json!({"id": id}),
    );
    assert_eq!(back["customer"], Value::Null, "not resurrected");
}

/// The latest scores of every customer, each row as text.
fn scores_by_customer(warehouse: &Path) -> BTreeMap<String, String> {
    let dates = std::fs::read_dir(warehouse.join("scores"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut out = BTreeMap::new();
    for f in std::fs::read_dir(&dates).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "parquet") {
            for row in parquet_rows(&p) {
                let id = row["customer_id"].clone();
                let mut row = row;
                row.remove("customer_id");
                out.insert(id, format!("{row:?}"));
            }
        }
    }
    out
}

/// (transactions, sum of amount_base as text of the exact decimal sum) over the current version.
fn transaction_totals(warehouse: &Path) -> (usize, String) {
    let mut n = 0;
    let mut sum: i128 = 0;
    let mut stack = vec![warehouse.join("current").join("transactions")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                for row in parquet_rows(&p) {
                    n += 1;
                    let digits: String = row["amount_base"].chars().filter(|c| *c != '.').collect();
                    sum += digits.parse::<i128>().unwrap();
                }
            }
        }
    }
    (n, sum.to_string())
}

fn parquet_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| {
                    let text = field.to_string();
                    let text = text
                        .strip_prefix('"')
                        .and_then(|t| t.strip_suffix('"'))
                        .map_or(text.clone(), str::to_string);
                    (name.clone(), text)
                })
                .collect()
        })
        .collect()
}
