//! One module per table: insertable and queryable structs and small queries.

pub(crate) mod bulk;
pub mod campaigns;
pub mod customers;
pub mod feedback;
pub mod job_runs;
pub mod outbox;
pub mod scores;
pub(crate) mod sqlite_insert;
pub mod staff_users;
pub mod unsubscribes;
