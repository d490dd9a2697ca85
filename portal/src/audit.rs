//! The staff access audit: every staff request that returns a customer's
//! personal fields (email, phone, names, survey comments, message addresses)
//! leaves one `audit_log` entry naming the token, the time, the operation
//! and the customers. Resolvers of personal fields [`note`] their customer in
//! the request's [`AuditTrail`]; the handler writes the entry before the
//! response leaves, and withholds the response if it cannot be written
//! (nothing personal goes out unaudited).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_graphql::Context;
use chrono::{SubsecRound, Utc};
use cvm_shared::db::DbPool;
use cvm_shared::db::models::audit_log::{self, AuditAction, NewAuditEntry};
use diesel::Connection;

use crate::db;
use crate::graphql::errors::ApiError;

/// The customers whose personal fields one request returned.
#[derive(Debug, Clone, Default)]
pub struct AuditTrail(Arc<Mutex<BTreeSet<String>>>);

impl AuditTrail {
    /// Notes that `customer_id`'s personal data is in the response.
    pub fn note(&self, customer_id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !ids.contains(customer_id) {
            ids.insert(customer_id.to_owned());
        }
    }

    /// The customers noted so far, sorted.
    pub fn ids(&self) -> Vec<String> {
        let ids = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().cloned().collect()
    }
}

/// Notes `customer_id` in the request's trail (staff requests carry one).
pub fn note(ctx: &Context<'_>, customer_id: &str) {
    if let Some(trail) = ctx.data_opt::<AuditTrail>() {
        trail.note(customer_id);
    }
}

/// Writes one audit entry of `action` by `actor` on `customer_ids`.
pub async fn record(
    db: &DbPool,
    actor: &str,
    action: AuditAction,
    customer_ids: Vec<String>,
    detail: Option<String>,
) -> Result<(), ApiError> {
    let actor = actor.to_owned();
    db::run(db, move |c| {
        let entry = NewAuditEntry {
            at: Utc::now().naive_utc().trunc_subsecs(6),
            actor: &actor,
            action,
            detail: detail.as_deref(),
        };
        c.transaction(|c| audit_log::insert(c, &entry, &customer_ids))
            .map(|_| ())
    })
    .await
}
