//! Decision trees as flat arrays, shared by gradient boosting and random forests: node `i`
//! sends a row left when `x[feature[i]] <= threshold[i]`; a child `c >= 0` is a node, `c < 0`
//! is leaf `!c`. Children always come after their parent, so a walk ends and a tree loaded
//! from a file cannot loop.

pub mod bins;
pub mod flat;
pub mod grow;

use ndarray::ArrayView1;

use crate::error::{MlError, MlResult};

#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Values per leaf (one per class for forests of class proportions, else one).
    pub outputs: usize,
    pub feature: Vec<u32>,
    pub threshold: Vec<f64>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    /// `leaves × outputs`.
    pub values: Vec<f64>,
}

impl Tree {
    pub fn leaves(&self) -> usize {
        self.values.len() / self.outputs.max(1)
    }

    /// The leaf a row ends in.
    pub fn leaf(&self, x: ArrayView1<f64>) -> usize {
        self.walk(|f| x[f])
    }

    /// [`Tree::leaf`] for a row held as a slice (no strided indexing).
    pub fn leaf_of(&self, x: &[f64]) -> usize {
        self.walk(|f| x[f])
    }

    /// The leaf a row reaches, reading feature `f` of the row as `value(f)`.
    #[inline]
    fn walk(&self, value: impl Fn(usize) -> f64) -> usize {
        if self.feature.is_empty() {
            return 0;
        }
        let mut node = 0i32;
        while node >= 0 {
            let i = node as usize;
            node = if value(self.feature[i] as usize) <= self.threshold[i] {
                self.left[i]
            } else {
                self.right[i]
            };
        }
        !node as usize
    }

    pub fn value(&self, x: ArrayView1<f64>) -> &[f64] {
        let l = self.leaf(x);
        &self.values[l * self.outputs..(l + 1) * self.outputs]
    }

    /// Checks a tree read from a file, so that walking it can neither index out of bounds
    /// nor loop: every feature below `features`, thresholds not NaN, every child either a
    /// later node or an existing leaf, every leaf reached exactly once.
    pub fn validate(&self, features: usize) -> MlResult<()> {
        let nodes = self.feature.len();
        let bad = |what: String| Err(MlError::invalid(format!("tree: {what}")));
        if self.outputs == 0 || !self.values.len().is_multiple_of(self.outputs) {
            return bad(format!(
                "{} leaf values do not divide into {} outputs",
                self.values.len(),
                self.outputs
            ));
        }
        if self.threshold.len() != nodes || self.left.len() != nodes || self.right.len() != nodes {
            return bad("node arrays differ in length".into());
        }
        let leaves = self.leaves();
        if leaves != nodes + 1 {
            return bad(format!(
                "{nodes} splits need {} leaves, found {leaves}",
                nodes + 1
            ));
        }
        if let Some(v) = self.values.iter().find(|v| !v.is_finite()) {
            return bad(format!("leaf value {v} is not finite"));
        }
        let mut leaf_seen = vec![false; leaves];
        let mut node_seen = vec![false; nodes];
        if nodes > 0 {
            node_seen[0] = true;
        }
        for i in 0..nodes {
            if self.feature[i] as usize >= features {
                return bad(format!(
                    "node {i} splits on feature {} of {features}",
                    self.feature[i]
                ));
            }
            if self.threshold[i].is_nan() {
                return bad(format!("node {i} has a NaN threshold"));
            }
            for c in [self.left[i], self.right[i]] {
                if c >= 0 {
                    let c = c as usize;
                    if c <= i || c >= nodes || node_seen[c] {
                        return bad(format!("node {i} points at node {c}"));
                    }
                    node_seen[c] = true;
                } else {
                    let l = !c as usize;
                    if l >= leaves || leaf_seen[l] {
                        return bad(format!("node {i} points at leaf {l}"));
                    }
                    leaf_seen[l] = true;
                }
            }
        }
        if nodes > 0 && (node_seen.contains(&false) || leaf_seen.contains(&false)) {
            return bad("some nodes or leaves are unreachable".into());
        }
        Ok(())
    }
}
