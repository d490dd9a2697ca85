//! 12-month customer lifetime value, computed the way
//! `lifetimes.GammaGammaFitter.customer_lifetime_value` does (Fader, Hardie & Lee
//! 2005, "RFM and CLV: using iso-value curves for customer base analysis", with
//! a discrete monthly discounting instead of the paper's continuous DERT).

use super::bgnbd::BgNbdParams;

/// CLV settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClvOptions {
    /// Number of months summed.
    pub months: u32,
    /// Monthly discount rate d.
    pub discount_rate: f64,
    /// Profit margin applied to the expected value.
    pub margin: f64,
    /// Length of a month in model periods (4.345 weeks or 30 days).
    pub month_periods: f64,
}

impl Default for ClvOptions {
    fn default() -> Self {
        Self {
            months: 12,
            discount_rate: 0.01,
            margin: 1.0,
            month_periods: 4.345,
        }
    }
}

/// Discounted expected value of the next `months` months:
/// sum over i of (E[X(end of month i)] - E[X(end of month i-1)]) * value * margin / (1+d)^i.
///
/// The month boundaries are i * month and (i * month) - month, and the discount
/// exponent is (i * month) / month, exactly as lifetimes forms them in floating
/// point, so that results agree to the last bits. A negative monthly increment
/// (only possible as rounding noise) counts as zero, so the CLV is never negative
/// for a non-negative value.
pub fn clv(
    bg: &BgNbdParams,
    x: f64,
    t_x: f64,
    t: f64,
    expected_avg_value: f64,
    opts: &ClvOptions,
) -> f64 {
    let factor = opts.month_periods;
    let value = expected_avg_value * opts.margin;
    let expected = |h: f64| bg.conditional_expected_purchases(h, x, t_x, t);
    let mut total = 0.0;
    // A month's start is usually the bits of the previous month's end: its
    // expectation is then reused, which halves the work and changes no bit.
    let mut previous = (0.0_f64, expected(0.0));
    for i in 1..=opts.months {
        let end = f64::from(i) * factor;
        let start = end - factor;
        let at_start = if start.to_bits() == previous.0.to_bits() {
            previous.1
        } else {
            expected(start)
        };
        let at_end = expected(end);
        let increment = at_end - at_start;
        total += value * increment.max(0.0) / (1.0 + opts.discount_rate).powf(end / factor);
        previous = (end, at_end);
    }
    total
}
