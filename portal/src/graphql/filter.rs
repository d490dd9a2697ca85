//! The contract's `CustomerFilter` and the enums it filters by, and the one
//! translation of a filter into SQL ([`CustomerFilter::condition`]), shared
//! by every query that selects customers (`customers`, `groups`,
//! `npsSummary`, and invitations and campaigns built on them).
//!
//! Enum values map to the texts the scoring writes (`at_risk` is
//! `AT_RISK`). `ValueTier.NONE` matches the tier `none` (prospects) and
//! customers without a tier or without scores, like the `NONE` key of
//! `groups`. `search` is a substring of the id, email, first, last or full
//! name, compared in lower case (SQLite lowers ASCII letters only).

use async_graphql::{Enum, InputObject};
use cvm_shared::db::connection::MultiBackend;
use cvm_shared::db::schema::{answers, customers, invitations, scores};
use cvm_shared::db::{DbConnection, DbError};
use diesel::dsl::{InnerJoin, InnerJoinQuerySource, LeftJoin, LeftJoinQuerySource};
use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};

use super::errors::{ApiError, ErrorCode};

/// Longest `search` text, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// The segment names of scoring.md (`rfm_segment`), in its order.
pub const RFM_SEGMENTS: [&str; 11] = [
    "Champions",
    "Loyal Customers",
    "Potential Loyalists",
    "New Customers",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "Cannot Lose Them",
    "At Risk",
    "Hibernating",
    "Prospect",
];

/// Declares a GraphQL enum over a text column of `scores`, with its stored text.
macro_rules! score_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            /// The text the scoring stores.
            pub fn db_text(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value of a stored text (None for a text this binary does not know).
            pub fn from_db(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

score_enum! {
    /// Where a customer is in its lifecycle (scoring.md).
    LifecycleStage {
        /// No purchase yet.
        Prospect = "prospect",
        /// One purchase, recent.
        New = "new",
        /// Buying, neither loyal nor at risk.
        Active = "active",
        /// Three or more orders and likely alive.
        Loyal = "loyal",
        /// P(alive) below 0.5.
        AtRisk = "at_risk",
        /// P(alive) below 0.2.
        Churned = "churned",
    }
}

score_enum! {
    /// The customer's value tier by 12-month CLV (scoring.md).
    ValueTier {
        /// Top 20% of purchasers.
        High = "high",
        /// Next 30%.
        Medium = "medium",
        /// The rest of the purchasers.
        Low = "low",
        /// Prospects (and, in filters and groups, customers without a tier).
        None = "none",
    }
}

score_enum! {
    /// The class of the customer's latest NPS answer.
    NpsClass {
        /// 9 or 10.
        Promoter = "promoter",
        /// 7 or 8.
        Passive = "passive",
        /// 0 to 6.
        Detractor = "detractor",
    }
}

/// Which customers a query selects; every given condition must hold.
/// Campaigns store it as JSON (their audience).
#[derive(Debug, Clone, PartialEq, InputObject, serde::Serialize, serde::Deserialize)]
pub struct CustomerFilter {
    /// Any of these RFM segment names (scoring.md), e.g. "At Risk".
    pub rfm_segment: Option<Vec<String>>,
    /// Any of these lifecycle stages.
    pub lifecycle_stage: Option<Vec<LifecycleStage>>,
    /// Any of these value tiers (NONE: prospects and customers without a tier).
    pub value_tier: Option<Vec<ValueTier>>,
    /// Any of these NPS classes (of the latest answer, as of the last scoring).
    pub nps_class: Option<Vec<NpsClass>>,
    /// Churn risk at least this.
    pub min_churn_risk: Option<f64>,
    /// Churn risk at most this.
    pub max_churn_risk: Option<f64>,
    /// 12-month CLV at least this.
    #[graphql(name = "minClv12m")]
    pub min_clv12m: Option<f64>,
    /// 12-month CLV at most this.
    #[graphql(name = "maxClv12m")]
    pub max_clv12m: Option<f64>,
    /// Marketing email consent.
    pub email_opt_in: Option<bool>,
    /// Still in the warehouse (default true; null: active and inactive).
    #[graphql(default_with = "Some(true)")]
    pub active: Option<bool>,
    /// A case-insensitive substring of the id, email, or first, last or full name.
    pub search: Option<String>,
}

impl Default for CustomerFilter {
    /// The filter of an omitted argument: active customers.
    fn default() -> CustomerFilter {
        CustomerFilter {
            rfm_segment: None,
            lifecycle_stage: None,
            value_tier: None,
            nps_class: None,
            min_churn_risk: None,
            max_churn_risk: None,
            min_clv12m: None,
            max_clv12m: None,
            email_opt_in: None,
            active: Some(true),
            search: None,
        }
    }
}

/// A boolean SQL condition over a query source that holds `customers` and `scores`.
pub type Condition<QS> = Box<dyn BoxableExpression<QS, MultiBackend, SqlType = Nullable<Bool>>>;

diesel::define_sql_function! {
    /// SQL `lower`.
    fn lower(x: Nullable<Text>) -> Nullable<Text>;
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadUserInput, message)
}

/// Checks that `min..=max` is a range (`name` is the field without its prefix).
fn range(name: &str, min: Option<f64>, max: Option<f64>) -> Result<(), ApiError> {
    match (min, max) {
        (Some(lo), Some(hi)) if lo > hi => Err(bad(format!(
            "filter.min{name} ({lo}) is greater than filter.max{name} ({hi}); swap them"
        ))),
        _ => Ok(()),
    }
}

/// `text` as a LIKE pattern matching it as a substring, lower-cased, `\` escaping.
fn substring_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

impl CustomerFilter {
    /// Checks the values a type cannot: known segment names, ranges, search length.
    pub fn validate(&self) -> Result<(), ApiError> {
        for s in self.rfm_segment.iter().flatten() {
            if !RFM_SEGMENTS.contains(&s.as_str()) {
                return Err(bad(format!(
                    "filter.rfmSegment: unknown segment {s:?}; the segments are {}",
                    RFM_SEGMENTS.join(", ")
                )));
            }
        }
        range("ChurnRisk", self.min_churn_risk, self.max_churn_risk)?;
        range("Clv12m", self.min_clv12m, self.max_clv12m)?;
        if let Some(s) = &self.search {
            let n = s.chars().count();
            if n > MAX_SEARCH_CHARS {
                return Err(bad(format!(
                    "filter.search has {n} characters; at most {MAX_SEARCH_CHARS} are allowed"
                )));
            }
        }
        Ok(())
    }

    /// The filter as one SQL condition over `QS` (a query source holding
    /// customers left-joined to their scores). Call [`Self::validate`] first.
    pub fn condition<QS: FilterSource>(&self) -> Condition<QS> {
        QS::condition(self)
    }
}

/// A query source [`CustomerFilter::condition`] can filter: one holding
/// `customers` left-joined to `scores` (see [`filter_source!`]).
pub trait FilterSource: Sized {
    /// The filter's condition over this source.
    fn condition(filter: &CustomerFilter) -> Condition<Self>;
}

/// Implements [`FilterSource`] for a concrete query source. Each source
/// gets its own copy of one body, type-checked against it.
macro_rules! filter_source {
    ($source:ty) => {
        impl FilterSource for $source {
            fn condition(f: &CustomerFilter) -> Condition<Self> {
                let mut all: Vec<Condition<Self>> = Vec::new();
                if let Some(active) = f.active {
                    all.push(Box::new(customers::active.eq(active).nullable()));
                }
                if let Some(opt_in) = f.email_opt_in {
                    all.push(Box::new(customers::email_opt_in.eq(opt_in).nullable()));
                }
                if let Some(names) = &f.rfm_segment {
                    all.push(Box::new(
                        scores::rfm_segment.nullable().eq_any(names.clone()),
                    ));
                }
                if let Some(stages) = &f.lifecycle_stage {
                    let texts: Vec<&'static str> = stages.iter().map(|s| s.db_text()).collect();
                    all.push(Box::new(scores::lifecycle_stage.nullable().eq_any(texts)));
                }
                if let Some(tiers) = &f.value_tier {
                    let texts: Vec<&'static str> = tiers.iter().map(|t| t.db_text()).collect();
                    let c = scores::value_tier.nullable().eq_any(texts);
                    if tiers.contains(&ValueTier::None) {
                        all.push(Box::new(c.or(scores::value_tier.nullable().is_null())));
                    } else {
                        all.push(Box::new(c));
                    }
                }
                if let Some(classes) = &f.nps_class {
                    let texts: Vec<&'static str> = classes.iter().map(|c| c.db_text()).collect();
                    all.push(Box::new(scores::nps_class.nullable().eq_any(texts)));
                }
                if let Some(v) = f.min_churn_risk {
                    all.push(Box::new(scores::churn_risk.nullable().ge(v)));
                }
                if let Some(v) = f.max_churn_risk {
                    all.push(Box::new(scores::churn_risk.nullable().le(v)));
                }
                if let Some(v) = f.min_clv12m {
                    all.push(Box::new(scores::clv_12m.nullable().ge(v)));
                }
                if let Some(v) = f.max_clv12m {
                    all.push(Box::new(scores::clv_12m.nullable().le(v)));
                }
                if let Some(s) = f.search.as_deref().filter(|s| !s.is_empty()) {
                    let p = substring_pattern(s);
                    let full_name = customers::first_name
                        .concat(" ")
                        .concat(customers::last_name);
                    all.push(Box::new(
                        lower(customers::customer_id.nullable())
                            .like(p.clone())
                            .escape('\\')
                            .or(lower(customers::email).like(p.clone()).escape('\\'))
                            .or(lower(customers::first_name).like(p.clone()).escape('\\'))
                            .or(lower(customers::last_name).like(p.clone()).escape('\\'))
                            .or(lower(full_name).like(p).escape('\\')),
                    ));
                }
                all.into_iter()
                    .reduce(|a, b| Box::new(a.and(b)))
                    .unwrap_or_else(|| Box::new(diesel::dsl::sql::<Bool>("1 = 1").nullable()))
            }
        }
    };
}

/// Customers left-joined to their scores (`customers`, `groups`, invitations).
pub type CustomerSource = LeftJoinQuerySource<customers::table, scores::table>;

/// Answers with their invitation, customer and scores (`npsSummary`, `npsTrend`).
pub type AnswerSource = InnerJoinQuerySource<
    answers::table,
    InnerJoin<invitations::table, LeftJoin<customers::table, scores::table>>,
>;

filter_source!(CustomerSource);
filter_source!(AnswerSource);

/// The ids of every customer `filter` matches, by id. Call
/// [`CustomerFilter::validate`] first.
pub fn matching_customer_ids(
    conn: &mut DbConnection,
    filter: &CustomerFilter,
) -> Result<Vec<String>, DbError> {
    customers::table
        .left_join(scores::table)
        .filter(filter.condition::<CustomerSource>())
        .select(customers::customer_id)
        .order(customers::customer_id.asc())
        .load::<String>(conn)
        .map_err(DbError::query("customers", "select filtered"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_match_like_metacharacters_literally() {
        assert_eq!(substring_pattern("Ab_c%"), r"%ab\_c\%%");
        assert_eq!(substring_pattern(r"a\b"), r"%a\\b%");
    }

    #[test]
    fn unknown_segments_and_inverted_ranges_are_refused_with_the_field() {
        let f = CustomerFilter {
            rfm_segment: Some(vec!["At risk".into()]),
            ..CustomerFilter::default()
        };
        let e = f.validate().err().map(|e| (e.code, e.message));
        assert!(
            matches!(&e, Some((ErrorCode::BadUserInput, m)) if m.contains("\"At risk\"") && m.contains("At Risk")),
            "{e:?}"
        );
        let f = CustomerFilter {
            min_clv12m: Some(10.0),
            max_clv12m: Some(1.0),
            ..CustomerFilter::default()
        };
        let e = f.validate().err().map(|e| e.message);
        assert!(
            e.is_some_and(|m| m.contains("filter.minClv12m")),
            "inverted range accepted"
        );
    }

    #[test]
    fn stored_texts_round_trip_for_every_enum_value() {
        use async_graphql::resolver_utils::EnumType;
        for v in LifecycleStage::items() {
            assert_eq!(LifecycleStage::from_db(v.value.db_text()), Some(v.value));
        }
        for v in ValueTier::items() {
            assert_eq!(ValueTier::from_db(v.value.db_text()), Some(v.value));
        }
        for v in NpsClass::items() {
            assert_eq!(NpsClass::from_db(v.value.db_text()), Some(v.value));
        }
        assert_eq!(LifecycleStage::AtRisk.db_text(), "at_risk");
    }
}
