//! The `customers` table: profile and consent, one row per customer ever loaded.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Timestamp};
use diesel::upsert::excluded;

use crate::db::schema::customers;
use crate::db::{DbConnection, DbError};

/// Rows per INSERT: 16 columns x 2,000 stays under SQLite's 32,766 variables.
pub const UPSERT_BATCH: usize = 2_000;

/// A customer as loaded from the warehouse.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = customers, treat_none_as_default_value = false)]
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
    /// The load's timestamp (the same for every row of one load).
    pub loaded_at: NaiveDateTime,
}

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
    /// Last load that wrote the row.
    pub loaded_at: NaiveDateTime,
}

/// The incoming record decides consent only if it is a CRM record at least as
/// new as the one that set the stored consent; guests never do. Both SET
/// expressions see the old row, so they agree.
const CONSENT_WINS: &str = "(NOT excluded.is_guest AND (customers.consent_updated_at IS NULL \
     OR excluded.consent_updated_at >= customers.consent_updated_at))";

/// Inserts or updates `rows` (in statements of [`UPSERT_BATCH`] rows; call it
/// inside a transaction). Profile fields take the incoming values; consent
/// follows [`CONSENT_WINS`]; `active` becomes true. Returns rows written.
pub fn upsert(conn: &mut DbConnection, rows: &[NewCustomer<'_>]) -> Result<usize, DbError> {
    let opt_in = format!(
        "CASE WHEN {CONSENT_WINS} THEN excluded.email_opt_in ELSE customers.email_opt_in END"
    );
    let consent_at = format!(
        "CASE WHEN {CONSENT_WINS} THEN excluded.consent_updated_at ELSE customers.consent_updated_at END"
    );
    let mut n = 0;
    for batch in rows.chunks(UPSERT_BATCH) {
        use customers::dsl as c;
        let set = (
            c::is_guest.eq(excluded(c::is_guest)),
            c::email.eq(excluded(c::email)),
            c::phone.eq(excluded(c::phone)),
            c::first_name.eq(excluded(c::first_name)),
            c::last_name.eq(excluded(c::last_name)),
            c::country.eq(excluded(c::country)),
            c::signup_date.eq(excluded(c::signup_date)),
            c::birth_date.eq(excluded(c::birth_date)),
            c::email_opt_in.eq(sql::<Bool>(&opt_in)),
            c::consent_updated_at.eq(sql::<Nullable<Timestamp>>(&consent_at)),
            c::first_seen.eq(excluded(c::first_seen)),
            c::channels.eq(excluded(c::channels)),
            c::active.eq(true),
            c::loaded_at.eq(excluded(c::loaded_at)),
        );
        n += crate::with_backend!(conn, conn => diesel::insert_into(customers::table)
            .values(batch)
            .on_conflict(c::customer_id)
            .do_update()
            .set(set)
            .execute(conn))
        .map_err(DbError::query("customers", "upsert"))?;
    }
    Ok(n)
}

/// Flags as inactive every active customer the load stamped `loaded_at` did
/// not write (they vanished from the warehouse). Rows are kept, never deleted:
/// feedback, outbox and unsubscribes reference them. Returns rows flagged.
pub fn deactivate_missing(
    conn: &mut DbConnection,
    loaded_at: NaiveDateTime,
) -> Result<usize, DbError> {
    use customers::dsl as c;
    crate::with_backend!(conn, conn => diesel::update(c::customers.filter(c::active.eq(true)).filter(c::loaded_at.ne(loaded_at)))
        .set(c::active.eq(false))
        .execute(conn))
    .map_err(DbError::query("customers", "deactivate"))
}

/// Records an unsubscribe in the consent columns (the portal calls this with
/// the unsubscribe time, so an older CRM record cannot opt the customer back in).
pub fn set_opt_out(
    conn: &mut DbConnection,
    customer_id: &str,
    at: NaiveDateTime,
) -> Result<usize, DbError> {
    use customers::dsl as c;
    crate::with_backend!(conn, conn => diesel::update(c::customers.find(customer_id))
        .set((c::email_opt_in.eq(false), c::consent_updated_at.eq(Some(at))))
        .execute(conn))
    .map_err(DbError::query("customers", "opt out"))
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
