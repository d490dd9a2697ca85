//! Throw-away databases for tests of every crate: a SQLite file in a fresh
//! temporary folder, or a fresh PostgreSQL database on the server named by
//! `CVM_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432`).
//! Both are removed when the [`TestDb`] is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::{Backend, redact_url};

/// The environment variable naming the PostgreSQL server tests use.
pub const POSTGRES_ENV: &str = "CVM_TEST_POSTGRES_URL";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{nanos}-{n}", std::process::id());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

enum Cleanup {
    Dir(PathBuf),
    Database {
        admin_url: String,
        name: String,
    },
    /// Another value owns the database.
    None,
}

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    /// The URL to connect to (no password in test setups).
    pub url: String,
    /// Which backend it is.
    pub backend: Backend,
    cleanup: Cleanup,
}

impl TestDb {
    /// A fresh SQLite database file (not yet created) in a new temporary folder.
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("cvm-test-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        let url = format!("sqlite://{}", dir.join("cvm.db").display());
        TestDb {
            url,
            backend: Backend::Sqlite,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A fresh PostgreSQL database on the server named by
    /// `CVM_TEST_POSTGRES_URL`. Its tests are compiled as ignored when the
    /// variable is unset outside CI (see [`crate::both_backends`]), so this is
    /// reached without it only when they are asked for (`--ignored`) or in CI:
    /// then it fails, never silently passes.
    pub fn postgres() -> TestDb {
        let Ok(base) = std::env::var(POSTGRES_ENV) else {
            panic!(
                "{POSTGRES_ENV} is not set: the PostgreSQL tests cannot run; set it to a server such as postgres://postgres@127.0.0.1:5432 (.ci/run does)"
            );
        };
        let (server, query) = match base.split_once('?') {
            Some((s, q)) => (s.to_string(), format!("?{q}")),
            None => (base.clone(), String::new()),
        };
        // Keep scheme://authority, drop any database path.
        let server = match server.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => panic!(
                "{POSTGRES_ENV} is not a postgres:// URL: {}",
                redact_url(&base)
            ),
        };
        let name = format!("cvm_test_{}", unique_suffix());
        let admin_url = format!("{server}/postgres{query}");
        let mut admin = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
            panic!(
                "cannot reach the test server {}: {e}",
                redact_url(&admin_url)
            )
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            url: format!("{server}/{name}{query}"),
            backend: Backend::Postgres,
            cleanup: Cleanup::Database { admin_url, name },
        }
    }

    /// A second handle on this database that leaves it in place when dropped
    /// (for a second process on the same database; this value still owns it).
    pub fn borrowed(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            backend: self.backend,
            cleanup: Cleanup::None,
        }
    }

    /// A database of `backend`.
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => TestDb::postgres(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                // FORCE ends connections a failed test left open.
                if let Ok(mut admin) = PgConnection::establish(admin_url) {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
            Cleanup::None => {}
        }
    }
}

/// Declares `<name>::sqlite` and `<name>::postgres` tests that call
/// `name(backend)`, so every database test runs on both backends. Built
/// without `CVM_TEST_POSTGRES_URL` outside CI, the PostgreSQL ones are
/// `#[ignore]`d with the reason, so `cargo test` counts them as ignored, never
/// as passed (`build.rs` decides; it is re-run when either variable changes).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::db::Backend::Sqlite)
            }
            $crate::__postgres_test! {
                #[test]
                fn postgres() {
                    super::$name($crate::db::Backend::Postgres)
                }
            }
        }
    )*};
}

/// A PostgreSQL test, ignored: no server to run it against (see `build.rs`).
#[cfg(cvm_postgres_tests_ignored)]
#[doc(hidden)]
#[macro_export]
macro_rules! __postgres_test {
    ($($test:tt)*) => {
        #[ignore = "CVM_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against"]
        $($test)*
    };
}

/// A PostgreSQL test, run: a server is named (or CI requires one).
#[cfg(not(cvm_postgres_tests_ignored))]
#[doc(hidden)]
#[macro_export]
macro_rules! __postgres_test {
    ($($test:tt)*) => {
        $($test)*
    };
}
