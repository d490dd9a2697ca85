//! The `scores/as_of=YYYY-MM-DD/` dataset: one row per customer known on
//! `as_of`, columns as `shared/docs/scoring.md` names them, and how a date's
//! scores are published: written beside the published folder as
//! `.as_of=….new-<run>`, then swapped in by two renames; a crash between them
//! leaves the old folder aside as `.as_of=….old-<run>`, which [`sweep`] (run
//! when the warehouse is opened) puts back.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow_array::types::{Date32Type, Float64Type, Int32Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int32Array, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use cvm_shared::BaseAmount;
use cvm_shared::money::BASE_SCALE;
use rayon::prelude::*;

use super::parquet_io::{
    self, Columns, DECIMAL_PRECISION, WriteStats, decimal_array, opt_str, opt_utf8_array,
    opt_value, part_jobs_of, utf8_array, write_parts, writer_properties,
};
use super::publish::{PublishError, Warehouse, entries, io, sync_dir};
use super::{ScoreRow, WarehouseError};

/// Dataset name used in errors.
pub const DATASET: &str = "scores";
const DICTIONARY_COLUMNS: &[&str] = &["rfm_segment", "nps_class", "lifecycle_stage", "value_tier"];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    use DataType::{Date32, Float64, Int32, Utf8};
    Arc::new(Schema::new(vec![
        f("customer_id", Utf8, false),
        f("as_of", Date32, false),
        f("orders", Int32, false),
        f("frequency", Int32, false),
        f("recency", Float64, false),
        f("T", Float64, false),
        f("monetary_avg", Float64, false),
        f(
            "total_revenue",
            DataType::Decimal128(DECIMAL_PRECISION, BASE_SCALE as i8),
            false,
        ),
        f("first_purchase", Date32, true),
        f("last_purchase", Date32, true),
        f("days_since_last_purchase", Int32, true),
        f("r_score", Int32, true),
        f("f_score", Int32, true),
        f("m_score", Int32, true),
        f("rfm_segment", Utf8, false),
        f("p_alive", Float64, true),
        f("expected_purchases_90d", Float64, true),
        f("expected_purchases_365d", Float64, true),
        f("expected_avg_value", Float64, true),
        f("clv_12m", Float64, true),
        f("churn_risk", Float64, true),
        f("nps_last", Int32, true),
        f("nps_class", Utf8, true),
        f("engagement_90d", Int32, false),
        f("lifecycle_stage", Utf8, true),
        f("value_tier", Utf8, true),
        f("loyalty_index", Float64, true),
    ]))
});

/// The Arrow schema of a scores file.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The folder of the scores as of `date` under a warehouse root.
pub fn dir_for(warehouse: &Path, as_of: NaiveDate) -> PathBuf {
    warehouse.join(DATASET).join(folder_name(as_of))
}

/// `as_of=YYYY-MM-DD`.
fn folder_name(as_of: NaiveDate) -> String {
    format!("as_of={}", as_of.format("%Y-%m-%d"))
}

/// The dates that have scores, oldest first.
pub fn dates(warehouse: &Path) -> Vec<NaiveDate> {
    let mut out: Vec<NaiveDate> = std::fs::read_dir(warehouse.join("scores"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Only what `dir_for` writes: `as_of=+10000-01-01` is not a scoring run.
            cvm_shared::config::parse_iso_date(name.strip_prefix("as_of=")?)
        })
        .collect();
    out.sort();
    out
}

fn f64s<'a>(rows: impl Iterator<Item = &'a ScoreRow>, get: fn(&ScoreRow) -> f64) -> ArrayRef {
    Arc::new(PrimitiveArray::<Float64Type>::from_iter_values(
        rows.map(get),
    ))
}

fn opt_f64s<'a>(
    rows: impl Iterator<Item = &'a ScoreRow>,
    get: fn(&ScoreRow) -> Option<f64>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<Float64Type>::from_iter(rows.map(get)))
}

fn i32s<'a>(
    rows: impl Iterator<Item = &'a ScoreRow>,
    get: fn(&ScoreRow) -> Option<i32>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<Int32Type>::from_iter(rows.map(get)))
}

fn dates_array<'a>(
    rows: impl Iterator<Item = &'a ScoreRow>,
    get: fn(&ScoreRow) -> Option<NaiveDate>,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<Date32Type>::from_iter(
        rows.map(|r| get(r).map(|d| d.to_epoch_days())),
    ))
}

fn build<'a, I>(rows: I) -> RecordBatch
where
    I: Iterator<Item = &'a ScoreRow> + Clone,
{
    let r = rows;
    let columns: Vec<ArrayRef> = vec![
        utf8_array(r.clone().map(|s| &*s.customer_id)),
        dates_array(r.clone(), |s| Some(s.as_of)),
        i32s(r.clone(), |s| Some(s.orders as i32)),
        i32s(r.clone(), |s| Some(s.frequency as i32)),
        f64s(r.clone(), |s| s.recency),
        f64s(r.clone(), |s| s.t),
        f64s(r.clone(), |s| s.monetary_avg),
        decimal_array(r.clone().map(|s| s.total_revenue.0), BASE_SCALE as i8),
        dates_array(r.clone(), |s| s.first_purchase),
        dates_array(r.clone(), |s| s.last_purchase),
        i32s(r.clone(), |s| s.days_since_last_purchase),
        i32s(r.clone(), |s| s.r_score.map(i32::from)),
        i32s(r.clone(), |s| s.f_score.map(i32::from)),
        i32s(r.clone(), |s| s.m_score.map(i32::from)),
        utf8_array(r.clone().map(|s| &*s.rfm_segment)),
        opt_f64s(r.clone(), |s| s.p_alive),
        opt_f64s(r.clone(), |s| s.expected_purchases_90d),
        opt_f64s(r.clone(), |s| s.expected_purchases_365d),
        opt_f64s(r.clone(), |s| s.expected_avg_value),
        opt_f64s(r.clone(), |s| s.clv_12m),
        opt_f64s(r.clone(), |s| s.churn_risk),
        i32s(r.clone(), |s| s.nps_last.map(i32::from)),
        opt_utf8_array(r.clone().map(|s| s.nps_class.as_deref())),
        i32s(r.clone(), |s| Some(s.engagement_90d as i32)),
        opt_utf8_array(r.clone().map(|s| s.lifecycle_stage.as_deref())),
        opt_utf8_array(r.clone().map(|s| s.value_tier.as_deref())),
        opt_f64s(r, |s| s.loyalty_index),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns are built to match the schema")
}

/// Converts rows to one Arrow batch.
pub fn to_batch(rows: &[ScoreRow]) -> RecordBatch {
    build(rows.iter())
}

fn column<'a, T: Array + 'static>(
    c: &Columns<'_>,
    batch: &'a RecordBatch,
    name: &str,
    required: bool,
) -> Result<&'a T, WarehouseError> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| c.error(format!("no column {name:?}")))?;
    let arr = col.as_any().downcast_ref::<T>().ok_or_else(|| {
        c.error(format!(
            "column {name:?} is {}, expected {}",
            col.data_type(),
            std::any::type_name::<T>()
        ))
    })?;
    if required && arr.null_count() > 0 {
        return Err(c.error(format!(
            "column {name:?} has {} null values",
            arr.null_count()
        )));
    }
    Ok(arr)
}

fn decode(batch: &RecordBatch, path: &Path) -> Result<Vec<ScoreRow>, WarehouseError> {
    let c = Columns::new(batch, path, DATASET);
    let f = |name: &str, req: bool| column::<Float64Array>(&c, batch, name, req);
    let i = |name: &str, req: bool| column::<Int32Array>(&c, batch, name, req);
    let customer_id = c.utf8("customer_id", true)?;
    let as_of = c.date32("as_of", true)?;
    let (orders, frequency) = (i("orders", true)?, i("frequency", true)?);
    let (recency, t, monetary_avg) = (f("recency", true)?, f("T", true)?, f("monetary_avg", true)?);
    let total_revenue = c.decimal128("total_revenue", BASE_SCALE as i8, true)?;
    let (first_purchase, last_purchase) = (
        c.date32("first_purchase", false)?,
        c.date32("last_purchase", false)?,
    );
    let days_since = i("days_since_last_purchase", false)?;
    let (r_score, f_score, m_score) = (
        i("r_score", false)?,
        i("f_score", false)?,
        i("m_score", false)?,
    );
    let rfm_segment = c.utf8("rfm_segment", true)?;
    let p_alive = f("p_alive", false)?;
    let e90 = f("expected_purchases_90d", false)?;
    let e365 = f("expected_purchases_365d", false)?;
    let eav = f("expected_avg_value", false)?;
    let clv = f("clv_12m", false)?;
    let churn = f("churn_risk", false)?;
    let nps_last = i("nps_last", false)?;
    let nps_class = c.utf8("nps_class", false)?;
    let engagement = i("engagement_90d", true)?;
    let stage = c.utf8("lifecycle_stage", false)?;
    let tier = c.utf8("value_tier", false)?;
    let loyalty = f("loyalty_index", false)?;
    let date = |days: i32| {
        NaiveDate::from_epoch_days(days).ok_or_else(|| c.error(format!("out-of-range date {days}")))
    };
    let small = |v: Option<i32>| v.map(|x| x.clamp(0, 255) as u8);
    let mut out = Vec::with_capacity(batch.num_rows());
    for k in 0..batch.num_rows() {
        out.push(ScoreRow {
            customer_id: customer_id.value(k).into(),
            as_of: date(as_of.value(k))?,
            orders: orders.value(k).max(0) as u32,
            frequency: frequency.value(k).max(0) as u32,
            recency: recency.value(k),
            t: t.value(k),
            monetary_avg: monetary_avg.value(k),
            total_revenue: BaseAmount(total_revenue.value(k)),
            first_purchase: opt_value(first_purchase, k).map(date).transpose()?,
            last_purchase: opt_value(last_purchase, k).map(date).transpose()?,
            days_since_last_purchase: opt_value(days_since, k),
            r_score: small(opt_value(r_score, k)),
            f_score: small(opt_value(f_score, k)),
            m_score: small(opt_value(m_score, k)),
            rfm_segment: rfm_segment.value(k).into(),
            p_alive: opt_value(p_alive, k),
            expected_purchases_90d: opt_value(e90, k),
            expected_purchases_365d: opt_value(e365, k),
            expected_avg_value: opt_value(eav, k),
            clv_12m: opt_value(clv, k),
            churn_risk: opt_value(churn, k),
            nps_last: small(opt_value(nps_last, k)),
            nps_class: opt_str(nps_class, k),
            engagement_90d: engagement.value(k).max(0) as u32,
            lifecycle_stage: opt_str(stage, k),
            value_tier: opt_str(tier, k),
            loyalty_index: opt_value(loyalty, k),
        });
    }
    Ok(out)
}

/// Rows per scores part: a million customers' scores make four parts,
/// written in parallel (one part a core would leave the other idle).
const PART_ROWS: usize = 1 << 18;

/// Writes `rows` under `dir` (part files sorted by `customer_id`).
pub fn write(dir: &Path, rows: &[ScoreRow]) -> Result<WriteStats, WarehouseError> {
    let mut sorted: Vec<&ScoreRow> = rows.iter().collect();
    sorted.par_sort_unstable_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let jobs = part_jobs_of(dir, &sorted, PART_ROWS);
    write_parts(
        &jobs,
        &schema(),
        &writer_properties(DICTIONARY_COLUMNS),
        |rows| build(rows.iter().copied()),
    )
}

/// Reads every score row under `dir`; a missing folder has none.
pub fn read(dir: &Path) -> Result<Vec<ScoreRow>, WarehouseError> {
    parquet_io::read_rows(dir, decode)
}

/// What [`publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// The scores were written and swapped in.
    Published,
    /// The published scores were the same rows: nothing was written.
    Unchanged,
}

impl Publication {
    /// `published` or `unchanged`, as the score manifest's `status` says.
    pub fn as_str(self) -> &'static str {
        match self {
            Publication::Published => "published",
            Publication::Unchanged => "unchanged",
        }
    }
}

/// Why scores could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishScoresError {
    /// Writing or reading the scores files failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// Moving folders into place failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Publishes `rows` as the scores as of `as_of` (the lock `wh` holds keeps other
/// runs out). Unchanged scores (a re-run on the same data) leave the published
/// folder untouched.
pub fn publish(
    wh: &Warehouse,
    as_of: NaiveDate,
    run_id: &str,
    rows: &[ScoreRow],
) -> Result<Publication, PublishScoresError> {
    let parent = wh.root().join(DATASET);
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = folder_name(as_of);
    let out_dir = parent.join(&name);
    if out_dir.exists() && read(&out_dir).ok().as_deref() == Some(rows) {
        return Ok(Publication::Unchanged);
    }
    let tmp = parent.join(format!(".{name}.new-{run_id}"));
    write(&tmp, rows)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    if out_dir.exists() {
        let old = parent.join(format!(".{name}.old-{run_id}"));
        fs::rename(&out_dir, &old).map_err(io(&out_dir))?;
        fs::rename(&tmp, &out_dir).map_err(io(&out_dir))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(&tmp, &out_dir).map_err(io(&out_dir))?;
    }
    sync_dir(&parent)?;
    Ok(Publication::Published)
}

/// Repairs what a publish killed midway left (the warehouse lock is held, so
/// none is under way): a published folder moved aside goes back when nothing
/// replaced it; other leftovers are removed.
pub(super) fn sweep(warehouse: &Path) -> Result<(), PublishError> {
    let parent = warehouse.join(DATASET);
    for p in entries(&parent)? {
        // Only what `publish` stages: `.<as_of folder>.new-<run>` and `.old-<run>`.
        let Some((name, kind)) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix('.'))
            .and_then(|n| n.split_once('.'))
            .filter(|(name, kind)| {
                name.starts_with("as_of=") && (kind.starts_with("new-") || kind.starts_with("old-"))
            })
        else {
            continue;
        };
        let published = parent.join(name);
        if kind.starts_with("old-") && !published.exists() {
            fs::rename(&p, &published).map_err(io(&published))?;
        } else {
            fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, prospect: bool) -> ScoreRow {
        let d = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        ScoreRow {
            customer_id: id.into(),
            as_of: d,
            orders: if prospect { 0 } else { 3 },
            frequency: if prospect { 0 } else { 2 },
            recency: 4.5,
            t: 10.25,
            monetary_avg: 12.5,
            total_revenue: BaseAmount(123_456_789_012_345_678),
            first_purchase: (!prospect).then_some(d),
            last_purchase: None,
            days_since_last_purchase: (!prospect).then_some(3),
            r_score: (!prospect).then_some(5),
            f_score: (!prospect).then_some(4),
            m_score: None,
            rfm_segment: if prospect {
                "Prospect".into()
            } else {
                "Champions".into()
            },
            p_alive: Some(0.75),
            expected_purchases_90d: Some(1.5),
            expected_purchases_365d: None,
            expected_avg_value: Some(33.3),
            clv_12m: Some(99.9),
            churn_risk: Some(0.25),
            nps_last: Some(9),
            nps_class: Some("promoter".into()),
            engagement_90d: 7,
            lifecycle_stage: Some("loyal".into()),
            value_tier: if prospect { None } else { Some("high".into()) },
            loyalty_index: None,
        }
    }

    #[test]
    fn scores_round_trip_with_nulls_and_exact_revenue() {
        let d = tempfile::tempdir().unwrap();
        let rows = vec![row("B", false), row("A", true)];
        write(d.path(), &rows).unwrap();
        let back = read(d.path()).unwrap();
        assert_eq!(back, vec![rows[1].clone(), rows[0].clone()]);
    }

    #[test]
    fn as_of_folders_are_listed_in_date_order() {
        let d = tempfile::tempdir().unwrap();
        for day in [
            "2026-03-02",
            "2026-01-05",
            "junk",
            "+10000-01-01",
            "2026-1-9",
        ] {
            std::fs::create_dir_all(d.path().join("scores").join(format!("as_of={day}"))).unwrap();
        }
        let got: Vec<String> = dates(d.path()).iter().map(|d| d.to_string()).collect();
        assert_eq!(got, ["2026-01-05", "2026-03-02"]);
        assert!(
            dir_for(d.path(), NaiveDate::from_ymd_opt(2026, 1, 5).unwrap())
                .ends_with("scores/as_of=2026-01-05")
        );
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 31).unwrap()
    }

    #[test]
    fn publishing_the_same_scores_again_is_unchanged_and_new_ones_replace_them() {
        let d = tempfile::tempdir().unwrap();
        let wh = Warehouse::open(d.path()).unwrap();
        let first = vec![row("A", false)];
        assert_eq!(
            publish(&wh, day(), "r1", &first).unwrap(),
            Publication::Published
        );
        assert_eq!(
            publish(&wh, day(), "r2", &first).unwrap(),
            Publication::Unchanged
        );
        let second = vec![row("A", false), row("B", true)];
        assert_eq!(
            publish(&wh, day(), "r3", &second).unwrap(),
            Publication::Published
        );
        assert_eq!(read(&dir_for(d.path(), day())).unwrap(), second);
        let names: Vec<String> = fs::read_dir(d.path().join(DATASET))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["as_of=2026-03-31"],
            "no staging folder is left behind"
        );
    }

    #[test]
    fn opening_the_warehouse_puts_back_scores_a_crash_left_aside_and_removes_staging() {
        let d = tempfile::tempdir().unwrap();
        let rows = vec![row("A", false)];
        let scores = d.path().join(DATASET);
        // Killed between the two renames: the published folder is aside, the new one staged.
        write(&scores.join(".as_of=2026-03-31.old-r1"), &rows).unwrap();
        write(&scores.join(".as_of=2026-03-31.new-r1"), &[row("B", true)]).unwrap();
        // Killed after the swap, before removing the old folder.
        write(&scores.join("as_of=2026-03-30"), &rows).unwrap();
        write(&scores.join(".as_of=2026-03-30.old-r2"), &[row("C", true)]).unwrap();
        // Not the protocol's: left alone.
        fs::create_dir_all(scores.join(".keep.me")).unwrap();
        drop(Warehouse::open(d.path()).unwrap());
        assert_eq!(read(&scores.join("as_of=2026-03-31")).unwrap(), rows);
        assert_eq!(read(&scores.join("as_of=2026-03-30")).unwrap(), rows);
        let mut names: Vec<String> = fs::read_dir(&scores)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".keep.me", "as_of=2026-03-30", "as_of=2026-03-31"]);
    }
}
