//! Minimal Relay pagination by id (keyset, no OFFSET) for the survey side's
//! lists (`Survey.invitations`): page sizes per the contract, opaque
//! cursors, `PageInfo`. The customer lists' pagination (ordered by scores)
//! lives with them; this is the id-ordered special case.

use async_graphql::SimpleObject;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::errors::{ApiError, ErrorCode};

/// Page size when `first` is not given.
pub const DEFAULT_FIRST: i32 = 50;
/// Largest `first`.
pub const MAX_FIRST: i32 = 500;

/// Where a page is in its list (Relay).
#[derive(Debug, Clone, PartialEq, Eq, SimpleObject)]
pub struct PageInfo {
    /// More items follow this page.
    pub has_next_page: bool,
    /// Items precede this page (it was asked for `after` a cursor).
    pub has_previous_page: bool,
    /// The first item's cursor.
    pub start_cursor: Option<String>,
    /// The last item's cursor: pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// The page size of `first`: 50 by default, 1 to 500.
pub fn page_size(first: Option<i32>) -> Result<i64, ApiError> {
    match first.unwrap_or(DEFAULT_FIRST) {
        n @ 1..=MAX_FIRST => Ok(i64::from(n)),
        n => Err(ApiError::new(
            ErrorCode::BadUserInput,
            format!("first is {n}; it must be between 1 and {MAX_FIRST}"),
        )),
    }
}

/// The cursor of the item `id` in a list of `kind`.
pub fn cursor(kind: &str, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The id in a cursor of a list of `kind` (None without one); a cursor of
/// another list or not made here is `BAD_USER_INPUT`.
pub fn after(kind: &str, cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(c) = cursor else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix(kind)?.strip_prefix(':')?.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadUserInput,
                format!(
                    "after: {c:?} is not a cursor of this list; pass an endCursor of a previous page"
                ),
            )
        })
}

/// The `PageInfo` of a page of `items` (fetched one beyond the page size
/// `limit`, to know whether more follow; the extra is removed here).
pub fn page<T>(
    kind: &str,
    mut items: Vec<T>,
    limit: i64,
    after: Option<i64>,
    id: impl Fn(&T) -> i64,
) -> (Vec<(String, T)>, PageInfo) {
    let has_next_page = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let edges: Vec<(String, T)> = items
        .into_iter()
        .map(|t| (cursor(kind, id(&t)), t))
        .collect();
    let info = PageInfo {
        has_next_page,
        has_previous_page: after.is_some(),
        start_cursor: edges.first().map(|(c, _)| c.clone()),
        end_cursor: edges.last().map(|(c, _)| c.clone()),
    };
    (edges, info)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn page_sizes_default_to_50_and_stay_within_1_to_500() {
        assert_eq!(page_size(None), Ok(50));
        assert_eq!(page_size(Some(500)), Ok(500));
        for bad in [0, -1, 501] {
            assert_eq!(
                page_size(Some(bad)).map_err(|e| e.code),
                Err(ErrorCode::BadUserInput)
            );
        }
    }

    #[test]
    fn cursors_round_trip_only_within_their_list() {
        let c = cursor("invitation", 42);
        assert_eq!(after("invitation", Some(&c)), Ok(Some(42)));
        assert_eq!(after("invitation", None), Ok(None));
        for bad in [cursor("survey", 42), "!!".into(), "aW52aXRhdGlvbjp4".into()] {
            assert_eq!(
                after("invitation", Some(&bad)).map_err(|e| e.code),
                Err(ErrorCode::BadUserInput),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_knows_whether_more_follow() {
        let (edges, info) = page("n", vec![1, 2, 3], 2, Some(0), |n| *n);
        assert_eq!(edges.len(), 2);
        assert!(info.has_next_page && info.has_previous_page);
        assert_eq!(info.end_cursor, Some(cursor("n", 2)));
        let (edges, info) = page("n", vec![1, 2], 2, None, |n| *n);
        assert_eq!(edges.len(), 2);
        assert!(!info.has_next_page && !info.has_previous_page);
        let (_, info) = page("n", Vec::<i64>::new(), 2, None, |n| *n);
        assert_eq!((info.start_cursor, info.end_cursor), (None, None));
    }
}
