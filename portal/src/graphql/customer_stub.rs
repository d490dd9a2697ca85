//! A stand-in `Customer` for `Invitation.customer` until the customer queries
//! (`customers.rs`: scores, feedback) are merged: the contract's plain
//! profile fields of a row already loaded with the invitation (a join, so a
//! page of invitations costs no query per customer). At the merge this file
//! goes, and `Invitation.customer` returns the full `Customer` of the same row.

use async_graphql::{ID, Object};
use cvm_shared::db::models::customers;

/// A customer (profile fields).
pub struct Customer(pub customers::Customer);

#[Object]
impl Customer {
    /// CRM id or guest id.
    async fn id(&self) -> ID {
        ID(self.0.customer_id.clone())
    }
    /// True for customers not in the CRM (seen only through orders).
    async fn is_guest(&self) -> bool {
        self.0.is_guest
    }
    /// Normalised email.
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    /// Given name.
    async fn first_name(&self) -> Option<&str> {
        self.0.first_name.as_deref()
    }
    /// Family name.
    async fn last_name(&self) -> Option<&str> {
        self.0.last_name.as_deref()
    }
    /// ISO 3166-1 alpha-2 country.
    async fn country(&self) -> Option<&str> {
        self.0.country.as_deref()
    }
    /// Marketing email consent.
    async fn email_opt_in(&self) -> bool {
        self.0.email_opt_in
    }
    /// False once the customer is no longer in the warehouse.
    async fn active(&self) -> bool {
        self.0.active
    }
    /// Channels the customer bought through, sorted.
    async fn channels(&self) -> Vec<&str> {
        self.0
            .channels
            .split(',')
            .filter(|c| !c.is_empty())
            .collect()
    }
}
