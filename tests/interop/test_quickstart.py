"""The README's first command end to end: `bastion quickstart` on an empty home runs the
shipped pipeline, serves the gated model, and prints a token and a curl line that work; the
MLflow client finds the pipeline's run and its children; a second run reuses the cache."""
import json
import os
import re
import subprocess
import tempfile
import time

import mlflow
import requests
from mlflow.tracking import MlflowClient

from conftest import free_port

BIN = os.environ.get("BASTION_BIN", "bastion")


def test_quickstart_serves_a_gated_model_and_tracks_the_pipeline():
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        log = open(os.path.join(home, "quickstart.log"), "w+")
        proc = subprocess.Popen([BIN, "--home", home, "quickstart", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 300
            text = ""
            while time.time() < deadline and "listening on" not in text:
                assert proc.poll() is None, open(log.name).read()
                time.sleep(0.5)
                text = open(log.name).read()
            assert "listening on" in text, text
            assert "pipeline succeeded" in text, text
            token = re.search(r"An admin API token, shown once: (bst_\S+)", text).group(1)
            curl = re.search(r"(curl -s .*?\\\n.*?/infer)", text, re.S).group(1).replace("\\\n", " ")

            # The printed curl line, run as printed.
            out = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=30)
            answer = json.loads(out.stdout)
            assert answer["model_name"] == "breast-cancer-gbdt", out
            label = next(o for o in answer["outputs"] if o["name"] == "label")
            assert label["data"] == ["malignant"]  # the first shipped row is malignant

            # The production alias points at the gated version; the MLflow client sees the
            # pipeline's run and the runs its steps made as children.
            os.environ["MLFLOW_TRACKING_TOKEN"] = token
            url = f"http://127.0.0.1:{port}"
            mlflow.set_tracking_uri(url)
            client = MlflowClient(url)
            mv = client.get_model_version_by_alias("breast-cancer-gbdt", "production")
            assert mv.version == "1"
            exp = client.get_experiment_by_name("quickstart")
            runs = client.search_runs([exp.experiment_id])
            parents = [r for r in runs if r.data.tags.get("bastion.pipeline") == "quickstart"]
            assert len(parents) == 1 and parents[0].info.status == "FINISHED"
            children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
            assert len(children) == 4, [r.data.tags for r in runs]  # two trainings, two red teams
            trained = [r for r in children if r.data.tags.get("mlflow.source.name") == "bastion train"]
            assert all(r.data.metrics["test_roc_auc"] > 0.95 for r in trained)
            assert all(json.loads(r.data.tags["bastion.pipeline.config"])["pipeline"] == "quickstart" for r in trained)

            # Without a token nothing is served.
            r = requests.post(f"{url}/v2/models/breast-cancer-gbdt/infer", json={"inputs": []}, timeout=10)
            assert r.status_code == 401
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)

        # A second run reuses the cache: every step is cached.
        again = subprocess.run([BIN, "--home", home, "quickstart", "--no-serve"], capture_output=True,
                               text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        steps = [l for l in again.stdout.splitlines() if l.startswith("  ") and "s  " in l]
        assert len(steps) == 14 and all(" cached " in l for l in steps), again.stdout
