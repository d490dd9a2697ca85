//! The two model fits every scoring date needs: BG/NBD on the purchasers and
//! Gamma-Gamma on the repeat buyers, with their manifest records.

use std::time::Instant;

use super::ledger::Facts;
use crate::manifest::score::ModelReport;
use crate::models::bgnbd::{self, BgNbdParams};
use crate::models::gammagamma::{self, GammaGammaParams};
use crate::models::optimize::FitReport;

/// Both model fits and their manifest records.
pub(crate) struct Fits {
    /// BG/NBD parameters, when it converged.
    pub(crate) bg: Option<BgNbdParams>,
    /// Gamma-Gamma parameters, when it converged.
    pub(crate) gg: Option<GammaGammaParams>,
    /// BG/NBD's manifest record.
    pub(crate) bg_report: ModelReport,
    /// Gamma-Gamma's manifest record.
    pub(crate) gg_report: ModelReport,
}

/// Fits BG/NBD on the purchasers and Gamma-Gamma on the repeat buyers with a positive spend.
pub(crate) fn fit_models(facts: &[Facts]) -> Fits {
    let fit_started = Instant::now();
    let histories: Vec<_> = facts.iter().filter_map(Facts::xtt).collect();
    let (bg, bg_distinct) = bgnbd::fit_customers(&histories);
    let bg_ms = fit_started.elapsed().as_millis() as u64;
    let fit_started = Instant::now();
    let gg_rows = gammagamma::collapse_rows(
        facts
            .iter()
            .filter_map(|f| f.summary)
            .filter(|s| s.frequency > 0 && s.monetary_avg > 0.0)
            .map(|s| (s.frequency as f64, s.monetary_avg)),
    );
    let gg = gammagamma::fit(&gg_rows);
    let gg_ms = fit_started.elapsed().as_millis() as u64;
    if !bg.converged {
        tracing::warn!(reason = %bg.reason_text(), "BG/NBD could not be fitted: model columns are null");
    }
    if !gg.converged {
        tracing::warn!(reason = %gg.reason_text(), "Gamma-Gamma could not be fitted: value columns are null");
    }
    Fits {
        bg: bg.params,
        gg: gg.params,
        bg_report: model_report(
            &bg,
            |p| vec![("r", p.r), ("alpha", p.alpha), ("a", p.a), ("b", p.b)],
            bg_distinct,
            bg_ms,
        ),
        gg_report: model_report(
            &gg,
            |p| vec![("p", p.p), ("q", p.q), ("v", p.v)],
            gg_rows.len(),
            gg_ms,
        ),
    }
}

/// A fit's manifest record, with `params` named.
fn model_report<P>(
    r: &FitReport<P>,
    params: impl Fn(&P) -> Vec<(&'static str, f64)>,
    rows: usize,
    ms: u64,
) -> ModelReport {
    ModelReport {
        params: r
            .params
            .as_ref()
            .map(|p| {
                params(p)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default(),
        log_likelihood: r.log_likelihood,
        customers: r.n_customers,
        distinct_rows: rows,
        iterations: r.iterations,
        converged: r.converged,
        reason: r.reason.as_ref().map(ToString::to_string),
        fit_ms: ms,
    }
}
