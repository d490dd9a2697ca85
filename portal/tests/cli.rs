//! `cvm-portal` through the binary: token management, the schema command,
//! refusals at start, and graceful shutdown with a request in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TestServer, error_codes};
use cvm_shared::db::testing::TestDb;
use cvm_shared::db::{Backend, DbConnection};
use diesel::prelude::*;
use serde_json::json;

cvm_shared::both_backends!(
    token_create_prints_the_token_last_and_list_never_shows_it,
    a_token_revoked_through_the_binary_is_refused_by_the_server,
    serve_and_token_refuse_a_database_migrated_by_a_newer_binary,
);

fn portal() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvm-portal"));
    c.env_remove("CVM_CONFIG")
        .env_remove("CVM_DATABASE_URL")
        .env_remove("CVM_PORTAL_SECRET")
        .env_remove("CVM_PORTAL_BIND")
        .env("CVM_LOG", "info");
    c
}

fn run(args: &[&str]) -> Output {
    portal().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn token_create_prints_the_token_last_and_list_never_shows_it(backend: Backend) {
    let db = TestDb::new(backend);
    // A new database: create migrates it first.
    let o = run(&[
        "token", "create", "--name", "Ada L", "--role", "marketer", "--db", &db.url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let token = out.lines().last().unwrap();
    assert!(cvm_portal::tokens::looks_like_staff_token(token), "{out}");
    assert!(!stderr(&o).contains(token), "the token is on stdout only");
    let o = run(&["token", "list", "--db", &db.url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(
        list.contains("Ada L") && list.contains("marketer") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(token) && !list.contains(&cvm_portal::tokens::hash_token(token)));
    let o = run(&[
        "token", "create", "--name", "x", "--role", "owner", "--db", &db.url,
    ]);
    assert_eq!(o.status.code(), Some(2), "an unknown role is a usage error");
    assert!(
        stderr(&o).contains("viewer marketer admin"),
        "{}",
        stderr(&o)
    );
}

fn a_token_revoked_through_the_binary_is_refused_by_the_server(backend: Backend) {
    let db = TestDb::new(backend);
    let o = run(&[
        "token", "create", "--name", "ada", "--role", "admin", "--db", &db.url,
    ]);
    let token = stdout(&o).lines().last().unwrap().to_string();
    let url = db.url.clone();
    let s = TestServer::on(db);
    let me = "{ me { name } }";
    assert_eq!(
        s.gql(Some(&token), me, json!({})).1["data"]["me"]["name"],
        "ada"
    );
    let o = run(&["token", "revoke", "--name", "ada", "--db", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (status, body) = s.gql(Some(&token), me, json!({}));
    assert_eq!(
        (status, error_codes(&body)),
        (401, vec!["UNAUTHENTICATED".to_string()])
    );
    let o = run(&["token", "revoke", "--name", "ada", "--db", &url]);
    assert_eq!(o.status.code(), Some(2), "nothing left to revoke");
    let list = stdout(&run(&["token", "list", "--db", &url]));
    assert!(list.contains("revoked"), "{list}");
}

fn serve_and_token_refuse_a_database_migrated_by_a_newer_binary(backend: Backend) {
    let db = TestDb::new(backend);
    let mut c = DbConnection::connect_for_write(&db.url).unwrap();
    cvm_shared::with_backend!(&mut c, c => diesel::sql_query(
        "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000000')"
    ).execute(c))
    .unwrap();
    drop(c);
    let o = portal()
        .args(["serve", "--bind", "127.0.0.1:0", "--db", &db.url])
        .env("CVM_PORTAL_SECRET", "s".repeat(32))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("29990101000000"),
        "{err}"
    );
    let o = run(&[
        "token", "create", "--name", "a", "--role", "admin", "--db", &db.url,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "no token for a refused database");
}

#[test]
fn the_committed_schema_is_what_the_schema_command_prints() {
    let o = run(&["schema"]);
    assert!(o.status.success());
    let committed = include_str!("../schema.graphql");
    assert!(
        stdout(&o) == committed,
        "portal/schema.graphql is stale: run `cargo run -p cvm-portal -- schema > portal/schema.graphql` and review the diff"
    );
}

#[test]
fn serve_without_a_secret_is_a_usage_error_naming_the_variable() {
    let db = TestDb::sqlite();
    let o = run(&["serve", "--bind", "127.0.0.1:0", "--db", &db.url]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("CVM_PORTAL_SECRET") && err.lines().count() == 1,
        "{err}"
    );
    let o = portal()
        .args(["serve", "--bind", "127.0.0.1:0", "--db", &db.url])
        .env("CVM_PORTAL_SECRET", "too short")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !stderr(&o).contains("too short"),
        "the secret is never echoed"
    );
}

/// A `serve` process, its address, and its stderr lines as they come.
struct Serving {
    child: Child,
    base: String,
    logs: mpsc::Receiver<String>,
}

fn spawn_serve(db_url: &str, extra: &[&str], secret: Option<&str>) -> Serving {
    let mut cmd = portal();
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--db", db_url])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = secret {
        cmd.env("CVM_PORTAL_SECRET", s);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, logs) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let out = BufReader::new(child.stdout.take().unwrap());
    let line = out
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .expect("serve printed its address");
    Serving {
        child,
        base: line.trim_start_matches("listening on ").to_string(),
        logs,
    }
}

/// Waits (bounded) for a stderr line containing `needle`.
fn wait_for_log(logs: &mpsc::Receiver<String>, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match logs.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn dev_mode_generates_a_secret_and_serves() {
    let db = TestDb::sqlite();
    let mut s = spawn_serve(&db.url, &["--dev"], None);
    let body = reqwest::blocking::get(format!("{}/healthz", s.base))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "ok\n");
    sigterm(&s.child);
    assert!(s.child.wait().unwrap().success());
    let logs: Vec<String> = s.logs.try_iter().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("dev mode: generated CVM_PORTAL_SECRET=")),
        "{logs:?}"
    );
}

// PostgreSQL only: ignored like the other PostgreSQL tests when no server
// is configured (see `both_backends!`).
cvm_shared::__postgres_test! {
    /// SIGTERM with a request in flight: the server stops accepting, the
    /// request still gets its full answer, then the process exits 0. The request
    /// is held in flight by a table lock on PostgreSQL, observed in pg_locks.
    #[test]
    fn graceful_shutdown_finishes_an_in_flight_request() {
        let db = TestDb::postgres();
        let token = common::create_token(
            &db.url,
            "ada",
            cvm_shared::db::models::api_tokens::Role::Admin,
        );
        let mut s = spawn_serve(&db.url, &[], Some(&"k".repeat(32)));
        let mut lock = PgConnection::establish(&db.url).unwrap();
        use diesel::connection::SimpleConnection;
        lock.batch_execute("BEGIN; LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE;")
            .unwrap();
        let (base, t) = (s.base.clone(), token.clone());
        let request = std::thread::spawn(move || {
            let r = reqwest::blocking::Client::new()
                .post(format!("{base}/graphql"))
                .bearer_auth(t)
                .json(&json!({"query": "{ me { name } }"}))
                .send()
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
        });
        // The request is in flight once its query waits for the lock.
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut watch = PgConnection::establish(&db.url).unwrap();
        let waiting = (0..600).any(|_| {
            let c: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'api_tokens'::regclass",
            )
            .get_result(&mut watch)
            .unwrap();
            c.n > 0 || {
                std::thread::sleep(Duration::from_millis(50));
                false
            }
        });
        assert!(waiting, "the request never reached the database");
        sigterm(&s.child);
        assert!(
            wait_for_log(&s.logs, "graceful shutdown"),
            "no shutdown started"
        );
        // Time for a server that drops in-flight requests at shutdown to do so
        // (ordering only: nothing is asserted about durations).
        std::thread::sleep(Duration::from_secs(1));
        let refused = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).is_err();
        assert!(refused, "no new connections once shutting down");
        lock.batch_execute("COMMIT;").unwrap();
        let (status, body) = request.join().unwrap();
        assert_eq!(
            (status, &body),
            (200, &json!({"data": {"me": {"name": "ada"}}}))
        );
        assert!(s.child.wait().unwrap().success());
    }
}
