//! The contract's scalars: `Date` (YYYY-MM-DD) and `DateTime` (RFC 3339,
//! UTC), in place of async-graphql's chrono names.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// A calendar day, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

/// A date as `YYYY-MM-DD`.
#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| {
                    InputValueError::custom(format!("expected a date as YYYY-MM-DD, got {s:?}"))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// An instant, RFC 3339; always written in UTC (`Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub chrono::DateTime<Utc>);

impl DateTime {
    /// From a UTC timestamp as the database stores it.
    pub fn from_utc(t: NaiveDateTime) -> DateTime {
        DateTime(t.and_utc())
    }

    /// The UTC timestamp as the database stores it.
    pub fn naive_utc(self) -> NaiveDateTime {
        self.0.naive_utc()
    }
}

/// An RFC 3339 date and time (any offset accepted, UTC written).
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| DateTime(t.with_timezone(&Utc)))
                .map_err(|_| {
                    InputValueError::custom(format!(
                        "expected an RFC 3339 date and time such as 2024-03-01T10:00:00Z, got {s:?}"
                    ))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn date_times_are_read_with_any_offset_and_written_in_utc() {
        let t = DateTime::parse(Value::String("2024-03-01T12:30:00+02:00".into())).unwrap();
        assert_eq!(t.to_value(), Value::String("2024-03-01T10:30:00Z".into()));
        assert!(DateTime::parse(Value::String("2024-03-01 10:30".into())).is_err());
        assert!(DateTime::parse(Value::Number(1.into())).is_err());
    }

    #[test]
    fn dates_are_iso_days() {
        let d = Date::parse(Value::String("2024-02-29".into())).unwrap();
        assert_eq!(d.to_value(), Value::String("2024-02-29".into()));
        assert!(Date::parse(Value::String("2023-02-29".into())).is_err());
    }
}
