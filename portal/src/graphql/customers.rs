//! Customers: `customer(id)`, `customers(filter, orderBy, first, after)`,
//! the `Customer`, `Score` and `Feedback` types. A page of customers with
//! their feedback is a bounded number of SQL statements whatever its size:
//! scores come in the page's query (a join), and the customers of a page
//! share one batched load of their feedback ([`super::batch`]), whose
//! answers share one load of their surveys and one of their customers.
//!
//! # Pagination of `customers`
//! Keyset pagination (no OFFSET): the listing is ordered by the sort field,
//! then by customer id in the same direction; customers without a value
//! (never scored, or a null score) come last in either direction. A cursor
//! holds the sort value and id of its edge.
//!
//! A nightly load rewrites scores in place, so a customer can move across a
//! page boundary of a listing ordered by CLV, churn risk, loyalty or last
//! purchase. Such a cursor also holds the version of the scores it was made
//! on (the `as_of` and `loaded_at` of the latest score write: every load
//! writes all its rows in one transaction with one stamp, so the version
//! changes exactly when a load changed a score). A later page asked with a
//! cursor of another version is refused with `BAD_USER_INPUT` ("restart the
//! listing") rather than silently repeating or skipping customers. Ordering
//! by `CUSTOMER_ID` stays valid across loads: ids never change, so no
//! customer is repeated or skipped (one that enters or leaves the filter
//! meanwhile may or may not be listed).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Object, OutputType};
use chrono::{NaiveDate, NaiveDateTime};
use cvm_shared::db::connection::MultiBackend;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::consent_changes::{self, ConsentChange as ConsentChangeRow};
use cvm_shared::db::models::customers::Customer as CustomerRow;
use cvm_shared::db::models::scores::Score as ScoreRow;
use cvm_shared::db::models::surveys::Survey as SurveyRow;
use cvm_shared::db::schema::{answers, customers, invitations, scores, surveys};
use cvm_shared::db::{DbConnection, DbError, DbPool};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::api;
use super::batch::Lazy;
use super::consent::ConsentChange;
use super::errors::{ApiError, ErrorCode};
use super::filter::{
    Condition, CustomerFilter, CustomerSource, LifecycleStage, NpsClass, ValueTier,
};
use super::pagination::{self, Page, Totals};
use super::scalars::{Date, DateTime};
use super::surveys::Survey;
use crate::audit;
use crate::auth::RoleGuard;
use crate::db;

/// A customer with its latest scores (loaded together), and the loads of
/// feedback and consent history it shares with the other customers of its list.
#[derive(Clone)]
pub struct Customer {
    row: CustomerRow,
    score: Option<Score>,
    related: Arc<Related>,
}

impl Customer {
    fn new((row, score): (CustomerRow, Option<ScoreRow>), related: &Arc<Related>) -> Customer {
        Customer {
            row,
            score: score.map(Score),
            related: Arc::clone(related),
        }
    }
}

/// What the customers of one list load together, on first use.
pub(crate) struct Related {
    feedback: Arc<Lazy<FeedbackSet>>,
    consent: Arc<Lazy<HashMap<String, Vec<ConsentChangeRow>>>>,
}

/// The batched loads of customers `ids`.
fn related_of(db: &DbPool, ids: Vec<String>) -> Arc<Related> {
    let consent_ids = ids.clone();
    Arc::new(Related {
        feedback: feedback_of(db, ids),
        consent: Lazy::new(db, move |c| {
            let mut by_customer: HashMap<String, Vec<ConsentChangeRow>> = HashMap::new();
            for row in consent_changes::of_customers(c, &consent_ids)? {
                by_customer
                    .entry(row.customer_id.clone())
                    .or_default()
                    .push(row);
            }
            Ok(by_customer)
        }),
    })
}

/// The answers of a list of customers, and the loads of what they link to.
pub struct FeedbackSet {
    by_customer: HashMap<String, Vec<FeedbackRow>>,
    surveys: Arc<Lazy<HashMap<i64, SurveyRow>>>,
    customers: Arc<Lazy<HashMap<String, Customer>>>,
}

/// The answers of customers `ids`, loaded on first use (newest first per customer).
fn feedback_of(db: &DbPool, ids: Vec<String>) -> Arc<Lazy<FeedbackSet>> {
    let pool = db.clone();
    Lazy::new(db, move |c| {
        let rows = answers::table
            .inner_join(invitations::table)
            .filter(invitations::customer_id.eq_any(&ids))
            .order((
                invitations::customer_id.asc(),
                answers::answered_at.desc(),
                answers::id.desc(),
            ))
            .select((
                answers::id,
                invitations::customer_id,
                invitations::survey_id,
                invitations::campaign_id,
                answers::score,
                answers::csat,
                answers::comment,
                answers::answered_at,
                answers::updated_at,
            ))
            .load::<FeedbackRow>(c)
            .map_err(DbError::query("answers", "select by customers"))?;
        let survey_ids: BTreeSet<i64> = rows.iter().map(|r| r.survey_id).collect();
        let customer_ids: BTreeSet<&str> = rows.iter().map(|r| r.customer_id.as_str()).collect();
        let customers =
            customers_by_id(&pool, customer_ids.into_iter().map(String::from).collect());
        let mut by_customer: HashMap<String, Vec<FeedbackRow>> = HashMap::new();
        for r in rows {
            by_customer
                .entry(r.customer_id.clone())
                .or_default()
                .push(r);
        }
        Ok(FeedbackSet {
            by_customer,
            surveys: surveys_by_id(&pool, survey_ids.into_iter().collect()),
            customers,
        })
    })
}

/// Customers `ids` with their scores, loaded on first use.
pub(crate) fn customers_by_id(
    db: &DbPool,
    ids: Vec<String>,
) -> Arc<Lazy<HashMap<String, Customer>>> {
    let pool = db.clone();
    Lazy::new(db, move |c| {
        let rows = customers_with_scores()
            .filter(customers::customer_id.eq_any(&ids))
            .load::<(CustomerRow, Option<ScoreRow>)>(c)
            .map_err(DbError::query("customers", "select by ids"))?;
        let related = related_of(&pool, ids.clone());
        Ok(rows
            .into_iter()
            .map(|r| (r.0.customer_id.clone(), Customer::new(r, &related)))
            .collect())
    })
}

/// Surveys `ids`, loaded on first use.
fn surveys_by_id(db: &DbPool, ids: Vec<i64>) -> Arc<Lazy<HashMap<i64, SurveyRow>>> {
    Lazy::new(db, move |c| {
        let rows = surveys::table
            .filter(surveys::id.eq_any(&ids))
            .select(SurveyRow::as_select())
            .load::<SurveyRow>(c)
            .map_err(DbError::query("surveys", "select by ids"))?;
        Ok(rows.into_iter().map(|s| (s.id, s)).collect())
    })
}

/// A customer: profile, consent, latest scores and feedback.
impl Customer {
    /// A personal field's value, noted in the request's audit trail when there is one.
    fn personal<'a>(&self, ctx: &Context<'_>, value: &'a Option<String>) -> Option<&'a str> {
        if value.is_some() {
            audit::note(ctx, &self.row.customer_id);
        }
        value.as_deref()
    }
}

#[Object]
impl Customer {
    /// CRM id or guest id.
    async fn id(&self) -> ID {
        ID(self.row.customer_id.clone())
    }
    /// True for customers known only from transactions (not in CRM).
    async fn is_guest(&self) -> bool {
        self.row.is_guest
    }
    /// Normalised email (personal: the request is audited).
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        self.personal(ctx, &self.row.email)
    }
    /// Phone in E.164 (personal: the request is audited).
    async fn phone(&self, ctx: &Context<'_>) -> Option<&str> {
        self.personal(ctx, &self.row.phone)
    }
    /// Given name (personal: the request is audited).
    async fn first_name(&self, ctx: &Context<'_>) -> Option<&str> {
        self.personal(ctx, &self.row.first_name)
    }
    /// Family name (personal: the request is audited).
    async fn last_name(&self, ctx: &Context<'_>) -> Option<&str> {
        self.personal(ctx, &self.row.last_name)
    }
    /// ISO 3166-1 alpha-2 country.
    async fn country(&self) -> Option<&str> {
        self.row.country.as_deref()
    }
    /// Marketing email consent (the value of the last `consentHistory` change).
    async fn email_opt_in(&self) -> bool {
        self.row.email_opt_in
    }
    /// Every change of the email consent, oldest first: what it became,
    /// when, and why (`crm`, `unsubscribe`, `staff`, `erasure`).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn consent_history(&self) -> Result<Vec<ConsentChange>, ApiError> {
        let all = self.related.consent.get().await?;
        Ok(all
            .get(&self.row.customer_id)
            .map(|rows| rows.iter().cloned().map(ConsentChange).collect())
            .unwrap_or_default())
    }
    /// True once erased on request: the id is a pseudonym and nothing personal is left.
    async fn erased(&self) -> bool {
        self.row.erased
    }
    /// False once the customer is no longer in the warehouse.
    async fn active(&self) -> bool {
        self.row.active
    }
    /// Channels the customer bought through, sorted.
    async fn channels(&self) -> Vec<&str> {
        self.row
            .channels
            .split(',')
            .filter(|c| !c.is_empty())
            .collect()
    }
    /// CRM signup date.
    async fn signup_date(&self) -> Option<Date> {
        self.row.signup_date.map(Date)
    }
    /// Earliest of the first transaction and the signup.
    async fn first_seen(&self) -> Option<DateTime> {
        self.row.first_seen.map(DateTime::from_utc)
    }
    /// The latest scores (null if never scored).
    async fn score(&self) -> Option<&Score> {
        self.score.as_ref()
    }
    /// The customer's survey answers, newest first.
    #[graphql(
        guard = "RoleGuard::new(Role::Viewer)",
        complexity = "crate::graphql::list_cost(first, child_complexity)"
    )]
    async fn feedback(
        &self,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Feedback>> {
        let (size, after) = pagination::arguments::<FeedbackCursor>(first, after.as_deref())?;
        let set = self.related.feedback.get().await?;
        let all = set
            .by_customer
            .get(&self.row.customer_id)
            .map_or(&[][..], Vec::as_slice);
        Ok(feedback_page(all, size, after.as_ref(), |f| Feedback {
            row: f.clone(),
            surveys: Arc::clone(&set.surveys),
            customers: Arc::clone(&set.customers),
        }))
    }
}

/// A customer's latest scores (scoring.md).
#[derive(Debug, Clone)]
pub struct Score(ScoreRow);

#[Object]
impl Score {
    /// The day the scores were computed for.
    async fn as_of(&self) -> Date {
        Date(self.0.as_of)
    }
    /// Purchase occasions.
    async fn orders(&self) -> i64 {
        self.0.orders
    }
    /// Repeat occasions.
    async fn frequency(&self) -> i64 {
        self.0.frequency
    }
    /// Net revenue, exact decimal in the base currency.
    async fn total_revenue(&self) -> &str {
        &self.0.total_revenue
    }
    /// First purchase.
    async fn first_purchase(&self) -> Option<Date> {
        self.0.first_purchase.map(Date)
    }
    /// Last purchase.
    async fn last_purchase(&self) -> Option<Date> {
        self.0.last_purchase.map(Date)
    }
    /// Days from the last purchase to `asOf`.
    async fn days_since_last_purchase(&self) -> Option<i32> {
        self.0.days_since_last_purchase
    }
    /// RFM segment name, e.g. "At Risk".
    async fn rfm_segment(&self) -> &str {
        &self.0.rfm_segment
    }
    /// RFM recency score 1..5.
    async fn r_score(&self) -> Option<i32> {
        self.0.r_score
    }
    /// RFM frequency score 1..5.
    async fn f_score(&self) -> Option<i32> {
        self.0.f_score
    }
    /// RFM monetary score 1..5.
    async fn m_score(&self) -> Option<i32> {
        self.0.m_score
    }
    /// Probability the customer is still active (BG/NBD).
    async fn p_alive(&self) -> Option<f64> {
        self.0.p_alive
    }
    /// Expected purchases in the next 90 days.
    #[graphql(name = "expectedPurchases90d")]
    async fn expected_purchases90d(&self) -> Option<f64> {
        self.0.expected_purchases_90d
    }
    /// Expected purchases in the next 365 days.
    #[graphql(name = "expectedPurchases365d")]
    async fn expected_purchases365d(&self) -> Option<f64> {
        self.0.expected_purchases_365d
    }
    /// Expected average order value (Gamma-Gamma).
    async fn expected_avg_value(&self) -> Option<f64> {
        self.0.expected_avg_value
    }
    /// Discounted 12-month customer lifetime value.
    #[graphql(name = "clv12m")]
    async fn clv12m(&self) -> Option<f64> {
        self.0.clv_12m
    }
    /// 1 - pAlive.
    async fn churn_risk(&self) -> Option<f64> {
        self.0.churn_risk
    }
    /// Lifecycle stage (null when the model could not be fitted).
    async fn lifecycle_stage(&self) -> Option<LifecycleStage> {
        self.0
            .lifecycle_stage
            .as_deref()
            .and_then(LifecycleStage::from_db)
    }
    /// Value tier.
    async fn value_tier(&self) -> Option<ValueTier> {
        self.0.value_tier.as_deref().and_then(ValueTier::from_db)
    }
    /// Loyalty index 0..100.
    async fn loyalty_index(&self) -> Option<f64> {
        self.0.loyalty_index
    }
    /// Latest NPS answer 0..10 (as of the last scoring).
    async fn nps_last(&self) -> Option<i32> {
        self.0.nps_last
    }
    /// Class of the latest NPS answer.
    async fn nps_class(&self) -> Option<NpsClass> {
        self.0.nps_class.as_deref().and_then(NpsClass::from_db)
    }
    /// Engagement events in the 90 days up to `asOf`.
    #[graphql(name = "engagement90d")]
    async fn engagement90d(&self) -> i64 {
        self.0.engagement_90d
    }
}

/// One survey answer, with what its invitation links it to.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct FeedbackRow {
    /// The answer's id.
    pub id: i64,
    /// The customer who answered.
    pub customer_id: String,
    /// The survey answered.
    pub survey_id: i64,
    /// The campaign whose email carried the invitation.
    pub campaign_id: Option<i64>,
    /// NPS 0..10.
    pub score: i32,
    /// CSAT 1..5.
    pub csat: Option<i32>,
    /// Comment, verbatim.
    pub comment: Option<String>,
    /// First submission (UTC).
    pub answered_at: NaiveDateTime,
    /// Latest submission (UTC).
    pub updated_at: NaiveDateTime,
}

/// A customer's answer to a survey.
pub struct Feedback {
    row: FeedbackRow,
    surveys: Arc<Lazy<HashMap<i64, SurveyRow>>>,
    customers: Arc<Lazy<HashMap<String, Customer>>>,
}

#[Object]
impl Feedback {
    /// The answer's id.
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// The survey answered.
    async fn survey(&self) -> Result<Survey, ApiError> {
        let found = self.surveys.get().await?.get(&self.row.survey_id);
        found
            .map(|s| Survey(s.clone()))
            .ok_or_else(|| ApiError::internal(format!("answer {} without its survey", self.row.id)))
    }
    /// The customer who answered.
    async fn customer(&self) -> Result<Customer, ApiError> {
        let found = self.customers.get().await?.get(&self.row.customer_id);
        found.cloned().ok_or_else(|| {
            ApiError::internal(format!("answer {} without its customer", self.row.id))
        })
    }
    /// NPS answer 0..10 (0 is a valid answer: a detractor).
    async fn score(&self) -> i32 {
        self.row.score
    }
    /// CSAT answer 1..5.
    async fn csat(&self) -> Option<i32> {
        self.row.csat
    }
    /// The comment, verbatim (personal: the request is audited).
    async fn comment(&self, ctx: &Context<'_>) -> Option<&str> {
        if self.row.comment.is_some() {
            audit::note(ctx, &self.row.customer_id);
        }
        self.row.comment.as_deref()
    }
    /// First submission.
    async fn answered_at(&self) -> DateTime {
        DateTime::from_utc(self.row.answered_at)
    }
    /// Latest submission (a resubmission replaces the answer).
    async fn updated_at(&self) -> DateTime {
        DateTime::from_utc(self.row.updated_at)
    }
    /// The campaign whose email carried the invitation.
    async fn campaign_id(&self) -> Option<ID> {
        self.row.campaign_id.map(|id| ID(id.to_string()))
    }
}

/// Position in a customer's feedback (newest first).
#[derive(Debug, Serialize, Deserialize)]
struct FeedbackCursor {
    t: NaiveDateTime,
    id: i64,
}

impl FeedbackCursor {
    fn of(f: &FeedbackRow) -> FeedbackCursor {
        FeedbackCursor {
            t: f.answered_at,
            id: f.id,
        }
    }

    /// Whether `f` comes after this position (newest first, then highest id).
    fn precedes(&self, f: &FeedbackRow) -> bool {
        (f.answered_at, f.id) < (self.t, self.id)
    }
}

/// A page of one customer's feedback (all of it, loaded at once: a
/// customer answers at most once per survey).
fn feedback_page<N: OutputType>(
    all: &[FeedbackRow],
    size: usize,
    after: Option<&FeedbackCursor>,
    node: impl Fn(&FeedbackRow) -> N,
) -> Page<N> {
    let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
    let skipped = after.map_or(0, |c| all.iter().take_while(|f| !c.precedes(f)).count());
    let items = all[skipped..].iter().map(|f| {
        let cursor = pagination::encode_cursor(&FeedbackCursor::of(f));
        (cursor, node(f))
    });
    pagination::page(items, size, skipped > 0, total)
}

/// What `customers` is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
pub enum CustomerOrderField {
    /// The customer id (stable across nightly loads).
    CustomerId,
    /// 12-month CLV.
    #[graphql(name = "CLV_12M")]
    Clv12m,
    /// Churn risk.
    ChurnRisk,
    /// Loyalty index.
    LoyaltyIndex,
    /// Day of the last purchase.
    LastPurchase,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// The order of `customers` (ties broken by customer id in the same
/// direction; customers without a value last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, InputObject, Serialize, Deserialize)]
pub struct CustomerOrder {
    /// The sort field.
    pub field: CustomerOrderField,
    /// The direction.
    pub direction: Direction,
}

impl Default for CustomerOrder {
    fn default() -> CustomerOrder {
        CustomerOrder {
            field: CustomerOrderField::CustomerId,
            direction: Direction::Asc,
        }
    }
}

/// The version of the scores a listing ordered by scores was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Queryable)]
struct ScoresVersion {
    loaded_at: NaiveDateTime,
    as_of: NaiveDate,
}

/// A sort value: a number, or a day.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum SortValue {
    Number(f64),
    Day(NaiveDate),
}

/// Position in `customers`.
#[derive(Debug, Serialize, Deserialize)]
struct CustomerCursor {
    /// The order the cursor was made for.
    o: CustomerOrder,
    /// The sort value of the edge (None: no value, or ordered by id).
    v: Option<SortValue>,
    /// The customer id of the edge.
    id: String,
    /// The scores version (listings ordered by scores).
    s: Option<ScoresVersion>,
}

impl CustomerOrder {
    fn depends_on_scores(self) -> bool {
        self.field != CustomerOrderField::CustomerId
    }

    /// The sort value of a customer under this order.
    fn value_of(self, score: Option<&ScoreRow>) -> Option<SortValue> {
        let s = score?;
        match self.field {
            CustomerOrderField::CustomerId => None,
            CustomerOrderField::Clv12m => s.clv_12m.map(SortValue::Number),
            CustomerOrderField::ChurnRisk => s.churn_risk.map(SortValue::Number),
            CustomerOrderField::LoyaltyIndex => s.loyalty_index.map(SortValue::Number),
            CustomerOrderField::LastPurchase => s.last_purchase.map(SortValue::Day),
        }
    }
}

type Listing<'a> = diesel::dsl::IntoBoxed<
    'a,
    diesel::dsl::Select<
        diesel::dsl::LeftJoin<customers::table, scores::table>,
        (
            diesel::dsl::AsSelect<CustomerRow, MultiBackend>,
            diesel::dsl::AsSelect<Option<ScoreRow>, MultiBackend>,
        ),
    >,
    MultiBackend,
>;

fn customers_with_scores<'a>() -> Listing<'a> {
    customers::table
        .left_join(scores::table)
        .select((CustomerRow::as_select(), Option::<ScoreRow>::as_select()))
        .into_boxed()
}

/// The rows after position (`value`, `id`) under `order`, as one condition
/// (never NULL, so it can be negated).
fn after_position(
    order: CustomerOrder,
    value: Option<SortValue>,
    id: String,
) -> Result<Condition<CustomerSource>, ApiError> {
    let desc = order.direction == Direction::Desc;
    let id_after: Condition<CustomerSource> = if desc {
        Box::new(customers::customer_id.lt(id).nullable())
    } else {
        Box::new(customers::customer_id.gt(id).nullable())
    };
    // Values first, then the customers without one, each run by id.
    macro_rules! seek {
        ($col:expr, $v:expr) => {
            match $v {
                Some(v) => {
                    let beyond: Condition<CustomerSource> = if desc {
                        Box::new($col.lt(v))
                    } else {
                        Box::new($col.gt(v))
                    };
                    Box::new(
                        beyond
                            .or($col.eq(v).and(id_after))
                            .or($col.is_null().nullable()),
                    )
                }
                None => Box::new($col.is_null().nullable().and(id_after)),
            }
        };
    }
    let mismatch = || {
        ApiError::new(
            ErrorCode::BadUserInput,
            "after is not a cursor of this listing; pass the endCursor of a page of the same listing",
        )
    };
    let number = |v: Option<SortValue>| match v {
        None => Ok(None),
        Some(SortValue::Number(n)) => Ok(Some(n)),
        Some(SortValue::Day(_)) => Err(mismatch()),
    };
    Ok(match order.field {
        CustomerOrderField::CustomerId => id_after,
        CustomerOrderField::Clv12m => seek!(scores::clv_12m.nullable(), number(value)?),
        CustomerOrderField::ChurnRisk => seek!(scores::churn_risk.nullable(), number(value)?),
        CustomerOrderField::LoyaltyIndex => seek!(scores::loyalty_index.nullable(), number(value)?),
        CustomerOrderField::LastPurchase => {
            let day = match value {
                None => None,
                Some(SortValue::Day(d)) => Some(d),
                Some(SortValue::Number(_)) => return Err(mismatch()),
            };
            seek!(scores::last_purchase.nullable(), day)
        }
    })
}

/// `q` ordered by `order`: values first, then customers without one, ties by id.
fn ordered(q: Listing<'_>, order: CustomerOrder) -> Listing<'_> {
    let desc = order.direction == Direction::Desc;
    macro_rules! by {
        ($col:expr) => {
            if desc {
                q.order_by((
                    $col.is_null().asc(),
                    $col.desc(),
                    customers::customer_id.desc(),
                ))
            } else {
                q.order_by((
                    $col.is_null().asc(),
                    $col.asc(),
                    customers::customer_id.asc(),
                ))
            }
        };
    }
    match order.field {
        CustomerOrderField::CustomerId if desc => q.order_by(customers::customer_id.desc()),
        CustomerOrderField::CustomerId => q.order_by(customers::customer_id.asc()),
        CustomerOrderField::Clv12m => by!(scores::clv_12m.nullable()),
        CustomerOrderField::ChurnRisk => by!(scores::churn_risk.nullable()),
        CustomerOrderField::LoyaltyIndex => by!(scores::loyalty_index.nullable()),
        CustomerOrderField::LastPurchase => by!(scores::last_purchase.nullable()),
    }
}

/// The version of the scores: the stamp and `as_of` of the latest score write.
fn scores_version(c: &mut DbConnection) -> Result<Option<ScoresVersion>, DbError> {
    scores::table
        .order((scores::loaded_at.desc(), scores::as_of.desc()))
        .select((scores::loaded_at, scores::as_of))
        .first::<ScoresVersion>(c)
        .optional()
        .map_err(DbError::query("scores", "select version"))
}

/// One page of `customers`: rows (up to `size + 1`), whether rows precede
/// the cursor, and the scores version of the new cursors.
struct CustomerPage {
    rows: Vec<(CustomerRow, Option<ScoreRow>)>,
    has_previous: bool,
    version: Option<ScoresVersion>,
}

/// Why a page cannot be read: the database, or a cursor the scores outdated.
enum PageError {
    Db(DbError),
    Stale(ApiError),
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> PageError {
        PageError::Db(e)
    }
}

/// How many customers `filter` matches.
fn count_customers(c: &mut DbConnection, filter: &CustomerFilter) -> Result<i64, DbError> {
    customers::table
        .left_join(scores::table)
        .filter(filter.condition::<CustomerSource>())
        .count()
        .get_result::<i64>(c)
        .map_err(DbError::query("customers", "count"))
}

fn customer_page(
    c: &mut DbConnection,
    filter: &CustomerFilter,
    order: CustomerOrder,
    after: Option<CustomerCursor>,
    size: usize,
) -> Result<CustomerPage, PageError> {
    // The version is read before the rows: a load committing in between
    // makes the next page's check fail (safe), never pass on changed rows.
    let version = if order.depends_on_scores() {
        scores_version(c)?
    } else {
        None
    };
    if let Some(cur) = &after
        && order.depends_on_scores()
        && cur.s != version
    {
        return Err(PageError::Stale(stale(cur.s, version)));
    }
    let mut q = customers_with_scores().filter(filter.condition::<CustomerSource>());
    let mut has_previous = false;
    if let Some(cur) = after {
        let before = customers::table
            .left_join(scores::table)
            .filter(filter.condition::<CustomerSource>())
            .filter(diesel::dsl::not(
                after_position(order, cur.v, cur.id.clone()).map_err(PageError::Stale)?,
            ))
            .select(customers::customer_id)
            .first::<String>(c)
            .optional()
            .map_err(DbError::query("customers", "select"))?;
        has_previous = before.is_some();
        q = q.filter(after_position(order, cur.v, cur.id).map_err(PageError::Stale)?);
    }
    let limit = i64::try_from(size + 1).unwrap_or(i64::MAX);
    let rows = ordered(q, order)
        .limit(limit)
        .load(c)
        .map_err(DbError::query("customers", "select page"))?;
    Ok(CustomerPage {
        rows,
        has_previous,
        version,
    })
}

/// The error of a cursor made on other scores.
fn stale(made_on: Option<ScoresVersion>, now: Option<ScoresVersion>) -> ApiError {
    let describe = |v: Option<ScoresVersion>| match v {
        Some(v) => format!("scores as of {} loaded at {}", v.as_of, v.loaded_at),
        None => "no scores".to_string(),
    };
    ApiError::new(
        ErrorCode::BadUserInput,
        format!(
            "the scores changed since this listing started ({} then, {} now): its order is no longer the same; restart the listing without after",
            describe(made_on),
            describe(now)
        ),
    )
}

/// Customer queries.
#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    /// One customer by id (null when there is none).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let found = customers_by_id(&api(ctx)?.db, vec![id.0.clone()]);
        Ok(found.get().await?.get(id.as_str()).cloned())
    }

    /// Customers matching `filter` (default: active ones), in `orderBy`
    /// order (default: by id), a page of `first` (default 50, at most 500)
    /// after the cursor `after`. Listings ordered by scores must restart
    /// when a nightly load changes the scores (BAD_USER_INPUT).
    #[graphql(
        guard = "RoleGuard::new(Role::Viewer)",
        complexity = "crate::graphql::list_cost(first, child_complexity)"
    )]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        order_by: Option<CustomerOrder>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Page<Customer>> {
        let filter = filter.unwrap_or_default();
        filter.validate()?;
        let order = order_by.unwrap_or_default();
        let (size, after) = pagination::arguments::<CustomerCursor>(first, after.as_deref())?;
        if let Some(cur) = &after
            && cur.o != order
        {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                "after is a cursor of a listing in another order; pass the same orderBy as the page it came from",
            )
            .into());
        }
        let counted = filter.clone();
        let total = Lazy::new(&api(ctx)?.db, move |c| count_customers(c, &counted));
        let page = db::run(&api(ctx)?.db, move |c| {
            Ok(customer_page(c, &filter, order, after, size))
        })
        .await?;
        let page = match page {
            Ok(p) => p,
            Err(PageError::Stale(e)) => return Err(e.into()),
            Err(PageError::Db(e)) => return Err(ApiError::from(e).into()),
        };
        let version = page.version;
        let ids = page.rows.iter().take(size).map(|r| r.0.customer_id.clone());
        let related = related_of(&api(ctx)?.db, ids.collect());
        let items = page.rows.into_iter().map(|r| {
            let cursor = CustomerCursor {
                o: order,
                v: order.value_of(r.1.as_ref()),
                id: r.0.customer_id.clone(),
                s: version,
            };
            (
                pagination::encode_cursor(&cursor),
                Customer::new(r, &related),
            )
        });
        Ok(pagination::page(
            items,
            size,
            page.has_previous,
            Totals::OnRequest(total),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: i64, day: u32) -> FeedbackRow {
        let at = NaiveDate::from_ymd_opt(2024, 3, day)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .unwrap_or_default();
        FeedbackRow {
            id,
            customer_id: "c1".into(),
            survey_id: 1,
            campaign_id: None,
            score: 0,
            csat: None,
            comment: None,
            answered_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn feedback_pages_follow_their_cursor_without_gaps_or_repeats() {
        // Newest first; two answers share a time and are ordered by id.
        let all = vec![answer(4, 9), answer(3, 5), answer(2, 5), answer(1, 1)];
        let first = feedback_page(&all, 2, None, |f| f.id);
        let ids = |p: &Page<i64>| p.edges.iter().map(|e| e.node).collect::<Vec<_>>();
        assert_eq!(ids(&first), [4, 3]);
        assert!(first.has_next_page && !first.has_previous_page);
        let end = first
            .edges
            .last()
            .map(|e| e.cursor.clone())
            .unwrap_or_default();
        let cursor: FeedbackCursor = pagination::decode_cursor(&end).unwrap_or(FeedbackCursor {
            t: NaiveDateTime::default(),
            id: 0,
        });
        let second = feedback_page(&all, 2, Some(&cursor), |f| f.id);
        assert_eq!(ids(&second), [2, 1]);
        assert!(!second.has_next_page && second.has_previous_page);
        assert!(matches!(second.additional_fields, Totals::Known(4)));
    }

    #[test]
    fn cursors_of_scores_orders_carry_their_sort_value() {
        let order = CustomerOrder {
            field: CustomerOrderField::LastPurchase,
            direction: Direction::Desc,
        };
        let c = CustomerCursor {
            o: order,
            v: NaiveDate::from_ymd_opt(2024, 2, 29).map(SortValue::Day),
            id: "c9".into(),
            s: None,
        };
        let back: CustomerCursor = pagination::decode_cursor(&pagination::encode_cursor(&c))
            .unwrap_or(CustomerCursor {
                o: CustomerOrder::default(),
                v: None,
                id: String::new(),
                s: None,
            });
        assert_eq!((back.o, back.v, back.id), (order, c.v, c.id));
    }
}
