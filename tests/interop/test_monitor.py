"""Delayed labels end to end with the CLI: a model trained with `bastion train` answers
requests through `bastion server`; the true labels come back later as a CSV file imported
with `bastion feedback import --server`; `bastion monitor --once` measures windows of
labelled answers, and the accuracy, ROC AUC and calibration error it reports in the incident
equal scikit-learn's on the same answers and labels.
"""
import csv
import json
import os
import time

import numpy as np
import requests
from sklearn.metrics import accuracy_score, roc_auc_score

import cli
from conftest import Server, free_port

WINDOW = 100


def ece(y, p, bins=10):
    """Calibration error of two classes: the positive class's probability against the label,
    in equal-width bins as `calibration_curve(strategy="uniform")` bins them."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.searchsorted(edges[1:-1], p, side="left")
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return total


def test_labels_imported_later_are_measured_like_scikit_learn():
    with cli.shipped_home() as home:
        cli.run(home, "train", "--data", "bc@v1", "--target", "diagnosis", "--model", "logreg",
                "--register", "bc")
        features, x, y = cli.load_csv("breast_cancer.csv", "diagnosis")
        srv = Server(home, free_port()).start()
        try:
            remote = ["--server", srv.url, "--token", srv.token]
            cli.run(home, "deploy", "bc@1", *remote)
            answers = []
            for i in range(2 * WINDOW):
                body = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [float(x[i, j])]}
                                   for j, f in enumerate(features)]}
                r = requests.post(f"{srv.url}/v2/models/bc/infer", json=body, timeout=30,
                                  headers={**srv.auth, "x-request-id": f"req-{i}"})
                r.raise_for_status()
                out = {o["name"]: o["data"] for o in r.json()["outputs"]}
                answers.append((str(out["label"][0]), out["probabilities"]))
            # The labels come back: the first window's are true; in the second, the world
            # changed and every fourth label is the other class.
            classes = sorted(set(y))
            truth = []
            path = os.path.join(home, "labels.csv")
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["request_id", "label"])
                for i in range(2 * WINDOW):
                    label = y[i]
                    if i >= WINDOW and i % 4 == 0:
                        label = classes[1 - classes.index(label)]
                    truth.append(label)
                    w.writerow([f"req-{i}", label])
                w.writerow(["never-answered", classes[0]])
            # Events are written off the request path: wait until the server has them.
            for _ in range(100):
                ev = srv.admin("GET", "/api/bastion/v1/inference-events?name=bc&max_results=1000")
                if len(ev["events"]) >= 2 * WINDOW:
                    break
                time.sleep(0.1)
            got = json.loads(cli.run(home, "feedback", "import", path, "--model", "bc", *remote).stdout)
            assert got == {"requests": 2 * WINDOW + 1, "stored": 2 * WINDOW, "duplicates": 0,
                           "unmatched": 1, "unmatched_request_ids": ["never-answered"]}, got
            again = json.loads(cli.run(home, "feedback", "import", path, "--model", "bc", *remote).stdout)
            assert (again["stored"], again["duplicates"]) == (0, 2 * WINDOW), again

            rules = os.path.join(home, "rules.toml")
            with open(rules, "w") as f:
                f.write(f'[performance]\nwindow = {WINDOW}\n\n'
                        '[[alert]]\nname = "measured"\nwhen = "performance.labelled > 0"\n'
                        'cooldown = "0s"\nseverity = "info"\n')
            run = json.loads(cli.run(home, "monitor", "--rules", rules, "--once", "--settle-ms", "0").stdout)
            assert (run["labels"], run["performance_windows"]) == (2 * WINDOW, 2), run
            listed = json.loads(cli.run(home, "incidents", "list", *remote).stdout)["incidents"]
            measured = [i for i in listed if i["rule"] == "measured"]
            assert len(measured) == 1 and measured[0]["alerts"] == 2, listed
            report = measured[0]["evidence"]["performance"]
            # The incident holds the newest alert: the second window.
            lo, hi = WINDOW, 2 * WINDOW
            pred = [a[0] for a in answers[lo:hi]]
            p1 = [a[1][1] for a in answers[lo:hi]]
            y_true = truth[lo:hi]
            assert report["labelled"] == WINDOW
            assert abs(report["accuracy"] - accuracy_score(y_true, pred)) < 1e-12, report
            positive = [1 if t == classes[1] else 0 for t in y_true]
            assert abs(report["roc_auc"] - roc_auc_score(positive, p1)) < 1e-12, report
            assert abs(report["ece"] - ece(positive, p1)) < 1e-12, report
            assert report["accuracy"] < 0.9
        finally:
            srv.stop()
