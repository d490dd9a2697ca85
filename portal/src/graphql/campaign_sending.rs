//! Sending campaigns: `sendCampaign` (freeze the audience into the outbox
//! and start, or schedule for `sendAt`), `sendTestMessage`,
//! `pauseCampaign`, `resumeCampaign`, `cancelCampaign` and `retryFailed`.
//! The messages themselves go out through the background sender
//! ([`crate::mail::sender`]), which these wake.

use async_graphql::{Context, ID, Object};
use chrono::Utc;
use cvm_shared::db::lock_for_write;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::campaigns::{self, CampaignStatus};
use cvm_shared::db::models::outbox;
use cvm_shared::db::{DbConnection, DbError};
use diesel::Connection;

use super::campaigns::{Campaign, bad, no_campaign, preview_audience, render_for};
use super::invitations::parse_id;
use super::{ApiContext, api};
use crate::auth::RoleGuard;
use crate::db;
use crate::mail::freeze::{self, FreezeContext};
use crate::mail::links;
use crate::mail::message::{self, Headers};
use crate::mail::template::Rendered;
use crate::mail::transport::{Outcome, Transport};

/// The sender identity, or BAD_USER_INPUT saying which setting to set.
fn sender_identity(
    api: &ApiContext,
) -> Result<(lettre::message::Mailbox, String), super::errors::ApiError> {
    match (&api.mail.from, api.mail.message_id_domain()) {
        (Some(from), Some(domain)) => Ok((from.clone(), domain)),
        _ => Err(bad(
            "no sender address: set mail.from (CVM_MAIL_FROM), e.g. `Shop <news@shop.example>`, and restart the portal",
        )),
    }
}

/// Campaign sending mutations (marketer).
#[derive(Default)]
pub struct CampaignSendingMutation;

#[Object]
impl CampaignSendingMutation {
    /// Freezes the audience into the outbox (every exclusion counted, the
    /// control group drawn with a recorded seed) and starts sending; a
    /// campaign with a future `sendAt` is SCHEDULED instead and frozen when
    /// due. Only drafts send. Needs `CVM_MAIL_FROM`. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn send_campaign(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Campaign> {
        let api = api(ctx)?;
        let (_, domain) = sender_identity(api)?;
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let links = api.links.clone();
        let cap_default = api.mail.frequency_cap_days;
        let key = api.mail.privacy_key.clone();
        let now = Utc::now().naive_utc();
        let outcome = db::run(&api.db, move |c| {
            let Some(found) = campaigns::find(c, n)? else {
                return Ok(Err(None));
            };
            if found.status != CampaignStatus::Draft {
                return Ok(Err(Some(found.status)));
            }
            if found.send_at.is_some_and(|t| t > now) {
                return match campaigns::transition(
                    c,
                    n,
                    CampaignStatus::Draft,
                    CampaignStatus::Scheduled,
                    now,
                )? {
                    Some(row) => Ok(Ok(row)),
                    None => Ok(Err(campaigns::find(c, n)?.map(|r| r.status))),
                };
            }
            let cx = FreezeContext {
                links: &links,
                message_domain: &domain,
                cap_default,
                privacy_key: key.as_ref(),
            };
            match freeze::freeze(c, &cx, n, CampaignStatus::Draft, now)? {
                Some(row) => Ok(Ok(row)),
                None => Ok(Err(campaigns::find(c, n)?.map(|r| r.status))),
            }
        })
        .await?;
        api.sender.wake();
        status_outcome(&id, outcome, "send (only drafts send)")
    }

    /// Sends the campaign's message, rendered for its first recipient (or
    /// the first customer of its audience), to `to`, marked `[TEST]` in the
    /// subject; its unsubscribe link unsubscribes nobody. Nothing is
    /// recorded. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn send_test_message(
        &self,
        ctx: &Context<'_>,
        id: ID,
        to: String,
    ) -> async_graphql::Result<bool> {
        let api = api(ctx)?;
        let (from, domain) = sender_identity(api)?;
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let Some(seen) = preview_audience(api, n, 1, true).await? else {
            return Err(no_campaign(&id).into());
        };
        let templates = seen.templates()?;
        let campaign = &seen.campaign;
        let Some((customer, score)) = seen.people.first() else {
            return Err(bad("the campaign's audience reaches nobody: there is no customer to render the test message for").into());
        };
        // A link of nobody's: the page says it is not valid, nobody is unsubscribed.
        let unsubscribe = links::unsubscribe_url(
            &api.public_url,
            &links::unsubscribe(&api.links, campaign.id, "\0test message").token,
        );
        let rendered = render_for(
            api,
            campaign,
            &templates,
            customer,
            score.as_ref(),
            unsubscribe.clone(),
        )?;
        let rendered = Rendered {
            subject: format!("[TEST] {}", rendered.subject),
            ..rendered
        };
        let message_id = message::new_message_id(campaign.id, &domain);
        let mailto = api.mail.mailto();
        let built = message::build(
            rendered,
            &Headers {
                from: &from,
                to: to.trim(),
                message_id: &message_id,
                campaign_id: Some(campaign.id),
                unsubscribe_url: &unsubscribe,
                mailto: mailto.as_deref(),
            },
        )
        .map_err(|e| bad(e.to_string()))?;
        let transport = Transport::new(&api.mail.delivery, 1).map_err(|e| bad(e.to_string()))?;
        match transport.send(&built, &message_id).await {
            Outcome::Accepted => Ok(true),
            Outcome::Temporary(e)
            | Outcome::Permanent(e)
            | Outcome::NotConnected(e)
            | Outcome::Unknown(e) => Err(bad(format!("the test message was not sent: {e}")).into()),
        }
    }

    /// Stops sending until resumed: recipients not yet claimed stay queued;
    /// a message in flight finishes. Only a sending campaign pauses. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn pause_campaign(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Campaign> {
        change_status(
            ctx,
            &id,
            &[CampaignStatus::Sending],
            CampaignStatus::Paused,
            "pause",
        )
        .await
    }

    /// Sends again where a pause stopped. Only a paused campaign resumes. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn resume_campaign(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Campaign> {
        change_status(
            ctx,
            &id,
            &[CampaignStatus::Paused],
            CampaignStatus::Sending,
            "resume",
        )
        .await
    }

    /// Stops the campaign for good: recipients not yet sent stay unsent.
    /// Sent and cancelled campaigns cannot be cancelled. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn cancel_campaign(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Campaign> {
        use CampaignStatus as S;
        change_status(
            ctx,
            &id,
            &[S::Draft, S::Scheduled, S::Sending, S::Paused],
            S::Cancelled,
            "cancel",
        )
        .await
    }

    /// Queues the FAILED recipients again (their attempts start over); a
    /// SENT campaign goes back to SENDING until they have their fates, a
    /// paused one stays paused. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn retry_failed(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Campaign> {
        let api = api(ctx)?;
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let now = Utc::now().naive_utc();
        let outcome = db::run(&api.db, move |c| {
            c.transaction::<_, DbError, _>(|c| retry(c, n, now))
        })
        .await?;
        api.sender.wake();
        status_outcome(
            &id,
            outcome,
            "retry failures (only a sending, paused or sent campaign can)",
        )
    }
}

/// `retryFailed` in one transaction: the campaign row locked first, so the
/// sender cannot mark it SENT between the requeue and the status change.
fn retry(
    c: &mut DbConnection,
    n: i64,
    now: chrono::NaiveDateTime,
) -> Result<Result<campaigns::Campaign, Option<CampaignStatus>>, DbError> {
    lock_for_write(c)?;
    let Some(found) = campaigns::lock(c, n, now)? else {
        return Ok(Err(None));
    };
    use CampaignStatus as S;
    if !matches!(found.status, S::Sending | S::Paused | S::Sent) {
        return Ok(Err(Some(found.status)));
    }
    let requeued = outbox::retry_failed(c, n)?;
    if requeued > 0 && found.status == S::Sent {
        return match campaigns::transition(c, n, S::Sent, S::Sending, now)? {
            Some(row) => Ok(Ok(row)),
            None => Ok(Err(Some(found.status))),
        };
    }
    Ok(Ok(found))
}

/// The campaign, or NOT_FOUND, or BAD_USER_INPUT naming the status that could not `verb`.
fn status_outcome(
    id: &ID,
    outcome: Result<campaigns::Campaign, Option<CampaignStatus>>,
    verb: &str,
) -> async_graphql::Result<Campaign> {
    match outcome {
        Ok(row) => Ok(Campaign(row)),
        Err(None) => Err(no_campaign(id).into()),
        Err(Some(status)) => Err(bad(format!(
            "campaign {} is {}: it cannot {verb}",
            id.as_str(),
            status.as_str().to_ascii_uppercase()
        ))
        .into()),
    }
}

/// Moves campaign `id` to `to` from whichever of `from` it is in (one
/// compare-and-set: two staff pressing the button change it once);
/// BAD_USER_INPUT naming its status when it is in none of them.
async fn change_status(
    ctx: &Context<'_>,
    id: &ID,
    from: &'static [CampaignStatus],
    to: CampaignStatus,
    verb: &'static str,
) -> async_graphql::Result<Campaign> {
    let Some(n) = parse_id(id) else {
        return Err(no_campaign(id).into());
    };
    let api = api(ctx)?;
    let now = Utc::now().naive_utc();
    let outcome = db::run(&api.db, move |c| {
        let Some(current) = campaigns::find(c, n)? else {
            return Ok(Err(None));
        };
        if !from.contains(&current.status) {
            return Ok(Err(Some(current.status)));
        }
        match campaigns::transition(c, n, current.status, to, now)? {
            Some(row) => Ok(Ok(row)),
            // Changed by someone else between the read and the write.
            None => Ok(Err(campaigns::find(c, n)?.map(|r| r.status))),
        }
    })
    .await?;
    api.sender.wake();
    status_outcome(id, outcome, verb)
}
