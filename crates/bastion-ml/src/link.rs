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
    for mut row in z.rows_mut() {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
}
