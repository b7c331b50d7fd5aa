//! The Shapiro-Wilk W statistic (Royston's 1995 approximation of the coefficients, as in
//! algorithm AS R94 and SciPy's `shapiro`), for PRADA's normality test. Only W is needed:
//! PRADA compares it with a threshold, since with thousands of distances any real
//! departure from normality has a vanishing p-value.

use statrs::distribution::{ContinuousCDF, Normal};

/// Royston's polynomials for the two largest coefficients, in 1/sqrt(n).
const C1: [f64; 6] = [0.0, 0.221157, -0.147981, -2.07119, 4.434685, -2.706056];
const C2: [f64; 6] = [0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633];

fn poly(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, k| acc * x + k)
}

/// W for 3 to 5000 values; `None` outside that range or when all values are equal.
pub fn shapiro_w(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if !(3..=5000).contains(&n) || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut x = values.to_vec();
    x.sort_by(f64::total_cmp);
    let mean = x.iter().sum::<f64>() / n as f64;
    let ss: f64 = x.iter().map(|v| (v - mean).powi(2)).sum();
    if ss <= f64::EPSILON * mean.abs().max(1.0) {
        return None;
    }
    let half = n / 2;
    let mut a = vec![0.0; half];
    if n == 3 {
        a[0] = std::f64::consts::FRAC_1_SQRT_2;
    } else {
        let normal = Normal::standard();
        let m: Vec<f64> = (1..=half)
            .map(|i| normal.inverse_cdf((i as f64 - 0.375) / (n as f64 + 0.25)))
            .collect();
        let summ2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
        let ssumm2 = summ2.sqrt();
        let rsn = 1.0 / (n as f64).sqrt();
        let a1 = poly(&C1, rsn) - m[0] / ssumm2;
        let (first, fac) = if n > 5 {
            let a2 = -m[1] / ssumm2 + poly(&C2, rsn);
            a[1] = a2;
            let fac = ((summ2 - 2.0 * m[0] * m[0] - 2.0 * m[1] * m[1])
                / (1.0 - 2.0 * a1 * a1 - 2.0 * a2 * a2))
                .sqrt();
            (2, fac)
        } else {
            let fac = ((summ2 - 2.0 * m[0] * m[0]) / (1.0 - 2.0 * a1 * a1)).sqrt();
            (1, fac)
        };
        a[0] = a1;
        for i in first..half {
            a[i] = -m[i] / fac;
        }
    }
    let b: f64 = (0..half).map(|i| a[i] * (x[n - 1 - i] - x[i])).sum();
    Some((b * b / ss).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy() {
        // scipy.stats.shapiro(...).statistic (SciPy computes in single precision).
        let cases: Vec<(Vec<f64>, f64)> = vec![
            ((1..=10).map(f64::from).collect(), 0.9701646110856056),
            (
                vec![2.1, 3.5, 1.2, 8.9, 4.4, 4.1, 3.9, 0.5, 12.0, 3.3, 2.2],
                0.8362874615051109,
            ),
            (vec![1.0, 1.5, 4.0], 0.870967741935484),
            (vec![0.1, 0.2, 0.2, 0.4, 5.0], 0.5972798525348042),
            (
                (0..200).map(|i| ((i * 37) % 101) as f64 / 101.0).collect(),
                0.953730447012981,
            ),
            (
                (0..1000)
                    .map(|i| ((i * 37) % 101) as f64 / 101.0 + ((i % 7) * (i % 7)) as f64)
                    .collect(),
                0.8555330795657999,
            ),
        ];
        for (x, want) in cases {
            let w = shapiro_w(&x).unwrap();
            assert!((w - want).abs() < 1e-4, "n={}: {w} vs {want}", x.len());
        }
        assert_eq!(shapiro_w(&[1.0, 2.0]), None);
        assert_eq!(shapiro_w(&[3.0; 10]), None);
        assert_eq!(shapiro_w(&[1.0, f64::NAN, 2.0]), None);
    }
}
