//! What the ETL's end-to-end tests share.

use std::process::Output;

/// `cvm-etl ARGS` with none of the caller's `CVM_*` variables, errors-only
/// logs, then `env` in order (a later pair wins).
pub fn cvm_etl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let env: Vec<(&str, &str)> = [("CVM_LOG", "error")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    cvm_shared::testing::command(env!("CARGO_BIN_EXE_cvm-etl"), args, &env)
        .output()
        .expect("cvm-etl runs")
}
