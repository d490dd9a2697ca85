//! `web/*.jsonl`: web-shop orders. An order is re-delivered whenever it
//! changes; the version with the latest `updated_at` wins (else the last read).
//! `paid` is a purchase, `refunded` a purchase plus a full refund at
//! `updated_at`, `cancelled` and `pending` are ignored when they win.

use cvm_shared::{Channel, TxnKind};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseContext, fields};
use crate::record::{
    OptTime, Parsed, Pos, Reject, RejectReason, TxnIds, TxnRecord, TxnRow, Versioned,
};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    order_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    customer: Option<fields::Object<Customer<'a>>>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    updated_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    total: Option<fields::Object<Total<'a>>>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Customer<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    email: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Total<'a> {
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(borrow, default)]
    currency: Option<&'a RawValue>,
}

/// Parses one order line.
pub fn parse(line: &str, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_record(line, pos, ctx) {
        Ok(v) => Parsed::Txn(v),
        Err(r) => Parsed::Rejected(r),
    }
}

fn time(field: &str, raw: Option<&RawValue>, ctx: &ParseContext) -> Result<Option<i64>, Reject> {
    match fields::json_text(field, raw)? {
        None => Ok(None),
        Some(t) => fields::record_time(field, &t, fields::rfc3339_micros(&t), ctx).map(Some),
    }
}

fn parse_record(line: &str, pos: Pos, ctx: &ParseContext) -> Result<Versioned<TxnRecord>, Reject> {
    let l: Line<'_> = fields::json_object(line)?;
    let order_id = fields::json_text("order_id", l.order_id)?;
    let order_id = fields::required_id("order_id", order_id.as_deref())?;
    let status = fields::json_text("status", l.status)?.map(|s| s.to_ascii_lowercase());
    let updated_at = time("updated_at", l.updated_at, ctx)?;
    let key = format!("web:{order_id}");
    let digest = fields::digest([line]);
    let versioned = |body| Versioned {
        key: key.clone().into(),
        version: updated_at.into(),
        digest,
        pos,
        body,
    };
    let refunded = match status.as_deref() {
        Some("paid") => false,
        Some("refunded") => true,
        Some("cancelled" | "pending") => {
            return Ok(versioned(TxnRecord {
                keys: Default::default(),
                row: None,
                refunded_at: OptTime::NONE,
            }));
        }
        other => {
            return Err(Reject::new(
                RejectReason::BadValue,
                format!(
                    "status {:?} is not paid, refunded, cancelled or pending",
                    other.unwrap_or("")
                ),
            ));
        }
    };
    let created_at =
        time("created_at", l.created_at, ctx)?.ok_or_else(|| fields::bad_date("created_at", ""))?;
    if let Some(u) = updated_at
        && u < created_at
    {
        return Err(Reject::new(
            RejectReason::BadDate,
            "updated_at is before created_at: an order cannot change before it exists",
        ));
    }
    let (amount, currency) = match l.total.as_ref().map(|t| &t.0) {
        Some(t) => (
            fields::json_text("total.amount", t.amount)?,
            fields::json_text("total.currency", t.currency)?,
        ),
        None => (None, None),
    };
    let amount = fields::money("total.amount", amount.as_deref())?;
    if amount.units() < 0 {
        return Err(Reject::new(
            RejectReason::BadAmount,
            format!("total.amount {amount} of an order is negative"),
        ));
    }
    let (currency, rate) = fields::currency(currency.as_deref(), ctx)?;
    let (id, email) = match l.customer.as_ref().map(|c| &c.0) {
        Some(c) => (
            fields::json_text("customer.id", c.id)?,
            fields::json_text("customer.email", c.email)?,
        ),
        None => (None, None),
    };
    let keys = fields::keys(id.as_deref(), email.as_deref(), None, ctx)?;
    let row = TxnRow {
        ids: TxnIds::Keyed { refund: false },
        channel: Channel::Web,
        occurred_at: created_at,
        amount_original: amount,
        currency,
        amount_base: amount.to_base(rate),
        kind: TxnKind::Purchase,
    };
    Ok(versioned(TxnRecord {
        keys,
        row: Some(row),
        // Without updated_at the refund can only be dated at the order itself.
        refunded_at: refunded.then(|| updated_at.unwrap_or(created_at)).into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvm_shared::{Currency, Rate};

    fn run(line: &str) -> Parsed {
        let mut c = ParseContext::new(&cvm_shared::Settings::default());
        c.rates.insert(
            Currency::parse("CNY").unwrap(),
            Rate::parse_positive("0.14").unwrap(),
        );
        parse(line, Pos::new(2, 1), &c)
    }

    fn txn(p: Parsed) -> Versioned<TxnRecord> {
        match p {
            Parsed::Txn(v) => v,
            other => panic!("{other:?}"),
        }
    }

    const PAID: &str = r#"{"order_id":"W-1001","customer":{"id":"C000123","email":"Ann@Example.com"},"created_at":"2026-03-01T10:15:00+08:00","updated_at":"2026-03-02T08:00:00Z","total":{"amount":"59.90","currency":"CNY"},"status":"paid","items":[{"sku":"A1","qty":2,"price":"29.95"}]}"#;

    #[test]
    fn the_contract_example_is_one_purchase() {
        let v = txn(run(PAID));
        assert_eq!(&*v.key, "web:W-1001");
        assert_eq!(
            v.version.get(),
            fields::rfc3339_micros("2026-03-02T08:00:00Z")
        );
        assert_eq!(v.body.row_count(), 1);
        let t = v.body.row.as_ref().unwrap();
        assert_eq!(
            Some(t.occurred_at),
            fields::rfc3339_micros("2026-03-01T02:15:00Z")
        );
        assert_eq!(t.amount_base.to_string(), "8.386");
        assert_eq!(v.body.keys.email.as_deref(), Some("ann@example.com"));
        assert_eq!(v.body.keys.customer_id.as_deref(), Some("C000123"));
    }

    #[test]
    fn refunded_is_a_purchase_and_a_refund_at_updated_at() {
        let v = txn(run(&PAID.replace("\"paid\"", "\"refunded\"")));
        assert_eq!(v.body.row_count(), 2);
        let r = &v.body.clone().into_rows().1.nth(1).unwrap();
        assert_eq!(
            (r.transaction_id(&v.key).to_string(), r.kind),
            ("web:W-1001:refund".to_string(), TxnKind::Refund)
        );
        assert_eq!(r.source_id(&v.key), Some("W-1001"));
        assert_eq!(r.order_id(&v.key), Some("W-1001"));
        assert_eq!(Some(r.occurred_at), v.version.get());
        assert_eq!(r.amount_original.to_string(), "-59.9");
    }

    #[test]
    fn cancelled_and_pending_are_versions_with_no_rows() {
        for s in ["cancelled", "PENDING"] {
            let v = txn(run(&PAID.replace("\"paid\"", &format!("\"{s}\""))));
            assert!(v.body.ignored() && v.body.row_count() == 0);
        }
    }

    #[test]
    fn numbers_are_accepted_for_money_and_ids() {
        let v = txn(run(
            r#"{"order_id":17,"customer":{"email":"x@y.z"},"created_at":"2026-03-01T00:00:00Z","total":{"amount":12.5,"currency":"USD"},"status":"paid"}"#,
        ));
        assert_eq!(&*v.key, "web:17");
        assert_eq!(
            v.body.row.as_ref().unwrap().amount_original.to_string(),
            "12.5"
        );
        assert_eq!(v.version.get(), None);
    }

    #[test]
    fn an_order_updated_before_it_was_created_is_bad_date() {
        let line = PAID.replace("2026-03-02T08:00:00Z", "2026-03-01T02:14:59Z");
        match run(&line) {
            Parsed::Rejected(r) => {
                assert_eq!(r.reason, RejectReason::BadDate);
                assert!(r.detail.contains("before created_at"), "{}", r.detail);
            }
            other => panic!("{other:?}"),
        }
        // The same instant is fine.
        let same = PAID.replace("2026-03-02T08:00:00Z", "2026-03-01T02:15:00Z");
        assert_eq!(txn(run(&same)).body.row_count(), 1);
    }

    #[test]
    fn a_json_array_is_bad_json_even_when_its_fields_fit_by_position() {
        let cases = [
            r#"["W9",{"id":"C1"},"2026-03-01T00:00:00Z",null,{"amount":"5","currency":"USD"},"paid"]"#,
            r#"{"order_id":"W9","customer":["C1","a@b.c"],"created_at":"2026-03-01T00:00:00Z","total":{"amount":"5","currency":"USD"},"status":"paid"}"#,
            r#"{"order_id":"W9","customer":{"id":"C1"},"created_at":"2026-03-01T00:00:00Z","total":["5","USD"],"status":"paid"}"#,
        ];
        for line in cases {
            match run(line) {
                Parsed::Rejected(r) => assert_eq!(r.reason, RejectReason::BadJson, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_lines_get_their_reason() {
        let cases = [
            ("[1,2]", RejectReason::BadJson),
            (r#"{"order_id":"W1","#, RejectReason::BadJson),
            (&PAID.replace("\"W-1001\"", "\"\""), RejectReason::MissingId),
            (
                &PAID.replace("\"order_id\":\"W-1001\",", ""),
                RejectReason::MissingId,
            ),
            (
                &PAID.replace("2026-03-01T10:15:00+08:00", "yesterday"),
                RejectReason::BadDate,
            ),
            (
                &PAID.replace("\"59.90\"", "\"59,90\""),
                RejectReason::BadAmount,
            ),
            (
                &PAID.replace("\"CNY\"", "\"XYZ\""),
                RejectReason::UnknownCurrency,
            ),
            (
                &PAID.replace("\"paid\"", "\"shipped\""),
                RejectReason::BadValue,
            ),
            (&PAID.replace("\"W-1001\"", "{}"), RejectReason::BadJson),
            (
                &PAID.replace("2026-03-01T10:15:00+08:00", "0000-01-01T00:00:00Z"),
                RejectReason::BadDate,
            ),
            (
                &PAID.replace("2026-03-02T08:00:00Z", "9999-12-31T00:00:00Z"),
                RejectReason::BadDate,
            ),
            (
                &PAID.replace("2026-03-02T08:00:00Z", "2026-03-02T23:59:60Z"),
                RejectReason::BadDate,
            ),
            (
                &PAID.replace("\"C000123\"", "\"C00000002\\u0000\""),
                RejectReason::BadValue,
            ),
            (
                &PAID.replace("Ann@Example.com", "ann\\u0000@example.com"),
                RejectReason::BadValue,
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
