"""`tritonclient[http]` against `bastion server`'s Open Inference Protocol routes: a model
trained and registered with `bastion train`, and an ONNX model from scikit-learn imported
with `bastion model import`, served with authentication on. Every probability equals what
`bastion predict` (built-in) or onnxruntime (ONNX) computes for the same rows; JSON and
binary tensors agree; refusals reach the client as errors.
"""
import glob
import json
import os
import subprocess
import time

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as httpclient
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

import cli
from conftest import Server, free_port

LIB = sorted(glob.glob(os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime.so*")))[0]
ENV = {"BASTION_ONNXRUNTIME": LIB}


load_csv = cli.load_csv


@pytest.fixture(scope="module")
def served():
    os.environ["BASTION_ONNXRUNTIME"] = LIB
    with cli.shipped_home(env=ENV) as home:
        cli.run(home, "train", "--data", "bc@v1", "--target", "diagnosis", "--model", "logreg",
                "--register", "bc", env=ENV)
        features, x, y = load_csv("breast_cancer.csv", "diagnosis")
        clf = LogisticRegression(max_iter=5000).fit(x, y)
        onx = to_onnx(clf, x[:1].astype(np.float32), options={id(clf): {"zipmap": False}})
        path = os.path.join(home, "bc.onnx")
        with open(path, "wb") as f:
            f.write(onx.SerializeToString())
        cli.run(home, "model", "import", path, "--name", "bc-onnx", "--features", ",".join(features), env=ENV)
        srv = Server(home, free_port()).start()
        try:
            yield srv, features, x, path
        finally:
            srv.stop()


def client(srv):
    return httpclient.InferenceServerClient(url=srv.url.removeprefix("http://"))


def test_health_metadata_and_readiness(served):
    srv, features, _, _ = served
    c = client(srv)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.get_server_metadata(headers=srv.auth)["name"] == "bastion"
    assert c.is_model_ready("bc", headers=srv.auth)
    assert c.is_model_ready("bc", "1", headers=srv.auth)
    meta = c.get_model_metadata("bc", headers=srv.auth)
    assert [i["name"] for i in meta["inputs"]] == features
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    onnx_meta = c.get_model_metadata("bc-onnx", headers=srv.auth)
    assert onnx_meta["platform"] == "onnx"
    assert onnx_meta["inputs"][0]["shape"] == [-1, len(features)]
    with pytest.raises(InferenceServerException):
        c.get_model_metadata("bc", headers={"Authorization": "Bearer bst_000000000000_" + "x" * 43})


def test_builtin_model_binary_and_json_tensors_match_bastion_predict(served):
    srv, features, x, _ = served
    rows = x[:25]
    c = client(srv)
    outs = {}
    for binary in (True, False):
        inputs = []
        for j, name in enumerate(features):
            t = httpclient.InferInput(name, [len(rows)], "FP64")
            t.set_data_from_numpy(rows[:, j].copy(), binary_data=binary)
            inputs.append(t)
        requested = [httpclient.InferRequestedOutput("probabilities", binary_data=binary),
                     httpclient.InferRequestedOutput("label", binary_data=binary)]
        res = c.infer("bc", inputs, outputs=requested, headers=srv.auth, request_id="r-7")
        assert res.get_response()["id"] == "r-7"
        outs[binary] = (res.as_numpy("probabilities"), res.as_numpy("label"))
    np.testing.assert_array_equal(outs[True][0], outs[False][0])
    assert outs[True][0].shape == (25, 2)
    # The same rows through `bastion predict` on the registered version.
    lines = cli.run(srv.home, "predict", "models:/bc/1", "--data", "bc@v1", env=ENV).stdout.splitlines()
    preds = [json.loads(line) for line in lines[:25]]
    classes = sorted(preds[0]["probabilities"].keys())
    expected = np.array([[p["probabilities"][k] for k in classes] for p in preds])
    np.testing.assert_allclose(outs[True][0], expected, rtol=0, atol=1e-12)
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in outs[True][1]]
    assert labels == [p["label"] for p in preds]


def test_onnx_model_matrix_input_matches_onnxruntime(served):
    srv, features, x, path = served
    rows = x[:40].astype(np.float32)
    c = client(srv)
    meta = c.get_model_metadata("bc-onnx", headers=srv.auth)
    t = httpclient.InferInput(meta["inputs"][0]["name"], list(rows.shape), "FP32")
    t.set_data_from_numpy(rows, binary_data=True)
    res = c.infer("bc-onnx", [t], outputs=[httpclient.InferRequestedOutput("probabilities")], headers=srv.auth)
    got = res.as_numpy("probabilities")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: rows})[1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_refusals_reach_the_client(served):
    srv, features, x, _ = served
    c = client(srv)
    bad = httpclient.InferInput("nope", [1], "FP64")
    bad.set_data_from_numpy(np.array([1.0]))
    with pytest.raises(InferenceServerException, match=r"input 'nope' has shape \[1\]; the model takes mean_radius FP64"):
        c.infer("bc", [bad], headers=srv.auth)
    with pytest.raises(InferenceServerException):
        c.infer("missing-model", [bad], headers=srv.auth)
    # A viewer may read metadata but not invoke.
    requests.post(srv.url + "/api/bastion/v1/users", json={"name": "val", "role": "viewer"},
                  headers=srv.auth, timeout=30).raise_for_status()
    token = srv.admin("POST", "/api/bastion/v1/users/val/tokens", json={})["token"]
    viewer = {"Authorization": f"Bearer {token}"}
    assert c.get_model_metadata("bc", headers=viewer)["name"] == "bc"
    one = []
    for j, name in enumerate(features):
        t = httpclient.InferInput(name, [1], "FP64")
        t.set_data_from_numpy(x[:1, j].copy())
        one.append(t)
    with pytest.raises(InferenceServerException, match="INVOKE"):
        c.infer("bc", one, headers=viewer)
    # An INVOKE grant on this model lets the viewer call it.
    srv.admin("PUT", "/api/bastion/v1/grants", json={
        "principal": "user:val", "resource_kind": "registered_model", "resource": "bc", "permission": "INVOKE"})
    assert c.infer("bc", one, headers=viewer).as_numpy("probabilities").shape == (1, 2)


def test_bastion_serve_admits_its_models_before_listening(served):
    srv = served[0]
    port = free_port()
    refused = cli.run(srv.home, "serve", "--port", str(port), "--model", "bc", "--model", "nope", ok=False)
    assert refused.returncode != 0
    assert "model nope" in refused.stderr and "no registered model 'nope'" in refused.stderr, refused.stderr
    proc = subprocess.Popen([cli.BIN, "--home", srv.home, "serve", "--port", str(port), "--model", "bc@1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **ENV))
    try:
        first = proc.stdout.readline()
        assert "Serving bc version 1" in first, first
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(url + "/v2/health/live", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        assert requests.get(url + "/v2/models/bc/ready", headers=srv.auth, timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_deploy_guards_and_routes_from_the_cli(served):
    """`bastion deploy` through the server (--server) and on the home's store: guards built
    from the model's training data (bc@v1) reach tritonclient as errors or flags; a pin made
    on the store is served within the re-check interval; every change is audited."""
    srv, features, x, _ = served
    started_ms = int(time.time() * 1000)
    c = client(srv)
    remote = ["--server", srv.url, "--token", srv.token]
    out = json.loads(cli.run(srv.home, "deploy", "bc@1", "--guard", "range=reject,ood=flag", *remote).stdout)
    assert out["deployment"]["stable"] == "1" and out["deployment"]["guards"]["range"] == "reject"

    def inputs(row):
        ts = []
        for j, name in enumerate(features):
            t = httpclient.InferInput(name, [1], "FP64")
            t.set_data_from_numpy(np.array([row[j]], dtype=np.float64))
            ts.append(t)
        return ts

    ok = c.infer("bc", inputs(x[0]), headers=srv.auth)
    assert ok.get_response().get("parameters", {}).get("bastion_guard") is None
    far = x[0].copy()
    far[0] = x[:, 0].max() * 100
    with pytest.raises(InferenceServerException, match=f"input '{features[0]}' row 0: .* outside the training range"):
        c.infer("bc", inputs(far), headers=srv.auth)
    # Within every range but unlike any training row: flagged, still answered.
    odd = np.where(np.arange(len(features)) % 2 == 0, x.min(axis=0), x.max(axis=0))
    flagged = c.infer("bc", inputs(odd), headers=srv.auth).get_response()
    assert flagged["parameters"]["bastion_ood_score"] > 1.0, flagged
    assert json.loads(flagged["parameters"]["bastion_guard"])["counts"]["ood"] == 1

    # A pin written to the home's store directly; the server picks it up within 5 s.
    cli.run(srv.home, "deploy", "bc@1", "--pin", "blue")
    seen = None
    for _ in range(80):
        r = requests.post(srv.url + "/v2/models/bc/infer", headers={**srv.auth, "x-bastion-variant": "blue"},
                          json={"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [float(x[0][j])]}
                                           for j, n in enumerate(features)]}, timeout=30)
        seen = r.status_code
        if seen == 200:
            break
        time.sleep(0.1)
    assert seen == 200
    listed = json.loads(cli.run(srv.home, "deployments", "bc", *remote).stdout)
    assert listed["deployment"]["pins"] == {"blue": "1"} and listed["revision"] == 2
    refused = cli.run(srv.home, "rollback", "bc", *remote, ok=False)
    assert refused.returncode != 0 and "no canary and no earlier stable version" in refused.stderr
    events = srv.admin("GET", "/api/bastion/v1/inference-events?name=bc")["events"]
    assert {"ok", "rejected", "flagged"} <= {e["decision"] for e in events}
    actions = [e["action"] for e in srv.admin("GET", "/api/bastion/v1/audit/entries",
                                                   params={"since_ms": started_ms, "limit": 1000})["entries"]]
    assert actions.count("deployment.deploy") >= 2
