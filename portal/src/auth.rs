//! Staff authentication and roles: a bearer token becomes a [`Staff`]
//! identity (or an HTTP 401), and [`RoleGuard`] is the one place that
//! decides which role may use which field.

use std::time::Duration;

use async_graphql::{Context, Guard};
use chrono::Utc;
use cvm_shared::db::DbPool;
use cvm_shared::db::models::api_tokens::{self, Role};

use crate::db;
use crate::graphql::errors::{ApiError, ErrorCode};
use crate::tokens;

/// `last_used_at` is written at most this often per token, so reads stay reads.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// The staff member behind a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The token's id.
    pub token_id: i64,
    /// The name given at `token create`.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Why a request's credentials are refused (HTTP 401).
fn refused(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

/// The staff identity of an `Authorization` header: `Ok(None)` without a
/// header; an `UNAUTHENTICATED` error (answered with HTTP 401) for a
/// malformed, unknown or revoked token. A token of the wrong shape is
/// refused before any query.
pub async fn authenticate(db: &DbPool, header: Option<&str>) -> Result<Option<Staff>, ApiError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(refused("expected the header Authorization: Bearer TOKEN")),
    };
    if !tokens::looks_like_staff_token(token) {
        return Err(refused("unknown or revoked token"));
    }
    let hash = tokens::hash_token(token);
    let found = db::run(db, move |c| api_tokens::by_hash(c, &hash)).await?;
    let Some(t) = found.filter(|t| t.revoked_at.is_none()) else {
        return Err(refused("unknown or revoked token"));
    };
    let now = Utc::now().naive_utc();
    let stale = t
        .last_used_at
        .is_none_or(|at| (now - at).to_std().unwrap_or(Duration::ZERO) >= LAST_USED_RESOLUTION);
    if stale {
        // Off the request's path: a write may wait for a SQLite lock.
        let (db, id) = (db.clone(), t.id);
        actix_web::rt::spawn(async move {
            if let Err(e) = db::run(&db, move |c| api_tokens::touch(c, id, now)).await {
                tracing::warn!(
                    code = e.code.as_str(),
                    "could not record a token's last use"
                );
            }
        });
    }
    Ok(Some(Staff {
        token_id: t.id,
        name: t.name,
        role: t.role,
    }))
}

/// Whether `staff` may use something that needs `min`: `UNAUTHENTICATED`
/// without a token, `FORBIDDEN` with a lesser role.
pub fn check_role(staff: Option<&Staff>, min: Role) -> Result<(), ApiError> {
    match staff {
        None => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "this needs a staff token: send Authorization: Bearer TOKEN (cvm-portal token create)",
        )),
        Some(s) if s.role < min => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this needs the {} role; your token has {}",
                min.as_str(),
                s.role.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Field guard: the request's staff identity needs at least `min`.
pub struct RoleGuard {
    min: Role,
}

impl RoleGuard {
    /// A guard requiring `min` (or a higher role).
    pub fn new(min: Role) -> RoleGuard {
        RoleGuard { min }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        check_role(ctx.data_opt::<Staff>(), self.min).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(role: Role) -> Staff {
        Staff {
            token_id: 1,
            name: "ada".into(),
            role,
        }
    }

    #[test]
    fn each_role_reaches_exactly_its_level_and_below() {
        for held in Role::ALL {
            for needed in Role::ALL {
                let r = check_role(Some(&staff(*held)), *needed);
                if held >= needed {
                    assert_eq!(r, Ok(()), "{held} for {needed}");
                } else {
                    assert_eq!(
                        r.map_err(|e| e.code),
                        Err(ErrorCode::Forbidden),
                        "{held} for {needed}"
                    );
                }
            }
        }
    }

    #[test]
    fn without_a_token_everything_guarded_is_unauthenticated() {
        for needed in Role::ALL {
            let r = check_role(None, *needed);
            assert_eq!(r.map_err(|e| e.code), Err(ErrorCode::Unauthenticated));
        }
    }
}
