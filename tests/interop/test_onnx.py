"""ONNX models from scikit-learn (skl2onnx) and PyTorch (torch.onnx), imported with
`bastion model import` and run with `bastion predict`: every prediction equals
onnxruntime's (the same pinned onnxruntime, loaded by Bastion from its wheel) to 1e-5.

torch itself is not installed here, because its Linux wheels pull gigabytes of CUDA
libraries: the torch models are files torch.onnx.export wrote (`torch_exports/export.py`,
kept in the repository), and graphs written node by node in the same layout vary the weights.
"""
import glob
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import cli

TOL = 1e-5
LIB = sorted(glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so*")))[0]


def run(home, *args, ok=True):
    return cli.run(home, *args, env={"BASTION_ONNXRUNTIME": LIB}, ok=ok)


load_csv = cli.load_csv


@pytest.fixture(scope="module")
def home():
    with cli.shipped_home() as d:
        yield d


def save(home, name, model):
    path = os.path.join(home, name + ".onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def import_and_predict(home, path, name, data, features, *extra):
    out = json.loads(run(home, "model", "import", path, "--name", name,
                         "--features", ",".join(features), *extra).stdout)
    assert out["runtime_checked"] is True
    assert out["registered"]["version"] == "1"
    lines = run(home, "predict", f"models:/{name}/1", "--data", data).stdout.splitlines()
    return out, [json.loads(line) for line in lines]


def reference(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {sess.get_inputs()[0].name: x}
    return sess.run(None, feeds)


def probs_from_zipmap(zm, classes):
    return np.array([[row[c] for c in classes] for row in zm], dtype=np.float64)


def bastion_probs(preds, classes):
    return np.array([[p["probabilities"][str(c)] for c in classes] for p in preds])


def assert_close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = np.max(np.abs(a - b))
    assert diff <= TOL, f"max difference {diff}"


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


SKL_OPSETS = {"": 17, "ai.onnx.ml": 3}


@pytest.mark.parametrize("kind", ["scaled_logreg", "forest", "boosting"])
def test_binary_sklearn_models_match_onnxruntime(home, kind):
    features, x, y = load_csv("breast_cancer.csv", "diagnosis")
    x32 = x.astype(np.float32)
    est = {
        "scaled_logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "forest": RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0),
        "boosting": GradientBoostingClassifier(n_estimators=30, random_state=0),
    }[kind]
    est.fit(x32, y)
    # Boosting without ZipMap (a probability tensor), the others with it (string labels).
    options = {id(est): {"zipmap": False}} if kind == "boosting" else None
    path = save(home, kind, to_onnx(est, x32[:1], options=options, target_opset=SKL_OPSETS))
    out, preds = import_and_predict(home, path, f"bc-{kind}", "bc@v1", features)
    classes = list(est.classes_)
    assert out["signature"]["task"]["classes"] == classes
    label, proba = reference(path, x32)
    ref = probs_from_zipmap(proba, classes) if kind != "boosting" else proba
    assert_close(bastion_probs(preds, classes), ref)
    assert [p["label"] for p in preds] == list(label)


def test_multiclass_logreg_with_zipmap_matches(home):
    features, x, y = load_csv("digits.csv", "digit")
    x32 = x.astype(np.float32)
    y = np.array([int(v) for v in y])
    est = LogisticRegression(max_iter=300).fit(x32, y)
    path = save(home, "digits_logreg", to_onnx(est, x32[:1], target_opset=SKL_OPSETS))
    out, preds = import_and_predict(home, path, "digits-logreg", "digits@v1", features)
    assert "ai.onnx.ml.ZipMap" in out["operators"]
    _, proba = reference(path, x32)
    assert_close(bastion_probs(preds, range(10)), probs_from_zipmap(proba, range(10)))


def test_tree_ensemble_regressor_matches(home):
    features, x, y = load_csv("diabetes.csv", "progression")
    x32 = x.astype(np.float32)
    est = GradientBoostingRegressor(n_estimators=40, random_state=0).fit(x32, np.array(y, dtype=float))
    path = save(home, "diabetes_gbr", to_onnx(est, x32[:1], target_opset=SKL_OPSETS))
    _, preds = import_and_predict(home, path, "diabetes-gbr", "diabetes@v1", features)
    (ref,) = reference(path, x32)
    assert_close([p["prediction"] for p in preds], ref.reshape(-1))


def torch_style_mlp(weights, biases):
    """Gemm(transB=1) + Relu layers, as torch.onnx exports nn.Linear/nn.ReLU."""
    nodes, inits, prev = [], [], "input"
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(w.T.astype(np.float32).copy(), f"fc{i}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"fc{i}.bias")]
        out = "logits" if i == len(weights) - 1 else f"/fc{i}/Gemm_output_0"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out],
                                      name=f"/fc{i}/Gemm", alpha=1.0, beta=1.0, transB=1))
        prev = out
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"/relu{i}/Relu_output_0"], name=f"/relu{i}/Relu"))
            prev = f"/relu{i}/Relu_output_0"
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", weights[0].shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", weights[-1].shape[1]])],
        inits)
    return helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 17)])


def test_torch_style_mlp_matches(home):
    features, x, y = load_csv("digits.csv", "digit")
    x32 = x.astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=200, random_state=0).fit(x32, y)
    model = torch_style_mlp(mlp.coefs_, mlp.intercepts_)
    onnx.checker.check_model(model)
    path = save(home, "mlp", model)
    # Unnamed float columns: the importer says they are logits.
    refused = run(home, "model", "import", path, "--name", "digits-mlp", "--features", ",".join(features), ok=False)
    assert refused.returncode != 0 and "probabilities or logits" in refused.stderr
    _, preds = import_and_predict(home, path, "digits-mlp", "digits@v1", features, "--scores", "logits")
    (logits,) = reference(path, x32)
    assert_close(bastion_probs(preds, range(10)), softmax(logits.astype(np.float64)))


def test_torch_style_cnn_matches(home):
    features, x, _ = load_csv("digits.csv", "digit")
    x32 = x.astype(np.float32)
    rng = np.random.default_rng(0)
    conv_w = rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, 4).astype(np.float32)
    fc_w = rng.normal(0, 0.1, (10, 4 * 4 * 4)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, 10).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(conv_w, "conv.weight"), (conv_b, "conv.bias"), (fc_w, "fc.weight"), (fc_b, "fc.bias")]]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", 10])], inits)
    model = helper.make_model(graph, producer_name="pytorch", opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = save(home, "cnn", model)
    # The 64 pixel columns, row by row, fill the [1, 8, 8] image.
    _, preds = import_and_predict(home, path, "digits-cnn", "digits@v1", features, "--scores", "logits")
    (logits,) = reference(path, x32.reshape(-1, 1, 8, 8))
    assert_close(bastion_probs(preds, range(10)), softmax(logits.astype(np.float64)))


TORCH_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_exports")


@pytest.mark.parametrize("name", ["mlp-dynamo", "mlp-torchscript", "cnn-dynamo", "cnn-torchscript"])
def test_torch_onnx_exports_match(home, name):
    """Files written by torch.onnx.export itself (torch_exports/export.py; torch is not installed
    here), from both of its exporters: the default one writes the CNN's flatten as a
    Reshape with a constant shape, the TorchScript one as Flatten."""
    features, x, labels = load_csv("digits.csv", "digit")
    x32 = x.astype(np.float32)
    path = os.path.join(TORCH_DIR, name + ".onnx")
    model = onnx.load(path)
    assert model.producer_name == "pytorch"
    out, preds = import_and_predict(home, path, f"digits-torch-{name}", "digits@v1", features,
                                    "--scores", "logits")
    assert out["signature"]["task"]["classes"] == [str(c) for c in range(10)]
    shape = (-1, 1, 8, 8) if name.startswith("cnn") else (-1, 64)
    (logits,) = reference(path, x32.reshape(shape))
    probs = bastion_probs(preds, range(10))
    assert_close(probs, softmax(logits.astype(np.float64)))
    # The models learned the digits (from pixels scaled to 0..1; these are 0..16, which
    # keeps most answers): the comparison above is not between two constant outputs.
    y = np.array([int(float(v)) for v in labels])
    assert np.mean(probs.argmax(axis=1) == y) > 0.5


def test_hostile_models_are_refused_with_a_reason(home):
    features, x, y = load_csv("breast_cancer.csv", "diagnosis")
    est = RandomForestClassifier(n_estimators=2, random_state=0).fit(x.astype(np.float32), y)
    model = to_onnx(est, x[:1].astype(np.float32), target_opset=SKL_OPSETS)
    # Weights moved to an external file that would be read from outside the model's folder.
    mlp = torch_style_mlp([np.ones((30, 2))], [np.zeros(2)])
    w = mlp.graph.initializer[0]
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    w.external_data.add(key="location", value="../../secret.bin")
    cases = [
        (mlp.SerializeToString(), "external file"),
        (b"\x08\x07" + os.urandom(200), "ONNX model"),
    ]
    custom = onnx.ModelProto()
    custom.CopyFrom(model)
    custom.graph.node[0].op_type = "NotAnOperator"
    cases.append((custom.SerializeToString(), "NotAnOperator"))
    for i, (raw, needle) in enumerate(cases):
        path = os.path.join(home, f"hostile{i}.onnx")
        with open(path, "wb") as f:
            f.write(raw)
        p = run(home, "model", "import", path, "--name", "hostile", "--features", ",".join(features), ok=False)
        assert p.returncode != 0, needle
        assert needle in p.stderr, p.stderr
        assert "panicked" not in p.stderr
