//! The `campaigns` table: retention email campaigns created by staff.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::campaigns;
use crate::db::{DbConnection, DbError};

/// A campaign to create.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = campaigns, treat_none_as_default_value = false)]
pub struct NewCampaign<'a> {
    /// Display name.
    pub name: &'a str,
    /// Segment filter, JSON.
    pub segment: &'a str,
    /// Subject template.
    pub subject: &'a str,
    /// Body template.
    pub template: &'a str,
    /// Initial status (`draft`).
    pub status: &'a str,
    /// Creator's staff email.
    pub created_by: &'a str,
    /// Creation time.
    pub created_at: NaiveDateTime,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = campaigns)]
pub struct Campaign {
    /// Surrogate key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Segment filter, JSON.
    pub segment: String,
    /// Subject template.
    pub subject: String,
    /// Body template.
    pub template: String,
    /// Status.
    pub status: String,
    /// Creator's staff email.
    pub created_by: String,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// When sending finished.
    pub sent_at: Option<NaiveDateTime>,
}

/// Creates a campaign; returns its id.
pub fn insert(conn: &mut DbConnection, row: &NewCampaign<'_>) -> Result<i64, DbError> {
    crate::with_backend!(conn, conn => diesel::insert_into(campaigns::table)
        .values(row)
        .returning(campaigns::id)
        .get_result(conn))
    .map_err(DbError::query("campaigns", "insert"))
}

/// One campaign by id.
pub fn find(conn: &mut DbConnection, id: i64) -> Result<Option<Campaign>, DbError> {
    crate::with_backend!(conn, conn => campaigns::table.find(id).select(Campaign::as_select()).first(conn).optional())
        .map_err(DbError::query("campaigns", "select"))
}
