//! Performance with known ground truth: a calibrated classifier whose inputs move toward
//! its decision boundary (covariate shift) gets worse by an amount we can compute; the
//! label-free estimate must follow the measured accuracy and AUC, and a change of the
//! labels themselves (concept drift) must show in the measured figures, not the estimate.

use bastion_ml::metrics;
use bastion_monitor::performance::{Estimator, Labelled, measure};
use bastion_monitor::{AlertRules, Alerter, Cell, alert::Subject};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const CLASSES: [&str; 2] = ["no", "yes"];

/// One answered row: x ~ N(0, spread); the true P(yes) is σ(2x) and the label is drawn
/// from it (flipped when `flip`); the model answers σ(`sharpness`·x), calibrated for a
/// sharpness of 2 and overconfident above.
struct Answered {
    prediction: Cell,
    confidence: f64,
    probabilities: Vec<f64>,
    label: Cell,
}

fn answered_by(rng: &mut ChaCha8Rng, sharpness: f64, spread: f64, flip: bool) -> Answered {
    let x: f64 = Normal::new(0.0, spread).map_or(0.0, |n| n.sample(rng));
    let truth = 1.0 / (1.0 + (-2.0 * x).exp());
    let p = 1.0 / (1.0 + (-sharpness * x).exp());
    let yes = rng.random::<f64>() < truth;
    let yes = yes != flip;
    Answered {
        prediction: Cell::Text(CLASSES[usize::from(p >= 0.5)].into()),
        confidence: p.max(1.0 - p),
        probabilities: vec![1.0 - p, p],
        label: Cell::Text(CLASSES[usize::from(yes)].into()),
    }
}

fn answered(rng: &mut ChaCha8Rng, spread: f64, flip: bool) -> Answered {
    answered_by(rng, 2.0, spread, flip)
}

fn classes() -> Vec<String> {
    CLASSES.iter().map(|c| (*c).to_owned()).collect()
}

fn estimator(rng: &mut ChaCha8Rng) -> Estimator {
    estimator_of(rng, 2.0)
}

fn estimator_of(rng: &mut ChaCha8Rng, sharpness: f64) -> Estimator {
    let reference: Vec<Answered> = (0..5_000)
        .map(|_| answered_by(rng, sharpness, 1.0, false))
        .collect();
    Estimator::fit(
        &reference
            .iter()
            .map(|a| a.prediction.clone())
            .collect::<Vec<_>>(),
        &reference.iter().map(|a| a.confidence).collect::<Vec<_>>(),
        &reference
            .iter()
            .map(|a| a.probabilities.clone())
            .collect::<Vec<_>>(),
        &reference
            .iter()
            .map(|a| a.label.clone())
            .collect::<Vec<_>>(),
        &classes(),
    )
    .expect("enough reference rows")
}

fn labelled(a: &[Answered]) -> Vec<Labelled> {
    a.iter()
        .enumerate()
        .map(|(i, a)| Labelled {
            time_ms: i as i64,
            prediction: a.prediction.clone(),
            probabilities: a.probabilities.clone(),
            label: a.label.clone(),
        })
        .collect()
}

/// Estimates and measurements over windows of 5,000 rows whose inputs move toward the
/// boundary; returns the largest difference between them.
fn follow_the_shift(sharpness: f64, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let est = estimator_of(&mut rng, sharpness);
    // Accuracy on the reference: E[max(p, 1−p)] for x ~ N(0, 1), about 0.79.
    assert!(
        (est.reference_accuracy - 0.79).abs() < 0.03,
        "{}",
        est.reference_accuracy
    );
    let mut worst = 0.0f64;
    for spread in [1.0, 0.6, 0.3, 0.15] {
        let window: Vec<Answered> = (0..5_000)
            .map(|_| answered_by(&mut rng, sharpness, spread, false))
            .collect();
        let e = est
            .estimate(
                &window.iter().map(|a| a.confidence).collect::<Vec<_>>(),
                &window
                    .iter()
                    .map(|a| a.probabilities.clone())
                    .collect::<Vec<_>>(),
            )
            .expect("an estimate");
        let measured = measure(&labelled(&window), &classes());
        let (acc, auc) = (measured.accuracy.unwrap(), measured.roc_auc.unwrap());
        let est_auc = e.roc_auc.unwrap();
        let raw = window.iter().map(|a| a.confidence).sum::<f64>() / window.len() as f64;
        eprintln!(
            "sharpness {sharpness}, spread {spread}: accuracy {acc:.4}, estimated {:.4} \
             (raw mean confidence {raw:.4}); AUC {auc:.4}, estimated {est_auc:.4}",
            e.accuracy
        );
        worst = worst
            .max((e.accuracy - acc).abs())
            .max((est_auc - auc).abs());
        // The shift is real: inputs near the boundary make a worse model.
        if spread <= 0.3 {
            assert!(acc < 0.7 && e.accuracy_drop > 0.1, "spread {spread}: {acc}");
        }
    }
    worst
}

#[test]
fn the_estimate_follows_accuracy_and_auc_under_covariate_shift() {
    let worst = follow_the_shift(2.0, 7);
    assert!(worst < 0.02, "largest estimate error {worst}");
}

#[test]
fn an_overconfident_model_is_calibrated_on_the_reference_first() {
    // σ(5x) claims far more than σ(2x) delivers: its raw confidence overstates accuracy
    // by about 0.1; calibrated on the reference's labels, the estimate still follows.
    let worst = follow_the_shift(5.0, 9);
    assert!(worst < 0.03, "largest estimate error {worst}");
}

#[test]
fn concept_drift_shows_in_the_labels_and_fires_the_rule() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let est = estimator(&mut rng);
    let rules = AlertRules::parse(
        "[[alert]]\nname = \"accuracy\"\nwhen = \"performance.accuracy < 0.6\"\nfor = 2\n",
    )
    .unwrap();
    let mut alerter = Alerter::new(rules);
    let subject = Subject::model_version("m", "1");
    let mut fired = Vec::new();
    for w in 0..8 {
        // From window 4 on, the world answers the other way round.
        let window: Vec<Answered> = (0..500).map(|_| answered(&mut rng, 1.0, w >= 4)).collect();
        let e = est
            .estimate(
                &window.iter().map(|a| a.confidence).collect::<Vec<_>>(),
                &[],
            )
            .unwrap();
        // Inputs did not move: the estimate cannot see the change…
        assert!(
            (e.accuracy - est.reference_accuracy).abs() < 0.04,
            "{w}: {}",
            e.accuracy
        );
        let measured = measure(&labelled(&window), &classes());
        // …the labels do.
        let acc = measured.accuracy.unwrap();
        assert_eq!(w >= 4, acc < 0.5, "window {w}: accuracy {acc}");
        let y: Vec<usize> = window
            .iter()
            .map(|a| usize::from(a.label == Cell::Text("yes".into())))
            .collect();
        let proba: Vec<f64> = window
            .iter()
            .flat_map(|a| a.probabilities.clone())
            .collect();
        assert_eq!(measured.roc_auc, metrics::roc_auc_proba(&y, &proba, 2).ok());
        if !alerter.observe(&subject, w, &measured.signals).is_empty() {
            fired.push(w);
        }
    }
    // Two windows below 0.6: the alert fires at the second (window 5), once.
    assert_eq!(fired, vec![5]);
}
