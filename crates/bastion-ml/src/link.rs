//! Link functions shared by the models: the logistic sigmoid, softmax and log(1 + eᶻ),
//! each written so that large scores neither overflow nor lose precision.

/// The logistic function 1 / (1 + e⁻ᶻ).
pub fn sigmoid(z: f64) -> f64 {
    // e⁻|ᶻ| never overflows; 1/(1+e) for z ≥ 0 and e/(1+e) below are the same formulas as
    // ever, chosen with a select rather than a branch the sign of z would mispredict.
    let e = (-z.abs()).exp();
    let num = if z >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// log(1 + eᶻ) without overflow.
pub fn log1p_exp(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Scores to probabilities, in place (shifted by the maximum first).
pub fn softmax_in_place(z: &mut [f64]) {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    z.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax over each row of a matrix.
pub fn softmax_rows(z: &mut ndarray::Array2<f64>) {
    let width = z.ncols().max(1);
    // A matrix the models made is row-major: whole rows as slices, no per-element strides.
    if let Some(flat) = z.as_slice_mut() {
        flat.chunks_exact_mut(width).for_each(softmax_in_place);
        return;
    }
    // Otherwise each row goes through the same function via a buffer, so both layouts give
    // the same numbers.
    let mut buf = vec![0.0; z.ncols()];
    for mut row in z.rows_mut() {
        buf.iter_mut().zip(row.iter()).for_each(|(b, &v)| *b = v);
        softmax_in_place(&mut buf);
        row.iter_mut().zip(&buf).for_each(|(r, &b)| *r = b);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, ShapeBuilder};

    use super::softmax_rows;

    #[test]
    fn softmax_rows_is_the_same_for_row_and_column_major_matrices() {
        let values = [1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0];
        let mut rows = Array2::from_shape_vec((2, 3), values.to_vec()).unwrap_or_default();
        let mut cols = Array2::zeros((2, 3).f());
        cols.assign(&rows);
        softmax_rows(&mut rows);
        softmax_rows(&mut cols);
        assert_eq!(rows, cols);
        let e: Vec<f64> = [-2.0f64, -1.0, 0.0].iter().map(|v| v.exp()).collect();
        let sum: f64 = e.iter().sum();
        for (j, v) in e.iter().enumerate() {
            assert!((rows[[0, j]] - v / sum).abs() < 1e-15);
        }
        assert_eq!(rows.row(1).to_vec(), vec![0.0, 0.0, 1.0]);
    }
}
