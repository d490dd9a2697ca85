//! The database layer: one diesel schema for SQLite (the embedded default)
//! and PostgreSQL (production, several portal instances), chosen at run time
//! from the URL (`sqlite://PATH` or `postgres://...`), with embedded
//! migrations per backend applied by writers (refused when the database
//! was migrated by a newer binary), and a connection [`pool`] for services.
//!
//! # Schema
//!
//! All timestamps are UTC (`timestamp` without zone on PostgreSQL, ISO text on
//! SQLite). Money is exact decimal text.
//!
//! - **customers** (`customer_id` PK): the resolved customer from the
//!   warehouse's `customers/` — `is_guest`, `email`, `phone`, `first_name`,
//!   `last_name`, `country`, `signup_date`, `birth_date`, `email_opt_in`,
//!   `consent_updated_at` (the CRM `updated_at` that set the consent, or the
//!   time of a portal unsubscribe), `first_seen`, `channels` (comma-separated,
//!   sorted), `active`, `loaded_at` (when a load last inserted or changed
//!   the row: a load leaves rows it would not change untouched, stamp
//!   included).
//!   *Consent*: a load overwrites `email_opt_in` only with a CRM record whose
//!   `updated_at` is at least `consent_updated_at`; guests and older records
//!   never do. An unsubscribe sets `consent_updated_at` to its time, so only a
//!   later CRM change can opt the customer back in.
//!   *Vanished customers*: a customer missing from the warehouse at a load is
//!   kept and flagged `active = false`, never deleted, because feedback,
//!   outbox and unsubscribes reference it (and its history stays explainable);
//!   if it reappears, the next load sets `active = true` again. A load finds
//!   them by an anti-join against the ids it staged, not by `loaded_at`. Campaigns
//!   should target active customers only.
//! - **scores** (`customer_id` PK, FK customers): the latest scores per
//!   customer, every column of the warehouse's `ScoreRow` plus `as_of` and
//!   `loaded_at` (when a load last inserted or changed the row);
//!   `total_revenue` is exact decimal text. A row is replaced only by scores
//!   of the same or a later `as_of`, and only if a value differs. Indexed for segment queries on
//!   `lifecycle_stage`, `value_tier` and `rfm_segment`, and on `loaded_at` (the
//!   portal reads the latest write as the version of the scores).
//! - **surveys** (`id` PK): `name`, `question` (NPS 0-10), `csat_question`
//!   and `comment_prompt` (nullable), `opens_at`, `closes_at` (nullable),
//!   `status` (`open` | `closed`), `created_by` (staff name), `created_at`,
//!   `closed_at`.
//! - **invitations** (`id` PK): `survey_id` (FK), `customer_id` (FK),
//!   `token_hash` (unique: SHA-256 of the signed link token, never the token),
//!   `created_at`, `expires_at`, `campaign_id` (nullable FK: the campaign whose
//!   email carried the link); unique (`survey_id`, `customer_id`): one
//!   invitation per survey and customer.
//! - **answers** (`id` PK): `invitation_id` (FK, unique: one answer per
//!   invitation, so a retried or concurrent submission never adds a row),
//!   `score` (CHECK 0-10), `csat` (nullable, CHECK 1-5), `comment`,
//!   `answered_at` (first submission), `updated_at` (latest; a resubmission
//!   replaces score, CSAT and comment in place).
//! - **job_runs** (`run_id` PK): `command`, `status` (`running` | `succeeded` |
//!   `failed`), `started_at`, `finished_at`, `as_of`, `summary` (JSON text),
//!   `error`. A `running` row with no `finished_at` is a crashed run.
//! - **campaigns** (`id` PK): `name`, `status` (`draft` | `scheduled` |
//!   `sending` | `paused` | `sent` | `cancelled`), `audience` (the
//!   `CustomerFilter` as JSON), `subject`, `text_template`, `html_template`,
//!   `survey_id` (nullable FK), `offer_code`, `control_share` (CHECK 0-0.5),
//!   `frequency_cap_days`, `send_at`, `seed` and `exclusions` (recorded when
//!   the audience is frozen), `created_by`, `created_at`, `updated_at`,
//!   `started_at`, `finished_at`.
//! - **outbox** (`id` PK): one row per recipient: `campaign_id`,
//!   `customer_id`, `address` (normalised; null only for control rows),
//!   `status` (`queued` | `sending` | `sent` | `failed` | `suppressed` |
//!   `in_doubt` | `control`), `message_id` (unique, fixed before the SMTP
//!   transaction), `attempts`, `last_error`, `suppressed_reason`,
//!   `next_attempt_at`, `lease_owner`, `lease_until`, `queued_at`, `sent_at`;
//!   unique (`campaign_id`, `customer_id`): a campaign reaches a customer at
//!   most once even when freezing is retried after a crash.
//! - **suppressions** (`address` PK, normalised): `reason` (`unsubscribed` |
//!   `hard_bounced` | `erased` | `staff`), `customer_id` (no FK: kept when the
//!   customer row changes), `campaign_id`, `at`.
//! - **unsubscribes** (`id` PK): `customer_id` (nullable FK), `campaign_id`
//!   (nullable FK), `address`, `source` (`page` | `one_click` | `mailto` |
//!   `staff`), `at`: every unsubscribe event, behind suppressions and the
//!   campaigns' unsubscribe counts.
//! - **api_tokens** (`id` PK): `name` (staff name, several tokens each),
//!   `role` (`viewer` | `marketer` | `admin`), `token_hash` (unique SHA-256;
//!   never the token), `created_at`, `last_used_at`, `revoked_at`.
//!
//! Statuses and roles are Rust enums stored as text
//! ([`models::text_enum`]); the migrations CHECK the same values.
//!
//! New columns or tables are new migrations in *both* `migrations/sqlite` and
//! `migrations/postgres`, plus the matching change in [`schema`].

pub mod connection;
pub mod error;
pub mod migrate;
pub mod models;
pub mod pool;
pub mod schema;
pub mod storable;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use connection::{Backend, DbConnection, DbUrl, lock_for_write, redact_url};
pub use error::DbError;
pub use pool::{DbPool, PooledDb};

#[cfg(test)]
mod campaign_tests;
#[cfg(test)]
mod portal_tests;
#[cfg(test)]
mod privacy_tests;
#[cfg(test)]
mod tests;
