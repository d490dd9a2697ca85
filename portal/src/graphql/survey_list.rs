//! `surveys(first, after)`: every survey, newest first (by id, which only
//! grows), keyset-paginated like every listing ([`super::pagination`]).

use async_graphql::{Context, Object};
use cvm_shared::db::DbError;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::surveys::Survey as SurveyRow;
use cvm_shared::db::schema::surveys;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::api;
use super::pagination::{self, Page};
use super::surveys::Survey;
use crate::auth::RoleGuard;
use crate::db;

/// Position in `surveys`: the id of the edge.
#[derive(Debug, Serialize, Deserialize)]
struct SurveyCursor {
    survey: i64,
}

/// The survey listing.
#[derive(Default)]
pub struct SurveyListQuery;

#[Object]
impl SurveyListQuery {
    /// Every survey, newest first: a page of `first` (default 50, at most 500) after `after`.
    #[graphql(
        guard = "RoleGuard::new(Role::Viewer)",
        complexity = "crate::graphql::list_cost(first, child_complexity)"
    )]
    async fn surveys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Survey>> {
        let (size, after) = pagination::arguments::<SurveyCursor>(first, after.as_deref())?;
        let after = after.map(|c| c.survey);
        let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let (rows, has_previous, total) = db::run(&api(ctx)?.db, move |c| {
            let total = surveys::table
                .count()
                .get_result::<i64>(c)
                .map_err(DbError::query("surveys", "count"))?;
            let mut q = surveys::table.select(SurveyRow::as_select()).into_boxed();
            let mut has_previous = false;
            if let Some(id) = after {
                has_previous = surveys::table
                    .filter(surveys::id.ge(id))
                    .select(surveys::id)
                    .first::<i64>(c)
                    .optional()
                    .map_err(DbError::query("surveys", "select"))?
                    .is_some();
                q = q.filter(surveys::id.lt(id));
            }
            let rows = q
                .order(surveys::id.desc())
                .limit(limit)
                .load::<SurveyRow>(c)
                .map_err(DbError::query("surveys", "select page"))?;
            Ok((rows, has_previous, total))
        })
        .await?;
        let items = rows.into_iter().map(|s| {
            let cursor = pagination::encode_cursor(&SurveyCursor { survey: s.id });
            (cursor, Survey(s))
        });
        Ok(pagination::page(items, size, has_previous, total))
    }
}
