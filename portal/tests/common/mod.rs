//! The portal's test harness: a real server on a loopback port (port 0, the
//! bound address read back) over a throw-away database, driven by a real
//! HTTP client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test binary uses a part

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use chrono::Utc;
use cvm_portal::server::{self, ServeConfig};
use cvm_portal::tokens;
use cvm_shared::db::models::api_tokens::{self, NewApiToken, Role};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection, DbUrl};
use serde_json::{Value, json};

/// The key the test servers sign links with.
pub const SECRET: &[u8; 32] = b"test-secret-test-secret-test-sec";

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

    /// A server on `db` with `limits`.
    pub fn limited(db: TestDb, limits: server::Limits) -> TestServer {
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
                    frequency_cap_days: 7,
                })
                .unwrap();
                tx.send((running.addrs[0], running.server.handle()))
                    .unwrap();
                running.server.await.unwrap();
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
