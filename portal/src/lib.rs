//! The cvm portal: the GraphQL API for marketing staff (and, built on it,
//! survey pages and the campaign sender). `main.rs` parses the command line;
//! [`server`] runs the HTTP server, [`graphql`] holds the schema by domain,
//! [`auth`] turns bearer tokens into roles, [`tokens`] makes and checks tokens,
//! [`pages`] serves the customers' survey pages, [`export`] the answer CSVs,
//! [`protect`] rate-limits the public routes.

pub mod answer_writer;
pub mod audit;
pub mod auth;
pub mod db;
pub mod export;
pub mod graphql;
pub mod mail;
pub mod metrics;
pub mod pages;
pub mod protect;
pub mod server;
pub mod tokens;

/// The portal's version, as printed by `cvm-portal --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
