//! Invitations: `createInvitations` (one per matching customer and survey),
//! the `Invitation` type with its link, and `Survey.invitations`' pages.
//!
//! Links: an invitation's token is derived by HMAC from its survey and
//! customer ([`link`]), the pair the database keeps unique, so it is one-to-one
//! with the invitation. Hence (1) only its hash is stored and the `url` is made
//! again whenever it is shown; (2) the hashes are known before the insert, so
//! one `INSERT ... ON CONFLICT DO NOTHING` per batch both creates and
//! deduplicates, race-free; (3) without `CVM_PORTAL_SECRET` it cannot be guessed
//! or forged. The cost: a single link cannot be re-issued (rotating the secret
//! re-issues them all).

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{Duration, NaiveDateTime, Utc};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::invitations::{self, NewInvitation};
use cvm_shared::db::models::{answers, surveys};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use super::batch::Lazy;
use super::customers::{Customer, customers_by_id};
use super::errors::{ApiError, ErrorCode};
use super::filter::{self, CustomerFilter};
use super::pagination::{self, Page};
use super::scalars::DateTime;
use super::surveys::is_closed;
use super::{ApiContext, api};
use crate::auth::RoleGuard;
use crate::db;
use crate::tokens::{Issued, LinkPurpose, LinkSigner};

/// `expiresInDays` when not given (also the SDL default: keep them equal).
pub const DEFAULT_EXPIRES_IN_DAYS: i32 = 30;
/// Longest `expiresInDays`.
pub const MAX_EXPIRES_IN_DAYS: i32 = 365;

/// The link token of the invitation of `customer_id` to `survey_id`
/// (see the module documentation for why it is derived).
pub fn link(links: &LinkSigner, survey_id: i64, customer_id: &str) -> Issued {
    let mut subject = Vec::with_capacity(8 + customer_id.len());
    // Fixed-width survey id first: no two pairs make the same bytes.
    subject.extend_from_slice(&survey_id.to_be_bytes());
    subject.extend_from_slice(customer_id.as_bytes());
    links.derive(LinkPurpose::Survey, &subject)
}

/// The survey page's address of a token.
pub fn url(api: &ApiContext, token: &str) -> String {
    format!("{}/s/{token}", api.public_url)
}

/// Parses an object id; a malformed one names nothing.
pub(crate) fn parse_id(id: &ID) -> Option<i64> {
    id.parse::<i64>().ok().filter(|n| *n > 0)
}

/// An invitation to a survey.
pub struct Invitation {
    row: invitations::Invitation,
    customers: Arc<Lazy<HashMap<String, Customer>>>,
    answer: Option<answers::Answer>,
    url: String,
}

#[Object]
impl Invitation {
    /// The invitation's id.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// The invited customer, with scores and feedback (one load per page).
    async fn customer(&self) -> async_graphql::Result<Customer> {
        let all = self.customers.get().await?;
        all.get(&self.row.customer_id).cloned().ok_or_else(|| {
            ApiError::internal(format!(
                "invitation {} names customer {:?}, who is not in the database",
                self.row.id, self.row.customer_id
            ))
            .into()
        })
    }
    /// The survey page's address (`{CVM_PORTAL_PUBLIC_URL}/s/{token}`).
    async fn url(&self) -> &str {
        &self.url
    }
    /// After this the link is refused.
    async fn expires_at(&self) -> DateTime {
        DateTime::from_utc(self.row.expires_at)
    }
    /// When the customer first answered (null: not yet).
    async fn answered_at(&self) -> Option<DateTime> {
        self.answer
            .as_ref()
            .map(|a| DateTime::from_utc(a.answered_at))
    }
    /// The campaign whose email carried the link.
    async fn campaign_id(&self) -> Option<ID> {
        self.row.campaign_id.map(|c| ID(c.to_string()))
    }
}

/// Position in a survey's invitations: the id of the edge.
#[derive(Debug, Serialize, Deserialize)]
struct InvitationCursor {
    invitation: i64,
}

/// A page of a survey's invitations (`Survey.invitations`): by id, `first`
/// after the cursor `after`, only the answered or unanswered with `answered`.
pub async fn page(
    api: &ApiContext,
    survey_id: i64,
    first: Option<i32>,
    after: Option<String>,
    answered: Option<bool>,
) -> Result<Page<Invitation>, ApiError> {
    let (size, after) = pagination::arguments::<InvitationCursor>(first, after.as_deref())?;
    let after = after.map(|c| c.invitation);
    let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
    let (rows, total_count) = db::run(&api.db, move |c| {
        let rows = invitations::page(c, survey_id, answered, after, limit)?;
        let total = invitations::count(c, survey_id, answered)?;
        Ok((rows, total))
    })
    .await?;
    let ids: Vec<String> = rows.iter().map(|r| r.0.customer_id.clone()).collect();
    let customers = customers_by_id(&api.db, ids);
    let items: Vec<(String, Invitation)> = rows
        .into_iter()
        .map(|(row, _, answer)| {
            let token = link(&api.links, row.survey_id, &row.customer_id).token;
            let cursor = pagination::encode_cursor(&InvitationCursor { invitation: row.id });
            let node = Invitation {
                url: url(api, &token),
                row,
                customers: Arc::clone(&customers),
                answer,
            };
            (cursor, node)
        })
        .collect();
    Ok(pagination::page(items, size, after.is_some(), total_count))
}

/// What `createInvitations` did.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct InvitationBatch {
    /// Customers invited now.
    pub created: i64,
    /// Matching customers invited before (left as they were).
    pub already_invited: i64,
}

/// Invitation mutations.
#[derive(Default)]
pub struct InvitationMutation;

#[Object]
impl InvitationMutation {
    /// Invites each customer matching `filter` to the survey, once: customers
    /// invited before are counted in `alreadyInvited` and left as they were
    /// (their links and expiries unchanged). Links expire after
    /// `expiresInDays` (0 to 365; 0 expires at once). Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn create_invitations(
        &self,
        ctx: &Context<'_>,
        survey_id: ID,
        filter: Option<CustomerFilter>,
        #[graphql(default = 30)] expires_in_days: Option<i32>,
    ) -> async_graphql::Result<InvitationBatch> {
        // An explicit null means the default too.
        let expires_in_days = expires_in_days.unwrap_or(DEFAULT_EXPIRES_IN_DAYS);
        if !(0..=MAX_EXPIRES_IN_DAYS).contains(&expires_in_days) {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                format!(
                    "expiresInDays is {expires_in_days}; it must be between 0 and {MAX_EXPIRES_IN_DAYS}"
                ),
            )
            .into());
        }
        let filter = filter.unwrap_or_default();
        filter.validate()?;
        let api = api(ctx)?;
        let Some(id) = parse_id(&survey_id) else {
            return Err(no_survey(&survey_id).into());
        };
        let now = Utc::now().naive_utc();
        let expires_at = now + Duration::days(i64::from(expires_in_days));
        let links = api.links.clone();
        let batch = db::run(&api.db, move |c| {
            let Some(survey) = surveys::find(c, id)? else {
                return Ok(Err(no_survey(&survey_id)));
            };
            if is_closed(&survey, now) {
                return Ok(Err(ApiError::new(
                    ErrorCode::SurveyClosed,
                    format!("survey {id} is closed: it takes no more invitations"),
                )));
            }
            let ids = filter::matching_customer_ids(c, &filter)?;
            let created = invite(c, &links, id, &ids, now, expires_at)?;
            let matched = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            let created = i64::try_from(created).unwrap_or(i64::MAX);
            Ok(Ok(InvitationBatch {
                created,
                already_invited: matched - created,
            }))
        })
        .await??;
        Ok(batch)
    }
}

fn no_survey(id: &ID) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no survey with id {:?}", id.as_str()),
    )
}

/// Inserts the invitations of `customer_ids` to `survey_id` that do not
/// exist yet; returns how many were new.
fn invite(
    c: &mut cvm_shared::db::DbConnection,
    links: &LinkSigner,
    survey_id: i64,
    customer_ids: &[String],
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> Result<usize, cvm_shared::db::DbError> {
    let hashes: Vec<String> = customer_ids
        .iter()
        .map(|cid| link(links, survey_id, cid).hash)
        .collect();
    let rows: Vec<NewInvitation<'_>> = customer_ids
        .iter()
        .zip(&hashes)
        .map(|(cid, hash)| NewInvitation {
            survey_id,
            customer_id: cid,
            token_hash: hash,
            created_at: now,
            expires_at,
            campaign_id: None,
        })
        .collect();
    invitations::insert_new(c, &rows)
}
