//! Training every built-in kind on a generated table, saving it as a package, loading it
//! back (same predictions), and refusing packages that were tampered with.

use std::fs;
use std::path::Path;

use bastion_ml::builtin::Kind;
use bastion_ml::package::{self, Limits, MANIFEST, WEIGHTS};
use bastion_ml::predictor::{ColumnData, Prediction, Predictor, Table};
use bastion_ml::train::{TrainSpec, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

/// Two numeric features, a categorical one with a missing value, a class label (text) that
/// depends on all of them, and a numeric target.
fn table(n: usize) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let a: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let b: Vec<f64> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    let city: Vec<Option<String>> = (0..n)
        .map(|i| match i % 7 {
            0 => None,
            k if k < 3 => Some("oslo".into()),
            k if k < 5 => Some("bergen".into()),
            _ => Some("alta".into()),
        })
        .collect();
    let label = (0..n)
        .map(|i| {
            let bump = if city[i].as_deref() == Some("alta") {
                1.0
            } else {
                0.0
            };
            Some(
                if a[i] + b[i] * b[i] - 1.5 + bump > 0.0 {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            )
        })
        .collect();
    let value = (0..n).map(|i| Some(3.0 * a[i] - b[i] + 0.5)).collect();
    Table {
        names: vec![
            "a".into(),
            "b".into(),
            "city".into(),
            "label".into(),
            "value".into(),
        ],
        columns: vec![
            ColumnData::Numeric(a.into_iter().map(Some).collect()),
            ColumnData::Numeric(b.into_iter().map(Some).collect()),
            ColumnData::Text(city),
            ColumnData::Text(label),
            ColumnData::Numeric(value),
        ],
    }
}

fn spec<'a>(kind: Kind, target: &'a str, features: &'a [String]) -> TrainSpec<'a> {
    TrainSpec {
        kind,
        target,
        features: Some(features),
        params: Map::new(),
        task: None,
        test_fraction: 0.25,
        seed: 5,
    }
}

fn same(a: &Prediction, b: &Prediction) {
    match (a, b) {
        (Prediction::Classes(x), Prediction::Classes(y)) => assert_eq!(x, y),
        (Prediction::Values(x), Prediction::Values(y)) => assert_eq!(x, y),
        _ => panic!("different kinds of prediction"),
    }
}

#[test]
fn every_kind_trains_saves_and_loads_back_identically() {
    let t = table(800);
    let feats: Vec<String> = ["a", "b", "city"].map(String::from).to_vec();
    let dir = tempfile::tempdir().unwrap();
    for (kind, target, metric, floor) in [
        (Kind::Logreg, "label", "accuracy", 0.7),
        (Kind::Gbdt, "label", "accuracy", 0.9),
        (Kind::Forest, "label", "accuracy", 0.9),
        (Kind::Mlp, "label", "accuracy", 0.85),
        (Kind::Linear, "value", "r2", 0.999),
        (Kind::Gbdt, "value", "r2", 0.95),
        (Kind::Forest, "value", "r2", 0.9),
        (Kind::Mlp, "value", "r2", 0.95),
    ] {
        let mut steps = 0;
        let trained = train(&t, &spec(kind, target, &feats), |_| steps += 1).unwrap();
        let got = trained.evaluation.metrics[metric];
        assert!(
            got >= floor,
            "{kind:?} on {target}: {metric} {got} < {floor}"
        );
        assert_eq!(trained.train_rows + trained.test_rows, 800);
        if matches!(kind, Kind::Gbdt | Kind::Mlp | Kind::Logreg) {
            assert!(steps > 0, "{kind:?} reports its training curve");
        }
        let path = dir.path().join(format!("{}-{target}", kind.as_str()));
        package::save(&path, &trained.model, Default::default()).unwrap();
        let (manifest, loaded) = package::load(&path, Limits::default()).unwrap();
        assert_eq!(Kind::of(&manifest.model), Some(kind));
        assert_eq!(loaded, trained.model);
        same(
            &loaded.predict(&t).unwrap(),
            &trained.model.predict(&t).unwrap(),
        );
        // The same spec and seed give the same model.
        let again = train(&t, &spec(kind, target, &feats), |_| {}).unwrap();
        assert_eq!(again.model, trained.model, "{kind:?} is deterministic");
    }
}

fn trained_package(dir: &Path) -> std::path::PathBuf {
    let t = table(300);
    let feats: Vec<String> = ["a", "b", "city"].map(String::from).to_vec();
    let m = train(&t, &spec(Kind::Gbdt, "label", &feats), |_| {}).unwrap();
    let p = dir.join("pkg");
    package::save(&p, &m.model, Default::default()).unwrap();
    p
}

fn load_err(p: &Path) -> String {
    match package::load(p, Limits::default()) {
        Ok(_) => "loaded".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// Rewrites the manifest through `edit` (as text).
fn edit_manifest(p: &Path, edit: impl Fn(String) -> String) {
    let m = p.join(MANIFEST);
    let text = fs::read_to_string(&m).unwrap();
    fs::write(&m, edit(text)).unwrap();
}

#[test]
fn tampered_or_unknown_packages_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = trained_package(dir.path());
    // One changed byte in the weights.
    let w = p.join(WEIGHTS);
    let mut bytes = fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&w, &bytes).unwrap();
    assert!(
        load_err(&p).contains("does not match its digest"),
        "{}",
        load_err(&p)
    );
    bytes[last] ^= 1;
    fs::write(&w, &bytes).unwrap();
    package::load(&p, Limits::default()).unwrap();

    // A newer format.
    edit_manifest(&p, |t| {
        t.replace("format_version = 1", "format_version = 2")
    });
    assert!(load_err(&p).contains("format version 2 is not supported"));
    edit_manifest(&p, |t| {
        t.replace("format_version = 2", "format_version = 1")
    });

    // An unknown field, an unlisted file, a link, a traversal name.
    edit_manifest(&p, |t| format!("surprise = true\n{t}"));
    assert!(load_err(&p).contains("surprise"), "{}", load_err(&p));
    edit_manifest(&p, |t| t.replace("surprise = true\n", ""));
    fs::write(p.join("payload.pkl"), b"x").unwrap();
    assert!(load_err(&p).contains("'payload.pkl' is not listed"));
    fs::remove_file(p.join("payload.pkl")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
        assert!(load_err(&p).contains("not a regular file"));
        fs::remove_file(p.join("link")).unwrap();
    }
    edit_manifest(&p, |t| {
        t.replace(
            "[files.\"weights.safetensors\"]",
            "[files.\"../weights.safetensors\"]",
        )
    });
    assert!(
        load_err(&p).contains("not a plain file name"),
        "{}",
        load_err(&p)
    );
    edit_manifest(&p, |t| {
        t.replace(
            "[files.\"../weights.safetensors\"]",
            "[files.\"weights.safetensors\"]",
        )
    });
    package::load(&p, Limits::default()).unwrap();

    // A structure that does not match the tensors (more trees than stored).
    edit_manifest(&p, |t| t.replace("trees = 100", "trees = 101"));
    assert!(load_err(&p).contains("trees.nodes"), "{}", load_err(&p));
    edit_manifest(&p, |t| t.replace("trees = 101", "trees = 100"));

    // Preprocessing that would mis-encode or divide by zero.
    edit_manifest(&p, |t| {
        t.replace(
            "[\"alta\", \"bergen\", \"oslo\"]",
            "[\"oslo\", \"alta\", \"bergen\"]",
        )
    });
    assert!(
        load_err(&p).contains("categories must be sorted"),
        "{}",
        load_err(&p)
    );
    edit_manifest(&p, |t| {
        t.replace(
            "[\"oslo\", \"alta\", \"bergen\"]",
            "[\"alta\", \"bergen\", \"oslo\"]",
        )
    });
    let original = fs::read_to_string(p.join(MANIFEST)).unwrap();
    edit_manifest(&p, |t| {
        t.lines()
            .map(|l| {
                if l.starts_with("scale = ") {
                    "scale = 0.0\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    assert!(load_err(&p).contains("positive scale"), "{}", load_err(&p));
    fs::write(p.join(MANIFEST), original).unwrap();
    package::load(&p, Limits::default()).unwrap();

    // Over the size limits.
    let err = |l: Limits| {
        package::load(&p, l)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let small = Limits {
        max_file_bytes: 1000,
        ..Limits::default()
    };
    assert!(err(small).contains("limit"));
    let few = Limits {
        max_tensor_elements: 10,
        ..Limits::default()
    };
    assert!(err(few).contains("element limit"));

    // Saving never overwrites.
    let (_, m) = package::load(&p, Limits::default()).unwrap();
    let again = package::save(&p, &m, Default::default())
        .err()
        .map(|e| e.to_string());
    assert!(again.unwrap_or_default().contains("already exists"));
}

/// Replaces the weights with `bytes` and makes the manifest's digest and size match, as an
/// attacker who controls the whole folder would.
fn forge_weights(p: &Path, bytes: &[u8]) {
    use sha2::Digest as _;
    fs::write(p.join(WEIGHTS), bytes).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(bytes));
    edit_manifest(p, |t| {
        t.lines()
            .map(|line| {
                if line.starts_with("sha256 = ") {
                    format!("sha256 = \"{digest}\"\n")
                } else if line.starts_with("size = ") {
                    format!("size = {}\n", bytes.len())
                } else {
                    format!("{line}\n")
                }
            })
            .collect()
    });
}

#[test]
fn hostile_weights_cannot_loop_or_index_out_of_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let p = trained_package(dir.path());
    let good = fs::read(p.join(WEIGHTS)).unwrap();
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let data_start = 8 + header_len;
    let offset = |name: &str| data_start + meta.info(name).unwrap().data_offsets.0;

    // The first tree's second node sends rows back to the root: a loop.
    let mut looped = good.clone();
    let at = offset("trees.left") + 4;
    looped[at..at + 4].copy_from_slice(&0i32.to_le_bytes());
    forge_weights(&p, &looped);
    assert!(
        load_err(&p).contains("points at node 0"),
        "{}",
        load_err(&p)
    );

    // A split on a feature the model does not have.
    let mut far = good.clone();
    let at = offset("trees.feature");
    far[at..at + 4].copy_from_slice(&1_000_000i32.to_le_bytes());
    forge_weights(&p, &far);
    assert!(load_err(&p).contains("feature 1000000"), "{}", load_err(&p));

    // A leaf index past the end.
    let mut leaf = good.clone();
    let at = offset("trees.right");
    leaf[at..at + 4].copy_from_slice(&(!5000i32).to_le_bytes());
    forge_weights(&p, &leaf);
    assert!(load_err(&p).contains("leaf 5000"), "{}", load_err(&p));

    // Garbage that is not safetensors at all, and a header declaring a huge tensor.
    forge_weights(&p, &[0xff; 64]);
    assert!(
        load_err(&p).contains("not valid safetensors"),
        "{}",
        load_err(&p)
    );
    let header = br#"{"init":{"dtype":"F64","shape":[1000000000000],"data_offsets":[0,8]}}"#;
    let mut huge = (header.len() as u64).to_le_bytes().to_vec();
    huge.extend_from_slice(header);
    huge.extend_from_slice(&[0; 8]);
    forge_weights(&p, &huge);
    assert!(load_err(&p).contains("safetensors"), "{}", load_err(&p));

    // The genuine bytes load again.
    forge_weights(&p, &good);
    package::load(&p, Limits::default()).unwrap();
}

#[test]
fn bad_training_input_is_named() {
    let t = table(100);
    let feats: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let e = |s: TrainSpec| {
        train(&t, &s, |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(e(spec(Kind::Gbdt, "nope", &feats)).contains("no target column 'nope'"));
    let missing: Vec<String> = vec!["zzz".into()];
    assert!(e(spec(Kind::Gbdt, "label", &missing)).contains("no column 'zzz'"));
    let with_target: Vec<String> = vec!["a".into(), "label".into()];
    assert!(e(spec(Kind::Gbdt, "label", &with_target)).contains("cannot also be a feature"));
    assert!(e(spec(Kind::Linear, "label", &feats)).contains("regression needs numbers"));
    let mut p = spec(Kind::Gbdt, "label", &feats);
    p.params = serde_json::from_str::<Map<String, Value>>(r#"{"num_leafs": 8}"#).unwrap();
    assert!(e(p).contains("unknown field `num_leafs`"));
    // One class only.
    let mut one = t.clone();
    one.columns[3] = ColumnData::Text(vec![Some("yes".into()); 100]);
    let s = spec(Kind::Logreg, "label", &feats);
    let err = train(&one, &s, |_| {}).err().unwrap().to_string();
    assert!(err.contains("single class"), "{err}");
    // A missing label.
    let mut gap = t.clone();
    if let ColumnData::Text(v) = &mut gap.columns[3] {
        v[42] = None;
    }
    let err = train(&gap, &s, |_| {}).err().unwrap().to_string();
    assert!(err.contains("missing in 1 rows (first: row 42)"), "{err}");
    // Predicting with a column of the wrong kind or missing.
    let m = train(&t, &s, |_| {}).unwrap().model;
    let mut wrong = t.clone();
    wrong.columns[0] = ColumnData::Text(vec![Some("x".into()); 100]);
    assert!(
        m.predict(&wrong)
            .unwrap_err()
            .to_string()
            .contains("column 'a' holds text")
    );
    let mut dropped = t.clone();
    dropped.names[1] = "renamed".into();
    assert!(
        m.predict(&dropped)
            .unwrap_err()
            .to_string()
            .contains("no column 'b'")
    );
}
