//! The GraphQL schema: one module per domain, each contributing a query
//! and/or mutation object, merged here into the root `Query` and `Mutation`.
//! To add a domain: a new module with `XQuery`/`XMutation` (guards on every
//! field, see [`crate::auth::RoleGuard`]) and one more member below.

pub mod audit_log;
pub mod batch;
pub mod campaign_sending;
pub mod campaigns;
pub mod consent;
pub mod customers;
pub mod errors;
pub mod feedback;
pub mod filter;
pub mod groups;
pub mod invitations;
pub mod me;
pub mod nps;
pub mod pagination;
pub mod privacy;
pub mod scalars;
pub mod survey_list;
pub mod surveys;
pub mod uplift;

use async_graphql::{Context, EmptySubscription, MergedObject, Schema, SchemaBuilder};
use std::sync::Arc;

use cvm_shared::db::DbPool;

use crate::answer_writer::AnswerWriter;
use crate::auth::Staff;
use crate::mail::config::MailConfig;
use crate::mail::sender::SenderHandle;
use crate::metrics::Metrics;
use crate::tokens::LinkSigner;
use errors::ApiError;

/// The root query type.
#[derive(MergedObject, Default)]
pub struct Query(
    me::MeQuery,
    surveys::SurveyQuery,
    customers::CustomerQuery,
    groups::GroupQuery,
    nps::NpsQuery,
    survey_list::SurveyListQuery,
    campaigns::CampaignQuery,
    uplift::UpliftQuery,
    audit_log::AuditLogQuery,
);

/// The root mutation type.
#[derive(MergedObject, Default)]
pub struct Mutation(
    surveys::SurveyMutation,
    invitations::InvitationMutation,
    feedback::FeedbackMutation,
    campaigns::CampaignMutation,
    campaign_sending::CampaignSendingMutation,
    consent::ConsentMutation,
    privacy::PrivacyMutation,
);

/// The portal's schema.
pub type PortalSchema = Schema<Query, Mutation, EmptySubscription>;

/// What resolvers (and the survey pages) share: the database pool, the link
/// signer, the public URL, the metrics.
#[derive(Clone)]
pub struct ApiContext {
    /// Database connections.
    pub db: DbPool,
    /// Signs and checks survey (and unsubscribe) links.
    pub links: LinkSigner,
    /// Base of links, without a trailing slash.
    pub public_url: String,
    /// The process's metrics (answers submitted).
    pub metrics: Arc<Metrics>,
    /// Where answers are written.
    pub answers: AnswerWriter,
    /// Mail settings (sender, delivery, frequency cap).
    pub mail: Arc<MailConfig>,
    /// Wakes the campaign sender when there is new work.
    pub sender: SenderHandle,
    /// The privacy key, the warehouse and the export folder (data requests).
    pub privacy: Arc<privacy::PrivacyConfig>,
}

fn builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    // `Date` is part of the contract before any field here uses it.
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .register_output_type::<scalars::Date>()
}

/// The schema as SDL (what `cvm-portal schema` prints).
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// What a query may cost (see `portal.max_depth`, `portal.max_complexity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Deepest selection accepted.
    pub max_depth: usize,
    /// Costliest query accepted: each field costs 1, a list field its page
    /// size times its selection.
    pub max_complexity: usize,
    /// Whether introspection (`__schema`, `__type`) is answered.
    pub introspection: bool,
}

/// The cost of a list field: its page size (`first`, default 50, counted
/// within 0..=500 whatever was asked) times the cost of one item's selection.
pub fn list_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let size = first.unwrap_or(50).clamp(1, 500);
    usize::try_from(size)
        .unwrap_or(500)
        .saturating_mul(child_complexity)
}

/// The schema, serving with `context` within `limits`.
pub fn schema(context: ApiContext, limits: QueryLimits) -> PortalSchema {
    let b = builder()
        .data(context)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if limits.introspection {
        b.finish()
    } else {
        b.disable_introspection().finish()
    }
}

/// The shared context of a resolver.
pub(crate) fn api<'a>(ctx: &Context<'a>) -> Result<&'a ApiContext, ApiError> {
    ctx.data::<ApiContext>()
        .map_err(|_| ApiError::internal("the schema was built without its context"))
}

/// The request's staff identity (present wherever a [`crate::auth::RoleGuard`] passed).
pub(crate) fn staff<'a>(ctx: &Context<'a>) -> Result<&'a Staff, ApiError> {
    crate::auth::check_role(
        ctx.data_opt::<Staff>(),
        cvm_shared::db::models::api_tokens::Role::Viewer,
    )?;
    ctx.data::<Staff>()
        .map_err(|_| ApiError::internal("no staff identity after the role check"))
}
