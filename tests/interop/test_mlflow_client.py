"""The official mlflow client, unchanged, against `bastion server`."""
import filecmp
import math
import os
import tempfile
import uuid

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tracking_workflow(server):
    client = MlflowClient()
    exp_id = mlflow.create_experiment(unique("interop"), tags={"team": "ml"})
    mlflow.set_experiment(experiment_id=exp_id)
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"batch": 32, "opt": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=5)
        mlflow.log_metric("weird", float("nan"))
        mlflow.set_tags({"stage": "dev", "owner": "alice"})
        run_id = run.info.run_id
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.01", "batch": "32", "opt": "adam"}
    assert got.data.metrics["loss"] == pytest.approx(0.2)
    assert math.isnan(got.data.metrics["weird"])
    assert got.data.tags["stage"] == "dev"
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]

    # Batch logging with steps.
    from mlflow.entities import Metric, Param, RunTag

    client.log_batch(
        run_id,
        metrics=[Metric("batch_m", i * 0.5, 1000 + i, i) for i in range(300)],
        params=[Param("extra", "1")],
        tags=[RunTag("batched", "yes")],
    )
    assert len(client.get_metric_history(run_id, "batch_m")) == 300


def test_artifacts_round_trip(server, tmp_path):
    exp_id = mlflow.create_experiment(unique("artifacts"))
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_text("top level\n")
    (src / "nested" / "data.bin").write_bytes(os.urandom(2_000_000))
    (src / "nested" / "deeper" / "note.md").write_text("# deep\n")
    single = tmp_path / "single.json"
    single.write_text('{"a": 1}')
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifacts(str(src), artifact_path="bundle")
    client = MlflowClient()
    top = sorted(f.path for f in client.list_artifacts(run.info.run_id))
    assert top == ["bundle", "single.json"]
    nested = {f.path: f for f in client.list_artifacts(run.info.run_id, "bundle/nested")}
    assert nested["bundle/nested/data.bin"].file_size == 2_000_000
    assert nested["bundle/nested/deeper"].is_dir
    dst = tmp_path / "dst"
    dst.mkdir()
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="bundle", dst_path=str(dst))
    cmp = filecmp.dircmp(str(src), local)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    for rel in ["nested/data.bin", "nested/deeper/note.md", "top.txt"]:
        assert filecmp.cmp(src / rel, os.path.join(local, rel), shallow=False), rel


def test_search_runs_filter_and_order(server):
    exp_id = mlflow.create_experiment(unique("search"))
    for i in range(6):
        with mlflow.start_run(experiment_id=exp_id, run_name=f"r{i}"):
            mlflow.log_metric("score", i)
            mlflow.log_param("kind", "even" if i % 2 == 0 else "odd")
    df = mlflow.search_runs(
        experiment_ids=[exp_id], filter_string="params.kind = 'even' and metrics.score >= 1", order_by=["metrics.score DESC"]
    )
    assert list(df["tags.mlflow.runName"]) == ["r4", "r2"]
    runs = MlflowClient().search_runs([exp_id], "", order_by=["metrics.score ASC"], max_results=4)
    assert [r.data.metrics["score"] for r in runs] == [0, 1, 2, 3]
    assert runs.token
    rest = MlflowClient().search_runs([exp_id], "", order_by=["metrics.score ASC"], max_results=4, page_token=runs.token)
    assert [r.data.metrics["score"] for r in rest] == [4, 5]
    with pytest.raises(MlflowException) as e:
        mlflow.search_runs(experiment_ids=[exp_id], filter_string="metrics.score LIKE 'x'")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "LIKE" in e.value.message


def test_sklearn_model_alias_and_load(server):
    from sklearn.linear_model import LogisticRegression

    name = unique("clf")
    X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    model = LogisticRegression().fit(X, y)
    mlflow.set_experiment(unique("models"))
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name, input_example=X[:1])
    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", "1")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(X)) == list(model.predict(X))
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    # A second version of the same logged model, then one from a run's artifacts (runs:/).
    mv = mlflow.register_model(info.model_uri, name)
    assert mv.version == "2"
    with mlflow.start_run() as run3:
        d = tempfile.mkdtemp()
        mlflow.sklearn.save_model(model, path=os.path.join(d, "clf"))
        mlflow.log_artifacts(os.path.join(d, "clf"), artifact_path="clf")
    mv3 = mlflow.register_model(f"runs:/{run3.info.run_id}/clf", name)
    assert mv3.version == "3"
    again = mlflow.pyfunc.load_model(f"models:/{name}/3")
    assert list(again.predict(X)) == list(model.predict(X))
    client.transition_model_version_stage(name, "3", "Staging")
    assert client.get_latest_versions(name, ["Staging"])[0].version == "3"
    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(v.version for v in versions) == ["1", "2", "3"]


def test_delete_restore_and_errors(server):
    client = MlflowClient()
    exp_name = unique("lifecycle")
    exp_id = client.create_experiment(exp_name)
    run = client.create_run(exp_id)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    with pytest.raises(RestException) as e:
        client.get_experiment("999999")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(RestException) as e:
        client.create_experiment(exp_name)
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.log_param(run.info.run_id, "p", "1")
    with pytest.raises(MlflowException) as e:
        client.log_param(run.info.run_id, "p", "2")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in e.value.message
    with pytest.raises(RestException) as e:
        client.get_registered_model("no-such-model")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_permission_denial_as_the_client_reports_it(creds):
    """A viewer's write is refused with PERMISSION_DENIED (HTTP 403); no credentials at all is
    UNAUTHENTICATED (401); both surface as MlflowException with that error code."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from conftest import use_credentials

    exp_id = mlflow.create_experiment(f"owned-{uuid.uuid4().hex[:8]}")
    use_credentials(MLFLOW_TRACKING_TOKEN=creds.viewer_token)
    client = mlflow.MlflowClient()
    assert client.get_experiment(exp_id).experiment_id == exp_id  # reading is allowed
    with pytest.raises(MlflowException) as denied:
        client.create_experiment(f"not-allowed-{uuid.uuid4().hex[:8]}")
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert "403" in str(denied.value) or "Permission denied" in str(denied.value)
    with pytest.raises(MlflowException) as denied:
        client.create_run(exp_id)
    assert denied.value.error_code == "PERMISSION_DENIED"
    use_credentials()
    with pytest.raises(MlflowException) as anonymous:
        mlflow.MlflowClient().get_experiment(exp_id)
    assert anonymous.value.error_code == "UNAUTHENTICATED"
    use_credentials(MLFLOW_TRACKING_TOKEN="bst_000000000000_" + "A" * 43)
    with pytest.raises(MlflowException) as bad:
        mlflow.MlflowClient().get_experiment(exp_id)
    assert bad.value.error_code == "UNAUTHENTICATED"


def test_malicious_model_is_quarantined_at_registration(server):
    """A model whose pickle would run a command on load: the upload is scanned, registering
    it fails in the MLflow client with the reason, and the evidence is on the API."""
    import requests

    client = MlflowClient()
    name = unique("trojan")
    mlflow.set_experiment(unique("trojan"))
    evil = b"\x80\x02cposix\nsystem\nX\x13\x00\x00\x00echo bastion-interop\x85R."
    with mlflow.start_run() as run:
        d = tempfile.mkdtemp()
        with open(os.path.join(d, "model.pkl"), "wb") as f:
            f.write(evil)
        with open(os.path.join(d, "MLmodel"), "w") as f:
            f.write("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n")
        mlflow.log_artifacts(d, artifact_path="model")
    with pytest.raises(MlflowException) as e:
        mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert "FAILED_REGISTRATION" in str(e.value) and "quarantined" in str(e.value), str(e.value)
    assert "posix.system" in str(e.value)
    mv = client.get_model_version(name, "1")
    assert mv.status == "FAILED_REGISTRATION"
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_alias(name, "champion", "1")
    assert e.value.error_code == "INVALID_STATE"

    r = requests.get(server.url + "/api/bastion/v1/model-versions/evidence", params={"name": name, "version": "1"}, headers=server.auth, verify=server.verify, timeout=30)
    r.raise_for_status()
    ev = r.json()
    assert ev["quarantined"] is True
    worst = {f["path"]: f["scan"]["worst"] for f in ev["files"]}
    assert worst == {"MLmodel": None, "model.pkl": "CRITICAL"}
