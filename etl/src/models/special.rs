//! Special functions the fits need beyond `statrs` (which has ln Γ and ψ but
//! not the trigamma function ψ₁ that Newton's method needs for the Hessian).

/// Trigamma ψ₁(x) = d²/dx² ln Γ(x) for x > 0 (NaN otherwise).
///
/// Shifts x up to 10 with ψ₁(x) = ψ₁(x+1) + 1/x², then sums the asymptotic
/// series 1/x + 1/(2x²) + Σ B₂ₖ/x^(2k+1) (Abramowitz & Stegun 6.4.12 and
/// 6.4.6); at x ≥ 10 the truncation error is below 1e-16 relative.
pub fn trigamma(x: f64) -> f64 {
    if x == f64::INFINITY {
        return 0.0;
    }
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    let (mut x, mut shift) = (x, 0.0);
    while x < 10.0 {
        shift += 1.0 / (x * x);
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // Bernoulli numbers B2..B12: 1/6, -1/30, 1/42, -1/30, 5/66, -691/2730.
    let series = inv2
        * (1.0 / 6.0
            + inv2
                * (-1.0 / 30.0
                    + inv2
                        * (1.0 / 42.0
                            + inv2 * (-1.0 / 30.0 + inv2 * (5.0 / 66.0 - inv2 * 691.0 / 2730.0)))));
    shift + inv + 0.5 * inv2 + inv * series
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-14 * b.abs()
    }

    #[test]
    fn trigamma_matches_closed_forms() {
        assert!(close(trigamma(1.0), PI * PI / 6.0));
        assert!(close(trigamma(0.5), PI * PI / 2.0));
        // ψ₁(n) = π²/6 − Σ_{k<n} 1/k².
        let h: f64 = (1..25).map(|k| 1.0 / f64::from(k * k)).sum();
        assert!(close(trigamma(25.0), PI * PI / 6.0 - h));
    }

    #[test]
    fn trigamma_satisfies_its_recurrence_at_any_scale() {
        for &x in &[1e-6, 0.013, 0.7, 3.3, 9.99, 10.0, 123.4, 1e7] {
            let lhs = trigamma(x);
            let rhs = trigamma(x + 1.0) + 1.0 / (x * x);
            assert!((lhs - rhs).abs() <= 1e-13 * lhs, "x={x}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn trigamma_outside_its_domain_is_nan() {
        assert!(trigamma(0.0).is_nan());
        assert!(trigamma(-1.5).is_nan());
        assert!(trigamma(f64::NAN).is_nan());
        assert_eq!(trigamma(f64::INFINITY), 0.0);
    }
}
