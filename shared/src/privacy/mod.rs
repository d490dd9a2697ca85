//! Privacy and data rights shared by both binaries: the privacy key and
//! what it derives ([`key`]), a customer's erasure from the database
//! ([`erase`]), and their data export ([`export`], reading the warehouse
//! through [`scan`]). The warehouse side lives in `cvm-etl` (`etl/src/privacy/`).

pub mod erase;
pub mod export;
pub mod key;
pub mod scan;
pub mod vault;

pub use key::{KeyError, KeyKind, PrivacyKey};
