//! Membership inference: can an attacker tell the training rows from other rows of the same
//! distribution by the model's answers? Two attacks, scored by the area under the ROC curve
//! of "member" against "non-member" (0.5 is no leak) and by the membership advantage, the
//! largest true-positive minus false-positive rate over all thresholds (Yeom et al., 2018).
//!
//! - Loss threshold (Yeom et al.): members have lower loss; the score is minus the loss.
//! - Shadow model (Shokri et al., 2017): a model of the same kind, trained by the attacker on
//!   half of its own data, teaches a classifier what member answers look like (probability
//!   of the true class, the top probability, the entropy and the margin); that classifier
//!   then scores the target's answers.

use bastion_ml::linear::{LogisticParams, LogisticRegression};
use bastion_ml::metrics::{roc_auc, roc_curve};
use ndarray::Array2;
use serde::Serialize;

use crate::error::RedteamResult;
use crate::oracle::{losses, margin};

/// How well an attack separates members from non-members.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Separation {
    pub auc: f64,
    pub advantage: f64,
}

/// AUC and advantage of `score` (higher means "member").
pub fn separation(member_scores: &[f64], non_member_scores: &[f64]) -> RedteamResult<Separation> {
    let positive: Vec<bool> = member_scores
        .iter()
        .map(|_| true)
        .chain(non_member_scores.iter().map(|_| false))
        .collect();
    let score: Vec<f64> = member_scores
        .iter()
        .chain(non_member_scores)
        .copied()
        .collect();
    let auc = roc_auc(&positive, &score)?;
    let curve = roc_curve(&positive, &score)?;
    let advantage = curve
        .x
        .iter()
        .zip(&curve.y)
        .map(|(fpr, tpr)| tpr - fpr)
        .fold(0.0, f64::max);
    Ok(Separation { auc, advantage })
}

/// The loss-threshold attack on the target's probabilities for members and non-members.
pub fn loss_threshold(
    members: (&Array2<f64>, &[usize]),
    non_members: (&Array2<f64>, &[usize]),
) -> RedteamResult<Separation> {
    let neg = |v: Vec<f64>| v.into_iter().map(|l| -l).collect::<Vec<_>>();
    separation(
        &neg(losses(members.0, members.1)),
        &neg(losses(non_members.0, non_members.1)),
    )
}

/// What the attack classifier sees of one answer.
fn answer_features(p: &Array2<f64>, y: &[usize]) -> Array2<f64> {
    Array2::from_shape_fn((p.nrows(), 4), |(i, f)| {
        let row = p.row(i);
        let py = row[y[i]].clamp(1e-15, 1.0);
        match f {
            0 => py.ln(),
            1 => row.iter().fold(0.0_f64, |m, &v| m.max(v)),
            2 => -row
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v * v.ln())
                .sum::<f64>(),
            _ => margin(row, y[i]),
        }
    })
}

/// The shadow-model attack: `shadow_in`/`shadow_out` are the shadow model's answers on its
/// own training rows and on rows it never saw; the classifier learnt from them scores the
/// target's answers on members and non-members.
pub fn shadow(
    shadow_in: (&Array2<f64>, &[usize]),
    shadow_out: (&Array2<f64>, &[usize]),
    members: (&Array2<f64>, &[usize]),
    non_members: (&Array2<f64>, &[usize]),
) -> RedteamResult<Separation> {
    let fin = answer_features(shadow_in.0, shadow_in.1);
    let fout = answer_features(shadow_out.0, shadow_out.1);
    let x = ndarray::concatenate(ndarray::Axis(0), &[fin.view(), fout.view()])
        .map_err(|e| crate::error::RedteamError::invalid(e.to_string()))?;
    let (mean, sd) = standardizer(&x);
    let x = (&x - &mean) / &sd;
    let labels: Vec<usize> = (0..fin.nrows())
        .map(|_| 1)
        .chain((0..fout.nrows()).map(|_| 0))
        .collect();
    let (attack, _) = LogisticRegression::fit(x.view(), &labels, 2, LogisticParams::default())?;
    let score = |a: (&Array2<f64>, &[usize])| -> RedteamResult<Vec<f64>> {
        let f = (answer_features(a.0, a.1) - &mean) / &sd;
        Ok(attack.predict_proba(f.view())?.column(1).to_vec())
    };
    separation(&score(members)?, &score(non_members)?)
}

fn standardizer(x: &Array2<f64>) -> (ndarray::Array1<f64>, ndarray::Array1<f64>) {
    let mean = x
        .mean_axis(ndarray::Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(x.ncols()));
    let sd = x
        .std_axis(ndarray::Axis(0), 0.0)
        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
    (mean, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separation_is_half_for_identical_scores_and_one_for_disjoint() {
        let s = separation(&[1.0, 1.0], &[1.0, 1.0]).unwrap();
        assert!((s.auc - 0.5).abs() < 1e-12 && s.advantage.abs() < 1e-12);
        let s = separation(&[3.0, 4.0], &[1.0, 2.0]).unwrap();
        assert!((s.auc - 1.0).abs() < 1e-12 && (s.advantage - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_model_that_memorises_leaks_by_its_loss() {
        // Members answered with certainty, non-members with a coin flip.
        let members = Array2::from_shape_fn((20, 2), |(_, c)| if c == 0 { 0.99 } else { 0.01 });
        let non = Array2::from_elem((20, 2), 0.5);
        let y = vec![0; 20];
        let s = loss_threshold((&members, &y), (&non, &y)).unwrap();
        assert!((s.auc - 1.0).abs() < 1e-12);
    }
}
