//! `groups(by, filter)`: customers counted per segment, lifecycle stage,
//! value tier or NPS class, with their CLV and churn risk, in one grouped
//! query. Keys are the segment name for `RFM_SEGMENT` and the enum value
//! (`AT_RISK`) for the others; `NONE` gathers the customers without a value
//! (never scored, no model value, or the tier `none`). Groups are sorted by key.

use std::collections::BTreeMap;

use async_graphql::{Context, Enum, Object, SimpleObject};
use cvm_shared::db::DbError;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::schema::{customers, scores};
use diesel::dsl::{count, count_star, sum};
use diesel::prelude::*;

use super::api;
use super::filter::{CustomerFilter, CustomerSource};
use crate::auth::RoleGuard;
use crate::db;

/// A customer attribute to group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Dimension {
    /// The RFM segment name.
    RfmSegment,
    /// The lifecycle stage.
    LifecycleStage,
    /// The value tier.
    ValueTier,
    /// The class of the latest NPS answer.
    NpsClass,
}

/// The key of a group: the segment name, or the stored text in upper case
/// (`at_risk` is `AT_RISK`); `NONE` without a value.
pub fn group_key(by: Dimension, value: Option<&str>) -> String {
    match value {
        None => "NONE".to_string(),
        Some(v) if by == Dimension::RfmSegment => v.to_string(),
        Some(v) => v.to_ascii_uppercase(),
    }
}

/// The customers of one group.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct GroupStats {
    /// The group's key.
    pub key: String,
    /// Number of customers.
    pub customers: i64,
    /// Mean 12-month CLV of the customers that have one (null: none has).
    #[graphql(name = "avgClv12m")]
    pub avg_clv12m: Option<f64>,
    /// Sum of the 12-month CLVs (null: none has one).
    #[graphql(name = "totalClv12m")]
    pub total_clv12m: Option<f64>,
    /// Mean churn risk of the customers that have one (null: none has).
    pub avg_churn_risk: Option<f64>,
}

/// One row of the grouped query: the value, customers, then count and sum
/// of CLV and of churn risk.
type GroupRow = (Option<String>, i64, i64, Option<f64>, i64, Option<f64>);

#[derive(Default)]
struct Sums {
    customers: i64,
    clv_n: i64,
    clv_sum: f64,
    churn_n: i64,
    churn_sum: f64,
}

/// Folds grouped rows into the contract's groups (values sharing a key,
/// such as the tier `none` and no tier, are added up).
fn fold(by: Dimension, rows: Vec<GroupRow>) -> Vec<GroupStats> {
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    for (value, n, clv_n, clv_sum, churn_n, churn_sum) in rows {
        let g = groups.entry(group_key(by, value.as_deref())).or_default();
        g.customers += n;
        g.clv_n += clv_n;
        g.clv_sum += clv_sum.unwrap_or(0.0);
        g.churn_n += churn_n;
        g.churn_sum += churn_sum.unwrap_or(0.0);
    }
    let mean = |sum: f64, n: i64| (n > 0).then(|| sum / n as f64);
    groups
        .into_iter()
        .map(|(key, g)| GroupStats {
            key,
            customers: g.customers,
            avg_clv12m: mean(g.clv_sum, g.clv_n),
            total_clv12m: (g.clv_n > 0).then_some(g.clv_sum),
            avg_churn_risk: mean(g.churn_sum, g.churn_n),
        })
        .collect()
}

/// Group queries.
#[derive(Default)]
pub struct GroupQuery;

#[Object]
impl GroupQuery {
    /// Customers matching `filter` (default: active ones) per value of `by`, sorted by key.
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn groups(
        &self,
        ctx: &Context<'_>,
        by: Dimension,
        filter: Option<CustomerFilter>,
    ) -> async_graphql::Result<Vec<GroupStats>> {
        let filter = filter.unwrap_or_default();
        filter.validate()?;
        let rows = db::run(&api(ctx)?.db, move |c| {
            macro_rules! grouped {
                ($col:expr) => {
                    customers::table
                        .left_join(scores::table)
                        .filter(filter.condition::<CustomerSource>())
                        .group_by($col)
                        .select((
                            $col.nullable(),
                            count_star(),
                            count(scores::clv_12m.nullable()),
                            sum(scores::clv_12m.nullable()),
                            count(scores::churn_risk.nullable()),
                            sum(scores::churn_risk.nullable()),
                        ))
                        .load::<GroupRow>(c)
                };
            }
            match by {
                Dimension::RfmSegment => grouped!(scores::rfm_segment),
                Dimension::LifecycleStage => grouped!(scores::lifecycle_stage),
                Dimension::ValueTier => grouped!(scores::value_tier),
                Dimension::NpsClass => grouped!(scores::nps_class),
            }
            .map_err(DbError::query("customers", "select groups"))
        })
        .await?;
        Ok(fold(by, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_none_and_no_tier_are_one_group_and_means_skip_missing_values() {
        let rows = vec![
            (Some("none".to_string()), 2, 0, None, 1, Some(0.5)),
            (None, 3, 1, Some(10.0), 2, Some(1.0)),
            (Some("high".to_string()), 1, 1, Some(100.0), 1, Some(0.25)),
        ];
        assert_eq!(
            fold(Dimension::ValueTier, rows),
            [
                GroupStats {
                    key: "HIGH".into(),
                    customers: 1,
                    avg_clv12m: Some(100.0),
                    total_clv12m: Some(100.0),
                    avg_churn_risk: Some(0.25)
                },
                GroupStats {
                    key: "NONE".into(),
                    customers: 5,
                    avg_clv12m: Some(10.0),
                    total_clv12m: Some(10.0),
                    avg_churn_risk: Some(0.5)
                },
            ]
        );
    }

    #[test]
    fn segment_keys_keep_their_name_and_other_keys_are_enum_values() {
        assert_eq!(group_key(Dimension::RfmSegment, Some("At Risk")), "At Risk");
        assert_eq!(
            group_key(Dimension::LifecycleStage, Some("at_risk")),
            "AT_RISK"
        );
        assert_eq!(group_key(Dimension::NpsClass, None), "NONE");
    }
}
