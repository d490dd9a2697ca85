//! The `scores` table: the latest scores per customer.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

#[cfg(any(test, feature = "load"))]
use super::bulk::{self, Merge};
#[cfg(any(test, feature = "load"))]
use super::sqlite_insert;
use crate::db::schema::scores;
use crate::db::{DbConnection, DbError};

/// Declares the insertable and the queryable score structs with one field list.
macro_rules! score_structs {
    ($(#[$km:meta])* $key:ident : $new_kty:ty => $kty:ty, $($(#[$m:meta])* $field:ident : $new_ty:ty => $ty:ty,)*) => {
        /// A score row to write.
        #[derive(Debug, Clone, PartialEq, Insertable)]
        #[diesel(table_name = scores, treat_none_as_default_value = false)]
        #[diesel(table_name = scores_staging)]
        pub struct NewScore<'a> {
            $(#[$km])* pub $key: $new_kty,
            $($(#[$m])* pub $field: $new_ty,)*
        }

        #[cfg(any(test, feature = "load"))]
        sqlite_insert::sqlite_row!(NewScore, "scores", "scores_staging", $key $(, $field)*);

        /// A stored score row.
        #[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
        #[diesel(table_name = scores)]
        pub struct Score {
            $(#[$km])* pub $key: $kty,
            $($(#[$m])* pub $field: $ty,)*
        }

        /// Inserts or updates `rows` (call it inside a transaction; one staging
        /// table and one merge, see [`bulk`]). A stored row is replaced only by
        /// scores as of the same or a later date, so re-loading an old run never
        /// regresses "latest", and only if a value differs (`loaded_at` moves
        /// only then). Returns the rows inserted or changed.
        #[cfg(any(test, feature = "load"))]
        pub fn upsert(conn: &mut DbConnection, rows: &[NewScore<'_>]) -> Result<usize, DbError> {
            const COLUMNS: &[&str] = &[stringify!($key), $(stringify!($field),)*];
            // Every column but the key and loaded_at (the last one).
            let values = &COLUMNS[1..COLUMNS.len() - 1];
            let guard = format!(
                "scores.as_of <= excluded.as_of AND {}",
                bulk::distinct("scores", values)
            );
            let merge = Merge {
                table: "scores",
                staging: "scores_staging",
                key: stringify!($key),
                columns: COLUMNS,
                set: &bulk::set_excluded(&COLUMNS[1..]),
                guard: &guard,
                before_merge: None,
                after_bulk: None,
            };
            let stage = |conn: &mut DbConnection, part: &[NewScore<'_>], dest| {
                bulk::write_rows!(conn, dest, part, scores::table, scores_staging::table)
            };
            bulk::upsert(conn, &merge, rows, stage, None).map(|(written, _)| written)
        }
    };
}

diesel::table! {
    /// The temporary staging table of [`upsert`]: the columns of `scores`.
    scores_staging (customer_id) {
        customer_id -> Text,
        as_of -> Date,
        orders -> BigInt,
        frequency -> BigInt,
        recency -> Double,
        t -> Double,
        monetary_avg -> Double,
        total_revenue -> Text,
        first_purchase -> Nullable<Date>,
        last_purchase -> Nullable<Date>,
        days_since_last_purchase -> Nullable<Integer>,
        r_score -> Nullable<Integer>,
        f_score -> Nullable<Integer>,
        m_score -> Nullable<Integer>,
        rfm_segment -> Text,
        p_alive -> Nullable<Double>,
        expected_purchases_90d -> Nullable<Double>,
        expected_purchases_365d -> Nullable<Double>,
        expected_avg_value -> Nullable<Double>,
        clv_12m -> Nullable<Double>,
        churn_risk -> Nullable<Double>,
        nps_last -> Nullable<Integer>,
        nps_class -> Nullable<Text>,
        engagement_90d -> BigInt,
        lifecycle_stage -> Nullable<Text>,
        value_tier -> Nullable<Text>,
        loyalty_index -> Nullable<Double>,
        loaded_at -> Timestamp,
    }
}

score_structs! {
    /// Customer id.
    customer_id: &'a str => String,
    /// The day the scores are computed for.
    as_of: NaiveDate => NaiveDate,
    /// Purchase occasions.
    orders: i64 => i64,
    /// Repeat occasions.
    frequency: i64 => i64,
    /// First to last occasion, in periods.
    recency: f64 => f64,
    /// First occasion to `as_of`, in periods.
    t: f64 => f64,
    /// Mean value of repeat occasions.
    monetary_avg: f64 => f64,
    /// Net revenue, exact decimal text.
    total_revenue: String => String,
    /// First occasion.
    first_purchase: Option<NaiveDate> => Option<NaiveDate>,
    /// Last occasion.
    last_purchase: Option<NaiveDate> => Option<NaiveDate>,
    /// Days from the last occasion to `as_of`.
    days_since_last_purchase: Option<i32> => Option<i32>,
    /// RFM recency score.
    r_score: Option<i32> => Option<i32>,
    /// RFM frequency score.
    f_score: Option<i32> => Option<i32>,
    /// RFM monetary score.
    m_score: Option<i32> => Option<i32>,
    /// Named RFM segment.
    rfm_segment: &'a str => String,
    /// P(alive).
    p_alive: Option<f64> => Option<f64>,
    /// Expected purchases, 90 days.
    expected_purchases_90d: Option<f64> => Option<f64>,
    /// Expected purchases, 365 days.
    expected_purchases_365d: Option<f64> => Option<f64>,
    /// Expected average order value.
    expected_avg_value: Option<f64> => Option<f64>,
    /// 12-month CLV.
    clv_12m: Option<f64> => Option<f64>,
    /// Churn risk.
    churn_risk: Option<f64> => Option<f64>,
    /// Latest NPS answer.
    nps_last: Option<i32> => Option<i32>,
    /// NPS class.
    nps_class: Option<&'a str> => Option<String>,
    /// Engagement events, 90 days.
    engagement_90d: i64 => i64,
    /// Lifecycle stage.
    lifecycle_stage: Option<&'a str> => Option<String>,
    /// Value tier.
    value_tier: Option<&'a str> => Option<String>,
    /// Loyalty index.
    loyalty_index: Option<f64> => Option<f64>,
    /// The last load that inserted or changed this row.
    loaded_at: NaiveDateTime => NaiveDateTime,
}

/// One customer's scores.
pub fn find(conn: &mut DbConnection, customer_id: &str) -> Result<Option<Score>, DbError> {
    crate::with_backend!(conn, conn => scores::table
        .find(customer_id)
        .select(Score::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("scores", "select"))
}

/// Every score row, ordered by customer id (tests and small exports only).
pub fn all(conn: &mut DbConnection) -> Result<Vec<Score>, DbError> {
    crate::with_backend!(conn, conn => scores::table
        .order(scores::customer_id)
        .select(Score::as_select())
        .load(conn))
    .map_err(DbError::query("scores", "select"))
}

/// Number of score rows.
pub fn count(conn: &mut DbConnection) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => scores::table.count().get_result::<i64>(conn))
        .map_err(DbError::query("scores", "count"))
}
