//! `CustomerFilter`: the contract's customer selection, shared by every field
//! that takes one (`createInvitations` here; `customers`, `groups` and
//! `npsSummary` read the same input). [`apply_filter!`] narrows any boxed
//! query over `customers LEFT JOIN scores`, so the selection is written once.

use async_graphql::{Enum, InputObject, MaybeUndefined};
use cvm_shared::db::schema::{customers, scores};
use cvm_shared::db::{DbConnection, DbError};
use diesel::prelude::*;

use super::errors::{ApiError, ErrorCode};

/// Longest `search` text, in characters.
const MAX_SEARCH_CHARS: usize = 200;

/// Declares a GraphQL enum whose values are stored as lowercase text
/// (`AT_RISK` is `at_risk` in `scores`, as `scoring.md` writes them).
macro_rules! stored_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl $name {
            /// The value as the `scores` table stores it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }
    };
}

stored_enum! {
    /// Where a customer is in its lifecycle (`scoring.md`).
    LifecycleStage {
        /// No purchase yet.
        Prospect = "prospect",
        /// One purchase, within the last 90 days.
        New = "new",
        /// Buying, none of the other stages.
        Active = "active",
        /// Three or more orders and likely alive.
        Loyal = "loyal",
        /// Likely to be lost.
        AtRisk = "at_risk",
        /// Most likely lost.
        Churned = "churned",
    }
}

stored_enum! {
    /// A customer's value tier by 12-month CLV (`scoring.md`).
    ValueTier {
        /// Top 20% of purchasers.
        High = "high",
        /// Next 30%.
        Medium = "medium",
        /// The rest of the purchasers.
        Low = "low",
        /// Prospects.
        None = "none",
    }
}

stored_enum! {
    /// A customer's class by its latest NPS answer.
    NpsClass {
        /// 9 or 10.
        Promoter = "promoter",
        /// 7 or 8.
        Passive = "passive",
        /// 0 to 6.
        Detractor = "detractor",
    }
}

/// Which customers: every given criterion must hold (lists: any of their
/// values). Criteria on scores leave out customers never scored.
#[derive(Debug, Clone, Default, InputObject)]
pub struct CustomerFilter {
    /// RFM segment names (`scoring.md`), e.g. "At Risk".
    pub rfm_segment: Option<Vec<String>>,
    /// Lifecycle stages.
    pub lifecycle_stage: Option<Vec<LifecycleStage>>,
    /// Value tiers.
    pub value_tier: Option<Vec<ValueTier>>,
    /// NPS classes.
    pub nps_class: Option<Vec<NpsClass>>,
    /// Lowest churn risk (inclusive).
    pub min_churn_risk: Option<f64>,
    /// Highest churn risk (inclusive).
    pub max_churn_risk: Option<f64>,
    /// Lowest 12-month CLV (inclusive).
    #[graphql(name = "minClv12m")]
    pub min_clv_12m: Option<f64>,
    /// Highest 12-month CLV (inclusive).
    #[graphql(name = "maxClv12m")]
    pub max_clv_12m: Option<f64>,
    /// Marketing email consent.
    pub email_opt_in: Option<bool>,
    /// Active customers (still in the warehouse); default true, null: all.
    pub active: MaybeUndefined<bool>,
    /// Case-insensitive substring of the id, email or name (at most 200 characters).
    pub search: Option<String>,
}

impl CustomerFilter {
    /// Checks the input: a `search` of sensible length.
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(s) = &self.search {
            let n = s.chars().count();
            if n > MAX_SEARCH_CHARS {
                return Err(ApiError::new(
                    ErrorCode::BadUserInput,
                    format!(
                        "filter.search has {n} characters; at most {MAX_SEARCH_CHARS} are allowed"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `active` criterion: true when not given, none when given as null.
    pub fn active(&self) -> Option<bool> {
        match self.active {
            MaybeUndefined::Undefined => Some(true),
            MaybeUndefined::Null => None,
            MaybeUndefined::Value(v) => Some(v),
        }
    }

    /// The `LIKE` pattern of `search`: its text anywhere, `%`, `_` and `\`
    /// taken literally (escaped with `\`).
    pub fn search_pattern(&self) -> Option<String> {
        self.search.as_ref().map(|s| {
            let mut p = String::with_capacity(s.len() + 2);
            p.push('%');
            for ch in s.chars() {
                if matches!(ch, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(ch);
            }
            p.push('%');
            p
        })
    }
}

diesel::define_sql_function! {
    /// SQL `lower()`: ASCII letters on SQLite, all letters on PostgreSQL.
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// Narrows `$query`, a boxed query over `customers LEFT JOIN scores`, to the
/// customers `$filter` (a `&CustomerFilter`) matches. A macro, not a
/// function: each backend's boxed query is its own type (see `with_backend!`).
#[macro_export]
macro_rules! apply_filter {
    ($query:expr, $filter:expr) => {{
        use cvm_shared::db::schema::{customers, scores};
        use $crate::graphql::filter::lower;
        let f: &$crate::graphql::filter::CustomerFilter = $filter;
        let mut q = $query;
        if let Some(v) = &f.rfm_segment {
            q = q.filter(scores::rfm_segment.nullable().eq_any(v.clone()));
        }
        if let Some(v) = &f.lifecycle_stage {
            let v: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
            q = q.filter(scores::lifecycle_stage.eq_any(v));
        }
        if let Some(v) = &f.value_tier {
            let v: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
            q = q.filter(scores::value_tier.eq_any(v));
        }
        if let Some(v) = &f.nps_class {
            let v: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
            q = q.filter(scores::nps_class.eq_any(v));
        }
        if let Some(x) = f.min_churn_risk {
            q = q.filter(scores::churn_risk.ge(x));
        }
        if let Some(x) = f.max_churn_risk {
            q = q.filter(scores::churn_risk.le(x));
        }
        if let Some(x) = f.min_clv_12m {
            q = q.filter(scores::clv_12m.ge(x));
        }
        if let Some(x) = f.max_clv_12m {
            q = q.filter(scores::clv_12m.le(x));
        }
        if let Some(b) = f.email_opt_in {
            q = q.filter(customers::email_opt_in.eq(b));
        }
        if let Some(b) = f.active() {
            q = q.filter(customers::active.eq(b));
        }
        if let Some(p) = f.search_pattern() {
            let full_name = customers::first_name
                .concat(" ")
                .concat(customers::last_name);
            q = q.filter(
                lower(customers::customer_id.nullable())
                    .like(lower(p.clone()))
                    .escape('\\')
                    .or(lower(customers::email).like(lower(p.clone())).escape('\\'))
                    .or(lower(full_name).like(lower(p.clone())).escape('\\'))
                    .or(lower(customers::first_name)
                        .like(lower(p.clone()))
                        .escape('\\'))
                    .or(lower(customers::last_name).like(lower(p)).escape('\\')),
            );
        }
        q
    }};
}

/// The ids of every customer `filter` matches, by id.
pub fn matching_customer_ids(
    conn: &mut DbConnection,
    filter: &CustomerFilter,
) -> Result<Vec<String>, DbError> {
    cvm_shared::with_backend!(conn, c => {
        let q = customers::table
            .left_join(scores::table)
            .select(customers::customer_id)
            .order(customers::customer_id.asc())
            .into_boxed();
        crate::apply_filter!(q, filter).load::<String>(c)
    })
    .map_err(DbError::query("customers", "select filtered"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_take_wildcards_literally() {
        let f = CustomerFilter {
            search: Some(r"50%_off\".into()),
            ..Default::default()
        };
        assert_eq!(f.search_pattern().as_deref(), Some(r"%50\%\_off\\%"));
    }

    #[test]
    fn active_defaults_to_true_and_null_means_all() {
        let mut f = CustomerFilter::default();
        assert_eq!(f.active(), Some(true));
        f.active = MaybeUndefined::Null;
        assert_eq!(f.active(), None);
        f.active = MaybeUndefined::Value(false);
        assert_eq!(f.active(), Some(false));
    }

    #[test]
    fn stored_values_are_scoring_md_s() {
        assert_eq!(LifecycleStage::AtRisk.as_str(), "at_risk");
        assert_eq!(ValueTier::None.as_str(), "none");
        assert_eq!(NpsClass::Detractor.as_str(), "detractor");
    }
}
