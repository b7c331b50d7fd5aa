//! Evaluation metrics with scikit-learn's definitions, so a number Bastion reports is the
//! number a data scientist gets from `sklearn.metrics` on the same predictions: the same tie
//! handling in ROC and precision-recall curves, the same clipping in log loss, the same bins
//! as `calibration_curve`, the same zero-division and label-set rules.
//!
//! Classes are indices `0..k`; class probabilities are row-major `n × k`.

use serde::Serialize;

use crate::error::{MlError, MlResult};

fn check_len(what: &str, a: usize, b: usize) -> MlResult<()> {
    if a != b {
        return Err(MlError::invalid(format!(
            "{what}: {a} labels but {b} predictions"
        )));
    }
    if a == 0 {
        return Err(MlError::invalid(format!("{what}: no samples")));
    }
    Ok(())
}

/// Checks an `n × k` probability matrix and that every label is a class of it.
fn check_proba(what: &str, y: &[usize], proba: &[f64], k: usize) -> MlResult<()> {
    if k < 2 {
        return Err(MlError::invalid(format!(
            "{what}: need at least 2 classes, got {k}"
        )));
    }
    check_len(what, y.len(), proba.len() / k)?;
    if proba.len() != y.len() * k {
        return Err(MlError::invalid(format!(
            "{what}: {} probabilities is not {} rows × {k} classes",
            proba.len(),
            y.len()
        )));
    }
    if let Some(i) = proba.iter().position(|p| !p.is_finite()) {
        return Err(MlError::invalid(format!(
            "{what}: probability at row {}, class {} is not finite",
            i / k,
            i % k
        )));
    }
    if let Some(i) = y.iter().position(|&c| c >= k) {
        return Err(MlError::invalid(format!(
            "{what}: label {} at row {i} is not one of the {k} classes",
            y[i]
        )));
    }
    Ok(())
}

/// The fraction of predictions equal to their label.
pub fn accuracy(y: &[usize], pred: &[usize]) -> MlResult<f64> {
    check_len("accuracy", y.len(), pred.len())?;
    let hits = y.iter().zip(pred).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y.len() as f64)
}

/// `m[true][predicted]` counts over classes `0..k`.
pub fn confusion_matrix(y: &[usize], pred: &[usize], k: usize) -> MlResult<Vec<Vec<u64>>> {
    check_len("confusion matrix", y.len(), pred.len())?;
    let mut m = vec![vec![0u64; k]; k];
    for (i, (&t, &p)) in y.iter().zip(pred).enumerate() {
        if t >= k || p >= k {
            return Err(MlError::invalid(format!(
                "confusion matrix: row {i} names class {} of {k}",
                t.max(p)
            )));
        }
        m[t][p] += 1;
    }
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// Per class index; `None` for a class neither in the labels nor in the predictions
    /// (scikit-learn leaves those out of its averages).
    pub per_class: Vec<Option<ClassScores>>,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
}

/// Precision, recall and F1 per class, and their macro and support-weighted averages over the
/// classes present in the labels or predictions (`classification_report`, zero division = 0).
pub fn classification_report(
    y: &[usize],
    pred: &[usize],
    k: usize,
) -> MlResult<ClassificationReport> {
    let m = confusion_matrix(y, pred, k)?;
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let tp = m[c][c] as f64;
        let support: u64 = m[c].iter().sum();
        let predicted: u64 = m.iter().map(|row| row[c]).sum();
        if support == 0 && predicted == 0 {
            per_class.push(None);
            continue;
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let precision = ratio(tp, predicted as f64);
        let recall = ratio(tp, support as f64);
        let f1 = ratio(2.0 * tp, (predicted + support) as f64);
        per_class.push(Some(ClassScores {
            precision,
            recall,
            f1,
            support,
        }));
    }
    let present: Vec<&ClassScores> = per_class.iter().flatten().collect();
    let n = present.len() as f64;
    let total: u64 = present.iter().map(|s| s.support).sum();
    let avg = |f: fn(&ClassScores) -> f64| present.iter().map(|s| f(s)).sum::<f64>() / n;
    let wavg = |f: fn(&ClassScores) -> f64| {
        if total == 0 {
            0.0
        } else {
            present.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / total as f64
        }
    };
    Ok(ClassificationReport {
        macro_avg: ClassScores {
            precision: avg(|s| s.precision),
            recall: avg(|s| s.recall),
            f1: avg(|s| s.f1),
            support: total,
        },
        weighted_avg: ClassScores {
            precision: wavg(|s| s.precision),
            recall: wavg(|s| s.recall),
            f1: wavg(|s| s.f1),
            support: total,
        },
        per_class,
    })
}

/// Points of a curve at each distinct score, highest first: cumulative true and false
/// positives when everything scoring at least that threshold is called positive.
struct Cumulative {
    thresholds: Vec<f64>,
    tps: Vec<f64>,
    fps: Vec<f64>,
}

fn cumulative(positive: &[bool], score: &[f64]) -> Cumulative {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = Cumulative {
        thresholds: Vec::new(),
        tps: Vec::new(),
        fps: Vec::new(),
    };
    for (i, &j) in order.iter().enumerate() {
        if positive[j] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // A threshold closes where the next score differs (ties form one point).
        let last = order.get(i + 1).is_none_or(|&n| score[n] != score[j]);
        if last {
            out.thresholds.push(score[j]);
            out.tps.push(tp);
            out.fps.push(fp);
        }
    }
    out
}

/// A binary ROC curve (`roc_curve` with `drop_intermediate=False`): false and true positive
/// rates from (0, 0), and the threshold of each point after the first (+∞).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub thresholds: Vec<f64>,
}

fn binary_inputs(what: &str, positive: &[bool], score: &[f64]) -> MlResult<(f64, f64)> {
    check_len(what, positive.len(), score.len())?;
    if let Some(i) = score.iter().position(|s| !s.is_finite()) {
        return Err(MlError::invalid(format!(
            "{what}: score at row {i} is not finite"
        )));
    }
    let p = positive.iter().filter(|&&b| b).count() as f64;
    let n = positive.len() as f64 - p;
    Ok((p, n))
}

pub fn roc_curve(positive: &[bool], score: &[f64]) -> MlResult<Curve> {
    let (p, n) = binary_inputs("ROC curve", positive, score)?;
    if p == 0.0 || n == 0.0 {
        return Err(MlError::invalid(
            "ROC curve: the labels hold only one class, so the curve is undefined",
        ));
    }
    let c = cumulative(positive, score);
    let mut curve = Curve {
        x: vec![0.0],
        y: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for i in 0..c.thresholds.len() {
        curve.x.push(c.fps[i] / n);
        curve.y.push(c.tps[i] / p);
        curve.thresholds.push(c.thresholds[i]);
    }
    Ok(curve)
}

/// Area under the ROC curve by the trapezoidal rule (`roc_auc_score`, binary).
pub fn roc_auc(positive: &[bool], score: &[f64]) -> MlResult<f64> {
    let c = roc_curve(positive, score)?;
    Ok(c.x
        .windows(2)
        .zip(c.y.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
        .sum())
}

/// A precision-recall curve (`precision_recall_curve`): recall on `x`, precision on `y`, from
/// the highest threshold down, ending at recall 1 (the point where everything is positive).
pub fn precision_recall_curve(positive: &[bool], score: &[f64]) -> MlResult<Curve> {
    let (p, _) = binary_inputs("precision-recall curve", positive, score)?;
    if p == 0.0 {
        return Err(MlError::invalid(
            "precision-recall curve: no positive labels, so recall is undefined",
        ));
    }
    let c = cumulative(positive, score);
    let mut curve = Curve {
        x: Vec::new(),
        y: Vec::new(),
        thresholds: Vec::new(),
    };
    for i in 0..c.thresholds.len() {
        curve.x.push(c.tps[i] / p);
        curve.y.push(c.tps[i] / (c.tps[i] + c.fps[i]));
        curve.thresholds.push(c.thresholds[i]);
    }
    Ok(curve)
}

/// Average precision, Σ (Rₙ − Rₙ₋₁)·Pₙ over thresholds (`average_precision_score`: a step
/// function, not the trapezoid, which would be optimistic).
pub fn average_precision(positive: &[bool], score: &[f64]) -> MlResult<f64> {
    let c = precision_recall_curve(positive, score)?;
    let mut prev = 0.0;
    let mut ap = 0.0;
    for (r, p) in c.x.iter().zip(&c.y) {
        ap += (r - prev) * p;
        prev = *r;
    }
    Ok(ap)
}

/// Column `c` of a row-major `n × k` matrix.
fn column(proba: &[f64], k: usize, c: usize) -> Vec<f64> {
    proba.iter().skip(c).step_by(k).copied().collect()
}

/// ROC AUC of class probabilities: the positive class's column for two classes, else the
/// unweighted mean of one-vs-rest AUCs (`roc_auc_score(multi_class="ovr", average="macro")`).
pub fn roc_auc_proba(y: &[usize], proba: &[f64], k: usize) -> MlResult<f64> {
    one_vs_rest("ROC AUC", y, proba, k, roc_auc)
}

/// Average precision of class probabilities (binary, or the macro one-vs-rest mean).
pub fn average_precision_proba(y: &[usize], proba: &[f64], k: usize) -> MlResult<f64> {
    one_vs_rest("average precision", y, proba, k, average_precision)
}

fn one_vs_rest(
    what: &str,
    y: &[usize],
    proba: &[f64],
    k: usize,
    f: fn(&[bool], &[f64]) -> MlResult<f64>,
) -> MlResult<f64> {
    check_proba(what, y, proba, k)?;
    let classes: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
    let mut sum = 0.0;
    for &c in &classes {
        let positive: Vec<bool> = y.iter().map(|&t| t == c).collect();
        sum += f(&positive, &column(proba, k, c))
            .map_err(|e| MlError::invalid(format!("{what}, class {c}: {e}")))?;
    }
    Ok(sum / classes.len() as f64)
}

/// Mean negative log-likelihood of the true class, probabilities clipped to [ε, 1 − ε] with
/// ε the f64 machine epsilon (`log_loss`).
pub fn log_loss(y: &[usize], proba: &[f64], k: usize) -> MlResult<f64> {
    check_proba("log loss", y, proba, k)?;
    let eps = f64::EPSILON;
    let sum: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| -proba[i * k + c].clamp(eps, 1.0 - eps).ln())
        .sum();
    Ok(sum / y.len() as f64)
}

/// Brier score: mean squared error of the positive class's probability for two classes, of
/// the whole probability vector against the one-hot label for more (`brier_score_loss`).
pub fn brier(y: &[usize], proba: &[f64], k: usize) -> MlResult<f64> {
    check_proba("Brier score", y, proba, k)?;
    let sum: f64 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if k == 2 {
                let t = if c == 1 { 1.0 } else { 0.0 };
                (proba[i * 2 + 1] - t).powi(2)
            } else {
                (0..k)
                    .map(|j| (proba[i * k + j] - if j == c { 1.0 } else { 0.0 }).powi(2))
                    .sum::<f64>()
            }
        })
        .sum();
    Ok(sum / y.len() as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean predicted probability (`prob_pred` of `calibration_curve`).
    pub confidence: f64,
    /// Observed frequency (`prob_true`).
    pub observed: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Σ (count / n) · |observed − confidence| over non-empty bins.
    pub ece: f64,
    /// The largest gap over non-empty bins.
    pub mce: f64,
    pub bins: Vec<ReliabilityBin>,
}

/// Expected calibration error and its reliability table over `bins` equal-width bins, binned
/// as `calibration_curve(strategy="uniform")` bins: a probability on an interior edge falls in
/// the lower bin. Two classes: the positive class's probability against the label; more: the
/// top class's probability against whether it was right (top-label calibration).
pub fn calibration(y: &[usize], proba: &[f64], k: usize, bins: usize) -> MlResult<Calibration> {
    check_proba("calibration", y, proba, k)?;
    if bins == 0 {
        return Err(MlError::invalid("calibration: need at least one bin"));
    }
    let (conf, hit): (Vec<f64>, Vec<f64>) = (0..y.len())
        .map(|i| {
            let row = &proba[i * k..(i + 1) * k];
            if k == 2 {
                (row[1], if y[i] == 1 { 1.0 } else { 0.0 })
            } else {
                let (top, p) =
                    row.iter()
                        .enumerate()
                        .fold((0, f64::NEG_INFINITY), |best, (j, &p)| {
                            if p > best.1 { (j, p) } else { best }
                        });
                (p, if top == y[i] { 1.0 } else { 0.0 })
            }
        })
        .unzip();
    if let Some(i) = conf.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(MlError::invalid(format!(
            "calibration: probability {} at row {i} is outside [0, 1]",
            conf[i]
        )));
    }
    let edges: Vec<f64> = (0..=bins).map(|i| i as f64 / bins as f64).collect();
    let mut count = vec![0u64; bins];
    let mut sum_conf = vec![0.0; bins];
    let mut sum_hit = vec![0.0; bins];
    for (&p, &h) in conf.iter().zip(&hit) {
        // np.searchsorted(interior_edges, p, side="left"): interior edges strictly below p.
        let b = edges[1..bins].partition_point(|&e| e < p);
        count[b] += 1;
        sum_conf[b] += p;
        sum_hit[b] += h;
    }
    let n = y.len() as f64;
    let mut out = Calibration {
        ece: 0.0,
        mce: 0.0,
        bins: Vec::new(),
    };
    for b in 0..bins {
        if count[b] == 0 {
            continue;
        }
        let c = count[b] as f64;
        let (confidence, observed) = (sum_conf[b] / c, sum_hit[b] / c);
        let gap = (observed - confidence).abs();
        out.ece += c / n * gap;
        out.mce = out.mce.max(gap);
        out.bins.push(ReliabilityBin {
            lower: edges[b],
            upper: edges[b + 1],
            count: count[b],
            confidence,
            observed,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegressionScores {
    pub mae: f64,
    pub rmse: f64,
    /// 1 − SS_res / SS_tot; for constant targets 1 if predicted exactly, else 0 (`r2_score`).
    pub r2: f64,
}

pub fn regression(y: &[f64], pred: &[f64]) -> MlResult<RegressionScores> {
    check_len("regression metrics", y.len(), pred.len())?;
    if let Some(i) = y
        .iter()
        .zip(pred)
        .position(|(a, b)| !a.is_finite() || !b.is_finite())
    {
        return Err(MlError::invalid(format!(
            "regression metrics: a value at row {i} is not finite"
        )));
    }
    let n = y.len() as f64;
    let mae = y.iter().zip(pred).map(|(a, b)| (a - b).abs()).sum::<f64>() / n;
    let ss_res: f64 = y.iter().zip(pred).map(|(a, b)| (a - b).powi(2)).sum();
    let mean = y.iter().sum::<f64>() / n;
    let ss_tot: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
    let r2 = if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    };
    Ok(RegressionScores {
        mae,
        rmse: (ss_res / n).sqrt(),
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    // Expected values from scikit-learn 1.9.1 on the same inputs.
    #[test]
    fn binary_curves_with_ties() {
        let y = [0, 0, 1, 1, 1, 0, 1, 0];
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.05];
        let pos: Vec<bool> = y.iter().map(|&c| c == 1).collect();
        close(roc_auc(&pos, &s).unwrap(), 0.8125);
        close(average_precision(&pos, &s).unwrap(), 0.8166666666666667);
        let c = roc_curve(&pos, &s).unwrap();
        assert_eq!(c.x.len(), 7, "six distinct scores and the origin");
    }

    #[test]
    fn classification_report_matches_sklearn() {
        let y = [0, 1, 2, 2, 1, 0, 2, 1];
        let p = [0, 2, 2, 2, 1, 0, 1, 1];
        let r = classification_report(&y, &p, 4).unwrap();
        assert_eq!(r.per_class[3], None);
        let c1 = r.per_class[1].unwrap();
        close(c1.precision, 2.0 / 3.0);
        close(c1.recall, 2.0 / 3.0);
        close(r.macro_avg.f1, (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0);
        close(accuracy(&y, &p).unwrap(), 0.75);
        let m = confusion_matrix(&y, &p, 3).unwrap();
        assert_eq!(m, vec![vec![2, 0, 0], vec![0, 2, 1], vec![0, 1, 2]]);
    }

    #[test]
    fn probabilistic_scores() {
        let y = [0, 1, 2, 1];
        let p = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6, 0.3, 0.4, 0.3];
        close(brier(&y, &p, 3).unwrap(), 0.245);
        let ll = -(0.7f64.ln() + 0.8f64.ln() + 0.6f64.ln() + 0.4f64.ln()) / 4.0;
        close(log_loss(&y, &p, 3).unwrap(), ll);
        let yb = [0, 1, 1, 0, 1];
        let pb = [0.9, 0.1, 0.2, 0.8, 0.4, 0.6, 0.6, 0.4, 0.7, 0.3];
        close(brier(&yb, &pb, 2).unwrap(), 0.172);
        // A certain, wrong prediction is clipped, not infinite.
        assert!(log_loss(&[0], &[0.0, 1.0], 2).unwrap().is_finite());
    }

    #[test]
    fn calibration_bins_like_calibration_curve() {
        // 0.2 sits on an interior edge of 5 bins: numpy's searchsorted puts it in the lower bin.
        let y = [0, 1, 1, 0, 1];
        let p1 = [0.2, 0.2, 0.9, 0.5, 0.7];
        let proba: Vec<f64> = p1.iter().flat_map(|&p| [1.0 - p, p]).collect();
        let c = calibration(&y, &proba, 2, 5).unwrap();
        assert_eq!(c.bins[0].upper, 0.2);
        assert_eq!(c.bins[0].count, 2);
        close(c.bins[0].observed, 0.5);
    }

    #[test]
    fn regression_scores() {
        let r = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).unwrap();
        close(r.mae, 0.5);
        close(r.rmse, 0.375f64.sqrt());
        close(r.r2, 0.9486081370449679);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 1.0]).unwrap().r2, 1.0);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 2.0]).unwrap().r2, 0.0);
    }

    #[test]
    fn bad_inputs_are_named() {
        let e = roc_auc(&[true, true], &[0.1, 0.2]).unwrap_err().to_string();
        assert!(e.contains("one class"), "{e}");
        let e = log_loss(&[0, 5], &[0.5, 0.5, 0.5, 0.5], 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1"), "{e}");
        let e = brier(&[0], &[f64::NAN, 1.0], 2).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
        assert!(accuracy(&[], &[]).is_err());
        assert!(regression(&[1.0], &[1.0, 2.0]).is_err());
        let e = roc_auc_proba(
            &[0, 0, 1],
            &[0.5, 0.3, 0.2, 0.6, 0.1, 0.3, 0.3, 0.3, 0.4],
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("class 2"), "{e}");
    }
}
