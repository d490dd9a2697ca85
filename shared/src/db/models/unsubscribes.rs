//! The `unsubscribes` table: every unsubscribe event (who, through which
//! campaign, how, when), the history behind `suppressions` and the
//! campaigns' unsubscribe counts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;

use crate::db::schema::unsubscribes;
use crate::db::{DbConnection, DbError};

text_enum! {
    /// How a customer unsubscribed.
    pub enum UnsubscribeSource {
        /// The confirmation page's button (`POST /u/{token}` from the page).
        Page = "page",
        /// A mailbox provider's one-click request (RFC 8058).
        OneClick = "one_click",
        /// A mail to the `List-Unsubscribe` mailto address.
        Mailto = "mailto",
        /// Staff, on the customer's behalf.
        Staff = "staff",
    }
}

/// An unsubscribe to record.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = unsubscribes, treat_none_as_default_value = false)]
pub struct NewUnsubscribe<'a> {
    /// The customer, when known.
    pub customer_id: Option<&'a str>,
    /// The campaign whose link was used.
    pub campaign_id: Option<i64>,
    /// The normalised address.
    pub address: &'a str,
    /// How.
    pub source: UnsubscribeSource,
    /// When.
    pub at: NaiveDateTime,
}

/// Records an unsubscribe event.
pub fn insert(conn: &mut DbConnection, row: &NewUnsubscribe<'_>) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(unsubscribes::table)
        .values(row)
        .execute(conn))
    .map(|_| ())
    .map_err(DbError::query("unsubscribes", "insert"))
}

/// How many unsubscribes came through campaign `id`'s links.
pub fn count_for_campaign(conn: &mut DbConnection, campaign_id: i64) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => unsubscribes::table
        .filter(unsubscribes::campaign_id.eq(campaign_id))
        .count()
        .get_result(conn))
    .map_err(DbError::query("unsubscribes", "count"))
}
