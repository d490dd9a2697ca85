//! The database layer: one diesel schema for SQLite (the embedded default)
//! and PostgreSQL (production, several portal instances), chosen at run time
//! from the URL (`sqlite://PATH` or `postgres://...`), with embedded
//! migrations per backend applied automatically by writers.
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
//!   `lifecycle_stage`, `value_tier` and `rfm_segment`.
//! - **feedback** (`id` PK): survey invitations and answers — `customer_id`
//!   (FK), `survey` (`nps` | `csat`), `score` and `comment` (null until
//!   answered), `created_at`, `answered_at`, `campaign_id` (nullable FK: the
//!   campaign whose email carried the link), `token` (unique, single-use link).
//! - **job_runs** (`run_id` PK): `command`, `status` (`running` | `succeeded` |
//!   `failed`), `started_at`, `finished_at`, `as_of`, `summary` (JSON text),
//!   `error`. A `running` row with no `finished_at` is a crashed run.
//! - **unsubscribes** (`id` PK): `customer_id` (nullable FK), `email`, `at`,
//!   `source` — the audit trail behind opt-outs, kept by address too.
//! - **campaigns** (`id` PK): `name`, `segment` (filter as JSON), `subject`,
//!   `template`, `status` (`draft` | `queued` | `sending` | `sent` |
//!   `cancelled`), `created_by` (staff email), `created_at`, `sent_at`.
//! - **outbox** (`id` PK): `campaign_id`, `customer_id`, `to_email`,
//!   `subject`, `body`, `status` (`queued` | `sent` | `failed`), `attempts`,
//!   `last_error`, `created_at`, `sent_at`; unique (`campaign_id`,
//!   `customer_id`), so a campaign reaches a customer at most once even when
//!   queueing is retried after a crash.
//! - **staff_users** (`id` PK): `email` (unique), `role` (`admin` |
//!   `marketer` | `viewer`), `token_hash` (unique; never the token),
//!   `created_at`.
//!
//! New columns or tables are new migrations in *both* `migrations/sqlite` and
//! `migrations/postgres`, plus the matching change in [`schema`].

pub mod connection;
pub mod error;
pub mod migrate;
pub mod models;
pub mod schema;
pub mod storable;
pub mod testing;

pub use connection::{Backend, DbConnection, DbUrl, redact_url};
pub use error::DbError;

#[cfg(test)]
mod tests;
