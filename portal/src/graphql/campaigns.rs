//! Campaigns: `createCampaign`, `updateCampaign` (drafts only),
//! `campaign(id)` and `campaigns` with live stats. Templates are checked
//! when a campaign is saved ([`crate::mail::template`]): an unknown variable
//! is `BAD_USER_INPUT` here, never a broken email at send time.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::Utc;
use cvm_shared::db::DbError;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::campaigns::{self, Campaign as CampaignRow, CampaignContent};
use cvm_shared::db::models::{outbox, surveys, unsubscribes};
use cvm_shared::db::schema::campaigns as campaigns_table;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use super::batch::Lazy;
use super::customers::{Customer, customers_by_id};
use super::errors::{ApiError, ErrorCode};
use super::filter::CustomerFilter;
use super::invitations::{self, parse_id};
use super::pagination::{self, Page};
use super::scalars::DateTime;
use super::{ApiContext, api, staff};
use crate::auth::RoleGuard;
use crate::db;
use crate::mail::audience::Exclusion as AudienceExclusion;
use crate::mail::context::MessageContext;
use crate::mail::template::Templates;
use crate::mail::{freeze, links};
use cvm_shared::db::models::customers::Customer as CustomerRow;
use cvm_shared::db::models::scores::Score as ScoreRow;

/// Longest campaign name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest template, in characters.
const MAX_TEMPLATE_CHARS: usize = 100_000;

/// Where a campaign is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "cvm_shared::db::models::campaigns::CampaignStatus")]
pub enum CampaignStatus {
    /// Being written: content may change.
    Draft,
    /// Waits for its `sendAt`.
    Scheduled,
    /// Audience frozen, messages going out.
    Sending,
    /// Audience frozen, sending stopped until resumed.
    Paused,
    /// Every recipient has a final fate.
    Sent,
    /// Stopped for good.
    Cancelled,
}

/// A recipient's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "cvm_shared::db::models::outbox::RecipientStatus")]
pub enum RecipientStatus {
    /// Due to be sent.
    Queued,
    /// SMTP transaction under way.
    Sending,
    /// Accepted by the server.
    Sent,
    /// Refused permanently.
    Failed,
    /// Suppressed before sending.
    Suppressed,
    /// Its sender died mid-transaction: maybe delivered, never resent by itself.
    InDoubt,
    /// Held out in the control group.
    Control,
}

/// A campaign's content (create, or replace a draft's).
#[derive(Debug, Clone, InputObject)]
pub struct CampaignInput {
    /// Display name.
    pub name: String,
    /// Who it is for (`active` defaults to true).
    pub audience: CustomerFilter,
    /// Subject template (minijinja).
    pub subject: String,
    /// Text part template (minijinja, strict: an unknown variable is BAD_USER_INPUT).
    pub text_template: String,
    /// HTML part template (values HTML-escaped).
    pub html_template: Option<String>,
    /// The survey whose personal link `survey_url` is.
    pub survey_id: Option<ID>,
    /// Offer code (`offer_code`).
    pub offer_code: Option<String>,
    /// Share of the frozen audience held out as a control group, 0 to 0.5.
    #[graphql(default = 0.0)]
    pub control_share: Option<f64>,
    /// Days within which an address gets at most one campaign message (null: the setting; 0: no cap).
    pub frequency_cap_days: Option<i32>,
    /// When sending starts (null: when sendCampaign is called).
    pub send_at: Option<DateTime>,
}

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadUserInput, message)
}

/// The input checked, with its survey id and audience JSON.
struct Checked {
    survey_id: Option<i64>,
    audience: String,
    control_share: f64,
}

impl CampaignInput {
    fn check(&self) -> Result<Checked, ApiError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(bad(format!(
                "name must be 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        for (field, text) in [
            ("subject", Some(&self.subject)),
            ("textTemplate", Some(&self.text_template)),
            ("htmlTemplate", self.html_template.as_ref()),
        ] {
            if text.is_some_and(|t| t.chars().count() > MAX_TEMPLATE_CHARS) {
                return Err(bad(format!(
                    "{field} is longer than {MAX_TEMPLATE_CHARS} characters"
                )));
            }
        }
        if self.subject.trim().is_empty() || self.text_template.trim().is_empty() {
            return Err(bad("subject and textTemplate must not be empty"));
        }
        Templates::new(
            &self.subject,
            &self.text_template,
            self.html_template.as_deref(),
        )
        .map_err(|e| bad(e.to_string()))?;
        self.audience.validate()?;
        let control_share = self.control_share.unwrap_or(0.0);
        if !(0.0..=0.5).contains(&control_share) {
            return Err(bad(format!(
                "controlShare is {control_share}; it must be between 0 and 0.5"
            )));
        }
        if self
            .frequency_cap_days
            .is_some_and(|d| !(0..=3650).contains(&d))
        {
            return Err(bad(
                "frequencyCapDays must be between 0 and 3650 (0: no cap)",
            ));
        }
        let survey_id = match &self.survey_id {
            None => None,
            Some(id) => Some(parse_id(id).ok_or_else(|| no_survey(id))?),
        };
        let audience = serde_json::to_string(&self.audience)
            .map_err(|e| ApiError::internal(format!("cannot store the audience: {e}")))?;
        Ok(Checked {
            survey_id,
            audience,
            control_share,
        })
    }

    fn content<'a>(&'a self, checked: &'a Checked) -> CampaignContent<'a> {
        CampaignContent {
            name: self.name.trim(),
            audience: &checked.audience,
            subject: &self.subject,
            text_template: &self.text_template,
            html_template: self.html_template.as_deref(),
            survey_id: checked.survey_id,
            offer_code: self.offer_code.as_deref(),
            control_share: checked.control_share,
            frequency_cap_days: self.frequency_cap_days,
            send_at: self.send_at.map(DateTime::naive_utc),
        }
    }
}

fn no_survey(id: &ID) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no survey with id {:?}", id.as_str()),
    )
}

pub(crate) fn no_campaign(id: &ID) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no campaign with id {:?}", id.as_str()),
    )
}

/// Where a campaign's recipients stand.
#[derive(Debug, Clone, Default, SimpleObject)]
pub struct CampaignStats {
    /// Every frozen row, control included.
    pub recipients: i64,
    /// Due to be sent.
    pub queued: i64,
    /// SMTP transaction under way.
    pub sending: i64,
    /// Accepted by the server.
    pub sent: i64,
    /// Refused permanently.
    pub failed: i64,
    /// Suppressed before sending.
    pub suppressed: i64,
    /// Fate unknown after a crash.
    pub in_doubt: i64,
    /// Held out.
    pub control: i64,
    /// Unsubscribes through this campaign's links.
    pub unsubscribed: i64,
    /// Survey answers through the invitations this campaign carried.
    pub answers: i64,
}

/// A retention campaign.
pub struct Campaign(pub(crate) CampaignRow);

#[Object]
impl Campaign {
    /// The campaign's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Lifecycle status.
    async fn status(&self) -> CampaignStatus {
        self.0.status.into()
    }
    /// Subject template.
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    /// Text part template.
    async fn text_template(&self) -> &str {
        &self.0.text_template
    }
    /// HTML part template.
    async fn html_template(&self) -> Option<&str> {
        self.0.html_template.as_deref()
    }
    /// The audience filter as JSON (the `CustomerFilter` it was created with).
    async fn audience_json(&self) -> &str {
        &self.0.audience
    }
    /// Offer code.
    async fn offer_code(&self) -> Option<&str> {
        self.0.offer_code.as_deref()
    }
    /// The survey its messages invite to.
    async fn survey_id(&self) -> Option<ID> {
        self.0.survey_id.map(|s| ID(s.to_string()))
    }
    /// Share held out as a control group.
    async fn control_share(&self) -> f64 {
        self.0.control_share
    }
    /// Frequency cap in days (null: the setting).
    async fn frequency_cap_days(&self) -> Option<i32> {
        self.0.frequency_cap_days
    }
    /// When sending starts.
    async fn send_at(&self) -> Option<DateTime> {
        self.0.send_at.map(DateTime::from_utc)
    }
    /// Staff name of the creator.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime {
        DateTime::from_utc(self.0.created_at)
    }
    /// Last change.
    async fn updated_at(&self) -> DateTime {
        DateTime::from_utc(self.0.updated_at)
    }
    /// When the audience was frozen and sending started.
    async fn started_at(&self) -> Option<DateTime> {
        self.0.started_at.map(DateTime::from_utc)
    }
    /// When it reached SENT or CANCELLED.
    async fn finished_at(&self) -> Option<DateTime> {
        self.0.finished_at.map(DateTime::from_utc)
    }
    /// The frozen audience's exclusions by reason (null before the freeze).
    async fn frozen_exclusions(&self) -> Vec<Exclusion> {
        let Some(json) = &self.0.exclusions else {
            return Vec::new();
        };
        let counts: HashMap<String, i64> = serde_json::from_str(json).unwrap_or_default();
        AudienceExclusion::ALL
            .iter()
            .map(|r| Exclusion {
                reason: r.as_str().to_string(),
                count: counts.get(r.as_str()).copied().unwrap_or(0),
            })
            .collect()
    }
    /// The seed that drew the control group (recorded at the freeze).
    async fn control_seed(&self) -> Option<String> {
        self.0.seed.map(|s| s.to_string())
    }
    /// Each frozen recipient with their fate, in outbox order (`status`: only those).
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn recipients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<RecipientStatus>,
    ) -> async_graphql::Result<Page<Recipient>> {
        let api = api(ctx)?;
        let (size, after) = pagination::arguments::<RecipientCursor>(first, after.as_deref())?;
        let after = after.map(|c| c.recipient);
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let id = self.0.id;
        let status = status.map(outbox::RecipientStatus::from);
        let (rows, total) = db::run(&api.db, move |c| {
            let rows = outbox::page(c, id, status, after, limit)?;
            let total = outbox::count(c, id, status)?;
            Ok((rows, total))
        })
        .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.customer_id.clone()).collect();
        let customers = customers_by_id(&api.db, ids);
        let items = rows.into_iter().map(|row| {
            let cursor = pagination::encode_cursor(&RecipientCursor { recipient: row.id });
            let node = Recipient {
                row,
                customers: Arc::clone(&customers),
            };
            (cursor, node)
        });
        Ok(pagination::page(items, size, after.is_some(), total))
    }
    /// Where its recipients stand (live).
    async fn stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CampaignStats> {
        let id = self.0.id;
        let stats = db::run(&api(ctx)?.db, move |c| {
            let mut s = CampaignStats::default();
            for (status, n) in outbox::counts(c, id)? {
                use outbox::RecipientStatus as R;
                s.recipients += n;
                *match status {
                    R::Queued => &mut s.queued,
                    R::Sending => &mut s.sending,
                    R::Sent => &mut s.sent,
                    R::Failed => &mut s.failed,
                    R::Suppressed => &mut s.suppressed,
                    R::InDoubt => &mut s.in_doubt,
                    R::Control => &mut s.control,
                } += n;
            }
            s.unsubscribed = unsubscribes::count_for_campaign(c, id)?;
            s.answers = {
                use cvm_shared::db::schema::{answers, invitations};
                answers::table
                    .inner_join(invitations::table)
                    .filter(invitations::campaign_id.eq(id))
                    .count()
                    .get_result(c)
                    .map_err(DbError::query("answers", "count for a campaign"))?
            };
            Ok(s)
        })
        .await?;
        Ok(stats)
    }
}

/// One frozen recipient of a campaign and their fate.
pub struct Recipient {
    row: outbox::Recipient,
    customers: Arc<Lazy<HashMap<String, Customer>>>,
}

#[Object]
impl Recipient {
    /// The customer, with scores and feedback (one load per page).
    async fn customer(&self) -> async_graphql::Result<Customer> {
        let all = self.customers.get().await?;
        all.get(&self.row.customer_id).cloned().ok_or_else(|| {
            ApiError::internal(format!(
                "outbox row {} names customer {:?}, who is not in the database",
                self.row.id, self.row.customer_id
            ))
            .into()
        })
    }
    /// The fate so far.
    async fn status(&self) -> RecipientStatus {
        self.row.status.into()
    }
    /// SMTP transactions started.
    async fn attempts(&self) -> i32 {
        self.row.attempts
    }
    /// The server's reply (or the error) of the last failed attempt.
    async fn last_error(&self) -> Option<&str> {
        self.row.last_error.as_deref()
    }
    /// When the server accepted it.
    async fn sent_at(&self) -> Option<DateTime> {
        self.row.sent_at.map(DateTime::from_utc)
    }
    /// The address it goes to (normalised).
    async fn address(&self) -> Option<&str> {
        self.row.address.as_deref()
    }
    /// Its `Message-ID` (fixed when the audience was frozen).
    async fn message_id(&self) -> Option<&str> {
        self.row.message_id.as_deref()
    }
    /// Why it was suppressed before sending (`unsubscribed`, `no_consent`, `frequency_cap`...).
    async fn suppressed_reason(&self) -> Option<&str> {
        self.row.suppressed_reason.as_deref()
    }
}

/// Position in a campaign's recipients: the outbox row id of the edge.
#[derive(Debug, Serialize, Deserialize)]
struct RecipientCursor {
    recipient: i64,
}

/// Position in `campaigns`: the id of the edge.
#[derive(Debug, Serialize, Deserialize)]
struct CampaignCursor {
    campaign: i64,
}

/// Campaign queries.
#[derive(Default)]
pub struct CampaignQuery;

#[Object]
impl CampaignQuery {
    /// One campaign by id (null when there is none).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn campaign(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Campaign>> {
        let Some(id) = parse_id(&id) else {
            return Ok(None);
        };
        let found = db::run(&api(ctx)?.db, move |c| campaigns::find(c, id)).await?;
        Ok(found.map(Campaign))
    }

    /// Every campaign, newest first.
    #[graphql(
        guard = "RoleGuard::new(Role::Viewer)",
        complexity = "crate::graphql::list_cost(first, child_complexity)"
    )]
    async fn campaigns(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Campaign>> {
        let (size, after) = pagination::arguments::<CampaignCursor>(first, after.as_deref())?;
        let after = after.map(|c| c.campaign);
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let (rows, total) = db::run(&api(ctx)?.db, move |c| {
            let total = campaigns_table::table
                .count()
                .get_result::<i64>(c)
                .map_err(DbError::query("campaigns", "count"))?;
            let mut q = campaigns_table::table
                .select(CampaignRow::as_select())
                .order(campaigns_table::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(id) = after {
                q = q.filter(campaigns_table::id.lt(id));
            }
            let rows = q
                .load::<CampaignRow>(c)
                .map_err(DbError::query("campaigns", "select page"))?;
            Ok((rows, total))
        })
        .await?;
        let items = rows.into_iter().map(|r| {
            let cursor = pagination::encode_cursor(&CampaignCursor { campaign: r.id });
            (cursor, Campaign(r))
        });
        Ok(pagination::page(items, size, after.is_some(), total))
    }
}

/// Customers excluded for one reason.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct Exclusion {
    /// `inactive`, `no_email`, `no_consent`, `suppressed`, `frequency_cap`, `duplicate_address` or `control`.
    pub reason: String,
    /// How many.
    pub count: i64,
}

/// One message as it would be sent.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct RenderedMessage {
    /// The recipient's address.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Text part.
    pub text: String,
    /// HTML part.
    pub html: Option<String>,
}

/// Who a campaign would reach now, and what they would read.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct CampaignPreview {
    /// Customers the audience filter matches.
    pub audience: i64,
    /// Messages that would be sent (after every exclusion, control included).
    pub recipients: i64,
    /// Every exclusion reason, in the order they are tried, with its count.
    pub exclusions: Vec<Exclusion>,
    /// Fully rendered messages of the first recipients (by customer id).
    pub samples: Vec<RenderedMessage>,
}

/// Most samples a preview renders.
const MAX_SAMPLES: i32 = 20;

/// Campaign mutations (marketer).
#[derive(Default)]
pub struct CampaignMutation;

#[Object]
impl CampaignMutation {
    /// Creates a draft campaign; its templates are checked now. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        input: CampaignInput,
    ) -> async_graphql::Result<Campaign> {
        let checked = input.check()?;
        let created_by = staff(ctx)?.name.clone();
        let now = Utc::now().naive_utc();
        let survey = input.survey_id.clone();
        let row = db::run(&api(ctx)?.db, move |c| {
            if let Some(id) = checked.survey_id
                && surveys::find(c, id)?.is_none()
            {
                return Ok(Err(()));
            }
            campaigns::create(c, input.content(&checked), &created_by, now).map(Ok)
        })
        .await?;
        match row {
            Ok(row) => Ok(Campaign(row)),
            Err(()) => Err(survey
                .map_or_else(|| bad("no such survey"), |s| no_survey(&s))
                .into()),
        }
    }

    /// Replaces a draft's content (a campaign that started sending cannot
    /// change: BAD_USER_INPUT). Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn update_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: CampaignInput,
    ) -> async_graphql::Result<Campaign> {
        let checked = input.check()?;
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let now = Utc::now().naive_utc();
        let outcome = db::run(&api(ctx)?.db, move |c| {
            if let Some(s) = checked.survey_id
                && surveys::find(c, s)?.is_none()
            {
                return Ok(Err("survey"));
            }
            match campaigns::update_draft(c, n, input.content(&checked), now)? {
                Some(row) => Ok(Ok(row)),
                None if campaigns::find(c, n)?.is_some() => Ok(Err("not a draft")),
                None => Ok(Err("campaign")),
            }
        })
        .await?;
        match outcome {
            Ok(row) => Ok(Campaign(row)),
            Err("not a draft") => Err(bad(format!(
                "campaign {} is no longer a draft: only drafts change (create a new campaign)",
                id.as_str()
            ))
            .into()),
            Err("survey") => Err(bad("surveyId names no survey").into()),
            Err(_) => Err(no_campaign(&id).into()),
        }
    }

    /// Who the campaign would reach now: the audience, every exclusion by
    /// reason (the control group's size included) and `samples` (0 to 20)
    /// fully rendered messages. Changes nothing. Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn preview_campaign(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = 3)] samples: Option<i32>,
    ) -> async_graphql::Result<CampaignPreview> {
        let samples = samples.unwrap_or(3);
        if !(0..=MAX_SAMPLES).contains(&samples) {
            return Err(bad(format!("samples must be between 0 and {MAX_SAMPLES}")).into());
        }
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let api = api(ctx)?;
        let take = usize::try_from(samples).unwrap_or(0);
        let Some(seen) = preview_audience(api, n, take, false).await? else {
            return Err(no_campaign(&id).into());
        };
        let (campaign, outcome, matched) = (&seen.campaign, &seen.outcome, seen.matched);
        let templates = seen.templates()?;
        let mut rendered = Vec::with_capacity(seen.people.len());
        for (customer, score) in &seen.people {
            let to = outcome
                .recipients
                .iter()
                .find(|(cid, _)| *cid == customer.customer_id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            let unsubscribe = links::unsubscribe(&api.links, campaign.id, &customer.customer_id);
            let unsubscribe = links::unsubscribe_url(&api.public_url, &unsubscribe.token);
            let r = render_for(
                api,
                campaign,
                &templates,
                customer,
                score.as_ref(),
                unsubscribe,
            )?;
            // A sample shows the customer's address and whatever the
            // templates print of them: personal data, audited.
            crate::audit::note(ctx, &customer.customer_id);
            rendered.push(RenderedMessage {
                to,
                subject: r.subject,
                text: r.text,
                html: r.html,
            });
        }
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(CampaignPreview {
            audience: count(matched),
            recipients: count(outcome.recipients.len()),
            exclusions: AudienceExclusion::ALL
                .iter()
                .map(|r| Exclusion {
                    reason: r.as_str().to_string(),
                    count: count(outcome.exclusions.get(r).copied().unwrap_or(0)),
                })
                .collect(),
            samples: rendered,
        })
    }
}

/// A campaign with the audience a preview sees now (the control group
/// drawn with the campaign id as seed; the freeze draws anew) and the first
/// `take` recipients (or, with `or_control`, control customers when there
/// are no recipients) with their scores.
pub(crate) struct SeenAudience {
    /// The campaign.
    pub campaign: CampaignRow,
    /// Customers the filter matched.
    pub matched: usize,
    /// Their fates.
    pub outcome: crate::mail::audience::Audience,
    /// The first recipients, with their scores.
    pub people: Vec<(CustomerRow, Option<ScoreRow>)>,
}

impl SeenAudience {
    /// The campaign's templates (checked when saved; BAD_USER_INPUT if they no longer parse).
    pub fn templates(&self) -> Result<Templates, ApiError> {
        Templates::new(
            &self.campaign.subject,
            &self.campaign.text_template,
            self.campaign.html_template.as_deref(),
        )
        .map_err(|e| bad(e.to_string()))
    }
}

/// Campaign `n` as a preview sees it (None: no such campaign).
pub(crate) async fn preview_audience(
    api: &ApiContext,
    n: i64,
    take: usize,
    or_control: bool,
) -> Result<Option<SeenAudience>, ApiError> {
    let cap_default = api.mail.frequency_cap_days;
    let key = api.mail.privacy_key.clone();
    let now = Utc::now().naive_utc();
    db::run(&api.db, move |c| {
        let Some(campaign) = campaigns::find(c, n)? else {
            return Ok(None);
        };
        let seed = u64::try_from(campaign.id).unwrap_or(0);
        let (matched, outcome, _) =
            freeze::audience(c, &campaign, cap_default, key.as_ref(), now, seed)?;
        let pool = if or_control && outcome.recipients.is_empty() {
            &outcome.control
        } else {
            &outcome.recipients
        };
        let ids: Vec<String> = pool.iter().take(take).map(|(id, _)| id.clone()).collect();
        let people = customers_with_scores(c, &ids)?;
        Ok(Some(SeenAudience {
            campaign,
            matched,
            outcome,
            people,
        }))
    })
    .await
}

/// The message `templates` of `campaign` make for `customer`, with their
/// personal survey link and `unsubscribe_url`.
pub(crate) fn render_for(
    api: &ApiContext,
    campaign: &CampaignRow,
    templates: &Templates,
    customer: &CustomerRow,
    score: Option<&ScoreRow>,
    unsubscribe_url: String,
) -> Result<crate::mail::template::Rendered, ApiError> {
    let survey_url = campaign.survey_id.map(|s| {
        let token = invitations::link(&api.links, s, &customer.customer_id).token;
        links::survey_url(&api.public_url, &token)
    });
    let message = MessageContext {
        customer,
        score,
        campaign_name: &campaign.name,
        offer_code: campaign.offer_code.as_deref(),
        survey_url,
        unsubscribe_url,
    };
    templates
        .render(&message.value())
        .map_err(|e| bad(e.to_string()))
}

/// Customers `ids` with their latest scores, by id.
pub(crate) fn customers_with_scores(
    c: &mut cvm_shared::db::DbConnection,
    ids: &[String],
) -> Result<Vec<(CustomerRow, Option<ScoreRow>)>, DbError> {
    use cvm_shared::db::schema::{customers, scores};
    customers::table
        .left_join(scores::table)
        .filter(customers::customer_id.eq_any(ids))
        .select((CustomerRow::as_select(), Option::<ScoreRow>::as_select()))
        .order(customers::customer_id.asc())
        .load(c)
        .map_err(DbError::query("customers", "select samples"))
}
