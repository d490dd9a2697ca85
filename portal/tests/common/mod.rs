//! The portal's test harness: a real server on a loopback port (port 0, the
//! bound address read back) over a throw-away database, driven by a real
//! HTTP client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use chrono::Utc;
use cvm_portal::mail::config::MailConfig;
use cvm_portal::server::{self, ServeConfig};
use cvm_portal::tokens;
use cvm_shared::db::models::api_tokens::{self, NewApiToken, Role};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection, DbUrl};
use serde_json::{Value, json};

pub mod smtp;

/// The key the test servers sign links with.
pub const SECRET: &[u8; 32] = b"test-secret-test-secret-test-sec";
/// The test servers' `CVM_PRIVACY_KEY`.
pub const PRIVACY_KEY: &[u8; 32] = b"test-privacy-key-test-privacy-ke";

/// A portal serving a throw-away database; stopped on drop.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The database (dropped after the server stops).
    pub db: TestDb,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    client: reqwest::blocking::Client,
}

impl TestServer {
    /// A server on a fresh database of `backend`.
    pub fn start(backend: Backend) -> TestServer {
        TestServer::on(TestDb::new(backend))
    }

    /// A server on `db` (migrated by the server's start), without a rate limit.
    pub fn on(db: TestDb) -> TestServer {
        TestServer::limited(
            db,
            server::Limits {
                rate_limit: 0.0,
                ..server::Limits::default()
            },
        )
    }

    /// A server on `db` with `limits`, no campaign sender.
    pub fn limited(db: TestDb, limits: server::Limits) -> TestServer {
        TestServer::configured(
            db,
            limits,
            MailConfig::files(std::env::temp_dir().join("cvm-test-outbox")),
            false,
        )
    }

    /// A server on `db` running the campaign sender with `mail`.
    pub fn sending(db: TestDb, mail: MailConfig) -> TestServer {
        TestServer::configured(
            db,
            server::Limits {
                rate_limit: 0.0,
                ..server::Limits::default()
            },
            mail,
            true,
        )
    }

    /// A server on `db` with `limits`, `mail`, and the sender if `sender`.
    pub fn configured(
        db: TestDb,
        limits: server::Limits,
        mail: MailConfig,
        sender: bool,
    ) -> TestServer {
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, ServerHandle)>();
        let url = db.url.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let running = server::start(ServeConfig {
                    db_url: DbUrl::parse(&url).unwrap(),
                    bind: "127.0.0.1:0".parse().unwrap(),
                    public_url: "http://portal.test".into(),
                    secret: SECRET.to_vec(),
                    graphiql: true,
                    pool_size: 4,
                    workers: Some(1),
                    limits,
                    mail,
                    sender,
                    privacy: cvm_portal::graphql::privacy::PrivacyConfig {
                        key: Some(cvm_shared::privacy::PrivacyKey::new(PRIVACY_KEY).unwrap()),
                        warehouse: None,
                        export_dir: std::env::temp_dir()
                            .join(format!("cvm-portal-exports-{}", std::process::id())),
                    },
                })
                .unwrap();
                tx.send((running.addrs[0], running.server.handle()))
                    .unwrap();
                running.server.await.unwrap();
                if let Some(sender) = running.sender {
                    sender.stop();
                }
            })
        });
        let (addr, handle) = rx.recv().expect("the server started");
        TestServer {
            base: format!("http://{addr}"),
            db,
            handle,
            thread: Some(thread),
            client: reqwest::blocking::Client::new(),
        }
    }

    /// A new token of `role` for staff `name`, stored like `token create` does.
    pub fn token(&self, name: &str, role: Role) -> String {
        create_token(&self.db.url, name, role)
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// POSTs a GraphQL `query` with `variables`, with `token` as bearer if any:
    /// (HTTP status, JSON body).
    pub fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut r = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    /// The raw client, for requests the helpers do not cover.
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        actix_web::rt::System::new().block_on(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Stores a new staff token on the database at `url`; returns the token.
pub fn create_token(url: &str, name: &str, role: Role) -> String {
    let mut c = DbConnection::connect_for_write(url).unwrap();
    let issued = tokens::new_staff_token().unwrap();
    let row = NewApiToken {
        name,
        role,
        token_hash: &issued.hash,
        created_at: Utc::now().naive_utc(),
    };
    api_tokens::insert(&mut c, &row).unwrap();
    issued.token
}

/// The count of `reason` in a list of campaign exclusions (`{ reason count }`).
pub fn exclusion_count(exclusions: &Value, reason: &str) -> i64 {
    exclusions
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == reason)
        .unwrap_or_else(|| panic!("no exclusion {reason}: {exclusions}"))["count"]
        .as_i64()
        .unwrap()
}

/// The `extensions.code` of each error of a GraphQL response body.
pub fn error_codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A customer to seed: id, email, consent, active, 12-month CLV.
pub type Person<'a> = (&'a str, Option<&'a str>, bool, bool, f64);

/// 1 March 2024, midnight: when seeded rows were loaded.
pub fn day_one() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2024, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

/// Stores `people` as customers at risk, each scored (2 orders, 40.00 revenue, p_alive 0.3).
pub fn seed_customers(url: &str, people: &[Person<'_>]) {
    use cvm_shared::db::models::customers::{self, NewCustomer};
    use cvm_shared::db::models::scores::{self, NewScore};
    let t = day_one();
    let rows: Vec<NewCustomer<'_>> = people
        .iter()
        .map(|(id, email, opt_in, active, _)| NewCustomer {
            customer_id: id,
            is_guest: false,
            email: *email,
            phone: None,
            first_name: Some("<Ann>"),
            last_name: Some(id),
            country: Some("GB"),
            signup_date: None,
            birth_date: None,
            email_opt_in: *opt_in,
            consent_updated_at: Some(t),
            first_seen: Some(t),
            channels: "web".into(),
            active: *active,
            loaded_at: t,
        })
        .collect();
    let score_rows: Vec<NewScore<'_>> = people
        .iter()
        .map(|(id, _, _, _, clv)| NewScore {
            customer_id: id,
            as_of: t.date(),
            orders: 2,
            frequency: 1,
            recency: 10.0,
            t: 30.0,
            monetary_avg: 20.0,
            total_revenue: "40.00".into(),
            first_purchase: None,
            last_purchase: None,
            days_since_last_purchase: None,
            r_score: Some(1),
            f_score: Some(1),
            m_score: Some(1),
            rfm_segment: "At Risk",
            p_alive: Some(0.3),
            expected_purchases_90d: None,
            expected_purchases_365d: None,
            expected_avg_value: None,
            clv_12m: Some(*clv),
            churn_risk: Some(0.7),
            nps_last: None,
            nps_class: None,
            engagement_90d: 0,
            lifecycle_stage: Some("at_risk"),
            value_tier: Some("low"),
            loyalty_index: None,
            loaded_at: t,
        })
        .collect();
    let mut c = DbConnection::connect_for_write(url).unwrap();
    for part in rows.chunks(1000) {
        customers::upsert(&mut c, part).unwrap();
    }
    for part in score_rows.chunks(1000) {
        scores::upsert(&mut c, part).unwrap();
    }
}

/// Waits up to `secs` seconds for `done` to hold, polling; false if it never did.
pub fn wait_until(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// A `cvm-portal serve` child process (the real binary), killed on drop.
pub struct PortalProcess {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    child: std::process::Child,
    // Kept open: a closed pipe would fail the process's next print.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl PortalProcess {
    /// Starts `cvm-portal serve` on a free port with `env` (settings as
    /// environment variables) and waits until it listens.
    pub fn start(env: &[(&str, String)]) -> PortalProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cvm-portal"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env(
                "CVM_PORTAL_SECRET",
                String::from_utf8(SECRET.to_vec()).unwrap(),
            )
            .env("CVM_PORTAL_PUBLIC_URL", "http://portal.test")
            .env("CVM_PORTAL_RATE_LIMIT", "0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(stdout);
        stdout.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("cvm-portal serve did not start: {line:?}"))
            .to_string();
        PortalProcess {
            base,
            child,
            _stdout: stdout,
        }
    }

    /// POSTs a GraphQL `query` with `variables` as `token`: the JSON body.
    pub fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        reqwest::blocking::Client::new()
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PortalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
