//! Field parsers shared by the sources: times, dates, booleans, money,
//! currencies, customer keys. Each returns a [`Reject`] that names the field
//! and the value, so a reject row says exactly what to fix.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use cvm_shared::identity::{normalize_email, normalize_phone};
use cvm_shared::{Amount, BaseAmount, Currency, Rate};

use super::ParseContext;
use crate::record::{Keys, Reject, RejectReason};

/// Microseconds since the Unix epoch of an RFC 3339 timestamp. A leap
/// second (`23:59:60`) is refused: Unix time has none, so it would silently
/// become the next day's midnight.
pub fn rfc3339_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .filter(|t| t.nanosecond() < 1_000_000_000)
        .map(|t| t.timestamp_micros())
}

/// A `YYYY-MM-DD` date.
pub fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// Microseconds of `YYYY-MM-DD` at 00:00 UTC.
pub fn date_micros(s: &str) -> Option<i64> {
    date(s)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// Microseconds of a local `YYYY-MM-DD HH:MM:SS` in `tz`. In the autumn
/// overlap the earlier instant is taken; a time skipped by spring-forward is
/// impossible and yields `None`.
pub fn local_micros(s: &str, tz: chrono_tz::Tz) -> Option<i64> {
    let t = s.trim();
    let naive = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .filter(|t| t.nanosecond() < 1_000_000_000)?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_micros())
}

/// A `bad_date` reject for `field`.
pub fn bad_date(field: &str, value: &str) -> Reject {
    Reject::new(
        RejectReason::BadDate,
        format!("{field} {value:?} is not a valid time"),
    )
}

/// A record time (`micros`, parsed from `text`) within the run's plausible
/// dates, or a `bad_date` reject.
pub fn record_time(
    field: &str,
    text: &str,
    micros: Option<i64>,
    ctx: &ParseContext,
) -> Result<i64, Reject> {
    let m = micros.ok_or_else(|| bad_date(field, text))?;
    if ctx.window_micros.contains(&m) {
        Ok(m)
    } else {
        Err(outside_window(field, text, ctx))
    }
}

/// A `bad_date` reject for a time outside the run's plausible dates.
pub fn outside_window(field: &str, value: &str, ctx: &ParseContext) -> Reject {
    Reject::new(
        RejectReason::BadDate,
        format!(
            "{field} {value:?} is outside the plausible dates {} to {} (ingest.earliest_date to the day after the run)",
            ctx.window.earliest, ctx.window.latest
        ),
    )
}

/// The first control character of `value`, if any. Ids, keys and codes take
/// none: a NUL becomes a new customer here and breaks every later PostgreSQL
/// load (PostgreSQL text cannot hold it), and a tab or line break inside an
/// id is never meant. Free text (names) may hold tabs and line breaks, which
/// quoted CSV fields legitimately carry; `free_text` allows those.
fn control_char(value: &str, free_text: bool) -> Option<char> {
    // Control characters are ASCII or two-byte (C1): most values need only a byte scan.
    if !value.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        return None;
    }
    value
        .chars()
        .find(|&c| c.is_control() && !(free_text && matches!(c, '\t' | '\n' | '\r')))
}

/// `value`, or a `bad_value` reject when it holds a control character
/// (any for ids and keys; any but tab, CR and LF for `free_text`).
pub fn no_control<'a>(field: &str, value: &'a str, free_text: bool) -> Result<&'a str, Reject> {
    match control_char(value, free_text) {
        None => Ok(value),
        Some(c) => Err(Reject::new(
            RejectReason::BadValue,
            format!(
                "{field} {value:?} holds the control character U+{:04X}",
                u32::from(c)
            ),
        )),
    }
}

/// A required record id, or a `missing_id` reject (`bad_value` when it holds
/// a control character).
pub fn required_id<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, Reject> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => no_control(field, v, false),
        _ => Err(Reject::new(
            RejectReason::MissingId,
            format!("{field} is missing"),
        )),
    }
}

/// A boolean as the contract allows (`true/false/1/0/yes/no/y/n`, any case; empty is false).
pub fn boolean(field: &str, value: Option<&str>) -> Result<bool, Reject> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" => Ok(true),
        "false" | "0" | "no" | "n" => Ok(false),
        _ => Err(Reject::new(
            RejectReason::BadValue,
            format!("{field} {v:?} is not true/false/1/0/yes/no/y/n"),
        )),
    }
}

/// Money text, or a `bad_amount` reject.
pub fn money(field: &str, value: Option<&str>) -> Result<Amount, Reject> {
    let v =
        value.ok_or_else(|| Reject::new(RejectReason::BadAmount, format!("{field} is missing")))?;
    v.parse::<Amount>()
        .map_err(|e| Reject::new(RejectReason::BadAmount, format!("{field}: {e}")))
}

/// The currency (empty = base) and its rate, or an `unknown_currency` reject.
pub fn currency(value: Option<&str>, ctx: &ParseContext) -> Result<(Currency, Rate), Reject> {
    let cur = match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => ctx.base,
        Some(v) => Currency::parse(v).map_err(|_| {
            Reject::new(
                RejectReason::UnknownCurrency,
                format!("currency {v:?} is not a currency code"),
            )
        })?,
    };
    let rate = ctx.rates.get(&cur).copied().ok_or_else(|| {
        Reject::new(
            RejectReason::UnknownCurrency,
            format!("currency {cur} has no rate in fx/rates.csv"),
        )
    })?;
    Ok((cur, rate))
}

/// Converts an amount at `rate`.
pub fn to_base(amount: Amount, rate: Rate) -> BaseAmount {
    amount.to_base(rate)
}

/// Normalised customer keys; empty inputs give `None`, a key holding a
/// control character a `bad_value` reject.
pub fn keys(
    customer_id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    ctx: &ParseContext,
) -> Result<Keys, Reject> {
    // Trimmed first: surrounding whitespace is dropped anyway.
    fn checked<'a>(field: &str, v: Option<&'a str>) -> Result<Option<&'a str>, Reject> {
        v.map(|v| no_control(field, v.trim(), false)).transpose()
    }
    let (customer_id, email, phone) = (
        checked("customer_id", customer_id)?,
        checked("email", email)?,
        checked("phone", phone)?,
    );
    Ok(Keys {
        customer_id: customer_id
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Into::into),
        email: email.and_then(normalize_email).map(Into::into),
        phone: phone
            .and_then(|p| normalize_phone(p, &ctx.default_cc))
            .map(Into::into),
    })
}

/// `s` trimmed, still borrowed when it was.
pub fn trim_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

/// A normalised email like [`keys`] makes, borrowing `raw` when it is
/// already normal (trimmed printable ASCII without capitals).
pub fn email_key<'a>(
    raw: Cow<'a, str>,
    ctx: &ParseContext,
) -> Result<Option<Cow<'a, str>>, Reject> {
    let t = raw.trim();
    if !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())
    {
        return Ok(Some(trim_cow(raw)));
    }
    Ok(keys(None, Some(&raw), None, ctx)?
        .email
        .map(|e| Cow::Owned(e.into())))
}

/// Stable content hash of a record's fields (field boundaries included).
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0x1f]);
    }
    h.digest()
}

/// Text of a JSON scalar field: strings as they are, numbers as written;
/// `None` for absent, `null` or empty. Objects and arrays are `bad_json`.
pub fn json_text<'a>(
    field: &str,
    raw: Option<&'a serde_json::value::RawValue>,
) -> Result<Option<std::borrow::Cow<'a, str>>, Reject> {
    use std::borrow::Cow;
    let Some(raw) = raw else { return Ok(None) };
    let t = raw.get().trim();
    let text: Cow<'a, str> = match t.as_bytes().first() {
        Some(b'"') if !t.contains('\\') => Cow::Borrowed(&t[1..t.len() - 1]),
        Some(b'"') => Cow::Owned(serde_json::from_str::<String>(t).map_err(|_| {
            Reject::new(
                RejectReason::BadJson,
                format!("{field} is not a valid JSON string"),
            )
        })?),
        Some(b'n') => return Ok(None),
        Some(b'-' | b'0'..=b'9') => Cow::Borrowed(t),
        _ => {
            return Err(Reject::new(
                RejectReason::BadJson,
                format!("{field} must be a string or a number"),
            ));
        }
    };
    Ok((!text.trim().is_empty()).then_some(text))
}

/// A JSON object read into `T`. serde's derived structs also take an array
/// and read it by field position; the contract's records are objects only.
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
    }
}

/// One JSONL line as a JSON object of shape `T`, or a `bad_json` reject.
pub fn json_object<'a, T: serde::Deserialize<'a>>(line: &'a str) -> Result<T, Reject> {
    serde_json::from_str::<Object<T>>(line)
        .map(|o| o.0)
        .map_err(|e| {
            Reject::new(
                RejectReason::BadJson,
                format!("not a JSON object of the expected shape: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        let mut c = ParseContext::new(&cvm_shared::Settings::default());
        c.rates.insert(
            Currency::parse("CNY").unwrap(),
            Rate::parse_positive("0.14").unwrap(),
        );
        c
    }

    #[test]
    fn times_with_offsets_are_utc_micros() {
        assert_eq!(
            rfc3339_micros("2026-03-01T10:15:00+08:00"),
            rfc3339_micros("2026-03-01T02:15:00Z")
        );
        assert_eq!(rfc3339_micros("2026-02-30T00:00:00Z"), None);
        assert_eq!(date_micros("1970-01-02"), Some(86_400_000_000));
    }

    #[test]
    fn local_times_use_the_zone_and_reject_the_impossible() {
        let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        assert_eq!(
            local_micros("2026-03-01 10:15:00", tz),
            rfc3339_micros("2026-03-01T02:15:00Z")
        );
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            local_micros("2026-03-08 02:30:00", ny),
            None,
            "skipped by DST"
        );
        assert_eq!(
            local_micros("2026-11-01 01:30:00", ny),
            rfc3339_micros("2026-11-01T01:30:00-04:00")
        );
    }

    #[test]
    fn booleans_follow_the_contract() {
        for (v, want) in [
            ("TRUE", true),
            ("y", true),
            ("1", true),
            ("No", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(boolean("email_opt_in", Some(v)).unwrap(), want, "{v}");
        }
        assert!(!boolean("email_opt_in", None).unwrap());
        assert_eq!(
            boolean("email_opt_in", Some("maybe")).unwrap_err().reason,
            RejectReason::BadValue
        );
    }

    #[test]
    fn currencies_default_to_base_and_need_a_rate() {
        let c = ctx();
        assert_eq!(currency(None, &c).unwrap().1, Rate::ONE);
        assert_eq!(currency(Some("cny"), &c).unwrap().0.as_str(), "CNY");
        assert_eq!(
            currency(Some("EUR"), &c).unwrap_err().reason,
            RejectReason::UnknownCurrency
        );
        assert_eq!(
            currency(Some("€"), &c).unwrap_err().reason,
            RejectReason::UnknownCurrency
        );
    }

    #[test]
    fn email_keys_borrow_normal_emails_only() {
        let c = ctx();
        let k = email_key(Cow::Borrowed(" a@b.c "), &c).unwrap();
        assert!(matches!(k, Some(Cow::Borrowed("a@b.c"))));
        assert_eq!(
            email_key(Cow::Borrowed(" Ä@B.c"), &c).unwrap().as_deref(),
            Some("ä@b.c")
        );
        assert_eq!(email_key(Cow::Owned("  ".into()), &c).unwrap(), None);
        assert_eq!(
            email_key(Cow::Borrowed("a\u{7f}@b.c"), &c)
                .unwrap_err()
                .reason,
            RejectReason::BadValue
        );
        assert_eq!(trim_cow(Cow::Owned(" x ".into())), "x");
    }

    #[test]
    fn a_leap_second_is_not_a_time() {
        assert_eq!(rfc3339_micros("2026-12-31T23:59:60Z"), None);
        assert_eq!(rfc3339_micros("2026-03-01T12:30:60+08:00"), None);
        assert_eq!(local_micros("2026-12-31 23:59:60", chrono_tz::UTC), None);
        assert!(rfc3339_micros("2026-12-31T23:59:59.999Z").is_some());
    }

    #[test]
    fn record_times_must_lie_in_the_plausible_window() {
        let c = ParseContext::new(&cvm_shared::Settings {
            today: NaiveDate::from_ymd_opt(2026, 3, 31),
            ..Default::default()
        });
        let t = |text: &str| record_time("ts", text, rfc3339_micros(text), &c);
        assert!(t("1970-01-01T00:00:00Z").is_ok());
        assert!(t("2026-04-01T23:59:59Z").is_ok(), "the day after the clock");
        for bad in [
            "0000-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-04-02T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "2026-02-30T00:00:00Z",
        ] {
            let r = t(bad).unwrap_err();
            assert_eq!(r.reason, RejectReason::BadDate, "{bad}");
            assert!(r.detail.contains(bad), "{}", r.detail);
        }
    }

    #[test]
    fn ids_and_keys_refuse_control_characters_names_keep_line_breaks() {
        let c = ctx();
        for (field, v) in [("customer_id", "C00000002\0"), ("order_id", "W\u{1b}1")] {
            let r = required_id(field, Some(v)).unwrap_err();
            assert_eq!(r.reason, RejectReason::BadValue);
            assert!(
                r.detail.contains(field) && r.detail.contains("U+00"),
                "{}",
                r.detail
            );
        }
        for (id, email, phone) in [
            (Some("C1\0"), None, None),
            (None, Some("a\0@b.c"), None),
            (None, None, Some("+1 555\t0001")),
            (None, Some("a\u{85}b@c.d"), None),
        ] {
            assert_eq!(
                keys(id, email, phone, &c).unwrap_err().reason,
                RejectReason::BadValue
            );
        }
        // Surrounding whitespace is trimmed, not refused.
        assert_eq!(
            keys(Some(" C1\t"), None, None, &c)
                .unwrap()
                .customer_id
                .as_deref(),
            Some("C1")
        );
        assert!(no_control("first_name", "Anne\r\nMarie\tB", true).is_ok());
        assert!(no_control("first_name", "Anne\0", true).is_err());
        assert!(no_control("first_name", "Anne\u{7}", true).is_err());
        assert!(no_control("first_name", "Zoë O'Brien", true).is_ok());
    }

    #[test]
    fn only_json_objects_are_records() {
        #[derive(serde::Deserialize, Debug)]
        struct Two {
            a: Option<u32>,
            b: Option<u32>,
        }
        let two: Two = json_object(r#"{"a":1,"b":2}"#).unwrap();
        assert_eq!((two.a, two.b), (Some(1), Some(2)));
        for line in ["[1,2]", "\"x\"", "3", "null"] {
            assert_eq!(
                json_object::<Two>(line).unwrap_err().reason,
                RejectReason::BadJson,
                "{line}"
            );
        }
    }

    #[test]
    fn digests_respect_field_boundaries() {
        assert_ne!(digest(["ab", "c"]), digest(["a", "bc"]));
        assert_eq!(digest(["a", "b"]), digest(["a", "b"]));
    }
}
