//! `transactions/*.csv`: generic transactions from any other system. Rows are
//! never de-duplicated by `order_id` (identical rows are distinct purchases);
//! a negative amount is a refund, `0` a purchase.

use cvm_shared::{Channel, TxnKind};

use super::{CsvRow, ParseContext, fields};
use crate::record::{OptTime, Parsed, Pos, Reject, TxnIds, TxnRecord, TxnRow, Versioned};

/// Parses one transaction row.
pub fn parse(row: CsvRow<'_>, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_record(row, pos, ctx) {
        Ok(v) => Parsed::Txn(v),
        Err(r) => Parsed::Rejected(r),
    }
}

fn parse_record(
    row: CsvRow<'_>,
    pos: Pos,
    ctx: &ParseContext,
) -> Result<Versioned<TxnRecord>, Reject> {
    let customer = fields::required_id("customer_id", row.get("customer_id"))?;
    let at = row
        .get("occurred_at")
        .ok_or_else(|| fields::bad_date("occurred_at", ""))?;
    let occurred_at = fields::record_time(
        "occurred_at",
        at,
        fields::rfc3339_micros(at).or_else(|| fields::date_micros(at)),
        ctx,
    )?;
    let amount = fields::money("amount", row.get("amount"))?;
    let (currency, rate) = fields::currency(row.get("currency"), ctx)?;
    let kind = if amount.units() < 0 {
        TxnKind::Refund
    } else {
        TxnKind::Purchase
    };
    // A feed that names one of our channels keeps it; any other system is `other`.
    let channel = row
        .get("channel")
        .and_then(|c| Channel::parse(&c.to_ascii_lowercase()))
        .unwrap_or(Channel::Other);
    let order_id = row
        .get("order_id")
        .map(|o| fields::no_control("order_id", o, false))
        .transpose()?;
    let digest = fields::digest(
        [
            "customer_id",
            "occurred_at",
            "amount",
            "currency",
            "order_id",
            "channel",
        ]
        .map(|c| row.get(c).unwrap_or("")),
    );
    let txn = TxnRow {
        ids: TxnIds::Generic {
            // Set from the numbered key by the pipeline.
            hash: 0,
            order_id: order_id.map(Into::into),
        },
        channel,
        occurred_at,
        amount_original: amount,
        currency,
        amount_base: amount.to_base(rate),
        kind,
    };
    Ok(Versioned {
        key: compact_str::format_compact!("tx:{digest:016x}"),
        version: OptTime::NONE,
        digest,
        pos,
        body: TxnRecord {
            keys: fields::keys(Some(customer), None, None, ctx)?,
            row: Some(txn),
            refunded_at: OptTime::NONE,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RejectReason;
    use crate::sources::Header;

    fn run(header: &[&str], fields: &[&str]) -> Parsed {
        let h = Header::new(header.iter().copied()).unwrap();
        let r = csv::StringRecord::from(fields.to_vec());
        parse(
            CsvRow {
                header: &h,
                record: &r,
            },
            Pos::default(),
            &ParseContext::new(&cvm_shared::Settings::default()),
        )
    }

    const H: [&str; 6] = [
        "customer_id",
        "occurred_at",
        "amount",
        "currency",
        "order_id",
        "channel",
    ];

    #[test]
    fn a_date_only_row_is_midnight_utc_in_base_currency() {
        let Parsed::Txn(v) = run(
            &["customer_id", "occurred_at", "amount"],
            &["00001", "1997-01-01", "11.77"],
        ) else {
            panic!()
        };
        let t = v.body.row.as_ref().unwrap();
        assert_eq!(
            Some(t.occurred_at),
            fields::rfc3339_micros("1997-01-01T00:00:00Z")
        );
        assert_eq!(t.currency.as_str(), "USD");
        assert_eq!(t.amount_base.to_string(), "11.77");
        assert_eq!(t.channel, Channel::Other);
        assert!(v.numbered());
        assert_eq!(v.body.keys.customer_id.as_deref(), Some("00001"));
    }

    #[test]
    fn negative_is_refund_and_zero_is_purchase() {
        let kind = |a: &str| match run(&H, &["C1", "2026-01-01", a, "", "O1", "web"]) {
            Parsed::Txn(v) => (
                v.body.row.as_ref().unwrap().kind,
                v.body.row.as_ref().unwrap().channel,
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("-3"), (TxnKind::Refund, Channel::Web));
        assert_eq!(kind("0"), (TxnKind::Purchase, Channel::Web));
    }

    #[test]
    fn bad_rows_get_their_reason() {
        let cases = [
            (["", "2026-01-01", "1", "", "", ""], RejectReason::MissingId),
            (["C1", "2026-13-01", "1", "", "", ""], RejectReason::BadDate),
            (
                ["C1", "2026-01-01", "one", "", "", ""],
                RejectReason::BadAmount,
            ),
            (
                ["C1", "2026-01-01", "1", "XYZ", "", ""],
                RejectReason::UnknownCurrency,
            ),
            (["C1", "0000-01-01", "1", "", "", ""], RejectReason::BadDate),
            (["C1", "9999-12-31", "1", "", "", ""], RejectReason::BadDate),
            (
                ["C1", "1969-12-31T23:59:59Z", "1", "", "", ""],
                RejectReason::BadDate,
            ),
            (
                ["C00000002\0", "2026-01-01", "1", "", "", ""],
                RejectReason::BadValue,
            ),
            (
                ["C1", "2026-01-01", "1", "", "O\u{1}1", ""],
                RejectReason::BadValue,
            ),
        ];
        for (f, want) in cases {
            match run(&H, &f) {
                Parsed::Rejected(r) => assert_eq!(r.reason, want, "{f:?}"),
                other => panic!("{f:?}: {other:?}"),
            }
        }
    }
}
