"""`bastion redteam` against the Adversarial Robustness Toolbox on the same MLP weights and
rows: FGSM and PGD must reach the same robust accuracy (within 0.01), HopSkipJump a similar
one; and the campaign lands as a run, artifacts and evidence."""
import json
import os
import struct
import tomllib

import numpy as np
import pytest

from cli import DATASETS, run, shipped_home

art = pytest.importorskip("art")
from art.attacks.evasion import FastGradientMethod, HopSkipJump, ProjectedGradientDescentNumpy  # noqa: E402
from art.estimators.classification.classifier import ClassifierMixin  # noqa: E402
from art.estimators.estimator import BaseEstimator, LossGradientsMixin  # noqa: E402


def load_package(pkg):
    """The package's manifest and its MLP layers read straight from safetensors."""
    with open(os.path.join(pkg, "bastion-model.toml"), "rb") as f:
        manifest = tomllib.load(f)
    with open(os.path.join(pkg, "weights.safetensors"), "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]

    def tensor(name):
        h = header[name]
        assert h["dtype"] == "F64"
        a, b = h["data_offsets"]
        return np.frombuffer(data[a:b], dtype="<f8").reshape(h["shape"])

    layers, i = [], 0
    while f"layers.{i}.weight" in header:
        layers.append((tensor(f"layers.{i}.weight"), tensor(f"layers.{i}.bias")))
        i += 1
    return manifest, layers


class NumpyMlp(ClassifierMixin, LossGradientsMixin, BaseEstimator):
    """Bastion's two-class MLP (ReLU hidden layers, one sigmoid unit) as an ART classifier."""

    estimator_params = BaseEstimator.estimator_params + ClassifierMixin.estimator_params

    def __init__(self, layers, clip_values):
        super().__init__(model=None, clip_values=clip_values)
        self.layers = layers
        self.nb_classes = 2

    @property
    def input_shape(self):
        return (self.layers[0][0].shape[0],)

    def _forward(self, x):
        acts = [x]
        for i, (w, b) in enumerate(self.layers):
            z = acts[-1] @ w + b
            acts.append(np.maximum(z, 0) if i < len(self.layers) - 1 else z)
        return acts

    def predict(self, x, batch_size=128, **kwargs):
        z = self._forward(np.asarray(x, dtype=np.float64))[-1][:, 0]
        p = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1.0 - p, p], axis=1)

    def loss_gradient(self, x, y, **kwargs):
        x = np.asarray(x, dtype=np.float64)
        c = np.argmax(y, axis=1) if np.ndim(y) == 2 else np.asarray(y)
        acts = self._forward(x)
        p = 1.0 / (1.0 + np.exp(-acts[-1][:, 0]))
        delta = (p - c)[:, None]
        for i in range(len(self.layers) - 1, -1, -1):
            w, _ = self.layers[i]
            delta = delta @ w.T
            if i > 0:
                delta = delta * (acts[i] > 0)
        return delta

    def fit(self, x, y, **kwargs):
        raise NotImplementedError


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    out = tmp_path_factory.mktemp("redteam")
    with shipped_home() as home:
        pkg = str(out / "pkg")
        run(home, "train", "--data", "bc", "--target", "diagnosis", "--model", "mlp",
            "--param", "hidden=[16]", "--param", "epochs=100", "--register", "bcm", "--output", pkg)
        p = run(home, "redteam", "models:/bcm/1", "--data", "bc@v1", "--checks",
                "fgsm,pgd,hopskipjump,membership,extraction", "--eps", "0.1,0.3",
                "--norm", "linf,l2", "--pgd-steps", "40", "--hsj-iterations", "20",
                "--examples", str(out / "adv.jsonl"))
        report = json.loads(p.stdout)
        runs = run(home, "data", "list").stdout  # the home still answers after the campaign
        yield home, pkg, report, out, runs


def features_and_labels(manifest, report):
    """The attacked rows in the model's feature space, and their class indices."""
    import csv

    with open(os.path.join(DATASETS, "breast_cancer.csv")) as f:
        rows = list(csv.DictReader(f))
    classes = manifest["signature"]["task"]["classes"]
    steps = manifest["preprocessing"]["steps"]
    picked = [rows[i] for i in report["attacked"]]
    x = np.array([[(float(r[s["name"]]) - s["mean"]) / s["scale"] for s in steps] for r in picked])
    y = np.array([classes.index(r["diagnosis"]) for r in picked])
    return x, y


def robust(report, attack, norm, eps):
    return next(e["robust_accuracy"] for e in report["evasion"]
                if e["attack"] == attack and e["norm"] == norm and abs(e["eps"] - eps) < 1e-12)


def test_gradient_attacks_match_art_on_the_same_weights(campaign):
    _, pkg, r, _, _ = campaign
    report = r["report"]
    manifest, layers = load_package(pkg)
    x, y = features_and_labels(manifest, report)
    assert report["rows_from"] == "held-out" and len(y) == report["rows"]
    lo = np.array([v if v is not None else -np.inf for v in report["space"]["lo"]])
    hi = np.array([v if v is not None else np.inf for v in report["space"]["hi"]])
    assert report["space"]["integer"] == []
    clf = NumpyMlp(layers, clip_values=(lo, hi))
    clean = float(np.mean(np.argmax(clf.predict(x), axis=1) == y))
    assert abs(clean - report["clean_accuracy"]) < 1e-12
    onehot = np.eye(2)[y]
    for norm, art_norm in [("linf", np.inf), ("l2", 2)]:
        for eps in (0.1, 0.3):
            attacks = {
                "fgsm": FastGradientMethod(clf, norm=art_norm, eps=eps),
                "pgd": ProjectedGradientDescentNumpy(
                    clf, norm=art_norm, eps=eps, eps_step=2.5 * eps / 40, max_iter=40,
                    num_random_init=0, verbose=False),
            }
            for name, attack in attacks.items():
                adv = attack.generate(x, y=onehot)
                ours = robust(report, name, norm, eps)
                theirs = float(np.mean(np.argmax(clf.predict(adv), axis=1) == y))
                assert abs(ours - theirs) <= 0.01, (name, norm, eps, ours, theirs)


def test_hopskipjump_is_as_strong_as_art(campaign):
    _, pkg, r, _, _ = campaign
    report = r["report"]
    manifest, layers = load_package(pkg)
    x, y = features_and_labels(manifest, report)
    lo = np.array(report["space"]["lo"], dtype=float)
    hi = np.array(report["space"]["hi"], dtype=float)
    clf = NumpyMlp(layers, clip_values=(lo, hi))
    np.random.seed(0)
    adv = HopSkipJump(clf, norm=2, max_iter=20, max_eval=10000, init_eval=100, verbose=False).generate(x)
    dist = np.linalg.norm(adv - x, axis=1)
    wrong = np.argmax(clf.predict(adv), axis=1) != y
    for eps in (0.1, 0.3):
        theirs = float(np.mean(~(wrong & (dist <= eps)) & (np.argmax(clf.predict(x), axis=1) == y)))
        ours = robust(report, "hopskipjump", "l2", eps)
        # Both are randomised searches for the smallest perturbation: the same accuracy up
        # to a few rows.
        assert abs(ours - theirs) <= 0.05, (eps, ours, theirs)


def test_the_campaign_is_a_run_with_artifacts_and_evidence(campaign):
    home, _, r, out, _ = campaign
    assert r["evidence"]["kind"] == "redteam"
    assert {a["path"] for a in r["artifacts"]} == {
        "redteam/report.json", "redteam/report.html", "redteam/adversarial.jsonl"}
    metrics = r["report"]["metrics"]
    for key in ["redteam.pgd.eps_0_1.robust_accuracy", "redteam.fgsm_l2.eps_0_3.robust_accuracy",
                "privacy.membership_auc", "privacy.extraction_fidelity"]:
        assert key in metrics, key
    lines = [json.loads(l) for l in open(out / "adv.jsonl") if l.strip()]
    assert lines and all(l["label"] != l["predicted"] for l in lines)
    assert set(lines[0]["inputs"]) >= {"mean_radius", "worst_area"}
