//! One customer's score row (`docs/scoring.md`) from their facts on the scoring
//! day and what every customer of that day shares (the fitted models and the
//! settings). A pure function: the job maps it over customers in parallel. The
//! value tier ranks customers against each other, so it is the caller's.

use chrono::NaiveDate;
use cvm_shared::BaseAmount;

use super::bgnbd::BgNbdParams;
use super::clv::{ClvOptions, clv};
use super::gammagamma::GammaGammaParams;
use super::rfm::{self, LifecycleThresholds, LoyaltyInput};
use super::summary::{CustomerSummary, Period};
use crate::warehouse::ScoreRow;

/// A customer's RFM scores 1..5 among the purchasers (all `None` for a prospect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RfmScores {
    /// Recency score.
    pub r: Option<u8>,
    /// Frequency score.
    pub f: Option<u8>,
    /// Monetary score.
    pub m: Option<u8>,
}

/// One customer's facts on the scoring day.
#[derive(Debug, Clone, Copy)]
pub struct CustomerInput<'a> {
    /// Customer id.
    pub customer_id: &'a str,
    /// Summary statistics; `None` (or no orders) for a prospect.
    pub summary: Option<CustomerSummary>,
    /// Net revenue, exact.
    pub total_revenue: BaseAmount,
    /// RFM scores among the purchasers.
    pub rfm: RfmScores,
    /// Engagement events in the 90 days up to the scoring day.
    pub engagement_90d: u32,
    /// Share of customers with fewer engagement events ([`rfm::engagement_shares`]).
    pub engagement_share: f64,
    /// Latest NPS answer 0..=10 on or before the scoring day.
    pub nps_last: Option<u8>,
}

/// What every customer scored on one day shares.
#[derive(Debug, Clone, Copy)]
pub struct ScoreContext {
    /// The scoring day.
    pub as_of: NaiveDate,
    /// Time unit of recency and T.
    pub period: Period,
    /// BG/NBD parameters; `None` when the model could not be fitted.
    pub bgnbd: Option<BgNbdParams>,
    /// Gamma-Gamma parameters; `None` when the model could not be fitted.
    pub gamma_gamma: Option<GammaGammaParams>,
    /// CLV horizon, discounting and margin.
    pub clv: ClvOptions,
    /// Lifecycle stage thresholds.
    pub lifecycle: LifecycleThresholds,
}

/// The customer's score row, `value_tier` left `None`.
pub fn score(c: &CustomerInput, ctx: &ScoreContext) -> ScoreRow {
    let h90 = 90.0 / ctx.period.days();
    let h365 = 365.0 / ctx.period.days();
    let as_of_day = i64::from(ctx.as_of.to_epoch_days());
    let sm = c.summary.filter(|s| s.orders > 0);
    let (x, tx, t) = sm.and_then(|s| s.xtt()).unwrap_or((0.0, 0.0, 0.0));
    let model = sm.and(ctx.bgnbd);
    let p_alive = model.map(|p| p.p_alive(x, tx, t));
    let e90 = model.map(|p| p.conditional_expected_purchases(h90, x, tx, t));
    let e365 = model.map(|p| p.conditional_expected_purchases(h365, x, tx, t));
    let m = sm.map_or(0.0, |s| s.monetary_avg);
    // Zero-value repeats carry no spend information: the population mean (`scoring.md`).
    let eav = sm
        .and(ctx.gamma_gamma)
        .and_then(|g| g.conditional_expected_value(if m > 0.0 { x } else { 0.0 }, m));
    let clv_12m = match (model, eav) {
        (Some(p), Some(v)) => Some(clv(&p, x, tx, t, v, &ctx.clv)),
        _ => None,
    };
    let RfmScores { r, f, m: m_score } = c.rfm;
    let segment = rfm::rfm_segment(r.zip(f)).map_or("Prospect", |s| s.as_str());
    let days_since_first = sm.and_then(|s| s.first_day).map(|d| as_of_day - d);
    let stage = rfm::lifecycle_stage(
        sm.map_or(0, |s| s.orders),
        days_since_first,
        p_alive,
        &ctx.lifecycle,
    );
    let loyalty = rfm::loyalty_index(&LoyaltyInput {
        rfm: r.zip(f).zip(m_score).map(|((r, f), m)| (r, f, m)),
        nps_last: c.nps_last,
        engagement_share: (c.engagement_90d > 0).then_some(c.engagement_share),
    });
    ScoreRow {
        customer_id: c.customer_id.into(),
        as_of: ctx.as_of,
        orders: sm.map_or(0, |s| s.orders) as u32,
        frequency: sm.map_or(0, |s| s.frequency) as u32,
        recency: tx,
        t,
        monetary_avg: m,
        total_revenue: c.total_revenue,
        first_purchase: date(sm.and_then(|s| s.first_day)),
        last_purchase: date(sm.and_then(|s| s.last_day)),
        days_since_last_purchase: sm
            .and_then(|s| s.days_since_last_purchase)
            .and_then(|d| i32::try_from(d).ok()),
        r_score: r,
        f_score: f,
        m_score,
        rfm_segment: segment.into(),
        p_alive,
        expected_purchases_90d: e90,
        expected_purchases_365d: e365,
        expected_avg_value: eav,
        clv_12m,
        churn_risk: p_alive.map(|p| 1.0 - p),
        nps_last: c.nps_last,
        nps_class: rfm::nps_class(c.nps_last).map(|c| c.as_str().into()),
        engagement_90d: c.engagement_90d,
        lifecycle_stage: stage.map(|s| s.as_str().into()),
        value_tier: None,
        loyalty_index: loyalty,
    }
}

/// The date of a UTC day number, if it is one.
fn date(day: Option<i64>) -> Option<NaiveDate> {
    day.and_then(|d| i32::try_from(d).ok())
        .and_then(NaiveDate::from_epoch_days)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::models::summary::summarize;

    fn context(bgnbd: Option<BgNbdParams>, gamma_gamma: Option<GammaGammaParams>) -> ScoreContext {
        ScoreContext {
            as_of: NaiveDate::from_ymd_opt(2025, 6, 30).unwrap(),
            period: Period::Week,
            bgnbd,
            gamma_gamma,
            clv: ClvOptions {
                months: 12,
                discount_rate: 0.01,
                margin: 1.0,
                month_periods: Period::Week.month(),
            },
            lifecycle: LifecycleThresholds {
                new_window_days: 90,
                churned_below: 0.2,
                at_risk_below: 0.5,
                loyal_min_orders: 3,
            },
        }
    }

    /// The CDNOW estimates of `scoring.md`.
    const BG: BgNbdParams = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    const GG: GammaGammaParams = GammaGammaParams {
        p: 6.25,
        q: 3.74,
        v: 15.44,
    };

    /// A customer with purchase occasions `(days before as_of, value)`.
    fn purchaser<'a>(ctx: &ScoreContext, occasions: &[(i64, f64)]) -> CustomerInput<'a> {
        let as_of_day = i64::from(ctx.as_of.to_epoch_days());
        let days: Vec<(i64, f64)> = occasions
            .iter()
            .map(|(ago, v)| (as_of_day - ago, *v))
            .collect();
        CustomerInput {
            customer_id: "c1",
            summary: Some(summarize(&days, as_of_day, ctx.period).unwrap()),
            total_revenue: BaseAmount(0),
            rfm: RfmScores {
                r: Some(5),
                f: Some(4),
                m: Some(3),
            },
            engagement_90d: 0,
            engagement_share: 0.0,
            nps_last: None,
        }
    }

    fn prospect<'a>() -> CustomerInput<'a> {
        CustomerInput {
            customer_id: "p1",
            summary: None,
            total_revenue: BaseAmount(0),
            rfm: RfmScores::default(),
            engagement_90d: 0,
            engagement_share: 0.0,
            nps_last: None,
        }
    }

    #[test]
    fn a_prospect_without_orders_is_a_prospect_with_null_model_columns() {
        let row = score(&prospect(), &context(Some(BG), Some(GG)));
        assert_eq!(&*row.rfm_segment, "Prospect");
        assert_eq!(row.lifecycle_stage.as_deref(), Some("prospect"));
        assert_eq!((row.orders, row.frequency), (0, 0));
        assert_eq!((row.recency, row.t, row.monetary_avg), (0.0, 0.0, 0.0));
        assert_eq!((row.first_purchase, row.last_purchase), (None, None));
        assert_eq!(row.days_since_last_purchase, None);
        assert_eq!(row.p_alive, None);
        assert_eq!(row.expected_purchases_90d, None);
        assert_eq!(row.expected_purchases_365d, None);
        assert_eq!(row.expected_avg_value, None);
        assert_eq!(row.clv_12m, None);
        assert_eq!(row.churn_risk, None);
        assert_eq!(row.loyalty_index, None, "no feedback and no events");
    }

    #[test]
    fn a_purchaser_gets_p_alive_from_the_bgnbd_params_and_churn_risk_is_its_complement() {
        let ctx = context(Some(BG), Some(GG));
        let c = purchaser(&ctx, &[(70, 10.0), (35, 20.0), (14, 30.0)]);
        let row = score(&c, &ctx);
        let (x, tx, t) = (2.0, 8.0, 10.0);
        assert_eq!(
            (row.orders, row.frequency, row.recency, row.t),
            (3, 2, tx, t)
        );
        let p_alive = BG.p_alive(x, tx, t);
        assert_eq!(row.p_alive, Some(p_alive));
        assert_eq!(row.churn_risk, Some(1.0 - p_alive));
        assert_eq!(
            row.expected_purchases_90d,
            Some(BG.conditional_expected_purchases(90.0 / 7.0, x, tx, t))
        );
        assert_eq!(
            row.expected_avg_value,
            GG.conditional_expected_value(x, 25.0),
            "the mean of the repeat occasions"
        );
        assert_eq!(&*row.rfm_segment, "Champions");
        assert_eq!(row.days_since_last_purchase, Some(14));
        assert_eq!(row.last_purchase, NaiveDate::from_ymd_opt(2025, 6, 16));
    }

    #[test]
    fn repeats_worth_nothing_get_the_population_mean_value() {
        let ctx = context(Some(BG), Some(GG));
        let row = score(&purchaser(&ctx, &[(70, 10.0), (35, 0.0)]), &ctx);
        assert_eq!(row.monetary_avg, 0.0);
        assert_eq!(row.expected_avg_value, GG.population_mean());
    }

    #[test]
    fn without_fitted_models_a_purchaser_keeps_its_summary_and_has_null_model_columns() {
        let ctx = context(None, None);
        let row = score(&purchaser(&ctx, &[(200, 10.0), (100, 20.0)]), &ctx);
        assert_eq!((row.orders, row.frequency), (2, 1));
        assert_eq!(
            (row.p_alive, row.churn_risk, row.clv_12m),
            (None, None, None)
        );
        assert_eq!(row.expected_avg_value, None);
        assert_eq!(row.lifecycle_stage, None, "the stage needs p_alive");
        // A one-time buyer within the window is new without any model.
        let row = score(&purchaser(&ctx, &[(10, 10.0)]), &ctx);
        assert_eq!(row.lifecycle_stage.as_deref(), Some("new"));
    }

    #[test]
    fn engagement_counts_towards_loyalty_only_when_there_were_events() {
        let ctx = context(Some(BG), Some(GG));
        let quiet = CustomerInput {
            engagement_share: 0.9,
            nps_last: Some(10),
            ..prospect()
        };
        assert_eq!(score(&quiet, &ctx).loyalty_index, Some(100.0), "NPS alone");
        let active = CustomerInput {
            engagement_90d: 3,
            ..quiet
        };
        let row = score(&active, &ctx);
        assert_eq!(row.loyalty_index, Some(96.0), "(0.3 * 1 + 0.2 * 0.9) / 0.5");
        assert_eq!(row.nps_class.as_deref(), Some("promoter"));
        assert_eq!(row.engagement_90d, 3);
    }
}
