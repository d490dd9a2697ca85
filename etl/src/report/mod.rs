//! Human reports of the runs: `runs/<run_id>/report.html`, one self-contained
//! page (inline CSS and SVG charts, no script, no network) that people read
//! instead of the manifest.

mod charts;
pub mod html;

use std::collections::BTreeMap;

use crate::manifest::evaluate::EvaluateManifest;
use crate::manifest::score::{ModelReport, ScoreManifest};
use crate::models::rfm::{LifecycleStage, RfmSegment, ValueTier};
use crate::warehouse::ScoreRow;
use charts::{BLUE, LineAxes, ORANGE, Series};
use html::{Cell, Page, figure, table};

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The chart library failed.
    #[error("chart: {0}")]
    Chart(String),
}

impl ReportError {
    fn chart(e: impl std::fmt::Display) -> ReportError {
        ReportError::Chart(e.to_string())
    }
}

/// Segments in the order of the contract's rule table, best first.
const SEGMENTS: [RfmSegment; 11] = [
    RfmSegment::Champions,
    RfmSegment::LoyalCustomers,
    RfmSegment::PotentialLoyalists,
    RfmSegment::NewCustomers,
    RfmSegment::Promising,
    RfmSegment::NeedAttention,
    RfmSegment::AboutToSleep,
    RfmSegment::CannotLoseThem,
    RfmSegment::AtRisk,
    RfmSegment::Hibernating,
    RfmSegment::Prospect,
];

const STAGES: [LifecycleStage; 6] = [
    LifecycleStage::Prospect,
    LifecycleStage::New,
    LifecycleStage::Active,
    LifecycleStage::Loyal,
    LifecycleStage::AtRisk,
    LifecycleStage::Churned,
];

const TIERS: [ValueTier; 4] = [
    ValueTier::High,
    ValueTier::Medium,
    ValueTier::Low,
    ValueTier::None,
];

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn money(v: f64) -> String {
    let sign = if v < 0.0 { "-" } else { "" };
    format!("{sign}{}", thousands(v.abs().round() as u64))
}

/// Counts in a fixed order, then any other label the manifest holds (`null` shown as `label_null`).
fn ordered(counts: &BTreeMap<String, u64>, order: &[&str], label_null: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = order
        .iter()
        .map(|k| (k.to_string(), counts.get(*k).copied().unwrap_or(0)))
        .collect();
    for (k, v) in counts {
        if !order.contains(&k.as_str()) {
            out.push((
                if k == "null" {
                    label_null.to_string()
                } else {
                    k.clone()
                },
                *v,
            ));
        }
    }
    out
}

fn models_table(models: &[(&str, &ModelReport)]) -> String {
    let rows: Vec<Vec<Cell>> = models
        .iter()
        .map(|(name, r)| {
            let params: Vec<String> = r
                .params
                .iter()
                .map(|(k, v)| format!("{k} = {v:.4}"))
                .collect();
            vec![
                Cell::Text(name.to_string()),
                Cell::Text(if params.is_empty() {
                    "-".into()
                } else {
                    params.join(", ")
                }),
                Cell::Num(r.log_likelihood.map_or("-".into(), |l| format!("{l:.2}"))),
                Cell::Num(thousands(r.customers.round() as u64)),
                Cell::Num(thousands(r.distinct_rows as u64)),
                Cell::Num(r.iterations.to_string()),
                Cell::Status(
                    if r.converged {
                        "converged".into()
                    } else {
                        format!(
                            "not fitted: {}",
                            r.reason.as_deref().unwrap_or("unknown reason")
                        )
                    },
                    r.converged,
                ),
                Cell::Num(r.fit_ms.to_string()),
            ]
        })
        .collect();
    table(
        &[
            "model",
            "parameters",
            "#log-likelihood",
            "#customers",
            "#distinct rows",
            "#iterations",
            "status",
            "#fit ms",
        ],
        &rows,
    )
}

/// The value at quantile `q` of sorted values (nearest rank below).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).floor() as usize]
}

/// Equal-width bins from 0 (or the minimum, if negative) to the 99th percentile;
/// returns the bins and how many values lie above the last one.
fn clv_bins(sorted: &[f64], bins: usize) -> (Vec<(f64, f64, u64)>, u64) {
    let lo = sorted.first().copied().unwrap_or(0.0).min(0.0);
    let p99 = quantile(sorted, 0.99);
    let hi = if p99 > lo { p99 } else { lo + 1.0 };
    let width = (hi - lo) / bins as f64;
    let mut out: Vec<(f64, f64, u64)> = (0..bins)
        .map(|i| (lo + i as f64 * width, lo + (i + 1) as f64 * width, 0))
        .collect();
    let mut above = 0;
    for v in sorted {
        if *v > hi {
            above += 1;
        } else {
            let i = (((v - lo) / width) as usize).min(bins - 1);
            out[i].2 += 1;
        }
    }
    (out, above)
}

const FREQ_BUCKETS: [(u32, u32, &str); 7] = [
    (0, 0, "0"),
    (1, 1, "1"),
    (2, 2, "2"),
    (3, 3, "3"),
    (4, 5, "4-5"),
    (6, 9, "6-9"),
    (10, u32::MAX, "10+"),
];
const RECENCY_BUCKETS: [(i32, i32, &str); 6] = [
    (i32::MIN, 30, "0-30"),
    (31, 90, "31-90"),
    (91, 180, "91-180"),
    (181, 365, "181-365"),
    (366, 730, "366-730"),
    (731, i32::MAX, "731+"),
];

/// Column labels, row labels and cells (mean, customers) of a heatmap.
type Grid = (Vec<String>, Vec<String>, Vec<Vec<Option<(f64, u64)>>>);

/// Mean P(alive) by repeat purchases (rows) and days since the last purchase
/// (columns); columns without customers are dropped.
fn p_alive_grid(rows: &[ScoreRow]) -> Grid {
    let mut sums = vec![vec![(0.0f64, 0u64); RECENCY_BUCKETS.len()]; FREQ_BUCKETS.len()];
    for r in rows {
        let (Some(p), Some(days)) = (r.p_alive, r.days_since_last_purchase) else {
            continue;
        };
        let f = FREQ_BUCKETS
            .iter()
            .position(|b| r.frequency >= b.0 && r.frequency <= b.1);
        let d = RECENCY_BUCKETS
            .iter()
            .position(|b| days >= b.0 && days <= b.1);
        if let (Some(f), Some(d)) = (f, d) {
            sums[f][d].0 += p;
            sums[f][d].1 += 1;
        }
    }
    let used: Vec<usize> = (0..RECENCY_BUCKETS.len())
        .filter(|&d| sums.iter().any(|r| r[d].1 > 0))
        .collect();
    let cols = used
        .iter()
        .map(|&d| RECENCY_BUCKETS[d].2.to_string())
        .collect();
    let rows_l = FREQ_BUCKETS.iter().map(|b| b.2.to_string()).collect();
    let cells = sums
        .iter()
        .map(|r| {
            used.iter()
                .map(|&d| (r[d].1 > 0).then(|| (r[d].0 / r[d].1 as f64, r[d].1)))
                .collect()
        })
        .collect();
    (cols, rows_l, cells)
}

/// The report of a scoring run: header, models, segments, lifecycle stages,
/// CLV distribution, value tiers and P(alive) by frequency and recency.
pub fn score_report(m: &ScoreManifest, rows: &[ScoreRow]) -> Result<String, ReportError> {
    score_report_with(m, rows, None)
}

/// [`score_report`], plus predicted vs actual holdout purchases of an evaluation run.
pub fn score_report_with(
    m: &ScoreManifest,
    rows: &[ScoreRow],
    evaluation: Option<&EvaluateManifest>,
) -> Result<String, ReportError> {
    let title = format!("Customer value report, as of {}", m.as_of);
    let mut page = Page::new(
        &title,
        &format!(
            "run {} · warehouse version {} · period: {} · finished {}",
            m.run_id,
            m.warehouse_version.as_deref().unwrap_or("-"),
            m.period,
            m.finished_at
        ),
    );
    let mut clv: Vec<f64> = rows
        .iter()
        .filter(|r| r.orders > 0)
        .filter_map(|r| r.clv_12m)
        .filter(|v| v.is_finite())
        .collect();
    clv.sort_by(f64::total_cmp);
    let alive: Vec<f64> = rows
        .iter()
        .filter(|r| r.orders > 0)
        .filter_map(|r| r.p_alive)
        .collect();
    let mean_alive = if alive.is_empty() {
        "-".to_string()
    } else {
        format!("{:.2}", alive.iter().sum::<f64>() / alive.len() as f64)
    };
    page.kpis(&[
        (thousands(m.customers), "customers"),
        (thousands(m.purchasers), "purchasers"),
        (thousands(m.repeat_buyers), "repeat buyers"),
        (thousands(m.transactions), "transactions"),
        (
            if clv.is_empty() {
                "-".into()
            } else {
                money(clv.iter().sum())
            },
            "expected value, next 12 months",
        ),
        (mean_alive, "mean P(alive) of purchasers"),
    ]);

    let timings: Vec<String> = m
        .timings_ms
        .iter()
        .map(|(k, v)| format!("{k} {v} ms"))
        .collect();
    let run = table(
        &["", ""],
        &[
            vec![Cell::Text("as of".into()), Cell::Text(m.as_of.clone())],
            vec![Cell::Text("status".into()), Cell::Text(m.status.clone())],
            vec![
                Cell::Text("warehouse version".into()),
                Cell::Text(m.warehouse_version.clone().unwrap_or_else(|| "-".into())),
            ],
            vec![Cell::Text("period".into()), Cell::Text(m.period.clone())],
            vec![
                Cell::Text("started / finished".into()),
                Cell::Text(format!("{} / {}", m.started_at, m.finished_at)),
            ],
            vec![Cell::Text("timings".into()), Cell::Text(timings.join(", "))],
            vec![Cell::Text("scores".into()), Cell::Text(m.output.clone())],
        ],
    );
    page.section("Run", &run, "");
    page.section(
        "Models",
        &models_table(&[("BG/NBD", &m.bgnbd), ("Gamma-Gamma", &m.gamma_gamma)]),
        "Fitted by maximum likelihood on the purchasers (BG/NBD) and on the repeat buyers with a positive spend (Gamma-Gamma).",
    );

    page.grid();
    let order: Vec<&str> = SEGMENTS.iter().map(|s| s.as_str()).collect();
    let seg = ordered(&m.segments, &order, "(none)");
    page.section(
        "Customers per RFM segment",
        &figure(
            &charts::bars(&seg, BLUE, "customers")?,
            "customers per RFM segment",
        ),
        "",
    );
    let order: Vec<&str> = STAGES.iter().map(|s| s.as_str()).collect();
    let st = ordered(&m.lifecycle_stages, &order, "(no model)");
    page.section(
        "Customers per lifecycle stage",
        &figure(
            &charts::bars(&st, ORANGE, "customers")?,
            "customers per lifecycle stage",
        ),
        if m.lifecycle_stages.contains_key("null") {
            "(no model): the stage needs P(alive) and BG/NBD could not be fitted."
        } else {
            ""
        },
    );

    if clv.is_empty() {
        page.section(
            "Expected value of the next 12 months (CLV)",
            "",
            "No CLV: the models could not be fitted.",
        );
    } else {
        let (bins, above) = clv_bins(&clv, 30);
        let note = format!(
            "{} purchasers; median {}, mean {}, 90th percentile {}, 99th percentile {}, maximum {}. {} customers above the 99th percentile are not drawn.",
            thousands(clv.len() as u64),
            money(quantile(&clv, 0.5)),
            money(clv.iter().sum::<f64>() / clv.len() as f64),
            money(quantile(&clv, 0.9)),
            money(quantile(&clv, 0.99)),
            money(clv.last().copied().unwrap_or(0.0)),
            thousands(above)
        );
        let svg = charts::histogram(&bins, "12-month CLV (base currency)", "customers")?;
        page.section(
            "Expected value of the next 12 months (CLV)",
            &figure(&svg, "histogram of 12-month CLV"),
            &note,
        );
    }

    let order: Vec<&str> = TIERS.iter().map(|s| s.as_str()).collect();
    let tiers = ordered(&m.value_tiers, &order, "(no CLV)");
    let mut tier_rows = Vec::new();
    for (name, n) in &tiers {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.value_tier.as_deref() == Some(name))
            .filter_map(|r| r.clv_12m)
            .collect();
        let total: f64 = values.iter().sum();
        tier_rows.push(vec![
            Cell::Text(name.clone()),
            Cell::Num(thousands(*n)),
            Cell::Num(money(total)),
            Cell::Num(if values.is_empty() {
                "-".into()
            } else {
                format!("{:.2}", total / values.len() as f64)
            }),
        ]);
    }
    let content = format!(
        "{}{}",
        figure(
            &charts::bars(&tiers, BLUE, "customers")?,
            "customers per value tier"
        ),
        table(
            &["tier", "#customers", "#total CLV", "#mean CLV"],
            &tier_rows
        )
    );
    page.section("Value tiers", &content, "high: top 20% of purchasers by 12-month CLV; medium: next 30%; low: the rest; none: prospects.");

    let (cols, freq, cells) = p_alive_grid(rows);
    if cols.is_empty() {
        page.section(
            "P(alive) by frequency and recency",
            "",
            "No P(alive): BG/NBD could not be fitted.",
        );
    } else {
        let svg = charts::heatmap(
            &cols,
            &freq,
            &cells,
            "days since the last purchase",
            "repeat purchases",
        )?;
        page.section(
            "P(alive) by frequency and recency",
            &figure(&svg, "mean P(alive) by repeat purchases and days since the last purchase"),
            "Mean P(alive) of the purchasers in each cell (customers in brackets). One-time buyers are alive with probability 1 under BG/NBD.",
        );
    }
    if let Some(ev) = evaluation {
        let note = format!(
            "From evaluation run {} (calibration to {}, holdout to {}): {} actual vs {:.1} predicted holdout purchases, MAE {:.3}. Its own report has the details.",
            ev.run_id,
            ev.calibration_end,
            ev.holdout_end,
            thousands(ev.metrics.total_actual),
            ev.metrics.total_predicted,
            ev.metrics.mae
        );
        page.section(
            "Predicted vs actual (latest evaluation)",
            &calibration_content(ev)?,
            &note,
        );
    }
    page.end_grid();
    Ok(page.finish(&title))
}

/// Mean actual vs predicted holdout purchases by calibration repeat purchases: chart and table.
fn calibration_content(m: &EvaluateManifest) -> Result<String, ReportError> {
    let top = m.calibration_table.len().saturating_sub(1);
    let labels: Vec<String> = m
        .calibration_table
        .iter()
        .map(|r| r.calibration_frequency.clone())
        .collect();
    let x_of = |i: usize| i as f64;
    let series = [
        Series {
            name: "actual",
            points: m
                .calibration_table
                .iter()
                .enumerate()
                .map(|(i, r)| (x_of(i), r.mean_actual))
                .collect(),
            colour: BLUE,
            dots: true,
        },
        Series {
            name: "predicted (BG/NBD)",
            points: m
                .calibration_table
                .iter()
                .enumerate()
                .map(|(i, r)| (x_of(i), r.mean_predicted))
                .collect(),
            colour: ORANGE,
            dots: true,
        },
    ];
    let x_label = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let axes = LineAxes {
        x_desc: "repeat purchases in the calibration period",
        y_desc: "mean holdout purchases",
        x_label: &x_label,
        x_ticks: top + 1,
        marker: None,
    };
    let table_rows: Vec<Vec<Cell>> = m
        .calibration_table
        .iter()
        .map(|r| {
            vec![
                Cell::Text(r.calibration_frequency.clone()),
                Cell::Num(thousands(r.customers)),
                Cell::Num(format!("{:.3}", r.mean_actual)),
                Cell::Num(format!("{:.3}", r.mean_predicted)),
            ]
        })
        .collect();
    Ok(format!(
        "{}{}",
        figure(
            &charts::lines(&series, &axes)?,
            "mean holdout purchases, actual and predicted, by calibration repeat purchases"
        ),
        table(
            &[
                "calibration repeat purchases",
                "#customers",
                "#mean actual",
                "#mean predicted"
            ],
            &table_rows
        )
    ))
}

/// The report of an evaluation run: errors, the calibration-vs-holdout chart
/// and table, and cumulative repeat purchases over time.
pub fn evaluation_report(m: &EvaluateManifest) -> Result<String, ReportError> {
    let title = format!(
        "Model evaluation: calibration to {}, holdout to {}",
        m.calibration_end, m.holdout_end
    );
    let mut page = Page::new(
        &title,
        &format!(
            "run {} · warehouse version {} · period: {} · holdout {:.1} {}s · finished {}",
            m.run_id,
            m.warehouse_version.as_deref().unwrap_or("-"),
            m.period,
            m.holdout_periods,
            m.period,
            m.finished_at
        ),
    );
    let mt = &m.metrics;
    page.kpis(&[
        (thousands(mt.customers), "calibration purchasers"),
        (thousands(mt.total_actual), "actual holdout purchases"),
        (
            format!("{:.1}", mt.total_predicted),
            "predicted holdout purchases",
        ),
        (
            mt.total_error_pct
                .map_or("-".into(), |p| format!("{p:+.1}%")),
            "total error",
        ),
        (format!("{:.3}", mt.mae), "MAE per customer"),
        (format!("{:.3}", mt.rmse), "RMSE per customer"),
    ]);
    page.section(
        "Models fitted on the calibration period",
        &models_table(&[("BG/NBD", &m.bgnbd), ("Gamma-Gamma", &m.gamma_gamma)]),
        "",
    );
    page.grid();
    page.section(
        "Holdout purchases by calibration purchases",
        &calibration_content(m)?,
        "Conditional expectations of BG/NBD given each customer's calibration history.",
    );

    if !m.tracking.is_empty() {
        let cal_x = m
            .tracking
            .iter()
            .find(|p| p.date >= m.calibration_end)
            .map(|p| f64::from(p.period));
        let series = [
            Series {
                name: "actual",
                points: m
                    .tracking
                    .iter()
                    .map(|p| (f64::from(p.period), p.actual as f64))
                    .collect(),
                colour: BLUE,
                dots: false,
            },
            Series {
                name: "predicted (BG/NBD)",
                points: m
                    .tracking
                    .iter()
                    .map(|p| (f64::from(p.period), p.predicted))
                    .collect(),
                colour: ORANGE,
                dots: false,
            },
        ];
        let x_label = |v: &f64| format!("{v:.0}");
        let axes = LineAxes {
            x_desc: &format!("{}s since the cohort's first purchase day", m.period),
            y_desc: "cumulative repeat purchases",
            x_label: &x_label,
            x_ticks: 10,
            marker: cal_x.map(|x| (x, "end of calibration")),
        };
        page.section(
            "Cumulative repeat purchases of the calibration cohort",
            &figure(&charts::lines(&series, &axes)?, "cumulative repeat purchases over time, actual and predicted"),
            "Predicted: the unconditional BG/NBD expectation from each customer's first purchase, summed over the cohort.",
        );
    }
    page.end_grid();
    Ok(page.finish(&title))
}

#[cfg(test)]
mod tests;
