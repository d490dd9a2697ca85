//! Feedback: each customer's latest NPS answer on or before a day, from the
//! `feedback/*.csv` files in the warehouse (the nightly exports the portal's
//! answers there, so a past date can be re-scored without the database).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The latest NPS answer per customer, and what became of every answer read.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    /// Customer id to (answered at, in microseconds; score 0..=10).
    latest: HashMap<String, (i64, u8)>,
    /// Answers `used`, `after_as_of` and `malformed` (the manifest's `feedback`).
    pub(crate) counts: BTreeMap<String, u64>,
}

impl Feedback {
    /// The customer's latest NPS answer, if any.
    pub(crate) fn nps(&self, customer_id: &str) -> Option<u8> {
        self.latest.get(customer_id).map(|(_, s)| *s)
    }
}

/// Latest NPS answer on or before `end` per customer, from `feedback/*.csv`
/// (`customer_id,answered_at,score`) in the warehouse.
/// Unreadable files and malformed lines are skipped (and counted): feedback
/// refines the scores, it must not stop them.
pub(crate) fn read(warehouse: &Path, end: i64) -> Feedback {
    let mut out = Feedback::default();
    let Ok(entries) = std::fs::read_dir(warehouse.join("feedback")) else {
        return out;
    };
    let (latest, counts) = (&mut out.latest, &mut out.counts);
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
    out
}
