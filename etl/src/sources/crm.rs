//! `crm/*.csv`: the golden customer list. The same `customer_id` may appear
//! several times; the latest `updated_at` wins (ties: later file and line).

use super::{CsvRow, ParseContext, fields};
use crate::record::{CrmRecord, Parsed, Pos, Reject, RejectReason, Versioned};

/// Parses one CRM row.
pub fn parse(row: CsvRow<'_>, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_record(row, pos, ctx) {
        Ok(v) => Parsed::Crm(v),
        Err(r) => Parsed::Rejected(r),
    }
}

/// The earliest plausible birth date: `ingest.earliest_date` bounds events
/// of a business's own history, but customers were born long before it.
const EARLIEST_BIRTH: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => chrono::NaiveDate::MIN,
};

/// A date no earlier than `earliest` and no later than the run's window allows.
fn optional_date(
    row: CsvRow<'_>,
    field: &str,
    earliest: chrono::NaiveDate,
    ctx: &ParseContext,
) -> Result<Option<chrono::NaiveDate>, Reject> {
    let Some(v) = row.get(field) else {
        return Ok(None);
    };
    match fields::date(v) {
        None => Err(fields::bad_date(field, v)),
        Some(d) if d < earliest || d > ctx.window.latest => {
            Err(fields::outside_window(field, v, ctx))
        }
        Some(d) => Ok(Some(d)),
    }
}

/// A name: free text, which may hold tabs and line breaks but no other control character.
fn name<'a>(row: CsvRow<'a>, field: &str) -> Result<Option<&'a str>, Reject> {
    row.get(field)
        .map(|v| fields::no_control(field, v, true))
        .transpose()
}

fn parse_record(
    row: CsvRow<'_>,
    pos: Pos,
    ctx: &ParseContext,
) -> Result<Versioned<CrmRecord>, Reject> {
    let id = fields::required_id("customer_id", row.get("customer_id"))?;
    let updated_at = match row.get("updated_at") {
        None => None,
        // A far-future version stamp would win over every later correction.
        Some(v) => Some(fields::record_time(
            "updated_at",
            v,
            fields::rfc3339_micros(v),
            ctx,
        )?),
    };
    let signup_date = optional_date(row, "signup_date", ctx.window.earliest, ctx)?;
    let birth_date = optional_date(row, "birth_date", EARLIEST_BIRTH, ctx)?;
    let first_name = name(row, "first_name")?;
    let last_name = name(row, "last_name")?;
    let country = match row.get("country") {
        None => None,
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase().into())
        }
        Some(c) => {
            return Err(Reject::new(
                RejectReason::BadValue,
                format!("country {c:?} is not an ISO 3166-1 alpha-2 code"),
            ));
        }
    };
    let email_opt_in = fields::boolean("email_opt_in", row.get("email_opt_in"))?;
    let keys = fields::keys(None, row.get("email"), row.get("phone"), ctx)?;
    let rec = CrmRecord {
        customer_id: id.into(),
        email: keys.email,
        phone: keys.phone,
        first_name: first_name.map(Into::into),
        last_name: last_name.map(Into::into),
        country,
        signup_date,
        birth_date,
        email_opt_in,
        updated_at,
    };
    let digest = fields::digest(
        [
            "customer_id",
            "email",
            "phone",
            "first_name",
            "last_name",
            "country",
            "signup_date",
            "birth_date",
            "email_opt_in",
            "updated_at",
        ]
        .map(|c| row.get(c).unwrap_or("")),
    );
    Ok(Versioned {
        key: format!("crm:{id}").into(),
        version: updated_at.into(),
        digest,
        pos,
        body: rec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Header;

    const HEADER: [&str; 10] = [
        "customer_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "country",
        "signup_date",
        "birth_date",
        "email_opt_in",
        "updated_at",
    ];

    fn run(fields: &[&str]) -> Parsed {
        let h = Header::new(HEADER).unwrap();
        let r = csv::StringRecord::from(fields.to_vec());
        let settings = cvm_shared::Settings {
            today: chrono::NaiveDate::from_ymd_opt(2026, 3, 31),
            ..Default::default()
        };
        let mut ctx = ParseContext::new(&settings);
        ctx.default_cc = "86".into();
        parse(
            CsvRow {
                header: &h,
                record: &r,
            },
            Pos::new(0, 2),
            &ctx,
        )
    }

    fn reason(p: Parsed) -> RejectReason {
        match p {
            Parsed::Rejected(r) => r.reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_row_is_normalised() {
        let Parsed::Crm(v) = run(&[
            "C1",
            " Ann@Example.com",
            "138 0000 0000",
            "Ann",
            "Lee",
            "cn",
            "2024-01-02",
            "1990-05-06",
            "Yes",
            "2026-03-01T10:00:00+08:00",
        ]) else {
            panic!()
        };
        assert_eq!(&*v.key, "crm:C1");
        assert_eq!(v.body.email.as_deref(), Some("ann@example.com"));
        assert_eq!(v.body.phone.as_deref(), Some("+8613800000000"));
        assert_eq!(v.body.country.as_deref(), Some("CN"));
        assert!(v.body.email_opt_in);
        assert_eq!(
            v.version.get(),
            fields::rfc3339_micros("2026-03-01T02:00:00Z")
        );
    }

    #[test]
    fn empty_optional_fields_are_null_and_consent_is_false() {
        let Parsed::Crm(v) = run(&["C2", "", "", "", "", "", "", "", "", ""]) else {
            panic!()
        };
        assert_eq!(v.body.email, None);
        assert!(!v.body.email_opt_in);
        assert_eq!(v.version.get(), None);
    }

    /// A row with `value` in column `col`, else empty but for the id.
    fn with(col: usize, value: &str) -> Parsed {
        let mut f = ["C7", "", "", "", "", "", "", "", "", ""];
        f[col] = value;
        run(&f)
    }

    #[test]
    fn absurd_dates_are_bad_date_but_old_birth_dates_are_kept() {
        for (col, v) in [
            (6, "0000-01-01"),
            (6, "1969-12-31"),
            (6, "9999-12-31"),
            (7, "1899-12-31"),
            (7, "2026-04-02"),
            (9, "9999-12-31T00:00:00Z"),
            (9, "0000-01-01T00:00:00Z"),
            (9, "2026-03-01T23:59:60Z"),
        ] {
            assert_eq!(reason(with(col, v)), RejectReason::BadDate, "{v}");
        }
        let Parsed::Crm(v) = with(7, "1931-05-06") else {
            panic!()
        };
        assert_eq!(
            v.body.birth_date,
            chrono::NaiveDate::from_ymd_opt(1931, 5, 6)
        );
        assert!(matches!(with(6, "2026-04-01"), Parsed::Crm(_)));
    }

    #[test]
    fn control_characters_in_keys_are_bad_value_but_names_may_break_lines() {
        assert_eq!(
            reason(run(&["C00000002\0", "", "", "", "", "", "", "", "", ""])),
            RejectReason::BadValue
        );
        for (col, v) in [(1, "a\0@b.c"), (2, "+1 555\u{1}0001"), (4, "Lee\0")] {
            assert_eq!(reason(with(col, v)), RejectReason::BadValue, "{v:?}");
        }
        let Parsed::Crm(v) = with(3, "Anne\r\nMarie") else {
            panic!()
        };
        assert_eq!(v.body.first_name.as_deref(), Some("Anne\r\nMarie"));
    }

    #[test]
    fn bad_rows_get_their_reason() {
        assert_eq!(
            reason(run(&["", "", "", "", "", "", "", "", "", ""])),
            RejectReason::MissingId
        );
        assert_eq!(
            reason(run(&["C3", "", "", "", "", "", "2024-02-30", "", "", ""])),
            RejectReason::BadDate
        );
        assert_eq!(
            reason(run(&["C3", "", "", "", "", "", "", "", "", "yesterday"])),
            RejectReason::BadDate
        );
        assert_eq!(
            reason(run(&["C3", "", "", "", "", "China", "", "", "", ""])),
            RejectReason::BadValue
        );
        assert_eq!(
            reason(run(&["C3", "", "", "", "", "", "", "", "maybe", ""])),
            RejectReason::BadValue
        );
    }
}
