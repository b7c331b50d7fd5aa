//! The attacks against closed forms on linear models, and a whole campaign on built-in
//! models trained here on generated data.

use std::collections::BTreeSet;

use bastion_ml::builtin::{BuiltinModel, Estimator, Kind};
use bastion_ml::predictor::{ColumnData, Predictor, Table};
use bastion_ml::train::{TaskKind, TrainSpec, labels, train};
use bastion_redteam::campaign::{Check, Plan, Subject, run};
use bastion_redteam::gradient::GradientAttack;
use bastion_redteam::hopskipjump::HopSkipJump;
use bastion_redteam::oracle::{Oracle, losses};
use bastion_redteam::retrain::BuiltinRetrain;
use bastion_redteam::square::Square;
use bastion_redteam::{Norm, Space};
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const D: usize = 5;

/// Two overlapping Gaussian classes in `D` features, plus a text label column.
fn table(n: usize, seed: u64) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cols: Vec<Vec<Option<f64>>> = (0..D).map(|_| Vec::with_capacity(n)).collect();
    let mut label = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 2;
        for (j, col) in cols.iter_mut().enumerate() {
            let shift = if c == 1 { 0.8 + 0.1 * j as f64 } else { 0.0 };
            let g: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
            col.push(Some(g * (1.0 + j as f64) + shift * (1.0 + j as f64)));
        }
        label.push(Some(if c == 1 { "bad" } else { "good" }.to_owned()));
    }
    let mut names: Vec<String> = (0..D).map(|j| format!("f{j}")).collect();
    names.push("label".into());
    let mut columns: Vec<ColumnData> = cols.into_iter().map(ColumnData::Numeric).collect();
    columns.push(ColumnData::Text(label));
    Table { names, columns }
}

fn trained(kind: Kind, params: serde_json::Value, t: &Table) -> bastion_ml::train::Trained {
    let spec = TrainSpec {
        kind,
        target: "label",
        features: None,
        params: params.as_object().cloned().unwrap_or_default(),
        task: Some(TaskKind::Classification),
        test_fraction: 0.25,
        seed: 7,
    };
    train(t, &spec, |_| {}).unwrap()
}

fn classes_of(m: &BuiltinModel, t: &Table) -> Vec<usize> {
    match labels(t, "label", None, m.signature.classes()).unwrap() {
        bastion_ml::train::Labels::Classes { y, .. } => y,
        _ => unreachable!(),
    }
}

/// The binary logistic model's weights and intercept in feature space.
fn linear(m: &BuiltinModel) -> (Array1<f64>, f64) {
    match &m.estimator {
        Estimator::Logreg(l) => (l.coef.row(0).to_owned(), l.intercept[0]),
        _ => unreachable!(),
    }
}

#[test]
fn fgsm_on_a_linear_model_reaches_the_closed_form_optimum() {
    let t = table(400, 1);
    let m = trained(Kind::Logreg, serde_json::json!({}), &t).model;
    let x = m.features(&t).unwrap();
    let y = classes_of(&m, &t);
    let oracle = Oracle::new(&m).unwrap();
    let space = Space::free(m.signature.features.clone());
    let (w, _) = linear(&m);
    let w_l2 = w.iter().map(|v| v * v).sum::<f64>().sqrt();
    for (norm, eps) in [(Norm::Linf, 0.3), (Norm::L2, 0.7)] {
        let adv = GradientAttack::fgsm(norm, eps)
            .run(&oracle, &space, x.view(), &y, 0)
            .unwrap();
        for i in 0..x.nrows() {
            // Loss rises fastest against the true class: w·x falls for class 1, rises for 0.
            let s = if y[i] == 1 { -1.0 } else { 1.0 };
            for j in 0..D {
                let want = match norm {
                    Norm::Linf => x[[i, j]] + s * eps * w[j].signum(),
                    Norm::L2 => x[[i, j]] + s * eps * w[j] / w_l2,
                };
                assert!(
                    (adv[[i, j]] - want).abs() < 1e-6,
                    "{norm:?} row {i} feature {j}: {} != {want}",
                    adv[[i, j]]
                );
            }
        }
        // No point of the ball does worse for the model than the FGSM point.
        let best = losses(&oracle.probabilities(adv.view()).unwrap(), &y);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let mut probe = x.clone();
            for mut row in probe.axis_iter_mut(Axis(0)) {
                let mut u = Array1::from_shape_fn(D, |_| rng.random_range(-1.0..1.0));
                norm.direction(u.view_mut());
                row.scaled_add(eps * rng.random::<f64>(), &u);
            }
            let l = losses(&oracle.probabilities(probe.view()).unwrap(), &y);
            for i in 0..x.nrows() {
                assert!(
                    l[i] <= best[i] + 1e-9,
                    "a random point beat FGSM at row {i}"
                );
            }
        }
    }
}

#[test]
fn hopskipjump_finds_the_minimal_l2_distance_of_a_linear_model() {
    let t = table(200, 2);
    let m = trained(Kind::Logreg, serde_json::json!({}), &t).model;
    let x = m.features(&t).unwrap();
    let y = classes_of(&m, &t);
    let oracle = Oracle::new(&m).unwrap();
    let space = Space::free(m.signature.features.clone());
    let rows: Vec<usize> = (0..40).collect();
    let x = x.select(Axis(0), &rows);
    let y: Vec<usize> = rows.iter().map(|&i| y[i]).collect();
    let found = HopSkipJump::default()
        .run(&oracle, &space, x.view(), &y, 11)
        .unwrap();
    let clean = oracle.labels(x.view()).unwrap();
    let (w, b) = linear(&m);
    let w_l2 = w.iter().map(|v| v * v).sum::<f64>().sqrt();
    let mut ratios = Vec::new();
    for i in 0..x.nrows() {
        if clean[i] != y[i] {
            assert_eq!(found[i].distance, 0.0);
            continue;
        }
        let exact = (x.row(i).dot(&w) + b).abs() / w_l2;
        let f = &found[i];
        assert!(f.adversarial.is_some(), "row {i}: nothing found");
        assert!(
            f.distance >= exact * (1.0 - 1e-6),
            "row {i}: below the minimum"
        );
        assert!(f.queries <= HopSkipJump::default().max_queries + 200);
        ratios.push(f.distance / exact);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    assert!(median < 1.05, "median distance is {median}× the minimum");
}

#[test]
fn square_stays_in_the_ball_and_turns_the_rows_a_corner_can_turn() {
    let t = table(300, 3);
    let m = trained(Kind::Logreg, serde_json::json!({}), &t).model;
    let x = m.features(&t).unwrap();
    let y = classes_of(&m, &t);
    let oracle = Oracle::new(&m).unwrap();
    let space = Space::free(m.signature.features.clone());
    let eps = 0.4;
    let (adv, queries) = Square::new(eps, 200)
        .run(&oracle, &space, x.view(), &y, 5)
        .unwrap();
    assert!(queries > 0);
    let after = oracle.labels(adv.view()).unwrap();
    let clean = oracle.labels(x.view()).unwrap();
    let (w, b) = linear(&m);
    let w_l1: f64 = w.iter().map(|v| v.abs()).sum();
    for i in 0..x.nrows() {
        assert!(Norm::Linf.distance(adv.row(i), x.row(i)) <= eps + 1e-12);
        let min_linf = (x.row(i).dot(&w) + b).abs() / w_l1;
        if clean[i] == y[i] && min_linf < 0.9 * eps {
            assert_ne!(
                after[i], y[i],
                "row {i} (minimum {min_linf}) was not turned"
            );
        }
        if clean[i] == y[i] && min_linf > eps {
            assert_eq!(after[i], y[i], "row {i} turned beyond the ball");
        }
    }
}

fn plan(checks: &[Check]) -> Plan {
    Plan {
        checks: checks.iter().copied().collect::<BTreeSet<_>>(),
        eps: vec![0.1, 0.3, 0.6],
        pgd_steps: 20,
        hopskipjump: HopSkipJump {
            max_iter: 10,
            max_queries: 3000,
            ..HopSkipJump::default()
        },
        square_iterations: 100,
        max_rows: 60,
        extraction_budgets: vec![20, 200],
        poison_rates: vec![0.1, 0.3],
        ..Plan::default()
    }
}

#[test]
fn a_campaign_on_an_mlp_reports_every_check_and_is_deterministic() {
    let t = table(300, 4);
    let params = serde_json::json!({"hidden": [16], "epochs": 60, "learning_rate": 0.01});
    let tr = trained(Kind::Mlp, params, &t);
    let m = &tr.model;
    let y = classes_of(m, &t);
    let retrain = BuiltinRetrain::from_recorded(
        &t,
        &tr.params,
        (0..D).map(|j| format!("f{j}")).collect(),
        m.signature.classes().unwrap().to_vec(),
    )
    .unwrap();
    let split = retrain.split(&y).unwrap();
    assert_eq!(split.test.len(), tr.test_rows);
    let subject = Subject {
        model: m,
        table: &t,
        y: y.clone(),
        split: Some(split),
        space: Space::of_preprocessor(&m.preprocessor, &t).unwrap(),
        trainer: Some(&retrain),
    };
    let p = Plan {
        max_rows: 100,
        defence_eps: 0.3,
        ..plan(&Check::ALL)
    };
    let (report, examples) = run(&subject, &p, &|_| {}).unwrap();
    assert_eq!(report.rows_from, "held-out");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.differentiable);
    // The held-out rows' accuracy is what training measured.
    assert!((report.clean_accuracy - tr.evaluation.metrics["accuracy"]).abs() < 1e-12);
    let ra = |k: &str| report.metrics[k];
    for attack in ["fgsm", "pgd", "hopskipjump", "square"] {
        let curve: Vec<f64> = ["eps_0_1", "eps_0_3", "eps_0_6"]
            .iter()
            .map(|e| ra(&format!("redteam.{attack}.{e}.robust_accuracy")))
            .collect();
        assert!(
            curve[0] <= report.clean_accuracy + 1e-12,
            "{attack}: {curve:?}"
        );
        if attack != "square" {
            assert!(
                curve.windows(2).all(|w| w[1] <= w[0] + 1e-12),
                "{attack}: {curve:?}"
            );
        }
    }
    assert!(
        ra("redteam.pgd.eps_0_6.robust_accuracy")
            <= ra("redteam.fgsm.eps_0_6.robust_accuracy") + 0.02
    );
    assert!(ra("redteam.pgd.eps_0_6.robust_accuracy") < report.clean_accuracy);
    let auc = ra("privacy.membership_auc");
    assert!((0.0..=1.0).contains(&auc));
    assert!(report.membership.as_ref().unwrap().shadow.is_some());
    assert!(ra("privacy.extraction_fidelity") > 0.75);
    assert_eq!(report.poisoning.len(), 2);
    let d = report.defence.as_ref().unwrap();
    assert_eq!(d.robust.len(), 6);
    assert!((d.clean_accuracy.without - report.clean_accuracy).abs() < 1e-12);
    assert!(
        report
            .metrics
            .contains_key("poisoning.flip_0_3.accuracy_drop")
    );
    // Every example is a real success: misclassified, within its ε.
    let oracle = Oracle::new(m).unwrap();
    for e in &examples {
        let x = Array2::from_shape_vec((1, D), e.features.clone()).unwrap();
        assert_eq!(oracle.labels(x.view()).unwrap()[0], e.predicted);
        assert_ne!(e.predicted, e.class);
        if let Some(eps) = e.eps {
            assert!(e.perturbation <= eps + 1e-9);
        }
    }
    let html = bastion_redteam::report::html("red team", &report);
    assert!(html.contains("<svg") && html.contains("Membership inference"));
    let (again, _) = run(&subject, &p, &|_| {}).unwrap();
    assert_eq!(report.metrics, again.metrics);
}

#[test]
fn models_without_gradients_or_training_data_skip_what_cannot_run() {
    let t = table(240, 5);
    let tr = trained(Kind::Gbdt, serde_json::json!({"n_estimators": 20}), &t);
    let m = &tr.model;
    let y = classes_of(m, &t);
    let subject = Subject {
        model: m,
        table: &t,
        y,
        split: None,
        space: Space::of_preprocessor(&m.preprocessor, &t).unwrap(),
        trainer: None,
    };
    let (report, _) = run(&subject, &plan(&Check::ALL), &|_| {}).unwrap();
    let skipped: BTreeSet<Check> = report.skipped.iter().map(|s| s.check).collect();
    assert_eq!(
        skipped,
        [
            Check::Fgsm,
            Check::Pgd,
            Check::Membership,
            Check::Poisoning,
            Check::Defence
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(report.rows_from, "sample");
    assert!(
        report
            .metrics
            .contains_key("redteam.hopskipjump.eps_0_3.robust_accuracy")
    );
    assert!(
        report
            .metrics
            .contains_key("redteam.square.eps_0_3.robust_accuracy")
    );
}

#[test]
fn bad_plans_and_regressors_are_refused_with_reasons() {
    let t = table(100, 6);
    let tr = trained(Kind::Logreg, serde_json::json!({}), &t);
    let y = classes_of(&tr.model, &t);
    let subject = Subject {
        model: &tr.model,
        table: &t,
        y: y.clone(),
        split: None,
        space: Space::of_preprocessor(&tr.model.preprocessor, &t).unwrap(),
        trainer: None,
    };
    for (bad, want) in [
        (
            Plan {
                eps: vec![f64::NAN],
                ..Plan::default()
            },
            "epsilon",
        ),
        (
            Plan {
                poison_rates: vec![1.5],
                ..Plan::default()
            },
            "poisoning rate",
        ),
        (
            Plan {
                max_rows: 0,
                ..Plan::default()
            },
            "at least one row",
        ),
    ] {
        let e = run(&subject, &bad, &|_| {}).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let short = Subject {
        y: vec![0; 3],
        ..subject
    };
    assert!(
        run(&short, &Plan::default(), &|_| {})
            .unwrap_err()
            .to_string()
            .contains("labels")
    );

    let mut reg = t.clone();
    reg.columns[D] = ColumnData::Numeric((0..100).map(|i| Some(i as f64 * 0.5)).collect());
    let spec = TrainSpec {
        kind: Kind::Linear,
        target: "label",
        features: None,
        params: Default::default(),
        task: None,
        test_fraction: 0.25,
        seed: 0,
    };
    let lin = train(&reg, &spec, |_| {}).unwrap().model;
    let e = Oracle::new(&lin).err().unwrap().to_string();
    assert!(e.contains("regressor"), "{e}");
}

/// One robust feature (a clear but noisy signal) and many weak ones that together predict
/// better but move together under an L∞ perturbation.
fn weak_features_table(n: usize, seed: u64) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weak = 20;
    let mut cols: Vec<Vec<Option<f64>>> = (0..=weak).map(|_| Vec::with_capacity(n)).collect();
    let mut label = Vec::with_capacity(n);
    let mut noise = || (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
    for i in 0..n {
        let s = if i % 2 == 1 { 1.0 } else { -1.0 };
        cols[0].push(Some(1.5 * s + 0.5 * noise()));
        for col in cols.iter_mut().skip(1) {
            col.push(Some(0.4 * s + noise()));
        }
        label.push(Some(if s > 0.0 { "bad" } else { "good" }.to_owned()));
    }
    let mut names: Vec<String> = (0..=weak).map(|j| format!("f{j}")).collect();
    names.push("label".into());
    let mut columns: Vec<ColumnData> = cols.into_iter().map(ColumnData::Numeric).collect();
    columns.push(ColumnData::Text(label));
    Table { names, columns }
}

#[test]
fn adversarial_training_makes_the_mlp_harder_to_turn() {
    let params = serde_json::json!({"hidden": [16], "epochs": 60, "learning_rate": 0.01});
    adversarial_training_helps(Kind::Mlp, params, 5, 0.3);
}

#[test]
fn adversarial_training_makes_logistic_regression_harder_to_turn() {
    adversarial_training_helps(Kind::Logreg, serde_json::json!({"max_iter": 100}), 1, 0.6);
}

/// The defence check retrains `kind` with adversarial training at `eps` and both FGSM and
/// PGD turn clearly fewer rows of the defended model.
fn adversarial_training_helps(kind: Kind, params: serde_json::Value, steps: usize, eps: f64) {
    let t = weak_features_table(800, 9);
    let tr = trained(kind, params, &t);
    let m = &tr.model;
    let y = classes_of(m, &t);
    let inputs: Vec<String> = m.signature.inputs.iter().map(|f| f.name.clone()).collect();
    let retrain = BuiltinRetrain::from_recorded(
        &t,
        &tr.params,
        inputs,
        m.signature.classes().unwrap().to_vec(),
    )
    .unwrap();
    let subject = Subject {
        model: m,
        table: &t,
        y: y.clone(),
        split: Some(retrain.split(&y).unwrap()),
        space: Space::of_preprocessor(&m.preprocessor, &t).unwrap(),
        trainer: Some(&retrain),
    };
    let p = Plan {
        eps: vec![eps],
        defence_eps: eps,
        defence_steps: steps,
        pgd_steps: 10,
        ..plan(&[Check::Defence])
    };
    let (report, _) = run(&subject, &p, &|_| {}).unwrap();
    let d = report.defence.as_ref().unwrap();
    for r in &d.robust {
        assert!(
            r.robust_accuracy.with > r.robust_accuracy.without + 0.1,
            "{:?} at {}: {:?}",
            r.attack,
            r.eps,
            r.robust_accuracy
        );
    }
    assert!(report.metrics.contains_key(&format!(
        "defence.pgd.eps_{}.robust_accuracy",
        eps.to_string().replace('.', "_")
    )));
}

#[test]
fn pgd_splits_rows_across_threads_without_changing_a_bit() {
    // Blocks of rows follow the pool's size; the examples must not.
    let t = table(300, 5);
    let m = trained(
        Kind::Mlp,
        serde_json::json!({"hidden": [16, 8], "epochs": 20}),
        &t,
    )
    .model;
    let x = m.features(&t).unwrap();
    let y = classes_of(&m, &t);
    let oracle = Oracle::new(&m).unwrap();
    let space = Space::free(m.signature.features.clone());
    let attack = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            GradientAttack::pgd(Norm::Linf, 0.3, 40, true)
                .run(&oracle, &space, x.view(), &y, 9)
                .unwrap()
        })
    };
    let one = attack(1);
    assert_ne!(one, x, "the attack moved nothing");
    assert_eq!(one, attack(2));
    assert_eq!(one, attack(3));
}
