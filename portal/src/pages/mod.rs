//! The customer's survey page, server-rendered (no JavaScript needed):
//!
//! - `GET /s/{token}`: 200 with the form for a valid open invitation (filled
//!   with the current answer, if any); otherwise a page without a form: 404
//!   for an unknown, forged or malformed link, 410 for an expired link or a
//!   closed survey. Those pages change nothing.
//! - `POST /s/{token}` (`application/x-www-form-urlencoded`: `score`,
//!   optional `csat`, `comment`): the submission path of `submitFeedback`
//!   ([`feedback::submit`]); 303 to the thank-you page (Post/Redirect/Get, so
//!   a reload does not resubmit), or 4xx with the form and the error.
//! - `GET /s/{token}/thanks`: the thank-you page.
//!
//! Templates are minijinja files beside this one, autoescaped as HTML: every
//! value shown (survey texts, the customer's own comment) is escaped. The
//! token is in the URL, so pages are sent with `Referrer-Policy: no-referrer`
//! and `Cache-Control: no-store`.

use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDateTime, Utc};
use minijinja::{Environment, context};
use serde::Serialize;

use crate::graphql::ApiContext;
use crate::graphql::errors::{ApiError, ErrorCode};
use crate::graphql::feedback::{self, AnswerInput, Found, MAX_COMMENT_CHARS};

pub mod unsubscribe;

/// Largest form body: a full comment of 4-byte characters, percent-encoded, and room.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The routes of the survey page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/s/{token}")
            .app_data(web::PayloadConfig::new(MAX_FORM_BYTES))
            .route(web::get().to(show))
            .route(web::post().to(post)),
    )
    .route("/s/{token}/thanks", web::get().to(thanks))
    .configure(unsubscribe::routes);
}

static TEMPLATES: LazyLock<Result<Environment<'static>, minijinja::Error>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template("base.html", include_str!("templates/base.html"))?;
    env.add_template("survey.html", include_str!("templates/survey.html"))?;
    env.add_template("thanks.html", include_str!("templates/thanks.html"))?;
    env.add_template("problem.html", include_str!("templates/problem.html"))?;
    env.add_template(
        "unsubscribe.html",
        include_str!("templates/unsubscribe.html"),
    )?;
    Ok(env)
});

/// Renders template `name` (autoescaped: its name ends in `.html`).
fn render_template(name: &str, ctx: minijinja::Value) -> Result<String, String> {
    let env = TEMPLATES.as_ref().map_err(|e| format!("{e:#}"))?;
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| format!("{e:#}"))
}

/// A page with `status`; a template failure (a bug) is a plain 500.
pub(crate) fn page(status: StatusCode, name: &str, ctx: minijinja::Value) -> HttpResponse {
    match render_template(name, ctx) {
        Ok(html) => HttpResponse::build(status)
            .content_type(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ))
            .body(html),
        Err(e) => {
            tracing::error!(template = name, error = %e, "cannot render a page");
            HttpResponse::InternalServerError()
                .content_type(ContentType::plaintext())
                .body("Something went wrong on our side. Please try again later.\n")
        }
    }
}

/// The page without a form for an invitation that cannot be answered (or a
/// failure): 404 invalid, 410 expired or closed, 500 ours.
pub(crate) fn problem(e: &ApiError) -> HttpResponse {
    let (status, title, message) = match e.code {
        ErrorCode::InvitationInvalid => (
            StatusCode::NOT_FOUND,
            "This survey link is not valid",
            "Please check that you opened the whole link from your email. If it was cut in two, copy all of it into the address bar.",
        ),
        ErrorCode::InvitationExpired => (
            StatusCode::GONE,
            "This survey link has expired",
            "The time to answer this survey is over. Thank you for your interest all the same.",
        ),
        ErrorCode::SurveyClosed => (
            StatusCode::GONE,
            "This survey is closed",
            "The survey takes no more answers. Thank you for your interest all the same.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side. Please try again in a few minutes.",
        ),
    };
    page(
        status,
        "problem.html",
        context! { title => title, message => message },
    )
}

/// A day as people read it, e.g. `1 April 2024` (UTC).
fn day(t: NaiveDateTime) -> String {
    t.format("%-d %B %Y").to_string()
}

/// What the form shows: the survey, the values to fill in, an error.
#[derive(Serialize)]
struct FormView<'a> {
    survey: SurveyView<'a>,
    score: Option<i32>,
    csat: Option<i32>,
    comment: &'a str,
    error: Option<&'a str>,
    answered_on: Option<String>,
    max_comment: usize,
}

#[derive(Serialize)]
struct SurveyView<'a> {
    name: &'a str,
    question: &'a str,
    csat_question: Option<&'a str>,
    comment_prompt: Option<&'a str>,
}

/// The form of `found`, filled with `values` (the current answer when None).
fn form(
    status: StatusCode,
    found: &Found,
    values: Option<&AnswerInput>,
    error: Option<&str>,
) -> HttpResponse {
    let s = &found.survey;
    let (score, csat, comment) = match (values, &found.answer) {
        (Some(v), _) => (Some(v.score), v.csat, v.comment.as_deref()),
        (None, Some(a)) => (Some(a.score), a.csat, a.comment.as_deref()),
        (None, None) => (None, None, None),
    };
    let view = FormView {
        survey: SurveyView {
            name: &s.name,
            question: &s.question,
            csat_question: s.csat_question.as_deref(),
            comment_prompt: s.comment_prompt.as_deref(),
        },
        score,
        csat,
        comment: comment.unwrap_or(""),
        error,
        answered_on: found.answer.as_ref().map(|a| day(a.updated_at)),
        max_comment: MAX_COMMENT_CHARS,
    };
    page(
        status,
        "survey.html",
        minijinja::Value::from(minijinja::value::Serde(&view)),
    )
}

/// `GET /s/{token}`.
async fn show(api: web::Data<ApiContext>, token: web::Path<String>) -> HttpResponse {
    let found = match feedback::lookup(&api, &token).await {
        Ok(f) => f,
        Err(e) => return problem(&e),
    };
    if let Err(e) = feedback::check_open(&found, Utc::now().naive_utc()) {
        return problem(&e);
    }
    form(StatusCode::OK, &found, None, None)
}

/// Why a form body cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum FormError {
    /// Not `application/x-www-form-urlencoded`.
    #[error("The form must be sent as application/x-www-form-urlencoded.")]
    ContentType,
    /// Not valid UTF-8 once decoded.
    #[error("The form could not be read: it was not valid UTF-8 text. Please send it again.")]
    Utf8,
    /// No score.
    #[error("Please choose how likely you are to recommend us, from 0 to 10.")]
    NoScore,
    /// A field that is not a whole number.
    #[error("The {field} must be a whole number; {value:?} is not one.")]
    NotANumber {
        /// The field.
        field: &'static str,
        /// What was sent.
        value: String,
    },
}

impl FormError {
    fn status(&self) -> StatusCode {
        match self {
            FormError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FormError::Utf8 => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// One decoded form value: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode(raw: &[u8]) -> Result<String, FormError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    String::from_utf8(percent_encoding::percent_decode(&spaced).collect())
        .map_err(|_| FormError::Utf8)
}

/// The answer in a form body. Invalid UTF-8 is refused, never replaced:
/// a comment is stored as sent or not at all. Unknown fields are ignored; of
/// a repeated field the first counts.
fn parse_form(body: &[u8]) -> Result<AnswerInput, FormError> {
    let (mut score, mut csat, mut comment) = (None, None, None);
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[..0]),
        };
        let slot = match decode(key)?.as_str() {
            "score" => &mut score,
            "csat" => &mut csat,
            "comment" => &mut comment,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode(value)?);
        }
    }
    let number = |field: &'static str, v: &str| {
        v.trim().parse::<i32>().map_err(|_| FormError::NotANumber {
            field,
            value: v.chars().take(20).collect(),
        })
    };
    let score = match score.as_deref().map(str::trim) {
        None | Some("") => return Err(FormError::NoScore),
        Some(v) => number("score", v)?,
    };
    let csat = match csat.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(number("CSAT answer", v)?),
    };
    Ok(AnswerInput {
        score,
        csat,
        comment: comment.filter(|c| !c.is_empty()),
    })
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `POST /s/{token}`.
async fn post(
    api: web::Data<ApiContext>,
    req: HttpRequest,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    // A forged link costs no query, whatever the body.
    if let Err(e) = feedback::verify(&api, &token) {
        return problem(&e);
    }
    let parsed = if is_form(&req) {
        parse_form(&body)
    } else {
        Err(FormError::ContentType)
    };
    let input = match parsed {
        Ok(input) => input,
        Err(e) => return form_again(&api, &token, None, e.status(), &e.to_string()).await,
    };
    match feedback::submit(&api, &token, input.clone()).await {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("{token}/thanks")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(e) if e.code == ErrorCode::BadUserInput => {
            form_again(
                &api,
                &token,
                Some(&input),
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.message,
            )
            .await
        }
        Err(e) => problem(&e),
    }
}

/// The form again with an error, filled with what was sent (if it could be read).
async fn form_again(
    api: &ApiContext,
    token: &str,
    values: Option<&AnswerInput>,
    status: StatusCode,
    error: &str,
) -> HttpResponse {
    let found = match feedback::lookup(api, token).await {
        Ok(f) => f,
        Err(e) => return problem(&e),
    };
    if let Err(e) = feedback::check_open(&found, Utc::now().naive_utc()) {
        return problem(&e);
    }
    form(status, &found, values, Some(error))
}

/// `GET /s/{token}/thanks`: the answer stored; without one, back to the form.
async fn thanks(api: web::Data<ApiContext>, token: web::Path<String>) -> HttpResponse {
    let found = match feedback::lookup(&api, &token).await {
        Ok(f) => f,
        Err(e) => return problem(&e),
    };
    let Some(answer) = &found.answer else {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("../{token}")))
            .finish();
    };
    let now = Utc::now().naive_utc();
    // The answer can be changed while the link and the survey are open.
    let change_until = feedback::check_open(&found, now).is_ok().then(|| {
        let end = found
            .survey
            .closes_at
            .map_or(found.invitation.expires_at, |c| {
                c.min(found.invitation.expires_at)
            });
        day(end)
    });
    page(
        StatusCode::OK,
        "thanks.html",
        context! {
            survey_name => found.survey.name.as_str(),
            score => answer.score,
            token => token.as_str(),
            change_until => change_until,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    use AnswerInput as A;

    #[test]
    fn form_bodies_are_decoded_with_plus_as_space_and_percent_escapes() {
        assert_eq!(
            parse_form(b"score=0&csat=&comment=").unwrap(),
            A::of(0, None, None)
        );
        assert_eq!(
            parse_form(b"comment=caf%C3%A9+%26+%3Cb%3E&score=+9+&csat=4&x=1").unwrap(),
            A::of(9, Some(4), Some("café & <b>"))
        );
        assert_eq!(
            parse_form(b"score=3&score=7").unwrap(),
            A::of(3, None, None)
        );
    }

    #[test]
    fn invalid_utf8_is_refused_not_replaced() {
        assert_eq!(parse_form(b"score=5&comment=%FF%FE"), Err(FormError::Utf8));
        assert_eq!(parse_form(b"score=5&comment=\xff"), Err(FormError::Utf8));
    }

    #[test]
    fn a_missing_or_non_numeric_score_is_named() {
        assert_eq!(parse_form(b"comment=hi"), Err(FormError::NoScore));
        assert_eq!(parse_form(b"score="), Err(FormError::NoScore));
        assert!(matches!(
            parse_form(b"score=ten"),
            Err(FormError::NotANumber { field: "score", .. })
        ));
        assert!(matches!(
            parse_form(b"score=1&csat=x"),
            Err(FormError::NotANumber { .. })
        ));
    }

    #[test]
    fn every_template_renders_and_escapes() {
        let html = render_template(
            "problem.html",
            context! { title => "<b>t</b>", message => "m & \"q\"" },
        )
        .unwrap();
        assert!(html.contains("&lt;b&gt;t&lt;&#x2f;b&gt;"), "{html}");
        assert!(html.contains("m &amp; &quot;q&quot;"), "{html}");
        assert!(html.contains(r#"<html lang="en">"#));
        assert!(html.contains(r#"name="viewport""#));
        assert!(!html.contains("<form"));
        render_template("thanks.html", context! { survey_name => "s", score => 0 }).unwrap();
    }
}
