//! Exact money: fixed-point decimals in `i128`, never floats.
//!
//! Amounts as delivered keep 6 decimal places, currency rates 10, and amounts in
//! the base currency 16 (= 6 + 10), so `amount x rate` is exact with no
//! rounding per row, and sums of any realistic history stay far inside `i128`.

use std::fmt;
use std::str::FromStr;

/// Decimal places kept for an amount in its original currency.
pub const AMOUNT_SCALE: u32 = 6;
/// Decimal places kept for a currency rate.
pub const RATE_SCALE: u32 = 10;
/// Decimal places kept for an amount in the base currency.
pub const BASE_SCALE: u32 = AMOUNT_SCALE + RATE_SCALE;

/// Why a money value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a decimal number.
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
    /// The number has more decimal places than can be kept exactly.
    #[error("{value:?} has more than {max} decimal places")]
    TooPrecise { value: String, max: u32 },
    /// The number does not fit.
    #[error("{0:?} is too large")]
    Overflow(String),
    /// A currency code that is not three ASCII letters.
    #[error("{0:?} is not a three-letter currency code")]
    BadCurrency(String),
    /// A rate that is zero or negative.
    #[error("rate {0:?} must be greater than zero")]
    NonPositiveRate(String),
}

/// Parses a decimal text (`-12.50`, `+3`, `.5`, `1e3`, `1.5E-2`) into an integer
/// number of `10^-scale` units, exactly.
pub fn parse_fixed(text: &str, scale: u32) -> Result<i128, MoneyError> {
    let s = text.trim();
    let bad = || MoneyError::NotANumber(text.to_string());
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = body[i + 1..].parse().map_err(|_| bad())?;
            (&body[..i], e)
        }
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if !(-40..=40).contains(&exp) {
        return Err(MoneyError::Overflow(text.to_string()));
    }
    // Digits as one integer with `frac_len - exp` decimal places.
    let digits = int_part.bytes().chain(frac_part.bytes());
    let places = frac_part.len() as i64 - exp as i64;
    let mut value: i128 = 0;
    let mut dropped_nonzero = false;
    let keep = places - scale as i64; // how many trailing digits fall below the scale
    let total = int_part.len() + frac_part.len();
    for (i, b) in digits.enumerate() {
        let from_end = (total - i) as i64; // 1 for the last digit
        if keep > 0 && from_end <= keep {
            if b != b'0' {
                dropped_nonzero = true;
            }
            continue;
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as i128))
            .ok_or_else(|| MoneyError::Overflow(text.to_string()))?;
    }
    if dropped_nonzero {
        return Err(MoneyError::TooPrecise {
            value: text.to_string(),
            max: scale,
        });
    }
    if keep < 0 {
        for _ in 0..(-keep) {
            value = value
                .checked_mul(10)
                .ok_or_else(|| MoneyError::Overflow(text.to_string()))?;
        }
    }
    // Keep well inside i128 so products and sums cannot overflow.
    if value > 10i128.pow(30) {
        return Err(MoneyError::Overflow(text.to_string()));
    }
    Ok(if neg { -value } else { value })
}

/// Formats `units` at `scale` decimal places, trimming trailing zeros.
pub fn format_fixed(units: i128, scale: u32) -> String {
    let p = 10i128.pow(scale);
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    let (i, f) = (a / p as u128, a % p as u128);
    if f == 0 {
        return format!("{sign}{i}");
    }
    let frac = format!("{:0width$}", f, width = scale as usize);
    format!("{sign}{i}.{}", frac.trim_end_matches('0'))
}

macro_rules! fixed_type {
    ($name:ident, $scale:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub i128);

        impl $name {
            /// Decimal places of the raw units.
            pub const SCALE: u32 = $scale;
            /// Zero.
            pub const ZERO: $name = $name(0);

            /// The raw integer units (`10^-SCALE` each).
            pub fn units(self) -> i128 {
                self.0
            }

            /// An approximation for statistics; never use it to add money.
            pub fn to_f64(self) -> f64 {
                self.0 as f64 / 10f64.powi($scale as i32)
            }

            /// The absolute value.
            pub fn abs(self) -> Self {
                $name(self.0.abs())
            }

            /// Exact sum.
            pub fn checked_add(self, other: Self) -> Option<Self> {
                self.0.checked_add(other.0).map($name)
            }
        }

        impl FromStr for $name {
            type Err = MoneyError;
            fn from_str(s: &str) -> Result<Self, MoneyError> {
                parse_fixed(s, $scale).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&format_fixed(self.0, $scale))
            }
        }

        impl std::ops::Neg for $name {
            type Output = $name;
            fn neg(self) -> $name {
                $name(-self.0)
            }
        }
    };
}

fixed_type!(
    Amount,
    AMOUNT_SCALE,
    "An amount in its original currency, exact to 6 decimal places."
);
fixed_type!(
    Rate,
    RATE_SCALE,
    "A currency rate to the base currency, exact to 10 decimal places."
);
fixed_type!(
    BaseAmount,
    BASE_SCALE,
    "An amount in the base currency, exact to 16 decimal places."
);

impl Amount {
    /// An amount given in minor units with `decimals` places (e.g. cents: 2).
    pub fn from_minor(minor: i64, decimals: u32) -> Amount {
        Amount(minor as i128 * 10i128.pow(AMOUNT_SCALE - decimals.min(AMOUNT_SCALE)))
    }

    /// The exact value in the base currency at `rate`.
    pub fn to_base(self, rate: Rate) -> BaseAmount {
        BaseAmount(self.0 * rate.0)
    }
}

impl Rate {
    /// The rate of the base currency itself.
    pub const ONE: Rate = Rate(10i128.pow(RATE_SCALE));

    /// Parses a rate, which must be greater than zero.
    pub fn parse_positive(s: &str) -> Result<Rate, MoneyError> {
        let r: Rate = s.parse()?;
        if r.0 <= 0 {
            return Err(MoneyError::NonPositiveRate(s.to_string()));
        }
        Ok(r)
    }
}

impl std::iter::Sum for BaseAmount {
    fn sum<I: Iterator<Item = BaseAmount>>(iter: I) -> BaseAmount {
        BaseAmount(iter.map(|a| a.0).sum())
    }
}

/// An ISO 4217 currency code, stored upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code case-insensitively (`usd` -> `USD`).
    pub fn parse(s: &str) -> Result<Currency, MoneyError> {
        let t = s.trim().as_bytes();
        if t.len() != 3 || !t.iter().all(u8::is_ascii_alphabetic) {
            return Err(MoneyError::BadCurrency(s.to_string()));
        }
        Ok(Currency([
            t[0].to_ascii_uppercase(),
            t[1].to_ascii_uppercase(),
            t[2].to_ascii_uppercase(),
        ]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        Currency::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_contract_forms_exactly() {
        assert_eq!("12.50".parse::<Amount>().unwrap(), Amount(12_500_000));
        assert_eq!("12.5".parse::<Amount>().unwrap(), Amount(12_500_000));
        assert_eq!("-3".parse::<Amount>().unwrap(), Amount(-3_000_000));
        assert_eq!("+.5".parse::<Amount>().unwrap(), Amount(500_000));
        assert_eq!("1e2".parse::<Amount>().unwrap(), Amount(100_000_000));
        assert_eq!("1.5E-2".parse::<Amount>().unwrap(), Amount(15_000));
        assert_eq!(
            " 7.1000000000 ".parse::<Amount>().unwrap(),
            Amount(7_100_000)
        );
    }

    #[test]
    fn rejects_what_is_not_money() {
        for s in ["", "abc", "1.2.3", "12,50", "-", ".", "1e", "$5", "1e99"] {
            assert!(s.parse::<Amount>().is_err(), "{s:?} should not parse");
        }
        assert!(matches!(
            "0.0000001".parse::<Amount>(),
            Err(MoneyError::TooPrecise { .. })
        ));
    }

    #[test]
    fn conversion_to_base_is_exact() {
        let a: Amount = "59.90".parse().unwrap();
        let r = Rate::parse_positive("0.14").unwrap();
        assert_eq!(a.to_base(r).to_string(), "8.386");
        // Float arithmetic famously gets 0.1 + 0.2 wrong; fixed point does not.
        let s: BaseAmount = ["0.1", "0.2"]
            .iter()
            .map(|x| x.parse::<Amount>().unwrap().to_base(Rate::ONE))
            .sum();
        assert_eq!(s.to_string(), "0.3");
    }

    #[test]
    fn minor_units_and_rates() {
        assert_eq!(Amount::from_minor(5990, 2).to_string(), "59.9");
        assert!(Rate::parse_positive("0").is_err());
        assert!(Rate::parse_positive("-1").is_err());
    }

    #[test]
    fn currency_codes_are_upper_cased_and_checked() {
        assert_eq!(Currency::parse(" cny").unwrap().as_str(), "CNY");
        assert!(Currency::parse("US").is_err());
        assert!(Currency::parse("U$D").is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(units in -10i128.pow(20)..10i128.pow(20)) {
            let a = Amount(units);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }
    }
}
