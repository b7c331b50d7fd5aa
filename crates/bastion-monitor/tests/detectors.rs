//! The per-caller detectors on replayed traffic with known ground truth: benign callers
//! sending natural queries, a Jacobian-based augmentation extraction attack (small steps
//! from a few seeds, as Papernot et al.'s substitute training makes), a random-query
//! extraction attack, and a boundary prober — each attacker with the benign callers'
//! volume. The false-alarm rate is measured on the benign callers.

use std::collections::BTreeMap;

use bastion_monitor::alert::Subject;
use bastion_monitor::{
    AlertRules, Alerter, Cell, DetectorSettings, Detectors, Observation, Outcome, Reference, Scale,
};
use bastion_policy::Value;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const DIMS: usize = 4;
const QUERIES: usize = 1000;
const BENIGN_CALLERS: usize = 40;

const RULES: &str = r#"
[[alert]]
name = "extraction"
when = "extraction.score > 0.11"
for = 2
respond = ["block_actor"]

[[alert]]
name = "probing"
when = "probing.boundary_rate > 0.5"
for = 2
respond = ["throttle_actor"]
"#;

fn normal_point(rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..DIMS).map(|_| StandardNormal.sample(rng)).collect()
}

/// The model under attack: `yes` when x0 + x1 > 0, more confident farther from the line.
fn answer(x: &[f64]) -> (String, f64) {
    let s = x[0] + x[1];
    let p = 1.0 / (1.0 + (-3.0 * s).exp());
    if s > 0.0 {
        ("yes".into(), p)
    } else {
        ("no".into(), 1.0 - p)
    }
}

fn observation(actor: &str, t: i64, x: &[f64]) -> Observation {
    let (label, confidence) = answer(x);
    let features: BTreeMap<String, Vec<Cell>> = x
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("x{i}"), vec![Cell::Number(*v)]))
        .collect();
    Observation {
        time_ms: t,
        actor: actor.into(),
        rows: 1,
        features,
        predictions: vec![Cell::Text(label)],
        confidence: vec![confidence],
        probabilities: Vec::new(),
        outcome: Outcome {
            status: 200,
            latency_us: 500,
            route: "stable".into(),
            decision: "ok".into(),
        },
    }
}

fn reference() -> Reference {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rows: Vec<Vec<f64>> = (0..2000).map(|_| normal_point(&mut rng)).collect();
    let columns = (0..DIMS)
        .map(|i| {
            (
                format!("x{i}"),
                rows.iter().map(|r| Cell::Number(r[i])).collect(),
            )
        })
        .collect();
    Reference::new(columns, None).unwrap()
}

/// Jacobian-based augmentation: from 10 seeds, each round adds every known point moved by
/// λ along the sign of the substitute's gradient (here a random sign per round and point).
fn jbda(seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut known: Vec<Vec<f64>> = (0..10).map(|_| normal_point(&mut rng)).collect();
    let mut out = known.clone();
    while out.len() < QUERIES {
        let mut next = Vec::new();
        for p in &known {
            let step: Vec<f64> = p
                .iter()
                .map(|v| v + 0.1 * if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect();
            next.push(step);
        }
        out.extend(next.iter().cloned());
        known.extend(next);
    }
    out.truncate(QUERIES);
    out
}

fn random_queries(seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..QUERIES)
        .map(|_| (0..DIMS).map(|_| rng.random_range(-3.0..3.0)).collect())
        .collect()
}

/// Walks inputs onto the decision boundary: natural points projected onto x0 + x1 = 0,
/// with a little noise.
fn boundary_probe(seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..QUERIES)
        .map(|_| {
            let mut p = normal_point(&mut rng);
            let s = (p[0] + p[1]) / 2.0;
            p[0] -= s;
            p[1] -= s;
            p[0] += 0.02 * rng.random::<f64>();
            p
        })
        .collect()
}

/// Replays one caller's queries (one a second) and returns the rules it fired, and the
/// extraction scores it got.
fn replay(actor: &str, queries: &[Vec<f64>]) -> (Vec<String>, Vec<f64>) {
    let reference = reference();
    let scale = Scale::of(&reference);
    let mut detectors = Detectors::new(DetectorSettings::default());
    let mut alerter = Alerter::new(AlertRules::parse(RULES).unwrap());
    let mut fired = Vec::new();
    let mut scores = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let o = observation(actor, i as i64 * 1000, q);
        if let Some(judged) = detectors.observe("m", Some(&scale), &o) {
            if let Some(bastion_policy::Value::Number(s)) = judged.signals.get("extraction.score") {
                scores.push(*s);
            }
            let subject = Subject {
                actor: judged.actor.clone(),
                ..Subject::model_version("m", "1")
            };
            for a in alerter.observe(&subject, judged.time_ms, &judged.signals) {
                assert!(a.key.ends_with(actor), "{}", a.key);
                fired.push(a.rule);
            }
        }
    }
    (fired, scores)
}

fn top(scores: &[f64]) -> f64 {
    scores.iter().copied().fold(0.0, f64::max)
}

#[test]
fn extraction_attackers_are_flagged_and_benign_callers_are_not() {
    let mut flagged_callers = 0;
    let mut benign = Vec::new();
    for k in 0..BENIGN_CALLERS {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + k as u64);
        let queries: Vec<Vec<f64>> = (0..QUERIES).map(|_| normal_point(&mut rng)).collect();
        let (fired, scores) = replay(&format!("benign-{k}"), &queries);
        benign.extend(scores);
        if !fired.is_empty() {
            flagged_callers += 1;
        }
    }
    let over = benign.iter().filter(|&&s| s > 0.11).count();
    let (jbda_fired, jbda_scores) = replay("jbda", &jbda(7));
    let (random_fired, random_scores) = replay("random", &random_queries(8));
    // Recorded in docs/monitoring.md: benign 0/40 callers and 0/720 judgements over 0.11
    // (highest 0.108); JbDA from 0.154 down to 0.116, flagged at its second judgement.
    eprintln!(
        "benign: {flagged_callers}/{BENIGN_CALLERS} callers flagged, {over}/{} judgements over \
         the threshold, highest {:.3}; JbDA lowest {:.3} highest {:.3} {jbda_fired:?}; \
         random highest {:.3} {random_fired:?}",
        benign.len(),
        top(&benign),
        jbda_scores.iter().copied().fold(1.0, f64::min),
        top(&jbda_scores),
        top(&random_scores),
    );
    assert_eq!(jbda_fired.first().map(String::as_str), Some("extraction"));
    assert!(jbda_scores.iter().all(|&s| s > 0.11), "{jbda_scores:?}");
    assert_eq!(flagged_callers, 0, "benign callers flagged");
    assert_eq!(over, 0, "benign judgements over the threshold");
    // Uniform random queries are not what PRADA looks for (their distances look natural);
    // the input guards' out-of-range and OOD flags (`probing.flagged_rate`) see them.
    assert!(random_fired.is_empty(), "{random_fired:?}");
}

#[test]
fn a_boundary_prober_is_flagged_and_natural_traffic_is_not() {
    let (fired, _) = replay("prober", &boundary_probe(9));
    assert!(fired.contains(&"probing".to_owned()), "{fired:?}");
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let natural: Vec<Vec<f64>> = (0..QUERIES).map(|_| normal_point(&mut rng)).collect();
    let (fired, _) = replay("natural", &natural);
    assert!(!fired.contains(&"probing".to_owned()), "{fired:?}");
}

/// Refused logins count per caller, and only the refused ones.
#[test]
fn credential_guessing_is_counted_per_caller() {
    let mut d = Detectors::new(DetectorSettings::default());
    let refused = |actor: &str, t: i64| Observation {
        rows: 0,
        features: BTreeMap::new(),
        predictions: Vec::new(),
        confidence: Vec::new(),
        outcome: Outcome {
            status: 401,
            latency_us: 0,
            route: "refused".into(),
            decision: "unauthenticated".into(),
        },
        ..observation(actor, t, &[0.0, 0.0])
    };
    let mut guesser = Vec::new();
    let mut user = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for t in 0..200 {
        if let Some(j) = d.observe("m", None, &refused("token guess", t)) {
            guesser.push(j.signals["abuse.auth_failures"].clone());
        }
        // A real user who mistyped once.
        let o = if t == 3 {
            refused("user:alice", t)
        } else {
            observation("user:alice", t, &normal_point(&mut rng))
        };
        if let Some(j) = d.observe("m", None, &o) {
            user.push(j.signals["abuse.auth_failures"].clone());
        }
    }
    let every = DetectorSettings::default().every as f64;
    assert_eq!(guesser, vec![Value::Number(every); 4]);
    assert_eq!(user[0], Value::Number(1.0));
    assert!(
        user[1..].iter().all(|v| *v == Value::Number(0.0)),
        "{user:?}"
    );
}
