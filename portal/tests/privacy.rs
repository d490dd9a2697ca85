//! Data requests and the access audit through the API, on SQLite and
//! PostgreSQL: admins export and erase, nobody else can; every request that
//! returns personal fields is in the audit log; a consent history follows
//! every change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, error_codes, seed_customers};
use cvm_shared::db::Backend;
use cvm_shared::db::models::api_tokens::Role;
use serde_json::{Value, json};

cvm_shared::both_backends!(
    viewers_and_marketers_cannot_export_or_erase,
    an_admin_export_downloads_with_an_admin_token_only,
    an_admin_erasure_pseudonymises_the_customer_and_a_repeat_changes_nothing,
    reading_personal_fields_is_audited_and_reading_scores_is_not,
);

const PEOPLE: &[common::Person<'static>] = &[
    ("c1", Some("ann@example.com"), true, true, 120.0),
    ("c2", Some("bob@example.com"), true, true, 80.0),
];

const EXPORT: &str = "mutation($id: ID!) { exportCustomerData(id: $id) { url expiresAt } }";
const ERASE: &str = "mutation($id: ID!, $r: String!) { eraseCustomer(id: $id, reason: $r) { customerId pseudonym erasedAt warehousePending } }";
const AUDIT: &str = "query($c: ID, $a: AuditAction) { auditLog(customerId: $c, action: $a) { totalCount edges { node { actor action customerIds detail } } } }";

fn viewers_and_marketers_cannot_export_or_erase(backend: Backend) {
    let s = TestServer::start(backend);
    seed_customers(&s.db.url, PEOPLE);
    for role in [Role::Viewer, Role::Marketer] {
        let t = s.token("eve", role);
        let (_, body) = s.gql(Some(&t), EXPORT, json!({"id": "c1"}));
        assert_eq!(error_codes(&body), ["FORBIDDEN"], "{role:?}: {body}");
        let (_, body) = s.gql(Some(&t), ERASE, json!({"id": "c1", "r": "x"}));
        assert_eq!(error_codes(&body), ["FORBIDDEN"], "{role:?}: {body}");
        let (_, body) = s.gql(Some(&t), AUDIT, json!({}));
        assert_eq!(error_codes(&body), ["FORBIDDEN"], "{role:?}: {body}");
    }
    let admin = s.token("ada", Role::Admin);
    let (_, body) = s.gql(
        Some(&admin),
        "{ customer(id: \"c1\") { email erased } }",
        json!({}),
    );
    assert_eq!(
        body["data"]["customer"]["email"], "ann@example.com",
        "{body}"
    );
}

fn an_admin_export_downloads_with_an_admin_token_only(backend: Backend) {
    let s = TestServer::start(backend);
    seed_customers(&s.db.url, PEOPLE);
    let admin = s.token("ada", Role::Admin);
    let marketer = s.token("mark", Role::Marketer);
    let (_, body) = s.gql(Some(&admin), EXPORT, json!({"id": "c1"}));
    let url = body["data"]["exportCustomerData"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    let path = url.strip_prefix("http://portal.test").unwrap().to_string();
    assert!(path.starts_with("/exports/"), "{url}");
    let get = |token: Option<&str>, path: &str| {
        let mut r = s.client().get(format!("{}{path}", s.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    assert_eq!(get(None, &path).0, 401);
    assert_eq!(get(Some(&marketer), &path).0, 403);
    assert_eq!(get(Some(&admin), "/exports/forged-token").0, 404);
    let (status, zip) = get(Some(&admin), &path);
    assert_eq!(status, 200);
    assert!(zip.starts_with(b"PK"), "a zip archive");
    let text = String::from_utf8_lossy(&zip);
    // Deflated parts: the archive's directory names them in clear.
    for part in [
        "README.md",
        "profile.json",
        "consent_history.csv",
        "staff_access.csv",
    ] {
        assert!(text.contains(part), "{part}");
    }
    let (_, body) = s.gql(Some(&admin), AUDIT, json!({"c": "c1", "a": "EXPORT"}));
    assert_eq!(body["data"]["auditLog"]["totalCount"], 1, "{body}");
    assert_eq!(
        body["data"]["auditLog"]["edges"][0]["node"]["actor"], "ada",
        "{body}"
    );
    let (_, body) = s.gql(Some(&admin), EXPORT, json!({"id": "nobody"}));
    assert_eq!(error_codes(&body), ["NOT_FOUND"], "{body}");
}

fn an_admin_erasure_pseudonymises_the_customer_and_a_repeat_changes_nothing(backend: Backend) {
    let s = TestServer::start(backend);
    seed_customers(&s.db.url, PEOPLE);
    let admin = s.token("ada", Role::Admin);
    let (_, body) = s.gql(Some(&admin), ERASE, json!({"id": "c1", "r": " "}));
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
    let (_, body) = s.gql(Some(&admin), ERASE, json!({"id": "c1", "r": "ticket 9"}));
    let erased = body["data"]["eraseCustomer"].clone();
    let pseudonym = erased["pseudonym"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    assert!(pseudonym.starts_with("erased-"), "{erased}");
    assert_eq!(erased["customerId"], "c1");
    assert_eq!(
        erased["warehousePending"], true,
        "the nightly job does the warehouse"
    );
    let (_, again) = s.gql(Some(&admin), ERASE, json!({"id": "c1", "r": "ticket 9"}));
    assert_eq!(again["data"]["eraseCustomer"], erased, "{again}");

    let (_, body) = s.gql(Some(&admin), "{ customer(id: \"c1\") { id } }", json!({}));
    assert_eq!(body["data"]["customer"], Value::Null);
    let (_, body) = s.gql(
        Some(&admin),
        "query($id: ID!) { customer(id: $id) { erased email firstName lastName emailOptIn consentHistory { source emailOptIn } } }",
        json!({"id": pseudonym}),
    );
    let c = &body["data"]["customer"];
    assert_eq!(c["erased"], true, "{body}");
    assert_eq!(
        (&c["email"], &c["firstName"], &c["lastName"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(c["emailOptIn"], false);
    assert_eq!(
        c["consentHistory"].as_array().unwrap().last().unwrap()["source"],
        "erasure"
    );
    // Still counted.
    let (_, body) = s.gql(Some(&admin), "{ customers { totalCount } }", json!({}));
    assert_eq!(body["data"]["customers"]["totalCount"], 2);
    // Two erase entries under the pseudonym, none naming the former id.
    let (_, body) = s.gql(Some(&admin), AUDIT, json!({"c": pseudonym, "a": "ERASE"}));
    assert_eq!(body["data"]["auditLog"]["totalCount"], 2, "{body}");
    let (_, body) = s.gql(Some(&admin), AUDIT, json!({"c": "c1"}));
    assert_eq!(body["data"]["auditLog"]["totalCount"], 0, "{body}");
    // Consent cannot be given back to an erased customer.
    let (_, body) = s.gql(
        Some(&admin),
        "mutation($id: ID!) { setEmailOptIn(id: $id, optIn: true) { id } }",
        json!({"id": pseudonym}),
    );
    assert_eq!(error_codes(&body), ["BAD_USER_INPUT"], "{body}");
}

fn reading_personal_fields_is_audited_and_reading_scores_is_not(backend: Backend) {
    let s = TestServer::start(backend);
    seed_customers(&s.db.url, PEOPLE);
    let viewer = s.token("vera", Role::Viewer);
    let admin = s.token("ada", Role::Admin);
    let (_, body) = s.gql(
        Some(&viewer),
        "query Scores { customers { edges { node { id score { clv12m } } } } }",
        json!({}),
    );
    assert!(body.get("errors").is_none(), "{body}");
    let (_, body) = s.gql(Some(&admin), AUDIT, json!({"a": "READ_PERSONAL"}));
    assert_eq!(body["data"]["auditLog"]["totalCount"], 0, "{body}");
    let (_, body) = s.gql(
        Some(&viewer),
        "query Emails { customers { edges { node { id email } } } }",
        json!({}),
    );
    assert!(body.get("errors").is_none(), "{body}");
    let (_, body) = s.gql(Some(&admin), AUDIT, json!({"a": "READ_PERSONAL"}));
    let log = &body["data"]["auditLog"];
    assert_eq!(log["totalCount"], 1, "{body}");
    assert_eq!(
        log["edges"][0]["node"],
        json!({"actor": "vera", "action": "READ_PERSONAL", "customerIds": ["c1", "c2"], "detail": "Emails"})
    );
}
