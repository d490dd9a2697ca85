//! Shared building blocks of cvm: domain types (money, channels, identities),
//! configuration, the database layer and common errors. The ETL (`cvm-etl`) and the portal
//! (`cvm-portal`) both depend on this crate and never on each other.

pub mod channel;
pub mod cli;
pub mod config;
pub mod db;
pub mod identity;
pub mod logging;
pub mod money;
pub mod privacy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use channel::{Channel, TxnKind};
pub use config::{ConfigError, Secret, Settings};
pub use money::{Amount, BaseAmount, Currency, MoneyError, Rate};
