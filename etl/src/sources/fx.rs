//! `fx/rates.csv`: `currency,rate_to_base`, read before every other source.

use std::collections::HashMap;

use cvm_shared::{Currency, Rate};

use super::CsvRow;
use crate::record::{Parsed, Reject, RejectReason};

/// Parses one rate row.
pub fn parse(row: CsvRow<'_>) -> Parsed {
    let Some(code) = row.get("currency") else {
        return Parsed::Rejected(Reject::new(RejectReason::BadValue, "currency is missing"));
    };
    let Ok(currency) = Currency::parse(code) else {
        return Parsed::Rejected(Reject::new(
            RejectReason::BadValue,
            format!("currency {code:?} is not a currency code"),
        ));
    };
    let Some(rate) = row.get("rate_to_base") else {
        return Parsed::Rejected(Reject::new(
            RejectReason::BadAmount,
            "rate_to_base is missing",
        ));
    };
    match Rate::parse_positive(rate) {
        Ok(r) => Parsed::Fx(currency, r),
        Err(e) => Parsed::Rejected(Reject::new(
            RejectReason::BadAmount,
            format!("rate_to_base: {e}"),
        )),
    }
}

/// The rates of a run's fx files so far, to tell an identical repeat (a
/// duplicate) from a conflict.
#[derive(Debug, Default)]
pub struct RateBook {
    first: HashMap<Currency, (Rate, String, u64)>,
}

/// Two different rates for one currency. No rule can tell which is right and
/// either would convert every amount in that currency, so the run stops.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file} line {line}: currency {currency} has rate {rate}, but {first_file} line {first_line} gives {first_rate}: keep one rate per currency"
)]
pub struct RateConflict {
    /// The currency.
    pub currency: Currency,
    /// Where its first rate was read.
    pub first_file: String,
    /// The line of its first rate.
    pub first_line: u64,
    /// Its first rate.
    pub first_rate: Rate,
    /// Where the other rate was read.
    pub file: String,
    /// The line of the other rate.
    pub line: u64,
    /// The other rate.
    pub rate: Rate,
}

impl RateBook {
    /// Records `rate` for `currency`, read at `file` line `line`: `Ok(true)`
    /// when it is the currency's first rate, `Ok(false)` when it repeats it.
    pub fn add(
        &mut self,
        currency: Currency,
        rate: Rate,
        file: &str,
        line: u64,
    ) -> Result<bool, RateConflict> {
        match self.first.get(&currency) {
            None => {
                self.first.insert(currency, (rate, file.to_string(), line));
                Ok(true)
            }
            Some((first, _, _)) if *first == rate => Ok(false),
            Some((first_rate, first_file, first_line)) => Err(RateConflict {
                currency,
                first_file: first_file.clone(),
                first_line: *first_line,
                first_rate: *first_rate,
                file: file.to_string(),
                line,
                rate,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Header;

    fn run(fields: &[&str]) -> Parsed {
        let h = Header::new(["currency", "rate_to_base"]).unwrap();
        let r = csv::StringRecord::from(fields.to_vec());
        parse(CsvRow {
            header: &h,
            record: &r,
        })
    }

    #[test]
    fn a_valid_rate_is_read_exactly() {
        assert_eq!(
            run(&["cny", "0.14"]),
            Parsed::Fx(Currency::parse("CNY").unwrap(), Rate(1_400_000_000))
        );
    }

    #[test]
    fn a_repeated_rate_is_a_duplicate_and_a_different_one_a_conflict() {
        let eur = Currency::parse("EUR").unwrap();
        let rate = |r| Rate::parse_positive(r).unwrap();
        let mut book = RateBook::default();
        assert!(book.add(eur, rate("1.08"), "fx/rates.csv", 2).unwrap());
        assert!(!book.add(eur, rate("1.080"), "fx/rates.csv", 3).unwrap());
        let err = book
            .add(eur, rate("2.0"), "fx/rates.csv", 4)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "fx/rates.csv line 4: currency EUR has rate 2, but fx/rates.csv line 2 gives 1.08: keep one rate per currency"
        );
    }

    #[test]
    fn bad_rates_are_rejected_with_a_reason() {
        for (f, reason) in [
            (["CNY", "abc"], RejectReason::BadAmount),
            (["CNY", "0"], RejectReason::BadAmount),
            (["CNY", ""], RejectReason::BadAmount),
            (["C1", "1"], RejectReason::BadValue),
        ] {
            match run(&f) {
                Parsed::Rejected(r) => assert_eq!(r.reason, reason, "{f:?}"),
                other => panic!("{f:?}: {other:?}"),
            }
        }
    }
}
