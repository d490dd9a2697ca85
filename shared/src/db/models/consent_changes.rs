//! The `consent_changes` table: every change of a customer's email consent,
//! with its time, its source and the record that caused it. A customer's
//! `email_opt_in` is the value of their latest change (ordered by `at`, then
//! `id`), or false when there is none (guests, and CRM records whose time
//! could not be stored).
//!
//! Writers: a load (one row per CRM record that changes the stored consent,
//! see `customers::upsert`), an unsubscribe, a staff action and an erasure
//! ([`set`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;
use crate::db::schema::{consent_changes, customers};
use crate::db::{DbConnection, DbError};

text_enum! {
    /// What changed a customer's consent.
    pub enum ConsentSource {
        /// A CRM record (a load).
        Crm = "crm",
        /// The customer's unsubscribe link (page, one-click or mailto).
        Unsubscribe = "unsubscribe",
        /// Staff, on the customer's behalf.
        Staff = "staff",
        /// The customer's erasure (consent withdrawn with the data).
        Erasure = "erasure",
    }
}

/// One stored consent change.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = consent_changes)]
pub struct ConsentChange {
    /// Surrogate key (orders changes at the same time).
    pub id: i64,
    /// The customer.
    pub customer_id: String,
    /// The consent it became.
    pub email_opt_in: bool,
    /// Why.
    pub source: ConsentSource,
    /// When it took effect.
    pub at: NaiveDateTime,
    /// The record that caused it.
    pub record: Option<String>,
    /// When it was written.
    pub recorded_at: NaiveDateTime,
}

/// A consent change to record.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = consent_changes, treat_none_as_default_value = false)]
pub struct NewConsentChange<'a> {
    /// The customer.
    pub customer_id: &'a str,
    /// The consent it becomes.
    pub email_opt_in: bool,
    /// Why.
    pub source: ConsentSource,
    /// When it takes effect.
    pub at: NaiveDateTime,
    /// The record that causes it (no personal data: a campaign id, a staff name, a run id).
    pub record: Option<&'a str>,
    /// Now.
    pub recorded_at: NaiveDateTime,
}

/// Sets a customer's consent to `change.email_opt_in` and records the change,
/// unless it already holds that value (then nothing is written). The change's
/// time becomes `consent_updated_at`, so only a later CRM record can undo it.
/// Returns whether the consent changed (false as well for an unknown
/// customer). Call it inside a transaction.
pub fn set(conn: &mut DbConnection, change: &NewConsentChange<'_>) -> Result<bool, DbError> {
    use customers::dsl as c;
    let updated = crate::with_backend!(conn, conn => diesel::update(
        c::customers
            .find(change.customer_id)
            .filter(c::email_opt_in.ne(change.email_opt_in)),
    )
    .set((
        c::email_opt_in.eq(change.email_opt_in),
        c::consent_updated_at.eq(Some(change.at)),
    ))
    .execute(conn))
    .map_err(DbError::query("customers", "set consent"))?;
    if updated == 0 {
        return Ok(false);
    }
    crate::with_backend!(conn, conn => diesel::insert_into(consent_changes::table)
        .values(change)
        .execute(conn))
    .map_err(DbError::query("consent_changes", "insert"))?;
    Ok(true)
}

/// The consent changes of the customers `ids`, oldest first per customer
/// (ordered by customer, time, id).
pub fn of_customers(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<Vec<ConsentChange>, DbError> {
    let mut all = Vec::new();
    // Bounded IN lists: SQLite caps bound parameters.
    for chunk in ids.chunks(500) {
        let rows: Vec<ConsentChange> = crate::with_backend!(conn, conn => consent_changes::table
            .filter(consent_changes::customer_id.eq_any(chunk))
            .order((
                consent_changes::customer_id,
                consent_changes::at,
                consent_changes::id,
            ))
            .select(ConsentChange::as_select())
            .load(conn))
        .map_err(DbError::query("consent_changes", "select"))?;
        all.extend(rows);
    }
    all.sort_by(|a, b| (&a.customer_id, a.at, a.id).cmp(&(&b.customer_id, b.at, b.id)));
    Ok(all)
}

/// The consent a history ends in: its last change's, or false when empty.
pub fn current(history: &[ConsentChange]) -> bool {
    history
        .iter()
        .max_by_key(|c| (c.at, c.id))
        .is_some_and(|c| c.email_opt_in)
}
