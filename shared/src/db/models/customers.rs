//! The `customers` table: profile and consent, one row per customer ever loaded.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

#[cfg(any(test, feature = "load"))]
use super::bulk::{self, Merge};
#[cfg(any(test, feature = "load"))]
use super::sqlite_insert;
#[cfg(any(test, feature = "load"))]
use crate::db::Backend;
use crate::db::schema::customers;
use crate::db::{DbConnection, DbError};

diesel::table! {
    /// The temporary staging table of [`upsert`]: the columns of `customers`.
    customers_staging (customer_id) {
        customer_id -> Text,
        is_guest -> Bool,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        country -> Nullable<Text>,
        signup_date -> Nullable<Date>,
        birth_date -> Nullable<Date>,
        email_opt_in -> Bool,
        consent_updated_at -> Nullable<Timestamp>,
        first_seen -> Nullable<Timestamp>,
        channels -> Text,
        active -> Bool,
        loaded_at -> Timestamp,
    }
}

/// The columns of `customers` (and of its staging table), key first.
#[cfg(any(test, feature = "load"))]
const COLUMNS: [&str; 15] = [
    "customer_id",
    "is_guest",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "signup_date",
    "birth_date",
    "email_opt_in",
    "consent_updated_at",
    "first_seen",
    "channels",
    "active",
    "loaded_at",
];

/// The columns an upsert overwrites with the incoming value (profile fields;
/// consent and `active` are set separately, see [`upsert`]).
#[cfg(any(test, feature = "load"))]
const PROFILE: [&str; 10] = [
    "is_guest",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "signup_date",
    "birth_date",
    "first_seen",
    "channels",
];

/// A customer as loaded from the warehouse.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = customers, treat_none_as_default_value = false)]
#[diesel(table_name = customers_staging)]
pub struct NewCustomer<'a> {
    /// CRM id or guest id.
    pub customer_id: &'a str,
    /// True for customers not in CRM.
    pub is_guest: bool,
    /// Normalised email.
    pub email: Option<&'a str>,
    /// Phone in E.164.
    pub phone: Option<&'a str>,
    /// Given name.
    pub first_name: Option<&'a str>,
    /// Family name.
    pub last_name: Option<&'a str>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<&'a str>,
    /// CRM signup date.
    pub signup_date: Option<NaiveDate>,
    /// CRM birth date.
    pub birth_date: Option<NaiveDate>,
    /// Marketing consent in this record.
    pub email_opt_in: bool,
    /// The CRM `updated_at` of this record (None for guests).
    pub consent_updated_at: Option<NaiveDateTime>,
    /// First seen.
    pub first_seen: Option<NaiveDateTime>,
    /// Channels, comma-separated.
    pub channels: String,
    /// Always true for a loaded row.
    pub active: bool,
    /// The load's timestamp (the same for every row of one load): stored
    /// only if this load inserts or changes the row.
    pub loaded_at: NaiveDateTime,
}

#[cfg(any(test, feature = "load"))]
sqlite_insert::sqlite_row!(
    NewCustomer,
    "customers",
    "customers_staging",
    customer_id,
    is_guest,
    email,
    phone,
    first_name,
    last_name,
    country,
    signup_date,
    birth_date,
    email_opt_in,
    consent_updated_at,
    first_seen,
    channels,
    active,
    loaded_at,
);

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = customers)]
pub struct Customer {
    /// CRM id or guest id.
    pub customer_id: String,
    /// True for customers not in CRM.
    pub is_guest: bool,
    /// Normalised email.
    pub email: Option<String>,
    /// Phone in E.164.
    pub phone: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// CRM signup date.
    pub signup_date: Option<NaiveDate>,
    /// CRM birth date.
    pub birth_date: Option<NaiveDate>,
    /// Marketing consent.
    pub email_opt_in: bool,
    /// When the consent value was set.
    pub consent_updated_at: Option<NaiveDateTime>,
    /// First seen.
    pub first_seen: Option<NaiveDateTime>,
    /// Channels, comma-separated.
    pub channels: String,
    /// False once vanished from the warehouse.
    pub active: bool,
    /// The last load that inserted or changed the row (a load that finds
    /// the row as it would write it leaves it, stamp included).
    pub loaded_at: NaiveDateTime,
    /// Erased on request: the id is a pseudonym, the personal fields are empty.
    pub erased: bool,
}

#[cfg(any(test, feature = "load"))]
/// The incoming record decides consent only if it is a CRM record at least as
/// new as the one that set the stored consent; guests never do. Both SET
/// expressions see the old row, so they agree.
const CONSENT_WINS: &str = "(NOT excluded.is_guest AND (customers.consent_updated_at IS NULL \
     OR excluded.consent_updated_at >= customers.consent_updated_at))";

#[cfg(any(test, feature = "load"))]
/// The consent history of a load's CRM records: a change for every new CRM
/// customer, and for every stored one whose consent the incoming record wins
/// with a different value (`consent_changes`; `recorded_at` is the load's
/// stamp, its `job_runs.started_at`). Run before the merge, on the staged rows.
fn consent_changes_sql() -> String {
    format!(
        "INSERT INTO consent_changes (customer_id, email_opt_in, source, at, record, recorded_at) \
         SELECT excluded.customer_id, excluded.email_opt_in, 'crm', excluded.consent_updated_at, \
         'load', excluded.loaded_at \
         FROM customers_staging AS excluded \
         LEFT JOIN customers ON customers.customer_id = excluded.customer_id \
         WHERE NOT excluded.is_guest AND excluded.consent_updated_at IS NOT NULL \
         AND (customers.customer_id IS NULL \
              OR ({CONSENT_WINS} AND customers.email_opt_in <> excluded.email_opt_in))"
    )
}

#[cfg(any(test, feature = "load"))]
/// [`consent_changes_sql`] for a first load (every row is new).
const FIRST_CONSENT: &str = "INSERT INTO consent_changes (customer_id, email_opt_in, source, at, record, recorded_at) \
     SELECT customer_id, email_opt_in, 'crm', consent_updated_at, 'load', loaded_at \
     FROM customers WHERE NOT is_guest AND consent_updated_at IS NOT NULL";

#[cfg(any(test, feature = "load"))]
/// Inserts or updates `rows` (call it inside a transaction; one staging
/// table and one merge, see [`bulk`]). Profile fields take the incoming
/// values; consent follows [`CONSENT_WINS`]; `active` becomes true;
/// `loaded_at` takes the incoming stamp, but only on rows that change: a
/// row already holding what the upsert would write is left untouched.
/// Returns the rows inserted or changed.
pub fn upsert(conn: &mut DbConnection, rows: &[NewCustomer<'_>]) -> Result<usize, DbError> {
    merge(conn, rows, false).map(|(written, _)| written)
}

#[cfg(any(test, feature = "load"))]
/// [`upsert`] of every customer there is, then flags as inactive every
/// active customer not among `rows` (they vanished from the warehouse; an
/// anti-join against the staged ids). Rows are kept, never deleted:
/// feedback, outbox and unsubscribes reference them. Returns (rows inserted
/// or changed, rows flagged inactive).
pub fn upsert_all(
    conn: &mut DbConnection,
    rows: &[NewCustomer<'_>],
) -> Result<(usize, usize), DbError> {
    merge(conn, rows, true)
}

#[cfg(any(test, feature = "load"))]
fn merge(
    conn: &mut DbConnection,
    rows: &[NewCustomer<'_>],
    deactivate_missing: bool,
) -> Result<(usize, usize), DbError> {
    let set = format!(
        "{profile}, \
         email_opt_in = CASE WHEN {CONSENT_WINS} THEN excluded.email_opt_in ELSE customers.email_opt_in END, \
         consent_updated_at = CASE WHEN {CONSENT_WINS} THEN excluded.consent_updated_at ELSE customers.consent_updated_at END, \
         active = true, loaded_at = excluded.loaded_at",
        profile = bulk::set_excluded(&PROFILE),
    );
    // The row changes if a profile field differs, it was inactive, or the
    // consent it wins differs from the stored one.
    let guard = format!(
        "({profile} OR NOT customers.active OR ({CONSENT_WINS} AND {consent}))",
        profile = bulk::distinct("customers", &PROFILE),
        consent = bulk::distinct("customers", &["email_opt_in", "consent_updated_at"]),
    );
    let record_consent = consent_changes_sql();
    let merge = Merge {
        table: "customers",
        staging: "customers_staging",
        key: "customer_id",
        columns: &COLUMNS,
        set: &set,
        guard: &guard,
        before_merge: Some(&record_consent),
        after_bulk: Some(FIRST_CONSENT),
    };
    // NOT EXISTS plans as a hash anti-join on PostgreSQL (NOT IN would probe
    // a subplan per row once the ids outgrow work_mem); SQLite builds one
    // index for NOT IN (the staging table has none).
    let deactivate = match conn.backend() {
        Backend::Postgres => {
            "UPDATE customers SET active = false WHERE active AND NOT EXISTS \
             (SELECT 1 FROM customers_staging s WHERE s.customer_id = customers.customer_id)"
        }
        Backend::Sqlite => {
            "UPDATE customers SET active = false WHERE active AND customer_id NOT IN \
             (SELECT customer_id FROM customers_staging)"
        }
    };
    bulk::upsert(
        conn,
        &merge,
        rows,
        |conn, rows, dest| {
            bulk::write_rows!(conn, dest, rows, customers::table, customers_staging::table)
        },
        deactivate_missing.then_some(deactivate),
    )
}

/// One customer by id.
pub fn find(conn: &mut DbConnection, customer_id: &str) -> Result<Option<Customer>, DbError> {
    crate::with_backend!(conn, conn => customers::table
        .find(customer_id)
        .select(Customer::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("customers", "select"))
}

/// Every customer, ordered by id (tests and small exports only).
pub fn all(conn: &mut DbConnection) -> Result<Vec<Customer>, DbError> {
    crate::with_backend!(conn, conn => customers::table
        .order(customers::customer_id)
        .select(Customer::as_select())
        .load(conn))
    .map_err(DbError::query("customers", "select"))
}

/// Number of customers, and of active ones.
pub fn counts(conn: &mut DbConnection) -> Result<(i64, i64), DbError> {
    let total =
        crate::with_backend!(conn, conn => customers::table.count().get_result::<i64>(conn))
            .map_err(DbError::query("customers", "count"))?;
    let active = crate::with_backend!(conn, conn => customers::table
        .filter(customers::active.eq(true))
        .count()
        .get_result::<i64>(conn))
    .map_err(DbError::query("customers", "count"))?;
    Ok((total, active))
}
