//! The `campaigns` table: retention email campaigns and their lifecycle.
//!
//! ```text
//! DRAFT ──send──▶ SENDING ──all recipients final──▶ SENT
//!   │  └─(sendAt)─▶ SCHEDULED ──due──▶ SENDING ⇄ PAUSED   │
//!   │                                     ▲──retryFailed──┘
//!   └──────────────────┴──────────cancel─────────┴──▶ CANCELLED
//! ```
//! Only drafts change their content; a campaign's audience is frozen into
//! the outbox when it starts sending.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::text_enum::text_enum;

use crate::db::schema::campaigns;
use crate::db::{DbConnection, DbError};

text_enum! {
    /// Where a campaign is in its lifecycle (see the module diagram).
    pub enum CampaignStatus {
        /// Being written: content may change, nothing is frozen.
        Draft = "draft",
        /// Waits for its `send_at`.
        Scheduled = "scheduled",
        /// Audience frozen; the sender works through the outbox.
        Sending = "sending",
        /// Audience frozen; the sender leaves its rows until resumed.
        Paused = "paused",
        /// Every recipient has a final fate.
        Sent = "sent",
        /// Stopped by staff; unsent recipients stay unsent.
        Cancelled = "cancelled",
    }
}

impl CampaignStatus {
    /// Whether a campaign may go from `self` to `next` (the module diagram).
    pub fn can_become(self, next: CampaignStatus) -> bool {
        use CampaignStatus::*;
        matches!(
            (self, next),
            (Draft, Scheduled | Sending | Cancelled)
                | (Scheduled, Sending | Cancelled | Draft)
                | (Sending, Paused | Sent | Cancelled)
                | (Paused, Sending | Cancelled)
                | (Sent, Sending)
        )
    }

    /// Nothing is left to send (unless staff retry failures of a sent campaign).
    pub fn is_finished(self) -> bool {
        matches!(self, CampaignStatus::Sent | CampaignStatus::Cancelled)
    }
}

/// A campaign to create (or a draft's new content).
#[derive(Debug, Clone, PartialEq, Insertable, AsChangeset)]
#[diesel(table_name = campaigns, treat_none_as_default_value = false, treat_none_as_null = true)]
pub struct CampaignContent<'a> {
    /// Display name.
    pub name: &'a str,
    /// The audience filter, JSON.
    pub audience: &'a str,
    /// Subject template.
    pub subject: &'a str,
    /// Text part template.
    pub text_template: &'a str,
    /// HTML part template.
    pub html_template: Option<&'a str>,
    /// The survey each message invites to.
    pub survey_id: Option<i64>,
    /// Offer code.
    pub offer_code: Option<&'a str>,
    /// Control share, 0 to 0.5.
    pub control_share: f64,
    /// Frequency cap in days (None: the setting).
    pub frequency_cap_days: Option<i32>,
    /// Start time (None: on sendCampaign).
    pub send_at: Option<NaiveDateTime>,
}

/// A new campaign's row.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = campaigns, treat_none_as_default_value = false)]
struct NewCampaign<'a> {
    #[diesel(embed)]
    content: CampaignContent<'a>,
    status: CampaignStatus,
    created_by: &'a str,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = campaigns)]
pub struct Campaign {
    /// Surrogate key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Lifecycle status.
    pub status: CampaignStatus,
    /// The audience filter, JSON.
    pub audience: String,
    /// Subject template.
    pub subject: String,
    /// Text part template.
    pub text_template: String,
    /// HTML part template.
    pub html_template: Option<String>,
    /// The survey each message invites to.
    pub survey_id: Option<i64>,
    /// Offer code.
    pub offer_code: Option<String>,
    /// Control share, 0 to 0.5.
    pub control_share: f64,
    /// Frequency cap in days (None: the setting; 0: none).
    pub frequency_cap_days: Option<i32>,
    /// Start time (None: on sendCampaign).
    pub send_at: Option<NaiveDateTime>,
    /// Seed of the control group's draw (set when frozen).
    pub seed: Option<i64>,
    /// Exclusion counts by reason when frozen, JSON.
    pub exclusions: Option<String>,
    /// Staff name of the creator.
    pub created_by: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// When the audience was frozen.
    pub started_at: Option<NaiveDateTime>,
    /// When it reached a final status.
    pub finished_at: Option<NaiveDateTime>,
}

/// Creates a draft; returns it.
pub fn create(
    conn: &mut DbConnection,
    content: CampaignContent<'_>,
    created_by: &str,
    at: NaiveDateTime,
) -> Result<Campaign, DbError> {
    let row = NewCampaign {
        content,
        status: CampaignStatus::Draft,
        created_by,
        created_at: at,
        updated_at: at,
    };
    crate::with_backend!(conn, conn => diesel::insert_into(campaigns::table)
        .values(&row)
        .returning(Campaign::as_returning())
        .get_result(conn))
    .map_err(DbError::query("campaigns", "insert"))
}

/// Replaces a draft's content; None when `id` is not a draft (any more).
pub fn update_draft(
    conn: &mut DbConnection,
    id: i64,
    content: CampaignContent<'_>,
    at: NaiveDateTime,
) -> Result<Option<Campaign>, DbError> {
    crate::with_backend!(conn, conn => diesel::update(
            campaigns::table
                .filter(campaigns::id.eq(id))
                .filter(campaigns::status.eq(CampaignStatus::Draft)),
        )
        .set((&content, campaigns::updated_at.eq(at)))
        .returning(Campaign::as_returning())
        .get_result(conn)
        .optional())
    .map_err(DbError::query("campaigns", "update draft"))
}

/// Moves campaign `id` from `from` to `to` (a compare-and-set: None when it
/// was not in `from`, so two processes never both make one transition).
pub fn transition(
    conn: &mut DbConnection,
    id: i64,
    from: CampaignStatus,
    to: CampaignStatus,
    at: NaiveDateTime,
) -> Result<Option<Campaign>, DbError> {
    debug_assert!(from.can_become(to), "{from} -> {to}");
    let finished = to.is_finished().then_some(at);
    crate::with_backend!(conn, conn => diesel::update(
            campaigns::table
                .filter(campaigns::id.eq(id))
                .filter(campaigns::status.eq(from)),
        )
        .set((
            campaigns::status.eq(to),
            campaigns::updated_at.eq(at),
            campaigns::finished_at.eq(finished),
        ))
        .returning(Campaign::as_returning())
        .get_result(conn)
        .optional())
    .map_err(DbError::query("campaigns", "change status"))
}

/// Starts sending campaign `id` (from `from`, a compare-and-set like
/// [`transition`]), recording the control group's seed, the exclusion
/// counts (JSON) and the start time.
pub fn start_sending(
    conn: &mut DbConnection,
    id: i64,
    from: CampaignStatus,
    seed: i64,
    exclusions: &str,
    at: NaiveDateTime,
) -> Result<Option<Campaign>, DbError> {
    crate::with_backend!(conn, conn => diesel::update(
            campaigns::table
                .filter(campaigns::id.eq(id))
                .filter(campaigns::status.eq(from)),
        )
        .set((
            campaigns::status.eq(CampaignStatus::Sending),
            campaigns::seed.eq(seed),
            campaigns::exclusions.eq(exclusions),
            campaigns::started_at.eq(at),
            campaigns::updated_at.eq(at),
        ))
        .returning(Campaign::as_returning())
        .get_result(conn)
        .optional())
    .map_err(DbError::query("campaigns", "start sending"))
}

/// Campaign `id`, its row locked until the transaction ends (PostgreSQL;
/// on SQLite the caller holds the write lock): a no-op update that returns it.
pub fn lock(
    conn: &mut DbConnection,
    id: i64,
    at: NaiveDateTime,
) -> Result<Option<Campaign>, DbError> {
    crate::with_backend!(conn, conn => diesel::update(campaigns::table.filter(campaigns::id.eq(id)))
        .set(campaigns::updated_at.eq(at))
        .returning(Campaign::as_returning())
        .get_result(conn)
        .optional())
    .map_err(DbError::query("campaigns", "lock"))
}

/// Campaigns in `status`, oldest first.
pub fn with_status(
    conn: &mut DbConnection,
    status: CampaignStatus,
) -> Result<Vec<Campaign>, DbError> {
    campaigns::table
        .filter(campaigns::status.eq(status))
        .select(Campaign::as_select())
        .order(campaigns::id.asc())
        .load(conn)
        .map_err(DbError::query("campaigns", "select by status"))
}

/// One campaign by id.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<Campaign>, DbError> {
    crate::with_backend!(conn, conn => campaigns::table
        .find(id)
        .select(Campaign::as_select())
        .first(conn)
        .optional())
    .map_err(DbError::query("campaigns", "select"))
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::*;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        assert!(Draft.can_become(Sending));
        assert!(Sending.can_become(Paused) && Paused.can_become(Sending));
        assert!(Sending.can_become(Sent));
        assert!(Cancelled.is_finished() && Sent.is_finished());
        assert!(
            super::CampaignStatus::ALL
                .iter()
                .all(|s| !Cancelled.can_become(*s)),
            "cancelled is for good"
        );
        assert_eq!(
            super::CampaignStatus::ALL
                .iter()
                .filter(|s| Sent.can_become(**s))
                .collect::<Vec<_>>(),
            [&Sending],
            "a sent campaign only sends again when staff retry its failures"
        );
        assert!(
            !Draft.can_become(Sent),
            "a draft never reports sent without sending"
        );
        assert!(
            !Paused.can_become(Sent),
            "paused with recipients left is not sent"
        );
        assert!(
            !Sending.can_become(Draft),
            "a frozen audience never becomes editable"
        );
    }
}
