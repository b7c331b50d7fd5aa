//! A test fraction of 0 trains on every row: nothing is held out, so the model sees every
//! row and the run has a training curve but no test metrics. Other fractions outside
//! (0, 1) are refused.

mod common;

use bastion_ml::builtin::{Estimator, Kind};
use bastion_ml::predictor::{ColumnData, Prediction, Predictor};
use bastion_ml::train::train;

#[test]
fn a_zero_test_fraction_trains_on_every_row_and_evaluates_nothing() {
    let t = common::noisy_rule(300);
    let mut spec = common::logreg_spec();
    spec.kind = Kind::Gbdt;
    spec.test_fraction = 0.0;
    let mut steps = Vec::new();
    let trained = train(&t, &spec, |s| steps.push(s.metric.to_owned())).unwrap();
    assert_eq!((trained.train_rows, trained.test_rows), (300, 0));
    assert_eq!(trained.evaluation.rows, 0);
    assert!(trained.evaluation.metrics.is_empty());
    assert!(steps.iter().all(|m| m == "train_loss"), "{steps:?}");
    assert_eq!(trained.history["train_loss"].len(), 100);
    // The boosting starts from the log-odds of every row's labels, not of a subset's.
    let Estimator::Gbdt(m) = &trained.model.estimator else {
        panic!("a gbdt was asked for")
    };
    let y = t.column("y").unwrap();
    let ColumnData::Text(y) = y else {
        panic!("the label is text")
    };
    let yes = y.iter().filter(|v| v.as_deref() == Some("yes")).count() as f64;
    assert!((m.init[0] - (yes / (300.0 - yes)).ln()).abs() < 1e-12);
    let Prediction::Classes(p) = trained.model.predict(&t).unwrap() else {
        panic!("a classifier predicts classes")
    };
    assert_eq!(p.nrows(), 300);
}

#[test]
fn test_fractions_outside_zero_to_one_are_refused() {
    let t = common::noisy_rule(50);
    for f in [1.0, 1.5, -0.1, f64::NAN] {
        let mut spec = common::logreg_spec();
        spec.test_fraction = f;
        let e = train(&t, &spec, |_| {}).err().unwrap();
        assert!(e.to_string().contains("test fraction"), "{f}: {e}");
    }
}
