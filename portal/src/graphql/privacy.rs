//! Data requests (admin): `exportCustomerData` writes a customer's data
//! export and answers a download link; `eraseCustomer` erases them from the
//! database at once (the next `cvm-etl nightly` completes it in the
//! warehouse, which the portal never writes). Both leave an audit entry.
//!
//! Downloads: `GET /exports/{token}` with an admin's bearer token. The link
//! is signed (its token is checked before anything is read), the archive is
//! stored under the hash of its token, and it is deleted once expired.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{SubsecRound, Utc};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::privacy::PrivacyKey;
use cvm_shared::privacy::erase::{self, EraseError, ErasureRequest};
use cvm_shared::privacy::export::{self, ExportError, ExportRequest};

use super::errors::{ApiError, ErrorCode};
use super::scalars::DateTime;
use super::{ApiContext, api, staff};
use crate::auth::RoleGuard;
use crate::export::plain;
use crate::tokens::LinkPurpose;

/// How long an export's download link works.
pub const EXPORT_TTL: Duration = Duration::from_secs(24 * 3600);

/// What data requests need beyond the database.
#[derive(Debug, Clone, Default)]
pub struct PrivacyConfig {
    /// `CVM_PRIVACY_KEY`: erasure needs it (and recognising an erased customer's former id).
    pub key: Option<PrivacyKey>,
    /// The warehouse, when this process can read it (exports then include it).
    pub warehouse: Option<PathBuf>,
    /// Where exports wait for their download.
    pub export_dir: PathBuf,
}

/// A download link of a data export.
#[derive(Debug, Clone, SimpleObject)]
pub struct DataExport {
    /// `{public_url}/exports/{token}`: GET it with an admin's bearer token.
    pub url: String,
    /// After this the link answers 410 and the archive is deleted.
    pub expires_at: DateTime,
}

/// An erasure done.
#[derive(Debug, Clone, SimpleObject)]
pub struct Erasure {
    /// The id erased (as asked).
    pub customer_id: ID,
    /// The pseudonym that replaced it everywhere.
    pub pseudonym: String,
    /// When the database part was done (the first time, for a repeated erasure).
    pub erased_at: DateTime,
    /// Whether the warehouse part is still to be done by the next nightly run.
    pub warehouse_pending: bool,
}

/// The data request mutations.
#[derive(Default)]
pub struct PrivacyMutation;

#[Object]
impl PrivacyMutation {
    /// Writes everything held about a customer into one zip archive (JSON
    /// and CSV, with a README) and answers its download link (admin). The
    /// warehouse's part is included when the portal is given the warehouse
    /// (`portal.warehouse`); the archive's README says when it is not.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn export_customer_data(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DataExport> {
        let api = api(ctx)?;
        let actor = staff(ctx)?.name.clone();
        let privacy = api.privacy.clone();
        let issued = api
            .links
            .issue(LinkPurpose::Export)
            .map_err(ApiError::internal)?;
        let dir = privacy.export_dir.clone();
        let path = archive_path(&dir, &issued.hash);
        let customer = id.0.clone();
        db_run(api, move |c| {
            sweep_expired(&dir);
            export::export_customer(
                c,
                &ExportRequest {
                    customer_id: &customer,
                    actor: &actor,
                    warehouse: privacy.warehouse.as_deref(),
                    key: privacy.key.as_ref(),
                    out: &path,
                    at: Utc::now().naive_utc().trunc_subsecs(6),
                },
            )
            .map_err(Failure::Export)
        })
        .await
        .map_err(|e| match e {
            Failure::Export(ExportError::NotFound(_)) => {
                ApiError::new(ErrorCode::NotFound, format!("no customer {}", id.as_str()))
            }
            other => other.into_api(),
        })?;
        let expires = Utc::now() + chrono::Duration::seconds(EXPORT_TTL.as_secs() as i64);
        Ok(DataExport {
            url: format!("{}/exports/{}", api.public_url, issued.token),
            expires_at: DateTime::from_utc(expires.naive_utc()),
        })
    }

    /// Erases a customer (admin): their personal data leaves the database at
    /// once, their id is replaced by a pseudonym everywhere, and the next
    /// nightly run erases them from the warehouse. Erasing again changes
    /// nothing (and is audited). Needs `CVM_PRIVACY_KEY` on the portal.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn erase_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> async_graphql::Result<Erasure> {
        let api = api(ctx)?;
        let actor = staff(ctx)?.name.clone();
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                "reason is empty: say why (e.g. the request's ticket number)",
            )
            .into());
        }
        let Some(key) = api.privacy.key.clone() else {
            tracing::error!(
                "eraseCustomer needs CVM_PRIVACY_KEY (at least 32 bytes) on the portal"
            );
            return Err(ApiError::internal("CVM_PRIVACY_KEY is not set").into());
        };
        let customer = id.0.clone();
        let outcome = db_run(api, move |c| {
            erase::erase_in_database(
                c,
                &key,
                &ErasureRequest {
                    customer_id: &customer,
                    actor: &actor,
                    reason: &reason,
                    at: Utc::now().naive_utc().trunc_subsecs(6),
                },
            )
            .map_err(Failure::Erase)
        })
        .await
        .map_err(|e| match e {
            Failure::Erase(EraseError::NotFound(_)) => {
                ApiError::new(ErrorCode::NotFound, format!("no customer {}", id.as_str()))
            }
            other => other.into_api(),
        })?;
        let e = outcome.erasure();
        Ok(Erasure {
            customer_id: id,
            pseudonym: e.pseudonym.clone(),
            erased_at: DateTime::from_utc(e.erased_at),
            warehouse_pending: e.warehouse_done_at.is_none(),
        })
    }
}

/// Why a data request failed.
enum Failure {
    Export(ExportError),
    Erase(EraseError),
    Pool(ApiError),
}

impl Failure {
    fn into_api(self) -> ApiError {
        match self {
            Failure::Export(e) => ApiError::internal(e),
            Failure::Erase(e) => ApiError::internal(e),
            Failure::Pool(e) => e,
        }
    }
}

/// Runs `f` on a pooled connection off the async workers, keeping its error typed.
async fn db_run<T, F>(api: &ApiContext, f: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&mut cvm_shared::db::DbConnection) -> Result<T, Failure> + Send + 'static,
{
    let db = api.db.clone();
    web::block(move || {
        let mut conn =
            cvm_shared::db::pool::checkout(&db).map_err(|e| Failure::Pool(ApiError::from(e)))?;
        f(&mut conn)
    })
    .await
    .map_err(|e| Failure::Pool(ApiError::internal(e)))?
}

fn archive_path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("{hash}.zip"))
}

/// Whether `path` was written longer ago than the link lives.
fn expired(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > EXPORT_TTL)
        .unwrap_or(true)
}

/// Deletes the exports whose links have expired.
fn sweep_expired(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "zip") && expired(&p) {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The download route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/exports/{token}", web::get().to(download));
}

/// `GET /exports/{token}` (admin bearer token).
async fn download(
    api: web::Data<ApiContext>,
    http: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    if let Err(e) = crate::export::authorize(&api, &http, Role::Admin).await {
        return crate::export::refused(&e);
    }
    let Ok(hash) = api.links.verify(LinkPurpose::Export, &token) else {
        return plain(StatusCode::NOT_FOUND, "no such export");
    };
    let path = archive_path(&api.privacy.export_dir, &hash);
    if !path.exists() {
        return plain(StatusCode::NOT_FOUND, "no such export");
    }
    if expired(&path) {
        let _ = std::fs::remove_file(&path);
        return plain(
            StatusCode::GONE,
            "this export's link has expired: export again",
        );
    }
    let read = web::block(move || std::fs::read(&path)).await;
    match read {
        Ok(Ok(bytes)) => HttpResponse::Ok()
            .content_type("application/zip")
            .insert_header((
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"customer-data.zip\"",
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(bytes),
        _ => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the export could not be read",
        ),
    }
}
