//! Relay cursor pagination shared by every listing: `first` (default 50, at
//! most 500) and `after`, async-graphql's `Connection` (edges, `pageInfo`)
//! plus `totalCount`, and opaque cursors.
//!
//! A cursor is URL-safe base64 of a small JSON document holding what the
//! listing's keyset needs (the sort value and id of the edge, and for
//! listings ordered by scores, the version of the scores it was made on).
//! Clients must treat it as opaque; its content may change between releases.

use std::sync::Arc;

use async_graphql::Object;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::batch::Lazy;
use super::errors::{ApiError, ErrorCode};

/// Page size when `first` is omitted.
pub const DEFAULT_FIRST: usize = 50;
/// Largest page size.
pub const MAX_FIRST: usize = 500;
/// Longest cursor accepted, in bytes (ours are far shorter).
const MAX_CURSOR_BYTES: usize = 2048;

/// The fields every connection has beside `edges` and `pageInfo`.
pub enum Totals {
    /// Counted with the page.
    Known(i64),
    /// Counted only if a client asks for `totalCount` (a count is a scan of
    /// the whole listing: paging scripts that do not ask should not pay it).
    OnRequest(Arc<Lazy<i64>>),
}

#[Object]
impl Totals {
    /// Number of items in the whole listing (every page, this filter).
    async fn total_count(&self) -> async_graphql::Result<i64> {
        match self {
            Totals::Known(n) => Ok(*n),
            Totals::OnRequest(lazy) => Ok(*lazy.get().await?),
        }
    }
}

impl From<i64> for Totals {
    fn from(n: i64) -> Totals {
        Totals::Known(n)
    }
}

/// A page of a listing: a `XConnection` with `XEdge`s, `pageInfo` and `totalCount`.
pub type Page<N> = Connection<String, N, Totals>;

/// The page size asked for by `first`.
pub fn page_size(first: Option<i32>) -> Result<usize, ApiError> {
    match first {
        None => Ok(DEFAULT_FIRST),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_FIRST)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadUserInput,
                    format!(
                        "first is {n}; it must be 0 to {MAX_FIRST} (ask for the next page with after: endCursor)"
                    ),
                )
            }),
    }
}

/// The opaque text of a cursor.
pub fn encode_cursor<T: Serialize>(cursor: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The cursor an `after` argument holds; BAD_USER_INPUT when it is not one of this listing's.
pub fn decode_cursor<T: DeserializeOwned>(after: &str) -> Result<T, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::BadUserInput,
            "after is not a cursor of this listing; pass the endCursor of a page of the same listing, or omit it to start from the beginning",
        )
    };
    if after.len() > MAX_CURSOR_BYTES {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(after).map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// The page size and decoded cursor of a listing's `first` and `after`.
pub fn arguments<C: DeserializeOwned>(
    first: Option<i32>,
    after: Option<&str>,
) -> Result<(usize, Option<C>), ApiError> {
    Ok((page_size(first)?, after.map(decode_cursor).transpose()?))
}

/// Builds a page from up to `size + 1` items fetched after the cursor (the
/// extra one only tells that a next page exists), each with its cursor.
pub fn page<N, I>(items: I, size: usize, has_previous: bool, totals: impl Into<Totals>) -> Page<N>
where
    N: async_graphql::OutputType,
    I: IntoIterator<Item = (String, N)>,
{
    let mut items = items.into_iter();
    let edges: Vec<Edge<String, N, _>> = items
        .by_ref()
        .take(size)
        .map(|(cursor, node)| Edge::new(cursor, node))
        .collect();
    let has_next = items.next().is_some();
    let mut c = Connection::with_additional_fields(has_previous, has_next, totals.into());
    c.edges = edges;
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct C {
        id: String,
        v: Option<f64>,
    }

    #[test]
    fn first_defaults_to_50_and_is_at_most_500() {
        assert_eq!(page_size(None).unwrap(), 50);
        assert_eq!(page_size(Some(0)).unwrap(), 0);
        assert_eq!(page_size(Some(500)).unwrap(), 500);
        for n in [501, -1, i32::MAX] {
            let e = page_size(Some(n)).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadUserInput);
            assert!(e.message.contains(&n.to_string()), "{}", e.message);
        }
    }

    #[test]
    fn cursors_round_trip_exactly_and_garbage_is_bad_user_input() {
        let c = C {
            id: "c/1\"é".into(),
            v: Some(0.1 + 0.2),
        };
        let text = encode_cursor(&c);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor::<C>(&text).unwrap(), c);
        for garbage in ["", "!!", "e30", &"A".repeat(5000)] {
            let e = decode_cursor::<C>(garbage).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadUserInput, "{garbage}");
        }
    }
}
