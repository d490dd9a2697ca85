//! Values both databases store as they are. A load checks its rows against
//! these so that no single row can fail it: PostgreSQL refuses a NUL in text
//! (`invalid byte sequence for encoding "UTF8": 0x00`) and dates before its
//! Julian day 0; SQLite stores a NaN as NULL, which a `NOT NULL` column
//! refuses. The same rules hold on both backends, so a warehouse loads the
//! same rows into either.

use chrono::{NaiveDate, NaiveDateTime};

/// The earliest date (and day of a timestamp) PostgreSQL stores: Julian day 0,
/// 4714-11-24 BC in the proleptic Gregorian calendar (year -4713).
pub const MIN_DATE: NaiveDate = match NaiveDate::from_ymd_opt(-4713, 11, 24) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// Whether `s` can be stored in a text column (it holds no NUL).
pub fn text(s: &str) -> bool {
    !s.as_bytes().contains(&0)
}

/// Whether `d` can be stored in a date column.
pub fn date(d: NaiveDate) -> bool {
    d >= MIN_DATE
}

/// Whether `t` can be stored in a timestamp column (every later instant
/// chrono represents fits PostgreSQL's range, which ends in 294276 AD).
pub fn timestamp(t: NaiveDateTime) -> bool {
    date(t.date())
}

/// Whether `x` can be stored in a `NOT NULL` floating-point column.
pub fn real(x: f64) -> bool {
    !x.is_nan()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_anywhere_in_text_is_refused() {
        assert!(text("Zoë, \"quoted\"\n\t"));
        assert!(!text("C00000002\0"));
        assert!(!text("\0"));
    }

    #[test]
    fn dates_before_julian_day_zero_are_refused() {
        assert!(date(MIN_DATE));
        assert!(!date(MIN_DATE.pred_opt().unwrap()));
        assert!(date(NaiveDate::MAX));
        assert!(timestamp(MIN_DATE.and_hms_opt(0, 0, 0).unwrap()));
        assert!(!timestamp(NaiveDateTime::MIN));
    }

    #[test]
    fn nan_is_refused_infinity_is_not() {
        assert!(!real(f64::NAN));
        assert!(real(f64::INFINITY) && real(-0.0));
    }
}
