//! The `outbox` table: the durable mail queue. One row per campaign and
//! recipient (unique), so queueing twice never sends twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::outbox;
use crate::db::{DbConnection, DbError};

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct NewMessage<'a> {
    /// The campaign.
    pub campaign_id: i64,
    /// The recipient.
    pub customer_id: &'a str,
    /// Address.
    pub to_email: &'a str,
    /// Rendered subject.
    pub subject: &'a str,
    /// Rendered body.
    pub body: &'a str,
    /// `queued`.
    pub status: &'a str,
    /// 0.
    pub attempts: i32,
    /// Queueing time.
    pub created_at: NaiveDateTime,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct Message {
    /// Surrogate key.
    pub id: i64,
    /// The campaign.
    pub campaign_id: i64,
    /// The recipient.
    pub customer_id: String,
    /// Address.
    pub to_email: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Last error.
    pub last_error: Option<String>,
    /// Queueing time.
    pub created_at: NaiveDateTime,
    /// Delivery time.
    pub sent_at: Option<NaiveDateTime>,
}

/// Queues messages, skipping recipients already queued for the campaign;
/// returns how many were new.
pub fn enqueue(conn: &mut DbConnection, rows: &[NewMessage<'_>]) -> Result<usize, DbError> {
    let mut n = 0;
    for batch in rows.chunks(1_000) {
        n += crate::with_backend!(conn, conn => diesel::insert_into(outbox::table)
            .values(batch)
            .on_conflict((outbox::campaign_id, outbox::customer_id))
            .do_nothing()
            .execute(conn))
        .map_err(DbError::query("outbox", "enqueue"))?;
    }
    Ok(n)
}

/// Up to `limit` queued messages, oldest first.
pub fn queued(conn: &mut DbConnection, limit: i64) -> Result<Vec<Message>, DbError> {
    crate::with_backend!(conn, conn => outbox::table
        .filter(outbox::status.eq("queued"))
        .order(outbox::id)
        .limit(limit)
        .select(Message::as_select())
        .load(conn))
    .map_err(DbError::query("outbox", "select"))
}
