//! Times the BG/NBD fit alone on the (frequency, recency, T) of a scoring
//! run, so the optimiser can be measured without the rest of `score`.
//! `ops/bench/score.sh` measures the fit inside the real job; this is for
//! working on the fit itself.
//!
//! Usage: fit_bench SCORES_DIR [REPEATS]
//! (SCORES_DIR is a warehouse's `scores/as_of=YYYY-MM-DD`.)

use std::path::PathBuf;
use std::time::Instant;

use cvm_etl::models::bgnbd;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: fit_bench SCORES_DIR [REPEATS]"))?,
    );
    let repeats: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let scores = cvm_etl::warehouse::scores::read(&dir)?;
    let histories: Vec<(f64, f64, f64)> = scores
        .iter()
        .filter(|s| s.orders > 0)
        .map(|s| (f64::from(s.frequency), s.recency, s.t))
        .collect();
    println!("{} customers", scores.len());
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        // Timed like the score job's fit_ms: collapsing plus fitting.
        let started = Instant::now();
        let rows = bgnbd::Histories::collapse(&histories)?;
        let collapsed = started.elapsed().as_secs_f64();
        let fit = bgnbd::fit_histories(&rows);
        let secs = started.elapsed().as_secs_f64();
        best = best.min(secs);
        println!(
            "collapse + fit {:.3} s (collapse {:.3} s, {} distinct rows), {} iterations, converged {}, params {:?}, log-likelihood {:?}",
            secs,
            collapsed,
            rows.len(),
            fit.iterations,
            fit.converged,
            fit.params,
            fit.log_likelihood
        );
    }
    println!("best of {repeats}: {best:.3} s");
    Ok(())
}
