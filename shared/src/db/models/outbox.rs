//! The `outbox` table: one row per (campaign, customer) holding that
//! recipient's fate, so a campaign reaches a customer at most once.
//!
//! ```text
//! QUEUED ──claim (lease)──▶ SENDING ──server accepted──▶ SENT
//!   ▲                         │ ├──4xx: backoff──▶ QUEUED (attempts + 1)
//!   └────retryFailed── FAILED ◀┘ └──5xx──▶ FAILED
//! QUEUED ──suppressed before sending──▶ SUPPRESSED
//! SENDING ──lease expired (process died mid-send)──▶ IN_DOUBT
//! CONTROL: held out of the campaign, never sent
//! ```
//! A row is claimed by one sender at a time (a lease: `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, the write lock on SQLite). Its `Message-ID` is
//! fixed before the SMTP transaction. A row found `SENDING` after its lease
//! ran out belonged to a process that died between claiming and recording
//! the server's answer: the server may have accepted it, so it becomes
//! `IN_DOUBT` and is reported, never sent again by itself.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;

use super::campaigns::CampaignStatus;
use crate::db::schema::{campaigns, outbox};
use crate::db::{DbConnection, DbError};

text_enum! {
    /// A recipient's fate (see the module diagram).
    pub enum RecipientStatus {
        /// Due to be sent (now, or at `next_attempt_at` after a 4xx).
        Queued = "queued",
        /// Claimed by a sender, SMTP transaction under way.
        Sending = "sending",
        /// The server accepted the message.
        Sent = "sent",
        /// The server refused it permanently (5xx), or retries ran out.
        Failed = "failed",
        /// Suppressed (unsubscribed, bounced, erased) after the freeze, before sending.
        Suppressed = "suppressed",
        /// Its sender died mid-transaction: maybe delivered, never resent by itself.
        InDoubt = "in_doubt",
        /// In the control group: never sent.
        Control = "control",
    }
}

impl RecipientStatus {
    /// Whether a row may go from `self` to `next` (the module diagram).
    pub fn can_become(self, next: RecipientStatus) -> bool {
        use RecipientStatus::*;
        matches!(
            (self, next),
            (Queued, Sending | Suppressed)
                | (Sending, Sent | Queued | Failed | InDoubt)
                | (Failed, Queued)
        )
    }

    /// A fate no sender will change by itself (only `retryFailed` requeues a failure).
    pub fn is_final(self) -> bool {
        !matches!(self, RecipientStatus::Queued | RecipientStatus::Sending)
    }
}

/// A recipient frozen into a campaign's outbox.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct NewRecipient<'a> {
    /// The campaign.
    pub campaign_id: i64,
    /// The customer.
    pub customer_id: &'a str,
    /// Normalised address (None only for control rows).
    pub address: Option<&'a str>,
    /// `Queued` or `Control`.
    pub status: RecipientStatus,
    /// `Message-ID`, fixed now (None for control rows).
    pub message_id: Option<&'a str>,
    /// SHA-256 of the unsubscribe token (None for control rows).
    pub unsubscribe_hash: Option<&'a str>,
    /// Scores when frozen: orders, revenue, p_alive (campaignUplift's baseline).
    pub base_orders: Option<i64>,
    /// See `base_orders`.
    pub base_revenue: Option<f64>,
    /// See `base_orders`.
    pub base_p_alive: Option<f64>,
    /// When the audience was frozen.
    pub queued_at: NaiveDateTime,
}

/// A stored recipient.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct Recipient {
    /// Surrogate key.
    pub id: i64,
    /// The campaign.
    pub campaign_id: i64,
    /// The customer.
    pub customer_id: String,
    /// Normalised address.
    pub address: Option<String>,
    /// Fate so far.
    pub status: RecipientStatus,
    /// `Message-ID`, fixed before the SMTP transaction.
    pub message_id: Option<String>,
    /// SMTP transactions started.
    pub attempts: i32,
    /// The last failure's reply.
    pub last_error: Option<String>,
    /// Why it was suppressed.
    pub suppressed_reason: Option<String>,
    /// Not before this.
    pub next_attempt_at: Option<NaiveDateTime>,
    /// The sender holding the lease.
    pub lease_owner: Option<String>,
    /// The lease's end.
    pub lease_until: Option<NaiveDateTime>,
    /// Freeze time.
    pub queued_at: NaiveDateTime,
    /// Acceptance time.
    pub sent_at: Option<NaiveDateTime>,
}

/// What a sender learnt of one claimed row.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// The server accepted the message at this time.
    Sent(NaiveDateTime),
    /// A temporary refusal (4xx) or no connection: queued again, not before `retry_at`.
    Retry {
        /// The reply or error.
        error: String,
        /// Next attempt.
        retry_at: NaiveDateTime,
    },
    /// A permanent refusal (5xx), or temporary ones until attempts ran out.
    Failed(String),
    /// The transaction broke after the message was handed over: maybe delivered.
    InDoubt(String),
    /// Not sent: the re-check before sending found this reason.
    Suppressed(String),
}

impl Fate {
    fn status(&self) -> RecipientStatus {
        match self {
            Fate::Sent(_) => RecipientStatus::Sent,
            Fate::Retry { .. } => RecipientStatus::Queued,
            Fate::Failed(_) => RecipientStatus::Failed,
            Fate::InDoubt(_) => RecipientStatus::InDoubt,
            Fate::Suppressed(_) => RecipientStatus::Suppressed,
        }
    }
}

/// Longest stored server reply, in characters (replies can be long and are only for people).
const MAX_ERROR_CHARS: usize = 500;

fn clip(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// Claims up to `limit` due rows of sending campaigns for `owner` until
/// `lease_until`: each becomes `SENDING` with one more attempt. Rows
/// another sender holds are skipped (`FOR UPDATE SKIP LOCKED` on
/// PostgreSQL; SQLite runs one writer at a time). Oldest rows first. Call
/// it inside a transaction that holds the write lock ([`crate::db::lock_for_write`]).
pub fn claim(
    conn: &mut DbConnection,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    limit: i64,
) -> Result<Vec<Recipient>, DbError> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    // FOR SHARE (PostgreSQL): a pause or cancel waits for this claim to
    // commit, so once pauseCampaign returns, the rows it can still send are
    // exactly those already SENDING. SQLite's write lock does the same.
    let sending = campaigns::table
        .filter(campaigns::status.eq(CampaignStatus::Sending))
        .select(campaigns::id)
        .order(campaigns::id.asc());
    let sending: Vec<i64> = match conn {
        DbConnection::Sqlite(c) => sending.load(c),
        DbConnection::Pg(c) => sending.for_share().load(c),
    }
    .map_err(DbError::query("campaigns", "select sending"))?;
    // Two statements, so call this inside a transaction: the ids are locked
    // by the select (PostgreSQL) or by the write lock the caller holds
    // (SQLite). One campaign at a time, in id order: the index
    // `outbox_claim` (campaign, status, id) answers each with a few entries.
    let mut ids: Vec<i64> = Vec::new();
    for campaign in sending {
        let left = limit - i64::try_from(ids.len()).unwrap_or(i64::MAX);
        if left <= 0 {
            break;
        }
        let due = outbox::table
            .filter(outbox::campaign_id.eq(campaign))
            .filter(outbox::status.eq(RecipientStatus::Queued))
            .filter(
                outbox::next_attempt_at
                    .is_null()
                    .or(outbox::next_attempt_at.le(now)),
            )
            .order(outbox::id.asc())
            .limit(left)
            .select(outbox::id);
        let found: Vec<i64> = match conn {
            DbConnection::Sqlite(c) => due.load(c),
            DbConnection::Pg(c) => due.for_update().skip_locked().load(c),
        }
        .map_err(DbError::query("outbox", "select due rows"))?;
        ids.extend(found);
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let set = (
        outbox::status.eq(RecipientStatus::Sending),
        outbox::lease_owner.eq(owner),
        outbox::lease_until.eq(lease_until),
        outbox::attempts.eq(outbox::attempts + 1),
    );
    let target = outbox::table
        .filter(outbox::id.eq_any(&ids))
        .filter(outbox::status.eq(RecipientStatus::Queued));
    crate::with_backend!(conn, c => diesel::update(target)
        .set(set)
        .returning(Recipient::as_returning())
        .get_results(c))
    .map_err(DbError::query("outbox", "claim"))
}

/// Whether any row of a sending campaign is due at `now` (a read: an idle
/// sender asks this before taking SQLite's write lock).
pub fn any_due(conn: &mut DbConnection, now: NaiveDateTime) -> Result<bool, DbError> {
    let sending = campaigns::table
        .filter(campaigns::status.eq(CampaignStatus::Sending))
        .select(campaigns::id);
    diesel::select(diesel::dsl::exists(
        outbox::table
            .filter(outbox::status.eq(RecipientStatus::Queued))
            .filter(
                outbox::next_attempt_at
                    .is_null()
                    .or(outbox::next_attempt_at.le(now)),
            )
            .filter(outbox::campaign_id.eq_any(sending)),
    ))
    .get_result(conn)
    .map_err(DbError::query("outbox", "look for due rows"))
}

/// Whether any `SENDING` row's lease ended before `now` (a read, see [`expire_leases`]).
pub fn any_expired(conn: &mut DbConnection, now: NaiveDateTime) -> Result<bool, DbError> {
    diesel::select(diesel::dsl::exists(
        outbox::table
            .filter(outbox::status.eq(RecipientStatus::Sending))
            .filter(outbox::lease_until.lt(now)),
    ))
    .get_result(conn)
    .map_err(DbError::query("outbox", "look for expired leases"))
}

/// Records `fate` of row `id`, claimed by `owner`. A row another sender
/// marked `IN_DOUBT` meanwhile (this one stalled past its lease) gets the
/// fate this sender knows. Returns whether the row was still this sender's.
pub fn record(conn: &mut DbConnection, id: i64, owner: &str, fate: &Fate) -> Result<bool, DbError> {
    let target = outbox::table
        .filter(outbox::id.eq(id))
        .filter(outbox::lease_owner.eq(owner))
        .filter(outbox::status.eq_any([RecipientStatus::Sending, RecipientStatus::InDoubt]));
    let none: Option<NaiveDateTime> = None;
    let changed = match fate {
        Fate::Sent(at) => diesel::update(target)
            .set((
                outbox::status.eq(fate.status()),
                outbox::sent_at.eq(at),
                outbox::lease_until.eq(none),
                outbox::last_error.eq(None::<String>),
            ))
            .execute(conn),
        Fate::Retry { error, retry_at } => diesel::update(target)
            .set((
                outbox::status.eq(fate.status()),
                outbox::next_attempt_at.eq(retry_at),
                outbox::lease_until.eq(none),
                outbox::last_error.eq(clip(error)),
            ))
            .execute(conn),
        Fate::Failed(error) | Fate::InDoubt(error) => diesel::update(target)
            .set((
                outbox::status.eq(fate.status()),
                outbox::lease_until.eq(none),
                outbox::last_error.eq(clip(error)),
            ))
            .execute(conn),
        Fate::Suppressed(reason) => diesel::update(target)
            .set((
                outbox::status.eq(fate.status()),
                outbox::lease_until.eq(none),
                outbox::suppressed_reason.eq(reason),
            ))
            .execute(conn),
    }
    .map_err(DbError::query("outbox", "record a fate"))?;
    Ok(changed == 1)
}

/// Records rows `ids` (claimed by `owner`) as accepted by the server at `at`.
pub fn mark_sent(
    conn: &mut DbConnection,
    owner: &str,
    ids: &[i64],
    at: NaiveDateTime,
) -> Result<usize, DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::status.eq_any([RecipientStatus::Sending, RecipientStatus::InDoubt])),
    )
    .set((
        outbox::status.eq(RecipientStatus::Sent),
        outbox::sent_at.eq(at),
        outbox::lease_until.eq(None::<NaiveDateTime>),
        outbox::last_error.eq(None::<String>),
    ))
    .execute(conn)
    .map_err(DbError::query("outbox", "record sent"))
}

/// Extends `owner`'s leases on rows `ids` still `SENDING` to `until`.
pub fn renew(
    conn: &mut DbConnection,
    owner: &str,
    ids: &[i64],
    until: NaiveDateTime,
) -> Result<usize, DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::lease_owner.eq(owner))
            .filter(outbox::status.eq(RecipientStatus::Sending)),
    )
    .set(outbox::lease_until.eq(until))
    .execute(conn)
    .map_err(DbError::query("outbox", "renew leases"))
}

/// Marks `IN_DOUBT` every `SENDING` row whose lease ended before `now`: its
/// sender died between claiming it and recording the server's answer.
/// Returns how many.
pub fn expire_leases(conn: &mut DbConnection, now: NaiveDateTime) -> Result<usize, DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::status.eq(RecipientStatus::Sending))
            .filter(outbox::lease_until.lt(now)),
    )
    .set((
        outbox::status.eq(RecipientStatus::InDoubt),
        outbox::last_error.eq(
            "the sending process stopped during the SMTP transaction: the server may have accepted it (never resent by itself)",
        ),
    ))
    .execute(conn)
    .map_err(DbError::query("outbox", "expire leases"))
}

/// Suppresses every `QUEUED` row to `address` (normalised), in any campaign,
/// with `reason`. Returns how many.
pub fn suppress_queued(
    conn: &mut DbConnection,
    address: &str,
    reason: &str,
) -> Result<usize, DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::address.eq(address))
            .filter(outbox::status.eq(RecipientStatus::Queued)),
    )
    .set((
        outbox::status.eq(RecipientStatus::Suppressed),
        outbox::suppressed_reason.eq(reason),
    ))
    .execute(conn)
    .map_err(DbError::query("outbox", "suppress queued rows"))
}

/// Queues campaign `id`'s `FAILED` rows again (attempts start over). Returns how many.
pub fn retry_failed(conn: &mut DbConnection, campaign_id: i64) -> Result<usize, DbError> {
    diesel::update(
        outbox::table
            .filter(outbox::campaign_id.eq(campaign_id))
            .filter(outbox::status.eq(RecipientStatus::Failed)),
    )
    .set((
        outbox::status.eq(RecipientStatus::Queued),
        outbox::attempts.eq(0),
        outbox::next_attempt_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
    .map_err(DbError::query("outbox", "requeue failed rows"))
}

/// Rows of campaign `id` not final yet (`QUEUED` or `SENDING`).
pub fn unfinished(conn: &mut DbConnection, campaign_id: i64) -> Result<i64, DbError> {
    outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .filter(outbox::status.eq_any([RecipientStatus::Queued, RecipientStatus::Sending]))
        .count()
        .get_result(conn)
        .map_err(DbError::query("outbox", "count unfinished"))
}

/// The row whose unsubscribe token hashes to `hash`.
pub fn by_unsubscribe_hash(
    conn: &mut DbConnection,
    hash: &str,
) -> Result<Option<Recipient>, DbError> {
    outbox::table
        .filter(outbox::unsubscribe_hash.eq(hash))
        .select(Recipient::as_select())
        .first(conn)
        .optional()
        .map_err(DbError::query("outbox", "select by unsubscribe token"))
}

/// A page of campaign `id`'s rows by id after `after`, of `status` if given.
pub fn page(
    conn: &mut DbConnection,
    campaign_id: i64,
    status: Option<RecipientStatus>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Recipient>, DbError> {
    let mut q = outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .select(Recipient::as_select())
        .order(outbox::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(outbox::status.eq(s));
    }
    if let Some(id) = after {
        q = q.filter(outbox::id.gt(id));
    }
    q.load(conn)
        .map_err(DbError::query("outbox", "select page"))
}

/// How many rows of campaign `id` (of `status` if given).
pub fn count(
    conn: &mut DbConnection,
    campaign_id: i64,
    status: Option<RecipientStatus>,
) -> Result<i64, DbError> {
    let mut q = outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(outbox::status.eq(s));
    }
    q.count()
        .get_result(conn)
        .map_err(DbError::query("outbox", "count"))
}

/// Freezes `rows` into the outbox; a (campaign, customer) already there is
/// left as it was (so a freeze retried after a crash adds nothing twice).
/// Returns how many rows were added.
pub fn freeze(conn: &mut DbConnection, rows: &[NewRecipient<'_>]) -> Result<usize, DbError> {
    let mut added = 0;
    // Bounded statements: SQLite allows 32,766 bound values per statement
    // (14 columns a row).
    for chunk in rows.chunks(2000) {
        added += crate::with_backend!(conn, conn => diesel::insert_into(outbox::table)
            .values(chunk)
            .on_conflict((outbox::campaign_id, outbox::customer_id))
            .do_nothing()
            .execute(conn))
        .map_err(DbError::query("outbox", "freeze"))?;
    }
    Ok(added)
}

/// Rows of campaign `id` in each status.
pub fn counts(
    conn: &mut DbConnection,
    campaign_id: i64,
) -> Result<Vec<(RecipientStatus, i64)>, DbError> {
    crate::with_backend!(conn, conn => outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .group_by(outbox::status)
        .select((outbox::status, diesel::dsl::count_star()))
        .load(conn))
    .map_err(DbError::query("outbox", "count by status"))
}

#[cfg(test)]
mod tests {
    use super::RecipientStatus::*;

    #[test]
    fn a_sending_row_never_goes_back_to_queued_except_after_a_temporary_refusal() {
        assert!(Queued.can_become(Sending));
        assert!(Sending.can_become(Sent) && Sending.can_become(InDoubt));
        assert!(Sending.can_become(Queued), "4xx: retried later");
        for fate in [Sent, Suppressed, InDoubt, Control] {
            assert!(fate.is_final());
            assert!(
                super::RecipientStatus::ALL
                    .iter()
                    .all(|s| !fate.can_become(*s)),
                "{fate} is final"
            );
        }
        assert!(
            Failed.can_become(Queued),
            "retryFailed requeues failures only"
        );
        assert!(
            !InDoubt.can_become(Queued),
            "in doubt is never resent by itself"
        );
    }
}
