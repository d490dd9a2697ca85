//! `cvm-etl score`: customer value scores as of a date, from the published
//! warehouse, into `scores/as_of=YYYY-MM-DD/` (definitions: `scoring.md`).
//!
//! Only transactions up to and including the `as_of` day count, so a past
//! date can be re-scored exactly. Models are fitted on sufficient statistics
//! (identical histories collapsed), then applied per customer in parallel.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use chrono::NaiveDate;
use cvm_shared::identity::stable_hash;
use cvm_shared::{BaseAmount, Settings};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;

use crate::manifest::score::{ModelReport, ScoreManifest};
use crate::manifest::{self, Stopwatch, now_rfc3339};
use crate::models::bgnbd::{self, BgNbdParams};
use crate::models::clv::{ClvOptions, clv};
use crate::models::gammagamma::{self, GammaGammaParams};
use crate::models::optimize::FitReport;
use crate::models::rfm::{self, LifecycleThresholds, LoyaltyInput, TierInput};
use crate::models::summary::{self, Period};
use crate::warehouse::publish::{PublishError, Warehouse};
use crate::warehouse::runs::RunFolder;
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScoreError + '_ {
    move |source| ScoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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

/// A transaction reduced to what scoring needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tx {
    customer: u32,
    at: i64,
    amount: i128,
    refund: bool,
    order: u64,
}

pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}

/// Reads the transactions of customers in `index` up to `end` (exclusive),
/// only the columns scoring needs.
fn read_transactions(
    dir: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
) -> Result<Vec<Tx>, WarehouseError> {
    let files = warehouse::parquet_io::list_parquet_files(dir)?;
    let per_file: Vec<Vec<Tx>> = files
        .par_iter()
        .map(|path| {
            let err = |e: parquet::errors::ParquetError| WarehouseError::Format {
                path: path.clone(),
                message: e.to_string(),
            };
            let file = std::fs::File::open(path).map_err(|source| WarehouseError::Io {
                path: path.clone(),
                source,
            })?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err)?;
            let names = [
                "customer_id",
                "occurred_at",
                "amount_base",
                "kind",
                "order_id",
            ];
            let mask = ProjectionMask::columns(b.parquet_schema(), names);
            let reader = b
                .with_projection(mask)
                .with_batch_size(65_536)
                .build()
                .map_err(err)?;
            let mut out = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|e| WarehouseError::Format {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                decode_batch(&batch, path, index, end, &mut out)?;
            }
            Ok(out)
        })
        .collect::<Result<_, WarehouseError>>()?;
    Ok(per_file.into_iter().flatten().collect())
}

fn decode_batch(
    batch: &RecordBatch,
    path: &Path,
    index: &HashMap<&str, u32>,
    end: i64,
    out: &mut Vec<Tx>,
) -> Result<(), WarehouseError> {
    let bad = |m: &str| WarehouseError::Schema {
        path: path.to_path_buf(),
        dataset: "transactions",
        message: m.to_string(),
    };
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .ok_or_else(|| bad(&format!("no column {n:?}")))
    };
    let customer = col("customer_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("customer_id is not Utf8"))?;
    let at = col("occurred_at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| bad("occurred_at is not a timestamp"))?;
    let amount = col("amount_base")?
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| bad("amount_base is not a decimal"))?;
    let kind = col("kind")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("kind is not Utf8"))?;
    let order = col("order_id")?
        .as_string_opt::<i32>()
        .ok_or_else(|| bad("order_id is not Utf8"))?;
    for i in 0..batch.num_rows() {
        if customer.is_null(i) || at.value(i) >= end {
            continue;
        }
        let Some(&c) = index.get(customer.value(i)) else {
            continue;
        };
        out.push(Tx {
            customer: c,
            at: at.value(i),
            amount: amount.value(i),
            refund: kind.value(i) == "refund",
            order: if order.is_null(i) {
                0
            } else {
                stable_hash(order.value(i).as_bytes()) | 1
            },
        });
    }
    Ok(())
}

/// Latest NPS answer on or before `end` per customer, from `feedback/*.csv`
/// (`customer_id,answered_at,score`) in the warehouse.
fn read_feedback(
    warehouse: &Path,
    end: i64,
    counts: &mut BTreeMap<String, u64>,
) -> HashMap<String, (i64, u8)> {
    let mut latest: HashMap<String, (i64, u8)> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(warehouse.join("feedback")) else {
        return latest;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    for f in files {
        let Ok(mut rdr) = csv::Reader::from_path(&f) else {
            tracing::warn!(file = %f.display(), "cannot read feedback file");
            continue;
        };
        for rec in rdr.records() {
            let parsed = rec.ok().and_then(|r| {
                let id = r.get(0)?.trim().to_string();
                let at = crate::sources::fields::rfc3339_micros(r.get(1)?)
                    .or_else(|| crate::sources::fields::date_micros(r.get(1)?))?;
                let score: u8 = r.get(2)?.trim().parse().ok().filter(|s| *s <= 10)?;
                (!id.is_empty()).then_some((id, at, score))
            });
            match parsed {
                Some((id, at, score)) if at < end => {
                    *counts.entry("used".into()).or_default() += 1;
                    let e = latest.entry(id).or_insert((at, score));
                    if at >= e.0 {
                        *e = (at, score);
                    }
                }
                Some(_) => *counts.entry("after_as_of".into()).or_default() += 1,
                None => *counts.entry("malformed".into()).or_default() += 1,
            }
        }
    }
    latest
}

/// Per-customer facts before the models.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub(crate) summary: Option<summary::CustomerSummary>,
    pub(crate) total_revenue: i128,
}

impl Facts {
    /// (frequency, recency, T) of a purchaser, the BG/NBD inputs.
    pub(crate) fn xtt(&self) -> Option<(f64, f64, f64)> {
        self.summary.filter(|s| s.orders > 0).map(|s| {
            (
                s.frequency as f64,
                s.recency.unwrap_or(0.0),
                s.t.unwrap_or(0.0),
            )
        })
    }
}

/// Customers known before `end` (microseconds) in a warehouse version.
pub(crate) fn known_customers(
    version_dir: &Path,
    end: i64,
) -> Result<Vec<warehouse::CustomerRow>, WarehouseError> {
    Ok(warehouse::customers::read(&version_dir.join("customers"))?
        .into_iter()
        .filter(|c| c.first_seen.is_none_or(|f| f < end))
        .collect())
}

/// The transactions of the indexed customers, grouped by customer and sorted by time.
pub(crate) struct Ledger {
    txs: Vec<Tx>,
    bounds: Vec<usize>,
}

impl Ledger {
    /// Reads the transactions of the customers in `index` before `end` (microseconds).
    pub(crate) fn read(
        version_dir: &Path,
        index: &HashMap<&str, u32>,
        end: i64,
    ) -> Result<Ledger, WarehouseError> {
        let mut txs = read_transactions(&version_dir.join("transactions"), index, end)?;
        txs.par_sort_unstable_by_key(|t| (t.customer, t.at, t.refund, t.amount));
        let mut bounds = vec![0usize; index.len() + 1];
        for t in &txs {
            bounds[t.customer as usize + 1] += 1;
        }
        for i in 1..bounds.len() {
            bounds[i] += bounds[i - 1];
        }
        Ok(Ledger { txs, bounds })
    }

    /// Transactions read.
    pub(crate) fn len(&self) -> usize {
        self.txs.len()
    }

    /// Customer `i`'s transactions, by time.
    pub(crate) fn customer(&self, i: usize) -> &[Tx] {
        &self.txs[self.bounds[i]..self.bounds[i + 1]]
    }

    /// Every customer's facts on `as_of_day`, from the transactions up to that day only.
    pub(crate) fn facts(&self, as_of_day: i64, period: Period) -> Vec<Facts> {
        let end = (as_of_day + 1) * DAY_MICROS;
        (0..self.bounds.len() - 1)
            .into_par_iter()
            .map(|i| {
                let txs = self.customer(i);
                facts(
                    &txs[..txs.partition_point(|t| t.at < end)],
                    as_of_day,
                    period,
                )
            })
            .collect()
    }
}

/// Purchase occasions (day, value) of one customer's transactions, and the net total:
/// purchase days not fully refunded through their order.
pub(crate) fn occasions(txs: &[Tx]) -> (Vec<(i64, f64)>, i128) {
    let mut by_order: HashMap<u64, (i128, i128)> = HashMap::new();
    let mut total = 0i128;
    for t in txs {
        total += t.amount;
        if t.order != 0 {
            let e = by_order.entry(t.order).or_default();
            if t.refund {
                e.1 += -t.amount;
            } else {
                e.0 += t.amount;
            }
        }
    }
    let fully_refunded = |order: u64| {
        order != 0
            && by_order
                .get(&order)
                .is_some_and(|(p, r)| *r > 0 && *r >= *p)
    };
    let purchases: Vec<(i64, f64)> = txs
        .iter()
        .filter(|t| !t.refund && !fully_refunded(t.order))
        .map(|t| (day_of(t.at), BaseAmount(t.amount).to_f64()))
        .collect();
    (summary::occasions_from_purchases(&purchases), total)
}

fn facts(txs: &[Tx], as_of_day: i64, period: Period) -> Facts {
    let (occasions, total) = occasions(txs);
    Facts {
        summary: summary::summarize(&occasions, as_of_day, period).ok(),
        total_revenue: total,
    }
}

/// Both model fits and their manifest records.
pub(crate) struct Fits {
    pub(crate) bg: Option<BgNbdParams>,
    pub(crate) gg: Option<GammaGammaParams>,
    pub(crate) bg_report: ModelReport,
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
    let period = if opts.settings.scoring.period == "day" {
        Period::Day
    } else {
        Period::Week
    };
    let as_of_day = opts.as_of.to_epoch_days() as i64;
    let end = (as_of_day + 1) * DAY_MICROS;

    // Customers known on as_of.
    let customers = known_customers(&version_dir, end)?;
    let index: HashMap<&str, u32> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (&*c.customer_id, i as u32))
        .collect();
    let ledger = Ledger::read(&version_dir, &index, end)?;
    let n_txs = ledger.len() as u64;
    let mut engagement = vec![0u32; customers.len()];
    let window_start = end - 90 * DAY_MICROS;
    for e in warehouse::events::read(&version_dir.join("events"))? {
        if let Some(&i) = e.customer_id.as_deref().and_then(|id| index.get(id))
            && e.ts >= window_start
            && e.ts < end
        {
            engagement[i as usize] += 1;
        }
    }
    let mut feedback_counts = BTreeMap::new();
    let feedback = read_feedback(&opts.warehouse, end, &mut feedback_counts);
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
            let nps = feedback.get(&*customers[i].customer_id).map(|(_, s)| *s);
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
    let status = publish_scores(&opts.warehouse, &out_dir, &run_id, &rows)?;
    clock.lap("write");
    let timings = clock.finish();

    let mf = ScoreManifest {
        run_id: run_id.clone(),
        command: "score".into(),
        status: status.into(),
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
        feedback: feedback_counts,
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

/// Writes the scores next to `out_dir` and swaps them in. Unchanged scores
/// (a re-run on the same data) leave the published folder untouched.
fn publish_scores(
    warehouse: &Path,
    out_dir: &Path,
    run_id: &str,
    rows: &[ScoreRow],
) -> Result<&'static str, ScoreError> {
    let parent = warehouse.join("scores");
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A crash between the two renames below leaves the old folder aside: put it back.
    for e in std::fs::read_dir(&parent).map_err(io(&parent))?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".{name}.old-")) && !out_dir.exists() {
            std::fs::rename(e.path(), out_dir).map_err(io(out_dir))?;
        } else if n.starts_with(&format!(".{name}.")) {
            std::fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
        }
    }
    if out_dir.exists() && warehouse::scores::read(out_dir).ok().as_deref() == Some(rows) {
        return Ok("unchanged");
    }
    let tmp = parent.join(format!(".{name}.new-{run_id}"));
    warehouse::scores::write(&tmp, rows)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    if out_dir.exists() {
        let old = parent.join(format!(".{name}.old-{run_id}"));
        std::fs::rename(out_dir, &old).map_err(io(out_dir))?;
        std::fs::rename(&tmp, out_dir).map_err(io(out_dir))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        std::fs::rename(&tmp, out_dir).map_err(io(out_dir))?;
    }
    std::fs::File::open(&parent)
        .and_then(|f| f.sync_all())
        .map_err(io(&parent))?;
    Ok("published")
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
