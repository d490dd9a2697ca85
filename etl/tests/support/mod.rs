//! What the ETL's end-to-end tests share.

use std::process::{Command, Output};

/// `cvm-etl ARGS` with none of the caller's `CVM_*` variables, errors-only
/// logs, then `env` in order (a later pair wins).
pub fn cvm_etl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cvm-etl"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CVM_") {
            c.env_remove(k);
        }
    }
    c.env("CVM_LOG", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cvm-etl runs")
}
