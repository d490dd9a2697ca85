//! The unsubscribe page of campaign messages (portal-api.md):
//!
//! - `GET /u/{token}`: a confirmation page with one button; changes nothing
//!   (mail scanners open links).
//! - `POST /u/{token}`: unsubscribes at once and answers 200 with the
//!   confirmation: the one-click request of RFC 8058 (body
//!   `List-Unsubscribe=One-Click`) or the page's button. The address goes on
//!   the suppression list, the event is recorded against the campaign, and
//!   every message still queued to that address, in any campaign, becomes
//!   `SUPPRESSED` in the same transaction, which also withdraws the
//!   customer's email consent (a consent change, source `unsubscribe`,
//!   naming the campaign and how). Repeating it changes nothing more.
//!
//! A forged, malformed or unknown link gets a 404 page.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use cvm_shared::db::models::consent_changes::{self, ConsentSource, NewConsentChange};
use cvm_shared::db::models::outbox;
use cvm_shared::db::models::suppressions::{self, Suppression, SuppressionReason};
use cvm_shared::db::models::unsubscribes::{self, NewUnsubscribe, UnsubscribeSource};
use cvm_shared::db::{DbError, lock_for_write};
use diesel::Connection;
use minijinja::context;

use super::{page, problem};
use crate::db;
use crate::graphql::ApiContext;
use crate::graphql::errors::{ApiError, ErrorCode};
use crate::tokens::LinkPurpose;

/// Largest body of an unsubscribe POST (the one-click body is 26 bytes).
const MAX_BODY_BYTES: usize = 4 * 1024;

/// The unsubscribe routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/u/{token}")
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .route(web::get().to(show))
            .route(web::post().to(unsubscribe)),
    );
}

fn invalid() -> ApiError {
    ApiError::new(ErrorCode::InvitationInvalid, "unknown unsubscribe link")
}

/// The outbox row of a link: forged links cost no query.
async fn lookup(api: &ApiContext, token: &str) -> Result<outbox::Recipient, ApiError> {
    let hash = api
        .links
        .verify(LinkPurpose::Unsubscribe, token)
        .map_err(|_| invalid())?;
    db::run(&api.db, move |c| outbox::by_unsubscribe_hash(c, &hash))
        .await?
        .ok_or_else(invalid)
}

fn unsubscribe_problem(e: &ApiError) -> HttpResponse {
    if e.code == ErrorCode::InvitationInvalid {
        return page(
            StatusCode::NOT_FOUND,
            "problem.html",
            context! {
                title => "This unsubscribe link is not valid",
                message => "Please open the whole link from the email. If it was cut in two, copy all of it into the address bar, or reply to the email to unsubscribe.",
            },
        );
    }
    problem(e)
}

/// `GET /u/{token}`.
async fn show(api: web::Data<ApiContext>, token: web::Path<String>) -> HttpResponse {
    match lookup(&api, &token).await {
        Ok(row) => page(
            StatusCode::OK,
            "unsubscribe.html",
            context! { done => false, address => row.address, token => token.as_str() },
        ),
        Err(e) => unsubscribe_problem(&e),
    }
}

/// `POST /u/{token}`.
async fn unsubscribe(
    api: web::Data<ApiContext>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let row = match lookup(&api, &token).await {
        Ok(row) => row,
        Err(e) => return unsubscribe_problem(&e),
    };
    let source = if body
        .windows(b"List-Unsubscribe=One-Click".len())
        .any(|w| w == b"List-Unsubscribe=One-Click")
    {
        UnsubscribeSource::OneClick
    } else {
        UnsubscribeSource::Page
    };
    let address = row.address.clone().unwrap_or_default();
    let now = Utc::now().naive_utc();
    let done = db::run(&api.db, move |c| {
        c.transaction::<_, DbError, _>(|c| {
            lock_for_write(c)?;
            let new = suppressions::add(
                c,
                &Suppression {
                    address: address.clone(),
                    reason: SuppressionReason::Unsubscribed,
                    customer_id: Some(row.customer_id.clone()),
                    campaign_id: Some(row.campaign_id),
                    at: now,
                },
            )?;
            if new {
                unsubscribes::insert(
                    c,
                    &NewUnsubscribe {
                        customer_id: Some(&row.customer_id),
                        campaign_id: Some(row.campaign_id),
                        address: &address,
                        source,
                        at: now,
                    },
                )?;
            }
            // The customer's consent follows, with the link that withdrew it.
            let record = format!("campaign {}, {}", row.campaign_id, source.as_str());
            consent_changes::set(
                c,
                &NewConsentChange {
                    customer_id: &row.customer_id,
                    email_opt_in: false,
                    source: ConsentSource::Unsubscribe,
                    at: now,
                    record: Some(&record),
                    recorded_at: now,
                },
            )?;
            let held = outbox::suppress_queued(c, &address, "unsubscribed")?;
            if new {
                tracing::info!(
                    campaign = row.campaign_id,
                    held_back = held,
                    ?source,
                    "unsubscribed"
                );
            }
            Ok(address)
        })
    })
    .await;
    match done {
        Ok(address) => page(
            StatusCode::OK,
            "unsubscribe.html",
            context! { done => true, address => address },
        ),
        Err(e) => unsubscribe_problem(&e),
    }
}
