//! `GET /export/surveys/{id}.csv` (marketer token): a survey's answers as
//! CSV, one line per answer by answer id, each with the customer's latest
//! RFM segment, lifecycle stage, value tier and 12-month CLV.
//!
//! Streamed: rows are read in keyset chunks of [`CHUNK_ROWS`] and written
//! as they come, so memory stays flat however many answers a survey has,
//! and the next chunk is read only when the client has taken the last one.
//!
//! Values: scores as numbers (a 0 is `0`, never blank); empty cells are
//! unknowns (no CSAT, no comment, never scored). Times RFC 3339 UTC.
//! CSV injection: a text cell from outside (comment, customer id) that starts
//! with `=`, `+`, `-`, `@`, a tab or a carriage return, which spreadsheets
//! would run as a formula, is written with a leading `'`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDateTime;
use cvm_shared::db::models::answers::{self, ExportRow};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::surveys;

use crate::auth;
use crate::db;
use crate::graphql::ApiContext;
use crate::graphql::errors::{ApiError, ErrorCode};

/// Answers per database read of the export.
pub const CHUNK_ROWS: i64 = 1000;

/// The export's columns.
pub const HEADER: [&str; 13] = [
    "answer_id",
    "invitation_id",
    "customer_id",
    "score",
    "csat",
    "comment",
    "answered_at",
    "updated_at",
    "campaign_id",
    "rfm_segment",
    "lifecycle_stage",
    "value_tier",
    "clv_12m",
];

/// The export's route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/export/surveys/{id}.csv", web::get().to(export));
}

/// A one-line plain-text answer (errors of the exports).
pub(crate) fn plain(status: StatusCode, message: &str) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    r.content_type(ContentType::plaintext())
        .body(format!("{message}\n"))
}

/// The plain-text answer to a refused request.
pub(crate) fn refused(e: &ApiError) -> HttpResponse {
    let status = match e.code {
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, &e.message)
}

/// Whether the request's staff token has at least `role`.
pub(crate) async fn authorize(
    api: &ApiContext,
    req: &HttpRequest,
    role: Role,
) -> Result<(), ApiError> {
    let header = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the Authorization header is not valid text",
            ));
        }
    };
    let staff = auth::authenticate(&api.db, header).await?;
    auth::check_role(staff.as_ref(), role)
}

async fn export(
    api: web::Data<ApiContext>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if let Err(e) = authorize(&api, &req, Role::Marketer).await {
        return refused(&e);
    }
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no survey with id {:?}", id.as_str()),
        )
    };
    let Some(survey_id) = id.parse::<i64>().ok().filter(|n| *n > 0) else {
        return refused(&not_found());
    };
    match db::run(&api.db, move |c| surveys::find(c, survey_id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return refused(&not_found()),
        Err(e) => return refused(&e),
    }
    let db = api.db.clone();
    // State: the last answer id written (None: the header is still to come).
    let chunks = futures_util::stream::unfold(Some(None), move |state: Option<Option<i64>>| {
        let db = db.clone();
        async move {
            let after = state?;
            let rows = db::run(&db, move |c| {
                answers::export_chunk(c, survey_id, after.unwrap_or(0), CHUNK_ROWS)
            })
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                // Ends the response early: the client sees a broken transfer, not a short file.
                Err(e) => {
                    let e = std::io::Error::other(e.message);
                    return Some((Err(e), None));
                }
            };
            let next = rows.last().map(|r| r.id);
            let bytes = match csv_chunk(after.is_none(), &rows) {
                Ok(b) => b,
                Err(e) => return Some((Err(std::io::Error::other(e)), None)),
            };
            // A short chunk is the last one.
            let more = i64::try_from(rows.len()).unwrap_or(0) == CHUNK_ROWS;
            Some((Ok(web::Bytes::from(bytes)), more.then_some(next)))
        }
    });
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"survey-{survey_id}-answers.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(chunks)
}

/// `t` as RFC 3339 UTC.
fn time(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A text cell from outside, made safe to open in a spreadsheet.
fn safe_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// The CSV text of `rows`, with the header line first when `header`.
fn csv_chunk(header: bool, rows: &[ExportRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(128 * rows.len() + 160));
    if header {
        w.write_record(HEADER)?;
    }
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        w.write_record([
            r.id.to_string().as_str(),
            &r.invitation_id.to_string(),
            &safe_text(&r.customer_id),
            &r.score.to_string(),
            &opt(r.csat.map(|c| c.to_string())),
            &r.comment.as_deref().map(safe_text).unwrap_or_default(),
            &time(r.answered_at),
            &time(r.updated_at),
            &opt(r.campaign_id.map(|c| c.to_string())),
            r.rfm_segment.as_deref().unwrap_or(""),
            r.lifecycle_stage.as_deref().unwrap_or(""),
            r.value_tier.as_deref().unwrap_or(""),
            &opt(r.clv_12m.map(|v| v.to_string())),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn row(score: i32, comment: Option<&str>, clv: Option<f64>) -> ExportRow {
        let t = chrono::NaiveDate::from_ymd_opt(2024, 3, 1)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        ExportRow {
            id: 7,
            invitation_id: 3,
            customer_id: "c1".into(),
            score,
            csat: None,
            comment: comment.map(str::to_string),
            answered_at: t,
            updated_at: t,
            campaign_id: None,
            rfm_segment: Some("At Risk".into()),
            lifecycle_stage: Some("at_risk".into()),
            value_tier: Some("low".into()),
            clv_12m: clv,
        }
    }

    #[test]
    fn zeros_are_written_as_zero_and_unknowns_blank() {
        let text =
            String::from_utf8(csv_chunk(false, &[row(0, None, Some(0.0))]).unwrap()).unwrap();
        assert_eq!(
            text,
            "7,3,c1,0,,,2024-03-01T10:00:00Z,2024-03-01T10:00:00Z,,At Risk,at_risk,low,0\n"
        );
        let text = String::from_utf8(csv_chunk(false, &[row(10, None, None)]).unwrap()).unwrap();
        assert!(text.ends_with(",low,\n"), "{text}");
    }

    #[test]
    fn formula_like_comments_are_prefixed_and_quotes_kept() {
        for (comment, cell) in [
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("fine, \"quoted\"", "\"fine, \"\"quoted\"\"\""),
        ] {
            let text = String::from_utf8(csv_chunk(false, &[row(5, Some(comment), None)]).unwrap())
                .unwrap();
            assert!(text.contains(&format!(",{cell},")), "{comment}: {text}");
        }
    }

    #[test]
    fn the_header_comes_only_with_the_first_chunk() {
        let text = String::from_utf8(csv_chunk(true, &[]).unwrap()).unwrap();
        assert_eq!(text, format!("{}\n", HEADER.join(",")));
    }
}
