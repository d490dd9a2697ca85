//! Decides at build time whether the PostgreSQL variants of the database
//! tests can run (see `both_backends!` in `src/db/testing.rs`): built without
//! `CVM_TEST_POSTGRES_URL` and outside CI, they are compiled as ignored, so
//! `cargo test` reports them as ignored rather than as passed. Cargo re-runs
//! this (and rebuilds the tests) whenever either variable changes.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cvm_postgres_tests_ignored)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CVM_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=CI");
    if std::env::var_os("CVM_TEST_POSTGRES_URL").is_none() && std::env::var_os("CI").is_none() {
        println!("cargo::rustc-cfg=cvm_postgres_tests_ignored");
    }
}
