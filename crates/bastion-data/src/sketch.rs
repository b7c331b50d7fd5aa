//! Mergeable summaries for data too large to keep: distinct counts (exact, then
//! HyperLogLog), quantiles (exact, then t-digest) and top-k values (exact, then
//! Space-Saving).
//!
//! Each starts exact and switches to its sketch only past a bound, so small data gets exact
//! answers and large data bounded memory. All three are fed the same 64-bit xxh3 hash or
//! value, so nothing is hashed twice.

use std::collections::{HashMap, HashSet};

use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

/// Distinct values counted exactly up to this many; beyond it HyperLogLog estimates.
pub const EXACT_DISTINCT: usize = 100_000;
/// Values kept for exact quantiles; beyond this a t-digest takes over.
pub const EXACT_QUANTILE: usize = 1_000_000;
/// Distinct values counted exactly for top-k; beyond this Space-Saving keeps the heaviest.
pub const EXACT_TOPK: usize = 50_000;
const SPACE_SAVING: usize = 2_000;
const HLL_P: u32 = 14;

/// Hashes a value's canonical bytes: -0.0 and 0.0, and every NaN, hash alike.
pub fn hash_f64(v: f64) -> u64 {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    xxhash_rust::xxh3::xxh3_64(&v.to_bits().to_le_bytes())
}

pub fn hash_bytes(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

/// HyperLogLog with 2^14 one-byte registers (standard error ≈ 0.81%), with the usual
/// small-range (linear counting) correction. Fed 64-bit hashes.
#[derive(Debug, Clone)]
pub struct HyperLogLog {
    registers: Vec<u8>,
}

impl Default for HyperLogLog {
    fn default() -> Self {
        Self {
            registers: vec![0; 1 << HLL_P],
        }
    }
}

impl HyperLogLog {
    pub fn insert_hash(&mut self, h: u64) {
        let idx = (h >> (64 - HLL_P)) as usize;
        let rest = (h << HLL_P) | (1 << (HLL_P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if let Some(r) = self.registers.get_mut(idx)
            && rank > *r
        {
            *r = rank;
        }
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.registers.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// Keys that are already xxh3 hashes need no second hash.
#[derive(Default, Clone, Copy)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type HashSet64 = HashSet<u64, BuildHasherDefault<PreHashed>>;
pub type HashMap64<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// Distinct count: an exact set of hashes until `EXACT_DISTINCT`, then HyperLogLog.
#[derive(Debug, Clone, Default)]
pub struct Distinct {
    exact: HashSet64,
    hll: Option<HyperLogLog>,
}

impl Distinct {
    pub fn insert_hash(&mut self, h: u64) {
        match &mut self.hll {
            Some(hll) => hll.insert_hash(h),
            None => {
                self.exact.insert(h);
                if self.exact.len() > EXACT_DISTINCT {
                    let mut hll = HyperLogLog::default();
                    for &x in &self.exact {
                        hll.insert_hash(x);
                    }
                    self.exact = HashSet64::default();
                    self.hll = Some(hll);
                }
            }
        }
    }
    /// (count, exact?)
    pub fn count(&self) -> (u64, bool) {
        match &self.hll {
            Some(h) => (h.estimate().round() as u64, false),
            None => (self.exact.len() as u64, true),
        }
    }
}

/// Quantiles: exact (all values kept) until `EXACT_QUANTILE`, then a t-digest fed in chunks.
#[derive(Debug, Clone, Default)]
pub struct Quantiles {
    values: Vec<f64>,
    digest: Option<tdigest::TDigest>,
}

const DIGEST_CHUNK: usize = 1 << 17;

impl Quantiles {
    pub fn push(&mut self, v: f64) {
        self.values.push(v);
        let limit = if self.digest.is_some() {
            DIGEST_CHUNK
        } else {
            EXACT_QUANTILE
        };
        if self.values.len() >= limit {
            self.spill();
        }
    }

    fn spill(&mut self) {
        let mut chunk = std::mem::replace(&mut self.values, Vec::with_capacity(DIGEST_CHUNK));
        // A radix sort: the digest's own comparison sort was a third of a large profile.
        radsort::sort(&mut chunk);
        let d = self
            .digest
            .take()
            .unwrap_or_else(|| tdigest::TDigest::new_with_size(200));
        self.digest = Some(d.merge_sorted(chunk));
    }

    /// Quantile values at each `q` (linear interpolation between order statistics, as NumPy's
    /// default), and whether they are exact.
    pub fn finish(mut self, qs: &[f64]) -> (Vec<f64>, bool) {
        if self.digest.is_none() {
            radsort::sort(&mut self.values);
            let v = &self.values;
            let out = qs.iter().map(|&q| interpolate_sorted(v, q)).collect();
            return (out, true);
        }
        if !self.values.is_empty() {
            self.spill();
        }
        let d = self.digest.unwrap_or_default();
        (qs.iter().map(|&q| d.estimate_quantile(q)).collect(), false)
    }

    /// The kept values, if all were kept.
    pub fn exact_values(&self) -> Option<&[f64]> {
        self.digest.is_none().then_some(&self.values[..])
    }
}

/// NumPy's default (`linear`) quantile of sorted data.
pub fn interpolate_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Top-k values: exact counts until `EXACT_TOPK` distinct values, then Misra-Gries with
/// batched decrements (amortised O(1) per value; a reported count is low by at most
/// n / `SPACE_SAVING`).
#[derive(Debug, Clone, Default)]
pub struct TopK {
    counts: HashMap64<(Box<str>, u64)>,
    approximate: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

impl TopK {
    /// Counts `v`, whose xxh3 hash is `h`.
    pub fn insert(&mut self, h: u64, v: &str) {
        if let Some((_, c)) = self.counts.get_mut(&h) {
            *c += 1;
            return;
        }
        self.counts.insert(h, (v.into(), 1));
        if !self.approximate && self.counts.len() > EXACT_TOPK {
            self.approximate = true;
            self.decrement();
        } else if self.approximate && self.counts.len() >= 2 * SPACE_SAVING {
            self.decrement();
        }
    }

    /// Subtracts the `SPACE_SAVING`-th largest count from every count and drops what falls
    /// to zero: at least half the entries go, so this runs once per `SPACE_SAVING` values.
    fn decrement(&mut self) {
        let mut counts: Vec<u64> = self.counts.values().map(|(_, c)| *c).collect();
        if counts.len() <= SPACE_SAVING {
            return;
        }
        let idx = counts.len() - SPACE_SAVING;
        let (_, cut, _) = counts.select_nth_unstable(idx);
        let cut = *cut;
        self.counts.retain(|_, (_, c)| {
            *c = c.saturating_sub(cut);
            *c > 0
        });
    }

    /// The `k` most frequent values (ties by value), and whether the counts are exact.
    pub fn top(&self, k: usize) -> (Vec<ValueCount>, bool) {
        let mut all: Vec<ValueCount> = self
            .counts
            .values()
            .map(|(v, c)| ValueCount {
                value: v.to_string(),
                count: *c,
            })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
        all.truncate(k);
        (all, !self.approximate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_is_within_three_standard_errors() {
        for n in [1_000u64, 50_000, 1_000_000] {
            let mut h = HyperLogLog::default();
            for i in 0..n {
                h.insert_hash(hash_bytes(&i.to_le_bytes()));
            }
            let err = (h.estimate() - n as f64).abs() / n as f64;
            assert!(err < 3.0 * 0.0081, "n={n} err={err}");
        }
    }

    #[test]
    fn distinct_is_exact_below_the_bound_and_close_above() {
        let mut d = Distinct::default();
        for i in 0..1000u64 {
            d.insert_hash(hash_bytes(&(i % 700).to_le_bytes()));
        }
        assert_eq!(d.count(), (700, true));
        let mut d = Distinct::default();
        for i in 0..300_000u64 {
            d.insert_hash(hash_bytes(&i.to_le_bytes()));
        }
        let (c, exact) = d.count();
        assert!(!exact);
        assert!((c as f64 - 300_000.0).abs() / 300_000.0 < 0.025, "{c}");
    }

    #[test]
    fn quantiles_match_numpy_linear_and_digest_is_close() {
        let mut q = Quantiles::default();
        for v in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0] {
            q.push(v);
        }
        // numpy.quantile([3,1,4,1,5,9,2,6], [0.25, 0.5, 0.9]) = [1.75, 3.5, 6.9]
        let (v, exact) = q.finish(&[0.25, 0.5, 0.9]);
        assert!(exact);
        assert!((v[0] - 1.75).abs() < 1e-12 && (v[1] - 3.5).abs() < 1e-12);
        assert!((v[2] - 6.9).abs() < 1e-12);

        let mut q = Quantiles::default();
        let n = EXACT_QUANTILE as u64 + 500_000;
        for i in 0..n {
            q.push(((i * 7919) % n) as f64);
        }
        let (v, exact) = q.finish(&[0.5, 0.99]);
        assert!(!exact);
        assert!((v[0] / (n as f64 * 0.5) - 1.0).abs() < 0.01, "{v:?}");
        assert!((v[1] / (n as f64 * 0.99) - 1.0).abs() < 0.01, "{v:?}");
    }

    #[test]
    fn topk_is_exact_then_keeps_heavy_hitters() {
        let mut t = TopK::default();
        for i in 0..200_000u64 {
            let v = if i % 3 == 0 {
                "heavy".to_string()
            } else {
                format!("v{i}")
            };
            t.insert(hash_bytes(v.as_bytes()), &v);
        }
        let (top, exact) = t.top(1);
        assert!(!exact);
        assert_eq!(top[0].value, "heavy");
        assert!(top[0].count >= 66_667 - 200_000 / SPACE_SAVING as u64);
    }

    #[test]
    fn hashes_normalise_zero_and_nan() {
        assert_eq!(hash_f64(0.0), hash_f64(-0.0));
        assert_eq!(hash_f64(f64::NAN), hash_f64(-f64::NAN));
    }
}
