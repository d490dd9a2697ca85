//! Customers' answers: the one submission path of both `submitFeedback` and
//! the survey page's form ([`submit`]), and the invitation checks the page
//! shares ([`lookup`], [`check_open`]).
//!
//! Order of checks: the token's signature and the input's ranges first (no
//! query: a forged link or a wrong score costs nothing), then one lookup of
//! the invitation with its survey and answer, then one upsert. One answer per
//! invitation is the database's rule (a unique constraint; the upsert is a
//! single `INSERT ... ON CONFLICT (invitation_id) DO UPDATE`), so a retried,
//! double-tapped or concurrent submission replaces the answer in place and
//! never adds a row. A resubmission replaces the whole answer: score, CSAT
//! and comment (an omitted one is cleared).

use async_graphql::{Context, InputObject, Object, SimpleObject};
use chrono::{NaiveDateTime, Utc};
use cvm_shared::db::models::answers::Answer;
use cvm_shared::db::models::invitations::{self, Invitation};
use cvm_shared::db::models::surveys::Survey;

use super::errors::{ApiError, ErrorCode};
use super::{ApiContext, api};
use crate::answer_writer::AnswerWrite;
use crate::db;
use crate::tokens::LinkPurpose;

/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// An answer as a customer gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerInput {
    /// NPS 0..10.
    pub score: i32,
    /// CSAT 1..5 (only on surveys with a CSAT question).
    pub csat: Option<i32>,
    /// Free text, stored verbatim (an empty one is no comment).
    pub comment: Option<String>,
}

impl AnswerInput {
    /// An answer of literals (tests).
    #[cfg(test)]
    pub(crate) fn of(score: i32, csat: Option<i32>, comment: Option<&str>) -> AnswerInput {
        AnswerInput {
            score,
            csat,
            comment: comment.map(str::to_string),
        }
    }

    /// Checks the ranges and the comment (before any query).
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::new(ErrorCode::BadUserInput, m));
        if !(0..=10).contains(&self.score) {
            return bad(format!(
                "score is {}; it must be a whole number from 0 to 10",
                self.score
            ));
        }
        if let Some(c) = self.csat
            && !(1..=5).contains(&c)
        {
            return bad(format!(
                "csat is {c}; it must be a whole number from 1 to 5"
            ));
        }
        if let Some(text) = &self.comment {
            let n = text.chars().count();
            if n > MAX_COMMENT_CHARS {
                return bad(format!(
                    "the comment has {n} characters; at most {MAX_COMMENT_CHARS} are allowed"
                ));
            }
            // PostgreSQL text cannot hold NUL; no person types one.
            if text.contains('\0') {
                return bad("the comment contains a NUL character; remove it".into());
            }
        }
        Ok(())
    }
}

/// An invitation found by its link: with its survey and its answer, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The invitation.
    pub invitation: Invitation,
    /// Its survey.
    pub survey: Survey,
    /// The current answer.
    pub answer: Option<Answer>,
}

fn invalid() -> ApiError {
    ApiError::new(
        ErrorCode::InvitationInvalid,
        "this survey link is not valid: check that the whole link from the email was used",
    )
}

/// The hash of a survey link token: `INVITATION_INVALID` for a forged,
/// altered or malformed one (no query).
pub fn verify(api: &ApiContext, token: &str) -> Result<String, ApiError> {
    api.links
        .verify(LinkPurpose::Survey, token)
        .map_err(|_| invalid())
}

/// The invitation of a link, checked only for existence (a forged or
/// unknown link is `INVITATION_INVALID`).
pub async fn lookup(api: &ApiContext, token: &str) -> Result<Found, ApiError> {
    let hash = verify(api, token)?;
    let found = db::run(&api.db, move |c| {
        invitations::with_survey_by_token_hash(c, &hash)
    })
    .await?;
    let (invitation, survey, answer) = found.ok_or_else(invalid)?;
    Ok(Found {
        invitation,
        survey,
        answer,
    })
}

/// Whether the invitation takes answers at `now`: `INVITATION_EXPIRED` past
/// its expiry, `SURVEY_CLOSED` when the survey is closed, ended or not open yet.
pub fn check_open(found: &Found, now: NaiveDateTime) -> Result<(), ApiError> {
    if found.invitation.expires_at <= now {
        return Err(ApiError::new(
            ErrorCode::InvitationExpired,
            "this survey link has expired",
        ));
    }
    if super::surveys::is_closed(&found.survey, now) {
        return Err(ApiError::new(
            ErrorCode::SurveyClosed,
            "this survey is closed and takes no more answers",
        ));
    }
    if now < found.survey.opens_at {
        return Err(ApiError::new(
            ErrorCode::SurveyClosed,
            "this survey is not open yet",
        ));
    }
    Ok(())
}

/// What a stored answer tells its customer.
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct FeedbackReceipt {
    /// The survey answered.
    pub survey_name: String,
    /// The score stored.
    pub score: i32,
    /// An earlier answer was replaced.
    pub updated: bool,
}

/// Stores the answer to the invitation of `token` (see the module
/// documentation for the checks and the one-row rule).
pub async fn submit(
    api: &ApiContext,
    token: &str,
    input: AnswerInput,
) -> Result<FeedbackReceipt, ApiError> {
    let hash = verify(api, token)?;
    input.validate()?;
    // Checked on a read (never blocked by a writer), written by the answer writer.
    let found = db::run(&api.db, move |c| {
        invitations::with_survey_by_token_hash(c, &hash)
    })
    .await?;
    let Some((invitation, survey, answer)) = found else {
        return Err(invalid());
    };
    let found = Found {
        invitation,
        survey,
        answer,
    };
    let now = Utc::now().naive_utc();
    check_open(&found, now)?;
    if input.csat.is_some() && found.survey.csat_question.is_none() {
        return Err(ApiError::new(
            ErrorCode::BadUserInput,
            "csat was given, but this survey asks no CSAT question: leave it out",
        ));
    }
    let write = AnswerWrite {
        invitation_id: found.invitation.id,
        score: input.score,
        csat: input.csat,
        comment: input.comment.filter(|t| !t.is_empty()),
        at: now,
    };
    let (stored, updated) = api.answers.write(write).await?;
    api.metrics.answers_submitted.inc();
    Ok(FeedbackReceipt {
        survey_name: found.survey.name,
        score: stored.score,
        updated,
    })
}

/// A customer's answer, by the token of their invitation link.
#[derive(Debug, InputObject)]
pub struct FeedbackInput {
    /// The token of the invitation link (`/s/{token}`).
    pub token: String,
    /// How likely the customer is to recommend us, 0 to 10.
    pub score: i32,
    /// Satisfaction 1 to 5 (only on surveys with a CSAT question).
    pub csat: Option<i32>,
    /// Free text, at most 2,000 characters, stored verbatim.
    pub comment: Option<String>,
}

/// Feedback mutations.
#[derive(Default)]
pub struct FeedbackMutation;

#[Object]
impl FeedbackMutation {
    /// Stores a customer's answer (public: the token is the credential). A
    /// second answer to one invitation replaces the first (`updated: true`),
    /// omitted fields included; it never adds a row.
    async fn submit_feedback(
        &self,
        ctx: &Context<'_>,
        input: FeedbackInput,
    ) -> async_graphql::Result<FeedbackReceipt> {
        let answer = AnswerInput {
            score: input.score,
            csat: input.csat,
            comment: input.comment,
        };
        Ok(submit(api(ctx)?, &input.token, answer).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AnswerInput as A;

    #[test]
    fn scores_csat_and_comments_are_checked_before_any_query() {
        for ok in [
            A::of(0, None, None),
            A::of(10, Some(1), Some("")),
            A::of(7, Some(5), Some(&"é".repeat(MAX_COMMENT_CHARS))),
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
        for bad in [
            A::of(-1, None, None),
            A::of(11, None, None),
            A::of(5, Some(0), None),
            A::of(5, Some(6), None),
            A::of(5, None, Some(&"x".repeat(MAX_COMMENT_CHARS + 1))),
            A::of(5, None, Some("a\0b")),
        ] {
            assert_eq!(
                bad.validate().map_err(|e| e.code),
                Err(ErrorCode::BadUserInput),
                "{bad:?}"
            );
        }
    }
}
