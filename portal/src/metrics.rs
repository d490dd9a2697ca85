//! Prometheus metrics of one portal process, served at `/metrics`: GraphQL
//! requests and their latency by operation name, errors by code, answers
//! submitted. Each server has its own registry (several in one test process).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::graphql::errors::ErrorCode;

/// Distinct operation names labelled before the rest count as `other`:
/// names come from clients, and each one is a time series.
const MAX_OPERATION_LABELS: usize = 200;
/// Longest operation name kept as a label.
const MAX_OPERATION_CHARS: usize = 64;

/// The portal's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    errors: IntCounterVec,
    /// Survey answers stored (new or replacing an earlier one).
    pub answers_submitted: IntCounter,
    /// SQL statements started on the pool's connections (what a query costs).
    pub db_statements: IntCounter,
    /// Campaign messages by fate recorded by this process's sender
    /// (`sent`, `retry`, `failed`, `in_doubt`, `suppressed`).
    pub campaign_messages: IntCounterVec,
    operations: Mutex<HashSet<String>>,
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "cvm_portal_graphql_requests_total",
                "GraphQL requests, by operation name",
            ),
            &["operation"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "cvm_portal_graphql_request_duration_seconds",
                "GraphQL request latency (authentication included), by operation name",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["operation"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "cvm_portal_graphql_errors_total",
                "GraphQL errors, by extensions.code",
            ),
            &["code"],
        )?;
        let answers_submitted = IntCounter::new(
            "cvm_portal_answers_submitted_total",
            "Survey answers stored (new or replacing an earlier one)",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        let db_statements = IntCounter::new(
            "cvm_portal_db_statements_total",
            "SQL statements started on pooled database connections",
        )?;
        let campaign_messages = IntCounterVec::new(
            Opts::new(
                "cvm_portal_campaign_messages_total",
                "Campaign messages by the fate this process's sender recorded",
            ),
            &["fate"],
        )?;
        registry.register(Box::new(answers_submitted.clone()))?;
        registry.register(Box::new(db_statements.clone()))?;
        registry.register(Box::new(campaign_messages.clone()))?;
        for fate in ["sent", "retry", "failed", "in_doubt", "suppressed"] {
            campaign_messages.with_label_values(&[fate]);
        }
        // Every code from the start, so a rate() over a code that never
        // happened yet is 0, not missing.
        for code in ErrorCode::ALL {
            errors.with_label_values(&[code.as_str()]);
        }
        Ok(Metrics {
            registry,
            requests,
            latency,
            errors,
            answers_submitted,
            db_statements,
            campaign_messages,
            operations: Mutex::new(HashSet::new()),
        })
    }

    /// The label of an operation name: itself while it is a plain name and
    /// fewer than [`MAX_OPERATION_LABELS`] are known, else `other`.
    fn operation_label(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() <= MAX_OPERATION_CHARS
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain {
            return "other".into();
        }
        let Ok(mut known) = self.operations.lock() else {
            return "other".into();
        };
        if known.contains(name) || known.len() < MAX_OPERATION_LABELS {
            known.insert(name.to_string());
            name.to_string()
        } else {
            "other".into()
        }
    }

    /// Records one GraphQL request.
    pub fn observe_graphql<'a>(
        &self,
        operation: &str,
        took: Duration,
        error_codes: impl Iterator<Item = &'a str>,
    ) {
        let label = self.operation_label(operation);
        self.requests.with_label_values(&[label.as_str()]).inc();
        self.latency
            .with_label_values(&[label.as_str()])
            .observe(took.as_secs_f64());
        for code in error_codes {
            // Only known codes: each is a time series.
            if let Some(c) = ErrorCode::ALL.iter().find(|c| c.as_str() == code) {
                self.errors.with_label_values(&[c.as_str()]).inc();
            }
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_errors_by_code() {
        let m = Metrics::new().unwrap();
        m.observe_graphql("Me", Duration::from_millis(3), ["FORBIDDEN"].into_iter());
        m.observe_graphql("Me", Duration::from_millis(3), std::iter::empty());
        let text = m.render().unwrap();
        assert!(
            text.contains(r#"cvm_portal_graphql_requests_total{operation="Me"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cvm_portal_graphql_errors_total{code="FORBIDDEN"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cvm_portal_graphql_errors_total{code="INTERNAL"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("cvm_portal_graphql_request_duration_seconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn client_chosen_operation_names_cannot_grow_the_series_without_bound() {
        let m = Metrics::new().unwrap();
        for i in 0..MAX_OPERATION_LABELS + 50 {
            m.observe_graphql(&format!("Op{i}"), Duration::ZERO, std::iter::empty());
        }
        m.observe_graphql("bad name\"}", Duration::ZERO, std::iter::empty());
        let text = m.render().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("cvm_portal_graphql_requests_total{"))
            .count();
        assert_eq!(series, MAX_OPERATION_LABELS + 1, "the names, then `other`");
        assert!(text.contains(r#"cvm_portal_graphql_requests_total{operation="other"} 51"#));
    }
}
