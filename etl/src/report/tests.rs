use std::collections::BTreeMap;

use chrono::NaiveDate;
use cvm_shared::BaseAmount;

use super::*;
use crate::manifest::evaluate::{CalibrationRow, Metrics, TrackingPoint};

fn model(params: &[(&str, f64)]) -> ModelReport {
    ModelReport {
        params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        log_likelihood: Some(-9582.43),
        customers: 2357.0,
        distinct_rows: 1500,
        iterations: 30,
        converged: true,
        reason: None,
        fit_ms: 12,
    }
}

fn row(i: u32) -> ScoreRow {
    let orders = i % 12;
    let purchaser = orders > 0;
    ScoreRow {
        customer_id: format!("c{i:05}").into(),
        as_of: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap_or_default(),
        orders,
        frequency: orders.saturating_sub(1),
        recency: f64::from(i % 40),
        t: 52.0,
        monetary_avg: 20.0,
        total_revenue: BaseAmount(i128::from(i) * 1000),
        first_purchase: None,
        last_purchase: None,
        days_since_last_purchase: purchaser.then_some((i * 37 % 900) as i32),
        r_score: None,
        f_score: None,
        m_score: None,
        rfm_segment: "Champions".into(),
        p_alive: purchaser.then_some(f64::from(i % 100) / 100.0),
        expected_purchases_90d: None,
        expected_purchases_365d: None,
        expected_avg_value: None,
        clv_12m: purchaser.then_some(f64::from(i % 50) * 3.0 + if i == 7 { 10_000.0 } else { 0.0 }),
        churn_risk: None,
        nps_last: None,
        nps_class: None,
        engagement_90d: 0,
        lifecycle_stage: Some(if purchaser { "active" } else { "prospect" }.into()),
        value_tier: Some(
            if !purchaser {
                "none"
            } else if i.is_multiple_of(5) {
                "high"
            } else {
                "low"
            }
            .into(),
        ),
        loyalty_index: None,
    }
}

fn manifest(rows: &[ScoreRow]) -> ScoreManifest {
    let tally = |f: &dyn Fn(&ScoreRow) -> String| {
        let mut m = BTreeMap::new();
        for r in rows {
            *m.entry(f(r)).or_insert(0u64) += 1;
        }
        m
    };
    let mut segments = tally(&|r: &ScoreRow| r.rfm_segment.to_string());
    segments.insert("Odd <b>&amp; \"name\"</b>".into(), 3);
    ScoreManifest {
        run_id: "20240630T000000.000Z-score-abcd".into(),
        command: "score".into(),
        status: "published".into(),
        as_of: "2024-06-30".into(),
        period: "week".into(),
        warehouse_version: Some("v<1>".into()),
        started_at: "2024-07-01T00:00:00.000Z".into(),
        finished_at: "2024-07-01T00:00:01.000Z".into(),
        timings_ms: BTreeMap::from([("total".to_string(), 1000)]),
        customers: rows.len() as u64,
        purchasers: rows.iter().filter(|r| r.orders > 0).count() as u64,
        repeat_buyers: rows.iter().filter(|r| r.frequency > 0).count() as u64,
        transactions: 12345,
        purchases_from: "transactions".into(),
        feedback: BTreeMap::new(),
        bgnbd: model(&[("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)]),
        gamma_gamma: ModelReport {
            converged: false,
            reason: Some("no convergence <after> 3 iterations".into()),
            ..model(&[])
        },
        segments,
        lifecycle_stages: tally(&|r: &ScoreRow| {
            r.lifecycle_stage.as_deref().unwrap_or("null").to_string()
        }),
        value_tiers: tally(&|r: &ScoreRow| r.value_tier.as_deref().unwrap_or("null").to_string()),
        output: "/tmp/wh/scores/as_of=2024-06-30".into(),
        settings: cvm_shared::config::ScoringSettings::default(),
        versions: BTreeMap::new(),
    }
}

/// No reference that a browser would fetch, and no script.
fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for bad in [
        "http://", "https://", "<script", "<link", "src=", "@import", "url(",
    ] {
        assert!(!html.contains(bad), "report contains {bad:?}");
    }
    assert!(html.contains("<svg"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
}

#[test]
fn score_report_is_self_contained_html_with_every_segment() {
    let rows: Vec<ScoreRow> = (0..500).map(row).collect();
    let html = score_report(&manifest(&rows), &rows).unwrap();
    assert_self_contained(&html);
    assert!(
        html.matches("<svg").count() >= 5,
        "segments, stages, CLV, tiers, P(alive)"
    );
    for s in SEGMENTS {
        assert!(html.contains(s.as_str()), "segment {} missing", s.as_str());
    }
    for s in STAGES {
        assert!(html.contains(s.as_str()), "stage {} missing", s.as_str());
    }
    assert!(html.contains("r = 0.2430") && html.contains("-9582.43"));
}

#[test]
fn score_report_escapes_every_text() {
    let rows: Vec<ScoreRow> = (0..50).map(row).collect();
    let html = score_report(&manifest(&rows), &rows).unwrap();
    assert!(!html.contains("Odd <b>") && !html.contains("<after>") && !html.contains("v<1>"));
    assert!(html.contains("Odd &lt;b&gt;&amp;amp; &quot;name&quot;&lt;/b&gt;"));
    assert!(html.contains("no convergence &lt;after&gt; 3 iterations"));
    assert!(html.contains("v&lt;1&gt;"));
}

#[test]
fn score_report_without_models_or_customers_still_renders() {
    let mut m = manifest(&[]);
    m.bgnbd = ModelReport {
        converged: false,
        reason: Some("no customers to fit".into()),
        ..model(&[])
    };
    let html = score_report(&m, &[]).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("BG/NBD could not be fitted"));
}

#[test]
fn clv_bins_clip_at_the_99th_percentile() {
    let mut v: Vec<f64> = (0..1000).map(f64::from).collect();
    v.push(1e9);
    let (bins, above) = clv_bins(&v, 10);
    assert_eq!(bins.len(), 10);
    assert_eq!(bins.iter().map(|b| b.2).sum::<u64>() + above, 1001);
    assert!((1..=12).contains(&above));
    assert_eq!(clv_bins(&[], 5).0.len(), 5);
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(1234), "1,234");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

#[test]
fn evaluation_report_charts_the_calibration_table() {
    let m = EvaluateManifest {
        run_id: "r".into(),
        command: "evaluate".into(),
        calibration_end: "1997-09-30".into(),
        holdout_end: "1998-06-30".into(),
        period: "week".into(),
        holdout_periods: 39.0,
        warehouse_version: None,
        started_at: String::new(),
        finished_at: String::new(),
        timings_ms: BTreeMap::new(),
        customers: 10,
        transactions: 20,
        bgnbd: model(&[("r", 0.2)]),
        gamma_gamma: model(&[("p", 6.0)]),
        metrics: Metrics {
            customers: 10,
            mae: 0.5,
            rmse: 0.9,
            total_actual: 12,
            total_predicted: 11.5,
            total_error_pct: Some(-4.2),
        },
        calibration_table: (0..8)
            .map(|k| CalibrationRow {
                calibration_frequency: if k == 7 { "7+".into() } else { k.to_string() },
                customers: 10,
                mean_actual: f64::from(k) * 0.8,
                mean_predicted: f64::from(k) * 0.75,
            })
            .collect(),
        tracking: (1..=78)
            .map(|k| TrackingPoint {
                period: k,
                date: format!("1997-{:02}-01", (k % 12) + 1),
                actual: u64::from(k) * 50,
                predicted: f64::from(k) * 49.0,
            })
            .collect(),
        output: String::new(),
        versions: BTreeMap::new(),
    };
    let html = evaluation_report(&m).unwrap();
    assert_self_contained(&html);
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("7+") && html.contains("end of calibration") && html.contains("-4.2%"));
}
