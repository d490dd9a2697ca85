//! `cvm-etl score`: customer value scores as of a date, from the published
//! warehouse, into `scores/as_of=YYYY-MM-DD/` (definitions: `scoring.md`).
//!
//! Only transactions up to and including the `as_of` day count, so a past
//! date can be re-scored exactly. Models are fitted on sufficient statistics
//! (identical histories collapsed), then applied per customer in parallel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cvm_shared::{BaseAmount, Settings};
use rayon::prelude::*;

use crate::manifest::score::ScoreManifest;
use crate::manifest::{RunClock, RunTimes};
use crate::models::clv::ClvOptions;
use crate::models::customer::{self, CustomerInput, RfmScores, ScoreContext};
use crate::models::rfm::{self, LifecycleThresholds, TierInput};
use crate::models::summary::{CustomerSummary, Period};
use crate::scoring;
use crate::scoring::engagement::engagement_90d;
use crate::scoring::feedback::{self, Feedback};
use crate::scoring::fit::{Fits, fit_models};
use crate::scoring::ledger::{Facts, Ledger, customer_index, end_of_day, known_customers};
use crate::scoring::totals::{self, CustomerTotals};
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;
use crate::warehouse::scores::{Publication, PublishScoresError};
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

/// Scores the warehouse as of a date, holding the warehouse lock.
pub fn run(opts: &ScoreOptions) -> Result<ScoreReport, ScoreError> {
    let wh = Warehouse::open(&opts.warehouse)?;
    run_locked(&wh, opts)
}

/// Scores with an already opened (locked) warehouse.
pub fn run_locked(wh: &Warehouse, opts: &ScoreOptions) -> Result<ScoreReport, ScoreError> {
    let mut clock = RunClock::start("score");
    let version_dir = wh
        .current()?
        .ok_or_else(|| ScoreError::Empty(opts.warehouse.clone()))?;
    crate::warehouse::state::check_format(&version_dir)?;
    let period = scoring::period(&opts.settings.scoring);
    let as_of_day = i64::from(opts.as_of.to_epoch_days());

    let (known, purchases) = read(&version_dir, &opts.warehouse, as_of_day)?;
    clock.lap("read");
    let facts = purchases.into_facts(as_of_day, period);
    clock.lap("summarize");
    let fits = fit_models(&facts);
    clock.lap("fit");
    let rows = score_customers(&known, &facts, &context(opts, period, &fits));
    clock.lap("score");
    let status = warehouse::scores::publish(wh, opts.as_of, clock.run_id(), &rows)?;
    clock.lap("write");
    let manifest = record(opts, wh, clock.finish(), &known, fits, status, &rows)?;
    let run_dir = write_run(&opts.warehouse, &manifest, &rows)?;
    Ok(ScoreReport {
        manifest,
        rows,
        run_dir,
    })
}

/// The customers known on the scoring day and what scoring knows of them
/// besides their transactions, in the ledger's index order.
struct Known {
    /// Customers known on as_of.
    customers: Vec<Box<str>>,
    /// Engagement events in the 90 days up to as_of, per customer.
    engagement: Vec<u32>,
    /// Latest NPS answers.
    feedback: Feedback,
    /// Transactions up to as_of that were counted.
    transactions: u64,
    /// Whence: `purchase_totals` or `transactions`.
    purchases_from: &'static str,
}

/// What the known customers bought up to the scoring day.
enum Purchases {
    /// The version's stored totals (no transaction after the day).
    Totals(Vec<CustomerTotals>),
    /// Their transactions up to the day.
    Ledger(Ledger),
}

impl Purchases {
    /// The manifest's name of the source.
    fn source(&self) -> &'static str {
        match self {
            Purchases::Totals(_) => "purchase_totals",
            Purchases::Ledger(_) => "transactions",
        }
    }

    /// Transactions counted.
    fn transactions(&self) -> u64 {
        match self {
            Purchases::Totals(t) => t.iter().map(|t| t.transactions).sum(),
            Purchases::Ledger(l) => l.len() as u64,
        }
    }

    /// Every customer's facts on `as_of_day`.
    fn into_facts(self, as_of_day: i64, period: Period) -> Vec<Facts> {
        match self {
            Purchases::Totals(t) => t.par_iter().map(|t| t.facts(as_of_day, period)).collect(),
            Purchases::Ledger(l) => l.into_facts(as_of_day, period),
        }
    }
}

/// Step "read": the customers known on `as_of_day`, their purchases up to
/// that day (the stored totals when no transaction is later, else the
/// transactions), engagement and feedback.
fn read(
    version_dir: &Path,
    warehouse: &Path,
    as_of_day: i64,
) -> Result<(Known, Purchases), ScoreError> {
    let end = end_of_day(as_of_day);
    let t = std::time::Instant::now();
    let customers = known_customers(version_dir, end)?;
    let index = customer_index(&customers);
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "read customers");
    let t = std::time::Instant::now();
    let purchases = match totals::read_before(version_dir, &index, end) {
        Ok(Some(t)) => Purchases::Totals(t),
        Ok(None) => Purchases::Ledger(Ledger::read(version_dir, &index, end)?),
        // Derived state: the transactions give the same scores.
        Err(e) => {
            tracing::warn!(error = %e, "purchase totals unreadable: scoring from the transactions");
            Purchases::Ledger(Ledger::read(version_dir, &index, end)?)
        }
    };
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        from = purchases.source(),
        "read purchases"
    );
    let t = std::time::Instant::now();
    let engagement = engagement_90d(version_dir, &index, end)?;
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "read events");
    let t = std::time::Instant::now();
    let known = Known {
        customers,
        engagement,
        feedback: feedback::read(warehouse, end),
        transactions: purchases.transactions(),
        purchases_from: purchases.source(),
    };
    tracing::debug!(ms = t.elapsed().as_millis() as u64, "read feedback");
    Ok((known, purchases))
}

/// What every customer's score shares: the day, the fitted models and the settings.
fn context(opts: &ScoreOptions, period: Period, fits: &Fits) -> ScoreContext {
    let s = &opts.settings.scoring;
    ScoreContext {
        as_of: opts.as_of,
        period,
        bgnbd: fits.bg,
        gamma_gamma: fits.gg,
        clv: ClvOptions {
            months: 12,
            discount_rate: s.discount_rate,
            margin: s.margin,
            month_periods: period.month(),
        },
        lifecycle: LifecycleThresholds {
            new_window_days: i64::from(s.new_within_days),
            churned_below: s.churned_below,
            at_risk_below: s.at_risk_below,
            loyal_min_orders: u64::from(s.loyal_min_orders),
        },
    }
}

/// Step "score": every known customer's row, value tiers ranked across them,
/// sorted by customer id.
fn score_customers(known: &Known, facts: &[Facts], ctx: &ScoreContext) -> Vec<ScoreRow> {
    let ranks = rfm_ranks(facts);
    let shares = rfm::engagement_shares(&known.engagement);
    let mut rows: Vec<ScoreRow> = (0..known.customers.len())
        .into_par_iter()
        .map(|i| {
            let id = &*known.customers[i];
            let input = CustomerInput {
                customer_id: id,
                summary: facts[i].summary,
                total_revenue: BaseAmount(facts[i].total_revenue),
                rfm: ranks[i],
                engagement_90d: known.engagement[i],
                engagement_share: shares[i],
                nps_last: known.feedback.nps(id),
            };
            customer::score(&input, ctx)
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
    rows
}

/// Every customer's RFM scores among the purchasers (`scoring.md`, "RFM").
fn rfm_ranks(facts: &[Facts]) -> Vec<RfmScores> {
    // More recent is better: rank the negated days since the last purchase.
    let r = purchaser_ranks(facts, |s, _| -s.days_since_last_purchase.unwrap_or(0));
    let f = purchaser_ranks(facts, |s, _| s.orders);
    let m = purchaser_ranks(facts, |_, f| f.total_revenue);
    r.into_iter()
        .zip(f)
        .zip(m)
        .map(|((r, f), m)| RfmScores { r, f, m })
        .collect()
}

/// Rank scores 1..5 of `value` among the purchasers; `None` for prospects.
fn purchaser_ranks<T: Ord + Copy + Send + Sync>(
    facts: &[Facts],
    value: impl Fn(&CustomerSummary, &Facts) -> T,
) -> Vec<Option<u8>> {
    let values: Vec<Option<T>> = facts
        .iter()
        .map(|f| f.summary.filter(|s| s.orders > 0).map(|s| value(&s, f)))
        .collect();
    rfm::rank_scores(&values)
}

/// The run's manifest.
fn record(
    opts: &ScoreOptions,
    wh: &Warehouse,
    times: RunTimes,
    known: &Known,
    fits: Fits,
    status: Publication,
    rows: &[ScoreRow],
) -> Result<ScoreManifest, ScoreError> {
    Ok(ScoreManifest {
        run_id: times.run_id,
        command: "score".into(),
        status: status.as_str().into(),
        as_of: opts.as_of.to_string(),
        period: opts.settings.scoring.period.clone(),
        warehouse_version: wh.current_id()?,
        started_at: times.started_at,
        finished_at: times.finished_at,
        timings_ms: times.timings_ms,
        customers: rows.len() as u64,
        purchasers: rows.iter().filter(|r| r.orders > 0).count() as u64,
        repeat_buyers: rows.iter().filter(|r| r.frequency > 0).count() as u64,
        transactions: known.transactions,
        purchases_from: known.purchases_from.into(),
        feedback: known.feedback.counts.clone(),
        bgnbd: fits.bg_report,
        gamma_gamma: fits.gg_report,
        segments: tally(rows.iter().map(|r| Some(&*r.rfm_segment))),
        lifecycle_stages: tally(rows.iter().map(|r| r.lifecycle_stage.as_deref())),
        value_tiers: tally(rows.iter().map(|r| r.value_tier.as_deref())),
        output: warehouse::scores::dir_for(&opts.warehouse, opts.as_of)
            .display()
            .to_string(),
        settings: opts.settings.scoring.clone(),
        versions: crate::manifest::program_versions(),
    })
}

/// Customers per value (`null` for none).
fn tally<'a>(values: impl Iterator<Item = Option<&'a str>>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v.unwrap_or("null").to_string()).or_default() += 1;
    }
    m
}

/// Step "report": the run folder with the manifest and `report.html`.
fn write_run(
    warehouse: &Path,
    manifest: &ScoreManifest,
    rows: &[ScoreRow],
) -> Result<PathBuf, ScoreError> {
    let run = RunFolder::stage(warehouse, &manifest.run_id)?;
    run.write_json("manifest.json", manifest)?;
    // The scores are what matters: a report that cannot be drawn is a warning, not a failed run.
    let evaluation = crate::manifest::evaluate::latest(warehouse);
    match crate::report::score_report_with(manifest, rows, evaluation.as_ref()) {
        Ok(html) => run.write_bytes("report.html", html.as_bytes())?,
        Err(e) => tracing::warn!(error = %e, "the run report could not be drawn"),
    }
    Ok(run.finish()?)
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
