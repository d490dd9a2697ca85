//! Surveys: the `Survey` type (with its invitations), `survey(id)`,
//! `createSurvey` and `closeSurvey`.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{NaiveDateTime, Utc};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::surveys::{self, NewSurvey, SurveyStatus};

use super::errors::{ApiError, ErrorCode};
use super::invitations::{self, Invitation, parse_id};
use super::pagination::Page;
use super::scalars::DateTime;
use super::{api, staff};
use crate::auth::RoleGuard;
use crate::db;

/// Longest survey name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest question or prompt, in characters.
const MAX_TEXT_CHARS: usize = 1000;

/// A survey: an NPS question, optionally a CSAT question and a comment prompt.
pub struct Survey(pub(crate) surveys::Survey);

#[Object]
impl Survey {
    /// The survey's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Display name, shown to customers.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The NPS question (answered 0-10).
    async fn question(&self) -> &str {
        &self.0.question
    }
    /// The CSAT question (answered 1-5), if the survey asks one.
    async fn csat_question(&self) -> Option<&str> {
        self.0.csat_question.as_deref()
    }
    /// The prompt of the optional comment.
    async fn comment_prompt(&self) -> Option<&str> {
        self.0.comment_prompt.as_deref()
    }
    /// When answers start being accepted.
    async fn opens_at(&self) -> DateTime {
        DateTime::from_utc(self.0.opens_at)
    }
    /// When answers stop being accepted (null: open-ended).
    async fn closes_at(&self) -> Option<DateTime> {
        self.0.closes_at.map(DateTime::from_utc)
    }
    /// Whether the survey accepts no more answers (closed by staff or past `closesAt`).
    async fn closed(&self) -> bool {
        is_closed(&self.0, Utc::now().naive_utc())
    }
    /// The staff name that created it.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime {
        DateTime::from_utc(self.0.created_at)
    }
    /// When staff closed it (null: not closed by staff).
    async fn closed_at(&self) -> Option<DateTime> {
        self.0.closed_at.map(DateTime::from_utc)
    }
    /// The survey's invitations by id, `first` (default 50, at most 500)
    /// after the cursor `after`; only the answered (true) or unanswered
    /// (false) ones with `answered`.
    #[graphql(complexity = "crate::graphql::list_cost(first, child_complexity)")]
    async fn invitations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        answered: Option<bool>,
    ) -> async_graphql::Result<Page<Invitation>> {
        Ok(invitations::page(api(ctx)?, self.0.id, first, after, answered).await?)
    }
}

/// Whether `survey` accepts no more answers at `now`: closed by staff, or past its end.
pub(crate) fn is_closed(survey: &surveys::Survey, now: NaiveDateTime) -> bool {
    survey.status == SurveyStatus::Closed || survey.closes_at.is_some_and(|c| c <= now)
}

/// A new survey.
#[derive(Debug, InputObject)]
pub struct SurveyInput {
    /// Display name, shown to customers (at most 200 characters).
    pub name: String,
    /// The NPS question (at most 1000 characters).
    pub question: String,
    /// A CSAT question; without it the survey asks none.
    pub csat_question: Option<String>,
    /// The prompt of an optional comment.
    pub comment_prompt: Option<String>,
    /// When answers start being accepted (default: now).
    pub opens_at: Option<DateTime>,
    /// When answers stop being accepted (default: never).
    pub closes_at: Option<DateTime>,
}

/// Checks a text input: not blank, at most `max` characters.
fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadUserInput,
            format!("{field} must not be empty"),
        ));
    }
    let n = value.chars().count();
    if n > max {
        return Err(ApiError::new(
            ErrorCode::BadUserInput,
            format!("{field} has {n} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

impl SurveyInput {
    fn validate(&self) -> Result<(), ApiError> {
        text("name", &self.name, MAX_NAME_CHARS)?;
        text("question", &self.question, MAX_TEXT_CHARS)?;
        if let Some(q) = &self.csat_question {
            text("csatQuestion", q, MAX_TEXT_CHARS)?;
        }
        if let Some(p) = &self.comment_prompt {
            text("commentPrompt", p, MAX_TEXT_CHARS)?;
        }
        if let (Some(o), Some(c)) = (self.opens_at, self.closes_at)
            && c <= o
        {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                "closesAt must be after opensAt",
            ));
        }
        Ok(())
    }
}

/// Survey queries.
#[derive(Default)]
pub struct SurveyQuery;

#[Object]
impl SurveyQuery {
    /// One survey by id (null when there is none).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn survey(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Survey>> {
        let Some(id) = parse_id(&id) else {
            return Ok(None);
        };
        let found = db::run(&api(ctx)?.db, move |c| surveys::find(c, id)).await?;
        Ok(found.map(Survey))
    }
}

/// Survey mutations.
#[derive(Default)]
pub struct SurveyMutation;

#[Object]
impl SurveyMutation {
    /// Creates a survey (marketer).
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn create_survey(
        &self,
        ctx: &Context<'_>,
        input: SurveyInput,
    ) -> async_graphql::Result<Survey> {
        input.validate()?;
        let created_by = staff(ctx)?.name.clone();
        let now = Utc::now().naive_utc();
        let survey = db::run(&api(ctx)?.db, move |c| {
            surveys::insert(
                c,
                &NewSurvey {
                    name: &input.name,
                    question: &input.question,
                    csat_question: input.csat_question.as_deref(),
                    comment_prompt: input.comment_prompt.as_deref(),
                    opens_at: input.opens_at.map_or(now, DateTime::naive_utc),
                    closes_at: input.closes_at.map(DateTime::naive_utc),
                    status: SurveyStatus::Open,
                    created_by: &created_by,
                    created_at: now,
                },
            )
        })
        .await?;
        Ok(Survey(survey))
    }

    /// Closes a survey: it accepts no more answers or invitations (closing a
    /// closed survey changes nothing). Marketer.
    #[graphql(guard = "RoleGuard::new(Role::Marketer)")]
    async fn close_survey(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Survey> {
        let not_found = || {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no survey with id {:?}", id.as_str()),
            )
        };
        let Some(n) = parse_id(&id) else {
            return Err(not_found().into());
        };
        let now = Utc::now().naive_utc();
        let closed = db::run(&api(ctx)?.db, move |c| surveys::close(c, n, now)).await?;
        closed.map(Survey).ok_or_else(|| not_found().into())
    }
}
