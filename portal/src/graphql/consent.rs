//! Email consent: the `ConsentChange` type (`Customer.consentHistory`) and
//! the admin's `setEmailOptIn`, a consent change made by staff on the
//! customer's behalf (a phone call, a letter), recorded with its source,
//! the staff name and the note given, and audited.

use async_graphql::{Context, ID, Object};
use chrono::{SubsecRound, Utc};
use cvm_shared::db::lock_for_write;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::audit_log::{self, AuditAction, NewAuditEntry};
use cvm_shared::db::models::consent_changes::{
    self, ConsentChange as ConsentChangeRow, ConsentSource, NewConsentChange,
};
use cvm_shared::db::models::customers as customer_rows;
use diesel::Connection;

use super::customers::{Customer, customers_by_id};
use super::errors::{ApiError, ErrorCode};
use super::scalars::DateTime;
use super::{api, staff};
use crate::auth::RoleGuard;
use crate::db;

/// Longest note accepted with a staff consent change.
const MAX_NOTE_CHARS: usize = 500;

/// One change of a customer's email consent.
#[derive(Debug, Clone)]
pub struct ConsentChange(pub ConsentChangeRow);

#[Object]
impl ConsentChange {
    /// When it took effect (a CRM record's `updated_at`, an unsubscribe's time, ...).
    async fn at(&self) -> DateTime {
        DateTime::from_utc(self.0.at)
    }
    /// The consent it became.
    async fn email_opt_in(&self) -> bool {
        self.0.email_opt_in
    }
    /// Why: `crm`, `unsubscribe`, `staff` or `erasure`.
    async fn source(&self) -> &str {
        self.0.source.as_str()
    }
    /// The record that caused it: `load` (a CRM record, loaded at
    /// `recordedAt`), the campaign and link of an unsubscribe, the staff
    /// name and note.
    async fn record(&self) -> Option<&str> {
        self.0.record.as_deref()
    }
    /// When it was written down.
    async fn recorded_at(&self) -> DateTime {
        DateTime::from_utc(self.0.recorded_at)
    }
}

/// The consent mutation.
#[derive(Default)]
pub struct ConsentMutation;

#[Object]
impl ConsentMutation {
    /// Sets a customer's email consent on their behalf (admin). A change
    /// is recorded in `consentHistory` (source `staff`, with your name and
    /// `note`) and takes effect now, so only a newer CRM record can undo
    /// it; setting the value the customer already has changes nothing.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn set_email_opt_in(
        &self,
        ctx: &Context<'_>,
        id: ID,
        opt_in: bool,
        note: Option<String>,
    ) -> async_graphql::Result<Customer> {
        let api = api(ctx)?;
        let who = staff(ctx)?.name.clone();
        let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        if note
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
        {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                format!("note is longer than {MAX_NOTE_CHARS} characters; shorten it"),
            )
            .into());
        }
        let customer_id = id.0.clone();
        let found = db::run(&api.db, move |c| {
            c.transaction(|c| {
                // It reads before it writes: SQLite's write lock first, so
                // that a concurrent writer (the sender) is waited for.
                lock_for_write(c)?;
                let Some(row) = customer_rows::find(c, &customer_id)? else {
                    return Ok(Found::Missing);
                };
                if row.erased {
                    return Ok(Found::Erased);
                }
                let now = Utc::now().naive_utc().trunc_subsecs(6);
                let record = match &note {
                    Some(n) => format!("staff {who}: {n}"),
                    None => format!("staff {who}"),
                };
                let changed = consent_changes::set(
                    c,
                    &NewConsentChange {
                        customer_id: &customer_id,
                        email_opt_in: opt_in,
                        source: ConsentSource::Staff,
                        at: now,
                        record: Some(&record),
                        recorded_at: now,
                    },
                )?;
                if changed {
                    let detail = format!("email_opt_in = {opt_in}");
                    let entry = NewAuditEntry {
                        at: now,
                        actor: &who,
                        action: AuditAction::Consent,
                        detail: Some(&detail),
                    };
                    audit_log::insert(c, &entry, &[&customer_id])?;
                }
                Ok(Found::Done)
            })
        })
        .await?;
        match found {
            Found::Done => {}
            Found::Missing => return Err(no_customer(&id).into()),
            Found::Erased => {
                return Err(ApiError::new(
                    ErrorCode::BadUserInput,
                    format!(
                        "customer {} was erased; their consent cannot change",
                        id.as_str()
                    ),
                )
                .into());
            }
        }
        let loaded = customers_by_id(&api.db, vec![id.0.clone()]);
        loaded
            .get()
            .await?
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| no_customer(&id).into())
    }
}

/// What `setEmailOptIn` found.
enum Found {
    Missing,
    Erased,
    Done,
}

fn no_customer(id: &ID) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no customer {}", id.as_str()))
}
