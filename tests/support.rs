//! What the end-to-end tests share: the two binaries run as processes (as
//! cron and systemd run them), a portal on a free loopback port, and a
//! GraphQL client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The folder the workspace's binaries are built into (beside this test's own executable).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf()
}

/// The path of workspace binary `name`, built first when missing (a
/// `cargo test -p cvm-e2e` alone does not build other packages' binaries).
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--bin", name])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// Runs `cvm-etl` or `cvm-portal` with `args` and a clean environment of
/// settings (only `env` set); panics with its output unless it succeeds.
pub fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = command(bin, args, env).output().expect("the binary starts");
    assert!(
        out.status.success(),
        "{bin} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn command(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let env: Vec<(&str, &str)> = [("NO_COLOR", "1")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    cvm_shared::testing::command(binary(bin), args, &env)
}

/// Runs the demo (`cvm-etl demo`: a generated drop through the nightly job
/// into SQLite) with `customers` and `seed` in `dir`, and creates a marketer
/// token `name` on its database: (database URL, token).
pub fn demo_with_token(
    dir: &std::path::Path,
    customers: u32,
    seed: u32,
    name: &str,
) -> (String, String) {
    let db_url = format!("sqlite://{}", dir.join("cvm.db").display());
    let token = demo_on(dir, customers, seed, name, &db_url);
    (db_url, token)
}

/// [`demo_with_token`] into the database at `db_url` (SQLite or
/// PostgreSQL); returns the token.
pub fn demo_on(
    dir: &std::path::Path,
    customers: u32,
    seed: u32,
    name: &str,
    db_url: &str,
) -> String {
    let (customers, seed) = (customers.to_string(), seed.to_string());
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    run(
        "cvm-etl",
        &[
            "--quiet",
            "demo",
            "--dir",
            dir,
            "--customers",
            &customers,
            "--seed",
            &seed,
        ],
        &[("CVM_DATABASE_URL", db_url)],
    );
    let out = run(
        "cvm-portal",
        &[
            "token", "create", "--name", name, "--role", "marketer", "--db", db_url,
        ],
        &[],
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    stdout
        .lines()
        .last()
        .expect("the token line")
        .trim()
        .to_string()
}

/// A `cvm-portal serve` process on a free loopback port; killed on drop.
pub struct Portal {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::blocking::Client,
}

impl Portal {
    /// Starts the portal on `db_url` with `env` added, and waits until it listens.
    pub fn start(db_url: &str, env: &[(&str, &str)]) -> Portal {
        let mut all = vec![
            ("CVM_DATABASE_URL", db_url),
            ("CVM_PORTAL_SECRET", "e2e-secret-e2e-secret-e2e-secret-e2e"),
            ("CVM_PORTAL_BIND", "127.0.0.1:0"),
            ("CVM_PORTAL_RATE_LIMIT", "0"),
            ("CVM_LOG", "warn"),
        ];
        all.extend_from_slice(env);
        let mut child = command("cvm-portal", &["serve"], &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cvm-portal starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.trim().to_string();
                    }
                }
                _ => {
                    let status = child.wait();
                    panic!("cvm-portal serve exited before listening: {status:?}");
                }
            }
        };
        // Keep draining stdout so the portal never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        Portal {
            child,
            base,
            client,
        }
    }

    /// A GraphQL request with `token` as bearer if any; panics on any error in the response.
    pub fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut r = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let body: Value = r.send().expect("the portal answers").json().expect("JSON");
        assert!(body.get("errors").is_none(), "{query}: {body}");
        body["data"].clone()
    }

    /// POSTs the survey form of `url` (a `/s/{token}` link): (status, Location header).
    pub fn post_form(&self, url: &str, form: &str) -> (u16, Option<String>) {
        let r = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .expect("the portal answers");
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        (r.status().as_u16(), location)
    }

    /// GETs `url`: (status, body).
    pub fn get(&self, url: &str) -> (u16, String) {
        let r = self.client.get(url).send().expect("the portal answers");
        (r.status().as_u16(), r.text().unwrap_or_default())
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
