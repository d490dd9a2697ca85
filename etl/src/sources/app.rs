//! `app/*.jsonl`: mobile-app purchases and refunds. `ts` is Unix seconds,
//! `amount_cents` hundredths of the currency, `kind` purchase or refund.

use cvm_shared::money::parse_fixed;
use cvm_shared::{Amount, Channel, TxnKind};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseContext, fields};
use crate::record::{
    OptTime, Parsed, Pos, Reject, RejectReason, TxnIds, TxnRecord, TxnRow, Versioned,
};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    txn: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_email: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_phone: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount_cents: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<&'a RawValue>,
    #[serde(borrow, default)]
    kind: Option<&'a RawValue>,
}

/// Parses one app line.
pub fn parse(line: &str, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_record(line, pos, ctx) {
        Ok(v) => Parsed::Txn(v),
        Err(r) => Parsed::Rejected(r),
    }
}

/// Unix seconds (integer or decimal) to microseconds, within chrono's range.
pub fn unix_micros(text: &str) -> Option<i64> {
    let micros = parse_fixed(text, 6).ok()?;
    let m = i64::try_from(micros).ok()?;
    chrono::DateTime::from_timestamp_micros(m).map(|_| m)
}

fn parse_record(line: &str, pos: Pos, ctx: &ParseContext) -> Result<Versioned<TxnRecord>, Reject> {
    let l: Line<'_> = fields::json_object(line)?;
    let txn = fields::json_text("txn", l.txn)?;
    let txn = fields::required_id("txn", txn.as_deref())?;
    let kind = match fields::json_text("kind", l.kind)?
        .map(|k| k.to_ascii_lowercase())
        .as_deref()
    {
        Some("purchase") => TxnKind::Purchase,
        Some("refund") => TxnKind::Refund,
        other => {
            return Err(Reject::new(
                RejectReason::BadValue,
                format!("kind {:?} is not purchase or refund", other.unwrap_or("")),
            ));
        }
    };
    let ts = fields::json_text("ts", l.ts)?.ok_or_else(|| fields::bad_date("ts", ""))?;
    let occurred_at = fields::record_time("ts", &ts, unix_micros(&ts), ctx)?;
    let cents = fields::json_text("amount_cents", l.amount_cents)?
        .ok_or_else(|| Reject::new(RejectReason::BadAmount, "amount_cents is missing"))?;
    let cents = parse_fixed(&cents, 0)
        .ok()
        .and_then(|c| i64::try_from(c).ok())
        .ok_or_else(|| {
            Reject::new(
                RejectReason::BadAmount,
                format!("amount_cents {cents:?} is not a whole number"),
            )
        })?;
    let amount = Amount::from_minor(cents, 2);
    let amount = match kind {
        TxnKind::Refund => -amount.abs(),
        TxnKind::Purchase if cents < 0 => {
            return Err(Reject::new(
                RejectReason::BadAmount,
                format!("amount_cents {cents} of a purchase is negative"),
            ));
        }
        TxnKind::Purchase => amount,
    };
    let (currency, rate) =
        fields::currency(fields::json_text("currency", l.currency)?.as_deref(), ctx)?;
    let email = fields::json_text("user_email", l.user_email)?;
    let phone = fields::json_text("user_phone", l.user_phone)?;
    let keys = fields::keys(None, email.as_deref(), phone.as_deref(), ctx)?;
    let id = format!("app:{txn}");
    let row = TxnRow {
        ids: TxnIds::Keyed { refund: false },
        channel: Channel::App,
        occurred_at,
        amount_original: amount,
        currency,
        amount_base: amount.to_base(rate),
        kind,
    };
    Ok(Versioned {
        key: id.into(),
        version: OptTime::NONE,
        digest: fields::digest([line]),
        pos,
        body: TxnRecord {
            keys,
            row: Some(row),
            refunded_at: OptTime::NONE,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Parsed {
        let mut c = ParseContext::new(&cvm_shared::Settings::default());
        c.default_cc = "86".into();
        parse(line, Pos::default(), &c)
    }

    const EX: &str = r#"{"txn":"A-77","user_email":"bo@example.com","user_phone":"+86 138 0000 0000","ts":1709260500,"amount_cents":5990,"currency":"USD","kind":"purchase"}"#;

    #[test]
    fn the_contract_example_is_one_purchase() {
        let Parsed::Txn(v) = run(EX) else { panic!() };
        let t = v.body.row.as_ref().unwrap();
        assert_eq!(t.occurred_at, 1_709_260_500_000_000);
        assert_eq!(t.amount_original.to_string(), "59.9");
        assert_eq!(v.body.keys.phone.as_deref(), Some("+8613800000000"));
        assert_eq!(v.body.keys.email.as_deref(), Some("bo@example.com"));
    }

    #[test]
    fn refunds_are_negative_whatever_the_sign_given() {
        let Parsed::Txn(v) = run(&EX.replace("purchase", "refund")) else {
            panic!()
        };
        assert_eq!(
            v.body.row.as_ref().unwrap().amount_original.to_string(),
            "-59.9"
        );
        assert_eq!(v.body.row.as_ref().unwrap().kind, TxnKind::Refund);
    }

    #[test]
    fn bad_lines_get_their_reason() {
        let cases = [
            ("\"just a string\"", RejectReason::BadJson),
            (&EX.replace("\"A-77\"", "null"), RejectReason::MissingId),
            (&EX.replace("1709260500", "\"soon\""), RejectReason::BadDate),
            (
                &EX.replace("1709260500", "99999999999999999"),
                RejectReason::BadDate,
            ),
            (&EX.replace("5990", "59.9"), RejectReason::BadAmount),
            (
                &EX.replace("\"USD\"", "\"XYZ\""),
                RejectReason::UnknownCurrency,
            ),
            (&EX.replace("purchase", "gift"), RejectReason::BadValue),
            (
                &EX.replace("1709260500", "253402300799"),
                RejectReason::BadDate,
            ),
            (&EX.replace("1709260500", "-1"), RejectReason::BadDate),
            (
                &EX.replace("bo@example.com", "bo\\u0000@example.com"),
                RejectReason::BadValue,
            ),
            (
                &EX.replace("\"A-77\"", "\"A-77\\u0000\""),
                RejectReason::BadValue,
            ),
            (
                r#"["A-78","bo@example.com",null,1709260500,5990,"USD","purchase"]"#,
                RejectReason::BadJson,
            ),
        ];
        for (line, want) in cases {
            match run(line) {
                Parsed::Rejected(r) => assert_eq!(r.reason, want, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
