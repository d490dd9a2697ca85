//! The error codes clients rely on (`extensions.code`, portal-api.md) and
//! the one error type resolvers return. Messages are for people and never
//! carry internals: an internal failure is logged with its detail and
//! answered with `INTERNAL` and a fixed message.

use async_graphql::{ErrorExtensions, Response};
use cvm_shared::db::DbError;

/// Every code of `extensions.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No (valid) staff token where one is needed.
    Unauthenticated,
    /// The token's role may not do this.
    Forbidden,
    /// No such object.
    NotFound,
    /// The input is wrong (also: malformed queries, unknown fields, wrong types).
    BadUserInput,
    /// A survey token that is forged, unknown or malformed.
    InvitationInvalid,
    /// A survey token past its expiry.
    InvitationExpired,
    /// The survey no longer accepts answers.
    SurveyClosed,
    /// Too many requests from this client.
    RateLimited,
    /// The query is deeper or costlier than allowed.
    QueryTooComplex,
    /// A failure on our side (details only in the logs).
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadUserInput,
        ErrorCode::InvitationInvalid,
        ErrorCode::InvitationExpired,
        ErrorCode::SurveyClosed,
        ErrorCode::RateLimited,
        ErrorCode::QueryTooComplex,
        ErrorCode::Internal,
    ];

    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::InvitationInvalid => "INVITATION_INVALID",
            ErrorCode::InvitationExpired => "INVITATION_EXPIRED",
            ErrorCode::SurveyClosed => "SURVEY_CLOSED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QueryTooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// An error answered to a client: a code and a message fit to show.
/// (No `Display`: it converts into a GraphQL error only with its code.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
}

/// The message of every `INTERNAL` error.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// An internal failure: `detail` goes to the log (with the request's
    /// span, so its request id), the client gets [`INTERNAL_MESSAGE`].
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "request failed");
        ApiError::new(ErrorCode::Internal, INTERNAL_MESSAGE)
    }

    /// The GraphQL response body of this error alone (for answers given
    /// before any query runs, such as a refused token).
    pub fn into_response(self) -> Response {
        Response::from_errors(vec![
            async_graphql::Error::from(self).into_server_error(Default::default()),
        ])
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> async_graphql::Error {
        async_graphql::Error::new(e.message).extend_with(|_, ext| ext.set("code", e.code.as_str()))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        ApiError::internal(e)
    }
}

/// async-graphql's messages for a query over the depth or complexity limit.
const TOO_COMPLEX_MESSAGES: [&str; 2] = ["Query is too complex.", "Query is nested too deep."];

/// Gives every error of `response` a code: the limits' are
/// `QUERY_TOO_COMPLEX`; the others async-graphql raises itself (syntax,
/// unknown fields, wrong types, missing arguments) are the client's input,
/// so `BAD_USER_INPUT`.
pub fn ensure_codes(response: &mut Response) {
    for e in &mut response.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            // async-graphql's own limit errors carry no code: they are ours to name.
            let code = if TOO_COMPLEX_MESSAGES.contains(&e.message.as_str()) {
                e.message = format!(
                    "{} Ask for fewer items per page (first), fewer fields or less nesting.",
                    e.message
                );
                ErrorCode::QueryTooComplex
            } else {
                ErrorCode::BadUserInput
            };
            ext.set("code", code.as_str());
        }
    }
}

/// The codes of a response's errors, for metrics.
pub fn codes(response: &Response) -> impl Iterator<Item = &str> {
    response
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(s) => Some(s.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = ApiError::internal("constraint answers_score_check violated at /var/lib/x");
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("answers_score_check"));
    }

    #[test]
    fn errors_without_a_code_become_bad_user_input() {
        let mut r = Response::from_errors(vec![
            async_graphql::ServerError::new("Unknown field \"x\"", None),
            async_graphql::Error::from(ApiError::new(ErrorCode::Forbidden, "no"))
                .into_server_error(Default::default()),
        ]);
        ensure_codes(&mut r);
        assert_eq!(
            codes(&r).collect::<Vec<_>>(),
            ["BAD_USER_INPUT", "FORBIDDEN"]
        );
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            all,
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "NOT_FOUND",
                "BAD_USER_INPUT",
                "INVITATION_INVALID",
                "INVITATION_EXPIRED",
                "SURVEY_CLOSED",
                "RATE_LIMITED",
                "QUERY_TOO_COMPLEX",
                "INTERNAL"
            ]
        );
    }
}
