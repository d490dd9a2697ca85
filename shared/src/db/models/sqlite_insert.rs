//! SQLite multi-row INSERTs that diesel prepares once per connection.
//!
//! diesel's own multi-row insert of a slice cannot be cached (its query id
//! would need the rows' `'static` type, and rows borrow their strings), so
//! every batch was parsed again: a tenth of a load's time. [`Insert`] is a
//! fixed number of rows with a static query id, so the statement is prepared
//! once and only rebound. Dates and timestamps are bound as the very text
//! diesel writes (`%F` and `%F %T%.f`), formatted by hand: chrono's format
//! interpreter cost another tenth.

use std::marker::PhantomData;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

/// Rows per INSERT (28 columns x 100 stays far under SQLite's 32,766
/// variables; longer statements gain little once they are not re-parsed).
const ROWS: usize = 100;

/// A date bound as `YYYY-MM-DD` text, as diesel stores `Date` on SQLite.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType)]
#[diesel(sqlite_type(name = "Text"))]
pub(crate) struct DateText;

/// A timestamp bound as `YYYY-MM-DD HH:MM:SS[.fff[fff[fff]]]` text, as
/// diesel stores `Timestamp` on SQLite.
#[derive(Debug, Clone, Copy, diesel::sql_types::SqlType)]
#[diesel(sqlite_type(name = "Text"))]
pub(crate) struct StampText;

impl ToSql<DateText, Sqlite> for NaiveDate {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(date_text(*self));
        Ok(IsNull::No)
    }
}

impl ToSql<StampText, Sqlite> for NaiveDateTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(stamp_text(*self));
        Ok(IsNull::No)
    }
}

/// Appends `n` as `width` zero-padded digits (`n` < 10^width).
fn push_digits(s: &mut String, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        s.push(char::from(b'0' + ((n / div) % 10) as u8));
        div /= 10;
    }
}

/// `d` as chrono's `%F` writes it.
pub(crate) fn date_text(d: NaiveDate) -> String {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        // Signed or five-digit years: rare enough for chrono's formatter.
        return d.format("%F").to_string();
    }
    let mut s = String::with_capacity(10);
    push_digits(&mut s, year as u32, 4);
    s.push('-');
    push_digits(&mut s, d.month(), 2);
    s.push('-');
    push_digits(&mut s, d.day(), 2);
    s
}

/// `t` as chrono's `%F %T%.f` writes it: the fraction is left out when
/// zero, else 3, 6 or 9 digits, the fewest that show it exactly.
pub(crate) fn stamp_text(t: NaiveDateTime) -> String {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 || !(0..=9999).contains(&t.year()) {
        // A leap second or an odd year: leave those to chrono.
        return t.format("%F %T%.f").to_string();
    }
    let mut s = date_text(t.date());
    s.reserve(19);
    s.push(' ');
    push_digits(&mut s, t.hour(), 2);
    s.push(':');
    push_digits(&mut s, t.minute(), 2);
    s.push(':');
    push_digits(&mut s, t.second(), 2);
    if nanos != 0 {
        s.push('.');
        if nanos.is_multiple_of(1_000_000) {
            push_digits(&mut s, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            push_digits(&mut s, nanos / 1_000, 6);
        } else {
            push_digits(&mut s, nanos, 9);
        }
    }
    s
}

/// A field bound the way diesel's `Insertable` binds it on SQLite.
pub(crate) trait Field {
    /// Pushes this value as one bind parameter.
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()>;
}

macro_rules! fields {
    ($($ty:ty => $st:ty,)*) => {$(
        impl Field for $ty {
            fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
                out.push_bind_param::<$st, $ty>(self)
            }
        }
        impl Field for Option<$ty> {
            fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
                out.push_bind_param::<Nullable<$st>, Option<$ty>>(self)
            }
        }
    )*};
}

fields! {
    bool => Bool,
    i32 => Integer,
    i64 => BigInt,
    f64 => Double,
    String => Text,
    &str => Text,
    NaiveDate => DateText,
    NaiveDateTime => StampText,
}

/// A row type [`insert`] can write.
pub(crate) trait Row {
    /// The row type with `'static` lifetimes: the statement cache's key.
    type Id: 'static;
    /// The target table.
    const TABLE: &'static str;
    /// Its staging table.
    const STAGING: &'static str;
    /// The columns, in the order [`Row::bind`] binds them.
    const COLUMNS: &'static [&'static str];
    /// Pushes every column's value, separated by `", "`.
    fn bind<'b>(&'b self, out: &mut AstPass<'_, 'b, Sqlite>) -> QueryResult<()>;
}

/// Implements [`Row`] for a struct whose fields are the columns, in order.
macro_rules! sqlite_row {
    ($row:ident, $table:literal, $staging:literal, $first:ident $(, $field:ident)* $(,)?) => {
        impl $crate::db::models::sqlite_insert::Row for $row<'_> {
            type Id = $row<'static>;
            const TABLE: &'static str = $table;
            const STAGING: &'static str = $staging;
            const COLUMNS: &'static [&'static str] = &[stringify!($first) $(, stringify!($field))*];
            fn bind<'b>(
                &'b self,
                out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
            ) -> diesel::QueryResult<()> {
                use $crate::db::models::sqlite_insert::Field;
                self.$first.bind(out)?;
                $(
                    out.push_sql(", ");
                    self.$field.bind(out)?;
                )*
                Ok(())
            }
        }
    };
}
pub(crate) use sqlite_row;

/// `N` rows into the table (`STAGING` false) or its staging table.
struct Insert<'r, R, const N: usize, const STAGING: bool>(&'r [R]);

/// The statement cache's key of an [`Insert`].
struct InsertId<I, const N: usize, const STAGING: bool>(PhantomData<I>);

impl<R: Row, const N: usize, const STAGING: bool> QueryId for Insert<'_, R, N, STAGING> {
    type QueryId = InsertId<R::Id, N, STAGING>;
    // The SQL depends on nothing but R, N and STAGING.
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<R: Row, const N: usize, const STAGING: bool> QueryFragment<Sqlite>
    for Insert<'_, R, N, STAGING>
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_identifier(if STAGING { R::STAGING } else { R::TABLE })?;
        out.push_sql(" (");
        for (i, c) in R::COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(c)?;
        }
        out.push_sql(") VALUES ");
        for (i, row) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            row.bind(&mut out)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<R, const N: usize, const STAGING: bool> RunQueryDsl<SqliteConnection>
    for Insert<'_, R, N, STAGING>
{
}

/// Inserts `rows` into `R`'s table, or its staging table if `staging`.
pub(crate) fn insert<R: Row>(
    conn: &mut SqliteConnection,
    rows: &[R],
    staging: bool,
) -> QueryResult<()> {
    fn run<R: Row, const STAGING: bool>(c: &mut SqliteConnection, rows: &[R]) -> QueryResult<()> {
        let mut chunks = rows.chunks_exact(ROWS);
        for chunk in &mut chunks {
            Insert::<R, ROWS, STAGING>(chunk).execute(c)?;
        }
        for row in chunks.remainder() {
            Insert::<R, 1, STAGING>(std::slice::from_ref(row)).execute(c)?;
        }
        Ok(())
    }
    if staging {
        run::<R, true>(conn, rows)
    } else {
        run::<R, false>(conn, rows)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate};
    use proptest::prelude::*;

    use super::{date_text, stamp_text};

    proptest! {
        #[test]
        fn timestamps_are_written_as_diesel_writes_them(
            secs in -70_000_000_000i64..300_000_000_000,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1_000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            let t = DateTime::from_timestamp(secs, nanos).unwrap().naive_utc();
            prop_assert_eq!(stamp_text(t), t.format("%F %T%.f").to_string());
        }

        #[test]
        fn dates_are_written_as_diesel_writes_them(days in -1_000_000i32..1_000_000) {
            let d = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            prop_assert_eq!(date_text(d), d.format("%F").to_string());
        }
    }
}
