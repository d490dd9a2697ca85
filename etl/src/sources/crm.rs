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

fn optional_date(row: CsvRow<'_>, field: &str) -> Result<Option<chrono::NaiveDate>, Reject> {
    match row.get(field) {
        None => Ok(None),
        Some(v) => fields::date(v)
            .map(Some)
            .ok_or_else(|| fields::bad_date(field, v)),
    }
}

fn parse_record(
    row: CsvRow<'_>,
    pos: Pos,
    ctx: &ParseContext,
) -> Result<Versioned<CrmRecord>, Reject> {
    let id = fields::required_id("customer_id", row.get("customer_id"))?;
    let updated_at = match row.get("updated_at") {
        None => None,
        Some(v) => {
            Some(fields::rfc3339_micros(v).ok_or_else(|| fields::bad_date("updated_at", v))?)
        }
    };
    let signup_date = optional_date(row, "signup_date")?;
    let birth_date = optional_date(row, "birth_date")?;
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
    let keys = fields::keys(None, row.get("email"), row.get("phone"), ctx);
    let rec = CrmRecord {
        customer_id: id.into(),
        email: keys.email,
        phone: keys.phone,
        first_name: row.get("first_name").map(Into::into),
        last_name: row.get("last_name").map(Into::into),
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
        numbered: false,
        version: updated_at,
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
        let h = Header::new(HEADER);
        let r = csv::StringRecord::from(fields.to_vec());
        let mut ctx = ParseContext::new(&cvm_shared::Settings::default());
        ctx.default_cc = "86".into();
        parse(
            CsvRow {
                header: &h,
                record: &r,
            },
            Pos { file: 0, line: 2 },
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
        assert_eq!(v.version, fields::rfc3339_micros("2026-03-01T02:00:00Z"));
    }

    #[test]
    fn empty_optional_fields_are_null_and_consent_is_false() {
        let Parsed::Crm(v) = run(&["C2", "", "", "", "", "", "", "", "", ""]) else {
            panic!()
        };
        assert_eq!(v.body.email, None);
        assert!(!v.body.email_opt_in);
        assert_eq!(v.version, None);
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
