//! Hyper-parameter search on a real table: the declared metric picks the winner, scores come
//! from validation rows only, halving narrows candidates while growing rows, and a bad
//! candidate fails its trial without stopping the search.

mod common;

use bastion_ml::predictor::Table;
use bastion_ml::train::TrainSpec;
use bastion_ml::tune::{Search, Space, tune};
use serde_json::json;

fn data(n: usize) -> Table {
    common::noisy_rule(n)
}

fn spec() -> TrainSpec<'static> {
    common::logreg_spec()
}

#[test]
fn grid_search_picks_the_best_validation_score() {
    let t = data(500);
    let space = Space::parse(&json!({"c": [1e-6, 1.0, 100.0]})).unwrap();
    let mut seen = 0;
    let r = tune(&t, &spec(), &space, Search::Grid, "log_loss", |_| seen += 1).unwrap();
    assert_eq!((r.trials.len(), seen), (3, 3));
    assert!(r.lower_is_better);
    // A near-zero C cannot fit the rule: its loss is that of a constant model.
    let losses: Vec<f64> = r.trials.iter().map(|t| t.score.unwrap()).collect();
    assert!(losses[0] > losses[1] && losses[0] > losses[2], "{losses:?}");
    let best = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(r.best_score, best);
    assert_ne!(r.best["c"], json!(1e-6));
    // 400 training rows, a quarter of them held out to score; the test rows are untouched.
    assert_eq!(r.validation_rows, 100);
    assert!(r.trials.iter().all(|t| t.rows == 300));
    // Deterministic.
    let again = tune(&t, &spec(), &space, Search::Grid, "log_loss", |_| {}).unwrap();
    assert_eq!(again.best, r.best);
    assert_eq!(again.best_score, r.best_score);
}

#[test]
fn halving_spends_more_rows_on_fewer_candidates() {
    let t = data(900);
    let space =
        Space::parse(&json!({"c": [1e-6, 1e-4, 1e-2, 1.0, 10.0, 100.0, 0.5, 2.0, 5.0]})).unwrap();
    let h = Search::Halving {
        trials: 9,
        eta: 3,
        min_rows: 20,
    };
    let r = tune(&t, &spec(), &space, h, "accuracy", |_| {}).unwrap();
    let per_rung: Vec<(usize, usize)> = (0..3)
        .map(|rung| {
            let ts: Vec<_> = r.trials.iter().filter(|t| t.rung == rung).collect();
            (ts.len(), ts.first().map_or(0, |t| t.rows))
        })
        .collect();
    // 9 candidates on 1/9 of the 540 fitting rows, 3 on 1/3, 1 on all of them.
    assert_eq!(per_rung, vec![(9, 60), (3, 180), (1, 540)]);
    let last = r.trials.last().unwrap();
    assert_eq!(r.best, last.params);
    assert!(r.best_score > 0.8);
}

#[test]
fn a_failing_candidate_fails_its_trial_only() {
    let t = data(300);
    let space = Space::parse(&json!({"c": [-1.0, 1.0]})).unwrap();
    let r = tune(&t, &spec(), &space, Search::Grid, "accuracy", |_| {}).unwrap();
    assert!(r.trials[0].score.is_none() && r.trials[0].error.is_some());
    assert_eq!(r.best["c"], json!(1.0));

    let all_bad = Space::parse(&json!({"nope": [1, 2]})).unwrap();
    let e = tune(&t, &spec(), &all_bad, Search::Grid, "accuracy", |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("every trial failed") && e.contains("nope"),
        "{e}"
    );
    let space = Space::parse(&json!({"c": [1.0]})).unwrap();
    let e = tune(&t, &spec(), &space, Search::Grid, "auc", |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no metric 'auc'") && e.contains("roc_auc"),
        "{e}"
    );
}
