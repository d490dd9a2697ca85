//! `fx/rates.csv`: `currency,rate_to_base`, read before every other source.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Header;

    fn run(fields: &[&str]) -> Parsed {
        let h = Header::new(["currency", "rate_to_base"]);
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
