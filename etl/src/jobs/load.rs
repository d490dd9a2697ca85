//! The `load` job: upserts the warehouse's customers and the scores of one
//! scoring run into the database (SQLite or PostgreSQL).
//!
//! - Idempotent: loading the same warehouse twice leaves the same rows,
//!   `loaded_at` included: a load writes only the rows it inserts or changes
//!   (so a reload of unchanged data writes next to nothing), and only those
//!   take its stamp. `loaded_at` is when a load last changed the row.
//! - Atomic: every row of a load is written in one transaction (see
//!   `cvm_shared::db::models::bulk`: staged and merged, or written straight
//!   into an empty table), so a crash leaves the previous load intact and the
//!   next load completes it. SQLite readers (WAL) are never
//!   blocked; SQLite writers wait through their busy timeout.
//! - Vanished customers (in the database, not in the warehouse) are flagged
//!   `active = false`, never deleted: feedback, outbox and unsubscribes
//!   reference them. A customer who comes back is active again. They are
//!   found by an anti-join against the ids this load staged (not by
//!   `loaded_at`, which unchanged rows keep).
//! - Consent: `email_opt_in` is taken only from a CRM record at least as new as
//!   the one that set the stored value; never from an older one or a guest.
//! - Scores replace a customer's stored scores only if their `as_of` is the
//!   same or later, so loading an old scoring run never regresses "latest".
//! - No single row can fail a load: a row the database would refuse (a NUL
//!   in its id, a repeated id, a NaN in a required score, a date before
//!   PostgreSQL's range: see `cvm_shared::db::storable`) is skipped, and a
//!   refused optional value is left empty instead (a consent time that cannot
//!   be stored also clears the consent). Both are logged as a warning and
//!   listed in the run's summary, by customer id.
//! - The run is recorded in `job_runs` (succeeded with a JSON summary, or
//!   failed with the error), outside the data transaction so failures persist.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use cvm_shared::db::models::{customers, job_runs, scores};
use cvm_shared::db::{Backend, DbConnection, DbError, DbUrl, storable};
use cvm_shared::privacy::vault::Vault;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use rayon::prelude::*;
use rustc_hash::FxHashSet;

use crate::warehouse::{self, CustomerRow, ScoreRow, WarehouseError};

/// The PostgreSQL advisory lock key that serializes loads ("cvmload" in ASCII).
pub const PG_LOAD_LOCK: i64 = 0x0063_766d_6c6f_6164;

/// What to load and where.
#[derive(Clone)]
pub struct LoadOptions {
    /// The warehouse folder.
    pub warehouse: PathBuf,
    /// `sqlite://PATH` or `postgres://...`.
    pub db_url: String,
    /// The scoring run to load; default: the latest `scores/as_of=` folder.
    pub as_of: Option<NaiveDate>,
}

// Options are formatted with {:?} in logs: never with a database password.
impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("warehouse", &self.warehouse)
            .field("db_url", &cvm_shared::db::redact_url(&self.db_url))
            .field("as_of", &self.as_of)
            .finish()
    }
}

/// What a load did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// The `job_runs` id.
    pub run_id: String,
    /// The scores' date (None when the warehouse has no scores yet).
    pub as_of: Option<NaiveDate>,
    /// Customers loaded (the warehouse's, less the refused ones).
    pub customers: usize,
    /// Customers inserted or changed (the rest were already as loaded).
    pub customers_changed: usize,
    /// Customers newly flagged inactive (vanished from the warehouse).
    pub deactivated: usize,
    /// Score rows in the scoring run.
    pub scores: usize,
    /// Score rows inserted or changed.
    pub scores_changed: usize,
    /// Score rows skipped because their customer is not in the warehouse.
    pub scores_skipped: usize,
    /// Rows the database would refuse: skipped, or loaded without the bad value.
    pub refused: Vec<RefusedRow>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Most refused rows listed in a run's summary (all are counted).
const SUMMARY_REFUSED_ROWS: usize = 100;

/// What a load did with a row the database would refuse as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowAction {
    /// The row was not loaded.
    Skipped,
    /// The row was loaded with the refused value left empty.
    Cleaned,
}

/// A warehouse row the database would refuse as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedRow {
    /// `customers` or `scores`.
    pub table: &'static str,
    /// The row's customer id, escaped (a NUL reads `\0`).
    pub customer_id: String,
    /// The column at fault.
    pub field: &'static str,
    /// Skipped or cleaned.
    pub action: RowAction,
}

fn skipped_in(refused: &[RefusedRow], table: &str) -> usize {
    refused
        .iter()
        .filter(|r| r.table == table && r.action == RowAction::Skipped)
        .count()
}

impl LoadReport {
    /// The summary stored in `job_runs.summary`.
    pub fn summary_json(&self) -> serde_json::Value {
        serde_json::json!({
            "as_of": self.as_of.map(|d| d.to_string()),
            "customers": self.customers,
            "customers_changed": self.customers_changed,
            "deactivated": self.deactivated,
            "scores": self.scores,
            "scores_changed": self.scores_changed,
            "scores_skipped": self.scores_skipped,
            "customers_refused": self.skipped("customers"),
            "scores_refused": self.skipped("scores"),
            "values_cleaned": self.refused.iter().filter(|r| r.action == RowAction::Cleaned).count(),
            "refused": &self.refused[..self.refused.len().min(SUMMARY_REFUSED_ROWS)],
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
        })
    }

    /// Refused rows of `table` that were skipped.
    pub fn skipped(&self, table: &str) -> usize {
        skipped_in(&self.refused, table)
    }
}

/// Leaves out customers erased in the database whose warehouse part is not
/// done yet (erased through the portal since the last nightly run): a load
/// must not bring them back. Recognised by the keyed hash of their id.
fn drop_erased(
    conn: &mut DbConnection,
    customers: &mut Vec<CustomerRow>,
    scores: &mut Vec<ScoreRow>,
) -> Result<(), LoadError> {
    let erased: FxHashSet<String> = cvm_shared::privacy::erase::erased_id_hashes(conn)?
        .into_iter()
        .collect();
    if erased.is_empty() {
        return Ok(());
    }
    let key = cvm_shared::privacy::PrivacyKey::from_env()?;
    let kind = cvm_shared::privacy::KeyKind::CustomerId;
    let dropped: FxHashSet<Box<str>> = customers
        .par_iter()
        .filter(|c| erased.contains(&key.hash(kind, &c.customer_id)))
        .map(|c| c.customer_id.clone())
        .collect();
    if !dropped.is_empty() {
        tracing::warn!(
            customers = dropped.len(),
            "left out customers erased since the warehouse was last erased; run `cvm-etl nightly` (or `privacy erase`) to erase them from the warehouse"
        );
        customers.retain(|c| !dropped.contains(&c.customer_id));
        scores.retain(|s| !dropped.contains(&s.customer_id));
    }
    Ok(())
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The warehouse has no `customers/` dataset (a wrong path must not
    /// deactivate every customer).
    #[error("{0} is not a cvm warehouse (no customers/ folder): run `cvm-etl ingest` first")]
    NoWarehouse(PathBuf),
    /// `--as-of` names a scoring run that does not exist.
    #[error("no scores as of {as_of} in {path}: run `cvm-etl score --as-of {as_of}` first")]
    NoScores {
        /// Requested date.
        as_of: NaiveDate,
        /// Folder looked for.
        path: PathBuf,
    },
    /// Reading the warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Customers were erased, and `CVM_PRIVACY_KEY` (needed to leave them out) is missing.
    #[error("the database has erased customers: {0}")]
    Privacy(#[from] cvm_shared::privacy::KeyError),
}

/// Opens the database (applying migrations) and loads the warehouse into it.
pub fn run(opts: &LoadOptions) -> Result<LoadReport, LoadError> {
    let url = DbUrl::parse(&opts.db_url)?;
    let mut conn = DbConnection::open_for_write(&url)?;
    load(&mut conn, &opts.warehouse, opts.as_of)
}

/// The scoring run to load: `as_of` if given (it must exist), else the latest.
pub fn resolve_as_of(
    warehouse: &Path,
    as_of: Option<NaiveDate>,
) -> Result<Option<NaiveDate>, LoadError> {
    match as_of {
        Some(d) => {
            let path = warehouse::scores::dir_for(warehouse, d);
            if path.is_dir() {
                Ok(Some(d))
            } else {
                Err(LoadError::NoScores { as_of: d, path })
            }
        }
        None => Ok(warehouse::scores::dates(warehouse).last().copied()),
    }
}

/// Loads the warehouse into an open (migrated) connection and records the run.
pub fn load(
    conn: &mut DbConnection,
    warehouse: &Path,
    as_of: Option<NaiveDate>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let now = Utc::now();
    let run_id = crate::manifest::new_run_id("load");
    let as_of = resolve_as_of(warehouse, as_of)?;
    // One stamp for every row this load inserts or changes. Microseconds,
    // the precision both backends store.
    let loaded_at = now.naive_utc().trunc_subsecs(6);
    job_runs::start(conn, &run_id, "load", loaded_at, as_of)?;
    let result = load_rows(conn, warehouse, as_of, loaded_at).map(|n| LoadReport {
        run_id: run_id.clone(),
        as_of,
        customers: n.customers,
        customers_changed: n.customers_changed,
        deactivated: n.deactivated,
        scores: n.scores,
        scores_changed: n.scores_changed,
        scores_skipped: n.scores_skipped,
        refused: n.refused,
        seconds: started.elapsed().as_secs_f64(),
    });
    let finished = Utc::now().naive_utc();
    match &result {
        Ok(report) => job_runs::finish(conn, &run_id, finished, Ok(&report.summary_json()))?,
        Err(e) => {
            // The load's own error matters more than failing to record it.
            if let Err(rec) = job_runs::finish(conn, &run_id, finished, Err(&e.to_string())) {
                tracing::warn!(run_id, error = %rec, "could not record the failed load in job_runs");
            }
        }
    }
    if let Ok(r) = &result {
        tracing::info!(
            run_id = r.run_id,
            customers = r.customers,
            customers_changed = r.customers_changed,
            deactivated = r.deactivated,
            scores = r.scores,
            scores_changed = r.scores_changed,
            scores_skipped = r.scores_skipped,
            seconds = r.seconds,
            "load finished"
        );
    }
    result
}

fn read_inputs(
    warehouse: &Path,
    as_of: Option<NaiveDate>,
) -> Result<(Vec<CustomerRow>, Vec<ScoreRow>), LoadError> {
    let customers_dir = warehouse.join("customers");
    if !customers_dir.exists() {
        return Err(LoadError::NoWarehouse(warehouse.to_path_buf()));
    }
    let (customers, scores) = rayon::join(
        || warehouse::customers::read(&customers_dir),
        || match as_of {
            Some(d) => warehouse::scores::read(&warehouse::scores::dir_for(warehouse, d)),
            None => Ok(Vec::new()),
        },
    );
    let mut customers = customers?;
    reveal_contacts(warehouse, &mut customers)?;
    Ok((customers, scores?))
}

/// A pseudonymised warehouse's customers with their clear contact details
/// from the vault: the portal mails people, not hashes. A hash the vault
/// no longer has (an erased person's) becomes empty.
fn reveal_contacts(warehouse: &Path, customers: &mut [CustomerRow]) -> Result<(), LoadError> {
    let vault = Vault::read(warehouse).map_err(|e| WarehouseError::Format {
        path: cvm_shared::privacy::vault::path(warehouse),
        message: e.to_string(),
    })?;
    if vault.is_empty() {
        return Ok(());
    }
    customers.par_iter_mut().for_each(|c| {
        for field in [
            &mut c.email,
            &mut c.phone,
            &mut c.first_name,
            &mut c.last_name,
        ] {
            *field = vault.reveal_opt(field.as_deref()).map(Into::into);
        }
    });
    Ok(())
}

/// A warehouse timestamp (µs) as the database stores it; `None` when out of
/// range (rows are checked by [`check_customer`] first).
fn timestamp(micros: Option<i64>) -> Option<NaiveDateTime> {
    micros
        .and_then(DateTime::from_timestamp_micros)
        .map(|t| t.naive_utc())
}

fn timestamp_storable(micros: i64) -> bool {
    timestamp(Some(micros)).is_some_and(storable::timestamp)
}

/// Notes of one row's refused values: (column, what was done).
type Notes = Vec<(&'static str, RowAction)>;

/// Empties each value `ok` refuses, noting it as cleaned.
fn clean<V, const N: usize>(
    values: [(&'static str, &mut Option<V>); N],
    ok: impl Fn(&V) -> bool,
    notes: &mut Notes,
) {
    for (field, value) in values {
        if value.as_ref().is_some_and(|v| !ok(v)) {
            *value = None;
            notes.push((field, RowAction::Cleaned));
        }
    }
}

/// Whether the database takes `c`, after emptying the optional values it
/// would refuse. Never cleans the id.
fn check_customer(c: &mut CustomerRow, notes: &mut Notes) -> bool {
    if !storable::text(&c.customer_id) {
        notes.push(("customer_id", RowAction::Skipped));
        return false;
    }
    clean(
        [
            ("email", &mut c.email),
            ("phone", &mut c.phone),
            ("first_name", &mut c.first_name),
            ("last_name", &mut c.last_name),
            ("country", &mut c.country),
        ],
        |v| storable::text(v),
        notes,
    );
    clean(
        [
            ("signup_date", &mut c.signup_date),
            ("birth_date", &mut c.birth_date),
        ],
        |d| storable::date(*d),
        notes,
    );
    clean(
        [("first_seen", &mut c.first_seen)],
        |t| timestamp_storable(*t),
        notes,
    );
    let before = notes.len();
    clean(
        [("updated_at", &mut c.updated_at)],
        |t| timestamp_storable(*t),
        notes,
    );
    if notes.len() > before {
        // A consent whose time cannot be stored could not be weighed against
        // a newer one: it is dropped, never granted.
        c.email_opt_in = false;
    }
    true
}

/// Whether the database takes `s`, after emptying the optional values it
/// would refuse.
fn check_score(s: &mut ScoreRow, notes: &mut Notes) -> bool {
    let required = [
        ("recency", storable::real(s.recency)),
        ("t", storable::real(s.t)),
        ("monetary_avg", storable::real(s.monetary_avg)),
        ("as_of", storable::date(s.as_of)),
        ("rfm_segment", storable::text(&s.rfm_segment)),
    ];
    if let Some((field, _)) = required.into_iter().find(|(_, ok)| !ok) {
        notes.push((field, RowAction::Skipped));
        return false;
    }
    clean(
        [
            ("nps_class", &mut s.nps_class),
            ("lifecycle_stage", &mut s.lifecycle_stage),
            ("value_tier", &mut s.value_tier),
        ],
        |v| storable::text(v),
        notes,
    );
    clean(
        [
            ("first_purchase", &mut s.first_purchase),
            ("last_purchase", &mut s.last_purchase),
        ],
        |d| storable::date(*d),
        notes,
    );
    true
}

/// Keeps the rows `check` accepts (cleaning them) and the first of each id
/// (the primary key refuses the rest), noting every refused row in `refused`.
fn keep_storable<T>(
    rows: &mut Vec<T>,
    table: &'static str,
    id: fn(&T) -> &str,
    check: fn(&mut T, &mut Notes) -> bool,
    refused: &mut Vec<RefusedRow>,
) {
    let repeated: Vec<bool> = {
        let mut seen = FxHashSet::with_capacity_and_hasher(rows.len(), Default::default());
        rows.iter().map(|r| !seen.insert(id(r))).collect()
    };
    let mut repeated = repeated.into_iter();
    let mut notes = Notes::new();
    rows.retain_mut(|row| {
        notes.clear();
        let keep = if repeated.next().unwrap_or(false) {
            notes.push(("customer_id", RowAction::Skipped));
            false
        } else {
            check(row, &mut notes)
        };
        if !notes.is_empty() {
            let customer_id = id(row).escape_debug().to_string();
            refused.extend(notes.iter().map(|&(field, action)| RefusedRow {
                table,
                customer_id: customer_id.clone(),
                field,
                action,
            }));
        }
        keep
    });
}

fn new_customer(c: &CustomerRow, loaded_at: NaiveDateTime) -> customers::NewCustomer<'_> {
    let channels: Vec<&str> = c.channels.iter().map(|ch| ch.as_str()).collect();
    customers::NewCustomer {
        customer_id: &c.customer_id,
        is_guest: c.is_guest,
        email: c.email.as_deref(),
        phone: c.phone.as_deref(),
        first_name: c.first_name.as_deref(),
        last_name: c.last_name.as_deref(),
        country: c.country.as_deref(),
        signup_date: c.signup_date,
        birth_date: c.birth_date,
        email_opt_in: c.email_opt_in && !c.is_guest,
        // Guests carry no consent record: their rows never decide consent.
        consent_updated_at: if c.is_guest {
            None
        } else {
            timestamp(c.updated_at)
        },
        first_seen: timestamp(c.first_seen),
        channels: channels.join(","),
        active: true,
        loaded_at,
    }
}

fn new_score(s: &ScoreRow, loaded_at: NaiveDateTime) -> scores::NewScore<'_> {
    scores::NewScore {
        customer_id: &s.customer_id,
        as_of: s.as_of,
        orders: i64::from(s.orders),
        frequency: i64::from(s.frequency),
        recency: s.recency,
        t: s.t,
        monetary_avg: s.monetary_avg,
        total_revenue: s.total_revenue.to_string(),
        first_purchase: s.first_purchase,
        last_purchase: s.last_purchase,
        days_since_last_purchase: s.days_since_last_purchase,
        r_score: s.r_score.map(i32::from),
        f_score: s.f_score.map(i32::from),
        m_score: s.m_score.map(i32::from),
        rfm_segment: &s.rfm_segment,
        p_alive: s.p_alive,
        expected_purchases_90d: s.expected_purchases_90d,
        expected_purchases_365d: s.expected_purchases_365d,
        expected_avg_value: s.expected_avg_value,
        clv_12m: s.clv_12m,
        churn_risk: s.churn_risk,
        nps_last: s.nps_last.map(i32::from),
        nps_class: s.nps_class.as_deref(),
        engagement_90d: i64::from(s.engagement_90d),
        lifecycle_stage: s.lifecycle_stage.as_deref(),
        value_tier: s.value_tier.as_deref(),
        loyalty_index: s.loyalty_index,
        loaded_at,
    }
}

/// The row counts of a load.
struct Counts {
    customers: usize,
    customers_changed: usize,
    deactivated: usize,
    scores: usize,
    scores_changed: usize,
    scores_skipped: usize,
    refused: Vec<RefusedRow>,
}

/// Reads, converts and writes in one transaction.
fn load_rows(
    conn: &mut DbConnection,
    warehouse: &Path,
    as_of: Option<NaiveDate>,
    loaded_at: NaiveDateTime,
) -> Result<Counts, LoadError> {
    let (mut customer_rows, mut score_rows) = read_inputs(warehouse, as_of)?;
    drop_erased(conn, &mut customer_rows, &mut score_rows)?;
    if as_of.is_none() {
        tracing::warn!(warehouse = %warehouse.display(), "no scores/as_of=* folder yet: loading customers only");
    }
    let mut refused = Vec::new();
    keep_storable(
        &mut customer_rows,
        "customers",
        |c| &c.customer_id,
        check_customer,
        &mut refused,
    );
    let (new_customers, known) = rayon::join(
        || {
            customer_rows
                .par_iter()
                .map(|c| new_customer(c, loaded_at))
                .collect::<Vec<_>>()
        },
        || {
            customer_rows
                .iter()
                .map(|c| &*c.customer_id)
                .collect::<FxHashSet<&str>>()
        },
    );
    // A score of a customer absent from customers/ (or not loaded) has no
    // row to reference (the foreign key would fail the whole load): skip and count it.
    let read_scores = score_rows.len();
    score_rows.retain(|s| known.contains(&*s.customer_id));
    let skipped = read_scores - score_rows.len();
    drop(known);
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "scores of customers not in customers/ were skipped"
        );
    }
    keep_storable(
        &mut score_rows,
        "scores",
        |s| &s.customer_id,
        check_score,
        &mut refused,
    );
    if !refused.is_empty() {
        let listed: Vec<String> = refused
            .iter()
            .take(SUMMARY_REFUSED_ROWS)
            .map(|r| format!("{}:{}:{}", r.table, r.customer_id, r.field))
            .collect();
        tracing::warn!(
            refused = refused.len(),
            customers_skipped = skipped_in(&refused, "customers"),
            scores_skipped = skipped_in(&refused, "scores"),
            rows = listed.join(", "),
            "rows the database would refuse were skipped or loaded without the refused value (listed in the run's summary in job_runs)"
        );
    }
    let new_scores: Vec<_> = score_rows
        .par_iter()
        .map(|s| new_score(s, loaded_at))
        .collect();
    let backend = conn.backend();
    let (customers_changed, deactivated, scores_changed) =
        conn.transaction::<_, DbError, _>(|c| {
            // SQLite's write lock before the first read (see lock_for_write).
            cvm_shared::db::lock_for_write(c)?;
            if backend == Backend::Postgres {
                // The commit need not wait for its WAL flush: job_runs records
                // success in a later, synchronous commit, which flushes this one.
                // The merges hash a million ids: the default 4 MB work_mem makes
                // every join spill to disk in 8-32 batches. Loads take turns (as
                // SQLite writers do): the merge inserts new customers with a plain
                // INSERT, which a concurrent load's uncommitted rows would fail.
                c.batch_execute(&format!(
                    "SET LOCAL synchronous_commit = off; SET LOCAL work_mem = '256MB'; \
                 SELECT pg_advisory_xact_lock({PG_LOAD_LOCK})"
                ))
                .map_err(DbError::query("customers", "set the load's settings"))?;
            }
            let (written, deactivated) = customers::upsert_all(c, &new_customers)?;
            let scores_written = scores::upsert(c, &new_scores)?;
            Ok((written, deactivated, scores_written))
        })?;
    Ok(Counts {
        customers: new_customers.len(),
        customers_changed,
        deactivated,
        scores: new_scores.len(),
        scores_changed,
        scores_skipped: skipped,
        refused,
    })
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn debug_of_the_options_hides_the_database_password() {
        let opts = LoadOptions {
            warehouse: "wh".into(),
            db_url: "postgres://cvm:topsecret@db/cvm".into(),
            as_of: None,
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("postgres://cvm:***@db/cvm"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
