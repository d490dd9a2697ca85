//! `events/*.jsonl`: engagement events. Accepted per valid line; they create
//! no customer and no transaction. `ts` is RFC 3339 (or Unix seconds).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseContext, fields};
use crate::record::{
    EventFields, EventRecord, Keys, OptTime, Parsed, Pos, Reject, RejectReason, Versioned,
};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    customer_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    email: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a RawValue>,
}

/// Parses one event line.
pub fn parse(line: &str, pos: Pos, ctx: &ParseContext) -> Parsed {
    match parse_fields(line, ctx) {
        Ok(f) => Parsed::Event(Versioned {
            key: format!("ev:{:016x}", f.digest).into(),
            version: OptTime::NONE,
            digest: f.digest,
            pos,
            body: EventRecord {
                keys: Keys {
                    customer_id: f.customer_id.map(Into::into),
                    email: f.email.map(Into::into),
                    phone: None,
                },
                event_type: f.event_type.into(),
                ts: f.ts,
            },
        }),
        Err(r) => Parsed::Rejected(r),
    }
}

/// Parses one event line into fields borrowed from it where possible (the
/// ingest hot path: events are most of a drop).
pub fn parse_fields<'a>(line: &'a str, ctx: &ParseContext) -> Result<EventFields<'a>, Reject> {
    let l: Line<'a> = fields::json_object(line)?;
    let id = fields::json_text("customer_id", l.customer_id)?;
    let email = fields::json_text("email", l.email)?;
    let customer_id = id.map(fields::trim_cow).filter(|s| !s.is_empty());
    if let Some(id) = &customer_id {
        fields::no_control("customer_id", id, false)?;
    }
    let email = email
        .map(|e| fields::email_key(e, ctx))
        .transpose()?
        .flatten();
    if customer_id.is_none() && email.is_none() {
        return Err(Reject::new(
            RejectReason::MissingId,
            "customer_id and email are both missing",
        ));
    }
    let event_type = fields::json_text("type", l.event_type)?
        .ok_or_else(|| Reject::new(RejectReason::BadValue, "type is missing"))?;
    let ts = fields::json_text("ts", l.ts)?.ok_or_else(|| fields::bad_date("ts", ""))?;
    let ts = fields::record_time(
        "ts",
        &ts,
        fields::rfc3339_micros(&ts).or_else(|| super::app::unix_micros(&ts)),
        ctx,
    )?;
    // A type is a code: no control characters, like ids.
    let event_type = fields::trim_cow(event_type);
    fields::no_control("type", &event_type, false)?;
    Ok(EventFields {
        customer_id,
        email,
        event_type,
        ts,
        digest: fields::digest([line]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Parsed {
        parse(
            line,
            Pos::default(),
            &ParseContext::new(&cvm_shared::Settings::default()),
        )
    }

    #[test]
    fn events_by_id_or_email() {
        let Parsed::Event(v) =
            run(r#"{"customer_id":"C1","type":"email_open","ts":"2026-03-01T10:00:00Z"}"#)
        else {
            panic!()
        };
        assert_eq!(&*v.body.event_type, "email_open");
        assert!(v.numbered());
        let Parsed::Event(v) = run(r#"{"email":" X@Y.Z ","type":"web_visit","ts":1709260500}"#)
        else {
            panic!()
        };
        assert_eq!(v.body.keys.email.as_deref(), Some("x@y.z"));
        assert_eq!(v.body.ts, 1_709_260_500_000_000);
    }

    #[test]
    fn bad_events_get_their_reason() {
        let cases = [
            (
                r#"{"type":"email_open","ts":"2026-03-01T10:00:00Z"}"#,
                RejectReason::MissingId,
            ),
            (
                r#"{"customer_id":"","type":"x","ts":"2026-03-01T10:00:00Z"}"#,
                RejectReason::MissingId,
            ),
            (
                r#"{"customer_id":"C1","type":"x","ts":"March"}"#,
                RejectReason::BadDate,
            ),
            (
                r#"{"customer_id":"C1","ts":"2026-03-01T10:00:00Z"}"#,
                RejectReason::BadValue,
            ),
            ("not json", RejectReason::BadJson),
            (
                r#"["C1",null,"email_open","2026-03-01T10:00:00Z"]"#,
                RejectReason::BadJson,
            ),
            (
                r#"{"customer_id":"C1","type":"x","ts":"0000-01-01T00:00:00Z"}"#,
                RejectReason::BadDate,
            ),
            (
                r#"{"customer_id":"C1","type":"x","ts":253402300799}"#,
                RejectReason::BadDate,
            ),
            (
                r#"{"customer_id":"C1\u0000","type":"x","ts":"2026-03-01T10:00:00Z"}"#,
                RejectReason::BadValue,
            ),
            (
                r#"{"email":"a\u0000@b.c","type":"x","ts":"2026-03-01T10:00:00Z"}"#,
                RejectReason::BadValue,
            ),
            (
                r#"{"customer_id":"C1","type":"x\u0007","ts":"2026-03-01T10:00:00Z"}"#,
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
