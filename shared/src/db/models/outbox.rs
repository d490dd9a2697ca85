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

use crate::db::schema::outbox;
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

/// Freezes `rows` into the outbox; a (campaign, customer) already there is
/// left as it was (so a freeze retried after a crash adds nothing twice).
/// Returns how many rows were added.
pub fn freeze(conn: &mut DbConnection, rows: &[NewRecipient<'_>]) -> Result<usize, DbError> {
    let mut added = 0;
    // Bounded statements: SQLite allows 32,766 bound values per statement.
    for chunk in rows.chunks(4096) {
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
