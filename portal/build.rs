//! Decides at build time whether the survey page's browser test can run:
//! without Chromium (Debian's `chromium`, or `CVM_CHROMIUM`) and outside
//! CI it is compiled as ignored, so `cargo test` reports it as ignored
//! rather than as passed. In CI a missing Chromium fails the test.
//! Likewise the mail tests, which run a real SMTP server (Python's
//! `aiosmtpd`, `tests/smtp/sink.py`).

const CHROMIUM_NAMES: [&str; 2] = ["chromium", "chromium-browser"];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(cvm_browser_tests_ignored)");
    println!("cargo::rustc-check-cfg=cfg(cvm_smtp_tests_ignored)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CVM_CHROMIUM");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=PATH");
    for n in CHROMIUM_NAMES {
        println!("cargo::rerun-if-changed=/usr/bin/{n}");
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| CHROMIUM_NAMES.map(|n| dir.join(n)))
            .any(|p| p.is_file())
    });
    let found = std::env::var_os("CVM_CHROMIUM").is_some() || on_path;
    if !found && std::env::var_os("CI").is_none() {
        println!("cargo::rustc-cfg=cvm_browser_tests_ignored");
    }
    let smtp = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !smtp && std::env::var_os("CI").is_none() {
        println!("cargo::rustc-cfg=cvm_smtp_tests_ignored");
    }
}
