//! BG/NBD "buy till you die" model: Fader, Hardie & Lee (2005), "Counting your
//! customers the easy way: an alternative to the Pareto/NBD model", Marketing
//! Science 24(2), and Hardie's notes 004 (likelihood) and 021 (P(alive)).
//!
//! The fit maximises the log-likelihood over log-parameters on weighted sufficient
//! statistics (x, t_x, T, count). Everything is evaluated in log space so that
//! huge frequencies or ages neither overflow nor lose precision.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use statrs::function::gamma::{digamma, ln_gamma};

use super::optimize::{
    FitError, FitReport, Matrix, Minimum, Tolerances, minimize_with_fallback, newton,
};
use super::special::trigamma;

/// One weighted observation: `weight` customers share (frequency, recency, T).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedRow {
    /// x: number of repeat purchase occasions.
    pub frequency: f64,
    /// t_x: time of the last occasion since the first, in periods.
    pub recency: f64,
    /// T: time from the first occasion to the end of observation, in periods.
    pub t: f64,
    /// Number of customers with exactly this history.
    pub weight: f64,
}

/// BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbdParams {
    /// Shape of the Gamma purchase-rate heterogeneity.
    pub r: f64,
    /// Scale (in periods) of the Gamma purchase-rate heterogeneity.
    pub alpha: f64,
    /// First Beta parameter of the dropout probability.
    pub a: f64,
    /// Second Beta parameter of the dropout probability.
    pub b: f64,
}

/// Sufficient statistics prepared for fast likelihood evaluation: terms that
/// depend only on x or only on a time value are computed once per distinct value.
#[derive(Debug)]
struct Prepared<'a> {
    xs: &'a [f64],
    x_weight: Vec<f64>,
    times: &'a [f64],
    zero_weight: Vec<f64>,
    /// The repeat buyers' rows (they follow the one-time buyers').
    repeat: &'a [IndexedRow],
    total_weight: f64,
    mean_t: f64,
}

/// A distinct history as indexes into the value tables, with its weight.
#[derive(Debug, Clone, Copy)]
struct IndexedRow {
    xi: u32,
    txi: u32,
    ti: u32,
    w: f64,
}

/// The distinct values of a column, sorted, with each value's index (by its
/// bits). Hashing first keeps the sort to the few distinct values (a few
/// thousand times and frequencies among a million customers).
struct Dictionary {
    values: Vec<f64>,
    index: FxHashMap<u64, u32>,
}

impl Dictionary {
    fn build(values: impl ParallelIterator<Item = f64>) -> Self {
        let bits = values
            .fold(FxHashSet::default, |mut set, v| {
                set.insert(hash_key(v));
                set
            })
            .reduce(FxHashSet::default, |mut a, b| {
                a.extend(b);
                a
            });
        let mut values: Vec<f64> = bits
            .into_iter()
            .map(|k| f64::from_bits(k.rotate_right(32)))
            .collect();
        values.sort_unstable_by(f64::total_cmp);
        let index = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (hash_key(v), i as u32))
            .collect();
        Self { values, index }
    }

    /// The index of a value the dictionary was built from.
    fn get(&self, v: f64) -> u32 {
        self.index.get(&hash_key(v)).copied().unwrap_or(0)
    }

    /// The dictionaries of the frequencies and of the times (recency and T
    /// share one), built in parallel.
    fn pair<T: Sync>(
        items: &[T],
        x: impl Fn(&T) -> f64 + Sync + Send,
        times: impl Fn(&T) -> [f64; 2] + Sync + Send,
    ) -> (Self, Self) {
        rayon::join(
            || Self::build(items.par_iter().map(x)),
            || Self::build(items.par_iter().flat_map_iter(times)),
        )
    }

    /// Bits needed to store any index.
    fn bits(&self) -> u32 {
        u32::BITS - (self.values.len().max(2) as u32 - 1).leading_zeros()
    }
}

/// A value's bits as a hash key: Fx hashing multiplies, so only low bits
/// reach the hash's control bits, and a whole number's low mantissa bits are
/// all zero; rotating brings the exponent and the high mantissa down.
fn hash_key(v: f64) -> u64 {
    v.to_bits().rotate_left(32)
}

fn validate_row(i: usize, row: &WeightedRow) -> Result<Option<(f64, f64, f64, f64)>, FitError> {
    let bad = |what| Err(FitError::InvalidInput { row: i, what });
    let WeightedRow {
        frequency: x,
        recency,
        t,
        weight: w,
    } = *row;
    if !w.is_finite() || w < 0.0 {
        return bad("weight must be finite and >= 0");
    }
    if !x.is_finite() || x < 0.0 || x.fract() != 0.0 {
        return bad("frequency must be a non-negative integer");
    }
    if !t.is_finite() || t < 0.0 || !recency.is_finite() || recency < 0.0 {
        return bad("recency and T must be finite and >= 0");
    }
    if w == 0.0 {
        return Ok(None);
    }
    // recency > T is impossible for a real history; clamp rather than reject so one
    // bad upstream row cannot stop the whole scoring run. x = 0 ignores recency.
    let tx = if x == 0.0 { 0.0 } else { recency.min(t) };
    Ok(Some((x, tx, t, w)))
}

/// Customer histories collapsed to distinct (frequency, recency, T) rows with
/// weights, indexed into tables of distinct values: the BG/NBD fit's input,
/// whose cost grows with distinct rows, not customers.
#[derive(Debug, Clone)]
pub struct Histories {
    xs: Vec<f64>,
    times: Vec<f64>,
    rows: Vec<IndexedRow>,
}

impl Histories {
    /// Collapses one (frequency, recency, T) triple per customer into distinct
    /// rows, sorted by (frequency, recency, T) so that the fit is
    /// deterministic. The values are replaced by their indexes in sorted
    /// tables of distinct values, packed into one integer per customer, so the
    /// collapse is an integer sort and a run-length pass.
    pub fn collapse(triples: &[(f64, f64, f64)]) -> Result<Self, FitError> {
        let (x_dict, time_dict) = Dictionary::pair(triples, |p| p.0, |p| [p.1, p.2]);
        // Every row is valid when every distinct value is: check the few values,
        // and only on a failure look for the first row that holds one.
        let valid = x_dict
            .values
            .iter()
            .all(|&x| check(0, &(x, 0.0, 0.0)).is_ok())
            && time_dict
                .values
                .iter()
                .all(|&v| check(0, &(0.0, v, v)).is_ok());
        if !valid {
            let first = triples.iter().enumerate().map(|(i, p)| check(i, p));
            return Err(first
                .filter_map(Result::err)
                .next()
                .unwrap_or(FitError::NoCustomers));
        }
        let (xb, tb) = (x_dict.bits(), time_dict.bits());
        let key = |&(x, recency, t): &(f64, f64, f64)| -> u128 {
            let (xi, ti) = (x_dict.get(x), time_dict.get(t));
            // Times are sorted, so clamping recency to T is a min of indexes;
            // x = 0 ignores recency, so those rows share one key per T.
            let txi = if x == 0.0 {
                0
            } else {
                time_dict.get(recency).min(ti)
            };
            (u128::from(xi) << (2 * tb)) | (u128::from(txi) << tb) | u128::from(ti)
        };
        let rows = if xb + 2 * tb <= u64::BITS {
            rows_of_keys(triples.par_iter().map(|p| key(p) as u64).collect(), tb)
        } else {
            rows_of_keys(triples.par_iter().map(key).collect(), tb)
        };
        Ok(Self {
            xs: x_dict.values,
            times: time_dict.values,
            rows,
        })
    }

    /// Indexes weighted rows without collapsing them: one-time buyers first,
    /// then the repeat buyers, each in the order given (rows of weight 0 are
    /// dropped).
    pub fn from_rows(rows: &[WeightedRow]) -> Result<Self, FitError> {
        let mut clean = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if let Some(r) = validate_row(i, row)? {
                clean.push(r);
            }
        }
        let (x_dict, time_dict) = Dictionary::pair(&clean, |r| r.0, |r| [r.1, r.2]);
        let index = |&(x, tx, t, w): &(f64, f64, f64, f64)| IndexedRow {
            xi: x_dict.get(x),
            txi: time_dict.get(tx),
            ti: time_dict.get(t),
            w,
        };
        // One-time buyers first, each group in the order given.
        let rows = clean
            .iter()
            .filter(|r| r.0 == 0.0)
            .chain(clean.iter().filter(|r| r.0 != 0.0))
            .map(index)
            .collect();
        Ok(Self {
            xs: x_dict.values,
            times: time_dict.values,
            rows,
        })
    }

    /// Number of distinct rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as (frequency, recency, T, weight), recency clamped to T.
    pub fn weighted_rows(&self) -> Vec<WeightedRow> {
        self.rows
            .iter()
            .map(|r| {
                let x = self.xs[r.xi as usize];
                WeightedRow {
                    frequency: x,
                    recency: if x == 0.0 {
                        0.0
                    } else {
                        self.times[r.txi as usize]
                    },
                    t: self.times[r.ti as usize],
                    weight: r.w,
                }
            })
            .collect()
    }

    /// Every `step`-th row: rows are sorted by (x, t_x, T) when collapsed, so
    /// the sample spans all histories (and keeps one-time buyers first).
    fn every(&self, step: usize) -> Self {
        Self {
            xs: self.xs.clone(),
            times: self.times.clone(),
            rows: self.rows.iter().step_by(step.max(1)).copied().collect(),
        }
    }

    /// Total weight.
    fn total_weight(&self) -> f64 {
        self.rows.iter().map(|r| r.w).sum()
    }

    /// The likelihood's view of the rows. One-time buyers come first (both
    /// constructors put them there), so the repeat buyers are a slice.
    fn prepare(&self) -> Result<Prepared<'_>, FitError> {
        let total_weight = self.total_weight();
        if self.rows.is_empty() || total_weight <= 0.0 {
            return Err(FitError::NoCustomers);
        }
        // Weights are summed in row order, so the result does not depend on threads.
        let mut x_weight = vec![0.0; self.xs.len()];
        let mut zero_weight = vec![0.0; self.times.len()];
        let mut weighted_t = 0.0;
        for row in &self.rows {
            x_weight[row.xi as usize] += row.w;
            weighted_t += self.times[row.ti as usize] * row.w;
        }
        let repeat_from = self.rows.partition_point(|r| self.xs[r.xi as usize] == 0.0);
        for row in &self.rows[..repeat_from] {
            zero_weight[row.ti as usize] += row.w;
        }
        let repeat = &self.rows[repeat_from..];
        if repeat.is_empty() {
            return Err(FitError::AllZeroFrequency(total_weight));
        }
        Ok(Prepared {
            xs: &self.xs,
            x_weight,
            times: &self.times,
            zero_weight,
            repeat,
            total_weight,
            mean_t: weighted_t / total_weight,
        })
    }
}

/// Validates the `i`-th (frequency, recency, T) triple.
fn check(i: usize, &(x, recency, t): &(f64, f64, f64)) -> Result<(), FitError> {
    let row = WeightedRow {
        frequency: x,
        recency,
        t,
        weight: 1.0,
    };
    validate_row(i, &row).map(|_| ())
}

/// The distinct packed keys (x, t_x, T indexes, `time_bits` each for the
/// times), sorted, as weighted rows: one pass to size the result, one to
/// fill it, no growing.
fn rows_of_keys<K: Ord + Copy + Send + Into<u128>>(
    mut keys: Vec<K>,
    time_bits: u32,
) -> Vec<IndexedRow> {
    keys.par_sort_unstable();
    let distinct = keys.chunk_by(|a, b| a == b).count();
    let mask = (1u128 << time_bits) - 1;
    let mut rows = Vec::with_capacity(distinct);
    rows.extend(keys.chunk_by(|a, b| a == b).map(|run| {
        let k: u128 = run[0].into();
        IndexedRow {
            xi: (k >> (2 * time_bits)) as u32,
            txi: ((k >> time_bits) & mask) as u32,
            ti: (k & mask) as u32,
            w: run.len() as f64,
        }
    }));
    rows
}

/// Per-x quantities of the repeat-buyer term: ln(a / (b + x - 1)) and its
/// derivative in b.
#[derive(Debug, Clone, Copy, Default)]
struct XTerms {
    ln_q: f64,
    dq_db: f64,
}

/// Log-likelihood, gradient and Hessian with respect to (r, alpha, a, b).
type Derivs = (f64, [f64; 4], Matrix<4>);

/// Sums over repeat-buyer rows, each weighted by the row's count. With
/// S = ln(e^C + e^D), C = -(r+x) ln(alpha+T), D = ln q - (r+x) ln(alpha+t_x),
/// shares w3 = e^C/e^S and w4 = 1 - w3, and delta = grad D - grad C
/// = (d0, d1, 1/a, dq): grad S = w3 grad C + w4 grad D and
/// hess S = w3 hess C + w4 hess D + w3 w4 delta delta'. Indexes:
/// 0 S; 1 w3 L_T + w4 L_t; 2 (r+x)(w3 i_T + w4 i_t); 3 w3 i_T + w4 i_t;
/// 4 (r+x)(w3 i_T^2 + w4 i_t^2); 5 w4; 6 w4 dq; 7 w4 dq^2; then with
/// c = w3 w4: 8 c; 9 c d0; 10 c d1; 11 c dq; 12 c d0^2; 13 c d0 d1;
/// 14 c d0 dq; 15 c d1^2; 16 c d1 dq; 17 c dq^2 (L = ln(alpha + time),
/// i = 1 / (alpha + time)).
type RepeatSums = [f64; 18];

const CHUNK: usize = 16_384;

impl Prepared<'_> {
    /// Total log-likelihood with its gradient and Hessian in (r, alpha, a, b).
    fn derivs(&self, p: &BgNbdParams) -> Derivs {
        let BgNbdParams { r, alpha, a, b } = *p;
        let (mut ll, mut g, mut h) = (0.0, [0.0; 4], [[0.0; 4]; 4]);
        let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
        let (dg_r, dg_b, dg_ab) = (digamma(r), digamma(b), digamma(a + b));
        let (tg_r, tg_b, tg_ab) = (trigamma(r), trigamma(b), trigamma(a + b));
        let ln_alpha = alpha.ln();
        // A1 + A2 of FHL 2005 section 7 depend on x only.
        let mut xterms = vec![XTerms::default(); self.xs.len()];
        for (k, (&x, &w)) in self.xs.iter().zip(&self.x_weight).enumerate() {
            let a1 = ln_gamma(r + x) - lg_r + r * ln_alpha;
            let a2 = lg_ab + ln_gamma(b + x) - lg_b - ln_gamma(a + b + x);
            let (dg_abx, tg_abx) = (digamma(a + b + x), trigamma(a + b + x));
            ll += w * (a1 + a2);
            g[0] += w * (digamma(r + x) - dg_r + ln_alpha);
            g[1] += w * r / alpha;
            g[2] += w * (dg_ab - dg_abx);
            g[3] += w * (dg_ab + digamma(b + x) - dg_b - dg_abx);
            h[0][0] += w * (trigamma(r + x) - tg_r);
            h[0][1] += w / alpha;
            h[1][1] -= w * r / (alpha * alpha);
            h[2][2] += w * (tg_ab - tg_abx);
            h[2][3] += w * (tg_ab - tg_abx);
            h[3][3] += w * (tg_ab + trigamma(b + x) - tg_b - tg_abx);
            if x > 0.0 {
                xterms[k] = XTerms {
                    ln_q: a.ln() - (b + x - 1.0).ln(),
                    dq_db: -1.0 / (b + x - 1.0),
                };
            }
        }
        let ln_t: Vec<f64> = self.times.iter().map(|&v| (alpha + v).ln()).collect();
        let inv_t: Vec<f64> = self.times.iter().map(|&v| 1.0 / (alpha + v)).collect();
        // One-time buyers contribute only A3 = -r ln(alpha + T).
        for ((&w, &lt), &it) in self.zero_weight.iter().zip(&ln_t).zip(&inv_t) {
            if w > 0.0 {
                ll -= w * r * lt;
                g[0] -= w * lt;
                g[1] -= w * r * it;
                h[0][1] -= w * it;
                h[1][1] += w * r * it * it;
            }
        }
        let partial = |rows: &[IndexedRow]| -> RepeatSums {
            let mut s = [0.0; 18];
            for row in rows {
                let x = self.xs[row.xi as usize];
                let xt = xterms[row.xi as usize];
                let (lt, ltx) = (ln_t[row.ti as usize], ln_t[row.txi as usize]);
                let (it, itx) = (inv_t[row.ti as usize], inv_t[row.txi as usize]);
                let rx = r + x;
                let a3 = -rx * lt;
                let a4 = xt.ln_q - rx * ltx;
                // log-sum-exp of A3 and A4, with the shares w3 + w4 = 1.
                let e = (-(a3 - a4).abs()).exp();
                let lse = a3.max(a4) + e.ln_1p();
                let inv = 1.0 / (1.0 + e);
                let (w3, w4) = if a3 >= a4 {
                    (inv, e * inv)
                } else {
                    (e * inv, inv)
                };
                let w = row.w;
                let (ww3, ww4) = (w * w3, w * w4);
                let mix_i = ww3 * it + ww4 * itx;
                s[0] += w * lse;
                s[1] += ww3 * lt + ww4 * ltx;
                s[2] += rx * mix_i;
                s[3] += mix_i;
                s[4] += rx * (ww3 * it * it + ww4 * itx * itx);
                s[5] += ww4;
                s[6] += ww4 * xt.dq_db;
                s[7] += ww4 * xt.dq_db * xt.dq_db;
                let c = ww3 * w4;
                let (d0, d1, dq) = (lt - ltx, rx * (it - itx), xt.dq_db);
                let (cd0, cd1) = (c * d0, c * d1);
                s[8] += c;
                s[9] += cd0;
                s[10] += cd1;
                s[11] += c * dq;
                s[12] += cd0 * d0;
                s[13] += cd0 * d1;
                s[14] += cd0 * dq;
                s[15] += cd1 * d1;
                s[16] += cd1 * dq;
                s[17] += c * dq * dq;
            }
            s
        };
        // Fixed chunks summed in order keep the result bit-for-bit reproducible.
        let parts: Vec<RepeatSums> = if self.repeat.len() > 2 * CHUNK {
            self.repeat.par_chunks(CHUNK).map(partial).collect()
        } else {
            vec![partial(self.repeat)]
        };
        let mut s = [0.0; 18];
        for part in parts {
            for (acc, v) in s.iter_mut().zip(part) {
                *acc += v;
            }
        }
        ll += s[0];
        g[0] -= s[1];
        g[1] -= s[2];
        g[2] += s[5] / a;
        g[3] += s[6];
        h[0][0] += s[12];
        h[0][1] += s[13] - s[3];
        h[0][2] += s[9] / a;
        h[0][3] += s[14];
        h[1][1] += s[15] + s[4];
        h[1][2] += s[10] / a;
        h[1][3] += s[16];
        h[2][2] += (s[8] - s[5]) / (a * a);
        h[2][3] += s[11] / a;
        h[3][3] += s[17] + s[7];
        let h = std::array::from_fn(|i| std::array::from_fn(|j| h[i.min(j)][i.max(j)]));
        (ll, g, h)
    }
}

impl BgNbdParams {
    fn from_log(v: &[f64; 4]) -> Self {
        Self {
            r: v[0].exp(),
            alpha: v[1].exp(),
            a: v[2].exp(),
            b: v[3].exp(),
        }
    }

    fn is_valid(&self) -> bool {
        [self.r, self.alpha, self.a, self.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    }

    /// Log-likelihood of one customer history (FHL 2005 eq. 6 in log space).
    pub fn log_likelihood(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x <= 0.0 {
            return a1 + a2 + a3;
        }
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x.min(t)).ln();
        a1 + a2 + a3.max(a4) + (-(a3 - a4).abs()).exp().ln_1p()
    }

    /// P(alive | x, t_x, T) (Hardie note 021); 1 for x = 0.
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x <= 0.0 {
            return 1.0;
        }
        let log_div = (self.r + x) * ((self.alpha + t) / (self.alpha + t_x.min(t))).ln()
            + (self.a / (self.b + x - 1.0)).ln();
        logistic(-log_div)
    }

    /// Conditional expected number of repeat purchases in (T, T + t] given the
    /// history (FHL 2005 eq. 10), computed in log space (see [`ln_scaled_hyp2f1`]).
    pub fn conditional_expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> f64 {
        if horizon <= 0.0 {
            return 0.0;
        }
        let BgNbdParams { r, alpha, b, .. } = *self;
        let a = nudge_away_from_one(self.a);
        let c = a + b + x - 1.0;
        let ln_1mz = -(horizon / (alpha + t)).ln_1p();
        let z = horizon / (alpha + t + horizon);
        let euler = (a + b - 1.0 - r, a - 1.0);
        let second = -ln_scaled_hyp2f1(c, z, ln_1mz, (r + x, b + x), euler).exp_m1();
        let numerator = (c / (a - 1.0)) * second;
        let denominator = if x > 0.0 {
            1.0 + ((a / (b + x - 1.0)).ln() + (r + x) * ((alpha + t) / (alpha + t_x.min(t))).ln())
                .exp()
        } else {
            1.0
        };
        numerator / denominator
    }

    /// Unconditional E[X(t)] for a customer just acquired (FHL 2005 eq. 9).
    pub fn expected_purchases(&self, horizon: f64) -> f64 {
        if horizon <= 0.0 {
            return 0.0;
        }
        let BgNbdParams { r, alpha, b, .. } = *self;
        let a = nudge_away_from_one(self.a);
        let z = horizon / (alpha + horizon);
        let ln_1mz = -(horizon / alpha).ln_1p();
        // (alpha/(alpha+t))^r 2F1(r, b; a+b-1; z) = (1-z)^r 2F1(r, b; a+b-1; z).
        let euler = (a + b - 1.0 - r, a - 1.0);
        let ln_f = ln_scaled_hyp2f1(a + b - 1.0, z, ln_1mz, (r, b), euler);
        ((a + b - 1.0) / (a - 1.0)) * -ln_f.exp_m1()
    }
}

/// ln[(1-z)^p 2F1(p, q; c; z)] (`ln_1mz` = ln(1-z); `raw` = (p, q), `euler`
/// = (c - p, c - q) as the expectations compute them, p > 0). Two series give
/// it: the Gauss series of 2F1(p, q; c; z) itself, and that of its Euler
/// transform (1-z)^(c-p-q) 2F1(c-p, c-q; c; z), in which (1-z)^p folds into
/// (1-z)^(c-q). Each one's terms grow until about index k z / (1 - z), k
/// being its smaller upper parameter (p; c - q = a - 1), so the one with the
/// smaller k is summed: the transformed one when x is large, the raw one when
/// a is (a dropout probability without heterogeneity: a and b both in the
/// millions, which a small shop's histories can fit).
fn ln_scaled_hyp2f1(c: f64, z: f64, ln_1mz: f64, raw: (f64, f64), euler: (f64, f64)) -> f64 {
    let ((p, q), (ep, eq)) = (raw, euler);
    if eq < p {
        eq * ln_1mz + ln_hyp2f1(ep, eq, c, z)
    } else {
        p * ln_1mz + ln_hyp2f1(p, q, c, z)
    }
}

/// The expectations divide by (a - 1); at exactly a = 1 the singularity is
/// removable, so evaluating next to it is accurate to ~1e-7 relative.
fn nudge_away_from_one(a: f64) -> f64 {
    if (a - 1.0).abs() < 1e-7 {
        1.0 + 1e-7
    } else {
        a
    }
}

/// 1 / (1 + exp(-v)) without overflow.
fn logistic(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// ln 2F1(a, b; c; z) for 0 <= z < 1 by the Gauss series, summed until the terms
/// are below 1e-17 of the sum once they decrease. The sum is kept scaled (its
/// logarithm carried apart), so terms that grow past f64's range before they
/// decay cost accuracy of no one. The callers pick the series whose terms peak
/// early (see [`ln_scaled_hyp2f1`]); beyond the first they share one sign for
/// the usual a, b, r, so there is no cancellation.
/// Returns NaN if the series does not converge in 10^6 terms or is not positive.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if z == 0.0 {
        return 0.0;
    }
    let finite = a.is_finite() && b.is_finite() && c.is_finite();
    if !finite || !(0.0..1.0).contains(&z) {
        return f64::NAN;
    }
    let (mut term, mut sum, mut ln_scale) = (1.0_f64, 1.0_f64, 0.0_f64);
    for n in 0..1_000_000_u32 {
        let n = f64::from(n);
        let ratio = (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        term *= ratio;
        sum += term;
        if term == 0.0 || (ratio.abs() < 1.0 && term.abs() <= 1e-17 * sum.abs()) {
            return if sum > 0.0 {
                sum.ln() + ln_scale
            } else {
                f64::NAN
            };
        }
        if sum.abs() > 1e250 {
            ln_scale += sum.abs().ln();
            term /= sum.abs();
            sum = sum.signum();
        }
    }
    f64::NAN
}

/// Largest |log-parameter| accepted as an interior maximum (e^30 ~ 1e13).
const LOG_BOUND: f64 = 30.0;

/// Distinct rows above which the fit first runs on a systematic sample.
const WARM_START_ROWS: usize = 200_000;
/// About how many rows that sample has: its optimum lies close enough to the
/// full one that Newton then needs only a few passes over all rows.
const SAMPLE_ROWS: usize = 40_000;

/// Fits BG/NBD by maximum likelihood on weighted rows (see [`Histories`]).
pub fn fit(rows: &[WeightedRow]) -> FitReport<BgNbdParams> {
    match Histories::from_rows(rows) {
        Ok(h) => fit_histories(&h),
        Err(e) => {
            let valid = rows
                .iter()
                .filter(|r| r.weight.is_finite() && r.weight > 0.0);
            FitReport::failed(valid.map(|r| r.weight).sum(), 0, e)
        }
    }
}

/// Fits BG/NBD on one (frequency, recency, T) triple per customer, collapsed
/// first; also returns the number of distinct rows fitted on.
pub fn fit_customers(triples: &[(f64, f64, f64)]) -> (FitReport<BgNbdParams>, usize) {
    match Histories::collapse(triples) {
        Ok(h) => (fit_histories(&h), h.len()),
        Err(e) => (FitReport::failed(triples.len() as f64, 0, e), 0),
    }
}

/// Fits BG/NBD by maximum likelihood on collapsed histories. Runs Newton's
/// method from several starting points (on large inputs first from the
/// optimum of a systematic sample), then Nelder-Mead polished by Newton.
pub fn fit_histories(histories: &Histories) -> FitReport<BgNbdParams> {
    fit_sampled(histories, WARM_START_ROWS, SAMPLE_ROWS)
}

/// [`fit_histories`] with the warm-start thresholds as parameters (for tests).
pub(crate) fn fit_sampled(
    histories: &Histories,
    warm_start_rows: usize,
    sample_rows: usize,
) -> FitReport<BgNbdParams> {
    let data = match histories.prepare() {
        Ok(d) => d,
        Err(e) => return FitReport::failed(histories.total_weight(), 0, e),
    };
    let m_t = data.mean_t.max(1e-3).ln();
    let mut starts = vec![
        [0.0, m_t, 0.0, 0.0],
        [(0.25f64).ln(), m_t - 1.0, (0.8f64).ln(), (2.5f64).ln()],
        [-2.3, -2.3, -2.3, -2.3],
    ];
    let mut iterations = 0;
    if histories.len() > warm_start_rows && sample_rows > 0 {
        let sample = histories.every(histories.len() / sample_rows);
        if let Ok(sample) = sample.prepare() {
            let (result, spent) = minimize(&sample, &starts);
            iterations += spent;
            if let Ok(m) = result {
                starts.insert(0, m.x);
            }
        }
    }
    let (result, spent) = minimize(&data, &starts);
    iterations += spent;
    match result {
        Ok(m) => finish(&data, m, iterations),
        Err(e) => FitReport::failed(data.total_weight, iterations, e),
    }
}

/// Minimises the mean negative log-likelihood over log-parameters (so the
/// tolerances do not depend on the number of customers).
fn minimize(data: &Prepared<'_>, starts: &[[f64; 4]]) -> (Result<Minimum<4>, FitError>, usize) {
    let n = data.total_weight;
    // The log-likelihood's derivatives carried over to the objective:
    // theta = ln(param), so d/dtheta = param d/dparam and the Hessian gains
    // the gradient on its diagonal.
    let objective_hessian = |v: &[f64; 4], grad: &mut [f64; 4], hess: &mut Matrix<4>| -> f64 {
        let p = BgNbdParams::from_log(v);
        if !p.is_valid() || v.iter().any(|t| t.abs() > 2.0 * LOG_BOUND) {
            return f64::NAN;
        }
        let (ll, g, h) = data.derivs(&p);
        let natural = [p.r, p.alpha, p.a, p.b];
        for i in 0..4 {
            grad[i] = -g[i] * natural[i] / n;
            for j in 0..4 {
                hess[i][j] = -h[i][j] * natural[i] * natural[j] / n;
            }
            hess[i][i] += grad[i];
        }
        -ll / n
    };
    let objective = |v: &[f64; 4], grad: &mut [f64; 4]| -> f64 {
        objective_hessian(v, grad, &mut [[0.0; 4]; 4])
    };
    // A sound fit converges in well under 100 Newton steps; more means the
    // search walks a ridge to the boundary, which the fallback then reports.
    let tol = Tolerances {
        max_iter: 100,
        ..Tolerances::default()
    };
    let local = |x0| newton(objective_hessian, x0, tol);
    minimize_with_fallback(objective, local, starts)
}

fn finish(data: &Prepared<'_>, m: Minimum<4>, iterations: usize) -> FitReport<BgNbdParams> {
    let p = BgNbdParams::from_log(&m.x);
    if !p.is_valid() || m.x.iter().any(|v| v.abs() > LOG_BOUND) {
        let detail = format!("r={} alpha={} a={} b={}", p.r, p.alpha, p.a, p.b);
        return FitReport::failed(data.total_weight, iterations, FitError::Diverged(detail));
    }
    // The minimum's objective is the mean negative log-likelihood: no extra pass.
    let ll = -m.f * data.total_weight;
    FitReport {
        params: Some(p),
        log_likelihood: Some(ll),
        n_customers: data.total_weight,
        iterations,
        converged: true,
        reason: None,
    }
}

#[cfg(test)]
mod derivative_tests {
    use super::*;

    fn rows() -> Vec<WeightedRow> {
        let mut v = Vec::new();
        for i in 0..200u32 {
            let x = f64::from(i % 7) * f64::from(1 + i % 3);
            let t = 20.0 + f64::from(i % 50) * 0.7;
            let tx = if x == 0.0 {
                0.0
            } else {
                t * f64::from(i % 11) / 11.0
            };
            v.push(WeightedRow {
                frequency: x,
                recency: tx,
                t,
                weight: f64::from(1 + i % 4),
            });
        }
        v
    }

    #[test]
    fn analytic_gradient_and_hessian_match_finite_differences() {
        let histories = Histories::from_rows(&rows()).unwrap();
        let data = histories.prepare().unwrap();
        let at = [0.7, 3.1, 0.9, 2.2];
        let params = |v: [f64; 4]| BgNbdParams {
            r: v[0],
            alpha: v[1],
            a: v[2],
            b: v[3],
        };
        let (_, g, h) = data.derivs(&params(at));
        for i in 0..4 {
            let step = 1e-5 * at[i];
            let mut up = at;
            up[i] += step;
            let mut down = at;
            down[i] -= step;
            let (lu, gu, _) = data.derivs(&params(up));
            let (ld, gd, _) = data.derivs(&params(down));
            let fd = (lu - ld) / (2.0 * step);
            assert!(
                (fd - g[i]).abs() <= 1e-6 * g[i].abs().max(1.0),
                "grad {i}: {fd} vs {}",
                g[i]
            );
            for j in 0..4 {
                let fd = (gu[j] - gd[j]) / (2.0 * step);
                assert!(
                    (fd - h[i][j]).abs() <= 1e-5 * h[i][j].abs().max(1.0),
                    "hessian {i},{j}: {fd} vs {}",
                    h[i][j]
                );
            }
        }
    }
}

#[cfg(test)]
mod collapse_tests {
    use super::*;

    fn row(frequency: f64, recency: f64, t: f64, weight: f64) -> WeightedRow {
        WeightedRow {
            frequency,
            recency,
            t,
            weight,
        }
    }

    fn assert_collapses_to(triples: &[(f64, f64, f64)], expected: &[WeightedRow]) {
        let h = Histories::collapse(triples).unwrap();
        assert_eq!(h.weighted_rows(), expected);
    }

    #[test]
    fn collapse_counts_identical_histories_and_sorts_them() {
        let triples = [
            (2.0, 3.5, 10.0),
            (0.0, 0.0, 4.0),
            (2.0, 3.5, 10.0),
            (1.0, 7.0, 7.0),
            (0.0, 0.0, 4.0),
            (2.0, 3.5, 10.0),
        ];
        assert_collapses_to(
            &triples,
            &[
                row(0.0, 0.0, 4.0, 2.0),
                row(1.0, 7.0, 7.0, 1.0),
                row(2.0, 3.5, 10.0, 3.0),
            ],
        );
    }

    #[test]
    fn collapse_clamps_recency_to_t_and_ignores_recency_without_repeats() {
        let triples = [
            (2.0, 50.0, 30.0),
            (2.0, 30.0, 30.0),
            (0.0, 9.0, 20.0),
            (0.0, 0.0, 20.0),
        ];
        assert_collapses_to(
            &triples,
            &[row(0.0, 0.0, 20.0, 2.0), row(2.0, 30.0, 30.0, 2.0)],
        );
    }

    #[test]
    fn collapse_names_the_first_invalid_triple() {
        let mut triples = vec![(1.0, 2.0, 3.0); 10];
        triples[7] = (1.5, 2.0, 3.0);
        triples[9] = (1.0, -2.0, 3.0);
        match Histories::collapse(&triples) {
            Err(FitError::InvalidInput { row, what }) => {
                assert_eq!(row, 7);
                assert!(what.contains("frequency"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wide_keys_decode_to_the_same_rows() {
        // Indexes too wide for a u64 key (over 2^21 distinct times) take u128 keys.
        let bits = 33;
        let key = |x: u32, tx: u32, t: u32| {
            (u128::from(x) << (2 * bits)) | (u128::from(tx) << bits) | u128::from(t)
        };
        let big = u32::MAX;
        let rows = rows_of_keys(vec![key(3, big, big), key(0, 0, 5), key(3, big, big)], bits);
        let got: Vec<_> = rows.iter().map(|r| (r.xi, r.txi, r.ti, r.w)).collect();
        assert_eq!(got, [(0, 0, 5, 1.0), (3, big, big, 2.0)]);
    }
}
