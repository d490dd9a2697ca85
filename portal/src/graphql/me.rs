//! `me`: who the bearer token belongs to.

use async_graphql::{Context, Enum, Object, SimpleObject};
use cvm_shared::db::models::api_tokens::Role;

use super::staff;
use crate::auth::RoleGuard;

/// A staff role (each can do what the ones before it can).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Role", remote = "cvm_shared::db::models::api_tokens::Role")]
pub enum GqlRole {
    /// Reads everything.
    Viewer,
    /// Also runs surveys and campaigns.
    Marketer,
    /// Also manages tokens and data requests.
    Admin,
}

/// The staff member behind the request's token.
#[derive(Debug, Clone, SimpleObject)]
pub struct StaffIdentity {
    /// The name given at `cvm-portal token create --name`.
    pub name: String,
    /// The token's role.
    pub role: GqlRole,
}

/// The `me` query.
#[derive(Default)]
pub struct MeQuery;

#[Object]
impl MeQuery {
    /// The staff identity of the bearer token.
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<StaffIdentity> {
        let s = staff(ctx)?;
        Ok(StaffIdentity {
            name: s.name.clone(),
            role: s.role.into(),
        })
    }
}
