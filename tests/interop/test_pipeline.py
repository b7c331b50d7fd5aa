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
