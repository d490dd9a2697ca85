//! The scoring job end to end on the paper's CDNOW sample: ingest the
//! transactions, score as of 1997-09-30 in weeks, and compare with the
//! published summary and estimates (Fader, Hardie & Lee 2005).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cvm_etl::jobs::ingest::{self, IngestOptions};
use cvm_etl::jobs::score::{self, ScoreError, ScoreOptions};
use cvm_shared::Settings;

fn cdnow(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/cdnow")
        .join(file)
}

fn ingest_files(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    let input = root.join("drop");
    for (rel, text) in files {
        let p = input.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let wh = root.join("wh");
    ingest::run(&IngestOptions::new(input, wh.clone())).unwrap();
    wh
}

fn score(wh: &Path, as_of: &str) -> Result<score::ScoreReport, ScoreError> {
    score::run(&ScoreOptions {
        warehouse: wh.to_path_buf(),
        as_of: as_of.parse::<NaiveDate>().unwrap(),
        settings: Settings::default(),
    })
}

fn round(x: f64, places: i32) -> f64 {
    let p = 10f64.powi(places);
    (x * p).round() / p
}

#[test]
fn the_cdnow_sample_reproduces_the_published_summary_and_estimates() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(cdnow("sample_transactions.csv")).unwrap();
    let wh = ingest_files(d.path(), &[("transactions/sample.csv", &text)]);
    let r = score(&wh, "1997-09-30").unwrap();
    assert_eq!(r.manifest.customers, 2357);

    let published = std::fs::read_to_string(cdnow("cdnow_customers_summary.csv")).unwrap();
    let by_id: HashMap<&str, &cvm_etl::warehouse::ScoreRow> =
        r.rows.iter().map(|s| (&*s.customer_id, s)).collect();
    let mut checked = 0;
    for line in published.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let s = by_id[f[0]];
        assert_eq!(
            s.frequency,
            f[1].parse::<u32>().unwrap(),
            "customer {}",
            f[0]
        );
        assert_eq!(
            round(s.recency, 2),
            f[2].parse::<f64>().unwrap(),
            "customer {}",
            f[0]
        );
        assert_eq!(
            round(s.t, 2),
            f[3].parse::<f64>().unwrap(),
            "customer {}",
            f[0]
        );
        checked += 1;
    }
    assert_eq!(checked, 2357);

    let bg = &r.manifest.bgnbd;
    assert!(bg.converged);
    let p = |k: &str| round(bg.params[k], 3);
    assert_eq!(
        (p("r"), p("alpha"), p("a"), p("b")),
        (0.243, 4.414, 0.793, 2.426)
    );
    assert_eq!(round(bg.log_likelihood.unwrap(), 1), -9582.4);
    let gg = &r.manifest.gamma_gamma;
    let q = |k: &str| round(gg.params[k], 2);
    assert_eq!((q("p"), q("q"), q("v")), (6.25, 3.74, 15.44));
    assert_eq!(round(gg.log_likelihood.unwrap(), 1), -4055.9);
    assert_eq!(gg.customers, 946.0);

    // Every customer has a complete, consistent row.
    for s in &r.rows {
        let pa = s.p_alive.unwrap();
        assert!((0.0..=1.0).contains(&pa));
        assert!((s.churn_risk.unwrap() - (1.0 - pa)).abs() < 1e-15);
        assert!(s.expected_purchases_365d.unwrap() >= s.expected_purchases_90d.unwrap());
        assert!(s.clv_12m.unwrap() >= 0.0);
        assert!(s.lifecycle_stage.is_some() && s.value_tier.is_some());
    }
}

#[test]
fn scoring_twice_changes_nothing_and_a_past_date_sees_only_its_past() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(cdnow("sample_transactions.csv")).unwrap();
    let wh = ingest_files(d.path(), &[("transactions/sample.csv", &text)]);
    let first = score(&wh, "1997-09-30").unwrap();
    let again = score(&wh, "1997-09-30").unwrap();
    assert_eq!(first.manifest.status, "published");
    assert_eq!(again.manifest.status, "unchanged");
    assert_eq!(first.rows, again.rows);
    let early = score(&wh, "1997-01-31").unwrap();
    assert!(
        early.manifest.customers < 2357,
        "customers first seen later are not known yet"
    );
    assert_eq!(cvm_etl::warehouse::scores::dates(&wh).len(), 2);
}

#[test]
fn scoring_an_empty_warehouse_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let err = score(&d.path().join("wh"), "2026-01-01").unwrap_err();
    assert!(matches!(err, ScoreError::Empty(_)), "{err}");
    assert!(err.to_string().contains("ingest"));
}

#[test]
fn when_the_models_cannot_be_fitted_everything_else_is_still_published() {
    let d = tempfile::tempdir().unwrap();
    // Only one-time buyers, one refund, one prospect: BG/NBD cannot identify a, b.
    let wh = ingest_files(
        d.path(),
        &[
            (
                "crm/c.csv",
                "customer_id,email\nP1,p1@example.com\nC1,c1@example.com\n",
            ),
            (
                "transactions/t.csv",
                "customer_id,occurred_at,amount\nC1,2026-01-05,10\nC2,2026-01-06,0\nC3,2026-01-07,-4\n",
            ),
        ],
    );
    let r = score(&wh, "2026-02-01").unwrap();
    assert!(!r.manifest.bgnbd.converged);
    assert!(r.manifest.bgnbd.reason.is_some());
    let row = |id: &str| r.rows.iter().find(|s| &*s.customer_id == id).unwrap();
    assert_eq!(row("C1").p_alive, None);
    assert_eq!(row("C1").clv_12m, None);
    assert_eq!(row("C1").r_score, Some(1));
    assert_eq!(&*row("P1").rfm_segment, "Prospect");
    assert_eq!(row("P1").lifecycle_stage.as_deref(), Some("prospect"));
    assert_eq!(row("C1").lifecycle_stage.as_deref(), Some("new"));
    assert_eq!(row("C3").orders, 0, "refunds never create occasions");
    assert_eq!(row("C3").total_revenue.to_string(), "-4");
}

#[test]
fn a_fully_refunded_order_is_no_purchase_occasion() {
    let d = tempfile::tempdir().unwrap();
    let wh = ingest_files(
        d.path(),
        &[(
            "transactions/t.csv",
            "customer_id,occurred_at,amount,order_id\nA,2026-01-05,10,O1\nA,2026-01-06,-10,O1\nA,2026-01-10,5,O2\nA,2026-01-20,8,O3\nA,2026-01-21,-3,O3\n",
        )],
    );
    let r = score(&wh, "2026-02-01").unwrap();
    let a = &r.rows[0];
    assert_eq!(
        (a.orders, a.frequency),
        (2, 1),
        "O1 is fully refunded; O3 only partly"
    );
    assert_eq!(a.first_purchase, NaiveDate::from_ymd_opt(2026, 1, 10));
    assert_eq!(a.monetary_avg, 8.0, "an occasion's value is its purchases");
    assert_eq!(a.total_revenue.to_string(), "10");
}
