//! The actix-web application: routes, the request-id and tracing
//! middleware, and the server's start. Shutdown is actix's: on SIGTERM or
//! SIGINT it stops accepting, lets in-flight requests finish (up to
//! [`SHUTDOWN_GRACE`]), then exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Condition;
use actix_web::{App, HttpMessage, HttpRequest, HttpResponse, HttpServer, web};
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use cvm_shared::db::models::audit_log::AuditAction;
use cvm_shared::db::{DbConnection, DbError, DbPool, DbUrl, pool};
use diesel::connection::SimpleConnection;
use futures_util::StreamExt;
use std::net::IpAddr;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder, TracingLogger};

use crate::answer_writer::AnswerWriter;
use crate::audit::{self, AuditTrail};
use crate::auth;
use crate::graphql::errors::{self, ApiError, ErrorCode};
use crate::graphql::{self, ApiContext, PortalSchema, QueryLimits};
use crate::mail::config::MailConfig;
use crate::mail::sender::{Sender, SenderHandle, SenderSetup};
use crate::metrics::Metrics;
use crate::protect::{self, RateLimit};
use crate::tokens::{LinkSigner, TokenError};
use crate::{export, pages};

/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long `/healthz` waits for a database connection before answering 503.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server needs, resolved from settings and flags.
#[derive(Debug)]
pub struct ServeConfig {
    /// The database.
    pub db_url: DbUrl,
    /// Listen address (port 0: any free port).
    pub bind: SocketAddr,
    /// Base of links, e.g. `https://shop.example`.
    pub public_url: String,
    /// The link-signing key (at least 32 bytes).
    pub secret: Vec<u8>,
    /// Whether `/graphiql` serves GraphiQL.
    pub graphiql: bool,
    /// Database connections in the pool.
    pub pool_size: u32,
    /// HTTP worker threads (None: one per CPU).
    pub workers: Option<usize>,
    /// Request limits: body size, query cost, rate, CORS.
    pub limits: Limits,
    /// Campaign mail: sender identity, delivery, rate, frequency cap.
    pub mail: MailConfig,
    /// Whether this process runs the campaign sender (several may, on one database).
    pub sender: bool,
    /// Data requests: the privacy key, the warehouse, where exports wait.
    pub privacy: graphql::privacy::PrivacyConfig,
}

/// What a request may be and do (`[portal]` settings).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Depth, complexity and introspection of GraphQL queries.
    pub query: QueryLimits,
    /// Requests per second per client IP on the public routes, 0 = off.
    pub rate_limit: f64,
    /// Origins allowed to call from a browser (CORS); empty: none.
    pub cors_origins: Vec<String>,
}

impl Limits {
    /// The limits the settings ask for.
    pub fn from_settings(p: &cvm_shared::config::PortalSettings) -> Limits {
        Limits {
            max_body_bytes: p.max_body_bytes as usize,
            query: QueryLimits {
                max_depth: p.max_depth as usize,
                max_complexity: p.max_complexity as usize,
                introspection: p.introspection,
            },
            rate_limit: p.rate_limit,
            cors_origins: p.cors_origins.clone(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::from_settings(&cvm_shared::config::PortalSettings::default())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened, migrated or pooled.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The portal secret is unusable.
    #[error("portal.secret (CVM_PORTAL_SECRET): {0}")]
    Secret(#[from] TokenError),
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source} (set portal.bind / CVM_PORTAL_BIND or --bind)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The campaign sender's thread could not start.
    #[error("cannot start the campaign sender: {0}")]
    Sender(std::io::Error),
    /// The metrics registry refused a metric (a bug).
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started server: where it listens, and the future that runs it until shutdown.
pub struct Running {
    /// The bound addresses (the real port when the configured one was 0).
    pub addrs: Vec<SocketAddr>,
    /// Await to serve; `.handle()` stops it.
    pub server: Server,
    /// The campaign sender, when this process runs one: stop it after the server.
    pub sender: Option<Sender>,
}

/// State shared by the handlers.
struct AppState {
    schema: PortalSchema,
    db: DbPool,
    metrics: Arc<Metrics>,
    graphiql: bool,
    max_body_bytes: usize,
    rate: RateLimit,
}

/// Applies pending migrations (once, here), opens the pool, binds and
/// returns the server. Call inside an actix system (`actix_web::rt::System`);
/// the setup steps block, which is fine before serving.
pub fn start(mut config: ServeConfig) -> Result<Running, ServeError> {
    // Campaigns recognise erased people's hashed suppressions with the privacy key.
    if config.mail.privacy_key.is_none() {
        config.mail.privacy_key = config.privacy.key.clone();
    }
    let applied = DbConnection::open_for_write(&config.db_url)
        .and_then(|mut c| cvm_shared::db::migrate::applied(&mut c))?;
    tracing::info!(
        database = %config.db_url,
        schema = applied.last().map(String::as_str).unwrap_or("none"),
        "database ready"
    );
    let metrics = Arc::new(Metrics::new()?);
    let statements = metrics.db_statements.clone();
    let db = pool::build_observed(
        &config.db_url,
        config.pool_size,
        Some(Arc::new(move || statements.inc())),
    )?;
    let mut context = ApiContext {
        db: db.clone(),
        links: LinkSigner::new(&config.secret)?,
        public_url: config.public_url.trim_end_matches('/').to_string(),
        metrics: metrics.clone(),
        answers: AnswerWriter::start(&config.db_url, &db)?,
        mail: Arc::new(config.mail.clone()),
        sender: SenderHandle::default(),
        privacy: Arc::new(config.privacy.clone()),
    };
    let sender = if config.sender {
        let sender = Sender::start(SenderSetup {
            db: db.clone(),
            links: context.links.clone(),
            public_url: context.public_url.clone(),
            mail: config.mail,
            metrics: metrics.clone(),
        })
        .map_err(ServeError::Sender)?;
        context.sender = sender.handle();
        Some(sender)
    } else {
        None
    };
    let api = web::Data::new(context.clone());
    let state = web::Data::new(AppState {
        schema: graphql::schema(context, config.limits.query),
        db,
        metrics,
        graphiql: config.graphiql,
        max_body_bytes: config.limits.max_body_bytes,
        rate: RateLimit::new(config.limits.rate_limit),
    });
    let origins = config.limits.cors_origins.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(api.clone())
            .wrap_fn(limit_public_pages)
            .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
            .wrap_fn(|req, srv| {
                let id = req.extensions().get::<RequestId>().copied();
                let response = srv.call(req);
                async move {
                    let mut response = response.await?;
                    if let Some(v) = id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
                        response
                            .headers_mut()
                            .insert(header::HeaderName::from_static("x-request-id"), v);
                    }
                    Ok(response)
                }
            })
            .wrap(TracingLogger::<RequestSpan>::new())
            .configure(routes)
    })
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    if let Some(n) = config.workers {
        server = server.workers(n);
    }
    let server = server
        .bind(config.bind)
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let addrs = server.addrs();
    Ok(Running {
        addrs,
        server: server.run(),
        sender,
    })
}

/// CORS for the API from the configured origins (credentials: the bearer header).
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |c, o| c.allowed_origin(o))
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(3600)
}

/// The client address the rate limit counts by: the TCP peer.
fn client_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |a| a.ip())
}

/// The response future of [`limit_public_pages`].
type PageFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error>,
            >,
    >,
>;

/// Applies the rate limit to the customers' pages (`/s/*`, `/u/*`).
fn limit_public_pages<S>(req: ServiceRequest, srv: &S) -> PageFuture
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let path = req.path();
    if path.starts_with("/s/") || path.starts_with("/u/") {
        let limited = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.rate.check(client_ip(req.request())));
        if let Some(Err(wait)) = limited {
            let response = req.into_response(protect::page_too_many(wait));
            return Box::pin(async move { Ok(response.map_into_right_body()) });
        }
    }
    let fut = srv.call(req);
    Box::pin(async move { Ok(fut.await?.map_into_left_body()) })
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/graphql")
            .route(web::post().to(graphql_handler))
            .route(web::get().to(graphql_handler)),
    )
    .route("/graphiql", web::get().to(graphiql))
    .route("/healthz", web::get().to(healthz))
    .route("/metrics", web::get().to(metrics))
    .configure(pages::routes)
    .configure(export::routes)
    .configure(graphql::privacy::routes);
}

/// The span of each request: its id, method and route pattern (never the
/// path itself, which may hold a survey token), then status and operation.
struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %request.method(),
            route = request.match_pattern().as_deref().unwrap_or("unmatched"),
            operation = tracing::field::Empty,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
    }
}

/// The operation a request runs: its label for metrics and logs, and whether it is a mutation.
fn operation_of(request: &mut async_graphql::Request) -> (String, bool) {
    let named = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return (named.unwrap_or_else(|| "invalid".into()), false);
    };
    let (name, op) = match &doc.operations {
        DocumentOperations::Single(op) => (named.unwrap_or_else(|| "anonymous".into()), Some(op)),
        DocumentOperations::Multiple(ops) => match named {
            Some(n) => {
                let op = ops.get(n.as_str());
                (n, op)
            }
            None if ops.len() == 1 => match ops.iter().next() {
                Some((n, op)) => (n.to_string(), Some(op)),
                None => ("anonymous".into(), None),
            },
            None => ("anonymous".into(), None),
        },
    };
    let mutation = op.is_some_and(|op| op.node.ty == OperationType::Mutation);
    (name, mutation)
}

fn graphql_json(status: StatusCode, response: &async_graphql::Response) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    r.json(response)
}

/// Why a request body could not be read as a GraphQL request.
fn unreadable(status: StatusCode, message: String) -> HttpResponse {
    protect::graphql_refused(status, ErrorCode::BadUserInput, message)
}

/// Reads the body, refusing (413) one over `limit` bytes before reading it
/// when its length is declared, and as soon as it passes the limit otherwise.
async fn read_body(
    mut payload: web::Payload,
    declared: Option<usize>,
    limit: usize,
) -> Result<web::BytesMut, HttpResponse> {
    let too_large = || {
        protect::graphql_refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadUserInput,
            format!("the request body is larger than {limit} bytes (portal.max_body_bytes)"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            unreadable(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The GraphQL request of an HTTP request: the query string of a GET; a
/// JSON body (`application/json`) or a bare query (`application/graphql`)
/// of a POST. Batches are refused: each request is limited on its own.
async fn graphql_request(
    http: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<async_graphql::Request, HttpResponse> {
    if http.method() == Method::GET {
        return async_graphql::http::parse_query_string(http.query_string()).map_err(|e| {
            unreadable(
                StatusCode::BAD_REQUEST,
                format!("the query string is not a GraphQL request: {e}"),
            )
        });
    }
    let declared = http
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let body = read_body(payload, declared, limit).await?;
    let mime = http
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match mime.as_deref() {
        Some("application/graphql") => {
            let query = String::from_utf8(body.to_vec()).map_err(|_| {
                unreadable(
                    StatusCode::BAD_REQUEST,
                    "the request body is not valid UTF-8".into(),
                )
            })?;
            Ok(async_graphql::Request::new(query))
        }
        Some("application/json") | None => {
            if std::str::from_utf8(&body).is_err() {
                return Err(unreadable(
                    StatusCode::BAD_REQUEST,
                    "the request body is not valid UTF-8".into(),
                ));
            }
            match serde_json::from_slice::<async_graphql::BatchRequest>(&body) {
                Ok(async_graphql::BatchRequest::Single(r)) => Ok(r),
                Ok(async_graphql::BatchRequest::Batch(_)) => Err(unreadable(
                    StatusCode::BAD_REQUEST,
                    "batched requests are not accepted; send one request per HTTP request".into(),
                )),
                Err(e) => Err(unreadable(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the request body is not a GraphQL request ({{\"query\": ..., \"variables\": {{...}}}}): {e}"
                    ),
                )),
            }
        }
        Some(other) => Err(unreadable(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {other} is not accepted; send application/json"),
        )),
    }
}

async fn graphql_handler(
    state: web::Data<AppState>,
    http: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let refused = |response: HttpResponse, code: ErrorCode| {
        state
            .metrics
            .observe_graphql("(refused)", started.elapsed(), [code.as_str()].into_iter());
        response
    };
    // Requests without a staff token are limited before anything is read.
    let anonymous = !http.headers().contains_key(header::AUTHORIZATION);
    if anonymous && let Err(wait) = state.rate.check(client_ip(&http)) {
        return refused(protect::graphql_too_many(wait), ErrorCode::RateLimited);
    }
    let mut request = match graphql_request(&http, payload, state.max_body_bytes).await {
        Ok(r) => r,
        Err(response) => return refused(response, ErrorCode::BadUserInput),
    };
    let (operation, mutation) = operation_of(&mut request);
    Span::current().record("operation", operation.as_str());
    let finish = |status: StatusCode, mut response: async_graphql::Response| {
        errors::ensure_codes(&mut response);
        state
            .metrics
            .observe_graphql(&operation, started.elapsed(), errors::codes(&response));
        graphql_json(status, &response)
    };
    let header = match http
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str())
    {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            let e = ApiError::new(
                ErrorCode::Unauthenticated,
                "the Authorization header is not valid text",
            );
            return finish(StatusCode::UNAUTHORIZED, e.into_response());
        }
    };
    let staff = match auth::authenticate(&state.db, header).await {
        Ok(s) => s,
        Err(e) if e.code == ErrorCode::Unauthenticated => {
            // Guessing tokens is limited like any anonymous request.
            if let Err(wait) = state.rate.check(client_ip(&http)) {
                return refused(protect::graphql_too_many(wait), ErrorCode::RateLimited);
            }
            return finish(StatusCode::UNAUTHORIZED, e.into_response());
        }
        Err(e) => return finish(StatusCode::OK, e.into_response()),
    };
    // A GET can be triggered by any page the user visits: queries only.
    if mutation && http.method() == Method::GET {
        let e = ApiError::new(ErrorCode::BadUserInput, "mutations must be sent with POST");
        return finish(StatusCode::OK, e.into_response());
    }
    let Some(staff) = staff else {
        return finish(StatusCode::OK, state.schema.execute(request).await);
    };
    let actor = staff.name.clone();
    let trail = AuditTrail::default();
    request = request.data(staff).data(trail.clone());
    let response = state.schema.execute(request).await;
    let ids = trail.ids();
    if !ids.is_empty() {
        let detail = Some(operation.clone());
        if let Err(e) =
            audit::record(&state.db, &actor, AuditAction::ReadPersonal, ids, detail).await
        {
            tracing::error!(error = %e.message, "could not write the audit log; the response is withheld");
            let e = ApiError::internal("the access to personal data could not be audited");
            return finish(StatusCode::OK, e.into_response());
        }
    }
    finish(StatusCode::OK, response)
}

async fn graphiql(state: web::Data<AppState>) -> HttpResponse {
    if !state.graphiql {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("GraphiQL is turned off (portal.graphiql = false)\n");
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.clone();
    let ping = web::block(move || {
        let mut c = pool::checkout_within(&db, HEALTH_TIMEOUT)?;
        c.batch_execute("SELECT 1")
            .map_err(DbError::query("(health check)", "select 1"))
    })
    .await;
    match ping {
        Ok(Ok(())) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ok\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("database unavailable\n")
        }
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("database unavailable\n"),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            HttpResponse::InternalServerError().finish()
        }
    }
}
