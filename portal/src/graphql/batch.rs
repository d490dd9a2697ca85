//! Batched loading without N+1 queries: the objects of one list (a page of
//! customers, the feedback of that page) share one [`Lazy`] load of what
//! their fields need for *all* of them. The first field that needs it runs
//! the one query; the others await the same result. Unlike a time-window
//! data loader, the number of statements of a request does not depend on
//! scheduling: one per kind of object and list, whatever the list's length.

use std::sync::Arc;

use cvm_shared::db::{DbConnection, DbError, DbPool};
use tokio::sync::OnceCell;

use super::errors::ApiError;
use crate::db;

type Load<T> = Arc<dyn Fn(&mut DbConnection) -> Result<T, DbError> + Send + Sync>;

/// A value loaded from the database once, when first asked for.
pub struct Lazy<T> {
    db: DbPool,
    load: Load<T>,
    value: OnceCell<T>,
}

impl<T: Send + Sync + 'static> Lazy<T> {
    /// A value `load` will read on first use.
    pub fn new<F>(db: &DbPool, load: F) -> Arc<Lazy<T>>
    where
        F: Fn(&mut DbConnection) -> Result<T, DbError> + Send + Sync + 'static,
    {
        Arc::new(Lazy {
            db: db.clone(),
            load: Arc::new(load),
            value: OnceCell::new(),
        })
    }

    /// The value, loading it (off the async workers) if nobody has yet.
    pub async fn get(&self) -> Result<&T, ApiError> {
        self.value
            .get_or_try_init(|| {
                let load = Arc::clone(&self.load);
                db::run(&self.db, move |c| load(c))
            })
            .await
    }

    /// The pool the value is read from (for the loads of related objects).
    pub fn db(&self) -> &DbPool {
        &self.db
    }
}
