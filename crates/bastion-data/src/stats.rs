//! Two-sample statistics, written to give SciPy's numbers on the same data (the interop
//! tests compare them to 1e-9): Kolmogorov–Smirnov with exact and asymptotic p-values,
//! chi-square homogeneity, Wasserstein-1, Jensen–Shannon distance, Hellinger distance, PSI,
//! and the Bonferroni and Benjamini–Hochberg corrections.

use serde::{Deserialize, Serialize};

/// Proportions below this are replaced by it in PSI, whose logarithm would otherwise be
/// infinite for an empty bin (Evidently's convention).
pub const PSI_FLOOR: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    pub statistic: f64,
    /// SciPy's `ks_2samp(a, b, method="exact")`; `None` when n₁·n₂ is too large to count
    /// lattice paths (over `KS_EXACT_MAX_CELLS`).
    pub pvalue_exact: Option<f64>,
    /// Kolmogorov's limiting distribution at √(n₁n₂/(n₁+n₂))·D: SciPy's
    /// `kstwobign.sf(sqrt(en) * d)`.
    pub pvalue_asymptotic: f64,
}

impl KsResult {
    /// The exact p-value when it was computed, else the asymptotic one.
    pub fn pvalue(&self) -> f64 {
        self.pvalue_exact.unwrap_or(self.pvalue_asymptotic)
    }
}

/// The exact p-value costs n₁·n₂ steps; above this the asymptotic one is used.
pub const KS_EXACT_MAX_CELLS: u64 = 100_000_000;

/// Two-sample KS on sorted samples (NaN-free). Ties are handled as SciPy does: both
/// distribution functions are evaluated at every observed value.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> KsResult {
    ks_2samp_within(a, b, KS_EXACT_MAX_CELLS)
}

/// As [`ks_2samp`], counting lattice paths for the exact p-value only up to `exact_cells`
/// (n₁·n₂); 0 gives the asymptotic p-value alone (SciPy's `method="asymp"`).
pub fn ks_2samp_within(a: &[f64], b: &[f64], exact_cells: u64) -> KsResult {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return KsResult {
            statistic: f64::NAN,
            pvalue_exact: None,
            pvalue_asymptotic: f64::NAN,
        };
    }
    let (mut i, mut j) = (0usize, 0usize);
    let mut d = 0.0f64;
    while i < n1 && j < n2 {
        let x = a[i].min(b[j]);
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n1 as f64 - j as f64 / n2 as f64).abs());
    }
    let exact =
        ((n1 as u64).saturating_mul(n2 as u64) <= exact_cells).then(|| ks_exact_pvalue(n1, n2, d));
    let (m, n) = (n1 as f64, n2 as f64);
    let en = m * n / (m + n);
    KsResult {
        statistic: d,
        pvalue_exact: exact,
        pvalue_asymptotic: kolmogorov_sf(en.sqrt() * d),
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D ≥ d) under the null: one minus the probability that a uniformly random monotone
/// lattice path from (0,0) to (n₁,n₂) stays strictly inside |i/n₁ − j/n₂| < d.
/// The statistic is first snapped to the lattice (h = round(d·lcm)), as SciPy does. The
/// path probability is carried normalised (p(i,j) = p(i−1,j)·i/(i+j) + p(i,j−1)·j/(i+j)), so
/// nothing overflows.
fn ks_exact_pvalue(n1: usize, n2: usize, d: f64) -> f64 {
    let g = gcd(n1 as u64, n2 as u64);
    let (a, b) = (n1 as u64 / g, n2 as u64 / g);
    let lcm = a * n2 as u64;
    let h = (d * lcm as f64).round() as i128;
    if h == 0 {
        return 1.0;
    }
    // Inside iff |i·b − j·a| < h, in units of 1/lcm.
    let inside = |i: usize, j: usize| -> bool {
        ((i as i128) * b as i128 - (j as i128) * a as i128).abs() < h
    };
    let mut row = vec![0.0f64; n2 + 1];
    row[0] = 1.0;
    for (j, slot) in row.iter_mut().enumerate().skip(1) {
        *slot = if inside(0, j) { 1.0 } else { 0.0 };
        if *slot == 0.0 {
            break;
        }
    }
    // Cells after the first excluded one stay zero in row 0.
    let mut seen_zero = false;
    for slot in row.iter_mut() {
        if seen_zero {
            *slot = 0.0;
        } else if *slot == 0.0 {
            seen_zero = true;
        }
    }
    for i in 1..=n1 {
        let mut left = 0.0f64;
        for j in 0..=n2 {
            let v = if !inside(i, j) {
                0.0
            } else if j == 0 {
                row[0]
            } else {
                let t = (i + j) as f64;
                row[j] * (i as f64 / t) + left * (j as f64 / t)
            };
            row[j] = v;
            left = v;
        }
    }
    (1.0 - row[n2]).clamp(0.0, 1.0)
}

/// Survival function of Kolmogorov's limiting distribution (SciPy's `kstwobign.sf`), from
/// whichever of its two series converges fast at x.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        // CDF = √(2π)/x · Σ exp(−(2k−1)²π²/(8x²)), k ≥ 1
        let mut s = 0.0;
        for k in 1..=100 {
            let t = (2 * k - 1) as f64;
            let term = (-(t * t) * std::f64::consts::PI.powi(2) / (8.0 * x * x)).exp();
            s += term;
            if term < 1e-300 || term < s * 1e-17 {
                break;
            }
        }
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * s).clamp(0.0, 1.0)
    } else {
        // SF = 2 Σ (−1)^{k−1} exp(−2k²x²), k ≥ 1
        let mut s = 0.0;
        for k in 1..=100 {
            let kf = k as f64;
            let term = (-2.0 * kf * kf * x * x).exp();
            s += if k % 2 == 1 { term } else { -term };
            if term < 1e-300 || term < s.abs() * 1e-17 {
                break;
            }
        }
        (2.0 * s).clamp(0.0, 1.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquareResult {
    pub statistic: f64,
    pub dof: u64,
    pub pvalue: f64,
}

/// Chi-square test of homogeneity on the 2×k table of counts (SciPy's
/// `chi2_contingency([a, b], correction=False)`); categories empty in both are dropped.
pub fn chi_square(a: &[u64], b: &[u64]) -> ChiSquareResult {
    let cols: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x + **y > 0)
        .map(|(x, y)| (*x as f64, *y as f64))
        .collect();
    let na: f64 = cols.iter().map(|c| c.0).sum();
    let nb: f64 = cols.iter().map(|c| c.1).sum();
    let total = na + nb;
    if cols.len() < 2 || na == 0.0 || nb == 0.0 {
        return ChiSquareResult {
            statistic: 0.0,
            dof: 0,
            pvalue: 1.0,
        };
    }
    let mut stat = 0.0;
    for (x, y) in &cols {
        let col = x + y;
        let ea = na * col / total;
        let eb = nb * col / total;
        stat += (x - ea).powi(2) / ea + (y - eb).powi(2) / eb;
    }
    let dof = cols.len() as u64 - 1;
    ChiSquareResult {
        statistic: stat,
        dof,
        pvalue: chi2_sf(stat, dof as f64),
    }
}

/// Upper tail of the chi-square distribution: Q(k/2, x/2).
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    statrs::function::gamma::checked_gamma_ur(dof / 2.0, x / 2.0).unwrap_or(f64::NAN)
}

/// Wasserstein-1 distance between two sorted samples (SciPy's `wasserstein_distance`):
/// the area between their empirical distribution functions.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (x - prev);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = x;
    }
    total
}

/// Proportions of a count vector.
pub fn proportions(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Jensen–Shannon distance (natural logarithm), SciPy's `spatial.distance.jensenshannon`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let mut js = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let m = (a + b) / 2.0;
        if a > 0.0 {
            js += a * (a / m).ln();
        }
        if b > 0.0 {
            js += b * (b / m).ln();
        }
    }
    (js / 2.0).max(0.0).sqrt()
}

/// Hellinger distance: ‖√p − √q‖₂ / √2, in [0, 1].
pub fn hellinger(p: &[f64], q: &[f64]) -> f64 {
    let s: f64 = p
        .iter()
        .zip(q)
        .map(|(&a, &b)| (a.sqrt() - b.sqrt()).powi(2))
        .sum();
    (s / 2.0).sqrt()
}

/// Population stability index Σ (q − p)·ln(q / p), empty bins floored at `PSI_FLOOR`.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&p, &q)| {
            let (p, q) = (p.max(PSI_FLOOR), q.max(PSI_FLOOR));
            (q - p) * (q / p).ln()
        })
        .sum()
}

/// Bonferroni-adjusted p-values: min(1, p·m).
pub fn bonferroni(p: &[f64]) -> Vec<f64> {
    let m = p.len() as f64;
    p.iter().map(|&x| (x * m).min(1.0)).collect()
}

/// Benjamini–Hochberg adjusted p-values (SciPy's `false_discovery_control(p, method="bh")`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adj = vec![0.0; m];
    let mut running = 1.0f64;
    for rank in (0..m).rev() {
        let i = order[rank];
        running = running.min(p[i] * m as f64 / (rank + 1) as f64);
        adj[i] = running.min(1.0);
    }
    adj
}

/// Reference-quantile bin edges: the interior quantiles at 1/k … (k−1)/k of the sorted
/// reference (NumPy's linear interpolation), duplicates removed. Bin i holds the values v
/// with e[i−1] ≤ v < e[i]; the first bin is open below and the last above, so every value
/// of either sample falls in a bin.
pub fn quantile_edges(sorted_reference: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| crate::sketch::interpolate_sorted(sorted_reference, i as f64 / bins as f64))
        .collect();
    edges.dedup();
    edges
}

/// Counts of sorted values in the bins `quantile_edges` describes.
pub fn bin_counts(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let mut counts = Vec::with_capacity(edges.len() + 1);
    let mut start = 0usize;
    for &e in edges {
        let end = start + sorted[start..].partition_point(|&v| v < e);
        counts.push((end - start) as u64);
        start = end;
    }
    counts.push((sorted.len() - start) as u64);
    counts
}

/// Population standard deviation (NumPy's `std`, ddof = 0).
pub fn population_std(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn ks_matches_scipy_on_a_small_case() {
        // scipy.stats.ks_2samp([1,2,3,4,5], [3,4,5,6,7,8], method="exact")
        //   → statistic 0.5, pvalue 0.35714285714285715
        let r = ks_2samp(&[1., 2., 3., 4., 5.], &[3., 4., 5., 6., 7., 8.]);
        assert!(close(r.statistic, 0.5, 1e-15));
        assert!(
            close(
                r.pvalue_exact.unwrap_or(f64::NAN),
                0.35714285714285715,
                1e-12
            ),
            "{r:?}"
        );
    }

    #[test]
    fn ks_identical_samples_have_p_one() {
        let a: Vec<f64> = (0..50).map(f64::from).collect();
        let r = ks_2samp(&a, &a);
        assert_eq!(r.statistic, 0.0);
        assert_eq!(r.pvalue_exact, Some(1.0));
    }

    #[test]
    fn kolmogorov_series_agree_where_they_meet() {
        // scipy.stats.kstwobign.sf(1.0) = 0.26999967167735456
        assert!(close(kolmogorov_sf(1.0), 0.26999967167735456, 1e-14));
        assert!(close(kolmogorov_sf(0.5), 0.9639452436648751, 1e-14));
        assert!(close(
            kolmogorov_sf(0.9999999),
            kolmogorov_sf(1.0000001),
            1e-6
        ));
    }

    #[test]
    fn chi_square_matches_a_hand_computation() {
        // scipy.stats.chi2_contingency([[10, 20, 30], [20, 20, 20]], correction=False)
        //   → statistic 5.333333333333333, dof 2, pvalue 0.06948345122280154
        let r = chi_square(&[10, 20, 30], &[20, 20, 20]);
        assert!(close(r.statistic, 5.333333333333333, 1e-12));
        assert_eq!(r.dof, 2);
        assert!(close(r.pvalue, 0.06948345122280154, 1e-12), "{r:?}");
    }

    #[test]
    fn wasserstein_of_shifted_samples_is_the_shift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 2.5).collect();
        assert!(close(wasserstein(&a, &b), 2.5, 1e-12));
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) = 5.0
        assert!(close(wasserstein(&[0., 1., 3.], &[5., 6., 8.]), 5.0, 1e-12));
    }

    #[test]
    fn distances_on_proportions() {
        // scipy.spatial.distance.jensenshannon([1, 0], [0, 1]) = sqrt(ln 2)
        assert!(close(
            jensen_shannon(&[1., 0.], &[0., 1.]),
            2f64.ln().sqrt(),
            1e-15
        ));
        assert_eq!(jensen_shannon(&[0.3, 0.7], &[0.3, 0.7]), 0.0);
        assert!(close(hellinger(&[1., 0.], &[0., 1.]), 1.0, 1e-15));
        assert!(psi(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-15);
        assert!(psi(&[0.9, 0.1], &[0.1, 0.9]) > 1.0);
    }

    #[test]
    fn corrections_match_scipy() {
        // scipy.stats.false_discovery_control([0.01, 0.04, 0.03, 0.5])
        //   → [0.04, 0.05333333, 0.05333333, 0.5]
        let adj = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        let want = [0.04, 0.05333333333333334, 0.05333333333333334, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!(close(*a, w, 1e-12), "{adj:?}");
        }
        assert_eq!(bonferroni(&[0.01, 0.5]), vec![0.02, 1.0]);
    }

    #[test]
    fn bins_cover_every_value() {
        let r: Vec<f64> = (0..100).map(f64::from).collect();
        let e = quantile_edges(&r, 10);
        assert_eq!(e.len(), 9);
        let c = bin_counts(&r, &e);
        assert_eq!(c.iter().sum::<u64>(), 100);
        let c2 = bin_counts(&[-1e9, 1e9], &e);
        assert_eq!((c2[0], c2[9]), (1, 1));
    }
}
