//! `auditLog` (admin): the staff access audit, newest first: who read
//! personal fields of which customers, exports, erasures and staff consent
//! changes (see [`crate::audit`]).

use std::collections::HashMap;

use async_graphql::{Context, Enum, ID, Object};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::audit_log::{self, AuditEntry as AuditRow, AuditQuery};
use serde::{Deserialize, Serialize};

use super::api;
use super::batch::Lazy;
use super::pagination::{self, Page, Totals};
use super::scalars::DateTime;
use crate::auth::RoleGuard;
use crate::db;

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "cvm_shared::db::models::audit_log::AuditAction")]
pub enum AuditAction {
    /// A staff request returned personal fields of these customers.
    ReadPersonal,
    /// A customer's data was exported.
    Export,
    /// A customer was erased.
    Erase,
    /// Staff changed a customer's email consent.
    Consent,
}

/// One audit entry.
pub struct AuditEntry {
    row: AuditRow,
    customer_ids: Vec<String>,
}

#[Object]
impl AuditEntry {
    /// The entry's id (newer entries have larger ids).
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// When.
    async fn at(&self) -> DateTime {
        DateTime::from_utc(self.row.at)
    }
    /// The staff token's name, or `cli:<user>` for the command line.
    async fn actor(&self) -> &str {
        &self.row.actor
    }
    /// What was done.
    async fn action(&self) -> AuditAction {
        self.row.action.into()
    }
    /// The customers concerned (erased ones by their pseudonym).
    async fn customer_ids(&self) -> Vec<ID> {
        self.customer_ids.iter().cloned().map(ID).collect()
    }
    /// The GraphQL operation, or the reason given.
    async fn detail(&self) -> Option<&str> {
        self.row.detail.as_deref()
    }
}

/// Position in the audit log (newest first).
#[derive(Debug, Serialize, Deserialize)]
struct AuditCursor {
    id: i64,
}

/// The audit log query.
#[derive(Default)]
pub struct AuditLogQuery;

#[Object]
impl AuditLogQuery {
    /// The staff access audit (admin), newest first, optionally only the
    /// entries concerning `customerId` or of one `action`.
    #[graphql(
        guard = "RoleGuard::new(Role::Admin)",
        complexity = "crate::graphql::list_cost(first, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        action: Option<AuditAction>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<AuditEntry>> {
        let (size, after) = pagination::arguments::<AuditCursor>(first, after.as_deref())?;
        let db = &api(ctx)?.db;
        let has_previous = after.is_some();
        let filter = AuditQuery {
            customer_id: customer_id.map(|id| id.0),
            action: action.map(Into::into),
            before_id: None,
        };
        let counted = filter.clone();
        let total = Lazy::new(db, move |c| audit_log::count(c, &counted));
        let query = AuditQuery {
            before_id: after.map(|a| a.id),
            ..filter
        };
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let (rows, customers) = db::run(db, move |c| {
            let rows = audit_log::list(c, &query, limit)?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            Ok((rows, audit_log::customers_of(c, &ids)?))
        })
        .await?;
        let mut by_entry: HashMap<i64, Vec<String>> = HashMap::new();
        for (entry, customer) in customers {
            by_entry.entry(entry).or_default().push(customer);
        }
        let items = rows.into_iter().map(|row| {
            let cursor = pagination::encode_cursor(&AuditCursor { id: row.id });
            let customer_ids = by_entry.remove(&row.id).unwrap_or_default();
            (cursor, AuditEntry { row, customer_ids })
        });
        Ok(pagination::page(
            items,
            size,
            has_previous,
            Totals::OnRequest(total),
        ))
    }
}
