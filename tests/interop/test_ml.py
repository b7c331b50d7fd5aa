"""`bastion evaluate` against scikit-learn: on the same predictions (those `bastion predict`
prints for the same model and data), every metric equals scikit-learn's to 1e-9 — binary,
multiclass and regression, per slice too — and the reliability table equals
`calibration_curve`'s.

Runs the CLI on a throwaway home with the shipped datasets; no server needed.
"""
import json
import os

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.preprocessing import label_binarize

import cli

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "datasets")
TOL = 1e-9


def run(home, *args):
    return cli.run(home, *args).stdout


@pytest.fixture(scope="module")
def home():
    with cli.shipped_home() as d:
        yield d


def read_csv_column(path, name):
    with open(path) as f:
        header = f.readline().strip().split(",")
        i = header.index(name)
        return [line.rstrip("\n").split(",")[i] for line in f]


def predictions(home, model, data):
    out = run(home, "predict", model, "--data", data)
    return [json.loads(line) for line in out.splitlines()]


def evaluation(home, model, data, *extra):
    return json.loads(run(home, "evaluate", model, "--data", data, *extra))["evaluation"]


def close(a, b):
    assert abs(a - b) <= TOL * max(1.0, abs(b)), f"{a} != {b}"


def check_classification(ev, y_true, proba, classes):
    k = len(classes)
    idx = {c: i for i, c in enumerate(classes)}
    y = np.array([idx[v] for v in y_true])
    pred = proba.argmax(axis=1)
    m = ev["metrics"]
    close(m["accuracy"], skm.accuracy_score(y, pred))
    labels = sorted(set(y) | set(pred))
    close(m["precision_macro"], skm.precision_score(y, pred, average="macro", labels=labels, zero_division=0))
    close(m["recall_macro"], skm.recall_score(y, pred, average="macro", labels=labels, zero_division=0))
    close(m["f1_macro"], skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0))
    close(m["f1_weighted"], skm.f1_score(y, pred, average="weighted", labels=labels, zero_division=0))
    close(m["log_loss"], skm.log_loss(y, proba, labels=list(range(k))))
    if k == 2:
        close(m["roc_auc"], skm.roc_auc_score(y, proba[:, 1]))
        close(m["pr_auc"], skm.average_precision_score(y, proba[:, 1]))
        close(m["brier"], skm.brier_score_loss(y, proba[:, 1]))
        prob_true, prob_pred = calibration_curve(y, proba[:, 1], n_bins=10, strategy="uniform")
        bins = ev["classes"]["calibration"]["bins"]
        assert len(bins) == len(prob_true)
        for b, t, p in zip(bins, prob_true, prob_pred):
            close(b["observed"], t)
            close(b["confidence"], p)
    else:
        close(m["roc_auc"], skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
        onehot = label_binarize(y, classes=list(range(k)))
        close(m["pr_auc"], skm.average_precision_score(onehot, proba, average="macro"))
        close(m["brier"], float(np.mean(np.sum((proba - onehot) ** 2, axis=1))))
    cm = skm.confusion_matrix(y, pred, labels=list(range(k)))
    assert ev["classes"]["confusion"] == cm.tolist()


def test_binary_metrics_match_scikit_learn(home):
    out = json.loads(run(home, "train", "--data", "bc@v1", "--target", "diagnosis", "--model", "logreg", "--register", "bc-logreg"))
    assert out["registered"]["version"] == "1"
    model = "models:/bc-logreg/1"
    preds = predictions(home, model, "bc@v1")
    classes = sorted(preds[0]["probabilities"])
    proba = np.array([[p["probabilities"][c] for c in classes] for p in preds])
    y = read_csv_column(os.path.join(ROOT, "breast_cancer.csv"), "diagnosis")
    ev = evaluation(home, model, "bc@v1", "--slice", "mean_radius")
    check_classification(ev, y, proba, classes)
    # Per slice, the same definitions on the slice's rows.
    radius = read_csv_column(os.path.join(ROOT, "breast_cancer.csv"), "mean_radius")
    assert len(ev["slices"]) > 100
    key, sl = next((k, s) for k, s in ev["slices"].items() if s["rows"] >= 2)
    rows = [i for i, r in enumerate(radius) if f"{float(r):g}" == key or r == key]
    assert len(rows) == sl["rows"], key
    close(sl["metrics"]["accuracy"], skm.accuracy_score(
        [classes.index(y[i]) for i in rows], proba[rows].argmax(axis=1)))


def test_multiclass_metrics_match_scikit_learn(home):
    run(home, "train", "--data", "digits@v1", "--target", "digit", "--model", "gbdt",
        "--param", "n_estimators=20", "--output", os.path.join(home, "digits-gbdt"))
    model = os.path.join(home, "digits-gbdt")
    preds = predictions(home, model, "digits@v1")
    classes = [str(c) for c in range(10)]
    proba = np.array([[p["probabilities"][c] for c in classes] for p in preds])
    y = read_csv_column(os.path.join(ROOT, "digits.csv"), "digit")
    check_classification(evaluation(home, model, "digits@v1"), y, proba, classes)


def test_regression_metrics_match_scikit_learn(home):
    model = os.path.join(home, "diabetes-forest")
    run(home, "train", "--data", "diabetes@v1", "--target", "progression", "--model", "forest",
        "--param", "n_estimators=30", "--output", model)
    pred = np.array([p["prediction"] for p in predictions(home, model, "diabetes@v1")])
    y = np.array([float(v) for v in read_csv_column(os.path.join(ROOT, "diabetes.csv"), "progression")])
    m = evaluation(home, model, "diabetes@v1")["metrics"]
    close(m["mae"], skm.mean_absolute_error(y, pred))
    close(m["rmse"], skm.root_mean_squared_error(y, pred))
    close(m["r2"], skm.r2_score(y, pred))
