//! Erasure of a customer from the database (right to be forgotten), in one
//! transaction: either all of it happens or none, so an erasure killed
//! mid-way leaves the customer as they were and a re-run completes it.
//!
//! What goes: email, phone, names, birth date, survey comments, the
//! addresses of their messages, unsubscribes and suppressions (kept as
//! keyed hashes; a suppressed address another customer still has stays as
//! it is, since it may be their unsubscribe), SMTP replies that may quote the
//! address, staff notes on their consent, and their id, replaced by a
//! stable pseudonym in every table that references it (scores,
//! invitations, outbox, unsubscribes, suppressions, consent history, audit
//! log, job run summaries). What stays, under the pseudonym: dates,
//! amounts, scores, answers' scores, message fates, so counts, revenue,
//! NPS and campaign statistics do not move. The pseudonymised customer row
//! stays, flagged `erased`, and still counts as a customer.
//!
//! Deleted bytes do not linger: on SQLite the erasure runs with
//! `secure_delete` (freed space is zeroed), then rebuilds the file (`VACUUM`:
//! earlier updates leave stale copies of rows in free space) and truncates
//! the WAL; on PostgreSQL the touched tables are
//! vacuumed after the commit (dead row versions are pruned; the bytes of
//! pruned tuples stay in the data files until reused, and in WAL archives
//! and backups: see the README's Privacy section).
//!
//! The warehouse is erased by `cvm-etl` (the portal does not touch Parquet):
//! the erasure is recorded with `warehouse_done_at` empty and the keyed
//! hashes of the person's keys, and the next `cvm-etl nightly` or
//! `cvm-etl privacy erase` rewrites the warehouse and marks it done.

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::key::{KeyKind, PrivacyKey};
use crate::db::models::audit_log::{self, AuditAction, NewAuditEntry};
use crate::db::models::consent_changes::{ConsentSource, NewConsentChange};
use crate::db::models::customers;
use crate::db::models::suppressions::{self, SuppressionReason};
use crate::db::schema::{
    answers, audit_log_customers, consent_changes as consent_t, customers as customers_t,
    erasure_keys, erasures, invitations, outbox, scores, suppressions as suppressions_t,
    unsubscribes,
};
use crate::db::{Backend, DbConnection, DbError, lock_for_write};

/// Who asks to erase whom, and why.
#[derive(Debug, Clone)]
pub struct ErasureRequest<'a> {
    /// The customer's id (or, for an erasure repeated later, the id they had).
    pub customer_id: &'a str,
    /// Staff token name, or `cli:<user>`.
    pub actor: &'a str,
    /// Why (kept in the audit log and the erasure record).
    pub reason: &'a str,
    /// Now.
    pub at: NaiveDateTime,
}

/// A recorded erasure.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = erasures)]
pub struct Erasure {
    /// The pseudonym that replaced the id.
    pub pseudonym: String,
    /// When the database part was done.
    pub erased_at: NaiveDateTime,
    /// Who asked.
    pub erased_by: String,
    /// Why.
    pub reason: String,
    /// When the warehouse was rewritten (None: pending).
    pub warehouse_done_at: Option<NaiveDateTime>,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureOutcome {
    /// The customer was erased now.
    Erased(Erasure),
    /// The customer had been erased before; nothing changed but the audit log.
    AlreadyErased(Erasure),
}

impl ErasureOutcome {
    /// The erasure record, new or earlier.
    pub fn erasure(&self) -> &Erasure {
        match self {
            ErasureOutcome::Erased(e) | ErasureOutcome::AlreadyErased(e) => e,
        }
    }
}

/// Why an erasure could not be done.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// No such customer, erased or not.
    #[error(
        "no customer {0:?} in the database (nor an erased one with that id): check the id (`cvm-etl privacy export` lists what is held)"
    )]
    NotFound(String),
    /// The database failed (nothing was changed).
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for EraseError {
    fn from(e: diesel::result::Error) -> EraseError {
        EraseError::Db(e.into())
    }
}

/// A key of the erased person, hashed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HashedKey {
    /// What it is a hash of.
    pub kind: KeyKind,
    /// The keyed hash.
    pub hash: String,
}

/// The erasure of pseudonym `p`, if any.
pub fn find(conn: &mut DbConnection, pseudonym: &str) -> Result<Option<Erasure>, DbError> {
    crate::with_backend!(conn, conn => erasures::table
        .find(pseudonym)
        .select(Erasure::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("erasures", "select"))
}

/// Erasures whose warehouse part is still to do, oldest first, each with its hashed keys.
pub fn pending_in_warehouse(
    conn: &mut DbConnection,
) -> Result<Vec<(Erasure, Vec<HashedKey>)>, DbError> {
    let pending: Vec<Erasure> = crate::with_backend!(conn, conn => erasures::table
        .filter(erasures::warehouse_done_at.is_null())
        .order((erasures::erased_at, erasures::pseudonym))
        .select(Erasure::as_select())
        .load(conn))
    .map_err(DbError::query("erasures", "select pending"))?;
    let mut out = Vec::with_capacity(pending.len());
    for e in pending {
        let keys = keys_of(conn, &e.pseudonym)?;
        out.push((e, keys));
    }
    Ok(out)
}

/// The hashed keys of erasure `pseudonym`.
pub fn keys_of(conn: &mut DbConnection, pseudonym: &str) -> Result<Vec<HashedKey>, DbError> {
    let rows: Vec<(String, String)> = crate::with_backend!(conn, conn => erasure_keys::table
        .filter(erasure_keys::pseudonym.eq(pseudonym))
        .order((erasure_keys::kind, erasure_keys::key_hash))
        .select((erasure_keys::kind, erasure_keys::key_hash))
        .load(conn))
    .map_err(DbError::query("erasure_keys", "select"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, hash)| KeyKind::parse(&k).map(|kind| HashedKey { kind, hash }))
        .collect())
}

/// Adds keys found later (in the warehouse) to erasure `pseudonym`.
pub fn add_keys(
    conn: &mut DbConnection,
    pseudonym: &str,
    keys: &[HashedKey],
) -> Result<(), DbError> {
    for k in keys {
        let row = (
            erasure_keys::pseudonym.eq(pseudonym),
            erasure_keys::kind.eq(k.kind.as_str()),
            erasure_keys::key_hash.eq(&k.hash),
        );
        crate::with_backend!(conn, conn => diesel::insert_into(erasure_keys::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(conn))
        .map_err(DbError::query("erasure_keys", "insert"))?;
    }
    Ok(())
}

/// Marks the warehouse part of erasure `pseudonym` done.
pub fn mark_warehouse_done(
    conn: &mut DbConnection,
    pseudonym: &str,
    at: NaiveDateTime,
) -> Result<(), DbError> {
    crate::with_backend!(conn, conn => diesel::update(erasures::table.find(pseudonym))
        .set(erasures::warehouse_done_at.eq(Some(at)))
        .execute(conn))
    .map(|_| ())
    .map_err(DbError::query("erasures", "mark done"))
}

/// The keyed hashes of every erased customer id (what a load must not bring back).
pub fn erased_id_hashes(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    crate::with_backend!(conn, conn => erasure_keys::table
        .filter(erasure_keys::kind.eq(KeyKind::CustomerId.as_str()))
        .select(erasure_keys::key_hash)
        .load(conn))
    .map_err(DbError::query("erasure_keys", "select ids"))
}

/// Erases `req.customer_id` from the database (see the module doc).
pub fn erase_in_database(
    conn: &mut DbConnection,
    key: &PrivacyKey,
    req: &ErasureRequest<'_>,
) -> Result<ErasureOutcome, EraseError> {
    let backend = conn.backend();
    if backend == Backend::Sqlite {
        // Deleted and overwritten content is zeroed, not left in free pages.
        conn.batch_execute("PRAGMA secure_delete = ON")
            .map_err(DbError::query("customers", "secure_delete"))?;
    }
    let outcome = conn.transaction::<_, EraseError, _>(|c| {
        lock_for_write(c)?;
        erase_rows(c, key, req)
    })?;
    if matches!(outcome, ErasureOutcome::Erased(_)) {
        scrub(conn)?;
    }
    Ok(outcome)
}

/// After the commit: deleted bytes leave the database files.
fn scrub(conn: &mut DbConnection) -> Result<(), DbError> {
    let sql = match conn.backend() {
        // secure_delete zeroes what this erasure frees, not the stale bytes
        // earlier updates (by any connection) left in free space: VACUUM
        // rebuilds the file with none of either.
        Backend::Sqlite => "VACUUM; PRAGMA wal_checkpoint(TRUNCATE)".to_string(),
        Backend::Postgres => {
            "VACUUM customers, scores, invitations, answers, outbox, unsubscribes, \
             suppressions, consent_changes, audit_log_customers, job_runs"
                .to_string()
        }
    };
    conn.batch_execute(&sql)
        .map_err(DbError::query("customers", "scrub after erasure"))
}

fn erase_rows(
    c: &mut DbConnection,
    key: &PrivacyKey,
    req: &ErasureRequest<'_>,
) -> Result<ErasureOutcome, EraseError> {
    let id = req.customer_id;
    let pseudonym = key.pseudonym(id);
    if let Some(done) = find(c, &pseudonym)? {
        let detail = format!("erased again: {}", req.reason);
        let entry = NewAuditEntry {
            at: req.at,
            actor: req.actor,
            action: AuditAction::Erase,
            detail: Some(&detail),
        };
        audit_log::insert(c, &entry, &[&pseudonym])?;
        return Ok(ErasureOutcome::AlreadyErased(done));
    }
    let Some(row) = customers::find(c, id)? else {
        return Err(EraseError::NotFound(id.to_owned()));
    };
    let q = |what: &'static str| DbError::query("customers", what);

    // Every address the person was mailed at, unsubscribed from or is
    // suppressed under, beside the profile's.
    let mut addresses: Vec<String> = row.email.iter().cloned().collect();
    let mailed: Vec<Option<String>> = crate::with_backend!(c, c => outbox::table
        .filter(outbox::customer_id.eq(id))
        .select(outbox::address)
        .distinct()
        .load(c))
    .map_err(DbError::query("outbox", "select addresses"))?;
    let unsubscribed: Vec<String> = crate::with_backend!(c, c => unsubscribes::table
        .filter(unsubscribes::customer_id.eq(id))
        .select(unsubscribes::address)
        .distinct()
        .load(c))
    .map_err(DbError::query("unsubscribes", "select addresses"))?;
    addresses.extend(mailed.into_iter().flatten());
    addresses.extend(unsubscribed);
    let mut addresses: Vec<String> = addresses
        .iter()
        .map(|a| suppressions::normalize_address(a))
        .filter(|a| !a.is_empty())
        .collect();
    addresses.sort();
    addresses.dedup();

    let mut keys = vec![HashedKey {
        kind: KeyKind::CustomerId,
        hash: key.hash(KeyKind::CustomerId, id),
    }];
    keys.extend(addresses.iter().map(|a| HashedKey {
        kind: KeyKind::Email,
        hash: key.hash(KeyKind::Email, a),
    }));
    if let Some(phone) = &row.phone {
        keys.push(HashedKey {
            kind: KeyKind::Phone,
            hash: key.hash(KeyKind::Phone, phone),
        });
    }
    keys.sort();
    keys.dedup();

    // The pseudonymised row first (children are re-pointed to it), then the old one goes.
    let new_row = (
        customers_t::customer_id.eq(&pseudonym),
        customers_t::is_guest.eq(row.is_guest),
        customers_t::country.eq(&row.country),
        customers_t::signup_date.eq(row.signup_date),
        customers_t::email_opt_in.eq(false),
        customers_t::consent_updated_at.eq(Some(req.at)),
        customers_t::first_seen.eq(row.first_seen),
        customers_t::channels.eq(&row.channels),
        customers_t::active.eq(row.active),
        customers_t::loaded_at.eq(row.loaded_at),
        customers_t::erased.eq(true),
    );
    crate::with_backend!(c, c => diesel::insert_into(customers_t::table)
        .values(new_row)
        .execute(c))
    .map_err(q("insert pseudonym"))?;

    macro_rules! repoint {
        ($table:ident, $what:literal) => {
            crate::with_backend!(c, c => diesel::update($table::table.filter($table::customer_id.eq(id)))
                .set($table::customer_id.eq(&pseudonym))
                .execute(c))
            .map_err(DbError::query(stringify!($table), $what))?
        };
    }
    repoint!(scores, "re-point scores");
    repoint!(invitations, "re-point invitations");
    repoint!(outbox, "re-point outbox");
    repoint!(unsubscribes, "re-point unsubscribes");
    repoint!(suppressions_t, "re-point suppressions");
    repoint!(consent_t, "re-point consent changes");
    repoint!(audit_log_customers, "re-point audit entries");

    // Survey comments are deleted; the scores answered stay.
    crate::with_backend!(c, c => diesel::update(
        answers::table.filter(
            answers::invitation_id.eq_any(
                invitations::table
                    .filter(invitations::customer_id.eq(&pseudonym))
                    .select(invitations::id),
            ),
        ),
    )
    .set(answers::comment.eq(None::<String>))
    .execute(c))
    .map_err(DbError::query("answers", "delete comments"))?;

    // Addresses become keyed hashes wherever they were kept.
    for address in &addresses {
        let hashed = key.hashed_value(KeyKind::Email, address);
        crate::with_backend!(c, c => diesel::update(
            outbox::table.filter(outbox::customer_id.eq(&pseudonym).and(outbox::address.eq(address))),
        )
        .set(outbox::address.eq(&hashed))
        .execute(c))
        .map_err(DbError::query("outbox", "hash address"))?;
        crate::with_backend!(c, c => diesel::update(
            unsubscribes::table.filter(
                unsubscribes::customer_id.eq(&pseudonym).and(unsubscribes::address.eq(address)),
            ),
        )
        .set(unsubscribes::address.eq(&hashed))
        .execute(c))
        .map_err(DbError::query("unsubscribes", "hash address"))?;
        // An address another customer still has is theirs too: its
        // suppression stays as it is (it may be their unsubscribe).
        let others: i64 = crate::with_backend!(c, c => customers_t::table
            .filter(customers_t::email.eq(address))
            .filter(customers_t::customer_id.ne(id))
            .filter(customers_t::customer_id.ne(&pseudonym))
            .count()
            .get_result(c))
        .map_err(DbError::query("customers", "count sharing an address"))?;
        if others > 0 {
            continue;
        }
        let kept = suppressions::find(c, address)?;
        crate::with_backend!(c, c => diesel::delete(suppressions_t::table.find(address)).execute(c))
            .map_err(DbError::query("suppressions", "delete clear address"))?;
        let hashed_row = match kept {
            Some(s) => suppressions::Suppression {
                address: hashed,
                customer_id: Some(pseudonym.clone()),
                ..s
            },
            None => suppressions::Suppression {
                address: hashed,
                reason: SuppressionReason::Erased,
                customer_id: Some(pseudonym.clone()),
                campaign_id: None,
                at: req.at,
            },
        };
        suppressions::add(c, &hashed_row)?;
    }
    // An SMTP reply may quote the address.
    crate::with_backend!(c, c => diesel::update(outbox::table.filter(outbox::customer_id.eq(&pseudonym)))
        .set(outbox::last_error.eq(None::<String>))
        .execute(c))
    .map_err(DbError::query("outbox", "clear replies"))?;

    // Consent: withdrawn with the data; staff notes may hold personal details.
    crate::with_backend!(c, c => diesel::update(
        consent_t::table
            .filter(consent_t::customer_id.eq(&pseudonym))
            .filter(consent_t::source.eq(ConsentSource::Staff)),
    )
    .set(consent_t::record.eq(Some("staff")))
    .execute(c))
    .map_err(DbError::query("consent_changes", "clear staff notes"))?;
    if row.email_opt_in {
        let record = NewConsentChange {
            customer_id: &pseudonym,
            email_opt_in: false,
            source: ConsentSource::Erasure,
            at: req.at,
            record: Some("erasure"),
            recorded_at: req.at,
        };
        crate::with_backend!(c, c => diesel::insert_into(consent_t::table)
            .values(&record)
            .execute(c))
        .map_err(DbError::query("consent_changes", "insert"))?;
    }

    // Job run summaries list refused rows by customer id (JSON strings).
    let quoted = serde_json::to_string(id).unwrap_or_default();
    let replacement = serde_json::to_string(&pseudonym).unwrap_or_default();
    let sql = match c.backend() {
        Backend::Sqlite => {
            "UPDATE job_runs SET summary = REPLACE(summary, ?, ?) WHERE summary LIKE ? ESCAPE '\\'"
        }
        Backend::Postgres => {
            "UPDATE job_runs SET summary = REPLACE(summary, $1, $2) WHERE summary LIKE $3 ESCAPE '\\'"
        }
    };
    let pattern = format!("%{}%", like_escape(&quoted));
    crate::with_backend!(c, c => diesel::sql_query(sql)
        .bind::<diesel::sql_types::Text, _>(&quoted)
        .bind::<diesel::sql_types::Text, _>(&replacement)
        .bind::<diesel::sql_types::Text, _>(&pattern)
        .execute(c))
    .map_err(DbError::query("job_runs", "pseudonymise summaries"))?;

    crate::with_backend!(c, c => diesel::delete(customers_t::table.find(id)).execute(c))
        .map_err(q("delete"))?;

    let erasure = Erasure {
        pseudonym: pseudonym.clone(),
        erased_at: req.at,
        erased_by: req.actor.to_owned(),
        reason: req.reason.to_owned(),
        warehouse_done_at: None,
    };
    crate::with_backend!(c, c => diesel::insert_into(erasures::table)
        .values((
            erasures::pseudonym.eq(&erasure.pseudonym),
            erasures::erased_at.eq(erasure.erased_at),
            erasures::erased_by.eq(&erasure.erased_by),
            erasures::reason.eq(&erasure.reason),
        ))
        .execute(c))
    .map_err(DbError::query("erasures", "insert"))?;
    add_keys(c, &pseudonym, &keys)?;
    let entry = NewAuditEntry {
        at: req.at,
        actor: req.actor,
        action: AuditAction::Erase,
        detail: Some(req.reason),
    };
    audit_log::insert(c, &entry, &[&pseudonym])?;
    Ok(ErasureOutcome::Erased(erasure))
}

/// `s` with LIKE's wildcards and the escape character escaped by `\`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
