//! The run manifest (`runs/<run_id>/manifest.json`): what a run read, what
//! became of every record, timings, settings and versions. Written for
//! people and for monitoring, so field names are stable. One submodule per
//! command's manifest; the helpers every run uses live here.

pub mod evaluate;
pub mod ingest;
pub mod score;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::record::{Outcome, RejectReason};

/// Outcome counts of one input file (or of a whole run). They add up:
/// `records = accepted + duplicate + ignored + anonymous + rejected + erased`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Records read.
    pub records: u64,
    /// Taken into the warehouse.
    pub accepted: u64,
    /// Superseded versions.
    pub duplicate: u64,
    /// Dropped by rule.
    pub ignored: u64,
    /// Kept without a customer.
    pub anonymous: u64,
    /// Rejected, total.
    pub rejected: u64,
    /// Rejected, by reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Records of erased people, dropped on arrival.
    pub erased: u64,
}

impl Counts {
    /// Counts one record's outcome (and its reject reason).
    pub fn add(&mut self, outcome: Outcome, reason: Option<RejectReason>) {
        self.records += 1;
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Duplicate => self.duplicate += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Anonymous => self.anonymous += 1,
            Outcome::Erased => self.erased += 1,
            Outcome::Rejected => {
                self.rejected += 1;
                if let Some(r) = reason {
                    *self
                        .rejected_by_reason
                        .entry(r.as_str().to_string())
                        .or_default() += 1;
                }
            }
        }
    }

    /// Adds another file's counts.
    pub fn merge(&mut self, o: &Counts) {
        self.records += o.records;
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.ignored += o.ignored;
        self.anonymous += o.anonymous;
        self.rejected += o.rejected;
        self.erased += o.erased;
        for (k, v) in &o.rejected_by_reason {
            *self.rejected_by_reason.entry(k.clone()).or_default() += v;
        }
    }

    /// Whether the outcomes add up to the records read.
    pub fn balanced(&self) -> bool {
        self.records
            == self.accepted
                + self.duplicate
                + self.ignored
                + self.anonymous
                + self.rejected
                + self.erased
            && self.rejected == self.rejected_by_reason.values().sum::<u64>()
    }
}

/// Counts of one input file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCounts {
    /// Path relative to the drop.
    pub file: String,
    /// Source kind (folder).
    pub kind: String,
    /// Its outcome counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// Writes `value` as pretty JSON to `path` atomically (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Now, as the manifests write times (RFC 3339 UTC, milliseconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A run's id and clock: when it started and how long each step took.
#[derive(Debug)]
pub struct RunClock {
    run_id: String,
    started_at: String,
    started: Instant,
    lap: Instant,
    timings: BTreeMap<String, u64>,
}

/// When a run ran, as its manifest records it.
#[derive(Debug, Clone)]
pub struct RunTimes {
    /// Run id.
    pub run_id: String,
    /// Start (RFC 3339 UTC).
    pub started_at: String,
    /// End (RFC 3339 UTC).
    pub finished_at: String,
    /// Milliseconds per step, and `total`.
    pub timings_ms: BTreeMap<String, u64>,
}

impl RunClock {
    /// Starts a run of `command` and its first step.
    pub fn start(command: &str) -> RunClock {
        RunClock {
            started_at: now_rfc3339(),
            run_id: new_run_id(command),
            started: Instant::now(),
            lap: Instant::now(),
            timings: BTreeMap::new(),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Records the time since the previous step ended as step `name` (and
    /// logs it, with the resident memory, at debug level).
    pub fn lap(&mut self, name: &str) {
        let ms = self.lap.elapsed().as_millis() as u64;
        self.timings.insert(name.to_string(), ms);
        tracing::debug!(run = %self.run_id, step = name, ms, memory = %crate::memory::resident(), "step done");
        self.lap = Instant::now();
    }

    /// The run's start (RFC 3339 UTC).
    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    /// Milliseconds per step so far (a run that stops early records these).
    pub fn timings(&self) -> BTreeMap<String, u64> {
        self.timings.clone()
    }

    /// Stops the clock: the steps' timings and the run's `total`.
    pub fn finish(mut self) -> RunTimes {
        self.timings
            .insert("total".into(), self.started.elapsed().as_millis() as u64);
        RunTimes {
            run_id: self.run_id,
            started_at: self.started_at,
            finished_at: now_rfc3339(),
            timings_ms: self.timings,
        }
    }
}

/// A new run id: UTC timestamp (so ids sort by time) and a short random tail.
pub fn new_run_id(command: &str) -> String {
    let now = chrono::Utc::now();
    let tail = xxhash_rust::xxh3::xxh3_64(
        format!(
            "{}{}",
            now.timestamp_nanos_opt().unwrap_or(0),
            std::process::id()
        )
        .as_bytes(),
    );
    format!(
        "{}-{command}-{:04x}",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        tail & 0xffff
    )
}

/// The program versions recorded in every manifest.
pub fn program_versions() -> BTreeMap<String, String> {
    BTreeMap::from([("cvm-etl".to_string(), env!("CARGO_PKG_VERSION").to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up() {
        let mut c = Counts::default();
        c.add(Outcome::Accepted, None);
        c.add(Outcome::Rejected, Some(RejectReason::BadDate));
        c.add(Outcome::Rejected, Some(RejectReason::BadDate));
        let mut t = Counts::default();
        t.merge(&c);
        t.merge(&c);
        assert!(t.balanced());
        assert_eq!(t.rejected_by_reason["bad_date"], 4);
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id("ingest");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = new_run_id("ingest");
        assert!(a < b, "{a} {b}");
    }
}
