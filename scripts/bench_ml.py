"""GBDT training and prediction latency: Bastion beside LightGBM, onnxruntime and
scikit-learn, on the same data and the same machine.

Training: a generated binary dataset (20 features, linear and non-linear signal, label
noise) of --rows training rows and a separate 200k-row test set, generated --seeds times
(one data set trains one model, so the test AUC of a single data set moves by ±0.002 with
the data alone: the mean over several is what compares), and the shipped datasets (each
split 80/20 here, --splits times with different seeds, for the same reason: a test set of
90 to 360 rows moves by more than the difference between two good models). Bastion: `bastion train --model gbdt --test-fraction 0` on the
training version (a fresh process that reads the stored Parquet, trains on every row,
writes the package and tracks the run; its `fit_seconds` is the training call alone), then
`bastion evaluate` on the test version. LightGBM: Dataset construction + training from
in-memory numpy on the same rows, the same parameters (100 rounds, 31 leaves, learning rate
0.1, 255 bins, min 20 rows per leaf, 2 threads), scored by scikit-learn on the same test
rows.

Latency: a GradientBoosting model (100 trees, 31 leaves) and an MLP (20-64-64-2),
exported to ONNX; onnxruntime in Python vs Bastion's OnnxModel (criterion bench
`bastion-ml/benches/predict.rs`, same models, same 1,000 rows); scikit-learn's predict_proba
(HistGradientBoosting, LogisticRegression) vs Bastion's built-in GBDT and logistic
regression on the same rows. Medians.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..")
PARAMS = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1}


def synth(rng, n, d=20):
    x = rng.normal(size=(n, d))
    z = (x[:, :5] @ np.array([1.0, -0.8, 0.6, 0.5, -0.4]) + np.sin(2 * x[:, 5]) + x[:, 6] * x[:, 7]
         + 0.5 * np.abs(x[:, 8]) - 0.3 * x[:, 9] ** 2)
    y = (z + rng.logistic(size=n) * 0.8 > 0).astype(int)
    return x, y


def write_parquet(path, x, y, names, target):
    import pyarrow as pa
    import pyarrow.parquet as pq
    cols = {n: x[:, i] for i, n in enumerate(names)}
    cols[target] = y
    pq.write_table(pa.table(cols), path)


def bastion(args, home, *cmd):
    t = time.perf_counter()
    p = subprocess.run([args.bastion, "--home", home, *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bastion {' '.join(cmd)} failed: {p.stderr}")
    return p.stdout, dt


def lgb_train(x, y, objective, num_class=None):
    import lightgbm as lgb
    params = {"objective": objective, "num_leaves": 31, "learning_rate": 0.1, "max_bin": 255,
              "min_data_in_leaf": 20, "num_threads": 2, "verbose": -1, "seed": 0}
    if num_class:
        params["num_class"] = num_class
    t = time.perf_counter()
    model = lgb.train(params, lgb.Dataset(x, y), num_boost_round=100)
    return model, time.perf_counter() - t


def train_case(args, home, name, xtr, ytr, xte, yte, names, target, task):
    from sklearn import metrics
    write_parquet(os.path.join(args.work, f"{name}-train.parquet"), xtr, ytr, names, target)
    write_parquet(os.path.join(args.work, f"{name}-test.parquet"), xte, yte, names, target)
    for part in ("train", "test"):
        bastion(args, home, "data", "add", os.path.join(args.work, f"{name}-{part}.parquet"), "--name", f"{name}-{part}")
    pkg = os.path.join(args.work, f"{name}-gbdt")
    cmd = ["train", "--data", f"{name}-train", "--target", target, "--model", "gbdt",
           "--test-fraction", "0", "--output", pkg, "--task",
           "regression" if task == "regression" else "classification"]
    for k, v in PARAMS.items():
        cmd += ["--param", f"{k}={v}"]
    out, bt = bastion(args, home, *cmd)
    fit = json.loads(out)["fit_seconds"]
    ev = json.loads(bastion(args, home, "evaluate", pkg, "--data", f"{name}-test")[0])["evaluation"]["metrics"]
    if task == "binary":
        model, lt = lgb_train(xtr, ytr, "binary")
        ours, theirs, metric = ev["roc_auc"], metrics.roc_auc_score(yte, model.predict(xte)), "AUC"
    elif task == "multiclass":
        model, lt = lgb_train(xtr, ytr, "multiclass", num_class=int(ytr.max()) + 1)
        ours, theirs, metric = ev["accuracy"], metrics.accuracy_score(yte, model.predict(xte).argmax(axis=1)), "accuracy"
    else:
        model, lt = lgb_train(xtr, ytr, "regression")
        ours, theirs, metric = ev["rmse"], metrics.root_mean_squared_error(yte, model.predict(xte)), "RMSE"
    return {"case": name, "rows": len(ytr), "bastion_s": bt, "fit_s": fit, "lightgbm_s": lt,
            "metric": metric, "bastion": ours, "lightgbm": theirs}


def mean_of(cases):
    return {k: float(np.mean([r[k] for r in cases]))
            for k in ("bastion_s", "fit_s", "lightgbm_s", "bastion", "lightgbm")}


def shipped(name, target):
    with open(os.path.join(ROOT, "datasets", name)) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    t = header.index(target)
    names = [h for i, h in enumerate(header) if i != t]
    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in rows])
    raw = [r[t] for r in rows]
    return names, x, raw


def split(rng, n, frac=0.2):
    idx = rng.permutation(n)
    k = int(n * frac)
    return idx[k:], idx[:k]


def median_time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def latency(args):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(1)
    x, y = synth(rng, 51_000)
    names = [f"f{i}" for i in range(20)]
    xtr, ytr, rows = x[:50_000], y[:50_000], x[50_000:].astype(np.float32).astype(np.float64)
    with open(os.path.join(args.work, "train.csv"), "w") as f:
        f.write(",".join(names + ["y"]) + "\n")
        for r, t in zip(xtr, ytr):
            f.write(",".join(repr(float(v)) for v in r) + f",{t}\n")
    with open(os.path.join(args.work, "rows.csv"), "w") as f:
        f.write(",".join(names) + "\n")
        for r in rows:
            f.write(",".join(repr(float(v)) for v in r) + "\n")
    x32 = rows.astype(np.float32)
    hgb = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=31, early_stopping=False,
                                         random_state=0).fit(xtr, ytr)
    # skl2onnx 1.20 cannot convert scikit-learn 1.9's HistGradientBoosting (a boolean
    # attribute), so the ONNX model is the classic GradientBoosting with the same size.
    gb = GradientBoostingClassifier(n_estimators=100, max_leaf_nodes=31, random_state=0).fit(xtr, ytr)
    onx = to_onnx(gb, x32[:1], options={id(gb): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    with open(os.path.join(args.work, "hgb.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    mlp = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=30, random_state=0).fit(xtr, ytr)
    nodes, inits, prev = [], [], "input"
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits += [numpy_helper.from_array(w.T.astype(np.float32).copy(), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = "logits" if i == len(mlp.coefs_) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out], transB=1))
        prev = out
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"a{i}"]))
            prev = f"a{i}"
    # Two logits for the two classes: the output layer of a binary MLPClassifier has one
    # unit, so it is widened to [-z/2, z/2], whose softmax is the same sigmoid.
    w_last = inits[-2]
    wl = numpy_helper.to_array(w_last)
    bl = numpy_helper.to_array(inits[-1])
    inits[-2] = numpy_helper.from_array(np.vstack([-wl / 2, wl / 2]).astype(np.float32), w_last.name)
    inits[-1] = numpy_helper.from_array(np.concatenate([-bl / 2, bl / 2]).astype(np.float32), "b2")
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 20])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with open(os.path.join(args.work, "mlp.onnx"), "wb") as f:
        f.write(model.SerializeToString())

    py = {}
    for label in ("hgb", "mlp"):
        sess = ort.InferenceSession(os.path.join(args.work, f"{label}.onnx"), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        py[f"onnx-{label}/1"] = median_time(lambda: sess.run(None, {name: x32[:1]}), 3000)
        py[f"onnx-{label}/1000"] = median_time(lambda: sess.run(None, {name: x32}), 300)
    logreg = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    for label, est in (("gbdt", hgb), ("logreg", logreg)):
        py[f"builtin-{label}/1"] = median_time(lambda: est.predict_proba(rows[:1]), 2000)
        py[f"builtin-{label}/1000"] = median_time(lambda: est.predict_proba(rows), 300)

    lib = sorted(glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so*")))[0]
    env = dict(os.environ, BASTION_BENCH_ML_DIR=args.work, BASTION_ONNXRUNTIME=lib)
    subprocess.run(["cargo", "bench", "-p", "bastion-ml", "--bench", "predict", "--", "--noplot"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    ours = {}
    for key in py:
        est = os.path.join(ROOT, "target", "criterion", "predict", key.replace("/", "_"), "new", "estimates.json")
        with open(est) as f:
            ours[key] = json.load(f)["median"]["point_estimate"] / 1e9
    print("\n| prediction | rows | Bastion | reference | reference tool | ratio (reference ÷ Bastion) |")
    print("|---|---|---|---|---|---|")
    for key in py:
        what, n = key.split("/")
        ref = "onnxruntime 1.32.0 (Python)" if what.startswith("onnx") else \
            f"scikit-learn 1.9.1 predict_proba ({'HistGradientBoosting' if 'gbdt' in what else 'LogisticRegression'})"
        print(f"| {what} | {n} | {ours[key] * 1e6:.1f} µs | {py[key] * 1e6:.1f} µs | {ref} | {py[key] / ours[key]:.2f}× |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=3, help="generated data sets")
    ap.add_argument("--splits", type=int, default=5, help="seeded 80/20 splits of each shipped data set")
    ap.add_argument("--work")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    args.bastion = os.path.abspath(args.bastion)
    tmp = tempfile.TemporaryDirectory()
    args.work = args.work or tmp.name
    os.makedirs(args.work, exist_ok=True)
    if not args.skip_train:
        home = os.path.join(args.work, "home")
        results = []
        names = [f"f{i}" for i in range(20)]
        for seed in range(args.seeds):
            x, y = synth(np.random.default_rng(seed), args.rows + 200_000)
            results.append(train_case(args, home, f"generated-{seed}", x[:args.rows], y[:args.rows],
                                      x[args.rows:], y[args.rows:], names, "y", "binary"))
            del x, y
        results.append(dict(mean_of(results), case=f"generated, mean of {args.seeds}",
                            rows=args.rows, metric="AUC"))
        for name, csv, target, task in [("breast_cancer", "breast_cancer.csv", "diagnosis", "binary"),
                                        ("digits", "digits.csv", "digit", "multiclass"),
                                        ("diabetes", "diabetes.csv", "progression", "regression")]:
            names, x, raw = shipped(csv, target)
            if task == "binary":
                y = np.array([1 if v == "malignant" else 0 for v in raw])
            elif task == "multiclass":
                y = np.array([int(v) for v in raw])
            else:
                y = np.array([float(v) for v in raw])
            cases = []
            for seed in range(args.splits):
                tr, te = split(np.random.default_rng(seed), len(y))
                cases.append(train_case(args, home, f"{name}-{seed}", x[tr], y[tr], x[te], y[te],
                                        names, target, task))
            results += cases
            results.append(dict(mean_of(cases), case=f"{name}, mean of {args.splits}",
                                rows=cases[0]["rows"], metric=cases[0]["metric"]))
        print("| data | training rows | Bastion command | Bastion fit | LightGBM 4.6.0 | command ÷ LightGBM | "
              "fit ÷ LightGBM | test metric | Bastion | LightGBM | Bastion − LightGBM |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['case']} | {r['rows']:,} | {r['bastion_s']:.2f} s | {r['fit_s']:.2f} s | "
                  f"{r['lightgbm_s']:.2f} s | {r['bastion_s'] / r['lightgbm_s']:.2f}× | "
                  f"{r['fit_s'] / r['lightgbm_s']:.2f}× | {r['metric']} | {r['bastion']:.5f} | "
                  f"{r['lightgbm']:.5f} | {r['bastion'] - r['lightgbm']:+.5f} |")
    if not args.skip_latency:
        latency(args)


if __name__ == "__main__":
    main()
