//! Per-customer summary statistics of `docs/scoring.md` ("Summary statistics"),
//! from plain numbers: UTC day numbers and occasion values. They are the inputs
//! of the BG/NBD and Gamma-Gamma models (x = frequency, t_x = recency, T).

use thiserror::Error;

/// Time unit of recency and T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// 7 days (`--period week`, the default).
    #[default]
    Week,
    /// 1 day (`--period day`).
    Day,
}

impl Period {
    /// Length of the period in days.
    pub fn days(self) -> f64 {
        match self {
            Period::Week => 7.0,
            Period::Day => 1.0,
        }
    }

    /// Length of the CLV month in periods (lifetimes' 4.345 weeks or 30 days).
    pub fn month(self) -> f64 {
        match self {
            Period::Week => 4.345,
            Period::Day => 30.0,
        }
    }
}

/// Why an occasion list cannot be summarised.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SummaryError {
    /// Occasion days must be strictly increasing (one entry per day).
    #[error("occasion {index}: day {day} is not after the previous occasion's day")]
    NotIncreasing {
        /// Position in the input.
        index: usize,
        /// Offending day number.
        day: i64,
    },
    /// An occasion value is NaN or infinite.
    #[error("occasion {index}: value is not finite")]
    NonFiniteValue {
        /// Position in the input.
        index: usize,
    },
}

/// The summary of one customer on `as_of`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerSummary {
    /// Number of purchase occasions.
    pub orders: u64,
    /// Repeat occasions: `orders - 1`, 0 for one-time buyers and prospects.
    pub frequency: u64,
    /// (last - first occasion) in periods; None for prospects.
    pub recency: Option<f64>,
    /// (as_of - first occasion) in periods; None for prospects.
    pub t: Option<f64>,
    /// Mean value of the repeat occasions; 0 when `frequency` = 0.
    pub monetary_avg: f64,
    /// Day number of the first occasion.
    pub first_day: Option<i64>,
    /// Day number of the last occasion.
    pub last_day: Option<i64>,
    /// as_of - last occasion, in days.
    pub days_since_last_purchase: Option<i64>,
}

impl CustomerSummary {
    /// (frequency, recency, T) of a purchaser, the BG/NBD inputs; `None` for a prospect.
    pub fn xtt(&self) -> Option<(f64, f64, f64)> {
        (self.orders > 0).then(|| {
            (
                self.frequency as f64,
                self.recency.unwrap_or(0.0),
                self.t.unwrap_or(0.0),
            )
        })
    }
}

/// Merges purchases (day, amount) into purchase occasions (day, that day's sum),
/// sorted by day. Amounts within a day are added in input order.
pub fn occasions_from_purchases(purchases: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut sorted = purchases.to_vec();
    // Stable sort keeps the input order within a day, so the sums are reproducible.
    sorted.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(sorted.len());
    for (day, amount) in sorted {
        match out.last_mut() {
            Some(last) if last.0 == day => last.1 += amount,
            _ => out.push((day, amount)),
        }
    }
    out
}

/// One customer's occasions up to a day, reduced to what their summary on
/// that day or any later one needs: the summary's day-independent part.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OccasionTotals {
    /// Number of purchase occasions.
    pub orders: u64,
    /// Day number of the first occasion.
    pub first_day: Option<i64>,
    /// Day number of the last occasion.
    pub last_day: Option<i64>,
    /// Sum of the repeat occasions' values, added in day order.
    pub repeat_sum: f64,
}

impl OccasionTotals {
    /// The occasions (sorted by day, one per day) up to `as_of_day`;
    /// later ones are ignored, so a full history can be passed for a backfill.
    pub fn of(occasions: &[(i64, f64)], as_of_day: i64) -> Result<Self, SummaryError> {
        OccasionTotals::default().then(occasions, as_of_day)
    }

    /// These totals followed by `occasions` (sorted by day, one per day, each
    /// after the last counted here), up to `as_of_day`: the same bits as
    /// [`OccasionTotals::of`] all of them, since the repeat values are
    /// added in day order either way.
    pub fn then(self, occasions: &[(i64, f64)], as_of_day: i64) -> Result<Self, SummaryError> {
        let mut previous: Option<i64> = self.last_day;
        let mut t = self;
        for (index, &(day, value)) in occasions.iter().enumerate() {
            if previous.is_some_and(|p| day <= p) {
                return Err(SummaryError::NotIncreasing { index, day });
            }
            previous = Some(day);
            if !value.is_finite() {
                return Err(SummaryError::NonFiniteValue { index });
            }
            if day > as_of_day {
                continue;
            }
            if t.first_day.is_none() {
                t.first_day = Some(day);
            } else {
                t.repeat_sum += value;
            }
            t.last_day = Some(day);
            t.orders += 1;
        }
        Ok(t)
    }

    /// The summary on `as_of_day`, which must not precede the last occasion counted.
    pub fn summary_on(self, as_of_day: i64, period: Period) -> CustomerSummary {
        let frequency = self.orders.saturating_sub(1);
        let days = |from: Option<i64>, to: Option<i64>| {
            from.zip(to).map(|(f, t)| (t - f) as f64 / period.days())
        };
        CustomerSummary {
            orders: self.orders,
            frequency,
            recency: days(self.first_day, self.last_day),
            t: days(self.first_day, Some(as_of_day)),
            monetary_avg: if frequency > 0 {
                self.repeat_sum / frequency as f64
            } else {
                0.0
            },
            first_day: self.first_day,
            last_day: self.last_day,
            days_since_last_purchase: self.last_day.map(|l| as_of_day - l),
        }
    }
}

/// Summarises one customer's occasions (sorted by day, one per day) as of
/// `as_of_day`. Occasions after `as_of_day` are ignored, so a full history can be
/// passed for a backfill.
pub fn summarize(
    occasions: &[(i64, f64)],
    as_of_day: i64,
    period: Period,
) -> Result<CustomerSummary, SummaryError> {
    OccasionTotals::of(occasions, as_of_day).map(|t| t.summary_on(as_of_day, period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_repeat_buyer_in_weeks() {
        let occ =
            occasions_from_purchases(&[(10, 5.0), (3, 1.0), (10, 2.5), (24, 4.0), (40, 100.0)]);
        assert_eq!(occ, [(3, 1.0), (10, 7.5), (24, 4.0), (40, 100.0)]);
        let s = summarize(&occ, 31, Period::Week).expect("summary");
        assert_eq!(s.orders, 3);
        assert_eq!(s.frequency, 2);
        assert_eq!(s.recency, Some(3.0));
        assert_eq!(s.t, Some(4.0));
        assert_eq!(s.monetary_avg, 5.75);
        assert_eq!(
            (s.first_day, s.last_day, s.days_since_last_purchase),
            (Some(3), Some(24), Some(7))
        );
        let d = summarize(&occ, 31, Period::Day).expect("summary");
        assert_eq!((d.recency, d.t), (Some(21.0), Some(28.0)));
    }

    #[test]
    fn prospect_and_one_time_buyer() {
        let p = summarize(&[], 100, Period::Week).expect("summary");
        assert_eq!(
            (p.orders, p.frequency, p.recency, p.t, p.monetary_avg),
            (0, 0, None, None, 0.0)
        );
        let one = summarize(&[(93, 20.0)], 100, Period::Week).expect("summary");
        assert_eq!(
            (
                one.orders,
                one.frequency,
                one.recency,
                one.t,
                one.monetary_avg
            ),
            (1, 0, Some(0.0), Some(1.0), 0.0)
        );
    }

    #[test]
    fn rejects_unsorted_or_duplicate_days() {
        assert_eq!(
            summarize(&[(5, 1.0), (5, 2.0)], 9, Period::Week),
            Err(SummaryError::NotIncreasing { index: 1, day: 5 })
        );
        assert_eq!(
            summarize(&[(5, f64::NAN)], 9, Period::Week),
            Err(SummaryError::NonFiniteValue { index: 0 })
        );
    }
}
