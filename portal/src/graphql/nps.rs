//! `npsSummary` and `npsTrend`: NPS = 100 × (promoters − detractors) /
//! responses, exact (not rounded), null without responses; 9-10 promote,
//! 7-8 are passive, 0-6 (0 included) detract.
//!
//! An answer counts at its `answeredAt` (its first submission; a
//! resubmission replaces its score, not its time), in UTC; `from` is
//! inclusive and `to` exclusive. Without a filter every answer counts; with
//! one, the answers of the customers it selects (its `active` defaults to
//! true like everywhere). Trend groups are the customer's current value of
//! the dimension (the latest scoring), with the keys of `groups`.
//!
//! `npsTrend` answers one point per period from the period of `from` (or of
//! the first answer) to the period of `to` (or of the last answer), empty
//! periods included (`responses: 0`, `nps: null`), and with `groupBy`, one
//! per period and group seen in that range. Days are UTC days, weeks start
//! on Monday (ISO 8601), months on their first day; `periodStart` is that day.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime};
use cvm_shared::db::models::api_tokens::Role;
use cvm_shared::db::models::surveys;
use cvm_shared::db::schema::{answers, customers, invitations, scores};
use cvm_shared::db::{Backend, DbConnection, DbError};
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date as SqlDate, Integer, Nullable, Text};

use super::api;
use super::errors::{ApiError, ErrorCode};
use super::filter::{AnswerSource, Condition, CustomerFilter};
use super::groups::{Dimension, group_key};
use super::invitations::parse_id;
use super::scalars::{Date, DateTime};
use crate::auth::RoleGuard;
use crate::db;

/// Most points one `npsTrend` answers (periods × groups).
pub const MAX_TREND_POINTS: usize = 10_000;

/// The length of a trend's periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum TrendInterval {
    /// UTC days.
    Day,
    /// Weeks from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl TrendInterval {
    /// The first day of the period holding `d`.
    pub fn start_of(self, d: NaiveDate) -> NaiveDate {
        match self {
            TrendInterval::Day => d,
            TrendInterval::Week => d - Days::new(u64::from(d.weekday().num_days_from_monday())),
            TrendInterval::Month => d.with_day(1).unwrap_or(d),
        }
    }

    /// The first day of the next period (None past the calendar's end).
    fn next(self, start: NaiveDate) -> Option<NaiveDate> {
        match self {
            TrendInterval::Day => start.checked_add_days(Days::new(1)),
            TrendInterval::Week => start.checked_add_days(Days::new(7)),
            TrendInterval::Month => start.checked_add_months(Months::new(1)),
        }
    }
}

/// Answers counted by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answers 9-10.
    pub promoters: i64,
    /// Answers 7-8.
    pub passives: i64,
    /// Answers 0-6.
    pub detractors: i64,
}

impl Tally {
    /// Adds `n` answers of `score`.
    fn add(&mut self, score: i32, n: i64) {
        match score {
            9..=10 => self.promoters += n,
            7..=8 => self.passives += n,
            _ => self.detractors += n,
        }
    }

    /// Number of answers.
    pub fn responses(self) -> i64 {
        self.promoters + self.passives + self.detractors
    }

    /// 100 × (promoters − detractors) / responses; None without responses.
    pub fn nps(self) -> Option<f64> {
        let n = self.responses();
        (n > 0).then(|| (100 * (self.promoters - self.detractors)) as f64 / n as f64)
    }
}

/// The NPS of a set of answers.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct NpsSummary {
    /// Answers counted.
    pub responses: i64,
    /// Answers 9-10.
    pub promoters: i64,
    /// Answers 7-8.
    pub passives: i64,
    /// Answers 0-6.
    pub detractors: i64,
    /// The NPS, -100..100 (null without responses).
    pub nps: Option<f64>,
}

impl From<Tally> for NpsSummary {
    fn from(t: Tally) -> NpsSummary {
        NpsSummary {
            responses: t.responses(),
            promoters: t.promoters,
            passives: t.passives,
            detractors: t.detractors,
            nps: t.nps(),
        }
    }
}

/// The NPS of one period (and group).
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct NpsPoint {
    /// First day of the period.
    pub period_start: Date,
    /// The group's key (null without `groupBy`).
    pub group: Option<String>,
    /// Answers counted.
    pub responses: i64,
    /// Answers 9-10.
    pub promoters: i64,
    /// Answers 7-8.
    pub passives: i64,
    /// Answers 0-6.
    pub detractors: i64,
    /// The NPS (null without responses).
    pub nps: Option<f64>,
}

/// Which answers count: survey, time range, customers.
struct Scope {
    survey: Option<i64>,
    from: Option<NaiveDateTime>,
    to: Option<NaiveDateTime>,
    filter: Option<CustomerFilter>,
}

impl Scope {
    /// Checks the arguments; resolves the survey (NOT_FOUND when unknown).
    async fn new(
        ctx: &Context<'_>,
        survey: Option<ID>,
        from: Option<DateTime>,
        to: Option<DateTime>,
        filter: Option<CustomerFilter>,
    ) -> Result<Scope, ApiError> {
        if let Some(f) = &filter {
            f.validate()?;
        }
        let (from, to) = (from.map(DateTime::naive_utc), to.map(DateTime::naive_utc));
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                "from must be before to (from is inclusive, to exclusive)",
            ));
        }
        let survey = match survey {
            None => None,
            Some(id) => {
                let not_found =
                    || ApiError::new(ErrorCode::NotFound, format!("no survey with id {:?}", id.0));
                let n = parse_id(&id).ok_or_else(not_found)?;
                db::run(&api(ctx)?.db, move |c| surveys::find(c, n))
                    .await?
                    .ok_or_else(not_found)?;
                Some(n)
            }
        };
        Ok(Scope {
            survey,
            from,
            to,
            filter,
        })
    }

    /// The condition selecting the answers in scope.
    fn condition(&self) -> Condition<AnswerSource> {
        let mut all: Vec<Condition<AnswerSource>> = Vec::new();
        if let Some(id) = self.survey {
            all.push(Box::new(invitations::survey_id.eq(id).nullable()));
        }
        if let Some(from) = self.from {
            all.push(Box::new(answers::answered_at.ge(from).nullable()));
        }
        if let Some(to) = self.to {
            all.push(Box::new(answers::answered_at.lt(to).nullable()));
        }
        if let Some(f) = &self.filter {
            all.push(f.condition::<AnswerSource>());
        }
        all.into_iter()
            .reduce(|a, b| Box::new(a.and(b)))
            .unwrap_or_else(|| Box::new(sql::<Bool>("1 = 1").nullable()))
    }
}

/// Answers per (UTC day, group value, score).
type DayRow = (NaiveDate, Option<String>, i32, i64);

fn answers_per_day(
    c: &mut DbConnection,
    scope: &Scope,
    by: Option<Dimension>,
) -> Result<Vec<DayRow>, DbError> {
    // diesel checks GROUP BY against the selection only for plain columns,
    // so the grouped selection is written out; every name in it is fixed.
    let column = by.map(|b| match b {
        Dimension::RfmSegment => "scores.rfm_segment",
        Dimension::LifecycleStage => "scores.lifecycle_stage",
        Dimension::ValueTier => "scores.value_tier",
        Dimension::NpsClass => "scores.nps_class",
    });
    let day = day_of_answer(c.backend());
    // PostgreSQL refuses a constant in GROUP BY: without a dimension the
    // value is a constant NULL outside it.
    let (value, keys) = match column {
        Some(col) => (col, format!("{day}, {col}, answers.score")),
        None => ("NULL", format!("{day}, answers.score")),
    };
    answers::table
        .inner_join(invitations::table.inner_join(customers::table.left_join(scores::table)))
        .filter(scope.condition())
        .select(sql::<(SqlDate, Nullable<Text>, Integer, BigInt)>(&format!(
            "{day}, {value}, answers.score, COUNT(*)"
        )))
        .group_by(sql::<Text>(&keys))
        .load::<DayRow>(c)
        .map_err(DbError::query("answers", "select nps per day"))
}

/// The UTC day of `answers.answered_at`, per backend (SQLite stores text).
fn day_of_answer(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "date(answers.answered_at)",
        Backend::Postgres => "CAST(answers.answered_at AS date)",
    }
}

/// The trend's points from per-day rows: every period from the first to
/// the last (`range`, else the data's), per group seen.
fn trend(
    interval: TrendInterval,
    by: Option<Dimension>,
    rows: Vec<DayRow>,
    range: (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<Vec<NpsPoint>, ApiError> {
    let mut tallies: BTreeMap<(NaiveDate, Option<String>), Tally> = BTreeMap::new();
    let mut groups: BTreeSet<Option<String>> = BTreeSet::new();
    let (mut first, mut last) = range;
    for (day, value, score, n) in rows {
        let group = by.map(|b| group_key(b, value.as_deref()));
        first = Some(first.map_or(day, |f| f.min(day)));
        last = Some(last.map_or(day, |l| l.max(day)));
        groups.insert(group.clone());
        tallies
            .entry((interval.start_of(day), group))
            .or_default()
            .add(score, n);
    }
    let (Some(first), Some(last)) = (range.0.or(first), range.1.or(last)) else {
        return Ok(Vec::new());
    };
    if by.is_none() {
        groups.insert(None);
    }
    let mut periods = Vec::new();
    let mut p = Some(interval.start_of(first));
    while let Some(start) = p.filter(|s| *s <= last) {
        periods.push(start);
        if periods.len() * groups.len().max(1) > MAX_TREND_POINTS {
            return Err(ApiError::new(
                ErrorCode::BadUserInput,
                format!(
                    "this trend has more than {MAX_TREND_POINTS} points; narrow from/to or use a longer interval"
                ),
            ));
        }
        p = interval.next(start);
    }
    let mut points = Vec::with_capacity(periods.len() * groups.len());
    for start in periods {
        for group in &groups {
            let t = tallies
                .get(&(start, group.clone()))
                .copied()
                .unwrap_or_default();
            points.push(NpsPoint {
                period_start: Date(start),
                group: group.clone(),
                responses: t.responses(),
                promoters: t.promoters,
                passives: t.passives,
                detractors: t.detractors,
                nps: t.nps(),
            });
        }
    }
    Ok(points)
}

/// NPS queries.
#[derive(Default)]
pub struct NpsQuery;

#[Object]
impl NpsQuery {
    /// The NPS of the answers to `surveyId` (default: every survey) given
    /// in [`from`, `to`), of the customers `filter` selects (default: all).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn nps_summary(
        &self,
        ctx: &Context<'_>,
        survey_id: Option<ID>,
        from: Option<DateTime>,
        to: Option<DateTime>,
        filter: Option<CustomerFilter>,
    ) -> async_graphql::Result<NpsSummary> {
        let scope = Scope::new(ctx, survey_id, from, to, filter).await?;
        let rows = db::run(&api(ctx)?.db, move |c| {
            answers::table
                .inner_join(
                    invitations::table.inner_join(customers::table.left_join(scores::table)),
                )
                .filter(scope.condition())
                .group_by(answers::score)
                .select((answers::score, count_star()))
                .load::<(i32, i64)>(c)
                .map_err(DbError::query("answers", "select nps"))
        })
        .await?;
        let mut t = Tally::default();
        for (score, n) in rows {
            t.add(score, n);
        }
        Ok(t.into())
    }

    /// The NPS per DAY, WEEK (from Monday) or MONTH, every period from
    /// `from` to `to` (default: the first and last answer) including empty
    /// ones, optionally per group of `groupBy` (the customer's current value).
    #[graphql(guard = "RoleGuard::new(Role::Viewer)")]
    async fn nps_trend(
        &self,
        ctx: &Context<'_>,
        survey_id: Option<ID>,
        interval: TrendInterval,
        from: Option<DateTime>,
        to: Option<DateTime>,
        group_by: Option<Dimension>,
    ) -> async_graphql::Result<Vec<NpsPoint>> {
        let scope = Scope::new(ctx, survey_id, from, to, None).await?;
        // `to` is exclusive: its last period holds the instant just before it.
        let range = (
            scope.from.map(|f| f.date()),
            scope
                .to
                .map(|t| (t - chrono::TimeDelta::microseconds(1)).date()),
        );
        let rows = db::run(&api(ctx)?.db, move |c| answers_per_day(c, &scope, group_by)).await?;
        Ok(trend(interval, group_by, rows, range)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    #[test]
    fn nps_is_exact_counts_zero_as_a_detractor_and_is_null_without_answers() {
        let mut t = Tally::default();
        assert_eq!(t.nps(), None);
        t.add(0, 1);
        t.add(10, 2);
        t.add(7, 1);
        assert_eq!((t.promoters, t.passives, t.detractors), (2, 1, 1));
        assert_eq!(t.nps(), Some(25.0));
        t.add(9, 2);
        assert_eq!(t.nps(), Some(50.0));
        let mut third = Tally::default();
        third.add(9, 1);
        third.add(5, 0);
        third.add(8, 2);
        assert_eq!(third.nps(), Some(100.0 / 3.0));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2024-03-03 is a Sunday, 2024-03-04 a Monday.
        assert_eq!(TrendInterval::Week.start_of(d(2024, 3, 3)), d(2024, 2, 26));
        assert_eq!(TrendInterval::Week.start_of(d(2024, 3, 4)), d(2024, 3, 4));
        assert_eq!(TrendInterval::Month.start_of(d(2024, 2, 29)), d(2024, 2, 1));
        assert_eq!(
            TrendInterval::Month.next(d(2024, 1, 1)),
            Some(d(2024, 2, 1))
        );
    }

    #[test]
    fn trends_fill_empty_periods_for_every_group() {
        let rows = vec![
            (d(2024, 1, 1), Some("loyal".to_string()), 10, 1),
            (d(2024, 1, 3), None, 0, 2),
        ];
        let points = trend(
            TrendInterval::Day,
            Some(Dimension::LifecycleStage),
            rows,
            (None, None),
        );
        let points = points.unwrap_or_default();
        let summary: Vec<(u32, Option<&str>, i64, Option<f64>)> = points
            .iter()
            .map(|p| {
                (
                    p.period_start.0.day(),
                    p.group.as_deref(),
                    p.responses,
                    p.nps,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, Some("LOYAL"), 1, Some(100.0)),
                (1, Some("NONE"), 0, None),
                (2, Some("LOYAL"), 0, None),
                (2, Some("NONE"), 0, None),
                (3, Some("LOYAL"), 0, None),
                (3, Some("NONE"), 2, Some(-100.0)),
            ]
        );
        let too_long = trend(
            TrendInterval::Day,
            None,
            Vec::new(),
            (Some(d(1990, 1, 1)), Some(d(2024, 1, 1))),
        );
        assert_eq!(too_long.map_err(|e| e.code), Err(ErrorCode::BadUserInput));
    }
}
