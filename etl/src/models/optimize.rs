//! Small unconstrained minimisers for the model fits: Newton's method with a
//! shifted-Cholesky Hessian (Nocedal & Wright 2006, sec. 3.4; BG/NBD, which
//! has an analytic Hessian), BFGS with a backtracking line search (alg. 6.1;
//! Gamma-Gamma) and a Nelder-Mead fallback
//! (Lagarias et al. 1998 coefficients). The models have 3 or 4 parameters, so
//! dense fixed-size arrays are the simplest fast representation.

use thiserror::Error;

/// Why a model could not be fitted; `Display` is the reason for the run manifest.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FitError {
    /// No customer with a positive weight was given.
    #[error("no customers to fit")]
    NoCustomers,
    /// BG/NBD needs repeat buyers to identify the dropout process (a, b).
    #[error("all {0} customers have zero frequency: the dropout parameters cannot be identified")]
    AllZeroFrequency(f64),
    /// An input row is not a valid observation.
    #[error("invalid input row {row}: {what}")]
    InvalidInput {
        /// Index of the offending row in the input slice.
        row: usize,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The optimiser ran out of iterations or could not make progress.
    #[error("no convergence after {iterations} iterations: {detail}")]
    NotConverged {
        /// Iterations spent over all attempts.
        iterations: usize,
        /// Last state of the search, for diagnosis.
        detail: String,
    },
    /// The maximum lies at the boundary (a parameter goes to 0 or infinity).
    #[error("estimates diverge (parameter at the boundary of the space): {0}")]
    Diverged(String),
}

/// Outcome of a maximum-likelihood fit, ready for the run manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport<P> {
    /// The estimates; `Some` only when the fit converged to finite values.
    pub params: Option<P>,
    /// Total log-likelihood at `params` (sum over weighted customers).
    pub log_likelihood: Option<f64>,
    /// Number of customers fitted on (sum of weights).
    pub n_customers: f64,
    /// Optimiser iterations, summed over all attempts.
    pub iterations: usize,
    /// Whether the estimates can be used.
    pub converged: bool,
    /// Why the fit failed, when it did.
    pub reason: Option<FitError>,
}

impl<P> FitReport<P> {
    /// A failed fit carrying only the reason.
    pub(crate) fn failed(n_customers: f64, iterations: usize, reason: FitError) -> Self {
        Self {
            params: None,
            log_likelihood: None,
            n_customers,
            iterations,
            converged: false,
            reason: Some(reason),
        }
    }

    /// The reason as text (empty when the fit converged).
    pub fn reason_text(&self) -> String {
        self.reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// Result of one minimisation.
#[derive(Debug, Clone, Copy)]
pub struct Minimum<const N: usize> {
    /// Arg-min found.
    pub x: [f64; N],
    /// Objective value there.
    pub f: f64,
    /// Infinity norm of the gradient there (NaN for Nelder-Mead).
    pub grad_norm: f64,
    /// Iterations used.
    pub iterations: usize,
    /// Whether the stopping test was met.
    pub converged: bool,
}

/// Stopping rules shared by the minimisers.
#[derive(Debug, Clone, Copy)]
pub struct Tolerances {
    /// Converged when the gradient's infinity norm falls below this.
    pub grad: f64,
    /// Maximum iterations.
    pub max_iter: usize,
    /// Largest move of one line-search trial in any coordinate (log-parameters:
    /// keeps exp() of a trial point finite).
    pub max_step: f64,
    /// Stop (not converged) once any coordinate exceeds this in absolute value:
    /// the maximum is at the boundary and further iterations only walk a ridge.
    pub max_abs_x: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            grad: 1e-10,
            max_iter: 1000,
            max_step: 4.0,
            max_abs_x: 30.0,
        }
    }
}

/// How much larger than `Tolerances::grad` the gradient may be when the
/// objective has stopped changing at machine precision.
const STALL_GRAD_FACTOR: f64 = 1e3;

fn dot<const N: usize>(a: &[f64; N], b: &[f64; N]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm<const N: usize>(a: &[f64; N]) -> f64 {
    a.iter().fold(0.0_f64, |m, v| m.max(v.abs()))
}

fn identity<const N: usize>() -> [[f64; N]; N] {
    let mut h = [[0.0; N]; N];
    for (i, row) in h.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    h
}

/// BFGS on the inverse Hessian. `fg(x, grad)` returns f(x) and writes its
/// gradient; non-finite values are treated as "outside the domain" by the line search.
pub fn bfgs<const N: usize>(
    mut fg: impl FnMut(&[f64; N], &mut [f64; N]) -> f64,
    x0: [f64; N],
    tol: Tolerances,
) -> Minimum<N> {
    let mut x = x0;
    let mut g = [0.0; N];
    let mut f = fg(&x, &mut g);
    let mut h = identity::<N>();
    let mut fresh = true;
    let mut it = 0;
    if !f.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Minimum {
            x,
            f,
            grad_norm: f64::NAN,
            iterations: 0,
            converged: false,
        };
    }
    while it < tol.max_iter {
        if inf_norm(&g) < tol.grad {
            return Minimum {
                x,
                f,
                grad_norm: inf_norm(&g),
                iterations: it,
                converged: true,
            };
        }
        it += 1;
        let mut d = [0.0; N];
        for i in 0..N {
            d[i] = -dot(&h[i], &g);
        }
        if dot(&d, &g) >= 0.0 {
            // Not a descent direction: the curvature model went bad, restart.
            h = identity();
            fresh = true;
            d = g.map(|v| -v);
        }
        let Some((x_new, f_new, g_new)) = line_search(&mut fg, &x, f, &g, &d, tol.max_step) else {
            if fresh {
                // Even steepest descent cannot decrease f: we sit at the
                // precision limit of the objective.
                let gn = inf_norm(&g);
                return Minimum {
                    x,
                    f,
                    grad_norm: gn,
                    iterations: it,
                    converged: gn < STALL_GRAD_FACTOR * tol.grad,
                };
            }
            h = identity();
            fresh = true;
            continue;
        };
        let s: [f64; N] = std::array::from_fn(|i| x_new[i] - x[i]);
        let y: [f64; N] = std::array::from_fn(|i| g_new[i] - g[i]);
        let sy = dot(&s, &y);
        if sy > 1e-300 && sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if fresh {
                // Scale the initial inverse Hessian to the observed curvature.
                let scale = sy / dot(&y, &y);
                h = identity();
                h.iter_mut()
                    .for_each(|row| row.iter_mut().for_each(|v| *v *= scale));
                fresh = false;
            }
            update_inverse_hessian(&mut h, &s, &y, sy);
        }
        // Once f no longer changes beyond rounding, a smaller gradient cannot be
        // resolved by the line search: accept a nearly-zero gradient as converged.
        let stalled = (f - f_new).abs() <= 8.0 * f64::EPSILON * f.abs().max(1.0);
        x = x_new;
        f = f_new;
        g = g_new;
        if stalled && inf_norm(&g) < STALL_GRAD_FACTOR * tol.grad {
            return Minimum {
                x,
                f,
                grad_norm: inf_norm(&g),
                iterations: it,
                converged: true,
            };
        }
        if inf_norm(&x) > tol.max_abs_x {
            break;
        }
    }
    Minimum {
        x,
        f,
        grad_norm: inf_norm(&g),
        iterations: it,
        converged: inf_norm(&g) < tol.grad,
    }
}

/// H <- (I - rho s y') H (I - rho y s') + rho s s', rho = 1 / (y's).
fn update_inverse_hessian<const N: usize>(
    h: &mut [[f64; N]; N],
    s: &[f64; N],
    y: &[f64; N],
    sy: f64,
) {
    let rho = 1.0 / sy;
    let hy: [f64; N] = std::array::from_fn(|i| dot(&h[i], y));
    let yhy = dot(y, &hy);
    for i in 0..N {
        for j in 0..N {
            h[i][j] += (1.0 + rho * yhy) * rho * s[i] * s[j] - rho * (hy[i] * s[j] + s[i] * hy[j]);
        }
    }
}

/// A square matrix of the minimisers' size.
pub type Matrix<const N: usize> = [[f64; N]; N];

/// Newton's method with an analytic Hessian: `fgh(x, grad, hess)` returns
/// f(x) and writes its gradient and Hessian. Where the Hessian is not positive
/// definite it is shifted by mu*I until its Cholesky factorisation succeeds
/// (Levenberg), and every step goes through the line search BFGS uses. Near
/// the minimum it converges quadratically, so it needs a handful of passes
/// over the data where BFGS needs tens.
pub fn newton<const N: usize>(
    mut fgh: impl FnMut(&[f64; N], &mut [f64; N], &mut Matrix<N>) -> f64,
    x0: [f64; N],
    tol: Tolerances,
) -> Minimum<N> {
    let mut x = x0;
    let mut g = [0.0; N];
    let mut h = [[0.0; N]; N];
    let mut f = fgh(&x, &mut g, &mut h);
    let end = |x, f, g: &[f64; N], it, converged| Minimum {
        x,
        f,
        grad_norm: inf_norm(g),
        iterations: it,
        converged,
    };
    if !f.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Minimum {
            grad_norm: f64::NAN,
            ..end(x, f, &g, 0, false)
        };
    }
    let mut it = 0;
    while it < tol.max_iter {
        let gn = inf_norm(&g);
        if gn < tol.grad {
            return end(x, f, &g, it, true);
        }
        it += 1;
        let steepest = g.map(|v| -v);
        let d = newton_direction(&h, &g).filter(|d| dot(d, &g) < 0.0);
        // The Newton decrement -g'd predicts the decrease left; once that is
        // below the rounding of f, line searches would only chase noise.
        let rounding = 16.0 * f64::EPSILON * f.abs();
        if d.is_some_and(|d| -dot(&d, &g) <= rounding) && gn < STALL_GRAD_FACTOR * tol.grad {
            return end(x, f, &g, it, true);
        }
        let mut h_new = h;
        // The line search returns right after evaluating the point it accepts,
        // so h_new then holds that point's Hessian.
        let mut step = |d: &[f64; N]| {
            line_search(
                &mut |v: &[f64; N], gv: &mut [f64; N]| fgh(v, gv, &mut h_new),
                &x,
                f,
                &g,
                d,
                tol.max_step,
            )
        };
        let accepted = match d {
            Some(d) => step(&d).or_else(|| step(&steepest)),
            None => step(&steepest),
        };
        let Some((x_new, f_new, g_new)) = accepted else {
            // Not even steepest descent decreases f: the precision limit.
            return end(x, f, &g, it, gn < STALL_GRAD_FACTOR * tol.grad);
        };
        let stalled = (f - f_new).abs() <= 8.0 * f64::EPSILON * f.abs().max(1.0);
        (x, f, g, h) = (x_new, f_new, g_new, h_new);
        if stalled && inf_norm(&g) < STALL_GRAD_FACTOR * tol.grad {
            return end(x, f, &g, it, true);
        }
        if inf_norm(&x) > tol.max_abs_x {
            break;
        }
    }
    let converged = inf_norm(&g) < tol.grad;
    end(x, f, &g, it, converged)
}

/// Solves (H + mu I) d = -g for the smallest mu >= 0 (from a geometric ladder)
/// that makes H + mu I positive definite; None if the Hessian is not finite.
fn newton_direction<const N: usize>(h: &Matrix<N>, g: &[f64; N]) -> Option<[f64; N]> {
    if h.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let scale = (0..N)
        .map(|i| h[i][i].abs())
        .fold(f64::MIN_POSITIVE, f64::max);
    let mut mu = 0.0;
    for _ in 0..40 {
        if let Some(l) = cholesky(h, mu) {
            return Some(cholesky_solve(&l, &g.map(|v| -v)));
        }
        mu = if mu == 0.0 { 1e-10 * scale } else { 10.0 * mu };
    }
    None
}

/// Lower-triangular L with L L' = H + mu I, or None if that is not positive definite.
fn cholesky<const N: usize>(h: &Matrix<N>, mu: f64) -> Option<Matrix<N>> {
    let mut l = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..=i {
            let shift = if i == j { mu } else { 0.0 };
            let v = h[i][j] + shift - dot(&l[i], &l[j]);
            if i == j {
                // NaN fails too.
                if v.is_nan() || v <= 0.0 {
                    return None;
                }
                l[i][i] = v.sqrt();
            } else {
                l[i][j] = v / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves L L' x = b by forward and back substitution.
fn cholesky_solve<const N: usize>(l: &Matrix<N>, b: &[f64; N]) -> [f64; N] {
    let mut y = [0.0; N];
    for i in 0..N {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; N];
    for i in (0..N).rev() {
        x[i] = (y[i] - (i + 1..N).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

type Trial<const N: usize> = ([f64; N], f64, [f64; N]);

/// Backtracking (Armijo) line search with quadratic interpolation; returns the
/// accepted point, or None when no finite decrease was found.
fn line_search<const N: usize>(
    fg: &mut impl FnMut(&[f64; N], &mut [f64; N]) -> f64,
    x: &[f64; N],
    f: f64,
    g: &[f64; N],
    d: &[f64; N],
    max_step: f64,
) -> Option<Trial<N>> {
    let slope = dot(g, d);
    let dn = inf_norm(d);
    let mut step = if dn > max_step { max_step / dn } else { 1.0 };
    for _ in 0..60 {
        let xt: [f64; N] = std::array::from_fn(|i| x[i] + step * d[i]);
        let mut gt = [0.0; N];
        let ft = fg(&xt, &mut gt);
        let finite = ft.is_finite() && gt.iter().all(|v| v.is_finite());
        if finite && ft <= f + 1e-4 * step * slope {
            return Some((xt, ft, gt));
        }
        let next = if finite {
            // Minimiser of the quadratic through f, slope and f(step).
            let q = -slope * step * step / (2.0 * (ft - f - slope * step));
            q.clamp(0.1 * step, 0.5 * step)
        } else {
            0.25 * step
        };
        step = next;
    }
    None
}

/// Nelder-Mead simplex search, the fallback when Newton or BFGS fails (it needs no gradient
/// and tolerates non-finite regions, which are treated as +infinity).
pub fn nelder_mead<const N: usize>(
    mut f: impl FnMut(&[f64; N]) -> f64,
    x0: [f64; N],
    initial_size: f64,
    max_iter: usize,
) -> Minimum<N> {
    let mut eval = |x: &[f64; N]| {
        let v = f(x);
        if v.is_nan() { f64::INFINITY } else { v }
    };
    let mut simplex: Vec<([f64; N], f64)> = Vec::with_capacity(N + 1);
    simplex.push((x0, eval(&x0)));
    for i in 0..N {
        let mut xi = x0;
        xi[i] += initial_size;
        simplex.push((xi, eval(&xi)));
    }
    let mut it = 0;
    while it < max_iter {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let spread = (simplex[N].1 - simplex[0].1).abs();
        let size = simplex[1..]
            .iter()
            .map(|(x, _)| {
                inf_norm(&std::array::from_fn::<f64, N, _>(|k| {
                    x[k] - simplex[0].0[k]
                }))
            })
            .fold(0.0, f64::max);
        if simplex[0].1.is_finite() && spread <= 1e-14 * (1.0 + simplex[0].1.abs()) && size < 1e-9 {
            return Minimum {
                x: simplex[0].0,
                f: simplex[0].1,
                grad_norm: f64::NAN,
                iterations: it,
                converged: true,
            };
        }
        it += 1;
        nelder_mead_step(&mut simplex, &mut eval);
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    Minimum {
        x: simplex[0].0,
        f: simplex[0].1,
        grad_norm: f64::NAN,
        iterations: it,
        converged: false,
    }
}

fn nelder_mead_step<const N: usize>(
    simplex: &mut [([f64; N], f64)],
    eval: &mut impl FnMut(&[f64; N]) -> f64,
) {
    let centroid: [f64; N] =
        std::array::from_fn(|k| simplex[..N].iter().map(|(x, _)| x[k]).sum::<f64>() / N as f64);
    let worst = simplex[N];
    let along = |t: f64| -> [f64; N] {
        std::array::from_fn(|k| centroid[k] + t * (worst.0[k] - centroid[k]))
    };
    let xr = along(-1.0);
    let fr = eval(&xr);
    if fr < simplex[0].1 {
        let xe = along(-2.0);
        let fe = eval(&xe);
        simplex[N] = if fe < fr { (xe, fe) } else { (xr, fr) };
    } else if fr < simplex[N - 1].1 {
        simplex[N] = (xr, fr);
    } else {
        let t = if fr < worst.1 { -0.5 } else { 0.5 };
        let xc = along(t);
        let fc = eval(&xc);
        if fc < worst.1.min(fr) {
            simplex[N] = (xc, fc);
        } else {
            // Shrink towards the best vertex.
            let best = simplex[0].0;
            for v in simplex[1..].iter_mut() {
                let xs: [f64; N] = std::array::from_fn(|k| best[k] + 0.5 * (v.0[k] - best[k]));
                *v = (xs, eval(&xs));
            }
        }
    }
}

/// Minimises `objective` over log-parameters: the gradient-based `local`
/// search (BFGS or Newton from a start point) from each start in turn until
/// one converges; if none does and not all ran off to the boundary,
/// Nelder-Mead from the best end point, polished by `local`. Returns the
/// minimum and the iterations spent, or why there is none.
pub fn minimize_with_fallback<const N: usize>(
    objective: impl Fn(&[f64; N], &mut [f64; N]) -> f64 + Copy,
    local: impl Fn([f64; N]) -> Minimum<N>,
    starts: &[[f64; N]],
) -> (Result<Minimum<N>, FitError>, usize) {
    let tol = Tolerances::default();
    let mut iterations = 0;
    let mut best: Option<Minimum<N>> = None;
    let mut all_diverged = true;
    for start in starts {
        let m = local(*start);
        iterations += m.iterations;
        if m.converged && inf_norm(&m.x) <= tol.max_abs_x {
            return (Ok(m), iterations);
        }
        all_diverged &= inf_norm(&m.x) > tol.max_abs_x;
        if m.f.is_finite() && best.is_none_or(|b| m.f < b.f) {
            best = Some(m);
        }
    }
    if all_diverged {
        let detail = best
            .map(|b| format!("log-parameters {:?}", b.x))
            .unwrap_or_default();
        return (Err(FitError::Diverged(detail)), iterations);
    }
    let from = best.map_or(starts[0], |b| b.x);
    let mut scratch = [0.0; N];
    let nm = nelder_mead(|v| objective(v, &mut scratch), from, 0.5, 2_000);
    iterations += nm.iterations;
    let polished = local(nm.x);
    iterations += polished.iterations;
    let result = if polished.converged && inf_norm(&polished.x) <= tol.max_abs_x {
        Ok(polished)
    } else if nm.converged && inf_norm(&nm.x) <= tol.max_abs_x {
        Ok(nm)
    } else if inf_norm(&polished.x) > tol.max_abs_x {
        Err(FitError::Diverged(format!(
            "log-parameters {:?}",
            polished.x
        )))
    } else {
        let detail = format!(
            "last log-parameters {:?}, objective {}",
            polished.x, polished.f
        );
        Err(FitError::NotConverged { iterations, detail })
    };
    (result, iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64; 2], g: &mut [f64; 2]) -> f64 {
        g[0] = -2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] * x[0]);
        g[1] = 200.0 * (x[1] - x[0] * x[0]);
        (1.0 - x[0]).powi(2) + 100.0 * (x[1] - x[0] * x[0]).powi(2)
    }

    #[test]
    fn bfgs_solves_rosenbrock() {
        let m = bfgs(
            rosenbrock,
            [-1.2, 1.0],
            Tolerances {
                max_step: 10.0,
                ..Tolerances::default()
            },
        );
        assert!(m.converged, "{m:?}");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-8 && (m.x[1] - 1.0).abs() < 1e-8,
            "{m:?}"
        );
    }

    #[test]
    fn nelder_mead_solves_rosenbrock() {
        let mut g = [0.0; 2];
        let m = nelder_mead(|x| rosenbrock(x, &mut g), [-1.2, 1.0], 0.5, 5000);
        assert!(m.converged, "{m:?}");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6,
            "{m:?}"
        );
    }

    fn rosenbrock_hessian(x: &[f64; 2], g: &mut [f64; 2], h: &mut Matrix<2>) -> f64 {
        *h = [
            [2.0 - 400.0 * (x[1] - 3.0 * x[0] * x[0]), -400.0 * x[0]],
            [-400.0 * x[0], 200.0],
        ];
        rosenbrock(x, g)
    }

    #[test]
    fn newton_solves_rosenbrock_through_its_indefinite_region() {
        // At (-1.2, 1) the Hessian is indefinite: the shifted Cholesky must cope.
        let m = newton(rosenbrock_hessian, [-1.2, 1.0], Tolerances::default());
        assert!(m.converged, "{m:?}");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-10 && (m.x[1] - 1.0).abs() < 1e-10,
            "{m:?}"
        );
        // Quadratic convergence: far fewer iterations than BFGS needs.
        let b = bfgs(rosenbrock, [-1.2, 1.0], Tolerances::default());
        assert!(
            m.iterations < b.iterations,
            "{} vs {}",
            m.iterations,
            b.iterations
        );
    }

    #[test]
    fn cholesky_solve_inverts_a_positive_definite_system() {
        let h = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]];
        let l = cholesky(&h, 0.0).unwrap();
        let x = cholesky_solve(&l, &[1.0, 2.0, 3.0]);
        for (row, b) in h.iter().zip([1.0, 2.0, 3.0]) {
            assert!((dot(row, &x) - b).abs() < 1e-14);
        }
        assert!(cholesky(&[[1.0, 2.0], [2.0, 1.0]], 0.0).is_none());
    }

    #[test]
    fn bfgs_reports_non_finite_start() {
        let m = bfgs(
            |_x: &[f64; 1], g: &mut [f64; 1]| {
                g[0] = f64::NAN;
                f64::NAN
            },
            [0.0],
            Tolerances::default(),
        );
        assert!(!m.converged);
    }
}
