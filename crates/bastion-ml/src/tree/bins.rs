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

    /// Bins `x` (finite values, checked by the caller) into at most `max_bins` bins per feature.
    pub fn fit(x: ArrayView2<f64>, max_bins: usize, seed: u64) -> MlResult<Self> {
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
                let upper = boundaries(&values, max_bins);
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

/// Upper bounds for sorted `values`: one bin per distinct value when they are few, otherwise
/// bins of about equal counts; bounds sit halfway between neighbouring distinct values.
fn boundaries(sorted: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in sorted {
        match distinct.last_mut() {
            Some((last, c)) if *last == v => *c += 1,
            _ => distinct.push((v, 1)),
        }
    }
    let mid = |a: f64, b: f64| a + (b - a) / 2.0;
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| mid(w[0].0, w[1].0)).collect();
    }
    let mut upper = Vec::with_capacity(max_bins - 1);
    let mut remaining = sorted.len();
    let mut in_bin = 0;
    for (i, &(v, c)) in distinct.iter().enumerate() {
        in_bin += c;
        let bins_left = max_bins - upper.len();
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
        let b = Binned::fit(x.view(), 255, 0).unwrap();
        assert_eq!(b.upper[0], vec![1.5, 2.5]);
        assert_eq!(b.columns[0], vec![2, 0, 1, 0, 2, 1]);
    }

    #[test]
    fn many_values_fill_at_most_max_bins_of_similar_size() {
        let n = 10_000;
        let x = Array2::from_shape_fn((n, 1), |(i, _)| ((i * 7919) % n) as f64);
        let b = Binned::fit(x.view(), 16, 0).unwrap();
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
}
