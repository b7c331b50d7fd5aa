"""Bastion's MLP package read straight from its safetensors, as an ART classifier: the
red-team interop test and scripts/bench-redteam attack the same weights in both tools."""
import csv
import json
import os
import struct
import tomllib

import numpy as np
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin

DATASETS = os.path.join(os.path.dirname(__file__), "..", "..", "datasets")


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


def features_and_labels(manifest, report):
    """The attacked rows in the model's feature space, and their class indices."""
    with open(os.path.join(DATASETS, "breast_cancer.csv")) as f:
        rows = list(csv.DictReader(f))
    classes = manifest["signature"]["task"]["classes"]
    steps = manifest["preprocessing"]["steps"]
    picked = [rows[i] for i in report["attacked"]]
    x = np.array([[(float(r[s["name"]]) - s["mean"]) / s["scale"] for s in steps] for r in picked])
    y = np.array([classes.index(r["diagnosis"]) for r in picked])
    return x, y
