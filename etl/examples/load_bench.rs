//! Benchmark of `cvm-etl load`: writes a synthetic warehouse of N customers
//! with scores, then times a first load (inserts) and a second (updates) into
//! each database URL given. Run it through `ops/bench/load.sh`.
//!
//! Usage: load_bench --customers N --warehouse DIR URL...
//! (`CVM_LOG=cvm_shared=debug` prints the time of each table's phases.)

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use cvm_etl::jobs::load;
use cvm_etl::warehouse::{self, CustomerRow, ScoreRow};
use cvm_shared::{BaseAmount, Channel};

fn customers(n: usize) -> Vec<CustomerRow> {
    let base = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    (0..n)
        .map(|i| {
            let guest = i % 5 == 0;
            CustomerRow {
                customer_id: if guest {
                    format!("G{i:09}")
                } else {
                    format!("C{i:09}")
                }
                .into(),
                is_guest: guest,
                email: Some(format!("customer{i}@example.com").into()),
                phone: (i % 2 == 0).then(|| format!("+4420{i:08}").into()),
                first_name: Some("Alex".into()),
                last_name: Some("Smith".into()),
                country: Some(["GB", "US", "DE", "FR"][i % 4].into()),
                signup_date: (!guest).then(|| base + chrono::Days::new((i % 1500) as u64)),
                birth_date: None,
                email_opt_in: !guest && i % 3 == 0,
                updated_at: (!guest).then_some(1_700_000_000_000_000 + i as i64),
                first_seen: Some(1_600_000_000_000_000 + i as i64 * 1_000),
                channels: vec![Channel::Pos, Channel::Web],
            }
        })
        .collect()
}

fn scores(cs: &[CustomerRow], as_of: NaiveDate) -> Vec<ScoreRow> {
    cs.iter()
        .enumerate()
        .map(|(i, c)| ScoreRow {
            customer_id: c.customer_id.clone(),
            as_of,
            orders: (i % 9) as u32,
            frequency: (i % 9).saturating_sub(1) as u32,
            recency: (i % 50) as f64,
            t: 60.0,
            monetary_avg: 42.5,
            total_revenue: format!("{}.{:02}", i % 10_000, i % 100)
                .parse::<BaseAmount>()
                .unwrap_or_default(),
            first_purchase: Some(as_of - chrono::Days::new(400)),
            last_purchase: Some(as_of - chrono::Days::new((i % 300) as u64)),
            days_since_last_purchase: Some((i % 300) as i32),
            r_score: Some((i % 5 + 1) as u8),
            f_score: Some(((i / 5) % 5 + 1) as u8),
            m_score: Some(((i / 25) % 5 + 1) as u8),
            rfm_segment: "Loyal".into(),
            p_alive: Some(0.8),
            expected_purchases_90d: Some(0.4),
            expected_purchases_365d: Some(1.6),
            expected_avg_value: Some(40.0),
            clv_12m: Some(64.0),
            churn_risk: Some(0.2),
            nps_last: (i % 7 == 0).then_some(9),
            nps_class: (i % 7 == 0).then(|| "promoter".into()),
            engagement_90d: (i % 20) as u32,
            lifecycle_stage: Some("active".into()),
            value_tier: Some("medium".into()),
            loyalty_index: Some(55.5),
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages (a busy machine skews the figures).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // CVM_LOG=cvm_shared=debug prints each table's phases.
    if let Ok(filter) = std::env::var("CVM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let (mut n, mut wh, mut urls) = (
        1_000_000usize,
        PathBuf::from("target/bench-warehouse"),
        Vec::new(),
    );
    while let Some(a) = args.next() {
        match a.as_str() {
            "--customers" => n = args.next().ok_or("--customers N")?.parse()?,
            "--warehouse" => wh = PathBuf::from(args.next().ok_or("--warehouse DIR")?),
            _ => urls.push(a),
        }
    }
    let as_of = NaiveDate::from_ymd_opt(2024, 6, 30).ok_or("date")?;
    if !wh.join("customers").exists() {
        let t = Instant::now();
        let cs = customers(n);
        warehouse::customers::write(&wh.join("customers"), &cs)?;
        warehouse::scores::write(&warehouse::scores::dir_for(&wh, as_of), &scores(&cs, as_of))?;
        eprintln!(
            "wrote a warehouse of {n} customers with scores in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    for url in &urls {
        let name = cvm_shared::db::redact_url(url);
        for pass in ["first load (insert)", "second load (update)"] {
            let load = load_average();
            let t = Instant::now();
            let r = load::run(&load::LoadOptions {
                warehouse: wh.clone(),
                db_url: url.clone(),
                as_of: None,
            })?;
            println!(
                "{name}: {pass}: {} customers + {} scores in {:.2} s (job {:.2} s; load average before: {load})",
                r.customers,
                r.scores,
                t.elapsed().as_secs_f64(),
                r.seconds
            );
        }
    }
    Ok(())
}
