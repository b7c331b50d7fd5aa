"""`bastion run`: steps in dependency order, each cached by its inputs' digests and its
parameters — what re-runs after each kind of change — a failed step stopping only what
depends on it, `command` steps, and malformed pipelines refused on their line."""
import json
import os
import shutil
import sys

import pytest

from cli import DATASETS, run

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "quickstart")


def pipeline_dir(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    for f in ["pipeline.toml", "constraints.toml", "production.toml"]:
        shutil.copy(os.path.join(EXAMPLE, f), d / f)
    shutil.copy(os.path.join(DATASETS, "breast_cancer.csv"), d / "breast_cancer.csv")
    return d


def go(home, d, ok=True, *extra):
    p = run(home, "run", str(d / "pipeline.toml"), "--json", *extra, ok=ok)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def statuses(out):
    return {s["id"]: s["status"] for s in out["steps"]}


def test_only_what_changed_runs_again(tmp_path):
    d = pipeline_dir(tmp_path)
    home = str(tmp_path / "home")
    _, first = go(home, d)
    assert first["ok"] and set(statuses(first).values()) == {"ran"}, first
    deploy = next(s for s in first["steps"] if s["id"] == "deploy")
    assert deploy["outputs"] == {"model": "models:/breast-cancer-gbdt/1", "alias": "production"}

    # Nothing changed: nothing runs.
    _, again = go(home, d)
    assert set(statuses(again).values()) == {"cached"}, again

    # One parameter: its step and what depends on it.
    text = (d / "pipeline.toml").read_text()
    (d / "pipeline.toml").write_text(text.replace("epochs = 100", "epochs = 90"))
    _, out = go(home, d)
    ran = {k for k, v in statuses(out).items() if v == "ran"}
    assert ran == {"train-mlp", "scan-mlp", "redteam-mlp", "sign-mlp", "gate-mlp"}, out
    assert next(s for s in out["steps"] if s["id"] == "train-mlp")["outputs"]["version"] == "2"

    # The policy file: the gates (and the deploy after the GBDT's gate).
    policy = (d / "production.toml").read_text()
    (d / "production.toml").write_text(policy.replace("<= 0.70", "<= 0.71"))
    _, out = go(home, d)
    ran = {k for k, v in statuses(out).items() if v == "ran"}
    assert ran == {"gate-gbdt", "gate-mlp"}, out

    # The data: a new dataset version, so everything downstream.
    with open(d / "breast_cancer.csv", "a") as f:
        f.write(open(d / "breast_cancer.csv").read().splitlines()[1] + "\n")
    _, out = go(home, d)
    assert set(statuses(out).values()) == {"ran"}, out
    assert out["steps"][0]["outputs"]["dataset"] == "breast-cancer@v2"

    # Evidence recorded outside the pipeline (a red-team run without PGD, so the newest
    # red-team facts lack what the policy asks): the gate that reads it decides again (and
    # now fails), nothing else runs.
    mlp = next(s for s in out["steps"] if s["id"] == "train-mlp")["outputs"]["model"]
    run(home, "redteam", mlp, "--data", "breast-cancer@v2",
        "--checks", "fgsm", "--eps", "0.05", "--max-rows", "60", "--format", "json")
    _, out = go(home, d, False)
    st = statuses(out)
    assert st["gate-mlp"] == "failed", out
    assert {k for k, v in st.items() if v != "cached"} == {"gate-mlp"}, out

    # --force runs everything.
    _, out = go(home, d, True, "--force")
    assert set(statuses(out).values()) == {"ran"}


def test_a_failed_step_stops_only_what_depends_on_it(tmp_path):
    d = pipeline_dir(tmp_path)
    home = str(tmp_path / "home")
    (d / "constraints.toml").write_text("[columns.mean_radius]\nmax = 10.0\n")
    p, out = go(home, d, False)
    assert p.returncode == 1, p.stderr
    st = statuses(out)
    assert st["validate"] == "failed" and st["pii"] == "ran" and st["ingest"] == "ran"
    assert {st[k] for k in ["train-gbdt", "train-mlp", "gate-gbdt", "deploy"]} == {"blocked"}
    validate = next(s for s in out["steps"] if s["id"] == "validate")
    assert "data validate" in validate["reason"] and "exited with 1" in validate["reason"], validate
    blocked = next(s for s in out["steps"] if s["id"] == "train-gbdt")
    assert blocked["reason"] == "not run: it needs 'validate', which did not succeed"
    assert not out["ok"]


def test_a_failing_gate_blocks_the_deploy(tmp_path):
    d = pipeline_dir(tmp_path)
    home = str(tmp_path / "home")
    (d / "production.toml").write_text("rules = ['model.metrics.test_roc_auc >= 1.01']\n")
    p, out = go(home, d, False)
    st = statuses(out)
    assert st["gate-gbdt"] == "failed" and st["deploy"] == "blocked", out
    gate = next(s for s in out["steps"] if s["id"] == "gate-gbdt")
    assert "exited with 1" in gate["reason"] and "test_roc_auc" in gate["reason"], gate


def test_the_deploy_needs_the_production_policy_the_server_would(tmp_path, monkeypatch):
    d = pipeline_dir(tmp_path)
    home = str(tmp_path / "home")
    # The home's server requires decisions made by another policy: the pipeline's passing
    # gate does not clear production.
    other = tmp_path / "company.toml"
    other.write_text("rules = ['model.signature = \"valid\"']\n")
    monkeypatch.setenv("BASTION_PRODUCTION_POLICY", str(other))
    p, out = go(home, d, False)
    st = statuses(out)
    assert st["gate-gbdt"] == "ran" and st["deploy"] == "failed", out
    deploy = next(s for s in out["steps"] if s["id"] == "deploy")
    assert "may not go to production" in deploy["reason"] and "polic" in deploy["reason"], deploy


def test_command_steps_and_their_declared_files(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "in.txt").write_text("hello")
    script = "import os,sys; open('out.txt','w').write(open('in.txt').read().upper() + os.environ['BASTION_PIPELINE_PARENT_RUN'])"
    (d / "pipeline.toml").write_text(f"""name = "cmd"
[[step]]
id = "upper"
kind = "command"
run = [{json.dumps(sys.executable)}, "-c", {json.dumps(script)}]
inputs = ["in.txt"]
outputs = ["out.txt"]

[[step]]
id = "forgets"
kind = "command"
needs = ["upper"]
run = [{json.dumps(sys.executable)}, "-c", "pass"]
outputs = ["never.txt"]

[[step]]
id = "fails"
kind = "command"
run = [{json.dumps(sys.executable)}, "-c", "import sys; print('bad input', file=sys.stderr); sys.exit(3)"]
""")
    home = str(tmp_path / "home")
    p, out = go(home, d, False)
    st = statuses(out)
    assert st == {"upper": "ran", "forgets": "failed", "fails": "failed"}, out
    assert (d / "out.txt").read_text().startswith("HELLO")
    reasons = {s["id"]: s.get("reason", "") for s in out["steps"]}
    assert "did not write its declared output never.txt" in reasons["forgets"]
    assert "exited with 3" in reasons["fails"] and "bad input" in reasons["fails"]
    # An input changed: the step runs again.
    _, out = go(home, d, False)
    assert statuses(out)["upper"] == "cached"
    (d / "in.txt").write_text("bye")
    _, out = go(home, d, False)
    assert statuses(out)["upper"] == "ran"


@pytest.mark.parametrize("text,expected", [
    ('name = "x"\n[[step]]\nid = "a"\nkind = "bake"\n', "line 2: step 'a': unknown kind 'bake'"),
    ('name = "x"\n[[step]]\nid = "a"\nkind = "profile"\ndataset = "${b.dataset}"\n', "refers to step 'b'"),
    ('name = "x"\n[[step]]\nid = "a"\nkind = "ingest"\npath = "../etc/passwd"\nname = "d"\n', "path '../etc/passwd'"),
])
def test_malformed_pipelines_are_errors(tmp_path, text, expected):
    (tmp_path / "pipeline.toml").write_text(text)
    p = run(str(tmp_path / "home"), "run", str(tmp_path / "pipeline.toml"), ok=False)
    if "../etc" in text:
        assert p.returncode == 1 and expected in p.stdout, p.stdout + p.stderr
    else:
        assert p.returncode == 2 and expected in p.stderr, p.stderr


FEATURES_PIPELINE = """name = "features"

[[step]]
id = "ingest"
kind = "ingest"
path = "breast_cancer.csv"
name = "bc-raw"

[[step]]
id = "features"
kind = "transform"
inputs = { raw = "${ingest.dataset}" }
sql = "SELECT *, mean_radius * mean_texture AS radius_x_texture FROM raw WHERE mean_radius < 25"
name = "bc-features"

[[step]]
id = "split"
kind = "split"
dataset = "${features.dataset}"
test = 0.2
validation = 0.1
stratify = "diagnosis"
seed = 1

[[step]]
id = "tune"
kind = "tune"
dataset = "${split.train}"
target = "diagnosis"
model = "logreg"
register = "bc-logreg"
search = "grid"
metric = "log_loss"
space = { c = [0.001, 0.1, 10.0] }

[[step]]
id = "evaluate"
kind = "evaluate"
model = "${tune.model}"
dataset = "${split.test}"
"""


def test_transform_split_and_tune_steps(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    shutil.copy(os.path.join(DATASETS, "breast_cancer.csv"), d / "breast_cancer.csv")
    (d / "pipeline.toml").write_text(FEATURES_PIPELINE)
    home = str(tmp_path / "home")
    _, first = go(home, d)
    assert first["ok"] and set(statuses(first).values()) == {"ran"}, first
    outs = {s["id"]: s["outputs"] for s in first["steps"]}
    rows = outs["features"]["rows"]
    assert outs["features"]["dataset"] == "bc-features@v1" and 500 < rows < 569
    assert outs["split"]["train"] == "bc-features-train@v1"
    assert outs["split"]["validation"] == "bc-features-validation@v1"
    assert outs["tune"]["best_params"]["c"] in (0.1, 10.0), outs["tune"]
    assert outs["tune"]["model"] == "models:/bc-logreg/1"

    # The parts partition the transform's rows, and each names where it came from.
    parts = {}
    for part in ("train", "test", "validation"):
        shown = json.loads(run(home, "data", "show", outs["split"][part]).stdout)
        parts[part] = shown["version"]["rows"]
        assert "data.lineage" in [e["kind"] for e in shown["evidence"]]
        assert shown["version"]["source"].startswith("split of bc-features@v1")
    assert sum(parts.values()) == rows and parts["validation"] < parts["test"] < parts["train"]
    features = json.loads(run(home, "data", "show", "bc-features@v1").stdout)
    assert "radius_x_texture" in [c["name"] for c in features["version"]["schema"]]
    assert "raw=bc-raw@v1" in features["version"]["source"]

    # Unchanged: nothing runs. A changed query: the transform and what follows, not the ingest.
    _, again = go(home, d)
    assert set(statuses(again).values()) == {"cached"}, again
    (d / "pipeline.toml").write_text(FEATURES_PIPELINE.replace("< 25", "< 24"))
    _, out = go(home, d)
    st = statuses(out)
    assert st["ingest"] == "cached" and st["features"] == "ran" and st["tune"] == "ran", out
    assert out["steps"][1]["outputs"]["dataset"] == "bc-features@v2"

    # Forced: every step runs, but unchanged content answers the versions it already has.
    _, forced = go(home, d, True, "--force")
    fo = {s["id"]: s["outputs"] for s in forced["steps"]}
    assert fo["ingest"]["dataset"] == "bc-raw@v1" and fo["features"]["dataset"] == "bc-features@v2"
    assert fo["split"]["train"] == "bc-features-train@v2"

    # Each trial is a child run of the tuning run, with its parameter and validation metrics.
    from conftest import Server, free_port
    from mlflow.tracking import MlflowClient
    srv = Server(home, free_port()).start()
    try:
        os.environ["MLFLOW_TRACKING_TOKEN"] = srv.token
        client = MlflowClient(srv.url)
        tune_run = client.get_run(outs["tune"]["run_id"])
        assert tune_run.data.tags["bastion.tune.search"] == "grid"
        assert "best_val_log_loss" in tune_run.data.metrics
        trials = client.search_runs(
            [tune_run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{tune_run.info.run_id}'",
        )
        assert sorted(float(t.data.params["c"]) for t in trials) == [0.001, 0.1, 10.0]
        assert all("val_log_loss" in t.data.metrics for t in trials)
        best = min(trials, key=lambda t: t.data.metrics["val_log_loss"])
        assert float(best.data.params["c"]) == outs["tune"]["best_params"]["c"]
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        srv.stop()


@pytest.mark.skipif(not os.environ.get("BASTION_TEST_S3_ROOT"), reason="needs the S3 test server (.ci/run)")
def test_ingest_from_s3_reruns_only_when_the_objects_change(tmp_path):
    prefix = f"pipeline-src/{os.urandom(6).hex()}"
    folder = os.path.join(os.environ["BASTION_TEST_S3_ROOT"], "bastion-ci", prefix)
    os.makedirs(folder)
    csv = os.path.join(folder, "bc.csv")
    shutil.copy(os.path.join(DATASETS, "breast_cancer.csv"), csv)
    d = tmp_path / "s"
    d.mkdir()
    (d / "pipeline.toml").write_text(f"""name = "from-s3"
[[step]]
id = "ingest"
kind = "ingest"
path = "s3://bastion-ci/{prefix}"
name = "bc-s3"

[[step]]
id = "profile"
kind = "profile"
dataset = "${{ingest.dataset}}"
""")
    home = str(tmp_path / "home")
    _, out = go(home, d)
    assert statuses(out) == {"ingest": "ran", "profile": "ran"}, out
    assert out["steps"][0]["outputs"]["dataset"] == "bc-s3@v1"
    assert out["steps"][0]["outputs"]["rows"] == 569
    _, out = go(home, d)
    assert statuses(out) == {"ingest": "cached", "profile": "cached"}, out
    with open(csv, "a") as f:
        f.write(open(csv).read().splitlines()[1] + "\n")
    _, out = go(home, d)
    assert statuses(out) == {"ingest": "ran", "profile": "ran"}, out
    assert out["steps"][0]["outputs"]["dataset"] == "bc-s3@v2"
    shown = json.loads(run(home, "data", "show", "bc-s3@v2").stdout)
    assert shown["version"]["source"] == f"s3://bastion-ci/{prefix}"


@pytest.mark.skipif(not os.environ.get("BASTION_TEST_POSTGRES_URL"), reason="needs PostgreSQL (.ci/run)")
def test_ingest_from_a_postgres_query(tmp_path):
    d = tmp_path / "q"
    d.mkdir()
    query = "SELECT g AS id, (g % 3 = 0) AS fizz, g * 0.5 :: float8 AS half, 'row ' || g AS label FROM generate_series(1, 40) g"
    (d / "pipeline.toml").write_text(f"""name = "from-postgres"
[[step]]
id = "ingest"
kind = "ingest"
postgres = "$WAREHOUSE_URL"
query = {json.dumps(query)}
name = "numbers"

[[step]]
id = "profile"
kind = "profile"
dataset = "${{ingest.dataset}}"
""")
    home = str(tmp_path / "home")
    env = dict(os.environ, WAREHOUSE_URL=os.environ["BASTION_TEST_POSTGRES_URL"])
    p = run(home, "run", str(d / "pipeline.toml"), "--json", env=env)
    out = json.loads(p.stdout)
    assert statuses(out) == {"ingest": "ran", "profile": "ran"}, out
    assert out["steps"][0]["outputs"]["rows"] == 40
    # A query always runs; the same rows answer the same version, so what follows is cached.
    out = json.loads(run(home, "run", str(d / "pipeline.toml"), "--json", env=env).stdout)
    assert statuses(out) == {"ingest": "ran", "profile": "cached"}, out
    assert out["steps"][0]["outputs"]["dataset"] == "numbers@v1"
    shown = json.loads(run(home, "data", "show", "numbers@v1").stdout)
    types = {c["name"]: c["dtype"] for c in shown["version"]["schema"]}
    assert types == {"id": "Int64", "fizz": "Boolean", "half": "Float64", "label": "Utf8"}, types
    assert "password" not in shown["version"]["source"] and "query sha256:" in shown["version"]["source"]
    # Without the variable, the step says which one is missing.
    os.environ.pop("WAREHOUSE_URL", None)
    p = run(home, "run", str(d / "pipeline.toml"), "--json", "--force", ok=False)
    assert "WAREHOUSE_URL" in p.stdout, p.stdout


def test_a_model_trained_by_a_python_command_is_registered(tmp_path, monkeypatch):
    import glob
    import onnxruntime
    capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")
    monkeypatch.setenv("BASTION_ONNXRUNTIME", sorted(glob.glob(capi))[0])
    d = tmp_path / "py"
    d.mkdir()
    shutil.copy(os.path.join(DATASETS, "breast_cancer.csv"), d / "breast_cancer.csv")
    (d / "train.py").write_text("""
import csv, numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from skl2onnx import to_onnx
rows = list(csv.DictReader(open("breast_cancer.csv")))
features = [c for c in rows[0] if c != "diagnosis"]
x = np.array([[float(r[c]) for c in features] for r in rows], dtype=np.float32)
y = np.array([r["diagnosis"] for r in rows])
est = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
onx = to_onnx(est, x[:1], options={id(est): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
open("model.onnx", "wb").write(onx.SerializeToString())
open("features.txt", "w").write(",".join(features))
""")
    features = open(os.path.join(DATASETS, "breast_cancer.csv")).readline().strip().split(",")
    features = [f for f in features if f != "diagnosis"]
    (d / "pipeline.toml").write_text(f"""name = "from-python"
[[step]]
id = "train"
kind = "command"
run = [{json.dumps(sys.executable)}, "train.py"]
inputs = ["train.py", "breast_cancer.csv"]
outputs = ["model.onnx"]

[[step]]
id = "onnx"
kind = "register"
path = "model.onnx"
name = "sk-gbdt"
features = {json.dumps(features)}
needs = ["train"]

[[step]]
id = "scan"
kind = "scan"
model = "${{onnx.model}}"

[[step]]
id = "sign"
kind = "sign"
model = "${{onnx.model}}"
""")
    home = str(tmp_path / "home")
    _, out = go(home, d)
    assert set(statuses(out).values()) == {"ran"}, out
    outs = {s["id"]: s["outputs"] for s in out["steps"]}
    assert outs["onnx"]["model"] == "models:/sk-gbdt/1"
    assert len(outs["sign"]["root_digest"]) == 64
    run(home, "data", "add", str(d / "breast_cancer.csv"), "--name", "bc")
    lines = run(home, "predict", "models:/sk-gbdt/1", "--data", "bc@v1").stdout.splitlines()
    labels = [json.loads(line)["label"] for line in lines]
    assert len(labels) == 569 and set(labels) <= {"benign", "malignant"}
    # The exported file is an input of the register step: unchanged, it is not registered again.
    _, again = go(home, d)
    assert statuses(again)["onnx"] == "cached"
