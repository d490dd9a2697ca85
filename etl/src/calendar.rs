//! Civil (proleptic Gregorian) dates of day counts, total over all of
//! `i64`: unlike a calendar library's bounded range, any instant a record
//! can hold has a date, so partitioning and generating never fail on one.
//! One copy of the arithmetic for the warehouse and the generator.

/// (year, month 1–12, day 1–31) of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm
    // (https://howardhinnant.github.io/date_algorithms.html#civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;
    use chrono::{Datelike, NaiveDate};

    #[test]
    fn agrees_with_chrono_over_four_centuries_and_before_1970() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for days in (-200_000..200_000).step_by(97) {
            let d = epoch + chrono::Duration::days(days);
            assert_eq!(
                civil_from_days(days),
                (i64::from(d.year()), d.month(), d.day()),
                "{days}"
            );
        }
    }
}
