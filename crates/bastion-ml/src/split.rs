//! Which rows train and which test: seeded k-fold and stratified k-fold splits, and rows
//! grouped by the value of a column (slices), so metrics can be compared across groups.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{MlError, MlResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

fn check(n: usize, k: usize) -> MlResult<()> {
    if k < 2 {
        return Err(MlError::invalid(format!(
            "cross-validation needs at least 2 folds, got {k}"
        )));
    }
    if k > n {
        return Err(MlError::invalid(format!(
            "cross-validation: {k} folds but only {n} rows"
        )));
    }
    Ok(())
}

/// Folds from an assignment of each row to a fold; rows stay in ascending order in both sides.
fn folds_of(fold_of: &[usize], k: usize) -> Vec<Fold> {
    (0..k)
        .map(|f| {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..fold_of.len()).partition(|&i| fold_of[i] == f);
            Fold { train, test }
        })
        .collect()
}

/// `k` folds over `n` rows in an order shuffled by `seed` (ChaCha8, so the split is the same
/// on every platform and version); test folds partition the rows and differ in size by at
/// most one.
pub fn kfold(n: usize, k: usize, seed: u64) -> MlResult<Vec<Fold>> {
    check(n, k)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut fold_of = vec![0; n];
    for (pos, &row) in order.iter().enumerate() {
        fold_of[row] = pos % k;
    }
    Ok(folds_of(&fold_of, k))
}

/// Like [`kfold`], but each class's rows are dealt across the folds in turn, so every fold
/// holds the classes in about the proportions of the whole.
pub fn stratified_kfold(y: &[usize], k: usize, seed: u64) -> MlResult<Vec<Fold>> {
    check(y.len(), k)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &c) in y.iter().enumerate() {
        by_class.entry(c).or_default().push(i);
    }
    let mut fold_of = vec![0; y.len()];
    let mut pos = 0usize;
    for rows in by_class.values_mut() {
        rows.shuffle(&mut rng);
        for &row in rows.iter() {
            fold_of[row] = pos % k;
            pos += 1;
        }
    }
    Ok(folds_of(&fold_of, k))
}

/// One train/test split holding out about `fraction` of the rows, shuffled by `seed`; with
/// classes, each class is held out in its own share (stratified), so a rare class appears on
/// both sides when it has at least two rows.
pub fn holdout(n: usize, classes: Option<&[usize]>, fraction: f64, seed: u64) -> MlResult<Fold> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(MlError::invalid(format!(
            "the test fraction must be between 0 and 1, got {fraction}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = match classes {
        Some(y) => {
            let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, &c) in y.iter().enumerate() {
                by.entry(c).or_default().push(i);
            }
            by.into_values().collect()
        }
        None => vec![(0..n).collect()],
    };
    let mut is_test = vec![false; n];
    for mut rows in groups {
        rows.shuffle(&mut rng);
        let take = (rows.len() as f64 * fraction).round() as usize;
        let take = take.min(rows.len().saturating_sub(1));
        let take = if rows.len() >= 2 { take.max(1) } else { take };
        rows[..take].iter().for_each(|&i| is_test[i] = true);
    }
    let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_test[i]);
    if train.is_empty() || test.is_empty() {
        return Err(MlError::invalid(format!(
            "{n} rows are too few to hold out a test set"
        )));
    }
    Ok(Fold { train, test })
}

/// Rows dealt into parts of the given shares (which must sum to 1), shuffled by `seed`;
/// with classes, each class is dealt on its own (stratified). Each group's rows are divided
/// by largest remainder, so part sizes are the exact shares rounded and always add up to
/// the group. Rows stay in ascending order within a part. Every part must get rows.
pub fn partition(
    n: usize,
    classes: Option<&[usize]>,
    shares: &[f64],
    seed: u64,
) -> MlResult<Vec<Vec<usize>>> {
    if shares.is_empty() || shares.iter().any(|s| s.is_nan() || *s <= 0.0 || *s > 1.0) {
        return Err(MlError::invalid(format!(
            "every share of a split must be between 0 and 1, got {shares:?}"
        )));
    }
    let total: f64 = shares.iter().sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(MlError::invalid(format!(
            "the shares of a split must add up to 1, they add up to {total}"
        )));
    }
    if let Some(y) = classes
        && y.len() != n
    {
        return Err(MlError::invalid(format!(
            "{} class labels for {n} rows",
            y.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups: Vec<Vec<usize>> = match classes {
        Some(y) => slices(y).into_values().collect(),
        None => vec![(0..n).collect()],
    };
    let mut part_of = vec![0usize; n];
    for mut rows in groups {
        rows.shuffle(&mut rng);
        let exact: Vec<f64> = shares.iter().map(|s| s * rows.len() as f64).collect();
        let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
        let mut left = rows.len() - counts.iter().sum::<usize>().min(rows.len());
        let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
        by_remainder.sort_by(|&a, &b| {
            let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
            rb.total_cmp(&ra).then(a.cmp(&b))
        });
        for &p in by_remainder.iter().cycle().take(shares.len() * 2) {
            if left == 0 {
                break;
            }
            counts[p] += 1;
            left -= 1;
        }
        let mut at = 0;
        for (p, &c) in counts.iter().enumerate() {
            for &row in &rows[at..(at + c).min(rows.len())] {
                part_of[row] = p;
            }
            at += c;
        }
    }
    let mut parts = vec![Vec::new(); shares.len()];
    for (row, &p) in part_of.iter().enumerate() {
        parts[p].push(row);
    }
    if let Some(p) = parts.iter().position(Vec::is_empty) {
        return Err(MlError::invalid(format!(
            "{n} rows are too few: part {} of the split (share {}) gets none",
            p + 1,
            shares[p]
        )));
    }
    Ok(parts)
}

/// The rows of each distinct key, keys in order.
pub fn slices<K: Ord + Clone>(keys: &[K]) -> BTreeMap<K, Vec<usize>> {
    let mut out: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        out.entry(key.clone()).or_default().push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn folds_partition_the_rows(n in 2usize..300, k in 2usize..12, seed: u64) {
            prop_assume!(k <= n);
            let folds = kfold(n, k, seed).unwrap();
            let mut seen = vec![0; n];
            for f in &folds {
                prop_assert_eq!(f.train.len() + f.test.len(), n);
                prop_assert!(f.test.len() == n / k || f.test.len() == n / k + 1);
                for &i in &f.test { seen[i] += 1; }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
            prop_assert_eq!(kfold(n, k, seed).unwrap(), folds);
        }

        #[test]
        fn stratified_folds_keep_class_shares(y in proptest::collection::vec(0usize..3, 30..200), k in 2usize..6, seed: u64) {
            let folds = stratified_kfold(&y, k, seed).unwrap();
            for c in 0..3 {
                let total = y.iter().filter(|&&t| t == c).count();
                for f in &folds {
                    let in_fold = f.test.iter().filter(|&&i| y[i] == c).count();
                    prop_assert!(in_fold == total / k || in_fold == total / k + 1);
                }
            }
        }
    }

    #[test]
    fn bad_fold_counts_are_refused() {
        assert!(kfold(5, 1, 0).is_err());
        assert!(kfold(3, 4, 0).is_err());
        assert!(stratified_kfold(&[0, 1], 3, 0).is_err());
    }

    #[test]
    fn holdout_is_stratified_seeded_and_disjoint() {
        let y: Vec<usize> = (0..100).map(|i| usize::from(i % 10 == 0)).collect();
        let f = holdout(100, Some(&y), 0.2, 3).unwrap();
        assert_eq!(f.test.len(), 20);
        assert_eq!(f.test.iter().filter(|&&i| y[i] == 1).count(), 2);
        assert_eq!(holdout(100, Some(&y), 0.2, 3).unwrap(), f);
        assert!(f.train.iter().all(|i| !f.test.contains(i)));
        assert!(holdout(1, None, 0.2, 0).is_err());
        assert!(holdout(10, None, 1.0, 0).is_err());
    }

    #[test]
    fn partition_deals_exact_stratified_shares() {
        let y: Vec<usize> = (0..101).map(|i| usize::from(i % 4 == 0)).collect();
        let parts = partition(101, Some(&y), &[0.7, 0.2, 0.1], 5).unwrap();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 101);
        let mut all: Vec<usize> = parts.concat();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        // 26 positives and 75 negatives, each dealt 70/20/10 by largest remainder.
        let positives: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().filter(|&&i| y[i] == 1).count())
            .collect();
        assert_eq!(positives, vec![18, 5, 3]);
        let negatives: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().filter(|&&i| y[i] == 0).count())
            .collect();
        assert_eq!(negatives, vec![53, 15, 7]);
        assert_eq!(
            partition(101, Some(&y), &[0.7, 0.2, 0.1], 5).unwrap(),
            parts
        );
        assert_ne!(
            partition(101, Some(&y), &[0.7, 0.2, 0.1], 6).unwrap(),
            parts
        );
        assert!(parts.iter().all(|p| p.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn bad_partitions_are_refused() {
        assert!(partition(10, None, &[0.5, 0.4], 0).is_err());
        assert!(partition(10, None, &[1.2, -0.2], 0).is_err());
        assert!(partition(10, None, &[], 0).is_err());
        assert!(partition(2, None, &[0.8, 0.1, 0.1], 0).is_err());
        assert!(partition(3, Some(&[0, 1]), &[0.5, 0.5], 0).is_err());
        assert_eq!(partition(10, None, &[0.5, 0.5], 0).unwrap()[0].len(), 5);
    }

    #[test]
    fn slices_group_rows_by_key() {
        let s = slices(&["b", "a", "b"]);
        assert_eq!(s["a"], vec![1]);
        assert_eq!(s["b"], vec![0, 2]);
    }
}
