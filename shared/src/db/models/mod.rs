//! One module per table: insertable and queryable structs and small queries.

pub mod answers;
pub mod api_tokens;
pub mod audit_log;
#[cfg(any(test, feature = "load"))]
pub(crate) mod bulk;
pub mod campaigns;
pub mod consent_changes;
pub mod customers;
pub mod invitations;
pub mod job_runs;
pub mod outbox;
pub mod scores;
#[cfg(any(test, feature = "load"))]
pub(crate) mod sqlite_insert;
pub mod suppressions;
pub mod surveys;
pub mod text_enum;
pub mod unsubscribes;
