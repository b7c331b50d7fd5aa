//! ONNX models are checked before any runtime sees them: these build models field by field
//! (valid ones, then hostile variants) and need no ONNX Runtime.

use bastion_ml::onnx::check::inspect;
use bastion_ml::onnx::proto::*;
use bastion_ml::onnx::{ImportOptions, Scores, describe};
use bastion_ml::package::{self, Limits};
use bastion_ml::predictor::Task;
use proptest::prelude::*;
use prost::Message;

fn tensor_type(elem_type: i32, dims: &[Option<i64>]) -> Option<TypeProto> {
    Some(TypeProto {
        value: Some(Value::TensorType(TensorType {
            elem_type,
            shape: Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        value: Some(match d {
                            Some(v) => Dim::Value(*v),
                            None => Dim::Param("batch".into()),
                        }),
                    })
                    .collect(),
            }),
        })),
    })
}

fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: tensor_type(elem::FLOAT, dims),
    }
}

fn floats(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem::FLOAT,
        float_data: (0..n).map(|i| i as f32 * 0.01).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A two-layer MLP as torch.onnx exports one: Gemm, Relu, Gemm → logits.
fn mlp() -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "test".into(),
        graph: Some(GraphProto {
            name: "mlp".into(),
            node: vec![
                node("Gemm", &["x", "w1", "b1"], &["h"]),
                node("Relu", &["h"], &["a"]),
                node("Gemm", &["a", "w2", "b2"], &["logits"]),
            ],
            initializer: vec![
                floats("w1", &[4, 8]),
                floats("b1", &[8]),
                floats("w2", &[8, 3]),
                floats("b2", &[3]),
            ],
            input: vec![value("x", &[None, Some(4)])],
            output: vec![value("logits", &[None, Some(3)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bytes(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

fn refused(m: &ModelProto, needle: &str) {
    match inspect(&bytes(m), Limits::default()) {
        Ok(_) => panic!("accepted a model that should be refused ({needle})"),
        Err(e) => assert!(
            e.to_string().contains(needle),
            "error '{e}' does not mention '{needle}'"
        ),
    }
}

#[test]
fn a_valid_mlp_is_described_once_its_scores_are_named() {
    let m = inspect(&bytes(&mlp()), Limits::default()).unwrap();
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(m.nodes, 3);
    assert!(m.operators.contains("Gemm"));
    // Three unnamed float columns: logits or probabilities? The importer must say.
    let e = describe(&m, &ImportOptions::default()).unwrap_err();
    assert!(e.to_string().contains("probabilities or logits"), "{e}");
    let opts = ImportOptions {
        scores: Some(Scores::Logits),
        features: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        ..Default::default()
    };
    let (sig, spec) = describe(&m, &opts).unwrap();
    assert_eq!(spec.output, "logits");
    assert_eq!(sig.features, vec!["a", "b", "c", "d"]);
    assert_eq!(
        sig.task,
        Task::Classification {
            classes: vec!["0".into(), "1".into(), "2".into()]
        }
    );
    assert_eq!(sig.inputs[0].shape, vec![-1, 4]);
    // Wrong counts are named.
    let e = describe(
        &m,
        &ImportOptions {
            features: Some(vec!["a".into()]),
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("take 4 values per row"), "{e}");
    let e = describe(
        &m,
        &ImportOptions {
            classes: Some(vec!["x".into(), "y".into()]),
            ..opts
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not fit 2 classes"), "{e}");
}

#[test]
fn garbage_truncated_and_empty_files_are_refused() {
    for b in [
        b"not a model".to_vec(),
        vec![0xff; 64],
        bytes(&mlp())[..40].to_vec(),
    ] {
        let e = inspect(&b, Limits::default()).unwrap_err();
        assert!(e.to_string().contains("ONNX"), "{e}");
    }
    // An empty message decodes, but it is no model.
    refused(&ModelProto::default(), "IR version 0");
    let limits = Limits {
        max_file_bytes: 10,
        ..Limits::default()
    };
    assert!(
        inspect(&bytes(&mlp()), limits)
            .unwrap_err()
            .to_string()
            .contains("limit")
    );
}

#[test]
fn unknown_operators_domains_versions_and_functions_are_refused() {
    let mut m = mlp();
    m.graph.as_mut().unwrap().node[1].op_type = "RunShellCommand".into();
    refused(&m, "'RunShellCommand' is not an operator");

    let mut m = mlp();
    m.graph.as_mut().unwrap().node[1].domain = "com.evil".into();
    refused(&m, "domain 'com.evil'");

    let mut m = mlp();
    m.opset_import.push(OperatorSetIdProto {
        domain: "com.microsoft".into(),
        version: 1,
    });
    refused(&m, "'com.microsoft'");

    let mut m = mlp();
    m.ir_version = 99;
    refused(&m, "IR version 99");

    let mut m = mlp();
    m.functions.push(FunctionProto {
        name: "f".into(),
        domain: "local".into(),
    });
    refused(&m, "model-local functions");

    let mut m = mlp();
    m.graph.as_mut().unwrap().node[1].op_type = "Loop".into();
    refused(&m, "Loop is refused");

    // An ai.onnx.ml operator the model does not import.
    let mut m = mlp();
    let n = &mut m.graph.as_mut().unwrap().node[1];
    n.op_type = "Scaler".into();
    n.domain = "ai.onnx.ml".into();
    refused(&m, "does not import");
}

#[test]
fn cycles_undefined_values_and_redefinitions_are_refused() {
    // Relu reads the output of the Gemm that follows it, which reads Relu's: a cycle.
    let mut m = mlp();
    let g = m.graph.as_mut().unwrap();
    g.node[0].input[0] = "a".into();
    refused(&m, "cycle");

    let mut m = mlp();
    m.graph.as_mut().unwrap().node.swap(0, 2);
    refused(&m, "not in topological order");

    let mut m = mlp();
    m.graph.as_mut().unwrap().node[1].output[0] = "h".into();
    refused(&m, "defined twice");

    let mut m = mlp();
    m.graph.as_mut().unwrap().output[0].name = "nowhere".into();
    refused(&m, "nothing defines");
}

#[test]
fn huge_shapes_and_bad_tensors_are_refused_before_anything_is_allocated() {
    let mut m = mlp();
    m.graph.as_mut().unwrap().input[0] = value("x", &[None, Some(1 << 20), Some(1 << 20)]);
    refused(&m, "element limit");

    let mut m = mlp();
    m.graph.as_mut().unwrap().input[0] = value("x", &[None, Some(-5)]);
    refused(&m, "dimension -5");

    // Declared huge, with no data behind it.
    let mut m = mlp();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 40, 1 << 40];
    refused(&m, "element limit");

    let mut m = mlp();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.float_data.clear();
    t.raw_data = vec![0; 7];
    refused(&m, "bytes of data");

    let mut m = mlp();
    m.graph.as_mut().unwrap().initializer[1].float_data.pop();
    refused(&m, "7 values");

    let mut m = mlp();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.float_data.clear();
    t.data_location = 1;
    t.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "../../etc/shadow".into(),
    }];
    refused(&m, "external file ('../../etc/shadow')");

    // A constant shape operand asking for 2^62 elements.
    let mut m = mlp();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(TensorProto {
        name: "big".into(),
        dims: vec![2],
        data_type: elem::INT64,
        int64_data: vec![1 << 31, 1 << 31],
        ..Default::default()
    });
    g.node.push(node("ConstantOfShape", &["big"], &["filled"]));
    refused(&m, "over the");
}

#[test]
fn subgraphs_are_checked_and_their_nesting_is_bounded() {
    fn nested(depth: usize) -> GraphProto {
        let mut g = GraphProto {
            name: format!("g{depth}"),
            node: vec![node("Identity", &["x"], &[&format!("y{depth}")])],
            output: vec![value(&format!("y{depth}"), &[None, Some(4)])],
            ..Default::default()
        };
        if depth > 0 {
            let mut n = node("If", &["cond"], &[&format!("z{depth}")]);
            n.attribute = vec![AttributeProto {
                name: "then_branch".into(),
                g: Some(Box::new(nested(depth - 1))),
                ..Default::default()
            }];
            g.node.push(n);
        }
        g
    }
    let model = |depth: usize| {
        let mut m = mlp();
        let g = m.graph.as_mut().unwrap();
        g.input.push(ValueInfoProto {
            name: "cond".into(),
            r#type: tensor_type(elem::BOOL, &[]),
        });
        let mut n = node("If", &["cond"], &["branch"]);
        n.attribute = vec![AttributeProto {
            name: "then_branch".into(),
            g: Some(Box::new(nested(depth))),
            ..Default::default()
        }];
        g.node.push(n);
        m
    };
    // Subgraphs may read the enclosing graph's values.
    inspect(&bytes(&model(3)), Limits::default()).unwrap();
    // Too deep is refused (by the check, or by the protobuf decoder's recursion limit).
    assert!(inspect(&bytes(&model(17)), Limits::default()).is_err());
    assert!(inspect(&bytes(&model(40)), Limits::default()).is_err());
    // An undefined value inside a subgraph is found.
    let mut m = model(1);
    let g = m.graph.as_mut().unwrap();
    let sub = g.node[3].attribute[0].g.as_mut().unwrap();
    sub.node[0].input[0] = "ghost".into();
    refused(&m, "reads 'ghost'");
}

#[test]
fn onnx_packages_are_digest_checked_before_the_runtime_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pkg");
    let b = bytes(&mlp());
    let m = inspect(&b, Limits::default()).unwrap();
    let (sig, spec) = describe(
        &m,
        &ImportOptions {
            scores: Some(Scores::Logits),
            ..Default::default()
        },
    )
    .unwrap();
    let manifest = package::save_onnx(&p, &b, sig, spec, Default::default()).unwrap();
    assert_eq!(manifest.framework, package::Framework::Onnx);
    assert_eq!(
        package::read_manifest(&p, Limits::default()).unwrap(),
        manifest
    );
    // A built-in loader refuses it rather than misreading it.
    assert!(package::load(&p, Limits::default()).is_err());
    let mut changed = b.clone();
    changed[10] ^= 1;
    std::fs::write(p.join(package::ONNX_MODEL), changed).unwrap();
    let e = package::load_predictor(&p, Limits::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not match its digest"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Any corruption of a valid model is either accepted as a model or refused with an
    /// error: never a panic.
    #[test]
    fn corrupted_models_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                    cut in any::<usize>()) {
        let mut b = bytes(&mlp());
        for (at, x) in flips {
            let i = at % b.len();
            b[i] ^= x;
        }
        b.truncate(1 + cut % b.len());
        let _ = inspect(&b, Limits::default());
    }
}
