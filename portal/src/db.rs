//! Database work from async handlers: each call checks a pooled connection
//! out and runs on actix's blocking thread pool, so a slow query or a
//! SQLite lock wait never stalls the workers serving other requests.

use actix_web::web;
use cvm_shared::db::{DbConnection, DbError, DbPool, pool};

use crate::graphql::errors::ApiError;

/// Runs `f` on a pooled connection off the async workers.
pub async fn run<T, F>(db: &DbPool, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
{
    let db = db.clone();
    web::block(move || {
        let mut conn = pool::checkout(&db)?;
        f(&mut conn)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from)
}
