//! Times the drop generator (`cvm-etl generate`) alone, so its speed can be
//! measured without an ingest. A benchmark, not a test: it prints timings and
//! asserts nothing (the generator's output is checked by `generate::tests`).
//!
//! Usage: generate_bench [CUSTOMERS] [--gzip] [--out DIR]
//! (default 100000 customers into a temporary folder; `--out` keeps the drop).

use std::time::Instant;

use cvm_etl::generate::{GenerateOptions, generate};

fn main() -> anyhow::Result<()> {
    let mut customers = 100_000;
    let mut gzip = false;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--gzip" => gzip = true,
            "--out" => {
                out = Some(std::path::PathBuf::from(args.next().ok_or_else(|| {
                    anyhow::anyhow!("usage: generate_bench [CUSTOMERS] [--gzip] [--out DIR]")
                })?))
            }
            n => customers = n.parse()?,
        }
    }
    let tmp = tempfile::tempdir()?;
    let out = out.unwrap_or_else(|| tmp.path().to_path_buf());
    let started = Instant::now();
    let s = generate(
        &out,
        &GenerateOptions {
            customers,
            seed: 42,
            dirty_ratio: 0.01,
            gzip,
            ..GenerateOptions::default()
        },
    )?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{customers} customers: {} records in {} files, {secs:.2} s ({:.0} records/s, {} threads) into {}",
        s.records,
        s.files.len(),
        s.records as f64 / secs,
        rayon::current_num_threads(),
        out.display()
    );
    Ok(())
}
