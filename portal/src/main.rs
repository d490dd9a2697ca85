//! `cvm-portal`: placeholder binary until the portal issues land.

fn main() {
    println!(
        "cvm-portal {} (the portal is not built yet)",
        cvm_portal::VERSION
    );
}
