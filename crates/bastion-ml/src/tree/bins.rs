//! Features as small integers: each feature's values are cut into at most 255 bins at
//! quantiles of (a seeded sample of) the training data, so a tree learner scans 255 bins
//! instead of every distinct value, as LightGBM and scikit-learn's histogram boosting do.
//! A value `v` falls in the first bin whose upper bound is `>= v`; a split "bin ≤ b" is
//! therefore exactly "value ≤ upper[b]", which is what a fitted tree stores.

use ndarray::ArrayView2;
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{MlError, MlResult};

/// Rows looked at to place bin boundaries (LightGBM's `bin_construct_sample_cnt`).
const SAMPLE_ROWS: usize = 200_000;

/// Binned training data: one byte per value, column-major (a histogram is filled one
/// feature at a time, so each pass reads one column).
pub struct Binned {
    pub rows: usize,
    /// Per feature, the upper bound of every bin but the last (which is unbounded).
    pub upper: Vec<Vec<f64>>,
    pub columns: Vec<Vec<u8>>,
}

impl Binned {
    pub fn features(&self) -> usize {
        self.upper.len()
    }

    pub fn bins(&self, feature: usize) -> usize {
        self.upper[feature].len() + 1
    }

    /// Bins `x` (finite values, checked by the caller) into at most `max_bins` bins per
    /// feature, each holding at least `min_data_in_bin` of the rows looked at (the last may
    /// hold fewer).
    pub fn fit(
        x: ArrayView2<f64>,
        max_bins: usize,
        min_data_in_bin: usize,
        seed: u64,
    ) -> MlResult<Self> {
        if !(2..=256).contains(&max_bins) {
            return Err(MlError::invalid(format!(
                "max_bins must be between 2 and 256, got {max_bins}"
            )));
        }
        let (n, d) = x.dim();
        let picked: Option<Vec<usize>> = (n > SAMPLE_ROWS).then(|| {
            let mut v = sample(&mut ChaCha8Rng::seed_from_u64(seed), n, SAMPLE_ROWS).into_vec();
            v.sort_unstable();
            v
        });
        let (upper, columns): (Vec<Vec<f64>>, Vec<Vec<u8>>) = (0..d)
            .into_par_iter()
            .map(|j| {
                let col = x.column(j);
                let mut values: Vec<f64> = match &picked {
                    Some(rows) => rows.iter().map(|&i| col[i]).collect(),
                    None => col.to_vec(),
                };
                values.sort_unstable_by(f64::total_cmp);
                let upper = boundaries(&values, max_bins, min_data_in_bin.max(1));
                let binned = col.iter().map(|&v| bin_of(&upper, v)).collect();
                (upper, binned)
            })
            .unzip();
        Ok(Self {
            rows: n,
            upper,
            columns,
        })
    }
}

/// The bin of `v` given a feature's sorted upper bounds (at most 255 of them).
pub fn bin_of(upper: &[f64], v: f64) -> u8 {
    // At most 255 bounds, so the index fits.
    upper.partition_point(|&t| t < v) as u8
}

/// Half the width of the bin zero gets of its own (LightGBM's `kZeroThreshold`).
const ZERO: f64 = 1e-35;

/// Upper bounds for sorted `values`: one bin per distinct value when they are few,
/// otherwise bins of about equal counts with bounds halfway between neighbouring distinct
/// values. With many values on both sides of zero (or zeros among them), zero gets a bin of
/// its own and the negatives and positives share the other bins by their counts, as in
/// LightGBM: a split exactly at zero is then always available, and zero is where signs,
/// absolute values and the missing-as-zero of sparse data change.
fn boundaries(sorted: &[f64], max_bins: usize, min_in_bin: usize) -> Vec<f64> {
    let distinct = distinct_counts(sorted);
    if distinct.len() <= max_bins {
        return equal_counts(&distinct, max_bins, min_in_bin);
    }
    let negative = distinct.partition_point(|&(v, _)| v < -ZERO);
    let positive = distinct.partition_point(|&(v, _)| v <= ZERO);
    let (neg, pos) = (&distinct[..negative], &distinct[positive..]);
    if max_bins < 3 || neg.len() == distinct.len() || pos.len() == distinct.len() {
        return equal_counts(&distinct, max_bins, min_in_bin);
    }
    let count = |d: &[(f64, usize)]| d.iter().map(|&(_, c)| c).sum::<usize>();
    let (n_neg, n_pos) = (count(neg), count(pos));
    // One bin is zero's; the rest are dealt by count, at least one to each side present.
    let shared = max_bins - 1;
    let neg_bins = if neg.is_empty() {
        0
    } else if pos.is_empty() {
        shared
    } else {
        (n_neg * shared / (n_neg + n_pos)).clamp(1, shared - 1)
    };
    let mut upper = Vec::with_capacity(max_bins - 1);
    if !neg.is_empty() {
        upper.extend(equal_counts(neg, neg_bins, min_in_bin));
        upper.push(-ZERO);
    }
    if !pos.is_empty() {
        upper.push(ZERO);
        upper.extend(equal_counts(pos, shared - neg_bins, min_in_bin));
    }
    upper
}

fn mid(a: f64, b: f64) -> f64 {
    a + (b - a) / 2.0
}

/// Each distinct value of sorted `values` with how often it occurs.
fn distinct_counts(sorted: &[f64]) -> Vec<(f64, usize)> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in sorted {
        match distinct.last_mut() {
            Some((last, c)) if *last == v => *c += 1,
            _ => distinct.push((v, 1)),
        }
    }
    distinct
}

/// The bounds between at most `bins` bins of about equal counts over `distinct` values, no
/// bin but the last holding fewer than `min_in_bin` values: a bin of one or two rows only
/// lets a tree cut noise finer (LightGBM's `min_data_in_bin`).
fn equal_counts(distinct: &[(f64, usize)], bins: usize, min_in_bin: usize) -> Vec<f64> {
    let total: usize = distinct.iter().map(|&(_, c)| c).sum();
    let bins = bins.min(total / min_in_bin).max(1);
    if distinct.len() <= bins {
        // A bin per distinct value, rare values joining the next.
        let mut upper = Vec::new();
        let mut in_bin = 0;
        for w in distinct.windows(2) {
            in_bin += w[0].1;
            if in_bin >= min_in_bin {
                upper.push(mid(w[0].0, w[1].0));
                in_bin = 0;
            }
        }
        return upper;
    }
    let mut upper = Vec::with_capacity(bins.saturating_sub(1));
    let mut remaining = total;
    let mut in_bin = 0;
    for (i, &(v, c)) in distinct.iter().enumerate() {
        in_bin += c;
        let bins_left = bins - upper.len();
        let target = remaining.div_ceil(bins_left);
        if in_bin >= target && i + 1 < distinct.len() && bins_left > 1 {
            upper.push(mid(v, distinct[i + 1].0));
            remaining -= in_bin;
            in_bin = 0;
        }
    }
    upper
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn few_distinct_values_get_one_bin_each() {
        let x = Array2::from_shape_vec((6, 1), vec![3.0, 1.0, 2.0, 1.0, 3.0, 2.0]).unwrap();
        let b = Binned::fit(x.view(), 255, 1, 0).unwrap();
        assert_eq!(b.upper[0], vec![1.5, 2.5]);
        assert_eq!(b.columns[0], vec![2, 0, 1, 0, 2, 1]);
    }

    #[test]
    fn many_values_fill_at_most_max_bins_of_similar_size() {
        let n = 10_000;
        let x = Array2::from_shape_fn((n, 1), |(i, _)| (1 + (i * 7919) % n) as f64);
        let b = Binned::fit(x.view(), 16, 3, 0).unwrap();
        assert_eq!(b.bins(0), 16);
        let mut counts = [0usize; 16];
        b.columns[0].iter().for_each(|&c| counts[c as usize] += 1);
        assert!(
            counts.iter().all(|&c| (600..=650).contains(&c)),
            "{counts:?}"
        );
        // The split rule on values agrees with the bins.
        for (i, &c) in b.columns[0].iter().enumerate() {
            let v = x[[i, 0]];
            for (k, &u) in b.upper[0].iter().enumerate() {
                assert_eq!(c as usize <= k, v <= u);
            }
        }
    }

    #[test]
    fn zero_gets_a_bin_and_the_signs_share_the_rest_by_count() {
        // 3,000 negatives, 500 zeros, 1,000 positives, all distinct but the zeros.
        let mut v: Vec<f64> = (1..=3000).map(|i| -(i as f64) / 7.0).collect();
        v.extend(std::iter::repeat_n(0.0, 500));
        v.extend((1..=1000).map(|i| i as f64 / 3.0));
        let x = Array2::from_shape_vec((v.len(), 1), v.clone()).unwrap();
        let b = Binned::fit(x.view(), 64, 3, 0).unwrap();
        let upper = &b.upper[0];
        assert_eq!(b.bins(0), 64);
        assert!(upper.windows(2).all(|w| w[0] < w[1]), "{upper:?}");
        let zero_bin = bin_of(upper, 0.0) as usize;
        assert_eq!((upper[zero_bin - 1], upper[zero_bin]), (-ZERO, ZERO));
        // 63 bins shared 3:1.
        assert_eq!(zero_bin, 47);
        let mut counts = [0usize; 64];
        b.columns[0].iter().for_each(|&c| counts[c as usize] += 1);
        assert_eq!(counts[zero_bin], 500);
        assert!(
            counts[..zero_bin].iter().all(|&c| (60..=70).contains(&c)),
            "{counts:?}"
        );
        assert!(
            counts[zero_bin + 1..]
                .iter()
                .all(|&c| (60..=70).contains(&c)),
            "{counts:?}"
        );
        // Without zeros the zero bin is empty but the split at zero is still there.
        let signed: Vec<f64> = v.iter().copied().filter(|&x| x != 0.0).collect();
        let x = Array2::from_shape_vec((signed.len(), 1), signed).unwrap();
        let b = Binned::fit(x.view(), 64, 3, 0).unwrap();
        assert!(b.upper[0].contains(&-ZERO) && b.upper[0].contains(&ZERO));
        // Two bins leave no room for zero's own: plain halves.
        let b = Binned::fit(x.view(), 2, 3, 0).unwrap();
        assert_eq!(b.bins(0), 2);
        // All on one side: no zero bin.
        let x = Array2::from_shape_fn((1000, 1), |(i, _)| 1.0 + i as f64);
        let b = Binned::fit(x.view(), 16, 3, 0).unwrap();
        assert!(b.upper[0].iter().all(|&u| u > 1.0));
    }
}
