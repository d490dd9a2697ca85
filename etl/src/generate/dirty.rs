//! Deliberately bad records. Each bad record is a good record with exactly one
//! defect, so the ingest must reject it for exactly one reason; the counts of
//! what was injected are the truth the ingest's reject counts are tested against.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::record::RejectReason;

/// The reasons the generator injects, in report order.
pub(crate) const INJECTED: [RejectReason; 6] = [
    RejectReason::BadDate,
    RejectReason::BadAmount,
    RejectReason::UnknownCurrency,
    RejectReason::MissingId,
    RejectReason::BadJson,
    RejectReason::BadRow,
];

/// Decides which records go bad and how, from its own random stream, so the
/// population is the same whatever the dirty ratio.
pub(crate) struct Corruptor {
    rng: ChaCha8Rng,
    ratio: f64,
    /// Injected bad records per reason, indexed like [`INJECTED`].
    pub counts: [u64; 6],
}

impl Corruptor {
    /// A corruptor turning about `ratio` of the records it is asked about bad.
    pub fn new(rng: ChaCha8Rng, ratio: f64) -> Corruptor {
        Corruptor {
            rng,
            ratio,
            counts: [0; 6],
        }
    }

    /// Whether the next record goes bad, and by which of `allowed` reasons.
    /// The caller must then apply exactly that defect.
    pub fn pick(&mut self, allowed: &[RejectReason]) -> Option<RejectReason> {
        if self.ratio <= 0.0 || allowed.is_empty() || self.rng.random::<f64>() >= self.ratio {
            return None;
        }
        let reason = allowed[self.rng.random_range(0..allowed.len())];
        if let Some(i) = INJECTED.iter().position(|r| *r == reason) {
            self.counts[i] += 1;
        }
        Some(reason)
    }

    /// A uniform draw in `0..n` from the corruptor's stream.
    pub fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// A local POS time that is not a valid time (impossible or unparseable).
    pub fn bad_local_time(&mut self) -> &'static str {
        const V: [&str; 4] = [
            "2024-02-30 10:00:00",
            "2025-13-01 09:30:00",
            "2024-06-31 12:00:00",
            "yesterday 10:00",
        ];
        V[self.index(V.len())]
    }

    /// An RFC 3339 time that is impossible or unparseable.
    pub fn bad_rfc3339(&mut self) -> &'static str {
        const V: [&str; 4] = [
            "2024-02-30T10:00:00Z",
            "2025-13-01T09:30:00+01:00",
            "2024-06-31T12:00:00Z",
            "not a date",
        ];
        V[self.index(V.len())]
    }

    /// A transactions `occurred_at` that is neither RFC 3339 nor a `YYYY-MM-DD` date.
    pub fn bad_date_or_time(&mut self) -> &'static str {
        const V: [&str; 4] = [
            "2024-02-30",
            "31/12/2024",
            "2025-13-01T09:30:00Z",
            "2024-06-31",
        ];
        V[self.index(V.len())]
    }

    /// Money text that is not a decimal number.
    pub fn bad_amount(&mut self) -> &'static str {
        const V: [&str; 4] = ["N/A", "12.3.4", "1O.00", "abc"];
        V[self.index(V.len())]
    }

    /// A well-formed currency code that has no rate in `fx/rates.csv`.
    pub fn unknown_currency(&mut self) -> &'static str {
        const V: [&str; 3] = ["XYZ", "BTC", "ZZZ"];
        V[self.index(V.len())]
    }

    /// Turns a valid JSON object line into text that is not a JSON object:
    /// either cut short (a proper prefix of an object never parses) or wrapped in an array.
    pub fn break_json(&mut self, line: &mut String) {
        if self.index(2) == 0 {
            let cut = (line.len() / 2).max(1);
            let mut cut = cut.min(line.len().saturating_sub(1));
            while cut > 1 && !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut.max(1));
        } else {
            line.insert(0, '[');
            line.push(']');
        }
    }

    /// A CSV row with one field too many or too few.
    pub fn break_row(&mut self, fields: &mut Vec<String>) {
        if self.index(2) == 0 && fields.len() > 2 {
            fields.pop();
        } else {
            fields.push("EXTRA".to_string());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn broken_json_never_parses_as_an_object() {
        let mut c = Corruptor::new(ChaCha8Rng::seed_from_u64(1), 1.0);
        for _ in 0..50 {
            let mut s =
                r#"{"order_id":"W-1","total":{"amount":"1.00","currency":"USD"}}"#.to_string();
            c.break_json(&mut s);
            let v: Result<serde_json::Value, _> = serde_json::from_str(&s);
            assert!(!matches!(v, Ok(serde_json::Value::Object(_))), "{s}");
        }
    }

    #[test]
    fn zero_ratio_never_picks() {
        let mut c = Corruptor::new(ChaCha8Rng::seed_from_u64(1), 0.0);
        assert!((0..1000).all(|_| c.pick(&INJECTED).is_none()));
        assert_eq!(c.counts, [0; 6]);
    }
}
