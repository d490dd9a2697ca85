//! Wall time per named step of a job, for its manifest (`timings_ms`) and
//! the debug log (with the resident memory after each step).

use std::collections::BTreeMap;
use std::time::Instant;

/// Times the steps of one job run.
#[derive(Debug)]
pub struct StepClock {
    job: &'static str,
    started: Instant,
    lap: Instant,
    timings: BTreeMap<String, u64>,
}

impl StepClock {
    /// Starts timing `job`'s first step.
    pub fn start(job: &'static str) -> StepClock {
        let now = Instant::now();
        StepClock {
            job,
            started: now,
            lap: now,
            timings: BTreeMap::new(),
        }
    }

    /// Ends the current step under `step`; the next one starts now.
    pub fn done(&mut self, step: &str) {
        let ms = self.lap.elapsed().as_millis() as u64;
        self.timings.insert(step.to_string(), ms);
        tracing::debug!(job = self.job, step, ms, memory = %crate::memory::resident(), "step done");
        self.lap = Instant::now();
    }

    /// Milliseconds per step so far.
    pub fn timings(&self) -> BTreeMap<String, u64> {
        self.timings.clone()
    }

    /// Milliseconds per step, plus `total` since the start.
    pub fn finish(mut self) -> BTreeMap<String, u64> {
        self.timings
            .insert("total".into(), self.started.elapsed().as_millis() as u64);
        self.timings
    }
}
