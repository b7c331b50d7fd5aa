//! Trees laid out for prediction. A [`Tree`] is the form that is grown, stored and validated;
//! a [`Flat`] ensemble is derived from it once and only walked. Each node is one 16-byte
//! record, and a split's two children sit side by side, right then left, so that the next
//! node is `right + (value <= threshold)`: an add, not a second load chosen by the
//! comparison. A leaf is a node whose threshold is NaN (no value is `<=` it) and whose
//! right child is itself, so a walk of a tree's depth in steps ends on the leaf whatever
//! path it took: eight rows are walked side by side with no branch on the data, and the
//! processor overlaps their loads instead of mispredicting a turn at every level. Trees are
//! taken one at a time over a block of rows so that a tree stays in cache while the block
//! passes through it. Each node carries its leaf's values itself (zeros for a split), so
//! the end of a walk is one load away from what it adds, not two.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use super::Tree;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// NaN for a leaf.
    threshold: f64,
    feature: u32,
    /// The right child, relative to the tree's first node; the left one follows it. A
    /// leaf's is itself.
    right: u32,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    /// First node of the tree in [`Flat::nodes`]; its values start at `start * outputs` in
    /// [`Flat::values`].
    start: usize,
    nodes: usize,
    depth: usize,
    /// First output column the tree adds to.
    column: usize,
}

/// An ensemble whose trees each add their leaf's values to some output columns.
#[derive(Debug, Clone, Default)]
pub struct Flat {
    nodes: Vec<Node>,
    /// Per node, `outputs` values: its leaf's, or zeros for a split.
    values: Vec<f64>,
    spans: Vec<Span>,
    /// Values per leaf (the same for every tree).
    outputs: usize,
    width: usize,
}

/// Rows walked side by side.
const LANES: usize = 8;
/// Rows a tree is applied to before the next tree is taken.
const BLOCK: usize = 64;
/// Rows per thread: below this a batch stays on one thread.
const CHUNK: usize = 256;

impl Flat {
    /// Lays out `trees` for rows of `width` features; tree `i` adds to the columns starting
    /// at `column(i)`. The trees are expected to be valid ([`Tree::validate`]); indices that
    /// are not are clamped, and a split reached twice becomes a leaf, so that walking can
    /// never read out of bounds nor loop.
    pub fn new(trees: &[Tree], width: usize, column: impl Fn(usize) -> usize) -> Self {
        let outputs = trees.first().map_or(1, |t| t.outputs.max(1));
        let mut flat = Flat {
            outputs,
            width: width.max(1),
            ..Default::default()
        };
        for (i, t) in trees.iter().enumerate() {
            // Arrays of unequal length (a tree that skipped validation) are cut to the shortest.
            let splits = t
                .feature
                .len()
                .min(t.threshold.len())
                .min(t.left.len())
                .min(t.right.len());
            let leaves = splits + 1;
            let start = flat.nodes.len();
            // Breadth first from the root: (the tree's child reference, this node's slot,
            // its depth). A reference is a split index, or `!leaf`.
            let mut seen = vec![false; splits];
            let mut queue =
                std::collections::VecDeque::from([(if splits > 0 { 0 } else { -1 }, 0u32, 0usize)]);
            let mut depth = 0;
            // Per node of this tree, the leaf it is; splits stay `None` and get zeros.
            let mut leaf_of = vec![None];
            flat.nodes.push(leaf_node(0));
            while let Some((reference, slot, d)) = queue.pop_front() {
                depth = depth.max(d);
                let at = start + slot as usize;
                let split = usize::try_from(reference).ok().filter(|&n| n < splits);
                match split {
                    Some(n) if !seen[n] => {
                        seen[n] = true;
                        let right = (flat.nodes.len() - start) as u32;
                        flat.nodes[at] = Node {
                            threshold: t.threshold[n],
                            feature: t.feature[n].min(flat.width as u32 - 1),
                            right,
                        };
                        for (k, child) in [t.right[n], t.left[n]].into_iter().enumerate() {
                            flat.nodes.push(leaf_node(right + k as u32));
                            leaf_of.push(None);
                            queue.push_back((child, right + k as u32, d + 1));
                        }
                    }
                    _ => {
                        let leaf = if reference < 0 {
                            !reference as usize
                        } else {
                            0
                        };
                        leaf_of[at - start] = Some(leaf.min(leaves - 1));
                    }
                }
            }
            for leaf in leaf_of {
                flat.values.extend((0..outputs).map(|j| {
                    leaf.and_then(|l| t.values.get(l * outputs + j))
                        .copied()
                        .unwrap_or(0.0)
                }));
            }
            flat.spans.push(Span {
                start,
                nodes: flat.nodes.len() - start,
                depth,
                column: column(i),
            });
        }
        flat
    }

    /// Adds every tree's leaf values for each row of `x` (row-major, `width` columns) to
    /// `out` (`rows × columns`); output columns past `out`'s width are skipped.
    pub fn add_to(&self, x: ArrayView2<f64>, out: &mut Array2<f64>) {
        let add = |(mut o, xs): (ArrayViewMut2<f64>, ArrayView2<f64>)| {
            let xs = xs.as_standard_layout();
            let columns = o.ncols();
            match (xs.as_slice(), o.as_slice_mut()) {
                (Some(xs), Some(o)) => self.add_rows(xs, o, columns),
                // Not reached: both are in standard layout. Row by row keeps it correct.
                _ => {
                    for (r, mut orow) in o.rows_mut().into_iter().enumerate() {
                        let row = xs.row(r).to_vec();
                        let mut acc = orow.to_vec();
                        self.add_rows(&row, &mut acc, columns);
                        orow.assign(&ndarray::ArrayView1::from(&acc));
                    }
                }
            }
        };
        if x.nrows() > CHUNK {
            let outs: Vec<_> = out.axis_chunks_iter_mut(Axis(0), CHUNK).collect();
            let ins: Vec<_> = x.axis_chunks_iter(Axis(0), CHUNK).collect();
            outs.into_par_iter().zip(ins).for_each(add);
        } else {
            add((out.view_mut(), x));
        }
    }

    fn add_rows(&self, x: &[f64], out: &mut [f64], columns: usize) {
        let w = self.width;
        let rows = (x.len() / w).min(out.len() / columns.max(1));
        let k = self.outputs;
        let mut leaves = [0usize; LANES];
        let single = k == 1;
        for block in (0..rows).step_by(BLOCK) {
            let end = (block + BLOCK).min(rows);
            for span in &self.spans {
                let nodes = &self.nodes[span.start..span.start + span.nodes];
                let values = &self.values[span.start * k..(span.start + span.nodes) * k];
                for lane0 in (block..end).step_by(LANES) {
                    let used = LANES.min(end - lane0);
                    if used == LANES {
                        let rows = &x[lane0 * w..(lane0 + LANES) * w];
                        let mut at = [0u32; LANES];
                        for _ in 0..span.depth {
                            let mut moved = 0;
                            for j in 0..LANES {
                                let n = nodes[at[j] as usize];
                                let v = rows[j * w + n.feature as usize];
                                let next = n.right + u32::from(v <= n.threshold);
                                moved |= next ^ at[j];
                                at[j] = next;
                            }
                            // Most rows stop well above the deepest leaf.
                            if moved == 0 {
                                break;
                            }
                        }
                        for j in 0..LANES {
                            leaves[j] = at[j] as usize;
                        }
                    } else {
                        // A few rows (one, for a single prediction): each walks on its own.
                        for j in 0..used {
                            let row = &x[(lane0 + j) * w..(lane0 + j + 1) * w];
                            let mut at = 0u32;
                            for _ in 0..span.depth {
                                let n = nodes[at as usize];
                                let v = row[n.feature as usize];
                                let next = n.right + u32::from(v <= n.threshold);
                                if next == at {
                                    break;
                                }
                                at = next;
                            }
                            leaves[j] = at as usize;
                        }
                    }
                    for (j, &l) in leaves.iter().enumerate().take(used) {
                        let row = lane0 + j;
                        if single && span.column < columns {
                            out[row * columns + span.column] += values[l];
                            continue;
                        }
                        let dst = &mut out[row * columns..(row + 1) * columns];
                        let src = &values[l * k..(l + 1) * k];
                        for (d, s) in dst.iter_mut().skip(span.column).zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// A node that stays where it is: no value is `<=` NaN.
fn leaf_node(me: u32) -> Node {
    Node {
        threshold: f64::NAN,
        feature: 0,
        right: me,
    }
}

/// A [`Flat`] ensemble made on first use and kept beside the trees it was made from. It
/// is derived data: clones start empty and it takes no part in equality, so a model read
/// back from a file equals the one that was saved whether or not either has predicted.
#[derive(Debug, Default)]
pub struct FlatCache(std::sync::OnceLock<Flat>);

impl FlatCache {
    pub fn get(&self, make: impl FnOnce() -> Flat) -> &Flat {
        self.0.get_or_init(make)
    }
}

impl Clone for FlatCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for FlatCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// x0 <= 0.5 ? (x1 <= 1 ? leaf 0 : leaf 1) : leaf 2 — an unbalanced tree.
    fn tree(outputs: usize) -> Tree {
        Tree {
            outputs,
            feature: vec![0, 1],
            threshold: vec![0.5, 1.0],
            left: vec![1, !0],
            right: vec![!2, !1],
            values: (0..3 * outputs).map(|v| v as f64 + 1.0).collect(),
        }
    }

    #[test]
    fn matches_the_tree_walk_for_every_row_count_and_nan() {
        let t = tree(1);
        let flat = Flat::new(&[t.clone(), t.clone()], 2, |i| i);
        for rows in [1, 7, 8, 9, 63, 64, 65, 300] {
            let x = Array2::from_shape_fn((rows, 2), |(i, j)| match (i % 5, j) {
                (4, 0) => f64::NAN,
                _ => ((i * 7 + j * 3) % 4) as f64 * 0.5,
            });
            let mut out = Array2::zeros((rows, 2));
            flat.add_to(x.view(), &mut out);
            for (i, row) in x.rows().into_iter().enumerate() {
                let want = t.value(row)[0];
                assert_eq!(out[[i, 0]], want, "row {i} of {rows}");
                assert_eq!(out[[i, 1]], want, "row {i} of {rows}");
            }
        }
    }

    #[test]
    fn multi_output_trees_add_every_value_and_a_stump_is_one_leaf() {
        let flat = Flat::new(&[tree(2)], 2, |_| 0);
        let mut out = Array2::zeros((2, 2));
        flat.add_to(array![[0.0, 5.0], [1.0, 0.0]].view(), &mut out);
        assert_eq!(out, array![[3.0, 4.0], [5.0, 6.0]]);

        let stump = Tree {
            outputs: 1,
            feature: vec![],
            threshold: vec![],
            left: vec![],
            right: vec![],
            values: vec![2.5],
        };
        let flat = Flat::new(&[stump], 3, |_| 0);
        let mut out = Array2::zeros((3, 1));
        flat.add_to(Array2::zeros((3, 3)).view(), &mut out);
        assert_eq!(out, array![[2.5], [2.5], [2.5]]);
    }

    #[test]
    fn broken_indices_are_clamped_not_followed_out_of_bounds() {
        let mut t = tree(1);
        t.left[0] = 99;
        t.feature[1] = 40;
        t.values.clear();
        t.right.pop();
        let flat = Flat::new(&[t], 2, |_| 0);
        let mut out = Array2::zeros((1, 1));
        flat.add_to(array![[0.0, 0.0]].view(), &mut out);
        assert!(out[[0, 0]].is_finite());
    }

    #[test]
    fn a_split_that_points_back_up_ends_the_walk_instead_of_looping() {
        let mut t = tree(1);
        t.right[1] = 0;
        let flat = Flat::new(&[t], 2, |_| 0);
        let mut out = Array2::zeros((9, 1));
        flat.add_to(Array2::zeros((9, 2)).view(), &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
    }
}
