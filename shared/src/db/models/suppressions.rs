//! The `suppressions` table: addresses never to mail again, by normalised
//! address, whatever becomes of the customer row (a CRM export that still
//! lists an unsubscribed address does not bring it back).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;

use crate::db::schema::suppressions;
use crate::db::{DbConnection, DbError};

text_enum! {
    /// Why an address is suppressed.
    pub enum SuppressionReason {
        /// The customer unsubscribed (link, one-click, mailto).
        Unsubscribed = "unsubscribed",
        /// The server refused the address permanently.
        HardBounced = "hard_bounced",
        /// The customer was erased (privacy request).
        Erased = "erased",
        /// Suppressed by staff.
        Staff = "staff",
    }
}

/// A suppression to record.
#[derive(Debug, Clone, PartialEq, Insertable, Queryable, Selectable)]
#[diesel(table_name = suppressions, treat_none_as_default_value = false)]
pub struct Suppression {
    /// Normalised address.
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// The customer at the time.
    pub customer_id: Option<String>,
    /// The campaign that caused it.
    pub campaign_id: Option<i64>,
    /// When.
    pub at: NaiveDateTime,
}

/// The address as suppressions and frequency caps compare it: trimmed, lower-case.
pub fn normalize_address(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Suppresses `row.address`; an address already suppressed keeps its first
/// reason and time. Returns whether it was new.
pub fn add(conn: &mut DbConnection, row: &Suppression) -> Result<bool, DbError> {
    let added = crate::with_backend!(conn, conn => diesel::insert_into(suppressions::table)
        .values(row)
        .on_conflict(suppressions::address)
        .do_nothing()
        .execute(conn))
    .map_err(DbError::query("suppressions", "insert"))?;
    Ok(added == 1)
}

/// The suppression of `address` (normalised first), if any.
pub fn find(conn: &mut DbConnection, address: &str) -> Result<Option<Suppression>, DbError> {
    let key = normalize_address(address);
    crate::with_backend!(conn, conn => suppressions::table
        .find(key)
        .select(Suppression::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("suppressions", "select"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_compare_trimmed_and_lower_cased() {
        assert_eq!(
            super::normalize_address("  Ann@Example.COM\t"),
            "ann@example.com"
        );
    }
}
