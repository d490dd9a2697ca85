//! What the tests of every crate share outside the database (never compiled
//! into a release binary).

use std::ffi::OsStr;
use std::process::Command;

/// `program args` with none of the caller's `CVM_*` variables, then `env` in
/// order (a later pair wins): a test's run sees only the settings it gives.
pub fn command(program: impl AsRef<OsStr>, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CVM_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}
