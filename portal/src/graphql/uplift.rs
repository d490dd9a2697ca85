//! `campaignUplift`: did the campaign change behaviour? Treated recipients
//! (messages SENT) are compared with the control group (held out by a
//! seeded draw when the audience was frozen) on what the nightly scores
//! know: each customer's change since the freeze in purchases (`orders`),
//! revenue (`total_revenue`) and `p_alive`, and whether they answered a
//! survey within `days` of the start. Each metric is the difference of the
//! groups' means with a 95% Welch confidence interval (unequal variances;
//! null when a group has fewer than two customers).
//!
//! The portal keeps each customer's latest scores only, so the score
//! metrics cover the freeze up to the latest nightly run: `days` is the
//! least window asked for (an error until the scores reach that far), and
//! `Uplift.days` is the window the scores actually cover.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::NaiveDateTime;
use cvm_shared::db::DbError;
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::campaigns;
use cvm_shared::db::models::outbox::RecipientStatus;
use diesel::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::HashSet;

use super::api;
use super::campaigns::{bad, no_campaign};
use super::invitations::parse_id;
use crate::auth::RoleGuard;
use crate::db;

/// One metric compared between the groups.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct UpliftMetric {
    /// `purchases`, `revenue`, `p_alive_change` or `survey_answer_rate`.
    pub metric: String,
    /// Mean over the treated customers.
    pub treated: f64,
    /// Mean over the control group.
    pub control: f64,
    /// treated − control.
    pub difference: f64,
    /// Lower end of the difference's 95% confidence interval.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
}

/// A campaign's measured effect.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct Uplift {
    /// Customers who were sent the message.
    pub treated: i64,
    /// Customers held out.
    pub control: i64,
    /// Days from the start the comparison covers (the latest scores' date).
    pub days: i32,
    /// Each metric.
    pub metrics: Vec<UpliftMetric>,
}

/// Mean and sample variance of `xs`.
fn moments(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() < 2 {
        0.0
    } else {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    };
    (mean, var)
}

/// Compares `treated` with `control`: means, difference, 95% Welch interval.
pub fn compare(metric: &str, treated: &[f64], control: &[f64]) -> UpliftMetric {
    let (m1, v1) = moments(treated);
    let (m2, v2) = moments(control);
    let difference = m1 - m2;
    let (n1, n2) = (treated.len() as f64, control.len() as f64);
    let (mut ci_low, mut ci_high) = (None, None);
    if treated.len() >= 2 && control.len() >= 2 {
        let (a, b) = (v1 / n1, v2 / n2);
        let se = (a + b).sqrt();
        if se == 0.0 {
            (ci_low, ci_high) = (Some(difference), Some(difference));
        } else {
            let df = (a + b).powi(2) / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
            if let Ok(t) = StudentsT::new(0.0, 1.0, df) {
                let q = t.inverse_cdf(0.975);
                (ci_low, ci_high) = (Some(difference - q * se), Some(difference + q * se));
            }
        }
    }
    UpliftMetric {
        metric: metric.to_string(),
        treated: m1,
        control: m2,
        difference,
        ci_low,
        ci_high,
    }
}

/// A treated or control customer: their baseline when the audience was
/// frozen and their latest scores.
#[derive(Debug, Clone, Queryable)]
struct Member {
    status: RecipientStatus,
    customer_id: String,
    base_orders: Option<i64>,
    base_revenue: Option<f64>,
    base_p_alive: Option<f64>,
    orders: Option<i64>,
    revenue: Option<String>,
    p_alive: Option<f64>,
}

/// Campaign uplift queries.
#[derive(Default)]
pub struct UpliftQuery;

#[Object]
impl UpliftQuery {
    /// Treated against control on purchases, revenue, change in p_alive and
    /// survey answers since the campaign started (at least `days` days of
    /// nightly scores needed). Viewer.
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn campaign_uplift(
        &self,
        ctx: &Context<'_>,
        id: ID,
        days: i32,
    ) -> async_graphql::Result<Uplift> {
        if !(1..=3650).contains(&days) {
            return Err(bad("days must be between 1 and 3650").into());
        }
        let Some(n) = parse_id(&id) else {
            return Err(no_campaign(&id).into());
        };
        let api = api(ctx)?;
        let loaded = db::run(&api.db, move |c| {
            let Some(campaign) = campaigns::find(c, n)? else {
                return Ok(None);
            };
            let Some(started) = campaign.started_at else {
                return Ok(Some(Err("it has not started sending".to_string())));
            };
            let latest: Option<chrono::NaiveDate> = {
                use cvm_shared::db::schema::scores;
                scores::table
                    .select(diesel::dsl::max(scores::as_of))
                    .first(c)
                    .map_err(DbError::query("scores", "latest date"))?
            };
            let covered = latest.map_or(-1, |d| (d - started.date()).num_days());
            if covered < i64::from(days) {
                return Ok(Some(Err(format!(
                    "the nightly scores cover {} day(s) after the start ({}); ask for at most that many, or wait for later nightly runs",
                    covered.max(0),
                    started.date()
                ))));
            }
            let rows = rows(c, n, started, days)?;
            Ok(Some(Ok((rows, i32::try_from(covered).unwrap_or(i32::MAX)))))
        })
        .await?;
        let ((members, answered), covered) = match loaded {
            None => return Err(no_campaign(&id).into()),
            Some(Err(why)) => {
                return Err(bad(format!(
                    "campaign {} cannot be measured yet: {why}",
                    id.as_str()
                ))
                .into());
            }
            Some(Ok(found)) => found,
        };
        Ok(measure(&members, &answered, covered))
    }
}

/// The treated and control customers of campaign `id` with their latest
/// scores, and who answered a survey within `days` of `started`.
fn rows(
    c: &mut cvm_shared::db::DbConnection,
    id: i64,
    started: NaiveDateTime,
    days: i32,
) -> Result<(Vec<Member>, HashSet<String>), DbError> {
    use cvm_shared::db::schema::{answers, invitations, outbox, scores};
    let until = started + chrono::Duration::days(i64::from(days));
    let members: Vec<Member> = outbox::table
        .left_join(scores::table.on(scores::customer_id.eq(outbox::customer_id)))
        .filter(outbox::campaign_id.eq(id))
        .filter(outbox::status.eq_any([RecipientStatus::Sent, RecipientStatus::Control]))
        .select((
            outbox::status,
            outbox::customer_id,
            outbox::base_orders,
            outbox::base_revenue,
            outbox::base_p_alive,
            scores::orders.nullable(),
            scores::total_revenue.nullable(),
            scores::p_alive.nullable(),
        ))
        .load(c)
        .map_err(DbError::query("outbox", "select uplift rows"))?;
    let answered = invitations::table
        .inner_join(answers::table)
        .filter(answers::answered_at.ge(started))
        .filter(answers::answered_at.lt(until))
        .select(invitations::customer_id)
        .distinct()
        .load::<String>(c)
        .map_err(DbError::query("answers", "select answered in the window"))?
        .into_iter()
        .collect();
    Ok((members, answered))
}

/// The uplift of `members` over `covered` days (`answered`: who answered a survey).
fn measure(members: &[Member], answered: &HashSet<String>, covered: i32) -> Uplift {
    let group = |s: RecipientStatus| members.iter().filter(move |m| m.status == s);
    let purchases = |s| -> Vec<f64> {
        group(s)
            .map(|m| (m.orders.unwrap_or(0) - m.base_orders.unwrap_or(0)) as f64)
            .collect()
    };
    let revenue = |s| -> Vec<f64> {
        group(s)
            .map(|m| {
                let now = m.revenue.as_deref().and_then(|v| v.parse::<f64>().ok());
                now.unwrap_or(0.0) - m.base_revenue.unwrap_or(0.0)
            })
            .collect()
    };
    let p_alive = |s| -> Vec<f64> {
        group(s)
            .filter_map(|m| Some(m.p_alive? - m.base_p_alive?))
            .collect()
    };
    let answers = |s| -> Vec<f64> {
        group(s)
            .map(|m| f64::from(u8::from(answered.contains(&m.customer_id))))
            .collect()
    };
    let (t, k) = (RecipientStatus::Sent, RecipientStatus::Control);
    let count = |s| i64::try_from(group(s).count()).unwrap_or(i64::MAX);
    Uplift {
        treated: count(t),
        control: count(k),
        days: covered,
        metrics: vec![
            compare("purchases", &purchases(t), &purchases(k)),
            compare("revenue", &revenue(t), &revenue(k)),
            compare("p_alive_change", &p_alive(t), &p_alive(k)),
            compare("survey_answer_rate", &answers(t), &answers(k)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welch_interval_matches_a_worked_example() {
        // Two samples whose Welch interval is known (computed by hand:
        // means 3 and 1, variances 2.5 each, n 5 each: se = 1, df = 8,
        // t(0.975, 8) = 2.306004).
        let m = compare("x", &[1.0, 2.0, 3.0, 4.0, 5.0], &[-1.0, 0.0, 1.0, 2.0, 3.0]);
        assert_eq!(m.difference, 2.0);
        let low = m.ci_low.unwrap();
        let high = m.ci_high.unwrap();
        assert!((low - (2.0 - 2.306004)).abs() < 1e-5, "{low}");
        assert!((high - (2.0 + 2.306004)).abs() < 1e-5, "{high}");
        let few = compare("x", &[1.0], &[0.0, 1.0]);
        assert_eq!((few.ci_low, few.ci_high), (None, None));
    }
}
