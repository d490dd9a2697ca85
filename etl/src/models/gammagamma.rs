//! Gamma-Gamma spend model: Fader & Hardie (2013), "The Gamma-Gamma model of
//! monetary value" (note 025), after Colombo & Jiang (1999). A customer's
//! transaction values are Gamma(p, nu) with nu ~ Gamma(q, v); the likelihood of
//! the mean spend m over x transactions is that of the note's eq. (1a).

use std::collections::HashMap;

use statrs::function::gamma::{digamma, ln_gamma};

use super::optimize::{FitError, FitReport, Tolerances, bfgs, minimize_with_fallback};

/// One weighted observation: `weight` customers with `frequency` repeat occasions
/// of mean value `monetary_avg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRow {
    /// x: number of repeat occasions the mean is taken over.
    pub frequency: f64,
    /// m: mean value of those occasions.
    pub monetary_avg: f64,
    /// Number of customers with exactly this (x, m).
    pub weight: f64,
}

/// Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGammaParams {
    /// Shape of the per-transaction Gamma.
    pub p: f64,
    /// Shape of the Gamma heterogeneity of the scale nu.
    pub q: f64,
    /// Rate of the Gamma heterogeneity of the scale nu.
    pub v: f64,
}

/// Collapses (frequency, monetary_avg) pairs into weighted rows (bit-exact keys),
/// sorted so that the fit is deterministic.
pub fn collapse_rows(rows: impl IntoIterator<Item = (f64, f64)>) -> Vec<SpendRow> {
    let mut counts: HashMap<(u64, u64), f64> = HashMap::new();
    for (x, m) in rows {
        *counts.entry((x.to_bits(), m.to_bits())).or_insert(0.0) += 1.0;
    }
    let mut out: Vec<SpendRow> = counts
        .into_iter()
        .map(|((x, m), w)| SpendRow {
            frequency: f64::from_bits(x),
            monetary_avg: f64::from_bits(m),
            weight: w,
        })
        .collect();
    out.sort_unstable_by(|p, q| {
        p.frequency
            .total_cmp(&q.frequency)
            .then(p.monetary_avg.total_cmp(&q.monetary_avg))
    });
    out
}

/// Whether a row can enter the fit: the model needs x > 0 and m > 0 (zero or
/// negative spend has no Gamma density), both finite, with a positive weight.
fn usable(row: &SpendRow) -> bool {
    row.frequency.is_finite()
        && row.frequency > 0.0
        && row.monetary_avg.is_finite()
        && row.monetary_avg > 0.0
        && row.weight.is_finite()
        && row.weight > 0.0
}

#[derive(Debug, Clone, Copy)]
struct Row {
    xi: u32,
    x: f64,
    m: f64,
    ln_m: f64,
    ln_x: f64,
    w: f64,
}

#[derive(Debug)]
struct Prepared {
    xs: Vec<f64>,
    rows: Vec<Row>,
    total_weight: f64,
    mean_m: f64,
}

fn prepare(rows: &[SpendRow]) -> Prepared {
    let kept: Vec<&SpendRow> = rows.iter().filter(|r| usable(r)).collect();
    let mut xs: Vec<f64> = kept.iter().map(|r| r.frequency).collect();
    xs.sort_unstable_by(f64::total_cmp);
    xs.dedup();
    let rows = kept
        .iter()
        .map(|r| Row {
            xi: xs.partition_point(|u| *u < r.frequency) as u32,
            x: r.frequency,
            m: r.monetary_avg,
            ln_m: r.monetary_avg.ln(),
            ln_x: r.frequency.ln(),
            w: r.weight,
        })
        .collect::<Vec<_>>();
    let total_weight = rows.iter().map(|r| r.w).sum::<f64>();
    let mean_m = rows.iter().map(|r| r.w * r.m).sum::<f64>() / total_weight.max(f64::MIN_POSITIVE);
    Prepared {
        xs,
        rows,
        total_weight,
        mean_m,
    }
}

impl Prepared {
    /// Total log-likelihood and gradient with respect to (p, q, v).
    fn ll_grad(&self, prm: &GammaGammaParams) -> (f64, [f64; 3]) {
        let GammaGammaParams { p, q, v } = *prm;
        // Gamma-function terms depend on x only: evaluate once per distinct x.
        let per_x: Vec<(f64, f64, f64)> = self
            .xs
            .iter()
            .map(|&x| {
                let px = p * x;
                (
                    ln_gamma(px + q) - ln_gamma(px),
                    digamma(px + q) - digamma(px),
                    digamma(px + q),
                )
            })
            .collect();
        let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
        let (mut ll, mut g) = (0.0, [0.0; 3]);
        for row in &self.rows {
            let (lg, dpx, dq_part) = per_x[row.xi as usize];
            let px = p * row.x;
            let denom = row.x * row.m + v;
            let ln_denom = denom.ln();
            let w = row.w;
            ll += w
                * (lg - lg_q + q * ln_v + (px - 1.0) * row.ln_m + px * row.ln_x
                    - (px + q) * ln_denom);
            g[0] += w * row.x * (dpx + row.ln_m + row.ln_x - ln_denom);
            g[1] += w * (dq_part - dg_q + ln_v - ln_denom);
            g[2] += w * (q / v - (px + q) / denom);
        }
        (ll, g)
    }
}

impl GammaGammaParams {
    fn from_log(l: &[f64; 3]) -> Self {
        Self {
            p: l[0].exp(),
            q: l[1].exp(),
            v: l[2].exp(),
        }
    }

    fn is_valid(&self) -> bool {
        [self.p, self.q, self.v]
            .iter()
            .all(|t| t.is_finite() && *t > 0.0)
    }

    /// Log-likelihood of one customer's mean spend `m` over `x` occasions (note 025 eq. 1a).
    pub fn log_likelihood(&self, x: f64, m: f64) -> f64 {
        let GammaGammaParams { p, q, v } = *self;
        let px = p * x;
        ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
            + q * v.ln()
            + (px - 1.0) * m.ln()
            + px * x.ln()
            - (px + q) * (x * m + v).ln()
    }

    /// Population mean spend E[Z] = p v / (q - 1); None when q <= 1 (infinite mean).
    pub fn population_mean(&self) -> Option<f64> {
        (self.q > 1.0).then(|| self.p * self.v / (self.q - 1.0))
    }

    /// Conditional expected average value E[Z | x, m] (note 025 eq. 5): a weighted
    /// mean of the population mean and the customer's own mean `m`; the population
    /// mean when x = 0. None when q <= 1.
    pub fn conditional_expected_value(&self, x: f64, m: f64) -> Option<f64> {
        let population = self.population_mean()?;
        if x <= 0.0 {
            return Some(population);
        }
        let weight = self.p * x / (self.p * x + self.q - 1.0);
        Some((1.0 - weight) * population + weight * m)
    }
}

/// Largest |log-parameter| accepted as an interior maximum.
const LOG_BOUND: f64 = 30.0;

/// Fits the Gamma-Gamma model on customers with x > 0 and m > 0 (other rows are
/// excluded, not errors: one-time buyers and zero-spend customers carry no spend
/// information). `n_customers` of the report counts the rows actually used.
pub fn fit(rows: &[SpendRow]) -> FitReport<GammaGammaParams> {
    let data = prepare(rows);
    let n = data.total_weight;
    if data.rows.is_empty() || n <= 0.0 {
        return FitReport::failed(0.0, 0, FitError::NoCustomers);
    }
    let data = &data;
    let objective = |l: &[f64; 3], grad: &mut [f64; 3]| -> f64 {
        let prm = GammaGammaParams::from_log(l);
        if !prm.is_valid() || l.iter().any(|t| t.abs() > 2.0 * LOG_BOUND) {
            return f64::NAN;
        }
        let (ll, g) = data.ll_grad(&prm);
        let natural = [prm.p, prm.q, prm.v];
        for i in 0..3 {
            grad[i] = -g[i] * natural[i] / n;
        }
        -ll / n
    };
    // Start near the usual shapes with v set so that the population mean is the
    // observed mean (p v / (q - 1) = mean m).
    let m_ln = data.mean_m.max(1e-12).ln();
    let starts = [
        [(5.0f64).ln(), (3.0f64).ln(), m_ln - (2.5f64).ln()],
        [0.0, (2.0f64).ln(), m_ln],
        [0.1, 0.1, 0.1],
    ];
    let (result, iterations) = minimize_with_fallback(
        objective,
        |x0| bfgs(objective, x0, Tolerances::default()),
        &starts,
    );
    let m = match result {
        Ok(m) => m,
        Err(e) => return FitReport::failed(n, iterations, e),
    };
    let prm = GammaGammaParams::from_log(&m.x);
    if !prm.is_valid() || m.x.iter().any(|t| t.abs() > LOG_BOUND) {
        let detail = format!("p={} q={} v={}", prm.p, prm.q, prm.v);
        return FitReport::failed(n, iterations, FitError::Diverged(detail));
    }
    let (ll, _) = data.ll_grad(&prm);
    FitReport {
        params: Some(prm),
        log_likelihood: Some(ll),
        n_customers: n,
        iterations,
        converged: true,
        reason: None,
    }
}
