//! `pos/*.csv`: in-store receipts. `status` is `sale` (default), `return`
//! (refunds |total|) or `void` (ignored, before the anonymous rule). A receipt
//! with neither `customer_id` nor `phone` is anonymous but still revenue.

use cvm_shared::{Channel, TxnKind};

use super::{CsvRow, ParseContext, fields};
use crate::record::{
    OptTime, Parsed, Pos, Reject, RejectReason, TxnIds, TxnRecord, TxnRow, Versioned,
};

/// The contract's POS columns; a receipt's content digest covers all of them.
pub(crate) const COLUMNS: [&str; 8] = [
    "receipt_id",
    "store_id",
    "purchased_at",
    "customer_id",
    "phone",
    "total",
    "currency",
    "status",
];

/// Parses one receipt row.
pub fn parse(row: CsvRow<'_>, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_record(row, pos, ctx) {
        Ok(Some(v)) => Parsed::Txn(v),
        Ok(None) => Parsed::Ignored,
        Err(r) => Parsed::Rejected(r),
    }
}

fn parse_record(
    row: CsvRow<'_>,
    pos: Pos,
    ctx: &ParseContext,
) -> Result<Option<Versioned<TxnRecord>>, Reject> {
    let receipt = fields::required_id("receipt_id", row.get("receipt_id"))?;
    let kind = match row.get("status").map(str::to_ascii_lowercase).as_deref() {
        None | Some("sale") => TxnKind::Purchase,
        Some("return") => TxnKind::Refund,
        Some("void") => return Ok(None),
        Some(other) => {
            return Err(Reject::new(
                RejectReason::BadValue,
                format!("status {other:?} is not sale, return or void"),
            ));
        }
    };
    let at = row
        .get("purchased_at")
        .ok_or_else(|| fields::bad_date("purchased_at", ""))?;
    let occurred_at = fields::record_time(
        "purchased_at",
        at,
        fields::rfc3339_micros(at).or_else(|| fields::local_micros(at, ctx.pos_tz)),
        ctx,
    )?;
    let total = fields::money("total", row.get("total"))?;
    let amount = match kind {
        TxnKind::Refund => -total.abs(),
        TxnKind::Purchase if total.units() < 0 => {
            return Err(Reject::new(
                RejectReason::BadAmount,
                format!("total {total} of a sale is negative"),
            ));
        }
        TxnKind::Purchase => total,
    };
    let (currency, rate) = fields::currency(row.get("currency"), ctx)?;
    let keys = fields::keys(row.get("customer_id"), None, row.get("phone"), ctx)?;
    let digest = fields::digest(COLUMNS.map(|c| row.get(c).unwrap_or("")));
    let id = format!("pos:{receipt}");
    let txn = TxnRow {
        ids: TxnIds::Keyed { refund: false },
        channel: Channel::Pos,
        occurred_at,
        amount_original: amount,
        currency,
        amount_base: amount.to_base(rate),
        kind,
    };
    Ok(Some(Versioned {
        key: id.into(),
        version: OptTime::NONE,
        digest,
        pos,
        body: TxnRecord {
            keys,
            row: Some(txn),
            refunded_at: OptTime::NONE,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Header;
    use cvm_shared::{Currency, Rate};

    const HEADER: [&str; 8] = COLUMNS;

    fn ctx() -> ParseContext {
        let mut settings = cvm_shared::Settings::default();
        settings.ingest.pos_time_zone = "Asia/Shanghai".into();
        settings.ingest.default_country_code = "86".into();
        let mut c = ParseContext::new(&settings);
        c.rates.insert(
            Currency::parse("CNY").unwrap(),
            Rate::parse_positive("0.14").unwrap(),
        );
        c
    }

    fn run(fields: [&str; 8]) -> Parsed {
        let h = Header::new(HEADER).unwrap();
        let r = csv::StringRecord::from(fields.to_vec());
        parse(
            CsvRow {
                header: &h,
                record: &r,
            },
            Pos::new(1, 9),
            &ctx(),
        )
    }

    fn txn(p: Parsed) -> Versioned<TxnRecord> {
        match p {
            Parsed::Txn(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_local_sale_is_converted_to_utc_and_base_currency() {
        let v = txn(run([
            "R1",
            "S1",
            "2026-03-01 10:15:00",
            "C1",
            "",
            "59.90",
            "CNY",
            "",
        ]));
        let t = v.body.row.as_ref().unwrap();
        assert_eq!(
            Some(t.occurred_at),
            fields::rfc3339_micros("2026-03-01T02:15:00Z")
        );
        assert_eq!(t.amount_base.to_string(), "8.386");
        assert_eq!(t.kind, TxnKind::Purchase);
        assert_eq!(t.transaction_id(&v.key).to_string(), "pos:R1");
        assert_eq!(t.source_id(&v.key), Some("R1"));
        assert_eq!(t.order_id(&v.key), None);
        assert_eq!(v.body.keys.customer_id.as_deref(), Some("C1"));
    }

    #[test]
    fn returns_always_reduce_revenue() {
        for total in ["12.00", "-12.00"] {
            let v = txn(run([
                "R2",
                "S1",
                "2026-03-01T10:00:00Z",
                "",
                "138 0000 0000",
                total,
                "",
                "return",
            ]));
            assert_eq!(
                v.body.row.as_ref().unwrap().amount_original.to_string(),
                "-12"
            );
            assert_eq!(v.body.row.as_ref().unwrap().kind, TxnKind::Refund);
            assert_eq!(v.body.keys.phone.as_deref(), Some("+8613800000000"));
        }
    }

    #[test]
    fn void_comes_before_everything_but_the_id() {
        assert_eq!(
            run(["R3", "", "not a date", "", "", "x", "XYZ", "VOID"]),
            Parsed::Ignored
        );
    }

    #[test]
    fn receipts_without_keys_are_kept_without_keys() {
        assert!(
            txn(run([
                "R4",
                "S1",
                "2026-03-01 10:00:00",
                "",
                "",
                "5",
                "",
                "sale"
            ]))
            .body
            .keys
            .is_empty()
        );
    }

    #[test]
    fn bad_receipts_get_their_reason() {
        let cases = [
            (
                ["", "S1", "2026-03-01 10:00:00", "", "", "5", "", ""],
                RejectReason::MissingId,
            ),
            (
                ["R5", "S1", "2026-03-01 25:00:00", "", "", "5", "", ""],
                RejectReason::BadDate,
            ),
            (["R5", "S1", "", "", "", "5", "", ""], RejectReason::BadDate),
            (
                ["R5", "S1", "2026-03-01 10:00:00", "", "", "5,00", "", ""],
                RejectReason::BadAmount,
            ),
            (
                ["R5", "S1", "2026-03-01 10:00:00", "", "", "-5", "", "sale"],
                RejectReason::BadAmount,
            ),
            (
                ["R5", "S1", "2026-03-01 10:00:00", "", "", "5", "XYZ", ""],
                RejectReason::UnknownCurrency,
            ),
            (
                ["R5", "S1", "2026-03-01 10:00:00", "", "", "5", "", "gift"],
                RejectReason::BadValue,
            ),
            (
                ["R5", "S1", "0000-01-01 10:00:00", "", "", "5", "", ""],
                RejectReason::BadDate,
            ),
            (
                ["R5", "S1", "9999-12-31T10:00:00Z", "", "", "5", "", ""],
                RejectReason::BadDate,
            ),
            (
                ["R5", "S1", "2026-03-01 23:59:60", "", "", "5", "", ""],
                RejectReason::BadDate,
            ),
            (
                ["R5\0", "S1", "2026-03-01 10:00:00", "", "", "5", "", ""],
                RejectReason::BadValue,
            ),
            (
                ["R5", "S1", "2026-03-01 10:00:00", "C1\0", "", "5", "", ""],
                RejectReason::BadValue,
            ),
        ];
        for (f, want) in cases {
            match run(f) {
                Parsed::Rejected(r) => assert_eq!(r.reason, want, "{f:?}"),
                other => panic!("{f:?}: {other:?}"),
            }
        }
    }
}
