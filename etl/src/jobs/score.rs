//! `cvm-etl score`: customer value scores as of a date, from the published
//! warehouse, into `scores/as_of=YYYY-MM-DD/` (definitions: `scoring.md`).
//!
//! Only transactions up to and including the `as_of` day count, so a past
//! date can be re-scored exactly. Models are fitted on sufficient statistics
//! (identical histories collapsed), then applied per customer in parallel.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use cvm_shared::{BaseAmount, Settings};
use rayon::prelude::*;

use crate::manifest::score::ScoreManifest;
use crate::manifest::{self, Stopwatch, now_rfc3339};
use crate::models::bgnbd::BgNbdParams;
use crate::models::clv::{ClvOptions, clv};
use crate::models::gammagamma::GammaGammaParams;
use crate::models::rfm::{self, LifecycleThresholds, LoyaltyInput, TierInput};
use crate::scoring::engagement::engagement_90d;
use crate::scoring::fit::fit_models;
use crate::scoring::ledger::{Facts, Ledger, customer_index, end_of_day, known_customers};
use crate::scoring::{self, feedback};
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;
use crate::warehouse::scores::PublishScoresError;
use crate::warehouse::{self, ScoreRow, WarehouseError};

/// What to score.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// The warehouse folder.
    pub warehouse: PathBuf,
    /// The day scores are computed for.
    pub as_of: NaiveDate,
    /// Validated settings (`scoring.*`).
    pub settings: Settings,
}

/// Why scoring failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// Nothing was ever ingested.
    #[error("warehouse {0} has no published data: run `cvm-etl ingest` first")]
    Empty(PathBuf),
    /// Reading or writing the warehouse failed.
    #[error("warehouse: {0}")]
    Warehouse(#[from] WarehouseError),
    /// Locking failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A file-system step failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<PublishScoresError> for ScoreError {
    fn from(e: PublishScoresError) -> ScoreError {
        match e {
            PublishScoresError::Warehouse(e) => ScoreError::Warehouse(e),
            PublishScoresError::Publish(e) => ScoreError::Publish(e),
        }
    }
}

/// The result of a scoring run.
#[derive(Debug)]
pub struct ScoreReport {
    /// The manifest, as written.
    pub manifest: ScoreManifest,
    /// The scores, sorted by customer id.
    pub rows: Vec<ScoreRow>,
    /// `runs/<run_id>/`.
    pub run_dir: PathBuf,
}

fn tally<'a>(values: impl Iterator<Item = Option<&'a str>>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v.unwrap_or("null").to_string()).or_default() += 1;
    }
    m
}

/// Scores the warehouse as of a date, holding the warehouse lock.
pub fn run(opts: &ScoreOptions) -> Result<ScoreReport, ScoreError> {
    let wh = Warehouse::open(&opts.warehouse)?;
    run_locked(&wh, opts)
}

/// Scores with an already opened (locked) warehouse.
pub fn run_locked(wh: &Warehouse, opts: &ScoreOptions) -> Result<ScoreReport, ScoreError> {
    let mut clock = Stopwatch::start();
    let started_at = now_rfc3339();
    let run_id = manifest::new_run_id("score");
    let version_dir = wh
        .current()?
        .ok_or_else(|| ScoreError::Empty(opts.warehouse.clone()))?;
    let period = scoring::period(&opts.settings.scoring);
    let as_of_day = opts.as_of.to_epoch_days() as i64;
    let end = end_of_day(as_of_day);

    // Customers known on as_of.
    let customers = known_customers(&version_dir, end)?;
    let index = customer_index(&customers);
    let ledger = Ledger::read(&version_dir, &index, end)?;
    let n_txs = ledger.len() as u64;
    let engagement = engagement_90d(&version_dir, &index, end)?;
    let feedback = feedback::read(&opts.warehouse, end);
    clock.lap("read");

    let facts = ledger.facts(as_of_day, period);
    drop(ledger);
    clock.lap("summarize");

    let fits = fit_models(&facts);
    clock.lap("fit");

    let s = &opts.settings.scoring;
    let clv_opts = ClvOptions {
        months: 12,
        discount_rate: s.discount_rate,
        margin: s.margin,
        month_periods: period.month(),
    };
    let th = LifecycleThresholds {
        new_window_days: i64::from(s.new_within_days),
        churned_below: s.churned_below,
        at_risk_below: s.at_risk_below,
        loyal_min_orders: u64::from(s.loyal_min_orders),
    };
    let bgp: Option<BgNbdParams> = fits.bg;
    let ggp: Option<GammaGammaParams> = fits.gg;
    let h90 = 90.0 / period.days();
    let h365 = 365.0 / period.days();

    // RFM over purchasers.
    let purchaser = |f: &Facts| f.summary.is_some_and(|s| s.orders > 0);
    let r_scores = rfm::rank_scores(
        &facts
            .iter()
            .map(|f| {
                purchaser(f).then(|| {
                    -f.summary
                        .and_then(|s| s.days_since_last_purchase)
                        .unwrap_or(0)
                })
            })
            .collect::<Vec<_>>(),
    );
    let f_scores = rfm::rank_scores(
        &facts
            .iter()
            .map(|f| purchaser(f).then(|| f.summary.map_or(0, |s| s.orders)))
            .collect::<Vec<_>>(),
    );
    let m_scores = rfm::rank_scores(
        &facts
            .iter()
            .map(|f| purchaser(f).then_some(f.total_revenue))
            .collect::<Vec<_>>(),
    );
    let shares = rfm::engagement_shares(&engagement);

    let date = |day: Option<i64>| {
        day.and_then(|d| i32::try_from(d).ok())
            .and_then(NaiveDate::from_epoch_days)
    };
    let mut rows: Vec<ScoreRow> = (0..customers.len())
        .into_par_iter()
        .map(|i| {
            let f = &facts[i];
            let sm = f.summary.filter(|s| s.orders > 0);
            let (x, tx, t) = sm.map_or((0.0, 0.0, 0.0), |s| {
                (
                    s.frequency as f64,
                    s.recency.unwrap_or(0.0),
                    s.t.unwrap_or(0.0),
                )
            });
            let model = sm.and(bgp);
            let p_alive = model.map(|p| p.p_alive(x, tx, t));
            let e90 = model.map(|p| p.conditional_expected_purchases(h90, x, tx, t));
            let e365 = model.map(|p| p.conditional_expected_purchases(h365, x, tx, t));
            let m = sm.map_or(0.0, |s| s.monetary_avg);
            let eav = sm
                .and(ggp)
                .and_then(|g| g.conditional_expected_value(if m > 0.0 { x } else { 0.0 }, m));
            let clv_12m = match (model, eav) {
                (Some(p), Some(v)) => Some(clv(&p, x, tx, t, v, &clv_opts)),
                _ => None,
            };
            let rfm_pair = r_scores[i].zip(f_scores[i]);
            let segment = rfm::rfm_segment(rfm_pair).map_or("Prospect", |s| s.as_str());
            let nps = feedback.nps(&customers[i].customer_id);
            let days_since_first = sm.and_then(|s| s.first_day).map(|d| as_of_day - d);
            let stage =
                rfm::lifecycle_stage(sm.map_or(0, |s| s.orders), days_since_first, p_alive, &th);
            let loyalty = rfm::loyalty_index(&LoyaltyInput {
                rfm: r_scores[i]
                    .zip(f_scores[i])
                    .zip(m_scores[i])
                    .map(|((r, f), m)| (r, f, m)),
                nps_last: nps,
                engagement_share: (engagement[i] > 0).then_some(shares[i]),
            });
            ScoreRow {
                customer_id: customers[i].customer_id.clone(),
                as_of: opts.as_of,
                orders: sm.map_or(0, |s| s.orders) as u32,
                frequency: sm.map_or(0, |s| s.frequency) as u32,
                recency: tx,
                t,
                monetary_avg: m,
                total_revenue: BaseAmount(f.total_revenue),
                first_purchase: date(sm.and_then(|s| s.first_day)),
                last_purchase: date(sm.and_then(|s| s.last_day)),
                days_since_last_purchase: sm
                    .and_then(|s| s.days_since_last_purchase)
                    .and_then(|d| i32::try_from(d).ok()),
                r_score: r_scores[i],
                f_score: f_scores[i],
                m_score: m_scores[i],
                rfm_segment: segment.into(),
                p_alive,
                expected_purchases_90d: e90,
                expected_purchases_365d: e365,
                expected_avg_value: eav,
                clv_12m,
                churn_risk: p_alive.map(|p| 1.0 - p),
                nps_last: nps,
                nps_class: rfm::nps_class(nps).map(|c| c.as_str().into()),
                engagement_90d: engagement[i],
                lifecycle_stage: stage.map(|s| s.as_str().into()),
                value_tier: None,
                loyalty_index: loyalty,
            }
        })
        .collect();
    let tiers = rfm::value_tiers(
        &rows
            .iter()
            .map(|r| {
                if r.orders > 0 {
                    TierInput::Purchaser(r.clv_12m)
                } else {
                    TierInput::Prospect
                }
            })
            .collect::<Vec<_>>(),
    );
    for (r, t) in rows.iter_mut().zip(tiers) {
        r.value_tier = t.map(|t| t.as_str().into());
    }
    rows.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    clock.lap("score");

    let out_dir = warehouse::scores::dir_for(&opts.warehouse, opts.as_of);
    let status = warehouse::scores::publish(wh, opts.as_of, &run_id, &rows)?;
    clock.lap("write");
    let timings = clock.finish();

    let mf = ScoreManifest {
        run_id: run_id.clone(),
        command: "score".into(),
        status: status.as_str().into(),
        as_of: opts.as_of.to_string(),
        period: opts.settings.scoring.period.clone(),
        warehouse_version: wh.current_id()?,
        started_at,
        finished_at: now_rfc3339(),
        timings_ms: timings,
        customers: rows.len() as u64,
        purchasers: rows.iter().filter(|r| r.orders > 0).count() as u64,
        repeat_buyers: rows.iter().filter(|r| r.frequency > 0).count() as u64,
        transactions: n_txs,
        feedback: feedback.counts,
        bgnbd: fits.bg_report,
        gamma_gamma: fits.gg_report,
        segments: tally(rows.iter().map(|r| Some(&*r.rfm_segment))),
        lifecycle_stages: tally(rows.iter().map(|r| r.lifecycle_stage.as_deref())),
        value_tiers: tally(rows.iter().map(|r| r.value_tier.as_deref())),
        output: out_dir.display().to_string(),
        settings: opts.settings.scoring.clone(),
        versions: BTreeMap::from([("cvm-etl".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
    };
    let run = RunFolder::stage(&opts.warehouse, &run_id)?;
    run.write_json("manifest.json", &mf)?;
    // The scores are what matters: a report that cannot be drawn is a warning, not a failed run.
    let evaluation = crate::manifest::evaluate::latest(&opts.warehouse);
    match crate::report::score_report_with(&mf, &rows, evaluation.as_ref()) {
        Ok(html) => run.write_bytes("report.html", html.as_bytes())?,
        Err(e) => tracing::warn!(error = %e, "the run report could not be drawn"),
    }
    let run_dir = run.finish()?;
    Ok(ScoreReport {
        manifest: mf,
        rows,
        run_dir,
    })
}

/// A one-screen summary of a scoring run.
pub fn summary_table(m: &ScoreManifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scored {} customers as of {} ({} purchasers, {} repeat buyers, {} transactions) -> {}",
        m.customers, m.as_of, m.purchasers, m.repeat_buyers, m.transactions, m.output
    );
    for (name, r) in [("BG/NBD", &m.bgnbd), ("Gamma-Gamma", &m.gamma_gamma)] {
        let params: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v:.4}"))
            .collect();
        let _ = writeln!(
            s,
            "{name}: {} LL={} on {} customers ({} distinct rows, {} ms){}",
            if r.converged {
                params.join(" ")
            } else {
                "not fitted".into()
            },
            r.log_likelihood.map_or("-".into(), |l| format!("{l:.2}")),
            r.customers,
            r.distinct_rows,
            r.fit_ms,
            r.reason
                .as_ref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
    let seg: Vec<String> = m.segments.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(s, "segments: {}", seg.join(", "));
    let st: Vec<String> = m
        .lifecycle_stages
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(s, "lifecycle: {}", st.join(", "));
    s
}
