//! RFM scores, segments and the derived labels of `docs/scoring.md` ("RFM",
//! "Feedback and engagement", "Derived labels"). Scores follow Fader, Hardie &
//! Lee (2005) "RFM and CLV" quintiles, with the contract's exact tie rule.
//!
//! Every population-wide rule is a sort plus binary searches: O(n log n), and
//! independent of the input order, so the results are deterministic.

use rayon::prelude::*;

/// Below this many values the parallel sort and map cost more than they save.
const PARALLEL_MIN: usize = 50_000;

fn sorted_copy<T: Ord + Copy + Send + Sync>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut sorted: Vec<T> = values.collect();
    if sorted.len() >= PARALLEL_MIN {
        sorted.par_sort_unstable();
    } else {
        sorted.sort_unstable();
    }
    sorted
}

fn map_maybe_parallel<I: Sync, O: Send>(input: &[I], f: impl Fn(&I) -> O + Sync + Send) -> Vec<O> {
    if input.len() >= PARALLEL_MIN {
        input.par_iter().map(f).collect()
    } else {
        input.iter().map(f).collect()
    }
}

/// Quintile scores 1..5: for each `Some(v)` among the n present values,
/// 1 + floor(5 * #{values < v} / n); ties share a score; `None` stays `None`
/// (prospects). Use [`OrdF64`] for floating-point values.
pub fn rank_scores<T: Ord + Copy + Send + Sync>(values: &[Option<T>]) -> Vec<Option<u8>> {
    let sorted = sorted_copy(values.iter().flatten().copied());
    let n = sorted.len() as u64;
    map_maybe_parallel(values, |v| {
        v.map(|v| {
            let less = sorted.partition_point(|u| *u < v) as u64;
            // less < n, so the score is at most 5; the cast cannot truncate.
            (1 + 5 * less / n) as u8
        })
    })
}

/// An f64 ordered by IEEE total order (NaN sorts last), for [`rank_scores`].
#[derive(Debug, Clone, Copy)]
pub struct OrdF64(pub f64);

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Named RFM segments of the contract's rule table, plus `Prospect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RfmSegment {
    /// R 5, F 4-5.
    Champions,
    /// R 3-4, F 4-5.
    LoyalCustomers,
    /// R 4-5, F 2-3.
    PotentialLoyalists,
    /// R 5, F 1.
    NewCustomers,
    /// R 4, F 1.
    Promising,
    /// R 3, F 3.
    NeedAttention,
    /// R 3, F 1-2.
    AboutToSleep,
    /// R 1-2, F 5.
    CannotLoseThem,
    /// R 1-2, F 3-4.
    AtRisk,
    /// R 1-2, F 1-2.
    Hibernating,
    /// No purchase.
    Prospect,
}

impl RfmSegment {
    /// The label written to `scores/`.
    pub fn as_str(self) -> &'static str {
        match self {
            RfmSegment::Champions => "Champions",
            RfmSegment::LoyalCustomers => "Loyal Customers",
            RfmSegment::PotentialLoyalists => "Potential Loyalists",
            RfmSegment::NewCustomers => "New Customers",
            RfmSegment::Promising => "Promising",
            RfmSegment::NeedAttention => "Need Attention",
            RfmSegment::AboutToSleep => "About to Sleep",
            RfmSegment::CannotLoseThem => "Cannot Lose Them",
            RfmSegment::AtRisk => "At Risk",
            RfmSegment::Hibernating => "Hibernating",
            RfmSegment::Prospect => "Prospect",
        }
    }
}

/// The segment of (r_score, f_score), first matching rule of the table wins; the
/// table covers all 25 pairs of 1..5 (see the test), so only scores outside 1..5
/// give `None`. `None` scores (a prospect) give `Prospect`.
pub fn rfm_segment(scores: Option<(u8, u8)>) -> Option<RfmSegment> {
    let Some((r, f)) = scores else {
        return Some(RfmSegment::Prospect);
    };
    use RfmSegment::*;
    let segment = match (r, f) {
        (5, 4..=5) => Champions,
        (3..=4, 4..=5) => LoyalCustomers,
        (4..=5, 2..=3) => PotentialLoyalists,
        (5, 1) => NewCustomers,
        (4, 1) => Promising,
        (3, 3) => NeedAttention,
        (3, 1..=2) => AboutToSleep,
        (1..=2, 5) => CannotLoseThem,
        (1..=2, 3..=4) => AtRisk,
        (1..=2, 1..=2) => Hibernating,
        _ => return None,
    };
    Some(segment)
}

/// Lifecycle stages of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleStage {
    /// No purchase.
    Prospect,
    /// One occasion, first purchase within the new-customer window.
    New,
    /// p_alive below the churned threshold.
    Churned,
    /// p_alive below the at-risk threshold.
    AtRisk,
    /// At least `loyal_min_orders` occasions and not at risk.
    Loyal,
    /// Everything else.
    Active,
}

impl LifecycleStage {
    /// The label written to `scores/`.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStage::Prospect => "prospect",
            LifecycleStage::New => "new",
            LifecycleStage::Churned => "churned",
            LifecycleStage::AtRisk => "at_risk",
            LifecycleStage::Loyal => "loyal",
            LifecycleStage::Active => "active",
        }
    }
}

/// Configurable thresholds of the lifecycle rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LifecycleThresholds {
    /// A first purchase fewer than this many days before as_of is "new" (the 90
    /// days up to and including as_of: age in days 0..=89).
    pub new_window_days: i64,
    /// p_alive below this is churned.
    pub churned_below: f64,
    /// p_alive below this is at risk.
    pub at_risk_below: f64,
    /// Minimum occasions for loyal.
    pub loyal_min_orders: u64,
}

impl Default for LifecycleThresholds {
    fn default() -> Self {
        Self {
            new_window_days: 90,
            churned_below: 0.2,
            at_risk_below: 0.5,
            loyal_min_orders: 3,
        }
    }
}

/// The lifecycle stage, first matching rule wins. `days_since_first` is as_of
/// minus the first occasion in days. When p_alive is unknown (BG/NBD not fitted)
/// and the stage depends on it, the stage is unknown too: `None`.
pub fn lifecycle_stage(
    orders: u64,
    days_since_first: Option<i64>,
    p_alive: Option<f64>,
    th: &LifecycleThresholds,
) -> Option<LifecycleStage> {
    if orders == 0 {
        return Some(LifecycleStage::Prospect);
    }
    if orders == 1 && days_since_first.is_some_and(|d| d < th.new_window_days) {
        return Some(LifecycleStage::New);
    }
    let p = p_alive.filter(|p| p.is_finite())?;
    Some(if p < th.churned_below {
        LifecycleStage::Churned
    } else if p < th.at_risk_below {
        LifecycleStage::AtRisk
    } else if orders >= th.loyal_min_orders {
        LifecycleStage::Loyal
    } else {
        LifecycleStage::Active
    })
}

/// Value tiers by `clv_12m` among purchasers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueTier {
    /// Top 20%.
    High,
    /// Next 30%.
    Medium,
    /// The rest.
    Low,
    /// Prospects.
    None,
}

impl ValueTier {
    /// The label written to `scores/`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueTier::High => "high",
            ValueTier::Medium => "medium",
            ValueTier::Low => "low",
            ValueTier::None => "none",
        }
    }
}

/// One customer's input to [`value_tiers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TierInput {
    /// A purchaser with a CLV (None when the models could not be fitted).
    Purchaser(Option<f64>),
    /// No purchase.
    Prospect,
}

/// Value tiers. Ties are resolved by "share of purchasers with a strictly higher
/// CLV", g: high if g < 20%, medium if g < 50%, low otherwise; a tie group that
/// straddles a boundary goes wholly to the better tier, which is deterministic
/// and independent of input order. n counts purchasers with a finite CLV;
/// purchasers without one get `None` (null).
pub fn value_tiers(customers: &[TierInput]) -> Vec<Option<ValueTier>> {
    let clv = |c: &TierInput| match c {
        TierInput::Purchaser(Some(v)) if v.is_finite() => Some(OrdF64(*v)),
        _ => None,
    };
    let sorted = sorted_copy(customers.iter().filter_map(clv));
    let n = sorted.len() as u64;
    map_maybe_parallel(customers, |c| match c {
        TierInput::Prospect => Some(ValueTier::None),
        TierInput::Purchaser(_) => clv(c).map(|v| {
            let higher = n - sorted.partition_point(|u| *u <= v) as u64;
            if 5 * higher < n {
                ValueTier::High
            } else if 2 * higher < n {
                ValueTier::Medium
            } else {
                ValueTier::Low
            }
        }),
    })
}

/// Share of all customers with a strictly lower `engagement_90d`, per customer.
pub fn engagement_shares(engagement_90d: &[u32]) -> Vec<f64> {
    let sorted = sorted_copy(engagement_90d.iter().copied());
    let n = sorted.len() as f64;
    map_maybe_parallel(engagement_90d, |v| {
        sorted.partition_point(|u| u < v) as f64 / n
    })
}

/// One customer's loyalty components; `None` where the customer has no signal.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoyaltyInput {
    /// (r, f, m) scores, None for prospects.
    pub rfm: Option<(u8, u8, u8)>,
    /// Latest NPS answer 0..=10.
    pub nps_last: Option<u8>,
    /// Engagement share from [`engagement_shares`]; pass None for a customer with
    /// no engagement event in the window (no engagement signal at all).
    pub engagement_share: Option<f64>,
}

/// Loyalty index 0..100 with one decimal: 100 * weighted mean of the behavioural
/// (0.5), attitudinal (0.3) and engagement (0.2) components present, the missing
/// weights spread over the others in proportion. None when no component is
/// present (a prospect without feedback or events).
pub fn loyalty_index(input: &LoyaltyInput) -> Option<f64> {
    let behavioural = input
        .rfm
        .map(|(r, f, m)| (f64::from(r) + f64::from(f) + f64::from(m) - 3.0) / 12.0);
    let attitudinal = input
        .nps_last
        .filter(|s| *s <= 10)
        .map(|s| f64::from(s) / 10.0);
    let parts = [
        (0.5, behavioural),
        (0.3, attitudinal),
        (0.2, input.engagement_share),
    ];
    let (weighted, weights) = parts
        .iter()
        .filter_map(|(w, c)| c.map(|c| (w * c, *w)))
        .fold((0.0, 0.0), |(s, t), (wc, w)| (s + wc, t + w));
    (weights > 0.0).then(|| (1000.0 * weighted / weights).round() / 10.0)
}

/// NPS classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NpsClass {
    /// 9-10.
    Promoter,
    /// 7-8.
    Passive,
    /// 0-6.
    Detractor,
}

impl NpsClass {
    /// The label written to `scores/`.
    pub fn as_str(self) -> &'static str {
        match self {
            NpsClass::Promoter => "promoter",
            NpsClass::Passive => "passive",
            NpsClass::Detractor => "detractor",
        }
    }
}

/// The NPS class of an answer; None for no answer or one outside 0..=10.
pub fn nps_class(nps_last: Option<u8>) -> Option<NpsClass> {
    match nps_last? {
        9..=10 => Some(NpsClass::Promoter),
        7..=8 => Some(NpsClass::Passive),
        0..=6 => Some(NpsClass::Detractor),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rf_pair_has_its_table_segment() {
        use RfmSegment::*;
        // Rows R = 5..1, columns F = 1..5, worked out by hand from the contract's table.
        let expected = [
            (
                5,
                [
                    NewCustomers,
                    PotentialLoyalists,
                    PotentialLoyalists,
                    Champions,
                    Champions,
                ],
            ),
            (
                4,
                [
                    Promising,
                    PotentialLoyalists,
                    PotentialLoyalists,
                    LoyalCustomers,
                    LoyalCustomers,
                ],
            ),
            (
                3,
                [
                    AboutToSleep,
                    AboutToSleep,
                    NeedAttention,
                    LoyalCustomers,
                    LoyalCustomers,
                ],
            ),
            (
                2,
                [Hibernating, Hibernating, AtRisk, AtRisk, CannotLoseThem],
            ),
            (
                1,
                [Hibernating, Hibernating, AtRisk, AtRisk, CannotLoseThem],
            ),
        ];
        for (r, row) in expected {
            for (f, segment) in (1..=5).zip(row) {
                assert_eq!(rfm_segment(Some((r, f))), Some(segment), "R={r} F={f}");
            }
        }
        assert_eq!(rfm_segment(None), Some(Prospect));
        assert_eq!(rfm_segment(Some((0, 3))), None);
        assert_eq!(rfm_segment(Some((3, 6))), None);
        assert_eq!(RfmSegment::AboutToSleep.as_str(), "About to Sleep");
    }

    #[test]
    fn rank_scores_follow_the_contract_rule() {
        // n = 10: score = 1 + floor(5 * less / 10); ties share.
        let v: Vec<Option<i64>> = [1, 2, 2, 3, 4, 5, 6, 7, 8, 9]
            .iter()
            .map(|&x| Some(x))
            .collect();
        let s: Vec<u8> = rank_scores(&v).into_iter().flatten().collect();
        assert_eq!(s, [1, 1, 1, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(
            rank_scores(&[Some(7), None, Some(7)]),
            [Some(1), None, Some(1)]
        );
        assert_eq!(rank_scores::<i64>(&[]), Vec::<Option<u8>>::new());
    }

    #[test]
    fn value_tiers_split_20_30_50_with_ties_to_the_better_tier() {
        let clv: Vec<TierInput> = (1..=10)
            .map(|v| TierInput::Purchaser(Some(f64::from(v))))
            .collect();
        let tiers: Vec<&str> = value_tiers(&clv)
            .into_iter()
            .flatten()
            .map(ValueTier::as_str)
            .collect();
        assert_eq!(
            tiers,
            [
                "low", "low", "low", "low", "low", "medium", "medium", "medium", "high", "high"
            ]
        );
        let tied = [
            TierInput::Purchaser(Some(5.0)),
            TierInput::Purchaser(Some(5.0)),
            TierInput::Purchaser(Some(1.0)),
            TierInput::Purchaser(Some(1.0)),
            TierInput::Prospect,
            TierInput::Purchaser(None),
        ];
        assert_eq!(
            value_tiers(&tied),
            [
                Some(ValueTier::High),
                Some(ValueTier::High),
                Some(ValueTier::Low),
                Some(ValueTier::Low),
                Some(ValueTier::None),
                None
            ]
        );
    }

    #[test]
    fn lifecycle_rules_in_order() {
        let th = LifecycleThresholds::default();
        assert_eq!(
            lifecycle_stage(0, None, None, &th),
            Some(LifecycleStage::Prospect)
        );
        assert_eq!(
            lifecycle_stage(1, Some(89), Some(0.1), &th),
            Some(LifecycleStage::New)
        );
        assert_eq!(
            lifecycle_stage(1, Some(90), Some(0.1), &th),
            Some(LifecycleStage::Churned)
        );
        assert_eq!(
            lifecycle_stage(5, Some(300), Some(0.3), &th),
            Some(LifecycleStage::AtRisk)
        );
        assert_eq!(
            lifecycle_stage(3, Some(300), Some(0.5), &th),
            Some(LifecycleStage::Loyal)
        );
        assert_eq!(
            lifecycle_stage(2, Some(300), Some(0.9), &th),
            Some(LifecycleStage::Active)
        );
        assert_eq!(lifecycle_stage(2, Some(300), None, &th), None);
        assert_eq!(
            lifecycle_stage(1, Some(10), None, &th),
            Some(LifecycleStage::New)
        );
    }

    #[test]
    fn loyalty_index_redistributes_missing_weights() {
        let full = LoyaltyInput {
            rfm: Some((5, 5, 5)),
            nps_last: Some(10),
            engagement_share: Some(1.0),
        };
        assert_eq!(loyalty_index(&full), Some(100.0));
        // Behavioural 0.5 and attitudinal 0.3 only: (0.5 * 0.5 + 0.3 * 0.8) / 0.8 = 0.6125.
        let no_events = LoyaltyInput {
            rfm: Some((3, 3, 3)),
            nps_last: Some(8),
            engagement_share: None,
        };
        assert_eq!(loyalty_index(&no_events), Some(61.3));
        let prospect_with_events = LoyaltyInput {
            rfm: None,
            nps_last: None,
            engagement_share: Some(0.25),
        };
        assert_eq!(loyalty_index(&prospect_with_events), Some(25.0));
        assert_eq!(loyalty_index(&LoyaltyInput::default()), None);
    }

    #[test]
    fn engagement_share_counts_strictly_lower() {
        assert_eq!(engagement_shares(&[0, 0, 3, 1]), [0.0, 0.0, 0.75, 0.5]);
    }

    #[test]
    fn nps_classes() {
        let classes: Vec<Option<&str>> = [
            Some(0),
            Some(6),
            Some(7),
            Some(8),
            Some(9),
            Some(10),
            Some(11),
            None,
        ]
        .map(|s| nps_class(s).map(NpsClass::as_str))
        .to_vec();
        assert_eq!(
            classes,
            [
                Some("detractor"),
                Some("detractor"),
                Some("passive"),
                Some("passive"),
                Some("promoter"),
                Some("promoter"),
                None,
                None
            ]
        );
    }
}
